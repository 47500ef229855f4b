//! Reads of a room that every part of the domain needs: its identity and rules, whether a
//! user is joined, stored events as PDUs, and single entries of its current state.

use ruma::{EventId, OwnedRoomId, RoomId, RoomVersionId, room_version_rules::RoomVersionRules};
use serde_json::Value as JsonValue;

use super::pdu::Pdu;
use crate::{
    error::{Error, Result},
    server::Homeserver,
    storage::events::StoredEvent,
};

/// A room's identity and rules.
#[derive(Debug, Clone)]
pub struct RoomContext {
    pub room_id: OwnedRoomId,
    pub version: RoomVersionId,
    pub rules: RoomVersionRules,
}

pub fn rules_for(version: &RoomVersionId) -> Result<RoomVersionRules> {
    version
        .rules()
        .ok_or_else(|| Error::Internal(format!("no rules for room version {version}")))
}

pub async fn room_context(hs: &Homeserver, room_id: &RoomId) -> Result<RoomContext> {
    let (version, _) = hs
        .storage
        .room(room_id.as_str())
        .await?
        .ok_or_else(|| Error::NotFound("unknown room".into()))?;
    let version = RoomVersionId::try_from(version.as_str())
        .map_err(|e| Error::Internal(format!("stored room version: {e}")))?;
    let rules = rules_for(&version)?;
    Ok(RoomContext {
        room_id: room_id.to_owned(),
        version,
        rules,
    })
}

/// The room must exist here and the requester be joined to it.
pub async fn require_joined(
    hs: &Homeserver,
    requester: &crate::users::Requester,
    room_id: &RoomId,
) -> Result<()> {
    if hs.storage.room(room_id.as_str()).await?.is_none() {
        return Err(Error::NotFound("unknown room".into()));
    }
    match hs
        .storage
        .membership(room_id.as_str(), requester.user_id.as_str())
        .await?
        .as_deref()
    {
        Some("join") => Ok(()),
        _ => Err(Error::Forbidden("you are not in this room".into())),
    }
}

pub fn parse_stored(e: &StoredEvent) -> Result<Pdu> {
    let event_id =
        EventId::parse(&e.event_id).map_err(|_| Error::Internal("stored event ID".into()))?;
    let json = serde_json::from_value(e.pdu.clone())
        .map_err(|e| Error::Internal(format!("stored PDU: {e}")))?;
    Pdu::from_json(event_id, json)
}

/// A state event of the room's current state.
pub(crate) async fn current_state_event(
    hs: &Homeserver,
    room_id: &RoomId,
    event_type: &str,
    state_key: &str,
) -> Result<Option<StoredEvent>> {
    let key = (event_type.to_owned(), state_key.to_owned());
    let state = hs
        .storage
        .current_state_keys(room_id.as_str(), std::slice::from_ref(&key))
        .await?;
    let Some(nid) = state.get(&key) else {
        return Ok(None);
    };
    Ok(hs.storage.events_by_nid(&[*nid]).await?.into_iter().next())
}

/// A state event's content as JSON, from the room's current state.
pub async fn current_state_content(
    hs: &Homeserver,
    room_id: &RoomId,
    event_type: &str,
    state_key: &str,
) -> Result<Option<JsonValue>> {
    Ok(current_state_event(hs, room_id, event_type, state_key)
        .await?
        .map(|e| e.pdu["content"].clone()))
}
