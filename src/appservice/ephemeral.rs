//! What rides beside the events in an appservice's transactions when its registration
//! asks for it (`receive_ephemeral`, MSC2409, spec v1.13): typing and public receipts in
//! rooms it cares about, presence of its users, and to-device messages for its users'
//! devices (taken out of their inboxes once queued: the transaction delivers them).

use std::collections::BTreeMap;

use serde_json::{Value as JsonValue, json};

use super::Interest;
use crate::{
    config::Registration,
    error::Result,
    server::{Homeserver, now_ms},
    storage::appservices::EphemeralPositions as Positions,
};

/// The ephemeral part of a transaction, and the stream positions it reaches.
#[derive(Default)]
pub(super) struct Ephemeral {
    pub events: Vec<JsonValue>,
    pub to_device: Vec<JsonValue>,
    /// To-device messages to take out of inboxes once the transaction is queued:
    /// (user, device, up to stream position).
    pub delivered: Vec<(String, String, i64)>,
}

pub(super) async fn collect(
    hs: &Homeserver,
    registration: &Registration,
    interest: &mut Interest,
    since: &Positions,
    now: &Positions,
) -> Result<Ephemeral> {
    let server = hs.config.server_name().as_str();
    let mut events = Vec::new();

    // Typing: the rooms whose typing changed, as the users typing now.
    let changed = hs
        .storage
        .typing_rooms_changed(since.typing, now.typing)
        .await?;
    let mut wanted_rooms = Vec::new();
    for room in changed {
        if interest.wants_room(hs, registration, &room).await? {
            wanted_rooms.push(room);
        }
    }
    let mut typing: BTreeMap<String, Vec<String>> = wanted_rooms
        .iter()
        .map(|r| (r.clone(), Vec::new()))
        .collect();
    for (room, user) in hs.storage.typing_in_rooms(&wanted_rooms, now_ms()).await? {
        typing.entry(room).or_default().push(user);
    }
    for (room, users) in typing {
        events
            .push(json!({ "type": "m.typing", "room_id": room, "content": { "user_ids": users } }));
    }

    // Public receipts, one m.receipt per room.
    let mut receipts: BTreeMap<String, JsonValue> = BTreeMap::new();
    for r in hs
        .storage
        .receipts_changed(since.receipts, now.receipts)
        .await?
    {
        if r.receipt_type == "m.read.private"
            || !interest.wants_room(hs, registration, &r.room_id).await?
        {
            continue;
        }
        let mut receipt = json!({ "ts": r.ts });
        if !r.thread_id.is_empty() {
            receipt["thread_id"] = json!(r.thread_id);
        }
        let content = receipts
            .entry(r.room_id.clone())
            .or_insert_with(|| json!({}));
        content[&r.event_id][&r.receipt_type][&r.user_id] = receipt;
    }
    for (room, content) in receipts {
        events.push(json!({ "type": "m.receipt", "room_id": room, "content": content }));
    }

    // Presence of the appservice's users.
    if crate::users::presence::is_enabled(hs) {
        let at = now_ms();
        for row in hs
            .storage
            .presence_changed(since.presence, now.presence)
            .await?
        {
            if registration.is_interested_in_user(&row.user_id, server) {
                events.push(crate::users::presence::presence_event(&row, at));
            }
        }
    }

    // To-device messages for its users' devices.
    let mut to_device = Vec::new();
    let mut delivered: BTreeMap<(String, String), i64> = BTreeMap::new();
    for m in hs
        .storage
        .to_device_between(since.to_device, now.to_device)
        .await?
    {
        if !registration.is_interested_in_user(&m.user_id, server) {
            continue;
        }
        to_device.push(json!({
            "type": m.event_type,
            "sender": m.sender,
            "content": m.content,
            "to_user_id": m.user_id,
            "to_device_id": m.device_id,
        }));
        let upto = delivered
            .entry((m.user_id.clone(), m.device_id.clone()))
            .or_default();
        *upto = (*upto).max(m.stream_pos);
    }
    Ok(Ephemeral {
        events,
        to_device,
        delivered: delivered
            .into_iter()
            .map(|((user, device), upto)| (user, device, upto))
            .collect(),
    })
}
