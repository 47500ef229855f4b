//! Room summaries and the rooms of a space as held here, for a user or another server
//! (the walk through a space, over servers, is `federation::spaces`).

use ruma::{RoomId, ServerName};
use serde_json::{Value as JsonValue, json};

use super::directory;
use crate::{
    error::{Error, Result},
    server::Homeserver,
    users::Requester,
};

/// Who asks to see rooms of a space.
#[derive(Clone, Copy)]
pub enum Viewer<'a> {
    User(&'a Requester),
    /// Another server, for its users (`/hierarchy` over federation).
    Server(&'a ServerName),
}

/// Whether `viewer` may see a room's summary: members, invitees and knockers; anyone for
/// world-readable rooms and rooms one could join or knock on; members of an allowed room
/// for restricted ones. A server sees restricted rooms (their allowed rooms go with them,
/// for it to check its users) and rooms it has a member in.
async fn can_peek(
    hs: &Homeserver,
    viewer: Option<Viewer<'_>>,
    summary: &JsonValue,
) -> Result<bool> {
    if summary["world_readable"] == true {
        return Ok(true);
    }
    let rule = summary["join_rule"].as_str().unwrap_or("invite");
    if matches!(rule, "public" | "knock" | "knock_restricted") {
        return Ok(true);
    }
    let room_id = summary["room_id"].as_str().unwrap_or_default();
    let viewer = match viewer {
        None => return Ok(false),
        Some(Viewer::Server(server)) => {
            return Ok(
                rule == "restricted" || hs.storage.server_joined(room_id, server.as_str()).await?
            );
        }
        Some(Viewer::User(user)) => user,
    };
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
    if !can_peek(hs, viewer.map(Viewer::User), &summary).await? {
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

/// A room of a space as held here.
pub enum SpaceRoom {
    /// Not held here: another server may know it.
    NotHeld,
    /// Held, and not for this viewer.
    Hidden,
    Room(HierarchyRoom),
}

/// Whether the user may see a room known from its summary (another server's answer).
pub async fn may_see(hs: &Homeserver, viewer: &Requester, summary: &JsonValue) -> Result<bool> {
    can_peek(hs, Some(Viewer::User(viewer)), summary).await
}

/// A room held here as `viewer` may see it: its summary and its `m.space.child` events
/// with `via` (only `suggested` ones with `suggested_only`), in the spec's order.
pub async fn space_room(
    hs: &Homeserver,
    viewer: Viewer<'_>,
    room_id: &str,
    suggested_only: bool,
) -> Result<SpaceRoom> {
    let Some(summary) = directory::summaries(hs, &[room_id.to_owned()])
        .await?
        .remove(room_id)
    else {
        return Ok(SpaceRoom::NotHeld);
    };
    if !can_peek(hs, Some(viewer), &summary).await? {
        return Ok(SpaceRoom::Hidden);
    }
    let mut children = hs.storage.space_children(room_id).await?;
    // Children without `via` are removed links.
    children.retain(|(_, content, _, _)| content["via"].as_array().is_some_and(|v| !v.is_empty()));
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
    Ok(SpaceRoom::Room(HierarchyRoom {
        summary,
        children_state,
    }))
}

/// `GET /_matrix/federation/v1/hierarchy/{roomId}`: the room as `server` may see it, the
/// summaries of its children held here that it may see, and the IDs of those it may not.
pub async fn hierarchy_for_server(
    hs: &Homeserver,
    server: &ServerName,
    room_id: &RoomId,
    suggested_only: bool,
) -> Result<(HierarchyRoom, Vec<JsonValue>, Vec<String>)> {
    super::remote_reads::check_server_acl(hs, room_id, server).await?;
    let SpaceRoom::Room(room) =
        space_room(hs, Viewer::Server(server), room_id.as_str(), suggested_only).await?
    else {
        return Err(Error::NotFound(
            "room not found, or not visible to you".into(),
        ));
    };
    let mut children = Vec::new();
    let mut inaccessible = Vec::new();
    for child in &room.children_state {
        let Some(child_id) = child["state_key"].as_str() else {
            continue;
        };
        match space_room(hs, Viewer::Server(server), child_id, false).await? {
            SpaceRoom::Room(c) => children.push(c.summary),
            SpaceRoom::Hidden => inaccessible.push(child_id.to_owned()),
            SpaceRoom::NotHeld => {}
        }
    }
    Ok((room, children, inaccessible))
}
