//! Reading rooms: events in the client format, single events, state, members, pages of the
//! timeline, with the caller's right to see them checked.

use std::collections::HashMap;

use ruma::RoomId;
use serde_json::{Value as JsonValue, json};

use super::{
    context,
    visibility::{viewer_memberships, visible, visible_or_current_state},
};
use crate::{
    error::{Error, Result},
    server::{Homeserver, now_ms},
    storage::{events::StoredEvent, relations::Aggregation, state::StateNids},
    users::Requester,
};

/// The client-server format of a stored event.
pub fn client_event(e: &StoredEvent, room_id: &str) -> JsonValue {
    let pdu = &e.pdu;
    let mut out = json!({
        "event_id": e.event_id,
        "room_id": room_id,
        "type": pdu["type"],
        "sender": pdu["sender"],
        "origin_server_ts": pdu["origin_server_ts"],
        "content": pdu["content"],
    });
    if let Some(key) = pdu.get("state_key") {
        out["state_key"] = key.clone();
    }
    if let Some(redacts) = pdu.get("redacts") {
        out["redacts"] = redacts.clone();
    } else if pdu["type"] == "m.room.redaction"
        && let Some(redacts) = pdu["content"].get("redacts")
    {
        // Room v11 moved `redacts` into the content; clients that read the top-level
        // field (matrix-js-sdk) still find it there, as Synapse serves it.
        out["redacts"] = redacts.clone();
    }
    let age = now_ms() - pdu["origin_server_ts"].as_i64().unwrap_or(0);
    out["unsigned"] = json!({ "age": age.max(0) });
    out
}

/// Client format for several events as `viewer` sees them: `unsigned.redacted_because`
/// for redacted events and `unsigned.m.relations` (latest edit, thread summary, references)
/// for related ones, each found with one query for the whole batch.
pub async fn client_events(
    hs: &Homeserver,
    events: &[StoredEvent],
    room_id: &str,
    viewer: &Requester,
) -> Result<Vec<JsonValue>> {
    let redactions: Vec<String> = events
        .iter()
        .filter_map(|e| e.redacted_by.clone())
        .collect();
    let ids: Vec<String> = events.iter().map(|e| e.event_id.clone()).collect();
    let aggregations: HashMap<String, Aggregation> = if ids.is_empty() {
        Default::default()
    } else {
        hs.storage
            .aggregations(&ids, viewer.user_id.as_str())
            .await?
            .into_iter()
            .collect()
    };
    // Events the summaries embed in full: redactions, latest thread replies, latest edits.
    let mut wanted = redactions;
    for a in aggregations.values() {
        wanted.extend(a.thread_latest.iter().cloned());
        wanted.extend(a.latest_edit.iter().cloned());
    }
    let embedded: HashMap<String, JsonValue> = if wanted.is_empty() {
        Default::default()
    } else {
        hs.storage
            .events_by_id(&wanted)
            .await?
            .iter()
            .map(|r| (r.event_id.clone(), client_event(r, room_id)))
            .collect()
    };
    let replaced_nids: Vec<i64> = events.iter().filter_map(|e| e.replaces_nid).collect();
    let replaced: HashMap<i64, StoredEvent> = if replaced_nids.is_empty() {
        Default::default()
    } else {
        hs.storage
            .events_by_nid(&replaced_nids)
            .await?
            .into_iter()
            .map(|r| (r.event_nid, r))
            .collect()
    };
    let memberships = viewer_memberships(hs, events, room_id, viewer).await?;
    // Events of erased users reach only those who were in the room when they were sent;
    // others get them redacted (as Synapse).
    let erased_for_viewer = |e: &StoredEvent| {
        e.sender_erased
            && e.pdu["sender"].as_str() != Some(viewer.user_id.as_str())
            && memberships.get(&e.event_id).map(String::as_str) != Some("join")
    };
    let redaction_rules = if events.iter().any(erased_for_viewer)
        && let Ok(id) = RoomId::parse(room_id)
    {
        Some(super::context::room_context(hs, &id).await?)
    } else {
        None
    };
    Ok(events
        .iter()
        .map(|e| {
            let mut out = client_event(e, room_id);
            if let Some(ctx) = &redaction_rules
                && erased_for_viewer(e)
                && let Ok(pruned) = super::redaction::redacted_pdu(ctx, &e.pdu)
            {
                out["content"] = pruned["content"].clone();
            }
            // MSC4115: the reader's membership at the event, so clients can tell "sent
            // before you joined" from a key they should have.
            if let Some(membership) = memberships.get(&e.event_id) {
                out["unsigned"]["membership"] = json!(membership);
            }
            // The sending device learns which of its sends this is (clients match local
            // echoes by it).
            if let Some((device, txn)) = &e.txn
                && e.pdu["sender"].as_str() == Some(viewer.user_id.as_str())
                && device.as_str() == viewer.device_id.as_str()
            {
                out["unsigned"]["transaction_id"] = json!(txn);
            }
            // What the state event replaced: clients tell a rename from a join by it.
            if let Some(prev) = e.replaces_nid.and_then(|nid| replaced.get(&nid)) {
                out["unsigned"]["replaces_state"] = json!(prev.event_id);
                out["unsigned"]["prev_content"] = prev.pdu["content"].clone();
                out["unsigned"]["prev_sender"] = prev.pdu["sender"].clone();
            }
            if let Some(r) = e.redacted_by.as_ref().and_then(|id| embedded.get(id)) {
                out["unsigned"]["redacted_because"] = r.clone();
                // The redaction's ID alone, which Synapse also gives (older clients read it).
                out["unsigned"]["redacted_by"] = r["event_id"].clone();
            }
            if let Some(a) = aggregations.get(&e.event_id) {
                let mut relations = serde_json::Map::new();
                if a.thread_count > 0 {
                    let mut thread = json!({ "count": a.thread_count, "current_user_participated": a.thread_participated });
                    if let Some(latest) = a.thread_latest.as_ref().and_then(|id| embedded.get(id)) {
                        thread["latest_event"] = latest.clone();
                    }
                    relations.insert("m.thread".into(), thread);
                }
                if let Some(edit) = a.latest_edit.as_ref().and_then(|id| embedded.get(id)) {
                    relations.insert("m.replace".into(), edit.clone());
                }
                if !a.references.is_empty() {
                    let chunk: Vec<JsonValue> = a.references.iter().map(|id| json!({ "event_id": id })).collect();
                    relations.insert("m.reference".into(), json!({ "chunk": chunk }));
                }
                if !relations.is_empty() {
                    out["unsigned"]["m.relations"] = JsonValue::Object(relations);
                }
            }
            out
        })
        .collect())
}

/// An event of the room: `Err` NotFound when the room or event is unknown, `Ok(None)` when
/// the requester may not see it.
async fn visible_event(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    event_id: &str,
) -> Result<Option<StoredEvent>> {
    require_room(hs, room_id).await?;
    let e = hs
        .storage
        .event(event_id)
        .await?
        // Events without a stream position (soft-failed ones) are not for clients.
        .filter(|e| e.room_id == room_id.as_str() && e.stream_pos.is_some())
        .ok_or_else(|| Error::NotFound("event not found".into()))?;
    Ok(visible(hs, requester, room_id, vec![e]).await?.pop())
}

/// Reading the timeline needs the room to exist; what is seen is filtered per event.
async fn require_room(hs: &Homeserver, room_id: &RoomId) -> Result<()> {
    context::room_context(hs, room_id).await.map(|_| ())
}

pub async fn event(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    event_id: &str,
) -> Result<JsonValue> {
    // Invisible and absent look alike to the client.
    let e = visible_event(hs, requester, room_id, event_id)
        .await?
        .ok_or_else(|| Error::NotFound("event not found".into()))?;
    let mut out = client_events(hs, std::slice::from_ref(&e), room_id.as_str(), requester).await?;
    Ok(out.remove(0))
}

/// `GET /events/{eventId}` (deprecated): an event by its ID alone, if the requester may
/// see it.
pub async fn event_by_id(
    hs: &Homeserver,
    requester: &Requester,
    event_id: &str,
) -> Result<JsonValue> {
    let not_found = || Error::NotFound("event not found".into());
    let stored = hs.storage.event(event_id).await?.ok_or_else(not_found)?;
    let room_id = RoomId::parse(stored.room_id.as_str()).map_err(|_| not_found())?;
    event(hs, requester, &room_id, event_id).await
}

pub struct Page {
    pub events: Vec<JsonValue>,
    /// Members of the senders, when lazy-loading members.
    pub state: Vec<JsonValue>,
    pub start: i64,
    pub end: Option<i64>,
    /// Paging back, the page reached the start of the room's timeline held here (other
    /// servers may hold more: `federation::backfill`).
    pub reached_start: bool,
}

/// Which events a `/messages` caller wants (the spec's RoomEventFilter, as it applies to one
/// room's timeline).
#[derive(Debug, Default, Clone)]
pub struct EventFilter {
    pub types: Option<Vec<String>>,
    pub not_types: Vec<String>,
    pub senders: Option<Vec<String>>,
    pub not_senders: Vec<String>,
    pub contains_url: Option<bool>,
    pub lazy_load_members: bool,
    /// With lazy loading: send member events the client already has again.
    pub include_redundant_members: bool,
    /// State events that are the room's current state pass whatever the history
    /// visibility (sync's timelines, as Synapse: a client must learn the state it has).
    pub always_current_state: bool,
    /// Users the reader ignores (`m.ignored_user_list`): their non-state events are left
    /// out (state still applies to the room, so it stays).
    pub ignored_senders: std::collections::HashSet<String>,
}

/// Event type patterns may end in `*`.
pub(crate) fn type_matches(pattern: &str, event_type: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

impl EventFilter {
    /// The spec's RoomEventFilter as ruma parses it.
    pub fn from_ruma(f: &ruma::api::client::filter::RoomEventFilter) -> Self {
        Self {
            types: f.types.clone(),
            not_types: f.not_types.clone(),
            senders: f
                .senders
                .as_ref()
                .map(|s| s.iter().map(|u| u.to_string()).collect()),
            not_senders: f.not_senders.iter().map(|u| u.to_string()).collect(),
            contains_url: f
                .url_filter
                .as_ref()
                .map(|u| *u == ruma::api::client::filter::UrlFilter::EventsWithUrl),
            lazy_load_members: !f.lazy_load_options.is_disabled(),
            always_current_state: false,
            ignored_senders: Default::default(),
            include_redundant_members: matches!(
                f.lazy_load_options,
                ruma::api::client::filter::LazyLoadOptions::Enabled {
                    include_redundant_members: true
                }
            ),
        }
    }

    pub fn accepts(&self, e: &StoredEvent) -> bool {
        let event_type = e.pdu["type"].as_str().unwrap_or_default();
        let sender = e.pdu["sender"].as_str().unwrap_or_default();
        self.types
            .as_ref()
            .is_none_or(|t| t.iter().any(|p| type_matches(p, event_type)))
            && !self.not_types.iter().any(|p| type_matches(p, event_type))
            && self
                .senders
                .as_ref()
                .is_none_or(|s| s.iter().any(|x| x == sender))
            && !self.not_senders.iter().any(|x| x == sender)
            && self
                .contains_url
                .is_none_or(|want| e.pdu["content"]["url"].is_string() == want)
            && (e.pdu.get("state_key").is_some() || !self.ignored_senders.contains(sender))
    }
}

/// The users `user` ignores, from their `m.ignored_user_list` account data.
pub async fn ignored_users(
    hs: &Homeserver,
    user: &str,
) -> Result<std::collections::HashSet<String>> {
    let list = hs
        .storage
        .account_data(user, "", "m.ignored_user_list")
        .await?;
    Ok(list
        .as_ref()
        .and_then(|l| l["ignored_users"].as_object())
        .map(|users| users.keys().cloned().collect())
        .unwrap_or_default())
}

/// `GET /messages`: tokens are stream positions; `from` is exclusive. Filtered-out events
/// still advance the token, so a page may hold fewer than `limit` events.
#[allow(clippy::too_many_arguments)]
pub async fn messages(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    from: Option<i64>,
    to: Option<i64>,
    backwards: bool,
    limit: u32,
    filter: &EventFilter,
) -> Result<Page> {
    require_room(hs, room_id).await?;
    let filter = &EventFilter {
        ignored_senders: ignored_users(hs, requester.user_id.as_str()).await?,
        ..filter.clone()
    };
    let start = match from {
        Some(f) => f,
        None if backwards => hs.storage.events_stream_position().await? + 1,
        None => 0,
    };
    let (kept, end) =
        page_events(hs, requester, room_id, start, to, backwards, limit, filter).await?;
    // A page that has events always says where it ends, as Synapse's do (the spec lets the
    // last page leave `end` out; clients and sytest expect it): the next request from
    // there then comes back empty, without `end`.
    let reached_start = backwards && end.is_none() && to.is_none();
    let end = end.or_else(|| kept.last().and_then(|e| e.stream_pos));
    let state = if filter.lazy_load_members {
        sender_members(hs, room_id, &kept).await?
    } else {
        Vec::new()
    };
    Ok(Page {
        events: client_events(hs, &kept, room_id.as_str(), requester).await?,
        state,
        start,
        end,
        reached_start,
    })
}

/// One page of a room's timeline from position `start` (exclusive) towards `to`
/// (inclusive): the events the filter and the requester's visibility let through, and the
/// token for the next page (None once the range is exhausted).
#[allow(clippy::too_many_arguments)]
pub async fn page_events(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    start: i64,
    to: Option<i64>,
    backwards: bool,
    limit: u32,
    filter: &EventFilter,
) -> Result<(Vec<StoredEvent>, Option<i64>)> {
    let limit = i64::from(limit.clamp(1, 1000));
    // Batches of at least 10, so that a small limit with a filter still looks past a run
    // of other events (as Synapse does).
    let batch = limit.max(10);
    let mut kept = Vec::new();
    let mut cursor = start;
    let mut end = None;
    // A few batches at most, so a sparse filter cannot make one request scan a whole room.
    for _ in 0..5 {
        let rows = hs
            .storage
            .room_timeline(room_id.as_str(), Some(cursor), to, backwards, batch)
            .await?;
        let exhausted = (rows.len() as i64) < batch;
        end = if exhausted {
            None
        } else {
            rows.last().and_then(|e| e.stream_pos)
        };
        let Some(last) = rows.last().and_then(|e| e.stream_pos) else {
            break;
        };
        cursor = last;
        let rows: Vec<StoredEvent> = rows.into_iter().filter(|e| filter.accepts(e)).collect();
        if filter.always_current_state {
            kept.extend(visible_or_current_state(hs, requester, room_id, rows).await?);
        } else {
            kept.extend(visible(hs, requester, room_id, rows).await?);
        }
        if exhausted || kept.len() as i64 >= limit {
            break;
        }
    }
    if kept.len() as i64 > limit {
        kept.truncate(limit as usize);
        end = kept.last().and_then(|e| e.stream_pos);
    }
    Ok((kept, end))
}

pub(crate) async fn sender_members(
    hs: &Homeserver,
    room_id: &RoomId,
    events: &[StoredEvent],
) -> Result<Vec<JsonValue>> {
    let mut senders: Vec<&str> = events
        .iter()
        .filter_map(|e| e.pdu["sender"].as_str())
        .collect();
    senders.sort();
    senders.dedup();
    let keys: Vec<(String, String)> = senders
        .iter()
        .map(|s| ("m.room.member".to_owned(), (*s).to_owned()))
        .collect();
    let current = hs
        .storage
        .current_state_keys(room_id.as_str(), &keys)
        .await?;
    let nids: Vec<i64> = current.into_values().collect();
    let members = hs.storage.events_by_nid(&nids).await?;
    Ok(members
        .iter()
        .map(|e| client_event(e, room_id.as_str()))
        .collect())
}

pub struct Context {
    pub before: Vec<JsonValue>,
    pub event: JsonValue,
    pub after: Vec<JsonValue>,
    pub state: Vec<JsonValue>,
    pub start: i64,
    pub end: i64,
}

/// `GET /context/{eventId}`: the event with up to `limit` events around it (split evenly,
/// through the filter), and the room's state: with lazy loading, only the members of the
/// events' senders.
pub async fn context(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    event_id: &str,
    limit: u32,
    filter: &EventFilter,
) -> Result<Context> {
    let filter = &EventFilter {
        ignored_senders: ignored_users(hs, requester.user_id.as_str()).await?,
        ..filter.clone()
    };
    let e = visible_event(hs, requester, room_id, event_id)
        .await?
        .ok_or_else(|| Error::Forbidden("you may not see this event".into()))?;
    let pos = e
        .stream_pos
        .ok_or_else(|| Error::NotFound("event not found".into()))?;
    let limit = i64::from(limit.min(100));
    let before_n = limit / 2;
    let after_n = limit - before_n;
    let before = hs
        .storage
        .room_timeline(room_id.as_str(), Some(pos), None, true, before_n)
        .await?;
    let after = hs
        .storage
        .room_timeline(room_id.as_str(), Some(pos), None, false, after_n)
        .await?;
    // The tokens cover what was looked at, whatever the filter let through.
    let start = before.last().and_then(|e| e.stream_pos).unwrap_or(pos);
    let end = after.last().and_then(|e| e.stream_pos).unwrap_or(pos);
    let keep = |events: Vec<StoredEvent>| -> Vec<StoredEvent> {
        events.into_iter().filter(|e| filter.accepts(e)).collect()
    };
    let before = visible(hs, requester, room_id, keep(before)).await?;
    let after = visible(hs, requester, room_id, keep(after)).await?;
    let mut event =
        client_events(hs, std::slice::from_ref(&e), room_id.as_str(), requester).await?;
    let mut state = state(hs, requester, room_id).await.unwrap_or_default();
    if filter.lazy_load_members {
        state.retain(|s| s["type"] != "m.room.member");
        let shown: Vec<StoredEvent> = before
            .iter()
            .chain(std::iter::once(&e))
            .chain(&after)
            .cloned()
            .collect();
        state.extend(sender_members(hs, room_id, &shown).await?);
    }
    Ok(Context {
        before: client_events(hs, &before, room_id.as_str(), requester).await?,
        event: event.remove(0),
        after: client_events(hs, &after, room_id.as_str(), requester).await?,
        state,
        start,
        end,
    })
}

/// `GET /v1/rooms/{roomId}/timestamp_to_event`: the visible event nearest `ts` in `dir`.
pub async fn event_at_timestamp(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    ts: i64,
    forwards: bool,
) -> Result<(String, i64)> {
    readable_state_group(hs, requester, room_id).await?;
    hs.storage
        .event_near_timestamp(room_id.as_str(), ts, forwards)
        .await?
        .ok_or_else(|| Error::NotFound("no event in that direction".into()))
}

/// Relations of one event, `/relations` style; `recurse` follows relations of relations
/// (up to 3 levels, as Synapse does).
#[allow(clippy::too_many_arguments)]
pub async fn relations(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    parent: &str,
    rel_type: Option<&str>,
    event_type: Option<&str>,
    from: Option<i64>,
    to: Option<i64>,
    backwards: bool,
    limit: u32,
    recurse: bool,
) -> Result<(Vec<JsonValue>, Option<i64>)> {
    if visible_event(hs, requester, room_id, parent)
        .await?
        .is_none()
    {
        return Err(Error::NotFound("event not found".into()));
    }
    let limit = i64::from(limit.clamp(1, 1000));
    let mut parents = vec![parent.to_owned()];
    if recurse {
        let mut frontier = parents.clone();
        for _ in 0..3 {
            let children = hs
                .storage
                .relating_events(&frontier, None, None, None, None, false, 10_000)
                .await?;
            frontier = children
                .into_iter()
                .map(|c| c.event_id)
                .filter(|id| !parents.contains(id))
                .collect();
            if frontier.is_empty() {
                break;
            }
            parents.extend(frontier.iter().cloned());
        }
    }
    let rows = hs
        .storage
        .relating_events(&parents, rel_type, event_type, from, to, backwards, limit)
        .await?;
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().and_then(|e| e.stream_pos))
        .flatten();
    let rows = visible(hs, requester, room_id, rows).await?;
    Ok((
        client_events(hs, &rows, room_id.as_str(), requester).await?,
        next,
    ))
}

/// `GET /v1/rooms/{roomId}/threads`: roots by latest activity; `from` is a position.
pub async fn threads(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    participated_only: bool,
    from: Option<i64>,
    limit: u32,
) -> Result<(Vec<JsonValue>, Option<i64>)> {
    require_room(hs, room_id).await?;
    let limit = i64::from(limit.clamp(1, 100));
    let participant = participated_only.then_some(requester.user_id.as_str());
    let roots = hs
        .storage
        .thread_roots(room_id.as_str(), participant, from, limit)
        .await?;
    let next = (roots.len() as i64 == limit)
        .then(|| roots.last().map(|r| r.1))
        .flatten();
    let ids: Vec<String> = roots.iter().map(|r| r.0.clone()).collect();
    let mut events = hs.storage.events_by_id(&ids).await?;
    // keep the activity order
    events.sort_by_key(|e| ids.iter().position(|id| *id == e.event_id));
    let events = visible(hs, requester, room_id, events).await?;
    Ok((
        client_events(hs, &events, room_id.as_str(), requester).await?,
        next,
    ))
}

/// Which state a user may read: `None` for the current state (members, and anyone in a
/// world readable room); for former members, the group when they left or were banned.
async fn readable_state_group(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
) -> Result<Option<i64>> {
    context::room_context(hs, room_id).await?;
    let user = requester.user_id.as_str();
    let membership = hs.storage.membership(room_id.as_str(), user).await?;
    let world_readable =
        context::current_state_content(hs, room_id, "m.room.history_visibility", "")
            .await?
            .is_some_and(|v| v["history_visibility"] == "world_readable");
    if membership.as_deref() == Some("join") || world_readable {
        return Ok(None);
    }
    if matches!(membership.as_deref(), Some("leave" | "ban"))
        && let Some(group) = hs
            .storage
            .membership_state_group(room_id.as_str(), user)
            .await?
    {
        return Ok(Some(group));
    }
    Err(Error::Forbidden("you are not in this room".into()))
}

async fn readable_state(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
) -> Result<StateNids> {
    Ok(match readable_state_group(hs, requester, room_id).await? {
        None => hs.storage.current_state(room_id.as_str()).await?,
        Some(group) => hs.storage.state_at_group(group).await?,
    })
}

async fn state_events(
    hs: &Homeserver,
    room_id: &RoomId,
    state: StateNids,
) -> Result<Vec<JsonValue>> {
    let nids: Vec<i64> = state.into_values().collect();
    let events = hs.storage.events_by_nid(&nids).await?;
    Ok(events
        .iter()
        .map(|e| client_event(e, room_id.as_str()))
        .collect())
}

/// `GET /rooms/{roomId}/state`.
pub async fn state(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
) -> Result<Vec<JsonValue>> {
    let state = readable_state(hs, requester, room_id).await?;
    state_events(hs, room_id, state).await
}

/// `GET /rooms/{roomId}/state/{type}/{key}`: the content.
/// `GET /rooms/{roomId}/state/{type}/{key}`: the content, or with `whole_event`
/// (`?format=event`) the event in the client format.
pub async fn state_event(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    event_type: &str,
    state_key: &str,
    whole_event: bool,
) -> Result<JsonValue> {
    let state = readable_state(hs, requester, room_id).await?;
    let not_found = || Error::NotFound("state event not found".into());
    let nid = state
        .get(&(event_type.to_owned(), state_key.to_owned()))
        .ok_or_else(not_found)?;
    let events = hs.storage.events_by_nid(&[*nid]).await?;
    let event = events.first().ok_or_else(not_found)?;
    Ok(if whole_event {
        client_event(event, room_id.as_str())
    } else {
        event.pdu["content"].clone()
    })
}

/// `GET /rooms/{roomId}/members`; with `at`, the membership as of that stream position
/// (never later than what the reader may see).
pub async fn members(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    at: Option<i64>,
) -> Result<Vec<JsonValue>> {
    let readable = readable_state(hs, requester, room_id).await?;
    let state = match at {
        None => readable,
        Some(pos) => {
            let group = hs
                .storage
                .state_group_at_position(room_id.as_str(), pos)
                .await?;
            let at_pos = match group {
                Some(g) => hs.storage.state_at_group(g).await?,
                None => Default::default(),
            };
            // A former member cannot look past their leave: the earlier of the two.
            let limit = readable.values().copied().max().unwrap_or(0);
            if at_pos.values().copied().max().unwrap_or(0) > limit {
                readable
            } else {
                at_pos
            }
        }
    };
    let members: StateNids = state
        .into_iter()
        .filter(|((t, _), _)| t == "m.room.member")
        .collect();
    state_events(hs, room_id, members).await
}
