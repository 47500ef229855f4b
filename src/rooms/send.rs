//! The local send API: a user's event through the whole write path, idempotent per
//! device and transaction ID, and state events that repeat the current state skipped.

use ruma::{CanonicalJsonObject, CanonicalJsonValue, OwnedEventId, RoomId, RoomVersionId, UserId};
use serde_json::Value as JsonValue;

use super::{
    context::{current_state_event, room_context},
    pdu::NewEvent,
    persist::{build_checked, store_and_commit},
};
use crate::{
    error::{Error, Result},
    server::Homeserver,
};

/// Sends one event from a local user: the whole path, in one transaction.
pub async fn send(
    hs: &Homeserver,
    room_id: &RoomId,
    sender: &UserId,
    new: NewEvent,
    txn: Option<(&str, &str)>,
) -> Result<OwnedEventId> {
    let started = std::time::Instant::now();
    let ctx = room_context(hs, room_id).await?;
    let _slot = hs.room_locks.lock(room_id.as_str()).await?;
    let mut w = hs.storage.begin_room_write(room_id.as_str()).await?;
    // Checked again under the room's lock: a concurrent retry that was waiting for the
    // lock finds the first one's event here.
    if let Some((device, txn_id)) = txn
        && let Some(first) = w.event_for_txn(sender.as_str(), device, txn_id).await?
    {
        return OwnedEventId::try_from(first).map_err(|e| Error::Internal(e.to_string()));
    }
    let checked = build_checked(hs, &mut w, &ctx, sender, &new).await?;
    store_and_commit(hs, w, &ctx, &checked, txn).await?;
    hs.metrics.observe_event_persist(started.elapsed());
    Ok(checked.pdu.event_id)
}

/// `send` for an event another server must sign too before it is stored (an invite of
/// its user): `countersign` gets the room version and the built event, and answers it
/// with that server's signature added. Nothing else of the event may change. The room
/// stays locked meanwhile, so the event stays on the room's extremities.
pub async fn send_countersigned(
    hs: &Homeserver,
    room_id: &RoomId,
    sender: &UserId,
    new: NewEvent,
    countersign: impl AsyncFnOnce(&RoomVersionId, &CanonicalJsonObject) -> Result<CanonicalJsonObject>,
) -> Result<OwnedEventId> {
    let ctx = room_context(hs, room_id).await?;
    let _slot = hs.room_locks.lock(room_id.as_str()).await?;
    let mut w = hs.storage.begin_room_write(room_id.as_str()).await?;
    let mut checked = build_checked(hs, &mut w, &ctx, sender, &new).await?;
    let theirs = countersign(&ctx.version, &checked.pdu.json).await?;
    let without_signatures = |object: &CanonicalJsonObject| {
        let mut rest = object.clone();
        rest.remove("signatures");
        rest.remove("unsigned");
        rest
    };
    if without_signatures(&theirs) != without_signatures(&checked.pdu.json) {
        return Err(Error::RemoteUnavailable(
            "the other server changed the event it was asked to sign".into(),
        ));
    }
    let mut json = checked.pdu.json.clone();
    if let (Some(CanonicalJsonValue::Object(added)), Some(CanonicalJsonValue::Object(ours))) =
        (theirs.get("signatures"), json.get_mut("signatures"))
    {
        for (server, signature) in added {
            ours.entry(server.clone())
                .or_insert_with(|| signature.clone());
        }
    }
    checked.pdu.json = json;
    store_and_commit(hs, w, &ctx, &checked, None).await?;
    Ok(checked.pdu.event_id)
}

/// `PUT /rooms/{roomId}/send/{type}/{txnId}`: idempotent per device and transaction ID (a
/// retry answers the first event's ID); counts as the user's activity for presence.
pub async fn send_message(
    hs: &Homeserver,
    requester: &crate::users::Requester,
    room_id: &RoomId,
    new: NewEvent,
    txn_id: &str,
) -> Result<OwnedEventId> {
    let (sender, device) = (&requester.user_id, requester.device_id.as_str());
    if let Some(id) = event_for_txn(hs, sender, device, txn_id).await? {
        return Ok(id);
    }
    let event_id = send_once(hs, room_id, sender, new, device, txn_id).await?;
    crate::users::presence::note_activity(hs, sender).await;
    Ok(event_id)
}

/// The event a device already sent under `txn_id`, if any.
pub async fn event_for_txn(
    hs: &Homeserver,
    sender: &UserId,
    device: &str,
    txn_id: &str,
) -> Result<Option<OwnedEventId>> {
    crate::limits::check_txn_id(txn_id)?;
    hs.storage
        .event_for_txn(sender.as_str(), device, txn_id)
        .await?
        .map(|id| OwnedEventId::try_from(id).map_err(|e| Error::Internal(e.to_string())))
        .transpose()
}

/// `send` under a device's transaction ID, for callers that checked `event_for_txn`
/// first. Concurrent retries into one room meet under its lock (`send` checks again);
/// retries of one transaction ID into two rooms meet at a unique index, and the loser
/// answers the first's event ID as a retry should.
pub async fn send_once(
    hs: &Homeserver,
    room_id: &RoomId,
    sender: &UserId,
    new: NewEvent,
    device: &str,
    txn_id: &str,
) -> Result<OwnedEventId> {
    match send(hs, room_id, sender, new, Some((device, txn_id))).await {
        Ok(id) => Ok(id),
        Err(e) => match event_for_txn(hs, sender, device, txn_id).await {
            Ok(Some(first)) => Ok(first),
            _ => Err(e),
        },
    }
}

/// `PUT /rooms/{roomId}/state/{type}/{key}`: checks what the auth rules do not, then sends.
pub async fn send_state(
    hs: &Homeserver,
    room_id: &RoomId,
    sender: &UserId,
    event_type: &str,
    state_key: &str,
    content: JsonValue,
    origin_server_ts: Option<ruma::MilliSecondsSinceUnixEpoch>,
) -> Result<OwnedEventId> {
    if event_type == "m.room.canonical_alias" {
        super::aliases::check_canonical_alias(hs, room_id, &content).await?;
    }
    let new = NewEvent {
        event_type: event_type.to_owned(),
        content,
        state_key: Some(state_key.to_owned()),
        redacts: None,
        origin_server_ts,
    };
    let event_id = send_state_once(hs, room_id, sender, new).await?;
    if event_type == "m.room.guest_access" {
        // Guests may no longer be here: they leave (after the room lock is released).
        super::membership::remove_guests(hs, room_id).await?;
    }
    Ok(event_id)
}

/// Sends a state event unless the same sender already set the same content for its type
/// and key: then the current event's ID is the answer and no event is made, as Synapse
/// does (setting state twice, joining twice).
pub async fn send_state_once(
    hs: &Homeserver,
    room_id: &RoomId,
    sender: &UserId,
    new: NewEvent,
) -> Result<OwnedEventId> {
    if let Some(key) = &new.state_key
        && let Some(current) = current_state_event(hs, room_id, &new.event_type, key).await?
        && current.pdu["sender"].as_str() == Some(sender.as_str())
        && current.pdu["content"] == new.content
        && current.redacted_by.is_none()
    {
        return OwnedEventId::try_from(current.event_id)
            .map_err(|e| Error::Internal(e.to_string()));
    }
    send(hs, room_id, sender, new, None).await
}
