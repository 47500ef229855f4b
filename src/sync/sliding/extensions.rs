//! Sliding sync extensions: to_device, e2ee, account_data, receipts, typing. The last
//! three apply to the rooms of the lists and subscriptions they name (all by default).

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::Deserialize;
use serde_json::{Map, Value as JsonValue, json};

use super::Previous;
use crate::{
    e2ee::{keys, to_device},
    error::{Error, Result},
    push::rules as push_rules,
    server::{Homeserver, now_ms},
    storage::{streams::Positions, sync::ReceiptRow},
    sync::receipt_event,
    users::Requester,
};

#[derive(Debug, Default, Deserialize)]
pub struct ExtensionsRequest {
    #[serde(default)]
    pub to_device: Option<ToDeviceRequest>,
    #[serde(default)]
    pub e2ee: Option<Toggle>,
    #[serde(default)]
    pub account_data: Option<ScopedRequest>,
    #[serde(default)]
    pub receipts: Option<ScopedRequest>,
    #[serde(default)]
    pub typing: Option<ScopedRequest>,
}

#[derive(Debug, Default, Deserialize)]
pub struct Toggle {
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
pub struct ToDeviceRequest {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub since: Option<String>,
}

/// An extension scoped to lists and subscribed rooms (`*`: all of them, the default).
#[derive(Debug, Default, Deserialize)]
pub struct ScopedRequest {
    #[serde(default)]
    pub enabled: Option<bool>,
    #[serde(default)]
    pub lists: Option<Vec<String>>,
    #[serde(default)]
    pub rooms: Option<Vec<String>>,
}

impl ScopedRequest {
    fn enabled(this: &Option<Self>) -> Option<&Self> {
        this.as_ref().filter(|r| r.enabled == Some(true))
    }

    /// The rooms of this response the extension covers.
    fn rooms(&self, scope: &Scope<'_>) -> Vec<String> {
        let wildcard =
            |names: &Option<Vec<String>>| names.as_ref().is_none_or(|n| n.iter().any(|x| x == "*"));
        let mut rooms: HashSet<&String> = HashSet::new();
        for (name, list) in scope.list_rooms {
            if wildcard(&self.lists) || self.lists.as_ref().is_some_and(|l| l.contains(name)) {
                rooms.extend(list);
            }
        }
        for room in scope.subscribed {
            if wildcard(&self.rooms) || self.rooms.as_ref().is_some_and(|r| r.contains(room)) {
                rooms.insert(room);
            }
        }
        rooms.into_iter().cloned().collect()
    }
}

/// The rooms a response covers, for the scoped extensions.
pub(super) struct Scope<'a> {
    pub list_rooms: &'a BTreeMap<String, Vec<String>>,
    pub subscribed: &'a [String],
    /// Rooms sent whole in this response, with their timeline's event IDs.
    pub initial_rooms: &'a [(String, Vec<String>)],
}

fn parse_since(req: &ToDeviceRequest) -> Result<i64> {
    req.since.as_deref().map_or(Ok(0), |s| {
        s.parse()
            .map_err(|_| Error::InvalidParam("extensions.to_device.since is not valid".into()))
    })
}

/// The device has the to-device messages up to the `since` it sends back: they go.
pub(super) async fn acknowledge_to_device(
    hs: &Homeserver,
    requester: &Requester,
    req: &ExtensionsRequest,
) -> Result<()> {
    if let Some(td) = req.to_device.as_ref().filter(|t| t.enabled == Some(true)) {
        let since = parse_since(td)?;
        if since > 0 {
            hs.storage
                .ack_to_device(
                    requester.user_id.as_str(),
                    requester.device_id.as_str(),
                    since,
                )
                .await?;
        }
    }
    Ok(())
}

/// The `extensions` object and whether it says nothing new.
pub(super) async fn build(
    hs: &Homeserver,
    requester: &Requester,
    req: &ExtensionsRequest,
    scope: &Scope<'_>,
    previous: &Previous,
    now: Positions,
) -> Result<(JsonValue, bool)> {
    let user = requester.user_id.as_str();
    let device = requester.device_id.as_str();
    let mut out = Map::new();
    let mut empty = true;

    if let Some(td) = req.to_device.as_ref().filter(|t| t.enabled == Some(true)) {
        let since = parse_since(td)?;
        let (events, seen) = to_device::pending(hs, user, device, since, now.to_device).await?;
        empty &= events.is_empty();
        out.insert(
            "to_device".into(),
            json!({ "next_batch": seen.max(since).to_string(), "events": events }),
        );
    }

    if req.e2ee.as_ref().is_some_and(|e| e.enabled == Some(true)) {
        let (mut changed, mut left) = (Vec::new(), Vec::new());
        if let Some(since) = previous.since {
            changed = hs
                .storage
                .device_lists_changed(user, since.device_lists, since.events)
                .await?;
            left = hs.storage.device_lists_left(user, since.events).await?;
        }
        empty &= changed.is_empty() && left.is_empty();
        let counts: BTreeMap<String, i64> = keys::one_time_key_counts(hs, user, device)
            .await?
            .into_iter()
            .map(|(algorithm, count)| (algorithm.to_string(), count.max(0)))
            .collect();
        let fallback = hs.storage.unused_fallback_key_types(user, device).await?;
        out.insert(
            "e2ee".into(),
            json!({
                "device_lists": { "changed": changed, "left": left },
                "device_one_time_keys_count": counts,
                "device_unused_fallback_key_types": fallback,
            }),
        );
    }

    let from = previous.since.unwrap_or_default();
    let initial: HashMap<&str, &Vec<String>> = scope
        .initial_rooms
        .iter()
        .map(|(r, ids)| (r.as_str(), ids))
        .collect();

    if let Some(ad) = ScopedRequest::enabled(&req.account_data) {
        let rooms: HashSet<String> = ad.rooms(scope).into_iter().collect();
        let (global, by_room) =
            account_data(hs, requester, &rooms, &initial, previous, now).await?;
        empty &= global.is_empty() && by_room.is_empty();
        out.insert(
            "account_data".into(),
            json!({ "global": global, "rooms": by_room }),
        );
    }

    if let Some(rc) = ScopedRequest::enabled(&req.receipts) {
        let rooms = rc.rooms(scope);
        let (fresh, settled): (Vec<String>, Vec<String>) = rooms
            .into_iter()
            .partition(|r| initial.contains_key(r.as_str()) || previous.since.is_none());
        let mut receipts = hs
            .storage
            .receipts_between(&settled, from.receipts, now.receipts)
            .await?;
        for room in &fresh {
            let ids = initial
                .get(room.as_str())
                .map(|v| v.as_slice())
                .unwrap_or(&[]);
            receipts.extend(
                hs.storage
                    .receipts_for_events_or_user(room, ids, user, now.receipts)
                    .await?,
            );
        }
        let mut by_room: BTreeMap<String, Vec<ReceiptRow>> = BTreeMap::new();
        for r in receipts {
            if r.receipt_type == "m.read.private" && r.user_id != user {
                continue;
            }
            by_room.entry(r.room_id.clone()).or_default().push(r);
        }
        empty &= by_room.is_empty();
        let rooms: Map<String, JsonValue> = by_room
            .iter()
            .map(|(room, rs)| (room.clone(), receipt_event(rs)))
            .collect();
        out.insert("receipts".into(), json!({ "rooms": rooms }));
    }

    if let Some(ty) = ScopedRequest::enabled(&req.typing) {
        let rooms = ty.rooms(scope);
        let (fresh, settled): (Vec<String>, Vec<String>) = rooms
            .into_iter()
            .partition(|r| initial.contains_key(r.as_str()) || previous.since.is_none());
        let mut changed: Vec<String> = hs
            .storage
            .typing_rooms_between(&settled, from.typing, now.typing)
            .await?;
        let mut typing: BTreeMap<String, Vec<String>> =
            changed.iter().map(|r| (r.clone(), Vec::new())).collect();
        changed.extend(fresh);
        for (room, who) in hs.storage.typing_in_rooms(&changed, now_ms()).await? {
            typing.entry(room).or_default().push(who);
        }
        empty &= typing.is_empty();
        let rooms: Map<String, JsonValue> = typing
            .into_iter()
            .map(|(room, users)| {
                (
                    room,
                    json!({ "type": "m.typing", "content": { "user_ids": users } }),
                )
            })
            .collect();
        out.insert("typing".into(), json!({ "rooms": rooms }));
    }
    Ok((JsonValue::Object(out), empty))
}

type RoomAccountData = BTreeMap<String, Vec<JsonValue>>;

/// Global account data changed since the previous position (all of it at first, with the
/// effective push rules), and the covered rooms' (all of a room sent whole).
async fn account_data(
    hs: &Homeserver,
    requester: &Requester,
    rooms: &HashSet<String>,
    initial: &HashMap<&str, &Vec<String>>,
    previous: &Previous,
    now: Positions,
) -> Result<(Vec<JsonValue>, RoomAccountData)> {
    let user = requester.user_id.as_str();
    let first = previous.since.is_none();
    let from = previous.since.map_or(0, |s| s.account_data);
    let mut global = Vec::new();
    let mut by_room: RoomAccountData = BTreeMap::new();
    for (room, data_type, content) in hs
        .storage
        .account_data_between(user, from, now.account_data)
        .await?
    {
        let event = json!({ "type": data_type, "content": content });
        if room.is_empty() {
            // At first the push rules are given merged over the server defaults, below.
            if !(first && data_type == push_rules::ACCOUNT_DATA_TYPE) {
                global.push(event);
            }
        } else if rooms.contains(&room) && (first || !initial.contains_key(room.as_str())) {
            by_room.entry(room).or_default().push(event);
        }
    }
    // Rooms sent whole get all their account data, not only what changed.
    let whole: HashSet<&str> = rooms
        .iter()
        .map(String::as_str)
        .filter(|r| initial.contains_key(r))
        .collect();
    if !first && !whole.is_empty() {
        for (room, data_type, content) in hs
            .storage
            .account_data_between(user, 0, now.account_data)
            .await?
        {
            if whole.contains(room.as_str()) {
                by_room
                    .entry(room)
                    .or_default()
                    .push(json!({ "type": data_type, "content": content }));
            }
        }
    }
    if first {
        let content = push_rules::account_data_content(hs, &requester.user_id).await?;
        global.push(json!({ "type": push_rules::ACCOUNT_DATA_TYPE, "content": content }));
    }
    Ok((global, by_room))
}
