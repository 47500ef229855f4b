//! The per-room part of a sliding sync: list filters, and a room's data (timeline,
//! required state, name, heroes, counts).

use std::collections::{HashMap, HashSet};

use ruma::{RoomId, api::client::filter::FilterDefinition};
use serde_json::{Map, Value as JsonValue, json};

use super::{Candidate, ListFilters, RoomConfig, SlidingRequest};
use crate::{
    error::Result,
    rooms::timeline::{self, EventFilter},
    server::Homeserver,
    storage::events::StoredEvent,
    sync::{
        SyncFilter,
        rooms::{stripped_state, sync_format, timeline_part},
    },
    users::Requester,
};

const HEROES: i64 = 5;

/// What list filters and room data need to know about the user's rooms, loaded once per
/// request for all of them.
#[derive(Default)]
pub(super) struct RoomFacts {
    direct: HashSet<String>,
    encrypted: HashSet<String>,
    room_type: HashMap<String, String>,
    name: HashMap<String, String>,
    avatar: HashMap<String, String>,
    tags: HashMap<String, HashSet<String>>,
    /// Children of the spaces the filters name.
    space_children: HashMap<String, HashSet<String>>,
}

impl RoomFacts {
    pub(super) async fn load(
        hs: &Homeserver,
        user: &str,
        candidates: &[Candidate],
        req: &SlidingRequest,
    ) -> Result<Self> {
        let mut facts = Self::default();
        let rooms: Vec<String> = candidates.iter().map(|c| c.room_id.clone()).collect();
        let types = [
            "m.room.create",
            "m.room.encryption",
            "m.room.name",
            "m.room.avatar",
        ];
        for (room, event_type, _, content) in
            hs.storage.current_state_contents(&rooms, &types).await?
        {
            match event_type.as_str() {
                "m.room.create" => {
                    if let Some(t) = content["type"].as_str() {
                        facts.room_type.insert(room, t.to_owned());
                    }
                }
                "m.room.encryption" => {
                    facts.encrypted.insert(room);
                }
                "m.room.name" => {
                    if let Some(n) = content["name"].as_str().filter(|n| !n.is_empty()) {
                        facts.name.insert(room, n.to_owned());
                    }
                }
                _ => {
                    if let Some(url) = content["url"].as_str().filter(|u| !u.is_empty()) {
                        facts.avatar.insert(room, url.to_owned());
                    }
                }
            }
        }
        if let Some(direct) = hs.storage.account_data(user, "", "m.direct").await?
            && let Some(map) = direct.as_object()
        {
            facts.direct = map
                .values()
                .filter_map(JsonValue::as_array)
                .flatten()
                .filter_map(|r| r.as_str().map(str::to_owned))
                .collect();
        }
        let filters: Vec<&ListFilters> = req
            .lists
            .values()
            .filter_map(|l| l.filters.as_ref())
            .collect();
        if filters
            .iter()
            .any(|f| f.tags.is_some() || f.not_tags.is_some())
        {
            for (room, content) in hs.storage.room_account_data_of_type(user, "m.tag").await? {
                let names = content["tags"]
                    .as_object()
                    .map(|t| t.keys().cloned().collect())
                    .unwrap_or_default();
                facts.tags.insert(room, names);
            }
        }
        let spaces: Vec<String> = filters
            .iter()
            .filter_map(|f| f.spaces.as_ref())
            .flatten()
            .cloned()
            .collect();
        for (space, _, child, content) in hs
            .storage
            .current_state_contents(&spaces, &["m.space.child"])
            .await?
        {
            // A child event without `via` has been removed.
            if content["via"].as_array().is_some_and(|v| !v.is_empty()) {
                facts.space_children.entry(space).or_default().insert(child);
            }
        }
        Ok(facts)
    }

    /// Whether a room passes a list's filters.
    pub(super) fn passes(&self, c: &Candidate, filters: Option<&ListFilters>) -> bool {
        let Some(f) = filters else {
            return true;
        };
        let room = c.room_id.as_str();
        let room_type = self.room_type.get(room).cloned();
        let tags = self.tags.get(room);
        let has_tag =
            |names: &Vec<String>| tags.is_some_and(|t| names.iter().any(|n| t.contains(n)));
        f.is_dm
            .is_none_or(|want| self.direct.contains(room) == want)
            && f.is_encrypted
                .is_none_or(|want| self.encrypted.contains(room) == want)
            && f.is_invite
                .is_none_or(|want| (c.membership == "invite") == want)
            && f.room_types
                .as_ref()
                .is_none_or(|ts| ts.contains(&room_type))
            && f.not_room_types
                .as_ref()
                .is_none_or(|ts| !ts.contains(&room_type))
            && f.spaces.as_ref().is_none_or(|spaces| {
                spaces.iter().any(|s| {
                    self.space_children
                        .get(s)
                        .is_some_and(|children| children.contains(room))
                })
            })
            && f.tags
                .as_ref()
                .is_none_or(|names| names.is_empty() || has_tag(names))
            && f.not_tags.as_ref().is_none_or(|names| !has_tag(names))
    }

    pub(super) fn is_dm(&self, room: &str) -> bool {
        self.direct.contains(room)
    }
}

/// Which state keys `required_state` asks for.
struct StateMatcher {
    everything: bool,
    whole_types: HashSet<String>,
    keys_of_any_type: HashSet<String>,
    pairs: HashSet<(String, String)>,
    lazy_members: bool,
}

impl StateMatcher {
    fn new(config: &RoomConfig, user: &str) -> Self {
        let mut m = Self {
            everything: false,
            whole_types: HashSet::new(),
            keys_of_any_type: HashSet::new(),
            pairs: HashSet::new(),
            lazy_members: false,
        };
        for (event_type, key) in &config.required_state {
            let key = if key == "$ME" { user } else { key.as_str() };
            match (event_type.as_str(), key) {
                ("*", "*") => m.everything = true,
                ("*", k) => {
                    m.keys_of_any_type.insert(k.to_owned());
                }
                (t, "*") => {
                    m.whole_types.insert(t.to_owned());
                }
                ("m.room.member", "$LAZY") => m.lazy_members = true,
                (t, k) => {
                    m.pairs.insert((t.to_owned(), k.to_owned()));
                }
            }
        }
        m
    }

    fn matches(&self, event_type: &str, key: &str, lazy: &HashSet<String>) -> bool {
        self.everything
            || self.whole_types.contains(event_type)
            || self.keys_of_any_type.contains(key)
            || self
                .pairs
                .contains(&(event_type.to_owned(), key.to_owned()))
            || (self.lazy_members && event_type == "m.room.member" && lazy.contains(key))
    }

    fn wants_nothing(&self) -> bool {
        !self.everything
            && self.whole_types.is_empty()
            && self.keys_of_any_type.is_empty()
            && self.pairs.is_empty()
            && !self.lazy_members
    }
}

pub(super) struct RoomOut {
    pub json: JsonValue,
    /// The timeline's event IDs (receipts of a room sent whole are those on them).
    pub timeline_ids: Vec<String>,
}

/// A room's data for the response: whole (`since` None) or what changed after `since`
/// up to `upper` (the caller knows there is news). None for an invite already sent.
/// `live_after` is the previous response's events position: timeline events after it are
/// `num_live`.
#[allow(clippy::too_many_arguments)]
pub(super) async fn room_data(
    hs: &Homeserver,
    requester: &Requester,
    c: &Candidate,
    facts: &RoomFacts,
    config: &RoomConfig,
    since: Option<i64>,
    upper: i64,
    live_after: Option<i64>,
) -> Result<Option<RoomOut>> {
    let room = c.room_id.as_str();
    let mut out = Map::new();
    if c.membership == "invite" {
        if since.is_some() {
            return Ok(None);
        }
        let stripped = stripped_state(hs, c.event_nid).await?;
        out.insert("initial".into(), json!(true));
        out.insert("invite_state".into(), json!(stripped));
        out.insert("bump_stamp".into(), json!(c.bump_stamp));
        if facts.is_dm(room) {
            out.insert("is_dm".into(), json!(true));
        }
        if let Some(name) = stripped
            .iter()
            .find(|e| e["type"] == "m.room.name")
            .and_then(|e| e["content"]["name"].as_str())
        {
            out.insert("name".into(), json!(name));
        }
        return Ok(Some(RoomOut {
            json: JsonValue::Object(out),
            timeline_ids: Vec::new(),
        }));
    }
    let Ok(room_id) = RoomId::parse(room) else {
        return Ok(None);
    };
    // Timeline.
    let default_filter = FilterDefinition::default();
    let limit = u32::try_from(config.timeline_limit).unwrap_or(u32::MAX);
    let (events, limited, prev_batch) = if limit == 0 {
        (Vec::new(), true, None)
    } else {
        let f = SyncFilter {
            def: &default_filter,
            timeline: EventFilter::default(),
            state: EventFilter::default(),
            limit,
            full_state: false,
            federation_format: false,
        };
        let part = timeline_part(hs, requester, &room_id, since, upper, &f).await?;
        (part.events, part.limited, Some(part.prev_batch))
    };
    let timeline = sync_format(timeline::client_events(hs, &events, room, requester).await?);

    // Required state, as of the end of the timeline.
    let matcher = StateMatcher::new(config, requester.user_id.as_str());
    let senders: HashSet<String> = events
        .iter()
        .filter_map(|e| e.pdu["sender"].as_str().map(str::to_owned))
        .collect();
    let required_state = if matcher.wants_nothing() {
        Vec::new()
    } else {
        required_state(hs, room, &matcher, &senders, since, upper).await?
    };

    if since.is_none() {
        out.insert("initial".into(), json!(true));
    }
    if let Some(name) = facts.name.get(room) {
        out.insert("name".into(), json!(name));
    } else {
        let heroes: Vec<JsonValue> = hs
            .storage
            .hero_profiles(room, requester.user_id.as_str(), HEROES)
            .await?
            .into_iter()
            .map(|(user_id, name, avatar)| {
                let mut hero = json!({ "user_id": user_id });
                if let Some(n) = name {
                    hero["displayname"] = json!(n);
                }
                if let Some(a) = avatar {
                    hero["avatar_url"] = json!(a);
                }
                hero
            })
            .collect();
        out.insert("heroes".into(), json!(heroes));
    }
    if let Some(avatar) = facts.avatar.get(room) {
        out.insert("avatar".into(), json!(avatar));
    }
    if facts.is_dm(room) {
        out.insert("is_dm".into(), json!(true));
    }
    let (joined, invited) = hs.storage.member_counts(room).await?;
    out.insert("joined_count".into(), json!(joined.max(0)));
    out.insert("invited_count".into(), json!(invited.max(0)));
    let (mut notifications, mut highlights) = (0, 0);
    for counts in hs
        .storage
        .unread_counts(requester.user_id.as_str(), room)
        .await?
    {
        notifications += counts.notifications;
        highlights += counts.highlights;
    }
    out.insert("notification_count".into(), json!(notifications.max(0)));
    out.insert("highlight_count".into(), json!(highlights.max(0)));
    out.insert("bump_stamp".into(), json!(c.bump_stamp));
    let live = live_after.map_or(0, |after| {
        events
            .iter()
            .filter(|e| e.stream_pos.is_some_and(|p| p > after))
            .count()
    });
    out.insert("num_live".into(), json!(live));
    out.insert("limited".into(), json!(limited));
    if let Some(prev_batch) = prev_batch {
        out.insert("prev_batch".into(), json!(prev_batch));
    }
    let timeline_ids = events.iter().map(|e| e.event_id.clone()).collect();
    out.insert("timeline".into(), json!(timeline));
    out.insert("required_state".into(), json!(required_state));
    Ok(Some(RoomOut {
        json: JsonValue::Object(out),
        timeline_ids,
    }))
}

/// The state `required_state` asks for as of `upper`: all matching keys for a room sent
/// whole, else the matching keys that changed after `since` (plus, lazily, the members of
/// this timeline's senders).
async fn required_state(
    hs: &Homeserver,
    room: &str,
    matcher: &StateMatcher,
    senders: &HashSet<String>,
    since: Option<i64>,
    upper: i64,
) -> Result<Vec<JsonValue>> {
    let Some(group) = hs.storage.state_group_at_position(room, upper + 1).await? else {
        return Ok(Vec::new());
    };
    let keys: Vec<(String, String)> = match since {
        None => hs
            .storage
            .state_at_group(group)
            .await?
            .into_keys()
            .filter(|(t, k)| matcher.matches(t, k, senders))
            .collect(),
        Some(since) => {
            let mut keys: Vec<(String, String)> = hs
                .storage
                .state_keys_changed_between(room, since, upper + 1)
                .await?
                .into_iter()
                .filter(|(t, k)| matcher.matches(t, k, senders))
                .collect();
            if matcher.lazy_members {
                keys.extend(
                    senders
                        .iter()
                        .map(|s| ("m.room.member".to_owned(), s.clone())),
                );
            }
            keys
        }
    };
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let nids: Vec<i64> = hs
        .storage
        .state_keys_at_group(group, &keys)
        .await?
        .into_values()
        .collect();
    let mut events: Vec<StoredEvent> = hs.storage.events_by_nid(&nids).await?;
    events.sort_by_key(|e| e.stream_pos);
    Ok(sync_format(
        events
            .iter()
            .map(|e| timeline::client_event(e, room))
            .collect(),
    ))
}
