//! To-device messages: `PUT /sendToDevice/{type}/{txnId}` and their delivery through /sync
//! (and a dehydrated device's events), each kept until the receiving device acknowledges it.

use std::collections::BTreeMap;

use serde_json::{Value as JsonValue, json};

use crate::{
    error::{Error, Result},
    server::{Homeserver, now_ms},
    storage::to_device::{OutgoingToDevice, ToDeviceRow},
    users::Requester,
};

/// Messages per sync; the rest wait for the next one (which then returns at once).
pub const SYNC_LIMIT: i64 = 100;

/// `PUT /sendToDevice/{eventType}/{txnId}`: `messages` is user -> device ID or `*` ->
/// content. Idempotent per device and transaction ID. Messages to unknown devices are
/// dropped (as in Synapse); those to other servers wait for federation.
pub async fn send_to_device(
    hs: &Homeserver,
    requester: &Requester,
    event_type: &str,
    txn_id: &str,
    messages: &BTreeMap<String, BTreeMap<String, JsonValue>>,
) -> Result<()> {
    crate::limits::check_txn_id(txn_id)?;
    let max_size = hs.config.limits.max_to_device_message_size;
    let mut outgoing = Vec::new();
    for (user, devices) in messages {
        let user_id = ruma::UserId::parse(user.as_str())
            .map_err(|_| Error::InvalidParam(format!("{user} is not a user ID")))?;
        if user_id.server_name() != hs.config.server_name() {
            tracing::warn!(%user, "to-device message for a remote user dropped: no federation");
            continue;
        }
        for (device, content) in devices {
            if !content.is_object() {
                return Err(Error::BadJson("to-device content must be an object".into()));
            }
            let size = serde_json::to_vec(content).map_or(usize::MAX, |v| v.len());
            if size > max_size {
                return Err(Error::EventTooLarge(format!(
                    "a to-device message's content may be at most {max_size} bytes"
                )));
            }
            outgoing.push(OutgoingToDevice {
                user_id: user,
                device_id: device,
                content,
            });
        }
    }
    let sender = (requester.user_id.as_str(), requester.device_id.as_str());
    hs.storage
        .send_to_device(
            sender,
            txn_id,
            event_type,
            &outgoing,
            hs.config.limits.max_pending_to_device,
            now_ms(),
        )
        .await?;
    Ok(())
}

/// A device's pending messages after `after`, up to `until`, as events; and the position
/// the device has then seen (the last one given, or `until` when all fitted).
pub async fn pending(
    hs: &Homeserver,
    user: &str,
    device: &str,
    after: i64,
    until: i64,
) -> Result<(Vec<JsonValue>, i64)> {
    let rows = hs
        .storage
        .to_device_messages(user, device, after, until, SYNC_LIMIT)
        .await?;
    let seen = if rows.len() as i64 == SYNC_LIMIT {
        rows.last().map_or(until, |r| r.stream_pos)
    } else {
        until
    };
    Ok((rows.iter().map(event).collect(), seen))
}

fn event(row: &ToDeviceRow) -> JsonValue {
    json!({ "type": row.event_type, "sender": row.sender, "content": row.content })
}
