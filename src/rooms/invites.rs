//! Invites across servers, the rooms side: the state shown with an invite (sent with an
//! invite to another server, kept with one from another server), and invites from other
//! servers to rooms this server does not hold, kept out of band (the invite stored as an
//! outlier, the membership with the stripped state the inviting server sent) until the
//! user joins through that server or declines.

use ruma::{
    CanonicalJsonObject, EventId, MilliSecondsSinceUnixEpoch, OwnedServerName, RoomId,
    RoomVersionId, UserId, signatures::PublicKeyMap,
};
use serde_json::{Value as JsonValue, json};

use super::{
    context::{RoomContext, current_state_event, rules_for},
    pdu::{self, NewEvent, Pdu, Placement},
    receive::{Received, receive_pdu},
};
use crate::{
    error::{Error, Result},
    server::Homeserver,
};

/// State shown to someone invited or knocking: enough to name and recognise the room
/// (what Synapse shares by default), besides the inviter's membership and their own.
pub const STRIPPED_STATE: &[&str] = &[
    "m.room.create",
    "m.room.join_rules",
    "m.room.name",
    "m.room.avatar",
    "m.room.canonical_alias",
    "m.room.encryption",
    "m.room.topic",
];

/// Most stripped state events kept from another server's invite.
const MAX_STRIPPED_EVENTS: usize = 64;

/// The stripped form of an event: what a client is shown of a room it is not in.
pub fn stripped(event: &JsonValue) -> JsonValue {
    json!({
        "type": event["type"], "state_key": event["state_key"],
        "sender": event["sender"], "content": event["content"],
    })
}

/// The full PDUs of the room's current stripped state and the inviter's membership, sent
/// with an invite to another server (as the spec asks since v1.16), or with none to a
/// knocking one.
pub async fn invite_room_state(
    hs: &Homeserver,
    room_id: &RoomId,
    inviter: Option<&UserId>,
) -> Result<Vec<JsonValue>> {
    let mut keys: Vec<(&str, &str)> = STRIPPED_STATE.iter().map(|t| (*t, "")).collect();
    if let Some(inviter) = inviter {
        keys.push(("m.room.member", inviter.as_str()));
    }
    let mut events = Vec::new();
    for (event_type, state_key) in keys {
        if let Some(event) = current_state_event(hs, room_id, event_type, state_key).await? {
            events.push(event.pdu);
        }
    }
    Ok(events)
}

/// What another server sent as an invite's room state, in the stripped form (full PDUs
/// since spec v1.16, stripped events before): entries that are not state events of this
/// room are left out, and at most `MAX_STRIPPED_EVENTS` kept.
pub fn checked_stripped_state(room_id: &RoomId, sent: &[JsonValue]) -> Vec<JsonValue> {
    sent.iter()
        .filter(|e| {
            e["type"].is_string()
                && e["state_key"].is_string()
                && e["sender"].is_string()
                && e["content"].is_object()
                // A full PDU names its room (a v12 create event names none).
                && e.get("room_id").is_none_or(|r| r == room_id.as_str())
        })
        .take(MAX_STRIPPED_EVENTS)
        .map(stripped)
        .collect()
}

/// Takes in an invite from another server, verified and countersigned by this server:
/// into the room's DAG when this server holds the room and the events it follows, else
/// out of band with the stripped state the inviting server sent.
pub async fn take_invite(
    hs: &Homeserver,
    ctx: &RoomContext,
    object: CanonicalJsonObject,
    keys: &PublicKeyMap,
    stripped_state: Vec<JsonValue>,
) -> Result<()> {
    if hs.storage.room(ctx.room_id.as_str()).await?.is_some() {
        match receive_pdu(hs, &ctx.room_id, object.clone(), keys).await {
            Ok((_, Received::Accepted | Received::AlreadyKnown)) => return Ok(()),
            Ok((_, Received::SoftFailed)) => {
                return Err(Error::Forbidden(
                    "the room's current state does not allow this invite".into(),
                ));
            }
            // This server is behind the inviting one: the invite is kept out of band.
            Err(Error::UnknownEvents(_)) => {}
            Err(e) => return Err(e),
        }
    }
    let pdu = super::receive::verify_remote_pdu(ctx, object, keys)?;
    store_out_of_band(hs, ctx, &pdu, Some(stripped_state)).await
}

/// Stores a membership event of a room this server does not hold (or holds without the
/// events it follows) as an outlier, and makes it the user's membership, with the
/// stripped state to show with it. `stripped_state` None keeps what the membership had
/// (a decline keeps the invite's room state for the room's name in /sync).
pub async fn store_out_of_band(
    hs: &Homeserver,
    ctx: &RoomContext,
    pdu: &Pdu,
    stripped_state: Option<Vec<JsonValue>>,
) -> Result<()> {
    let user = pdu
        .state_key
        .as_deref()
        .ok_or_else(|| Error::BadJson("a membership event without a state_key".into()))?;
    let membership = pdu.content_json()["membership"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let kept = match stripped_state {
        Some(events) => Some(events),
        None => current_invite_state(hs, &ctx.room_id, user).await?,
    };
    let room_id = ctx.room_id.as_str();
    let _slot = hs.room_locks.lock_unbounded(room_id).await;
    let mut w = hs.storage.begin_room_write(room_id).await?;
    if w.event_by_id(pdu.event_id.as_str()).await?.is_some() {
        return Ok(());
    }
    let nid = super::receive::insert_outlier(&mut w, pdu).await?;
    w.set_membership(user, &membership, nid).await?;
    if let Some(events) = kept {
        let state = json!({ "room_version": ctx.version, "events": events });
        w.set_invite_state(user, &state).await?;
    }
    // Its stream position makes the membership show in the user's next /sync.
    w.commit(&[nid]).await?;
    Ok(())
}

/// The stripped state kept with the user's out-of-band membership of the room.
async fn current_invite_state(
    hs: &Homeserver,
    room_id: &RoomId,
    user: &str,
) -> Result<Option<Vec<JsonValue>>> {
    Ok(by_membership(hs, room_id, user)
        .await?
        .map(|(_, events)| events))
}

/// (room version, stripped state) kept with the user's current membership when it came
/// out of band; None for a membership in a room's DAG.
async fn by_membership(
    hs: &Homeserver,
    room_id: &RoomId,
    user: &str,
) -> Result<Option<(RoomVersionId, Vec<JsonValue>)>> {
    let Some(state) = hs
        .storage
        .current_invite_state(room_id.as_str(), user)
        .await?
    else {
        return Ok(None);
    };
    let version = state["room_version"]
        .as_str()
        .and_then(|v| RoomVersionId::try_from(v).ok())
        .unwrap_or(RoomVersionId::V1);
    let events = state["events"].as_array().cloned().unwrap_or_default();
    Ok(Some((version, events)))
}

/// The stripped state shown with a membership whose event (`event_nid`) came out of band.
pub async fn stripped_state_of(
    hs: &Homeserver,
    room_id: &str,
    user_id: &str,
    event_nid: i64,
) -> Result<Option<Vec<JsonValue>>> {
    Ok(hs
        .storage
        .invite_state(room_id, user_id, event_nid)
        .await?
        .map(|state| state["events"].as_array().cloned().unwrap_or_default()))
}

/// Servers that may be in a room the user has an out-of-band membership of, to leave
/// through: the inviter's, then those of the senders of the room state kept with it.
pub async fn servers_to_leave_through(
    hs: &Homeserver,
    room_id: &RoomId,
    user_id: &UserId,
) -> Result<Vec<OwnedServerName>> {
    let mut servers: Vec<OwnedServerName> = Vec::new();
    servers.extend(inviting_server(hs, room_id, user_id).await?);
    if let Some(events) = current_invite_state(hs, room_id, user_id.as_str()).await? {
        for event in events {
            if let Some(server) = event["sender"]
                .as_str()
                .and_then(|s| UserId::parse(s).ok())
                .map(|u| u.server_name().to_owned())
                && !servers.contains(&server)
            {
                servers.push(server);
            }
        }
    }
    servers.retain(|s| s != hs.config.server_name());
    Ok(servers)
}

/// The server of whoever invited the user to a room this server does not hold: the
/// server to join or decline through.
pub async fn inviting_server(
    hs: &Homeserver,
    room_id: &RoomId,
    user_id: &UserId,
) -> Result<Option<OwnedServerName>> {
    let Some((_, pdu)) = hs
        .storage
        .membership_event(room_id.as_str(), user_id.as_str())
        .await?
    else {
        return Ok(None);
    };
    if pdu["content"]["membership"] != "invite" {
        return Ok(None);
    }
    Ok(pdu["sender"]
        .as_str()
        .and_then(|s| UserId::parse(s).ok())
        .map(|s| s.server_name().to_owned())
        .filter(|s| s != hs.config.server_name()))
}

/// The room version of the user's membership of the room when it is an invite or a knock
/// held out of band (left through another server, not in a DAG held here).
pub async fn out_of_band_pending(
    hs: &Homeserver,
    room_id: &RoomId,
    user_id: &UserId,
) -> Result<Option<RoomVersionId>> {
    if !matches!(
        hs.storage
            .membership(room_id.as_str(), user_id.as_str())
            .await?
            .as_deref(),
        Some("invite" | "knock")
    ) {
        return Ok(None);
    }
    Ok(by_membership(hs, room_id, user_id.as_str())
        .await?
        .map(|(version, _)| version))
}

/// Declines an out-of-band invite here only (its server cannot be reached): a leave made
/// and signed by this server after the invite, kept out of band and never sent.
pub async fn decline_locally(
    hs: &Homeserver,
    room_id: &RoomId,
    user_id: &UserId,
    version: &RoomVersionId,
    reason: Option<&str>,
) -> Result<()> {
    let (invite_id, invite) = hs
        .storage
        .membership_event(room_id.as_str(), user_id.as_str())
        .await?
        .ok_or_else(|| Error::NotFound("no invite to decline".into()))?;
    let invite_id = EventId::parse(&invite_id).map_err(|e| Error::Internal(e.to_string()))?;
    let ctx = RoomContext {
        room_id: room_id.to_owned(),
        version: version.clone(),
        rules: rules_for(version)?,
    };
    let mut content = json!({ "membership": "leave" });
    if let Some(r) = reason {
        content["reason"] = json!(r);
    }
    let leave = pdu::build(
        &hs.keys,
        hs.config.server_name(),
        &ctx.rules,
        user_id,
        &NewEvent {
            event_type: "m.room.member".into(),
            content,
            state_key: Some(user_id.to_string()),
            redacts: None,
            origin_server_ts: None,
        },
        &Placement {
            room_id: Some(room_id),
            prev_events: std::slice::from_ref(&invite_id),
            auth_events: std::slice::from_ref(&invite_id),
            depth: invite["depth"].as_i64().unwrap_or(0).saturating_add(1),
        },
        MilliSecondsSinceUnixEpoch::now(),
    )?;
    store_out_of_band(hs, &ctx, &leave, None).await
}

/// Keeps this server's own membership event made through another server (a decline sent
/// with `send_leave`, a knock with `send_knock`) out of band, as the user's membership;
/// `stripped_state`: the room's state to show with it (None keeps what was kept).
pub async fn store_own_out_of_band(
    hs: &Homeserver,
    room_id: &RoomId,
    version: &RoomVersionId,
    object: CanonicalJsonObject,
    stripped_state: Option<Vec<JsonValue>>,
) -> Result<()> {
    let ctx = RoomContext {
        room_id: room_id.to_owned(),
        version: version.clone(),
        rules: rules_for(version)?,
    };
    let event_id = super::receive::event_id_of(&object, &ctx.rules)?;
    let pdu = Pdu::from_json(event_id, object).map_err(|e| Error::BadJson(e.to_string()))?;
    store_out_of_band(hs, &ctx, &pdu, stripped_state).await
}
