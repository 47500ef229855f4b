//! What other servers may read of a room (the Server-Server API's event retrieval): an
//! event under history visibility as it applies to a server, the state before an event
//! with its auth chain, an event's auth chain, and events a server is missing. Room-wide
//! reads need the server to be in the room; every read honours `m.room.server_acl`.

use std::collections::{HashMap, HashSet, VecDeque};

use ruma::{EventId, RoomId, ServerName, events::room::server_acl::RoomServerAclEventContent};
use serde_json::Value as JsonValue;

use crate::{
    error::{Error, Result},
    server::Homeserver,
    storage::events::StoredEvent,
};

/// Most events an auth chain answer holds (a big room's chain is a few thousand).
const MAX_AUTH_CHAIN: usize = 100_000;
/// Most events `get_missing_events` returns, whatever is asked.
const MAX_MISSING: usize = 20;

fn server_of(user_id: &str) -> &str {
    user_id.split_once(':').map_or("", |(_, s)| s)
}

/// Refuses a server the room's `m.room.server_acl` denies.
pub async fn check_server_acl(
    hs: &Homeserver,
    room_id: &RoomId,
    server: &ServerName,
) -> Result<()> {
    let Some(content) = hs
        .storage
        .current_state_content(room_id.as_str(), "m.room.server_acl", "")
        .await?
    else {
        return Ok(());
    };
    let Ok(acl) = serde_json::from_value::<RoomServerAclEventContent>(content) else {
        return Ok(());
    };
    if acl.is_allowed(server) {
        Ok(())
    } else {
        Err(Error::Forbidden(format!(
            "{server} is denied by the room's server ACL"
        )))
    }
}

/// The server must have a joined member in the room, and pass its ACL.
pub async fn require_server_in_room(
    hs: &Homeserver,
    server: &ServerName,
    room_id: &RoomId,
) -> Result<()> {
    if hs.storage.room(room_id.as_str()).await?.is_none() {
        return Err(Error::NotFound("unknown room".into()));
    }
    check_server_acl(hs, room_id, server).await?;
    if !hs
        .storage
        .server_joined(room_id.as_str(), server.as_str())
        .await?
    {
        return Err(Error::Forbidden(format!("{server} is not in the room")));
    }
    Ok(())
}

/// The events a server may see: history visibility at each event against its users'
/// memberships then (world_readable; a member joined then; invited then when visibility
/// is `invited`; `shared` while it has a member joined now). Events of users erased since
/// go out redacted, as Synapse serves them.
pub async fn visible_to_server(
    hs: &Homeserver,
    server: &ServerName,
    events: Vec<StoredEvent>,
) -> Result<Vec<StoredEvent>> {
    let mut joined_now: HashMap<String, bool> = HashMap::new();
    let mut verdicts: HashMap<Option<i64>, bool> = HashMap::new();
    let mut out = Vec::with_capacity(events.len());
    // Rejected events are never served.
    for event in events.into_iter().filter(|e| !e.rejected) {
        let group = event.state_after;
        let allowed = match verdicts.get(&group) {
            Some(v) => *v,
            None => {
                let state = match group {
                    Some(g) => hs.storage.state_at_group(g).await?,
                    None => Default::default(),
                };
                let mut wanted: Vec<i64> = Vec::new();
                let visibility_nid = state
                    .get(&("m.room.history_visibility".to_owned(), String::new()))
                    .copied();
                wanted.extend(visibility_nid);
                wanted.extend(
                    state
                        .iter()
                        .filter(|((t, k), _)| {
                            t == "m.room.member" && server_of(k) == server.as_str()
                        })
                        .map(|(_, nid)| *nid),
                );
                let loaded = hs.storage.events_by_nid(&wanted).await?;
                let visibility = loaded
                    .iter()
                    .find(|e| Some(e.event_nid) == visibility_nid)
                    .and_then(|e| e.pdu["content"]["history_visibility"].as_str())
                    .unwrap_or("shared")
                    .to_owned();
                let memberships: Vec<&str> = loaded
                    .iter()
                    .filter(|e| Some(e.event_nid) != visibility_nid)
                    .filter_map(|e| e.pdu["content"]["membership"].as_str())
                    .collect();
                let v = match visibility.as_str() {
                    "world_readable" => true,
                    _ if memberships.contains(&"join") => true,
                    "invited" => memberships.contains(&"invite"),
                    "shared" => match joined_now.get(&event.room_id) {
                        Some(j) => *j,
                        None => {
                            let j = hs
                                .storage
                                .server_joined(&event.room_id, server.as_str())
                                .await?;
                            joined_now.insert(event.room_id.clone(), j);
                            j
                        }
                    },
                    _ => false,
                };
                verdicts.insert(group, v);
                v
            }
        };
        if allowed {
            out.push(event);
        }
    }
    let mut contexts: HashMap<String, super::context::RoomContext> = HashMap::new();
    for event in out.iter_mut().filter(|e| e.sender_erased) {
        let ctx = match contexts.get(&event.room_id) {
            Some(ctx) => ctx,
            None => {
                let room_id = RoomId::parse(&event.room_id)
                    .map_err(|e| Error::Internal(format!("stored room ID: {e}")))?;
                let ctx = super::context::room_context(hs, &room_id).await?;
                contexts.entry(event.room_id.clone()).or_insert(ctx)
            }
        };
        event.pdu = super::redaction::redacted_pdu(ctx, &event.pdu)?;
    }
    Ok(out)
}

/// `GET /event/{eventId}`: the PDU, if the server may see it.
pub async fn event_for_server(
    hs: &Homeserver,
    server: &ServerName,
    event_id: &EventId,
) -> Result<JsonValue> {
    let not_found = || Error::NotFound("no such event, or not visible to your server".into());
    let event = hs
        .storage
        .event(event_id.as_str())
        .await?
        .ok_or_else(not_found)?;
    let room_id = RoomId::parse(&event.room_id).map_err(|_| not_found())?;
    check_server_acl(hs, &room_id, server).await?;
    visible_to_server(hs, server, vec![event])
        .await?
        .pop()
        .map(|e| e.pdu)
        .ok_or_else(not_found)
}

/// An event of the room in its timeline: outliers (stored only for lookups) and
/// soft-failed events have no state of their own to serve.
async fn event_in_room(
    hs: &Homeserver,
    room_id: &RoomId,
    event_id: &EventId,
) -> Result<StoredEvent> {
    hs.storage
        .event(event_id.as_str())
        .await?
        .filter(|e| e.room_id == room_id.as_str() && e.stream_pos.is_some())
        .ok_or_else(|| Error::NotFound("no such event in the room".into()))
}

/// `GET /state/{roomId}` and `/state_ids`: the room's state before `event_id`, and the
/// auth chain of those state events.
pub async fn state_for_server(
    hs: &Homeserver,
    server: &ServerName,
    room_id: &RoomId,
    event_id: &EventId,
) -> Result<(Vec<StoredEvent>, Vec<StoredEvent>)> {
    require_server_in_room(hs, server, room_id).await?;
    let event = event_in_room(hs, room_id, event_id).await?;
    let state = match event.state_before {
        Some(group) => hs.storage.state_at_group(group).await?,
        None => Default::default(),
    };
    let nids: Vec<i64> = state.values().copied().collect();
    let pdus = hs.storage.events_by_nid(&nids).await?;
    let chain = auth_chain(hs, &pdus).await?;
    Ok((pdus, chain))
}

/// `GET /event_auth/{roomId}/{eventId}`: the event's auth chain.
pub async fn auth_chain_for_server(
    hs: &Homeserver,
    server: &ServerName,
    room_id: &RoomId,
    event_id: &EventId,
) -> Result<Vec<StoredEvent>> {
    require_server_in_room(hs, server, room_id).await?;
    let event = event_in_room(hs, room_id, event_id).await?;
    auth_chain(hs, &[event]).await
}

fn id_list(value: &JsonValue) -> Vec<String> {
    // Room v1 and v2 reference events as [id, hashes] pairs.
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r.as_str().or_else(|| r[0].as_str()).map(str::to_owned))
        .collect()
}

/// Every event the given events' auth_events lead to (not the events themselves).
pub async fn auth_chain(hs: &Homeserver, events: &[StoredEvent]) -> Result<Vec<StoredEvent>> {
    let mut seen: HashSet<String> = HashSet::new();
    let mut queue: Vec<String> = events
        .iter()
        .flat_map(|e| id_list(&e.pdu["auth_events"]))
        .collect();
    let mut chain = Vec::new();
    while !queue.is_empty() {
        let batch: Vec<String> = queue
            .drain(..)
            .filter(|id| seen.insert(id.clone()))
            .collect();
        if batch.is_empty() {
            break;
        }
        for event in hs.storage.events_by_id(&batch).await? {
            queue.extend(id_list(&event.pdu["auth_events"]));
            chain.push(event);
        }
        if chain.len() > MAX_AUTH_CHAIN {
            return Err(Error::Internal("auth chain beyond its bound".into()));
        }
    }
    chain.sort_by_key(|e| (e.pdu["depth"].as_i64().unwrap_or(0), e.event_nid));
    Ok(chain)
}

/// `POST /get_missing_events/{roomId}`: events before `latest` (walking prev_events,
/// breadth first) that are not `earliest` nor before them, at most `limit` (20 at most)
/// and at least `min_depth` deep, oldest first, those the server may see.
pub async fn missing_events_for_server(
    hs: &Homeserver,
    server: &ServerName,
    room_id: &RoomId,
    earliest: &[String],
    latest: &[String],
    limit: usize,
    min_depth: i64,
) -> Result<Vec<StoredEvent>> {
    require_server_in_room(hs, server, room_id).await?;
    let limit = limit.clamp(1, MAX_MISSING);
    let mut seen: HashSet<String> = earliest.iter().cloned().collect();
    seen.extend(latest.iter().cloned());
    let mut queue: VecDeque<String> = VecDeque::new();
    for event in hs.storage.events_by_id(latest).await? {
        if event.room_id == room_id.as_str() {
            queue.extend(id_list(&event.pdu["prev_events"]));
        }
    }
    let mut found = Vec::new();
    while found.len() < limit && !queue.is_empty() {
        let batch: Vec<String> = queue
            .drain(..)
            .filter(|id| seen.insert(id.clone()))
            .collect();
        for event in hs.storage.events_by_id(&batch).await? {
            if event.room_id != room_id.as_str()
                || event.pdu["depth"].as_i64().unwrap_or(0) < min_depth
            {
                continue;
            }
            queue.extend(id_list(&event.pdu["prev_events"]));
            found.push(event);
            if found.len() >= limit {
                break;
            }
        }
    }
    found.sort_by_key(|e| (e.pdu["depth"].as_i64().unwrap_or(0), e.event_nid));
    visible_to_server(hs, server, found).await
}

/// Most events one `/backfill` answers (Synapse's cap too).
const MAX_BACKFILL: usize = 100;

/// `GET /backfill/{roomId}`: the events `from` and those before them (walking
/// prev_events, breadth first), at most `limit`, newest first, those the server may see.
/// Events held only as outliers are not in the DAG here and are not walked.
pub async fn backfill_for_server(
    hs: &Homeserver,
    server: &ServerName,
    room_id: &RoomId,
    from: &[String],
    limit: usize,
) -> Result<Vec<StoredEvent>> {
    require_server_in_room(hs, server, room_id).await?;
    let limit = limit.clamp(1, MAX_BACKFILL);
    let mut seen: HashSet<String> = HashSet::new();
    let mut queue: VecDeque<String> = from.iter().take(MAX_BACKFILL).cloned().collect();
    let mut found = Vec::new();
    while found.len() < limit && !queue.is_empty() {
        let batch: Vec<String> = queue
            .drain(..)
            .filter(|id| seen.insert(id.clone()))
            .collect();
        let mut events = hs.storage.events_by_id(&batch).await?;
        events.sort_by_key(|e| std::cmp::Reverse(e.pdu["depth"].as_i64().unwrap_or(0)));
        for event in events {
            if event.room_id != room_id.as_str() || event.outlier {
                continue;
            }
            queue.extend(id_list(&event.pdu["prev_events"]));
            found.push(event);
            if found.len() >= limit {
                break;
            }
        }
    }
    found.sort_by_key(|e| std::cmp::Reverse((e.pdu["depth"].as_i64().unwrap_or(0), e.event_nid)));
    visible_to_server(hs, server, found).await
}

/// `GET /timestamp_to_event/{roomId}`: the room's event nearest `ts` in the direction, for
/// a server in the room.
pub async fn event_at_timestamp_for_server(
    hs: &Homeserver,
    server: &ServerName,
    room_id: &RoomId,
    ts: i64,
    forwards: bool,
) -> Result<(String, i64)> {
    require_server_in_room(hs, server, room_id).await?;
    hs.storage
        .event_near_timestamp(room_id.as_str(), ts, forwards)
        .await?
        .ok_or_else(|| Error::NotFound("no event in that direction".into()))
}
