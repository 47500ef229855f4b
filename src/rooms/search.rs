//! `POST /search`: full-text search of the rooms a user is in (message bodies, room names
//! and topics; PostgreSQL's English stemming and ranking, `storage::search`), newest or
//! best first, with the spec's filter, context around each result, the rooms' state,
//! groupings by room and sender, highlights and paging. Only events the user may see are
//! returned; encrypted rooms have nothing indexed (their bodies are ciphertext).

use std::collections::{BTreeMap, BTreeSet};

use ruma::RoomId;
use serde::Deserialize;
use serde_json::{Value as JsonValue, json};

use super::{
    timeline::{self, EventFilter},
    visibility::visible,
};
use crate::{
    error::{Error, Result},
    server::Homeserver,
    storage::search::SearchQuery,
    users::Requester,
};

/// Results per page when the filter gives no limit, and the most one page holds.
const DEFAULT_LIMIT: i64 = 10;
const MAX_LIMIT: i64 = 100;
const MAX_TERM_BYTES: usize = 1024;
/// Most events of context either side of a result.
const MAX_CONTEXT: u32 = 20;

/// The request body of `POST /search`.
#[derive(Debug, Deserialize)]
pub struct SearchBody {
    pub search_categories: Categories,
}

#[derive(Debug, Deserialize)]
pub struct Categories {
    pub room_events: Option<RoomEventsCriteria>,
}

#[derive(Debug, Deserialize)]
pub struct RoomEventsCriteria {
    pub search_term: String,
    pub keys: Option<Vec<String>>,
    #[serde(default)]
    pub filter: SearchFilter,
    pub order_by: Option<String>,
    pub event_context: Option<EventContext>,
    #[serde(default)]
    pub include_state: bool,
    pub groupings: Option<Groupings>,
}

#[derive(Debug, Default, Deserialize)]
pub struct SearchFilter {
    pub limit: Option<i64>,
    pub rooms: Option<Vec<String>>,
    #[serde(default)]
    pub not_rooms: Vec<String>,
    pub senders: Option<Vec<String>>,
    #[serde(default)]
    pub not_senders: Vec<String>,
    pub types: Option<Vec<String>>,
    #[serde(default)]
    pub not_types: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub struct EventContext {
    pub before_limit: Option<u32>,
    pub after_limit: Option<u32>,
    #[serde(default)]
    pub include_profile: bool,
}

#[derive(Debug, Deserialize)]
pub struct Groupings {
    #[serde(default)]
    pub group_by: Vec<GroupBy>,
}

#[derive(Debug, Deserialize)]
pub struct GroupBy {
    pub key: String,
}

/// The indexed kinds of text, by the `keys` that name them.
const KEYS: [(&str, &str); 3] = [
    ("content.body", "m.room.message"),
    ("content.name", "m.room.name"),
    ("content.topic", "m.room.topic"),
];

fn types_of(criteria: &RoomEventsCriteria) -> Result<Vec<String>> {
    let keys: Vec<String> = match &criteria.keys {
        Some(keys) if !keys.is_empty() => keys.clone(),
        _ => KEYS.iter().map(|(k, _)| (*k).to_owned()).collect(),
    };
    let mut types = Vec::new();
    for key in &keys {
        let Some((_, t)) = KEYS.iter().find(|(k, _)| k == key) else {
            return Err(Error::InvalidParam(format!(
                "keys may be content.body, content.name and content.topic, not {key}"
            )));
        };
        types.push((*t).to_owned());
    }
    let f = &criteria.filter;
    let matches = |pattern: &String, t: &str| timeline::type_matches(pattern, t);
    types.retain(|t| {
        f.types
            .as_ref()
            .is_none_or(|ts| ts.iter().any(|p| matches(p, t)))
            && !f.not_types.iter().any(|p| matches(p, t))
    });
    Ok(types)
}

/// The words a client highlights: the search term's, lower-case.
fn highlights(term: &str) -> Vec<String> {
    let words: BTreeSet<String> = term
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    words.into_iter().collect()
}

pub async fn search(
    hs: &Homeserver,
    requester: &Requester,
    body: &SearchBody,
    next_batch: Option<&str>,
) -> Result<JsonValue> {
    let Some(criteria) = &body.search_categories.room_events else {
        return Ok(json!({ "search_categories": {} }));
    };
    let term = criteria.search_term.trim();
    if term.len() > MAX_TERM_BYTES {
        return Err(Error::InvalidParam(format!(
            "search_term is longer than {MAX_TERM_BYTES} bytes"
        )));
    }
    let recent = match criteria.order_by.as_deref() {
        None | Some("rank") => false,
        Some("recent") => true,
        Some(other) => {
            return Err(Error::InvalidParam(format!(
                "order_by must be rank or recent, not {other}"
            )));
        }
    };
    let mut group_by_room = false;
    let mut group_by_sender = false;
    for g in criteria.groupings.iter().flat_map(|g| &g.group_by) {
        match g.key.as_str() {
            "room_id" => group_by_room = true,
            "sender" => group_by_sender = true,
            other => {
                return Err(Error::InvalidParam(format!(
                    "groupings may be by room_id or sender, not {other}"
                )));
            }
        }
    }
    let offset = match next_batch {
        Some(token) => token
            .strip_prefix('o')
            .and_then(|n| n.parse::<i64>().ok())
            .filter(|n| *n >= 0)
            .ok_or_else(|| Error::InvalidParam("invalid next_batch".into()))?,
        None => 0,
    };
    let f = &criteria.filter;
    let limit = f.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    // The rooms the user is in, narrowed by the filter.
    let rooms: Vec<String> = hs
        .storage
        .user_memberships(requester.user_id.as_str())
        .await?
        .into_iter()
        .filter(|m| m.membership == "join")
        .map(|m| m.room_id)
        .filter(|r| f.rooms.as_ref().is_none_or(|rs| rs.contains(r)) && !f.not_rooms.contains(r))
        .collect();
    let types = types_of(criteria)?;
    let (found, count) = if term.is_empty() || rooms.is_empty() || types.is_empty() {
        (Vec::new(), 0)
    } else {
        hs.storage
            .search_events(&SearchQuery {
                rooms: &rooms,
                types: &types,
                senders: f.senders.as_deref(),
                not_senders: &f.not_senders,
                term,
                recent,
                limit,
                offset,
            })
            .await?
    };
    let page_full = found.len() as i64 == limit;
    // What the user may not see (history before they joined, say) is left out.
    let mut results = Vec::new();
    let mut shown_rooms: BTreeSet<String> = BTreeSet::new();
    let mut by_room: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut by_sender: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (rank, e) in found.into_iter().enumerate() {
        let Ok(room_id) = RoomId::parse(e.room_id.as_str()) else {
            continue;
        };
        let Some(e) = visible(hs, requester, &room_id, vec![e]).await?.pop() else {
            continue;
        };
        let event =
            timeline::client_events(hs, std::slice::from_ref(&e), room_id.as_str(), requester)
                .await?
                .remove(0);
        let sender = e.pdu["sender"].as_str().unwrap_or_default().to_owned();
        let mut result = json!({
            // Best first: the rank is the inverse of the position in the order.
            "rank": 1.0 / (offset as f64 + rank as f64 + 1.0),
            "result": event,
        });
        if let Some(context) = &criteria.event_context {
            result["context"] = event_context(hs, requester, &room_id, &e, context).await?;
        }
        by_room
            .entry(e.room_id.clone())
            .or_default()
            .push(e.event_id.clone());
        by_sender
            .entry(sender)
            .or_default()
            .push(e.event_id.clone());
        shown_rooms.insert(e.room_id.clone());
        results.push(result);
    }
    let mut room_events = json!({
        "results": results,
        "count": count,
        "highlights": highlights(term),
    });
    if page_full && offset + limit < count {
        room_events["next_batch"] = json!(format!("o{}", offset + limit));
    }
    if criteria.include_state {
        let mut state = serde_json::Map::new();
        for room in &shown_rooms {
            if let Ok(room_id) = RoomId::parse(room.as_str()) {
                state.insert(
                    room.clone(),
                    json!(timeline::state(hs, requester, &room_id).await?),
                );
            }
        }
        room_events["state"] = JsonValue::Object(state);
    }
    if group_by_room || group_by_sender {
        let group = |groups: BTreeMap<String, Vec<String>>| -> JsonValue {
            let mut out = serde_json::Map::new();
            for (order, (key, ids)) in groups.into_iter().enumerate() {
                out.insert(key, json!({ "results": ids, "order": order + 1 }));
            }
            JsonValue::Object(out)
        };
        let mut groups = serde_json::Map::new();
        if group_by_room {
            groups.insert("room_id".into(), group(by_room));
        }
        if group_by_sender {
            groups.insert("sender".into(), group(by_sender));
        }
        room_events["groups"] = JsonValue::Object(groups);
    }
    Ok(json!({ "search_categories": { "room_events": room_events } }))
}

/// The events around a result, and the senders' profiles when asked.
async fn event_context(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    e: &crate::storage::events::StoredEvent,
    context: &EventContext,
) -> Result<JsonValue> {
    let pos = e.stream_pos.unwrap_or(0);
    let filter = EventFilter::default();
    let before_n = context.before_limit.unwrap_or(5).min(MAX_CONTEXT);
    let after_n = context.after_limit.unwrap_or(5).min(MAX_CONTEXT);
    let mut before = Vec::new();
    if before_n > 0 {
        before = timeline::page_events(hs, requester, room_id, pos, None, true, before_n, &filter)
            .await?
            .0;
    }
    let mut after = Vec::new();
    if after_n > 0 {
        after = timeline::page_events(hs, requester, room_id, pos, None, false, after_n, &filter)
            .await?
            .0;
    }
    let start = before.last().and_then(|b| b.stream_pos).unwrap_or(pos);
    let end = after.last().and_then(|a| a.stream_pos).unwrap_or(pos);
    let mut out = json!({
        "events_before": timeline::client_events(hs, &before, room_id.as_str(), requester).await?,
        "events_after": timeline::client_events(hs, &after, room_id.as_str(), requester).await?,
        "start": format!("s{start}"),
        "end": format!("s{end}"),
    });
    if context.include_profile {
        let mut profiles = serde_json::Map::new();
        let members = timeline::sender_members(
            hs,
            room_id,
            &before
                .iter()
                .chain(std::iter::once(e))
                .chain(after.iter())
                .cloned()
                .collect::<Vec<_>>(),
        )
        .await?;
        for m in members {
            if let Some(user) = m["state_key"].as_str() {
                profiles.insert(
                    user.to_owned(),
                    json!({
                        "displayname": m["content"]["displayname"],
                        "avatar_url": m["content"]["avatar_url"],
                    }),
                );
            }
        }
        out["profile_info"] = JsonValue::Object(profiles);
    }
    Ok(out)
}
