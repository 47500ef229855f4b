//! The resident side of other servers' joins, leaves and knocks: `send_join` (v2, with
//! `omit_members`), `send_leave` (v2), `send_knock`. The join event takes the path every remote PDU takes
//! (`rooms::receive`), after the checks particular to a join and this server's signature
//! when one of its users authorised a restricted join.

use ruma::{CanonicalJsonObject, CanonicalJsonValue, EventId, RoomId, ServerName, UserId};
use serde_json::value::RawValue as RawJsonValue;

use crate::{
    error::{Error, Result},
    rooms::{
        context::room_context,
        receive::{Received, receive_and_pass_on},
        remote_membership::{JoinedState, state_for_new_member},
        remote_reads::check_server_acl,
    },
    server::Homeserver,
    storage::events::StoredEvent,
};

/// A join stored, with what the joining server needs.
pub struct Joined {
    pub event: StoredEvent,
    pub state: JoinedState,
}

fn string<'a>(object: &'a CanonicalJsonObject, field: &str) -> Option<&'a str> {
    match object.get(field) {
        Some(CanonicalJsonValue::String(s)) => Some(s),
        _ => None,
    }
}

/// `PUT /send_join/{roomId}/{eventId}`.
pub async fn send_join(
    hs: &Homeserver,
    origin: &ServerName,
    room_id: &RoomId,
    event_id: &EventId,
    pdu: &RawJsonValue,
    omit_members: bool,
) -> Result<Joined> {
    let event_id = receive_membership(hs, origin, room_id, event_id, pdu, "join").await?;
    let event = hs
        .storage
        .event(event_id.as_str())
        .await?
        .ok_or_else(|| Error::Internal("the join was stored but is not found".into()))?;
    let state = state_for_new_member(hs, &event, omit_members).await?;
    Ok(Joined { event, state })
}

/// `PUT /send_knock/{roomId}/{eventId}`: a user of the origin knocks; answers the room
/// state a knocking user is shown (full PDUs).
pub async fn send_knock(
    hs: &Homeserver,
    origin: &ServerName,
    room_id: &RoomId,
    event_id: &EventId,
    pdu: &RawJsonValue,
) -> Result<Vec<serde_json::Value>> {
    receive_membership(hs, origin, room_id, event_id, pdu, "knock").await?;
    crate::rooms::invites::invite_room_state(hs, room_id, None).await
}

/// `PUT /send_leave/{roomId}/{eventId}` (v2): a user of the origin leaves, or declines an
/// invite.
pub async fn send_leave(
    hs: &Homeserver,
    origin: &ServerName,
    room_id: &RoomId,
    event_id: &EventId,
    pdu: &RawJsonValue,
) -> Result<()> {
    receive_membership(hs, origin, room_id, event_id, pdu, "leave").await?;
    Ok(())
}

/// A membership event (`membership`) of the origin's user about themselves, with the ID
/// in the path, through `rooms::receive`; a soft-failed one is refused.
async fn receive_membership(
    hs: &Homeserver,
    origin: &ServerName,
    room_id: &RoomId,
    event_id: &EventId,
    pdu: &RawJsonValue,
    membership: &str,
) -> Result<ruma::OwnedEventId> {
    let ctx = room_context(hs, room_id).await?;
    check_server_acl(hs, room_id, origin).await?;
    let mut object: CanonicalJsonObject = serde_json::from_str(pdu.get())
        .map_err(|e| Error::BadJson(format!("{membership} event: {e}")))?;
    let bad = |why: &str| {
        Error::BadJson(format!(
            "not a {membership} of the sending server's user: {why}"
        ))
    };
    if string(&object, "type") != Some("m.room.member") {
        return Err(bad("not a member event"));
    }
    let sender = string(&object, "sender").ok_or_else(|| bad("no sender"))?;
    if string(&object, "state_key") != Some(sender) {
        return Err(bad("state_key is not the sender"));
    }
    let sender = UserId::parse(sender).map_err(|_| bad("sender"))?;
    if sender.server_name() != origin {
        return Err(Error::Forbidden(format!(
            "{origin} cannot send a {membership} for a user of another server"
        )));
    }
    if string(&object, "room_id") != Some(room_id.as_str()) {
        return Err(bad("another room"));
    }
    let content = match object.get("content") {
        Some(CanonicalJsonValue::Object(c)) => c.clone(),
        _ => return Err(bad("no content")),
    };
    if !matches!(content.get("membership"), Some(CanonicalJsonValue::String(m)) if m == membership)
    {
        return Err(bad("another membership"));
    }
    if crate::rooms::receive::event_id_of(&object, &ctx.rules)? != event_id {
        return Err(Error::BadJson(
            "the event ID does not match the event".into(),
        ));
    }
    // A restricted join one of our users vouches for carries our signature too.
    if membership == "join"
        && let Some(CanonicalJsonValue::String(authoriser)) =
            content.get("join_authorised_via_users_server")
        && UserId::parse(authoriser.as_str())
            .is_ok_and(|u| u.server_name() == hs.config.server_name())
    {
        ruma::signatures::hash_and_sign_event(
            hs.config.server_name().as_str(),
            hs.keys.pair(),
            &mut object,
            &ctx.rules.redaction,
        )
        .map_err(|e| Error::BadJson(format!("join event: {e}")))?;
    }
    let keys = super::keys::pdu_keys(hs, &ctx, &object).await?;
    let (event_id, outcome) = receive_and_pass_on(hs, room_id, object, &keys).await?;
    if outcome == Received::SoftFailed {
        return Err(Error::Forbidden(format!(
            "the room's current state does not allow this {membership}"
        )));
    }
    Ok(event_id)
}
