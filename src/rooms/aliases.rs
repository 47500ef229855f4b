//! Room aliases: the local directory of `#name:server` -> room.

use ruma::{OwnedRoomAliasId, OwnedRoomId, RoomAliasId, RoomId};

use crate::{
    error::{Error, Result},
    server::Homeserver,
    users::Requester,
};

/// `#<name>:<server_name>` for a local alias name, checked.
pub fn local_alias(hs: &Homeserver, name: &str) -> Result<OwnedRoomAliasId> {
    if name.is_empty()
        || name.contains(':')
        || name.contains('#')
        || name.chars().any(char::is_whitespace)
    {
        return Err(Error::InvalidParam(
            "room_alias_name must be a bare local name".into(),
        ));
    }
    RoomAliasId::parse(format!("#{name}:{}", hs.config.server_name))
        .map_err(|e| Error::InvalidParam(format!("invalid room alias: {e}")))
}

fn check_local(hs: &Homeserver, alias: &RoomAliasId) -> Result<()> {
    if alias.server_name() != hs.config.server_name() {
        return Err(Error::InvalidParam(
            "aliases of other servers cannot be managed here".into(),
        ));
    }
    Ok(())
}

/// An alias an application service claims alone is its to make (400 `M_EXCLUSIVE`).
pub fn check_claim(hs: &Homeserver, requester: &Requester, alias: &RoomAliasId) -> Result<()> {
    match crate::users::appservice::claimed_alias(hs, alias.as_str()) {
        Some(r) if requester.appservice.as_deref() != Some(r.id.as_str()) => Err(Error::Exclusive(
            "this alias is reserved by an application service".into(),
        )),
        _ => Ok(()),
    }
}

/// `PUT /directory/room/{alias}`: members may name a room.
pub async fn create(
    hs: &Homeserver,
    requester: &Requester,
    alias: &RoomAliasId,
    room_id: &RoomId,
) -> Result<()> {
    check_local(hs, alias)?;
    check_claim(hs, requester, alias)?;
    super::context::require_joined(hs, requester, room_id).await?;
    if !hs
        .storage
        .insert_alias(alias.as_str(), room_id.as_str(), requester.user_id.as_str())
        .await?
    {
        return Err(Error::AliasInUse);
    }
    Ok(())
}

pub async fn resolve(hs: &Homeserver, alias: &RoomAliasId) -> Result<OwnedRoomId> {
    let (room_id, _) = hs
        .storage
        .alias(alias.as_str())
        .await?
        .ok_or_else(|| Error::NotFound("room alias not found".into()))?;
    RoomId::parse(room_id).map_err(|e| Error::Internal(e.to_string()))
}

/// `DELETE /directory/room/{alias}`: its creator, a server admin, or (as in Synapse) a
/// member who may change the room's canonical alias. An alias the room names as canonical
/// (or alternative) is taken out of its `m.room.canonical_alias` event too.
pub async fn delete(hs: &Homeserver, requester: &Requester, alias: &RoomAliasId) -> Result<()> {
    check_local(hs, alias)?;
    let (room_id, creator) = hs
        .storage
        .alias(alias.as_str())
        .await?
        .ok_or_else(|| Error::NotFound("room alias not found".into()))?;
    let room_id = RoomId::parse(room_id).map_err(|e| Error::Internal(e.to_string()))?;
    let allowed = creator == requester.user_id.as_str()
        || requester.is_admin
        || may_set_canonical_alias(hs, &room_id, requester).await?;
    if !allowed {
        return Err(Error::Forbidden(
            "only the alias's creator, a server admin, or a room moderator may delete it".into(),
        ));
    }
    hs.storage.delete_alias(alias.as_str()).await?;
    let current =
        super::context::current_state_content(hs, &room_id, "m.room.canonical_alias", "").await?;
    if let Some(mut content) = current {
        let mut changed = false;
        if content["alias"] == alias.as_str() {
            content.as_object_mut().map(|c| c.remove("alias"));
            changed = true;
        }
        // (`get_mut`, not indexing: indexing would add `alt_aliases: null`.)
        if let Some(alt) = content
            .get_mut("alt_aliases")
            .and_then(|a| a.as_array_mut())
        {
            let before = alt.len();
            alt.retain(|a| a != alias.as_str());
            changed |= alt.len() != before;
        }
        if changed {
            // As the deleting user, when they may; an alias that is gone from the
            // directory but still named in the event is harmless otherwise.
            let sent = super::send::send_state(
                hs,
                &room_id,
                &requester.user_id,
                "m.room.canonical_alias",
                "",
                content,
                None,
            )
            .await;
            if let Err(e) = sent {
                tracing::info!(%alias, "canonical alias event left as it was: {e}");
            }
        }
    }
    Ok(())
}

/// Whether the requester is in the room with the power to send `m.room.canonical_alias`.
async fn may_set_canonical_alias(
    hs: &Homeserver,
    room_id: &RoomId,
    requester: &Requester,
) -> Result<bool> {
    let joined = hs
        .storage
        .membership(room_id.as_str(), requester.user_id.as_str())
        .await?
        .is_some_and(|m| m == "join");
    if !joined {
        return Ok(false);
    }
    let ctx = super::context::room_context(hs, room_id).await?;
    let mine = super::power::user_power(hs, &ctx, &requester.user_id).await?;
    let needed = super::power::required_for_state(hs, &ctx, "m.room.canonical_alias").await?;
    Ok(super::power::at_least(mine, needed))
}

/// `GET /rooms/{roomId}/aliases`: for members.
pub async fn of_room(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
) -> Result<Vec<OwnedRoomAliasId>> {
    super::context::require_joined(hs, requester, room_id).await?;
    hs.storage
        .room_aliases(room_id.as_str())
        .await?
        .into_iter()
        .map(|a| RoomAliasId::parse(a).map_err(|e| Error::Internal(e.to_string())))
        .collect()
}

/// An `m.room.canonical_alias` event may only name local aliases that point at its room
/// (aliases of other servers cannot be checked without federation and are let through).
pub async fn check_canonical_alias(
    hs: &Homeserver,
    room_id: &RoomId,
    content: &serde_json::Value,
) -> Result<()> {
    let mut named: Vec<&str> = content["alias"].as_str().into_iter().collect();
    if let Some(alt) = content.get("alt_aliases") {
        let list = alt
            .as_array()
            .ok_or_else(|| Error::BadJson("alt_aliases must be a list".into()))?;
        for a in list {
            named.push(
                a.as_str()
                    .ok_or_else(|| Error::BadJson("alt_aliases must hold strings".into()))?,
            );
        }
    }
    for alias in named {
        let parsed = RoomAliasId::parse(alias)
            .map_err(|e| Error::InvalidParam(format!("invalid alias {alias}: {e}")))?;
        if parsed.server_name() != hs.config.server_name() {
            continue;
        }
        match hs.storage.alias(alias).await? {
            Some((room, _)) if room == room_id.as_str() => {}
            _ => {
                return Err(Error::BadAlias(format!(
                    "{alias} does not point to this room"
                )));
            }
        }
    }
    Ok(())
}
