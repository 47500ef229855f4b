//! Spaces across servers: the client's `/hierarchy` walks a space breadth first through
//! its `m.space.child` links, rooms held here read here (`rooms::spaces`), others asked of
//! the servers their link names (`/hierarchy` over federation, whose answer also carries
//! the summaries of their children); `/room_summary` of a room not held here asks the
//! same way. The federation `/hierarchy` is served from `rooms::spaces`.

use std::collections::{HashMap, HashSet, VecDeque};

use ruma::{OwnedServerName, RoomId, ServerName, api::federation::space::get_hierarchy};
use serde_json::Value as JsonValue;

use crate::{
    error::{Error, Result},
    rooms::spaces::{HierarchyRoom, SpaceRoom, Viewer, may_see, space_room},
    server::Homeserver,
    users::Requester,
};

const MAX_DEPTH: usize = 10;
/// Other servers asked for one page at most.
const MAX_REMOTE_ASKS: usize = 20;
/// Servers of one link tried at most.
const MAX_SERVERS_PER_ROOM: usize = 3;

/// `GET /v1/rooms/{roomId}/hierarchy`: breadth first from the root through the rooms the
/// caller may see. `from` is an offset into that walk.
pub async fn hierarchy(
    hs: &Homeserver,
    viewer: &Requester,
    root: &RoomId,
    suggested_only: bool,
    max_depth: Option<usize>,
    limit: usize,
    from: Option<&str>,
) -> Result<(Vec<HierarchyRoom>, Option<String>)> {
    let offset: usize = match from {
        Some(f) => f
            .strip_prefix('o')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Error::InvalidParam("invalid from token".into()))?,
        None => 0,
    };
    let limit = limit.clamp(1, 100);
    let max_depth = max_depth.unwrap_or(MAX_DEPTH).min(MAX_DEPTH);
    let mut rooms = Vec::new();
    let mut seen = HashSet::new();
    // Summaries of rooms not held here, from other servers' answers about their parents.
    let mut heard: HashMap<String, JsonValue> = HashMap::new();
    // Rooms other servers said this server may not see.
    let mut hidden: HashSet<String> = HashSet::new();
    let mut asks = 0;
    let root_via: Vec<String> = root
        .server_name()
        .map(|s| s.to_string())
        .into_iter()
        .collect();
    let mut queue = VecDeque::from([(root.to_string(), 0usize, root_via)]);
    while let Some((room_id, depth, via)) = queue.pop_front() {
        if !seen.insert(room_id.clone()) || hidden.contains(&room_id) {
            continue;
        }
        let entry = match space_room(hs, Viewer::User(viewer), &room_id, suggested_only).await? {
            SpaceRoom::Room(room) => Some(room),
            SpaceRoom::Hidden => None,
            SpaceRoom::NotHeld => {
                // A room heard of that is not a space has nothing more to ask for.
                let known_leaf = heard
                    .get(&room_id)
                    .is_some_and(|s| s["room_type"] != "m.space");
                let mut found = None;
                if !known_leaf && hs.config.federation_enabled() && asks < MAX_REMOTE_ASKS {
                    asks += 1;
                    if let Some(answer) = ask_servers(hs, &room_id, &via, suggested_only).await {
                        hidden.extend(answer.inaccessible);
                        for child in answer.children {
                            if let Some(id) = child["room_id"].as_str() {
                                heard.entry(id.to_owned()).or_insert(child);
                            }
                        }
                        found = Some(answer.room);
                    }
                }
                let found = found.or_else(|| {
                    heard.remove(&room_id).map(|summary| HierarchyRoom {
                        summary,
                        children_state: Vec::new(),
                    })
                });
                match found {
                    Some(room) if may_see(hs, viewer, &room.summary).await? => Some(room),
                    _ => None,
                }
            }
        };
        let Some(entry) = entry else {
            if room_id == root.as_str() {
                if hs.storage.room(root.as_str()).await?.is_some() {
                    return Err(Error::Forbidden("you may not see this space".into()));
                }
                return Err(Error::NotFound("unknown room".into()));
            }
            continue;
        };
        if depth < max_depth {
            for child in &entry.children_state {
                if let Some(id) = child["state_key"].as_str() {
                    let via = child["content"]["via"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .filter_map(|s| s.as_str().map(str::to_owned))
                        .collect();
                    queue.push_back((id.to_owned(), depth + 1, via));
                }
            }
        }
        rooms.push(entry);
        if rooms.len() > offset + limit {
            break;
        }
    }
    let more = rooms.len() > offset + limit;
    let page: Vec<HierarchyRoom> = rooms.into_iter().skip(offset).take(limit).collect();
    let next = more.then(|| format!("o{}", offset + limit));
    Ok((page, next))
}

/// `GET /v1/room_summary/{roomIdOrAlias}`: held here, the local summary; else the one
/// the servers in `via` (or the room ID's) give, if the user may see it.
pub async fn summary(
    hs: &Homeserver,
    viewer: Option<&Requester>,
    room_id: &RoomId,
    via: &[OwnedServerName],
) -> Result<(JsonValue, Option<String>)> {
    let local = crate::rooms::spaces::summary(hs, viewer, room_id).await;
    if !matches!(local, Err(Error::NotFound(_)))
        || !hs.config.federation_enabled()
        || hs.storage.room(room_id.as_str()).await?.is_some()
    {
        return local;
    }
    let mut servers: Vec<String> = via.iter().map(|s| s.to_string()).collect();
    servers.extend(room_id.server_name().map(|s| s.to_string()));
    let Some(Answer { room, .. }) = ask_servers(hs, room_id.as_str(), &servers, false).await else {
        return local;
    };
    let visible = match viewer {
        Some(v) => may_see(hs, v, &room.summary).await?,
        None => room.summary["world_readable"] == true || room.summary["join_rule"] == "public",
    };
    if !visible {
        return local;
    }
    let membership = match viewer {
        Some(v) => {
            hs.storage
                .membership(room_id.as_str(), v.user_id.as_str())
                .await?
        }
        None => None,
    };
    Ok((room.summary, membership))
}

/// Another server's `/hierarchy` answer.
struct Answer {
    room: HierarchyRoom,
    /// Summaries of the room's children this server may see.
    children: Vec<JsonValue>,
    /// Children this server may not see.
    inaccessible: Vec<String>,
}

/// The first answer of `via` to `/hierarchy` about the room (an answer about another
/// room is ignored).
async fn ask_servers(
    hs: &Homeserver,
    room_id: &str,
    via: &[String],
    suggested_only: bool,
) -> Option<Answer> {
    let federation = super::state(hs).ok()?;
    let room = RoomId::parse(room_id).ok()?;
    let ours = hs.config.server_name().as_str();
    for server in via
        .iter()
        .filter(|s| s.as_str() != ours)
        .take(MAX_SERVERS_PER_ROOM)
    {
        let Ok(server) = ServerName::parse(server) else {
            continue;
        };
        let mut request = get_hierarchy::v1::Request::new(room.clone());
        request.suggested_only = suggested_only;
        let answer = match federation
            .client
            .send(hs.keys.pair(), &server, request)
            .await
        {
            Ok(answer) => answer,
            Err(e) => {
                tracing::debug!(%room_id, %server, "hierarchy: {e}");
                continue;
            }
        };
        let Ok(JsonValue::Object(mut summary)) = serde_json::to_value(&answer.room) else {
            continue;
        };
        if summary.get("room_id").and_then(JsonValue::as_str) != Some(room_id) {
            continue;
        }
        spell_out_join_rule(&mut summary);
        let children_state = match summary.remove("children_state") {
            Some(JsonValue::Array(items)) => items,
            _ => Vec::new(),
        };
        let children = answer
            .children
            .iter()
            .filter_map(|c| match serde_json::to_value(c) {
                Ok(JsonValue::Object(mut child)) => {
                    spell_out_join_rule(&mut child);
                    Some(JsonValue::Object(child))
                }
                _ => None,
            })
            .collect();
        return Some(Answer {
            room: HierarchyRoom {
                summary: JsonValue::Object(summary),
                children_state,
            },
            children,
            inaccessible: answer
                .inaccessible_children
                .iter()
                .map(|r| r.to_string())
                .collect(),
        });
    }
    None
}

/// A summary without `join_rule` is of a public room (the spec's default, which ruma
/// leaves out when serializing); visibility checks read it spelled out.
fn spell_out_join_rule(summary: &mut serde_json::Map<String, JsonValue>) {
    summary
        .entry("join_rule")
        .or_insert_with(|| JsonValue::String("public".into()));
}
