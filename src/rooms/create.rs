//! `POST /createRoom`: the create event, the creator's join, power levels, presets, initial
//! state, name, topic, alias and invites, each through the one persistence path.

use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedRoomId, OwnedUserId, RoomId, RoomVersionId, UserId,
};
use serde_json::{Map, Value as JsonValue, json};

use super::{
    aliases,
    context::{self, RoomContext},
    pdu::{self, NewEvent, Placement},
    persist,
};
use crate::{
    error::{Error, Result},
    server::{Homeserver, now_ms},
    users::Requester,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preset {
    PrivateChat,
    TrustedPrivateChat,
    PublicChat,
}

pub struct CreateRoom {
    pub room_version: Option<RoomVersionId>,
    pub preset: Option<Preset>,
    pub public: bool,
    pub name: Option<String>,
    pub topic: Option<String>,
    pub room_alias_name: Option<String>,
    pub invite: Vec<OwnedUserId>,
    pub is_direct: bool,
    pub creation_content: Option<JsonValue>,
    pub initial_state: Vec<JsonValue>,
    pub power_level_content_override: Option<JsonValue>,
    /// A room ID chosen beforehand (an upgrade names it in the old room's tombstone);
    /// only for versions whose room IDs are not derived from the create event.
    pub room_id: Option<OwnedRoomId>,
    /// Invitees of `invite` the caller invites itself once the room is made (users of
    /// other servers, whose servers sign their invites).
    pub invite_later: Vec<OwnedUserId>,
}

/// A new room ID of the form of versions 1 to 11 (random, with this server's name).
pub fn new_legacy_room_id(hs: &Homeserver) -> OwnedRoomId {
    RoomId::parse(format!(
        "!{}:{}",
        crate::secrets::random_id(18),
        hs.config.server_name
    ))
    .expect("valid room ID")
}

/// Room versions axon creates and joins.
pub fn supported_versions() -> Vec<RoomVersionId> {
    use RoomVersionId::*;
    vec![V1, V2, V3, V4, V5, V6, V7, V8, V9, V10, V11, V12]
}

fn state(event_type: &str, state_key: &str, content: JsonValue) -> NewEvent {
    NewEvent {
        event_type: event_type.to_owned(),
        content,
        state_key: Some(state_key.to_owned()),
        redacts: None,
        origin_server_ts: None,
    }
}

pub async fn create_room(
    hs: &Homeserver,
    requester: &Requester,
    req: CreateRoom,
) -> Result<OwnedRoomId> {
    let version = req
        .room_version
        .clone()
        .unwrap_or_else(|| hs.config.rooms.default_version.clone());
    if !supported_versions().contains(&version) {
        return Err(Error::UnsupportedRoomVersion(format!(
            "room version {version} is not supported"
        )));
    }
    let rules = context::rules_for(&version)?;
    let creator = &requester.user_id;
    let preset = req.preset.unwrap_or(if req.public {
        Preset::PublicChat
    } else {
        Preset::PrivateChat
    });

    // Check what can fail before anything is written.
    let alias = match &req.room_alias_name {
        Some(name) => Some(aliases::local_alias(hs, name)?),
        None => None,
    };
    if let Some(alias) = &alias {
        aliases::check_claim(hs, requester, alias)?;
        if hs.storage.alias(alias.as_str()).await?.is_some() {
            return Err(Error::RoomInUse);
        }
    }
    let mut create_content = match req.creation_content.clone() {
        Some(JsonValue::Object(m)) => m,
        Some(JsonValue::Null) | None => Map::new(),
        Some(_) => return Err(Error::BadJson("creation_content must be an object".into())),
    };
    create_content.insert("room_version".into(), version.as_str().into());
    if !rules.authorization.use_room_create_sender {
        create_content.insert("creator".into(), creator.as_str().into());
    } else {
        create_content.remove("creator");
    }
    if !rules.authorization.additional_room_creators {
        create_content.remove("additional_creators");
    }
    let additional_creators: Vec<String> = create_content
        .get("additional_creators")
        .and_then(JsonValue::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();

    // The create event comes first; in room v12 it also names the room.
    let create = state("m.room.create", "", JsonValue::Object(create_content));
    let legacy_room_id = if rules.authorization.room_create_event_id_as_room_id {
        if req.room_id.is_some() {
            return Err(Error::Internal(
                "a room ID cannot be chosen in this room version".into(),
            ));
        }
        None
    } else {
        Some(
            req.room_id
                .clone()
                .unwrap_or_else(|| new_legacy_room_id(hs)),
        )
    };
    let create_pdu = pdu::build(
        &hs.keys,
        hs.config.server_name(),
        &rules,
        creator,
        &create,
        &Placement {
            room_id: legacy_room_id.as_deref(),
            prev_events: &[],
            auth_events: &[],
            depth: 1,
        },
        MilliSecondsSinceUnixEpoch::now(),
    )?;
    let room_id = match legacy_room_id {
        Some(id) => id,
        None => room_id_from_create(&create_pdu.event_id)?,
    };
    let ctx = RoomContext {
        room_id: room_id.clone(),
        version: version.clone(),
        rules: rules.clone(),
    };
    let _slot = hs.room_locks.lock(room_id.as_str()).await?;
    {
        let mut w = hs.storage.begin_room_write(room_id.as_str()).await?;
        w.insert_room(version.as_str(), creator.as_str(), now_ms())
            .await?;
        let checked = persist::Checked {
            pdu: create_pdu,
            state_before: None,
            auth_state: Default::default(),
            extends_current: true,
        };
        let nid = persist::store(&mut w, &ctx, &checked, None, None).await?;
        w.commit(&[nid]).await?;
    }

    let mut events = vec![state(
        "m.room.member",
        creator.as_str(),
        member_content(hs, creator, "join").await?,
    )];
    events.push(state(
        "m.room.power_levels",
        "",
        power_levels(&req, &rules, creator, preset, &additional_creators)?,
    ));
    if let Some(alias) = &alias {
        events.push(state(
            "m.room.canonical_alias",
            "",
            json!({ "alias": alias }),
        ));
    }
    let join_rule = if preset == Preset::PublicChat {
        "public"
    } else {
        "invite"
    };
    events.push(state(
        "m.room.join_rules",
        "",
        json!({ "join_rule": join_rule }),
    ));
    events.push(state(
        "m.room.history_visibility",
        "",
        json!({ "history_visibility": "shared" }),
    ));
    if preset != Preset::PublicChat {
        events.push(state(
            "m.room.guest_access",
            "",
            json!({ "guest_access": "can_join" }),
        ));
    }
    for raw in &req.initial_state {
        let event_type = raw["type"]
            .as_str()
            .ok_or_else(|| Error::BadJson("initial_state event without type".into()))?;
        let key = raw["state_key"].as_str().unwrap_or("");
        let content = raw.get("content").cloned().unwrap_or_else(|| json!({}));
        // Replaces a preset event of the same type and key.
        events.retain(|e| !(e.event_type == event_type && e.state_key.as_deref() == Some(key)));
        events.push(state(event_type, key, content));
    }
    if let Some(name) = &req.name {
        events.push(state("m.room.name", "", json!({ "name": name })));
    }
    if let Some(topic) = &req.topic {
        events.push(state("m.room.topic", "", json!({ "topic": topic })));
    }
    for event in events {
        send_in_creation(hs, &ctx, creator, event).await?;
    }
    if let Some(alias) = &alias {
        hs.storage
            .insert_alias(alias.as_str(), room_id.as_str(), creator.as_str())
            .await?;
    }
    if req.public {
        hs.storage.set_room_public(room_id.as_str(), true).await?;
    }
    for invitee in req.invite.iter().filter(|u| !req.invite_later.contains(u)) {
        let mut content = member_content(hs, invitee, "invite").await?;
        if req.is_direct {
            content["is_direct"] = true.into();
        }
        send_in_creation(
            hs,
            &ctx,
            creator,
            state("m.room.member", invitee.as_str(), content),
        )
        .await?;
    }
    Ok(room_id)
}

/// Room v12: the room ID is the create event's reference hash with `!` for `$`.
fn room_id_from_create(event_id: &EventId) -> Result<OwnedRoomId> {
    RoomId::parse(format!("!{}", &event_id.as_str()[1..]))
        .map_err(|e| Error::Internal(format!("room ID: {e}")))
}

/// During creation the room lock is already held.
async fn send_in_creation(
    hs: &Homeserver,
    ctx: &RoomContext,
    sender: &UserId,
    event: NewEvent,
) -> Result<()> {
    let mut w = hs.storage.begin_room_write(ctx.room_id.as_str()).await?;
    let checked = persist::build_checked(hs, &mut w, ctx, sender, &event).await?;
    persist::store_and_commit(hs, w, ctx, &checked, None).await?;
    Ok(())
}

/// A membership event's content with the user's display name and avatar, as clients show.
pub async fn member_content(
    hs: &Homeserver,
    user_id: &UserId,
    membership: &str,
) -> Result<JsonValue> {
    let mut content = json!({ "membership": membership });
    if user_id.server_name() == hs.config.server_name() {
        for (field, value) in hs.storage.profile(user_id.as_str()).await? {
            if field == "displayname" || field == "avatar_url" {
                content[field] = value;
            }
        }
    }
    Ok(content)
}

fn power_levels(
    req: &CreateRoom,
    rules: &ruma::room_version_rules::RoomVersionRules,
    creator: &UserId,
    preset: Preset,
    additional_creators: &[String],
) -> Result<JsonValue> {
    let mut users = Map::new();
    // From room v12 creators have unlimited power and must not be listed.
    if !rules.authorization.explicitly_privilege_room_creators {
        users.insert(creator.to_string(), 100.into());
    }
    if preset == Preset::TrustedPrivateChat {
        for invitee in &req.invite {
            if !additional_creators.iter().any(|c| c == invitee.as_str()) {
                users.insert(invitee.to_string(), 100.into());
            }
        }
    }
    let mut content = json!({
        "users": users,
        "users_default": 0,
        "events": {
            "m.room.name": 50,
            "m.room.power_levels": 100,
            "m.room.history_visibility": 100,
            "m.room.canonical_alias": 50,
            "m.room.avatar": 50,
            "m.room.tombstone": 100,
            "m.room.server_acl": 100,
            "m.room.encryption": 100,
        },
        "events_default": 0,
        "state_default": 50,
        "ban": 50,
        "kick": 50,
        "redact": 50,
        "invite": 0,
        "notifications": { "room": 50 },
    });
    match &req.power_level_content_override {
        None | Some(JsonValue::Null) => {}
        Some(JsonValue::Object(overrides)) => {
            for (k, v) in overrides {
                content[k] = v.clone();
            }
        }
        Some(_) => {
            return Err(Error::BadJson(
                "power_level_content_override must be an object".into(),
            ));
        }
    }
    Ok(content)
}
