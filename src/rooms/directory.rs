//! The public room directory: which rooms are listed, and the listing itself.

use std::collections::HashMap;

use ruma::{RoomId, directory::RoomNetwork};
use serde_json::{Value as JsonValue, json};

use super::{context, power};
use crate::{
    error::{Error, Result},
    server::Homeserver,
    users::Requester,
};

const SUMMARY_TYPES: &[&str] = &[
    "m.room.encryption",
    "m.room.name",
    "m.room.topic",
    "m.room.canonical_alias",
    "m.room.avatar",
    "m.room.join_rules",
    "m.room.history_visibility",
    "m.room.guest_access",
    "m.room.create",
];

pub struct Listing {
    pub chunk: Vec<JsonValue>,
    pub next_batch: Option<String>,
    pub prev_batch: Option<String>,
    pub total: usize,
}

impl Listing {
    /// The entries as the spec's `PublicRoomsChunk`s.
    pub fn typed_chunk(&self) -> Result<Vec<ruma::directory::PublicRoomsChunk>> {
        self.chunk
            .iter()
            .map(|c| {
                serde_json::from_value(c.clone())
                    .map_err(|e| Error::Internal(format!("room listing: {e}")))
            })
            .collect()
    }
}

/// `GET/POST /publicRooms`: `since` is an offset into the listing, most members first;
/// `network` the Matrix directory, a third-party network's rooms (listed by appservices),
/// or all of them.
pub async fn public_rooms(
    hs: &Homeserver,
    limit: Option<usize>,
    since: Option<&str>,
    search: Option<&str>,
    network: &RoomNetwork,
) -> Result<Listing> {
    let offset: usize = match since {
        Some(s) => s
            .strip_prefix('o')
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| Error::InvalidParam("invalid since token".into()))?,
        None => 0,
    };
    let limit = limit.unwrap_or(100).clamp(1, 500);
    let rooms = match network {
        RoomNetwork::All => hs.storage.public_rooms_of_networks(None).await?,
        RoomNetwork::ThirdParty(instance) => {
            hs.storage
                .public_rooms_of_networks(Some(instance.as_str()))
                .await?
        }
        _ => hs.storage.public_rooms().await?,
    };
    let ids: Vec<String> = rooms.iter().map(|(r, _)| r.clone()).collect();
    let mut summaries = summaries(hs, &ids).await?;
    let needle = search.map(str::to_lowercase).filter(|s| !s.is_empty());
    let entries: Vec<JsonValue> = ids
        .iter()
        .filter_map(|id| summaries.remove(id))
        .filter(|e| {
            needle.as_ref().is_none_or(|n| {
                ["name", "topic", "canonical_alias"].iter().any(|k| {
                    e[*k]
                        .as_str()
                        .is_some_and(|v| v.to_lowercase().contains(n.as_str()))
                })
            })
        })
        .collect();
    let total = entries.len();
    let chunk: Vec<JsonValue> = entries.into_iter().skip(offset).take(limit).collect();
    let next_batch = (offset + chunk.len() < total).then(|| format!("o{}", offset + chunk.len()));
    let prev_batch = (offset > 0).then(|| format!("o{}", offset.saturating_sub(limit)));
    Ok(Listing {
        chunk,
        next_batch,
        prev_batch,
        total,
    })
}

/// `PUT /directory/list/appservice/{networkId}/{roomId}`: an appservice lists a room in
/// the directory under one of its networks (or takes it off).
pub async fn set_appservice_listed(
    hs: &Homeserver,
    requester: &Requester,
    network_id: &str,
    room_id: &RoomId,
    listed: bool,
) -> Result<()> {
    let Some(appservice) = requester.appservice.as_deref() else {
        return Err(Error::Forbidden(
            "only application services list rooms under their networks".into(),
        ));
    };
    if hs.storage.room(room_id.as_str()).await?.is_none() {
        return Err(Error::NotFound("unknown room".into()));
    }
    hs.storage
        .set_appservice_room_listed(appservice, network_id, room_id.as_str(), listed)
        .await?;
    Ok(())
}

/// Room summaries (spec `RoomSummary` fields) of local rooms, from their current state.
pub async fn summaries(hs: &Homeserver, room_ids: &[String]) -> Result<HashMap<String, JsonValue>> {
    let mut state: HashMap<String, HashMap<String, JsonValue>> = HashMap::new();
    for (room, event_type, content) in hs.storage.room_summaries(room_ids, SUMMARY_TYPES).await? {
        state.entry(room).or_default().insert(event_type, content);
    }
    let mut out = HashMap::new();
    for room_id in room_ids {
        let Some((version, _)) = hs.storage.room(room_id).await? else {
            continue;
        };
        let joined = hs.storage.joined_member_count(room_id).await?;
        let s = state.get(room_id);
        let field = |t: &str, k: &str| s.and_then(|s| s.get(t)).and_then(|c| c.get(k)).cloned();
        let mut entry = json!({
            "room_id": room_id,
            "room_version": version,
            "num_joined_members": joined,
            "world_readable": field("m.room.history_visibility", "history_visibility") == Some(json!("world_readable")),
            "guest_can_join": field("m.room.guest_access", "guest_access") == Some(json!("can_join")),
            "join_rule": field("m.room.join_rules", "join_rule").unwrap_or(json!("invite")),
        });
        for (key, t, k) in [
            ("name", "m.room.name", "name"),
            ("topic", "m.room.topic", "topic"),
            ("canonical_alias", "m.room.canonical_alias", "alias"),
            ("avatar_url", "m.room.avatar", "url"),
            ("room_type", "m.room.create", "type"),
            ("encryption", "m.room.encryption", "algorithm"),
        ] {
            if let Some(v) = field(t, k).filter(JsonValue::is_string) {
                entry[key] = v;
            }
        }
        if let Some(allow) = field("m.room.join_rules", "allow").and_then(|a| a.as_array().cloned())
        {
            let rooms: Vec<JsonValue> = allow
                .iter()
                .filter_map(|a| a.get("room_id").cloned())
                .collect();
            entry["allowed_room_ids"] = rooms.into();
        }
        out.insert(room_id.clone(), entry);
    }
    Ok(out)
}

pub async fn is_listed(hs: &Homeserver, room_id: &RoomId) -> Result<bool> {
    context::room_context(hs, room_id).await?;
    Ok(hs.storage.room_is_public(room_id.as_str()).await?)
}

/// `PUT /directory/list/room/{roomId}`: room moderators (those who may set the canonical
/// alias) and server admins.
pub async fn set_listed(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    listed: bool,
) -> Result<()> {
    let ctx = context::room_context(hs, room_id).await?;
    if !requester.is_admin {
        let joined = hs
            .storage
            .membership(room_id.as_str(), requester.user_id.as_str())
            .await?;
        let mine = power::user_power(hs, &ctx, &requester.user_id).await?;
        let levels = context::current_state_content(hs, room_id, "m.room.power_levels", "").await?;
        let needed = levels
            .as_ref()
            .and_then(|pl| {
                pl["events"]["m.room.canonical_alias"]
                    .as_i64()
                    .or_else(|| pl["state_default"].as_i64())
            })
            .unwrap_or(50);
        if joined.as_deref() != Some("join") || !power::at_least(mine, needed) {
            return Err(Error::Forbidden(
                "you may not change this room's listing".into(),
            ));
        }
    }
    hs.storage.set_room_public(room_id.as_str(), listed).await?;
    Ok(())
}
