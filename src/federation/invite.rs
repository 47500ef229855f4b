//! Invites across servers: a local user inviting a user of another server (the invite
//! signed by the invitee's server through `/invite` v2 before it is stored and sent to the
//! room), and invites from other servers to this server's users (checked, countersigned,
//! kept in the room's DAG or out of band; `rooms::invites`).

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, RoomId, RoomVersionId, ServerName, UserId,
    api::federation::membership::{RawStrippedState, create_invite},
};
use serde_json::{Value as JsonValue, value::RawValue as RawJsonValue};

use super::{client::SendError, legacy::InviteV1};
use crate::{
    error::{Error, Result},
    rooms::{
        context::{RoomContext, rules_for},
        create::{CreateRoom, create_room as create_local_room},
        invites, membership,
        receive::{event_id_of, verify_remote_pdu},
        remote_reads::check_server_acl,
    },
    server::Homeserver,
    users::Requester,
};

/// How long an invite waits for the invitee's server to sign it.
const INVITE_WAIT: std::time::Duration = std::time::Duration::from_secs(15);
/// How long an invite waits for the invitee's profile from their server.
const PROFILE_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

fn string<'a>(object: &'a CanonicalJsonObject, field: &str) -> Option<&'a str> {
    match object.get(field) {
        Some(CanonicalJsonValue::String(s)) => Some(s),
        _ => None,
    }
}

fn to_raw(value: &impl serde::Serialize) -> Result<Box<RawJsonValue>> {
    serde_json::value::to_raw_value(value).map_err(|e| Error::Internal(e.to_string()))
}

/// `POST /rooms/{roomId}/invite`: a local user is invited in the room's DAG here; a user
/// of another server through their server first.
pub async fn invite_user(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    target: &UserId,
    reason: Option<&str>,
) -> Result<()> {
    if target.server_name() == hs.config.server_name() || !hs.config.federation_enabled() {
        return membership::change_other(hs, requester, room_id, target, "invite", reason).await;
    }
    invite_remote(hs, requester, room_id, target, reason, false).await
}

async fn invite_remote(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    target: &UserId,
    reason: Option<&str>,
    is_direct: bool,
) -> Result<()> {
    // The invitee's name and avatar in the invite, as Synapse puts them, when their
    // server tells them soon enough.
    let mut extra: serde_json::Map<String, JsonValue> =
        tokio::time::timeout(PROFILE_WAIT, super::query::profile(hs, target))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
            .into_iter()
            .filter(|(field, _)| matches!(field.as_str(), "displayname" | "avatar_url"))
            .collect();
    if let Some(reason) = reason {
        extra.insert("reason".into(), reason.into());
    }
    if is_direct {
        extra.insert("is_direct".into(), true.into());
    }
    invite_remote_as(hs, &requester.user_id, room_id, target, &extra).await
}

/// Sends `sender`'s invite of another server's user, with `extra` in its content, signed
/// by the invitee's server first.
pub async fn invite_remote_as(
    hs: &Homeserver,
    sender: &UserId,
    room_id: &RoomId,
    target: &UserId,
    extra: &serde_json::Map<String, JsonValue>,
) -> Result<()> {
    let server = target.server_name();
    let room_state = invites::invite_room_state(hs, room_id, Some(sender)).await?;
    membership::invite_remote(
        hs,
        sender,
        room_id,
        target,
        extra,
        async |version: &RoomVersionId, event: &CanonicalJsonObject| {
            ask_to_sign(hs, room_id, server, version, event, &room_state).await
        },
    )
    .await
}

/// `POST /createRoom`: the room is made here with its local invitees; users of other
/// servers in `invite` are invited afterwards through their servers. One that cannot be
/// reached does not undo the room (Synapse's createRoom fails there, leaving the room
/// made and its ID unknown to the client); it is logged.
pub async fn create_room(
    hs: &Homeserver,
    requester: &Requester,
    mut req: CreateRoom,
) -> Result<ruma::OwnedRoomId> {
    let ours = hs.config.server_name();
    let remote: Vec<ruma::OwnedUserId> = if hs.config.federation_enabled() {
        req.invite
            .iter()
            .filter(|u| u.server_name() != ours)
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let is_direct = req.is_direct;
    req.invite_later = remote.clone();
    let room_id = create_local_room(hs, requester, req).await?;
    for invitee in &remote {
        if let Err(e) = invite_remote(hs, requester, &room_id, invitee, None, is_direct).await {
            tracing::warn!(%room_id, %invitee, "createRoom's invite failed: {e}");
        }
    }
    Ok(room_id)
}

/// `PUT /invite` (v2, or v1 for a server that does not know v2) to the invitee's server;
/// answers the event with its signature, checked.
async fn ask_to_sign(
    hs: &Homeserver,
    room_id: &RoomId,
    server: &ServerName,
    version: &RoomVersionId,
    event: &CanonicalJsonObject,
    room_state: &[JsonValue],
) -> Result<CanonicalJsonObject> {
    let federation = super::state(hs)?;
    let rules = rules_for(version)?;
    let event_id = event_id_of(event, &rules)?;
    let stripped = room_state
        .iter()
        .map(|e| Ok(RawStrippedState::Pdu(to_raw(e)?)))
        .collect::<Result<Vec<_>>>()?;
    let request = create_invite::v2::Request::new(
        room_id.to_owned(),
        event_id.clone(),
        version.clone(),
        to_raw(event)?,
        stripped,
    );
    let refusal = |e| match e {
        SendError::Refused {
            status: 403 | 400,
            body,
        } => Error::Forbidden(super::join::remote_reason(&body)),
        other => other.into(),
    };
    // The room is locked meanwhile (`send_countersigned`): a slow server may hold it up
    // for this long at most.
    let late = || Error::RemoteUnavailable(format!("{server} did not answer the invite in time"));
    let started = tokio::time::Instant::now();
    let sent = tokio::time::timeout(
        INVITE_WAIT,
        federation.client.send(hs.keys.pair(), server, request),
    )
    .await
    .map_err(|_| late())?;
    let mut via_v1 = false;
    let answer: Box<RawJsonValue> = match sent {
        Ok(answer) => answer.event,
        Err(SendError::Refused { status: 404, .. }) => {
            // The v1 form: the event itself, the room state in its `unsigned`.
            let mut with_state = event.clone();
            let state = serde_json::to_value(room_state)
                .ok()
                .and_then(|v| serde_json::from_value::<CanonicalJsonValue>(v).ok())
                .unwrap_or(CanonicalJsonValue::Array(Vec::new()));
            let mut unsigned = CanonicalJsonObject::new();
            unsigned.insert("invite_room_state".into(), state);
            with_state.insert("unsigned".into(), CanonicalJsonValue::Object(unsigned));
            let request = InviteV1::new(room_id.to_owned(), event_id, to_raw(&with_state)?);
            let left = INVITE_WAIT.saturating_sub(started.elapsed());
            let answer = tokio::time::timeout(
                left,
                federation.client.send(hs.keys.pair(), server, request),
            )
            .await
            .map_err(|_| late())?
            .map_err(refusal)?;
            let event = answer
                .object()
                .map(|a| &a["event"])
                .filter(|e| e.is_object())
                .ok_or_else(|| {
                    Error::RemoteUnavailable(format!("{server} answered the v1 invite oddly"))
                })?;
            via_v1 = true;
            to_raw(event)?
        }
        Err(e) => return Err(refusal(e)),
    };
    // Signed JSON is canonical: an answer with floats or huge numbers is refused.
    let mut signed: CanonicalJsonObject = serde_json::from_str(answer.get())
        .map_err(|e| Error::BadJson(format!("{server}'s invite answer: {e}")))?;
    if via_v1 {
        // The room state that rode along unsigned is not part of the event.
        signed.remove("unsigned");
    }
    // The invitee's server signed the redacted event, as every server signs events.
    let redacted = ruma::canonical_json::redact(signed.clone(), &rules.redaction, None)
        .map_err(|e| Error::RemoteUnavailable(format!("invite answer: {e}")))?;
    let key_ids: Vec<String> = match signed.get("signatures") {
        Some(CanonicalJsonValue::Object(all)) => match all.get(server.as_str()) {
            Some(CanonicalJsonValue::Object(keys)) => keys.keys().cloned().collect(),
            _ => Vec::new(),
        },
        _ => Vec::new(),
    };
    if key_ids.is_empty() {
        return Err(Error::RemoteUnavailable(format!(
            "{server} answered the invite unsigned"
        )));
    }
    let valid_at = match signed.get("origin_server_ts") {
        Some(CanonicalJsonValue::Integer(ts)) if rules.enforce_key_validity => i64::from(*ts),
        _ => 0,
    };
    let keys = super::keys::verify_keys_for(hs, server, &key_ids, valid_at).await?;
    super::keys::verify_signed_by(&redacted, server.as_str(), &keys).map_err(|e| {
        Error::RemoteUnavailable(format!("{server}'s signature of the invite: {e}"))
    })?;
    Ok(signed)
}

/// `PUT /_matrix/federation/v1|v2/invite/{roomId}/{eventId}`: an invite of one of this
/// server's users, by a user of the origin. Checked (the event is what the path says, an
/// invite by the origin's user of a local user, signed by the origin; the room's server
/// ACL), countersigned, taken in; answers the event with this server's signature.
pub async fn receive_invite(
    hs: &Homeserver,
    origin: &ServerName,
    room_id: &RoomId,
    event_id: &EventId,
    version: &RoomVersionId,
    pdu: &RawJsonValue,
    room_state: &[JsonValue],
) -> Result<Box<RawJsonValue>> {
    let rules =
        rules_for(version).map_err(|_| Error::IncompatibleRoomVersion(version.to_string()))?;
    let mut object: CanonicalJsonObject = serde_json::from_str(pdu.get())
        .map_err(|e| Error::BadJson(format!("invite event: {e}")))?;
    let bad = |why: &str| Error::BadJson(format!("not an invite: {why}"));
    if string(&object, "type") != Some("m.room.member") {
        return Err(bad("not a member event"));
    }
    if string(&object, "room_id") != Some(room_id.as_str()) {
        return Err(bad("another room"));
    }
    let membership = match object.get("content") {
        Some(CanonicalJsonValue::Object(c)) => match c.get("membership") {
            Some(CanonicalJsonValue::String(m)) => m.clone(),
            _ => String::new(),
        },
        _ => String::new(),
    };
    if membership != "invite" {
        return Err(bad("another membership"));
    }
    let sender = string(&object, "sender")
        .and_then(|s| UserId::parse(s).ok())
        .ok_or_else(|| bad("sender"))?;
    if sender.server_name() != origin {
        return Err(Error::Forbidden(format!(
            "{origin} cannot send an invite from a user of another server"
        )));
    }
    let invitee = string(&object, "state_key")
        .and_then(|s| UserId::parse(s).ok())
        .ok_or_else(|| bad("state_key"))?;
    if invitee.server_name() != hs.config.server_name() {
        return Err(Error::Forbidden(
            "the invitee is not a user of this server".into(),
        ));
    }
    if hs.storage.user(invitee.as_str()).await?.is_none() {
        return Err(Error::NotFound("no such user".into()));
    }
    if event_id_of(&object, &rules)? != event_id {
        return Err(Error::BadJson(
            "the event ID does not match the event".into(),
        ));
    }
    if hs.storage.room(room_id.as_str()).await?.is_some() {
        check_server_acl(hs, room_id, origin).await?;
    }
    let ctx = RoomContext {
        room_id: room_id.to_owned(),
        version: version.clone(),
        rules: rules.clone(),
    };
    let keys = super::keys::pdu_keys(hs, &ctx, &object).await?;
    // One whose content hash fails would be redacted here: this server signs none.
    if verify_remote_pdu(&ctx, object.clone(), &keys)?.json != object {
        return Err(Error::BadJson(
            "the invite's content hash does not match".into(),
        ));
    }
    ruma::signatures::hash_and_sign_event(
        hs.config.server_name().as_str(),
        hs.keys.pair(),
        &mut object,
        &rules.redaction,
    )
    .map_err(|e| Error::BadJson(format!("invite event: {e}")))?;
    let stripped = invites::checked_stripped_state(room_id, room_state);
    invites::take_invite(hs, &ctx, object.clone(), &keys, stripped).await?;
    to_raw(&object)
}

/// The invite's room state as sent, each entry a full PDU or (before spec v1.16) a
/// stripped event; entries that are not JSON objects are left out.
pub fn sent_room_state(sent: &[RawStrippedState]) -> Vec<JsonValue> {
    sent.iter()
        .filter_map(|entry| {
            let json = match entry {
                RawStrippedState::Pdu(raw) => raw.get(),
                #[allow(deprecated)]
                RawStrippedState::Stripped(raw) => raw.json().get(),
                _ => return None,
            };
            serde_json::from_str::<JsonValue>(json)
                .ok()
                .filter(JsonValue::is_object)
        })
        .collect()
}
