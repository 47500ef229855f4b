//! Room summaries and the space hierarchy of local rooms.

use std::collections::{HashSet, VecDeque};

use ruma::RoomId;
use serde_json::{Value as JsonValue, json};

use super::directory;
use crate::{
    error::{Error, Result},
    server::Homeserver,
    users::Requester,
};

const MAX_DEPTH: usize = 10;

/// Whether `viewer` may see a room's summary: members, invitees and knockers; anyone for
/// world-readable rooms and rooms one could join or knock on; members of an allowed room
/// for restricted ones.
async fn can_peek(
    hs: &Homeserver,
    viewer: Option<&Requester>,
    summary: &JsonValue,
) -> Result<bool> {
    if summary["world_readable"] == true {
        return Ok(true);
    }
    let rule = summary["join_rule"].as_str().unwrap_or("invite");
    if matches!(rule, "public" | "knock" | "knock_restricted") {
        return Ok(true);
    }
    let Some(viewer) = viewer else {
        return Ok(false);
    };
    let room_id = summary["room_id"].as_str().unwrap_or_default();
    let membership = hs
        .storage
        .membership(room_id, viewer.user_id.as_str())
        .await?;
    if matches!(membership.as_deref(), Some("join" | "invite" | "knock")) {
        return Ok(true);
    }
    if rule == "restricted" {
        for allowed in summary["allowed_room_ids"].as_array().into_iter().flatten() {
            let room = allowed.as_str().unwrap_or_default();
            if hs
                .storage
                .membership(room, viewer.user_id.as_str())
                .await?
                .as_deref()
                == Some("join")
            {
                return Ok(true);
            }
        }
    }
    Ok(false)
}

/// `GET /v1/room_summary/{roomIdOrAlias}`: the summary, and the caller's membership.
pub async fn summary(
    hs: &Homeserver,
    viewer: Option<&Requester>,
    room_id: &RoomId,
) -> Result<(JsonValue, Option<String>)> {
    let not_found = || Error::NotFound("room not found, or not visible to you".into());
    let mut all = directory::summaries(hs, &[room_id.to_string()]).await?;
    let summary = all.remove(room_id.as_str()).ok_or_else(not_found)?;
    if !can_peek(hs, viewer, &summary).await? {
        return Err(not_found());
    }
    let membership = match viewer {
        Some(v) => {
            hs.storage
                .membership(room_id.as_str(), v.user_id.as_str())
                .await?
        }
        None => None,
    };
    Ok((summary, membership))
}

/// One room of a hierarchy page: its summary and its `m.space.child` events (stripped).
pub struct HierarchyRoom {
    pub summary: JsonValue,
    pub children_state: Vec<JsonValue>,
}

/// `GET /v1/rooms/{roomId}/hierarchy`: breadth first from the root through `m.space.child`
/// events of local rooms the caller may see. `from` is an offset into that walk.
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
    if hs.storage.room(root.as_str()).await?.is_none() {
        return Err(Error::NotFound("unknown room".into()));
    }
    let mut rooms = Vec::new();
    let mut seen = HashSet::new();
    let mut queue = VecDeque::from([(root.to_string(), 0usize)]);
    while let Some((room_id, depth)) = queue.pop_front() {
        if !seen.insert(room_id.clone()) {
            continue;
        }
        let Some(summary) = directory::summaries(hs, std::slice::from_ref(&room_id))
            .await?
            .remove(&room_id)
        else {
            continue;
        };
        if !can_peek(hs, Some(viewer), &summary).await? {
            if room_id == root.as_str() {
                return Err(Error::Forbidden("you may not see this space".into()));
            }
            continue;
        }
        let mut children = hs.storage.space_children(&room_id).await?;
        // Children without `via` are removed links.
        children
            .retain(|(_, content, _, _)| content["via"].as_array().is_some_and(|v| !v.is_empty()));
        if suggested_only {
            children.retain(|(_, content, _, _)| content["suggested"] == true);
        }
        // Spec ordering: by `order` (strings, when valid), then by time, then room ID.
        children.sort_by(|a, b| {
            let order = |c: &JsonValue| {
                c["order"]
                    .as_str()
                    .filter(|o| o.len() <= 50)
                    .map(str::to_owned)
            };
            match (order(&a.1), order(&b.1)) {
                (Some(x), Some(y)) => x.cmp(&y),
                (Some(_), None) => std::cmp::Ordering::Less,
                (None, Some(_)) => std::cmp::Ordering::Greater,
                (None, None) => a.3.cmp(&b.3).then(a.0.cmp(&b.0)),
            }
        });
        let children_state: Vec<JsonValue> = children
            .iter()
            .map(|(child, content, sender, ts)| {
                json!({ "type": "m.space.child", "state_key": child, "content": content, "sender": sender, "origin_server_ts": ts })
            })
            .collect();
        if depth < max_depth {
            for (child, _, _, _) in &children {
                queue.push_back((child.clone(), depth + 1));
            }
        }
        rooms.push(HierarchyRoom {
            summary,
            children_state,
        });
        if rooms.len() > offset + limit {
            break;
        }
    }
    let more = rooms.len() > offset + limit;
    let page: Vec<HierarchyRoom> = rooms.into_iter().skip(offset).take(limit).collect();
    let next = more.then(|| format!("o{}", offset + limit));
    Ok((page, next))
}
