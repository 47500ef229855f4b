//! Redactions: who may redact what, and the redacted form of an event per room version.

use ruma::{CanonicalJsonObject, EventId, OwnedEventId, RoomId};
use serde_json::{Value as JsonValue, json};

use super::{
    context::{self, RoomContext},
    pdu::NewEvent,
    power, send,
};
use crate::{
    error::{Error, Result},
    server::Homeserver,
    users::Requester,
};

/// `PUT /rooms/{roomId}/redact/{eventId}/{txnId}`. One's own events may always be
/// redacted; others' need the room's `redact` power level.
pub async fn redact(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    target: &EventId,
    reason: Option<&str>,
    txn_id: &str,
) -> Result<OwnedEventId> {
    let (sender, device) = (requester.user_id.as_str(), requester.device_id.as_str());
    if let Some(id) = send::event_for_txn(hs, &requester.user_id, device, txn_id).await? {
        return Ok(id);
    }
    let ctx = context::room_context(hs, room_id).await?;
    let event = hs
        .storage
        .event(target.as_str())
        .await?
        .ok_or_else(|| Error::NotFound("event not found".into()))?;
    if event.room_id != room_id.as_str() {
        return Err(Error::InvalidParam("the event is in another room".into()));
    }
    if event.pdu["sender"].as_str() != Some(sender) {
        // A suspended account may only take back what it said.
        if requester.is_suspended {
            return Err(Error::UserSuspended);
        }
        let mine = power::user_power(hs, &ctx, &requester.user_id).await?;
        let needed = power::required(hs, &ctx, "redact", 50).await?;
        if !power::at_least(mine, needed) {
            return Err(Error::Forbidden(
                "you may not redact other users' events".into(),
            ));
        }
    }
    let mut content = json!({});
    if let Some(r) = reason {
        content["reason"] = r.into();
    }
    let new = NewEvent {
        event_type: "m.room.redaction".into(),
        content,
        state_key: None,
        redacts: Some(target.to_owned()),
        origin_server_ts: None,
    };
    send::send_once(hs, room_id, &requester.user_id, new, device, txn_id).await
}

/// The redacted form of a stored PDU under the room version's rules.
pub fn redacted_pdu(ctx: &RoomContext, pdu: &JsonValue) -> Result<JsonValue> {
    let object: CanonicalJsonObject = serde_json::from_value(pdu.clone())
        .map_err(|e| Error::Internal(format!("stored PDU: {e}")))?;
    let redacted = ruma::canonical_json::redact(object, &ctx.rules.redaction, None)
        .map_err(|e| Error::Internal(format!("redacting: {e}")))?;
    serde_json::to_value(redacted).map_err(|e| Error::Internal(e.to_string()))
}
