//! `POST /rooms/{roomId}/upgrade`: a new room of another version carrying the old one's
//! state, a tombstone in the old room, aliases moved, and the old room quietened.

use ruma::{OwnedRoomId, OwnedUserId, RoomId, RoomVersionId};
use serde_json::{Map, Value as JsonValue, json};

use super::{
    context,
    create::{self, CreateRoom},
    membership,
    pdu::NewEvent,
    power, send,
};
use crate::{
    error::{Error, Result},
    server::Homeserver,
    users::Requester,
};

/// State carried into the new room (spec: "Room Upgrades", as Synapse does).
const CARRIED_STATE: &[&str] = &[
    "m.room.server_acl",
    "m.room.encryption",
    "m.room.name",
    "m.room.topic",
    "m.room.avatar",
    "m.room.join_rules",
    "m.room.guest_access",
    "m.room.history_visibility",
    "m.room.canonical_alias",
];

pub async fn upgrade(
    hs: &Homeserver,
    requester: &Requester,
    old: &RoomId,
    new_version: &RoomVersionId,
    additional_creators: &[OwnedUserId],
) -> Result<OwnedRoomId> {
    let ctx = context::room_context(hs, old).await?;
    // Upgrading takes the power to send the tombstone.
    let levels = context::current_state_content(hs, old, "m.room.power_levels", "").await?;
    let needed = levels
        .as_ref()
        .and_then(|pl| {
            pl["events"]["m.room.tombstone"]
                .as_i64()
                .or_else(|| pl["state_default"].as_i64())
        })
        .unwrap_or(50);
    let mine = power::user_power(hs, &ctx, &requester.user_id).await?;
    let joined = hs
        .storage
        .membership(old.as_str(), requester.user_id.as_str())
        .await?;
    if joined.as_deref() != Some("join") || !power::at_least(mine, needed) {
        return Err(Error::Forbidden("you may not upgrade this room".into()));
    }
    if !create::supported_versions().contains(new_version) {
        return Err(Error::UnsupportedRoomVersion(format!(
            "room version {new_version} is not supported"
        )));
    }
    let new_rules = context::rules_for(new_version)?;

    let old_create = context::current_state_content(hs, old, "m.room.create", "")
        .await?
        .unwrap_or_default();
    // Where the new room's ID is not derived from its create event (versions 1 to 11), it
    // is chosen first: the tombstone names it and the new room's `predecessor` names the
    // tombstone, as Synapse does and clients follow. (In v12 the two would name each
    // other's hashes, so the predecessor has the room ID only.)
    let chosen_id = (!new_rules.authorization.room_create_event_id_as_room_id)
        .then(|| create::new_legacy_room_id(hs));
    let mut predecessor = json!({ "room_id": old });
    if let Some(new_id) = &chosen_id {
        predecessor["event_id"] = json!(send_tombstone(hs, old, requester, new_id).await?);
    }
    let mut creation = Map::new();
    creation.insert("predecessor".into(), predecessor);
    for key in ["type", "m.federate"] {
        if let Some(v) = old_create.get(key) {
            creation.insert(key.into(), v.clone());
        }
    }
    if !additional_creators.is_empty() {
        creation.insert("additional_creators".into(), json!(additional_creators));
    }
    let mut initial_state = Vec::new();
    for event_type in CARRIED_STATE {
        if let Some(content) = context::current_state_content(hs, old, event_type, "").await? {
            initial_state.push(json!({ "type": event_type, "state_key": "", "content": content }));
        }
    }
    let mut power_levels = levels.unwrap_or_else(|| json!({}));
    if ctx.rules.authorization.explicitly_privilege_room_creators
        && !new_rules.authorization.explicitly_privilege_room_creators
    {
        // From v12 down: the old room's creators held unlimited power without a listing;
        // the new room lists them at 100.
        let create_event = context::current_state_event(hs, old, "m.room.create", "").await?;
        let mut creators: Vec<String> = create_event
            .and_then(|e| e.pdu["sender"].as_str().map(str::to_owned))
            .into_iter()
            .collect();
        if let Some(more) = old_create["additional_creators"].as_array() {
            creators.extend(more.iter().filter_map(|c| c.as_str().map(str::to_owned)));
        }
        if !power_levels["users"].is_object() {
            power_levels["users"] = json!({});
        }
        for creator in creators {
            power_levels["users"][creator.as_str()] = json!(100);
        }
    }
    if new_rules.authorization.explicitly_privilege_room_creators
        && let Some(users) = power_levels["users"].as_object_mut()
    {
        // Creators hold unlimited power in v12 and must not be listed.
        users.remove(requester.user_id.as_str());
        for c in additional_creators {
            users.remove(c.as_str());
        }
    }
    let new_room = create::create_room(
        hs,
        requester,
        CreateRoom {
            room_version: Some(new_version.clone()),
            // As Synapse: the copied state overrides the preset, which adds guest access
            // when the old room had none.
            preset: Some(create::Preset::PrivateChat),
            public: hs.storage.room_is_public(old.as_str()).await?,
            name: None,
            topic: None,
            room_alias_name: None,
            invite: Vec::new(),
            is_direct: false,
            creation_content: Some(JsonValue::Object(creation)),
            initial_state,
            power_level_content_override: Some(power_levels.clone()),
            room_id: chosen_id.clone(),
            invite_later: Vec::new(),
        },
    )
    .await?;
    if chosen_id.is_none() {
        send_tombstone(hs, old, requester, &new_room).await?;
    }
    // Bans carry over: a banned user must not walk into the new room.
    for (user, reason) in hs.storage.banned_members(old.as_str()).await? {
        let Ok(user) = OwnedUserId::try_from(user) else {
            continue;
        };
        // The new room exists and the tombstone points to it: a ban that cannot be copied
        // is logged rather than failing an upgrade that has happened.
        if let Err(e) =
            membership::change_other(hs, requester, &new_room, &user, "ban", reason.as_deref())
                .await
        {
            tracing::warn!(room = %new_room, %user, "could not carry a ban over: {e}");
        }
    }
    hs.storage
        .move_aliases(old.as_str(), new_room.as_str())
        .await?;
    // The old room's canonical alias now belongs to the new room (copied above).
    if context::current_state_content(hs, old, "m.room.canonical_alias", "")
        .await?
        .is_some_and(|c| c.as_object().is_some_and(|o| !o.is_empty()))
    {
        let cleared = NewEvent {
            event_type: "m.room.canonical_alias".into(),
            content: json!({}),
            state_key: Some(String::new()),
            redacts: None,
            origin_server_ts: None,
        };
        if let Err(e) = send::send(hs, old, &requester.user_id, cleared, None).await {
            tracing::warn!(room = %old, "could not clear the upgraded room's canonical alias: {e}");
        }
    }
    if let Err(e) = membership::carry_user_state(hs, requester, old, &new_room).await {
        tracing::warn!(room = %new_room, "could not carry tags and direct chats over: {e}");
    }
    if hs.storage.room_is_public(old.as_str()).await? {
        hs.storage.set_room_public(old.as_str(), false).await?;
    }
    // Quieten the old room: only moderators may speak or invite there now.
    let users_default = power_levels["users_default"].as_i64().unwrap_or(0);
    let restricted = 50.max(users_default + 1);
    let mut quiet = power_levels;
    for key in ["events_default", "invite"] {
        if quiet[key].as_i64().unwrap_or(0) < restricted {
            quiet[key] = restricted.into();
        }
    }
    let quiet_event = NewEvent {
        event_type: "m.room.power_levels".into(),
        content: quiet,
        state_key: Some(String::new()),
        redacts: None,
        origin_server_ts: None,
    };
    // The old power levels may not allow this (e.g. no power levels event); the upgrade
    // itself has happened, so a refusal here is logged rather than failing it.
    if let Err(e) = send::send(hs, old, &requester.user_id, quiet_event, None).await {
        tracing::warn!(room = %old, "could not restrict the upgraded room's power levels: {e}");
    }
    Ok(new_room)
}

async fn send_tombstone(
    hs: &Homeserver,
    old: &RoomId,
    requester: &Requester,
    new_room: &RoomId,
) -> Result<ruma::OwnedEventId> {
    let tombstone = NewEvent {
        event_type: "m.room.tombstone".into(),
        content: json!({ "body": "This room has been replaced", "replacement_room": new_room }),
        state_key: Some(String::new()),
        redacts: None,
        origin_server_ts: None,
    };
    send::send(hs, old, &requester.user_id, tombstone, None).await
}
