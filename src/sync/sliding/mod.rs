//! Simplified sliding sync (MSC4186), the sync of Element X and matrix-sdk's room list.
//!
//! A connection (`conn_id`, per device) hands out positions (`pos`). Each position
//! records the stream positions it covered and, per room, what the client has been sent
//! (membership, the timeline position, the room config it was sent with). A request
//! naming a position gets, for the rooms its lists' ranges and subscriptions select, only
//! what changed since: a room the client has never had (or had with another membership or
//! config) comes whole with `initial`; one it has comes with its new events, or not at
//! all. Rooms are ordered by bump stamp, the position of their newest message-like event.
//! Positions live in PostgreSQL, so any process can answer the next request.

mod extensions;
mod rooms;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value as JsonValue, json};

use super::interest_keys;
use crate::sync_token::SyncToken;
use crate::{
    error::{Error, Result},
    server::{Homeserver, now_ms},
    storage::{streams::Positions, sync::MembershipRow},
    users::{Requester, presence},
};

const MAX_TIMEOUT: Duration = Duration::from_secs(300);
const MAX_TIMELINE_LIMIT: u64 = 100;
const MAX_LISTS: usize = 100;
const MAX_SUBSCRIPTIONS: usize = 1000;
const MAX_CONN_ID_LEN: usize = 256;
/// A connection unused this long is forgotten (its client starts over).
pub const CONNECTION_LIFETIME_MS: i64 = 7 * 24 * 3600 * 1000;

/// The request body. Lists, subscriptions and extensions are given in full each time.
#[derive(Debug, Default, Deserialize)]
pub struct SlidingRequest {
    #[serde(default)]
    pub conn_id: Option<String>,
    #[serde(default)]
    pub txn_id: Option<String>,
    #[serde(default)]
    pub lists: BTreeMap<String, ListRequest>,
    #[serde(default)]
    pub room_subscriptions: BTreeMap<String, RoomConfig>,
    #[serde(default)]
    pub extensions: extensions::ExtensionsRequest,
}

#[derive(Debug, Default, Deserialize)]
pub struct ListRequest {
    #[serde(default)]
    pub ranges: Vec<(u64, u64)>,
    #[serde(flatten)]
    pub config: RoomConfig,
    #[serde(default)]
    pub filters: Option<ListFilters>,
}

/// What to send of a room: which state, how many timeline events.
#[derive(Debug, Default, Clone, Deserialize)]
pub struct RoomConfig {
    #[serde(default)]
    pub required_state: Vec<(String, String)>,
    #[serde(default)]
    pub timeline_limit: u64,
}

impl RoomConfig {
    fn merge(&mut self, other: &RoomConfig) {
        self.timeline_limit = self.timeline_limit.max(other.timeline_limit);
        for pair in &other.required_state {
            if !self.required_state.contains(pair) {
                self.required_state.push(pair.clone());
            }
        }
    }

    /// Identifies the config, so a room sent with another one is sent again whole.
    fn fingerprint(&self) -> String {
        let mut pairs: Vec<String> = self
            .required_state
            .iter()
            .map(|(t, k)| format!("{t}\u{1f}{k}"))
            .collect();
        pairs.sort();
        pairs.dedup();
        format!("{}\u{1e}{}", self.timeline_limit, pairs.join("\u{1e}"))
    }
}

/// List filters, as Synapse implements them (`room_name_like` is not).
#[derive(Debug, Default, Deserialize)]
pub struct ListFilters {
    #[serde(default)]
    pub is_dm: Option<bool>,
    #[serde(default)]
    pub is_encrypted: Option<bool>,
    #[serde(default)]
    pub is_invite: Option<bool>,
    #[serde(default)]
    pub spaces: Option<Vec<String>>,
    /// `null` in the list stands for rooms without a type.
    #[serde(default)]
    pub room_types: Option<Vec<Option<String>>>,
    #[serde(default)]
    pub not_room_types: Option<Vec<Option<String>>>,
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    #[serde(default)]
    pub not_tags: Option<Vec<String>>,
}

/// What a position says the client has of a room.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SentRoom {
    /// The membership it was sent with.
    m: String,
    /// Timeline events up to this stream position are sent.
    p: i64,
    /// The room config's fingerprint.
    c: String,
}

/// The state of a connection at the position a request names.
#[derive(Debug, Default)]
struct Previous {
    since: Option<Positions>,
    rooms: HashMap<String, SentRoom>,
    lists: HashMap<String, u64>,
}

/// The whole of a sliding sync request; answers the response body.
pub async fn sliding_sync(
    hs: &Homeserver,
    requester: &Requester,
    pos: Option<&str>,
    timeout: Duration,
    set_presence: &ruma::presence::PresenceState,
    req: SlidingRequest,
) -> Result<JsonValue> {
    let user = requester.user_id.as_str();
    let device = requester.device_id.as_str();
    let conn_id = req.conn_id.clone().unwrap_or_default();
    if conn_id.len() > MAX_CONN_ID_LEN {
        return Err(Error::InvalidParam("conn_id is too long".into()));
    }
    if req.lists.len() > MAX_LISTS || req.room_subscriptions.len() > MAX_SUBSCRIPTIONS {
        return Err(Error::InvalidParam(
            "too many lists or room subscriptions".into(),
        ));
    }
    for (name, list) in &req.lists {
        if list.ranges.iter().any(|(a, b)| a > b) {
            return Err(Error::InvalidParam(format!(
                "list {name}: a range must not end before it starts"
            )));
        }
    }
    let (conn_key, used, previous) = match pos {
        Some(pos) => {
            let number: i64 = pos.parse().map_err(|_| Error::UnknownPos)?;
            let stored = hs
                .storage
                .sliding_position(user, device, &conn_id, number)
                .await?
                .ok_or(Error::UnknownPos)?;
            let since = SyncToken::parse(&stored.streams)?.0;
            let previous = Previous {
                since: Some(since),
                rooms: serde_json::from_value(stored.rooms).unwrap_or_default(),
                lists: serde_json::from_value(stored.lists).unwrap_or_default(),
            };
            (stored.conn_key, Some(number), previous)
        }
        None => {
            let key = hs
                .storage
                .sliding_reset_connection(user, device, &conn_id, now_ms())
                .await?;
            (key, None, Previous::default())
        }
    };
    let timeout = timeout.min(MAX_TIMEOUT);
    presence::on_sync(hs, &requester.user_id, set_presence, timeout).await?;
    extensions::acknowledge_to_device(hs, requester, &req.extensions).await?;

    let deadline = tokio::time::Instant::now() + timeout;
    let mut wake = hs.notifier.subscribe();
    let mut wait_over = false;
    loop {
        let now = hs.storage.positions().await?;
        let built = build(hs, requester, &req, &previous, now).await?;
        let waited_enough = wait_over || tokio::time::Instant::now() >= deadline;
        if previous.since.is_none() || !built.empty || waited_enough {
            let streams = SyncToken(now).to_string();
            let new_pos = hs
                .storage
                .sliding_save_position(
                    conn_key,
                    used,
                    &streams,
                    &serde_json::to_value(&built.sent)
                        .map_err(|e| Error::Internal(e.to_string()))?,
                    &json!(built.counts),
                    now_ms(),
                )
                .await?
                // Logged out while the request waited: its token is gone too.
                .ok_or(Error::UnknownToken { soft_logout: false })?;
            let mut body = built.body;
            body.insert("pos".into(), json!(new_pos.to_string()));
            if let Some(txn) = &req.txn_id {
                body.insert("txn_id".into(), json!(txn));
            }
            return Ok(JsonValue::Object(body));
        }
        // Not woken before the deadline: the deadline passed or the process is stopping.
        wait_over = !hs
            .notifier
            .wait_for(&mut wake, &built.interest, deadline)
            .await;
    }
}

struct Built {
    body: Map<String, JsonValue>,
    empty: bool,
    sent: HashMap<String, SentRoom>,
    counts: BTreeMap<String, u64>,
    interest: HashSet<String>,
}

/// A room the user may see in lists, with the facts lists sort and filter by.
#[derive(Debug, Clone)]
struct Candidate {
    room_id: String,
    membership: String,
    /// The membership event's position and event.
    membership_pos: i64,
    event_nid: i64,
    bump_stamp: i64,
}

async fn build(
    hs: &Homeserver,
    requester: &Requester,
    req: &SlidingRequest,
    previous: &Previous,
    now: Positions,
) -> Result<Built> {
    let user = requester.user_id.as_str();
    let memberships = hs.storage.user_memberships(user).await?;
    let interest = interest_keys(user, &memberships);
    let candidates = candidates(hs, &memberships, previous, now).await?;
    let facts = rooms::RoomFacts::load(hs, user, &candidates, req).await?;

    // Lists: filter, sort by recency, take the ranges.
    let mut configs: HashMap<String, RoomConfig> = HashMap::new();
    let mut list_rooms: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut lists_json = Map::new();
    for (name, list) in &req.lists {
        let mut matching: Vec<&Candidate> = candidates
            .iter()
            .filter(|c| facts.passes(c, list.filters.as_ref()))
            .collect();
        matching.sort_by(|a, b| {
            b.bump_stamp
                .cmp(&a.bump_stamp)
                .then_with(|| a.room_id.cmp(&b.room_id))
        });
        let count = matching.len() as u64;
        counts.insert(name.clone(), count);
        lists_json.insert(name.clone(), json!({ "count": count }));
        let mut selected = Vec::new();
        for &(start, end) in &list.ranges {
            let end = end.min(count.saturating_sub(1));
            if count == 0 || start > end {
                continue;
            }
            for c in &matching[start as usize..=end as usize] {
                configs
                    .entry(c.room_id.clone())
                    .or_default()
                    .merge(&list.config);
                selected.push(c.room_id.clone());
            }
        }
        list_rooms.insert(name.clone(), selected);
    }
    // Subscriptions: rooms the user is in (or was invited to, or left).
    let by_id: HashMap<&str, &Candidate> =
        candidates.iter().map(|c| (c.room_id.as_str(), c)).collect();
    let mut subscribed = Vec::new();
    for (room_id, config) in &req.room_subscriptions {
        if by_id.contains_key(room_id.as_str()) {
            configs.entry(room_id.clone()).or_default().merge(config);
            subscribed.push(room_id.clone());
        }
    }

    // Rooms the user read on some device since: their unread counts changed.
    let read_again: HashSet<String> = match previous.since {
        Some(since) => {
            let rooms: Vec<String> = configs.keys().cloned().collect();
            hs.storage
                .receipts_between(&rooms, since.receipts, now.receipts)
                .await?
                .into_iter()
                .filter(|r| r.user_id == user)
                .map(|r| r.room_id)
                .collect()
        }
        None => HashSet::new(),
    };
    // What to send of each room: whole, or what came after the position it was sent at.
    struct Plan<'a> {
        room_id: &'a String,
        candidate: &'a Candidate,
        config: RoomConfig,
        fingerprint: String,
        since: Option<i64>,
        upper: i64,
    }
    let plans: Vec<Plan<'_>> = configs
        .iter()
        .map(|(room_id, config)| {
            let candidate = by_id[room_id.as_str()];
            let config = RoomConfig {
                timeline_limit: config.timeline_limit.min(MAX_TIMELINE_LIMIT),
                required_state: config.required_state.clone(),
            };
            let fingerprint = config.fingerprint();
            let before = previous.rooms.get(room_id);
            let initial = before.is_none_or(|b| b.m != candidate.membership || b.c != fingerprint);
            let upper = match candidate.membership.as_str() {
                "join" => now.events,
                _ => candidate.membership_pos.min(now.events),
            };
            Plan {
                room_id,
                candidate,
                config,
                fingerprint,
                since: if initial { None } else { before.map(|b| b.p) },
                upper,
            }
        })
        .collect();
    // One query for which of the rooms the client has got new events.
    let ranges: Vec<(String, i64, i64)> = plans
        .iter()
        .filter_map(|p| p.since.map(|since| (p.room_id.clone(), since, p.upper)))
        .collect();
    let with_news: HashSet<String> = hs
        .storage
        .rooms_with_events_in_ranges(&ranges)
        .await?
        .into_iter()
        .chain(read_again)
        .collect();

    let mut sent = previous.rooms.clone();
    let mut rooms_json = Map::new();
    let mut initial_rooms = Vec::new();
    for plan in plans {
        let Plan {
            room_id,
            candidate,
            config,
            fingerprint,
            since,
            upper,
        } = plan;
        let initial = since.is_none();
        if !initial && !with_news.contains(room_id) {
            continue;
        }
        let room = rooms::room_data(
            hs,
            requester,
            candidate,
            &facts,
            &config,
            since,
            upper,
            previous.since.map(|p| p.events),
        )
        .await?;
        sent.insert(
            room_id.clone(),
            SentRoom {
                m: candidate.membership.clone(),
                p: upper,
                c: fingerprint,
            },
        );
        if let Some(room) = room {
            if initial {
                initial_rooms.push((room_id.clone(), room.timeline_ids.clone()));
            }
            rooms_json.insert(room_id.clone(), room.json);
        }
    }
    // A room the user left long ago is not theirs to be told about again.
    sent.retain(|room, _| by_id.contains_key(room.as_str()));

    let scope = extensions::Scope {
        list_rooms: &list_rooms,
        subscribed: &subscribed,
        initial_rooms: &initial_rooms,
    };
    let (extensions_json, extensions_empty) =
        extensions::build(hs, requester, &req.extensions, &scope, previous, now).await?;

    let lists_changed = previous.since.is_none()
        || counts
            .iter()
            .any(|(name, count)| previous.lists.get(name) != Some(count));
    let empty = rooms_json.is_empty() && extensions_empty && !lists_changed;
    let mut body = Map::new();
    body.insert("lists".into(), JsonValue::Object(lists_json));
    body.insert("rooms".into(), JsonValue::Object(rooms_json));
    body.insert("extensions".into(), extensions_json);
    Ok(Built {
        body,
        empty,
        sent,
        counts,
        interest,
    })
}

/// The user's rooms a list may show: joined, invited and knocked; and rooms left or
/// banned from since the previous position that the client has (so it learns of it).
async fn candidates(
    hs: &Homeserver,
    memberships: &[MembershipRow],
    previous: &Previous,
    now: Positions,
) -> Result<Vec<Candidate>> {
    let mut out = Vec::new();
    for m in memberships {
        let pos = m.stream_pos.unwrap_or(0);
        if pos > now.events {
            // Committed after `now`: the next request shows it.
            continue;
        }
        let keep = match m.membership.as_str() {
            "join" | "invite" | "knock" => true,
            "leave" | "ban" => {
                previous.since.is_some_and(|s| pos > s.events)
                    && previous
                        .rooms
                        .get(&m.room_id)
                        .is_some_and(|r| r.m != m.membership)
            }
            _ => false,
        };
        if keep {
            out.push(Candidate {
                room_id: m.room_id.clone(),
                membership: m.membership.clone(),
                membership_pos: pos,
                event_nid: m.event_nid,
                bump_stamp: pos,
            });
        }
    }
    let joined: Vec<String> = out
        .iter()
        .filter(|c| c.membership == "join")
        .map(|c| c.room_id.clone())
        .collect();
    let stamps: HashMap<String, Option<i64>> =
        hs.storage.bump_stamps(&joined).await?.into_iter().collect();
    for c in &mut out {
        if let Some(Some(stamp)) = stamps.get(&c.room_id) {
            // A join of an old room moves it up too.
            c.bump_stamp = (*stamp).max(c.membership_pos).min(now.events);
        }
    }
    Ok(out)
}
