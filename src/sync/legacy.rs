//! The deprecated sync endpoints older clients and tools still use, as views of the
//! classic sync: `GET /events` (the event stream from a sync token, waiting up to its
//! timeout), `GET /initialSync` and `GET /rooms/{roomId}/initialSync` (a room's recent
//! messages and current state, also for rooms one left or may peek into because they
//! are world-readable).

use std::time::Duration;

use ruma::{
    RoomId,
    api::client::filter::{FilterDefinition, RoomFilter},
    presence::PresenceState,
};
use serde_json::{Value as JsonValue, json};

use super::{SyncRequest, sync};
use crate::{
    error::{Error, Result},
    rooms::timeline::{self, EventFilter},
    server::Homeserver,
    sync_token::SyncToken,
    users::Requester,
};

/// Events one `/events` answer carries at most per room.
const EVENTS_PER_ROOM: u32 = 100;
/// Messages per room of an initial sync when the client names no limit.
const DEFAULT_LIMIT: u32 = 10;
const MAX_LIMIT: u32 = 100;

/// What `/events` answers.
pub struct EventsPage {
    pub chunk: Vec<JsonValue>,
    pub start: String,
    pub end: String,
}

/// A sync answer as the JSON a client would read.
fn as_json(response: ruma::api::client::sync::sync_events::v3::Response) -> Result<JsonValue> {
    use ruma::api::OutgoingResponseExt as _;
    let http = response
        .try_into_http_response::<Vec<u8>>()
        .map_err(|e| Error::Internal(format!("sync answer: {e}")))?;
    serde_json::from_slice(http.body()).map_err(|e| Error::Internal(format!("sync answer: {e}")))
}

/// An event as the legacy endpoints give it (the spec's version 1 format, which clients
/// and tools of that time read): its room, and its sender also as `user_id`.
fn with_room(event: JsonValue, room_id: &str) -> JsonValue {
    let mut event = v1(event);
    if let Some(map) = event.as_object_mut() {
        map.entry("room_id").or_insert_with(|| json!(room_id));
    }
    event
}

/// The version 1 form of an event: `user_id` beside `sender`; a presence event names
/// its user in its content too.
fn v1(mut event: JsonValue) -> JsonValue {
    let sender = event["sender"].clone();
    if sender.is_string() {
        if event["type"] == "m.presence" && event["content"].is_object() {
            event["content"]["user_id"] = sender.clone();
        }
        if let Some(map) = event.as_object_mut() {
            map.entry("user_id").or_insert(sender);
        }
    }
    event
}

/// Presence events of a sync answer, in the version 1 form.
fn presence_of(body: &JsonValue) -> Vec<JsonValue> {
    events_of(&body["presence"]).into_iter().map(v1).collect()
}

fn events_of(value: &JsonValue) -> Vec<JsonValue> {
    value["events"].as_array().cloned().unwrap_or_default()
}

/// `GET /events`: what happened after `from` (or, without it, from now on) as one list:
/// room events, typing, receipts and presence; waits up to `timeout` when there is
/// nothing yet. `room_id` narrows it to one room the user is in.
pub async fn events(
    hs: &Homeserver,
    requester: &Requester,
    from: Option<&str>,
    timeout: Duration,
    room_id: Option<&RoomId>,
) -> Result<EventsPage> {
    let start_token = match from {
        Some(token) => SyncToken::parse(token)?,
        None => SyncToken(hs.storage.positions().await?),
    };
    let start = start_token.to_string();
    match room_id {
        None if requester.is_guest => return Err(Error::GuestAccessForbidden),
        Some(room) => {
            let joined = hs
                .storage
                .membership(room.as_str(), requester.user_id.as_str())
                .await?
                .as_deref()
                == Some("join");
            if !joined {
                return peek(hs, requester, room, start_token, timeout).await;
            }
        }
        None => {}
    }
    let mut filter = FilterDefinition::default();
    filter.room.timeline.limit = Some(EVENTS_PER_ROOM.into());
    if let Some(room) = room_id {
        filter.room.rooms = Some(vec![room.to_owned()]);
    }
    let response = sync(
        hs,
        requester,
        SyncRequest {
            since: Some(start.clone()),
            filter,
            full_state: false,
            timeout,
            // Presence is left as it is: the stream would otherwise show the caller's own
            // change as news.
            set_presence: PresenceState::Offline,
        },
    )
    .await?;
    let end = response.next_batch.clone();
    let body = as_json(response)?;
    let mut chunk = Vec::new();
    for section in ["join", "leave"] {
        if let Some(rooms) = body["rooms"][section].as_object() {
            for (room, data) in rooms {
                chunk.extend(
                    events_of(&data["timeline"])
                        .into_iter()
                        .map(|e| with_room(e, room)),
                );
                chunk.extend(
                    events_of(&data["ephemeral"])
                        .into_iter()
                        .map(|e| with_room(e, room)),
                );
            }
        }
    }
    if let Some(rooms) = body["rooms"]["invite"].as_object() {
        let me = requester.user_id.as_str();
        for (room, data) in rooms {
            // The invite itself, as the stream showed it.
            chunk.extend(
                events_of(&data["invite_state"])
                    .into_iter()
                    .filter(|e| e["type"] == "m.room.member" && e["state_key"] == me)
                    .map(|e| with_room(e, room)),
            );
        }
    }
    if room_id.is_none() {
        chunk.extend(presence_of(&body));
        // Account data (tags, settings), global and per room, rides the stream too.
        chunk.extend(events_of(&body["account_data"]));
        if let Some(rooms) = body["rooms"]["join"].as_object() {
            for (room, data) in rooms {
                chunk.extend(
                    events_of(&data["account_data"])
                        .into_iter()
                        .map(|e| with_room(e, room)),
                );
            }
        }
    }
    Ok(EventsPage { chunk, start, end })
}

/// `/events?room_id=` for a room one is not in: its new events when it is
/// world-readable (peeking), else 403.
async fn peek(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    start: SyncToken,
    timeout: Duration,
) -> Result<EventsPage> {
    let visibility =
        crate::rooms::context::current_state_content(hs, room_id, "m.room.history_visibility", "")
            .await?;
    if visibility.is_none_or(|v| v["history_visibility"] != "world_readable") {
        return Err(Error::Forbidden(
            "you are not in this room and it is not world-readable".into(),
        ));
    }
    let deadline = tokio::time::Instant::now() + timeout.min(Duration::from_secs(300));
    let interest = [format!("r:{room_id}")].into();
    let mut wake = hs.notifier.subscribe();
    loop {
        let now = hs.storage.positions().await?;
        let page = timeline::messages(
            hs,
            requester,
            room_id,
            Some(start.0.events),
            None,
            false,
            EVENTS_PER_ROOM,
            &EventFilter::default(),
        )
        .await?;
        let mut chunk: Vec<JsonValue> = page.events.into_iter().map(v1).collect();
        chunk.extend(peek_ephemeral(hs, room_id, &start, &now).await?);
        if !chunk.is_empty() || tokio::time::Instant::now() >= deadline {
            let mut end = SyncToken(now);
            end.0.events = start.0.events.max(page.end.unwrap_or(start.0.events));
            return Ok(EventsPage {
                chunk,
                start: start.to_string(),
                end: end.to_string(),
            });
        }
        // Presence changes wake no room: look again within a second.
        let soon = (tokio::time::Instant::now() + Duration::from_secs(1)).min(deadline);
        hs.notifier.wait_for(&mut wake, &interest, soon).await;
    }
}

/// What a peek sees besides the room's events, since `start`: public receipts, typing,
/// and the presence of the room's members.
async fn peek_ephemeral(
    hs: &Homeserver,
    room_id: &RoomId,
    start: &SyncToken,
    now: &crate::storage::streams::Positions,
) -> Result<Vec<JsonValue>> {
    let room = [room_id.to_string()];
    let mut out = Vec::new();
    let receipts: Vec<_> = hs
        .storage
        .receipts_between(&room, start.0.receipts, now.receipts)
        .await?
        .into_iter()
        .filter(|r| r.receipt_type != "m.read.private")
        .collect();
    if !receipts.is_empty() {
        out.push(with_room(super::receipt_event(&receipts), room_id.as_str()));
    }
    if !hs
        .storage
        .typing_rooms_between(&room, start.0.typing, now.typing)
        .await?
        .is_empty()
    {
        let users: Vec<String> = hs
            .storage
            .typing_in_rooms(&room, crate::server::now_ms())
            .await?
            .into_iter()
            .map(|(_, user)| user)
            .collect();
        let typing = json!({ "type": "m.typing", "content": { "user_ids": users } });
        out.push(with_room(typing, room_id.as_str()));
    }
    if crate::users::presence::is_enabled(hs) {
        let at = crate::server::now_ms();
        for row in hs
            .storage
            .presence_in_room_between(room_id.as_str(), start.0.presence, now.presence)
            .await?
        {
            out.push(v1(crate::users::presence::presence_event(&row, at)));
        }
    }
    Ok(out)
}

/// An initial sync (whole state, no waiting) with `filter`: its `next_batch` and the
/// answer as JSON.
async fn initial(
    hs: &Homeserver,
    requester: &Requester,
    filter: FilterDefinition,
    set_presence: PresenceState,
) -> Result<(String, JsonValue)> {
    let response = sync(
        hs,
        requester,
        SyncRequest {
            since: None,
            filter,
            full_state: true,
            timeout: Duration::ZERO,
            set_presence,
        },
    )
    .await?;
    let end = response.next_batch.clone();
    Ok((end, as_json(response)?))
}

/// The legacy `visibility` of a room: public when anyone may join.
fn visibility(state: &[JsonValue]) -> &'static str {
    if state
        .iter()
        .any(|s| s["type"] == "m.room.join_rules" && s["content"]["join_rule"] == "public")
    {
        "public"
    } else {
        "private"
    }
}

/// One room of an initial sync: its recent messages, current state, membership.
fn legacy_room(room: &str, membership: &str, data: &JsonValue, end: &str) -> JsonValue {
    let timeline = events_of(&data["timeline"]);
    let messages: Vec<JsonValue> = timeline
        .iter()
        .map(|e| with_room(e.clone(), room))
        .collect();
    // The state before the timeline, then the timeline's state events: the current state.
    let mut state: Vec<JsonValue> = Vec::new();
    for e in events_of(&data["state"]).into_iter().chain(
        timeline
            .iter()
            .filter(|e| e.get("state_key").is_some())
            .cloned(),
    ) {
        state.retain(|s| !(s["type"] == e["type"] && s["state_key"] == e["state_key"]));
        state.push(with_room(e, room));
    }
    let start = data["timeline"]["prev_batch"]
        .as_str()
        .unwrap_or(end)
        .to_owned();
    json!({
        "room_id": room,
        "membership": membership,
        "messages": { "chunk": messages, "start": start, "end": end },
        "state": state,
        "visibility": visibility(&state),
        "account_data": events_of(&data["account_data"]),
    })
}

/// `GET /initialSync`: every room the user is in (and with `archived`, has left), each
/// with its last `limit` messages and current state; presence and account data.
pub async fn initial_sync(
    hs: &Homeserver,
    requester: &Requester,
    limit: Option<u32>,
    archived: bool,
) -> Result<JsonValue> {
    let mut filter = FilterDefinition::default();
    filter.room.timeline.limit = Some(limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT).into());
    filter.room.include_leave = archived;
    let (end, body) = initial(hs, requester, filter, PresenceState::Online).await?;
    let mut rooms = Vec::new();
    for (section, membership) in [("join", "join"), ("leave", "leave")] {
        if let Some(list) = body["rooms"][section].as_object() {
            for (room, data) in list {
                rooms.push(legacy_room(room, membership, data, &end));
            }
        }
    }
    if let Some(list) = body["rooms"]["invite"].as_object() {
        let me = requester.user_id.as_str();
        for (room, data) in list {
            let state = events_of(&data["invite_state"]);
            let inviter = state
                .iter()
                .find(|e| e["type"] == "m.room.member" && e["state_key"] == me)
                .and_then(|e| e["sender"].as_str())
                .map(str::to_owned);
            rooms.push(json!({
                "room_id": room,
                "membership": "invite",
                "inviter": inviter,
                "invite": { "events": state },
                "state": state,
            }));
        }
    }
    // Every room's read receipts, as one list.
    let mut receipts = Vec::new();
    if let Some(list) = body["rooms"]["join"].as_object() {
        for (room, data) in list {
            receipts.extend(
                events_of(&data["ephemeral"])
                    .into_iter()
                    .filter(|e| e["type"] == "m.receipt")
                    .map(|e| with_room(e, room)),
            );
        }
    }
    // Push rules are account data here, but not in the legacy answer (Synapse keeps them
    // apart).
    let account_data: Vec<JsonValue> = events_of(&body["account_data"])
        .into_iter()
        .filter(|e| e["type"] != "m.push_rules")
        .collect();
    Ok(json!({
        "end": end,
        "rooms": rooms,
        "presence": presence_of(&body),
        "account_data": account_data,
        "receipts": receipts,
    }))
}

/// `GET /rooms/{roomId}/initialSync`: a room's recent messages and state, for a member,
/// a former member (up to their leave) or anyone when the room is world-readable.
pub async fn room_initial_sync(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    limit: Option<u32>,
) -> Result<JsonValue> {
    let limit = limit.unwrap_or(DEFAULT_LIMIT).min(MAX_LIMIT);
    let membership = hs
        .storage
        .membership(room_id.as_str(), requester.user_id.as_str())
        .await?;
    if membership.as_deref() == Some("join") {
        let mut filter = FilterDefinition::default();
        filter.room = RoomFilter::default();
        filter.room.timeline.limit = Some(limit.into());
        filter.room.rooms = Some(vec![room_id.to_owned()]);
        let (end, body) = initial(hs, requester, filter, PresenceState::Offline).await?;
        let data = &body["rooms"]["join"][room_id.as_str()];
        let mut room = legacy_room(room_id.as_str(), "join", data, &end);
        let members: Vec<String> = room["state"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "join")
            .filter_map(|e| e["state_key"].as_str().map(str::to_owned))
            .collect();
        let mut presence: Vec<JsonValue> = presence_of(&body)
            .into_iter()
            .filter(|p| {
                p["sender"]
                    .as_str()
                    .is_some_and(|s| members.iter().any(|m| m == s))
            })
            .collect();
        // Every member has a presence, as Synapse answers it: offline when never set.
        if crate::users::presence::is_enabled(hs) {
            for member in &members {
                if !presence.iter().any(|p| p["sender"] == member.as_str()) {
                    presence.push(v1(json!({
                        "type": "m.presence",
                        "sender": member,
                        "content": { "presence": "offline" },
                    })));
                }
            }
        }
        room["presence"] = json!(presence);
        room["receipts"] = json!(
            events_of(&data["ephemeral"])
                .into_iter()
                .filter(|e| e["type"] == "m.receipt")
                .map(|e| with_room(e, room_id.as_str()))
                .collect::<Vec<_>>()
        );
        return Ok(room);
    }
    // A former member or a peek: what the reader may see (the visibility checks refuse
    // anyone else).
    let page = timeline::messages(
        hs,
        requester,
        room_id,
        None,
        None,
        true,
        limit,
        &EventFilter::default(),
    )
    .await?;
    if page.events.is_empty() && membership.is_none() {
        // Nothing visible: not a room this user may look into.
        return Err(Error::Forbidden(
            "you are not in this room and it is not world-readable".into(),
        ));
    }
    let state: Vec<JsonValue> = timeline::state(hs, requester, room_id)
        .await?
        .into_iter()
        .map(v1)
        .collect();
    let chunk: Vec<JsonValue> = page.events.into_iter().rev().map(v1).collect();
    let start = page
        .end
        .map_or_else(|| format!("s{}", page.start), |e| format!("s{e}"));
    let end = SyncToken(hs.storage.positions().await?).to_string();
    Ok(json!({
        "room_id": room_id,
        "membership": membership.unwrap_or_else(|| "leave".to_owned()),
        "messages": { "chunk": chunk, "start": start, "end": end },
        "state": state,
        "visibility": visibility(&state),
        "presence": [],
        "receipts": [],
        "account_data": [],
    }))
}
