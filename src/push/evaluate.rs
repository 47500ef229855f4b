//! Push rule evaluation: for each local member of a room, what an event means to them
//! (notify, highlight, sound...), with ruma's evaluator. Done once per event for all
//! members together: one query loads every local member with their rules and display
//! name, then evaluation runs in memory.

use std::collections::BTreeMap;

use ruma::{
    Int, OwnedUserId, RoomId, UInt, UserId,
    power_levels::NotificationPowerLevels,
    push::{Action, PushConditionPowerLevelsCtx, PushConditionRoomCtx},
    room_version_rules::{AuthorizationRules, RoomPowerLevelsRules},
    serde::Raw,
};
use serde_json::Value as JsonValue;

use super::rules;
use crate::{
    error::Result,
    server::Homeserver,
    storage::{events::RoomWrite, push::PushActionRow},
};

/// The thread an event belongs to for counts: its thread root, or `main`.
pub fn thread_of(content: &JsonValue) -> String {
    let relates = &content["m.relates_to"];
    match (relates["rel_type"].as_str(), relates["event_id"].as_str()) {
        (Some("m.thread"), Some(root)) => root.to_owned(),
        _ => "main".to_owned(),
    }
}

fn level(v: &JsonValue) -> Option<Int> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .and_then(|n| Int::try_from(n).ok())
}

/// What evaluation needs of the room, from the state the event was checked against.
pub struct PushRoom<'a> {
    pub room_id: &'a RoomId,
    pub auth_rules: &'a AuthorizationRules,
    /// `m.room.power_levels` content, if the room has power levels.
    pub power_levels: Option<JsonValue>,
    /// `m.room.create` (content, sender).
    pub create: Option<(JsonValue, OwnedUserId)>,
}

/// The room's power levels as push conditions use them (`sender_notification_permission`).
fn power_levels_ctx(room: &PushRoom<'_>) -> PushConditionPowerLevelsCtx {
    let pl = room.power_levels.clone().unwrap_or_default();
    let users: BTreeMap<OwnedUserId, Int> = pl["users"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(u, l)| Some((OwnedUserId::try_from(u.as_str()).ok()?, level(l)?)))
        .collect();
    let mut notifications = NotificationPowerLevels::new();
    if let Some(room_level) = level(&pl["notifications"]["room"]) {
        notifications.room = room_level;
    }
    let mut creators: Vec<OwnedUserId> = Vec::new();
    if room.auth_rules.explicitly_privilege_room_creators
        && let Some((content, creator)) = &room.create
    {
        creators.push(creator.clone());
        for extra in content["additional_creators"]
            .as_array()
            .into_iter()
            .flatten()
        {
            if let Some(Ok(u)) = extra.as_str().map(OwnedUserId::try_from) {
                creators.push(u);
            }
        }
    }
    PushConditionPowerLevelsCtx::new(
        users,
        level(&pl["users_default"]).unwrap_or_default(),
        notifications,
        RoomPowerLevelsRules::new(room.auth_rules, creators),
    )
}

/// Evaluates an event being stored (`event`: its JSON, `sender`) for the room's local
/// members and records the outcome in the event's transaction. The sender is skipped: one's
/// own events never notify.
pub async fn record_push_actions(
    hs: &Homeserver,
    w: &mut RoomWrite,
    room: &PushRoom<'_>,
    event_nid: i64,
    event: &JsonValue,
    sender: &UserId,
) -> Result<()> {
    // Membership events notify nobody by the default rules (`.m.rule.member_event`) but the
    // invitee of an invite (`.m.rule.invite_for_me`): only they are evaluated, so that a
    // join to a big room does not cost a pass over all its members.
    let is_member_event = event["type"] == "m.room.member";
    let invitee = (is_member_event && event["content"]["membership"] == "invite")
        .then(|| event["state_key"].as_str())
        .flatten();
    if is_member_event && invitee.is_none() {
        return Ok(());
    }
    let (members, member_count) = w
        .push_members(hs.config.server_name().as_str(), invitee, is_member_event)
        .await?;
    if members.iter().all(|m| m.user_id == sender.as_str()) {
        return Ok(());
    }
    let member_count = UInt::try_from(member_count).unwrap_or_default();
    let power_levels = power_levels_ctx(room);
    let raw: Raw<JsonValue> =
        Raw::new(event).map_err(|e| crate::error::Error::Internal(e.to_string()))?;
    let thread_id = thread_of(&event["content"]);
    let mut rows = Vec::new();
    for m in &members {
        if m.user_id == sender.as_str() {
            continue;
        }
        let Ok(user_id) = OwnedUserId::try_from(m.user_id.as_str()) else {
            continue;
        };
        let ruleset = rules::effective(&user_id, m.push_rules.as_ref());
        let display_name = m
            .display_name
            .clone()
            .unwrap_or_else(|| user_id.localpart().to_owned());
        let room_ctx = PushConditionRoomCtx::new(
            room.room_id.to_owned(),
            member_count,
            user_id.clone(),
            display_name,
        )
        .with_power_levels(power_levels.clone());
        let actions = ruleset.get_actions(&raw, &room_ctx).await;
        let notify = actions.iter().any(Action::should_notify);
        if !notify {
            continue;
        }
        let highlight = actions.iter().any(Action::is_highlight);
        rows.push(PushActionRow {
            user_id: m.user_id.clone(),
            thread_id: thread_id.clone(),
            notify,
            highlight,
            actions: serde_json::to_value(actions).unwrap_or_default(),
        });
    }
    w.insert_push_actions(event_nid, &rows, crate::server::now_ms())
        .await?;
    Ok(())
}
