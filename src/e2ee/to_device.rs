//! To-device messages: `PUT /sendToDevice/{type}/{txnId}` and their delivery through /sync
//! (and a dehydrated device's events), each kept until the receiving device acknowledges it.

use std::collections::BTreeMap;

use ruma::{OwnedServerName, ServerName, UserId};
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
/// dropped (as in Synapse); those to other servers' users go out as one
/// `m.direct_to_device` EDU per server, queued in the same transaction.
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
    // Other servers' users' messages: one `m.direct_to_device` EDU per server.
    let mut remote: BTreeMap<OwnedServerName, BTreeMap<&str, &BTreeMap<String, JsonValue>>> =
        BTreeMap::new();
    for (user, devices) in messages {
        let user_id = UserId::parse(user.as_str())
            .map_err(|_| Error::InvalidParam(format!("{user} is not a user ID")))?;
        for content in devices.values() {
            check_content(content, max_size)?;
        }
        if user_id.server_name() != hs.config.server_name() {
            remote
                .entry(user_id.server_name().to_owned())
                .or_default()
                .insert(user.as_str(), devices);
            continue;
        }
        for (device, content) in devices {
            outgoing.push(OutgoingToDevice {
                user_id: user,
                device_id: device,
                content,
            });
        }
    }
    let remote: Vec<(String, JsonValue)> = remote
        .into_iter()
        .map(|(server, messages)| {
            let edu = json!({ "edu_type": "m.direct_to_device", "content": {
                "sender": requester.user_id, "type": event_type,
                "message_id": crate::secrets::random_id(24), "messages": messages } });
            (server.to_string(), edu)
        })
        .collect();
    let sender = (requester.user_id.as_str(), requester.device_id.as_str());
    hs.storage
        .send_to_device(
            sender,
            txn_id,
            event_type,
            &outgoing,
            &remote,
            hs.config.limits.max_pending_to_device,
            now_ms(),
        )
        .await?;
    Ok(())
}

fn check_content(content: &JsonValue, max_size: usize) -> Result<()> {
    if !content.is_object() {
        return Err(Error::BadJson("to-device content must be an object".into()));
    }
    let size = serde_json::to_vec(content).map_or(usize::MAX, |v| v.len());
    if size > max_size {
        return Err(Error::EventTooLarge(format!(
            "a to-device message's content may be at most {max_size} bytes"
        )));
    }
    Ok(())
}

/// An `m.direct_to_device` EDU from `origin`: its messages for local users' devices (or
/// `*`: all of them), once per message ID. The sender must be the origin's user;
/// messages for other servers' users, unknown devices or oversized ones are dropped.
pub async fn receive_remote(
    hs: &Homeserver,
    origin: &ServerName,
    sender: &UserId,
    event_type: &str,
    message_id: &str,
    messages: &BTreeMap<String, BTreeMap<String, JsonValue>>,
) -> Result<()> {
    if sender.server_name() != origin {
        return Err(Error::Forbidden(format!(
            "{origin} cannot speak for {sender}"
        )));
    }
    crate::limits::check_txn_id(message_id)?;
    let max_size = hs.config.limits.max_to_device_message_size;
    let mut incoming = Vec::new();
    for (user, devices) in messages {
        if !UserId::parse(user.as_str()).is_ok_and(|u| u.server_name() == hs.config.server_name()) {
            continue;
        }
        for (device, content) in devices {
            if check_content(content, max_size).is_ok() {
                incoming.push(OutgoingToDevice {
                    user_id: user,
                    device_id: device,
                    content,
                });
            }
        }
    }
    hs.storage
        .send_to_device(
            (sender.as_str(), ""),
            message_id,
            event_type,
            &incoming,
            &[],
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
