//! Push rule evaluation: for each local member of a room, what an event means to them
//! (notify, highlight, sound...), with ruma's evaluator. Done once per event for all
//! members together: one query loads every local member with their rules and display
//! name, then evaluation runs in memory.

use std::collections::BTreeMap;

use ruma::{
    Int, OwnedUserId, UInt, UserId,
    power_levels::NotificationPowerLevels,
    push::{Action, PushConditionPowerLevelsCtx, PushConditionRoomCtx},
    room_version_rules::RoomPowerLevelsRules,
    serde::Raw,
};
use serde_json::Value as JsonValue;

use super::rules;
use crate::rooms::persist::KnownState;
use crate::{
    error::Result,
    rooms::persist::RoomContext,
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

/// A current state event's (content, sender), read in the write's own transaction.
/// A state event of the room (empty state key) as (content, sender): from `known`, the
/// state the event was checked against, when that holds the room's create event (then a
/// missing key is absent from the room); else read in the write's transaction.
async fn state_event(
    w: &mut RoomWrite,
    known: &KnownState,
    event_type: &str,
) -> Result<Option<(JsonValue, String)>> {
    let key = (event_type.to_owned(), String::new());
    if known.contains_key(&("m.room.create".to_owned(), String::new())) {
        return Ok(known
            .get(&key)
            .map(|p| (p.content_json(), p.sender.to_string())));
    }
    let nids: Vec<i64> = w.current_state_for(&[key]).await?.into_values().collect();
    Ok(w.events_by_nid(&nids).await?.pop().map(|e| {
        let sender = e.pdu["sender"].as_str().unwrap_or_default().to_owned();
        (e.pdu["content"].clone(), sender)
    }))
}

/// The room's power levels as push conditions use them (`sender_notification_permission`).
/// Read in the write's transaction: a second pool connection taken while holding one
/// deadlocks once every connection is held by a write waiting for another.
async fn power_levels_ctx(
    w: &mut RoomWrite,
    ctx: &RoomContext,
    known: &KnownState,
) -> Result<PushConditionPowerLevelsCtx> {
    let pl = state_event(w, known, "m.room.power_levels")
        .await?
        .map(|(content, _)| content)
        .unwrap_or_default();
    let users: BTreeMap<OwnedUserId, Int> = pl["users"]
        .as_object()
        .into_iter()
        .flatten()
        .filter_map(|(u, l)| Some((OwnedUserId::try_from(u.as_str()).ok()?, level(l)?)))
        .collect();
    let mut notifications = NotificationPowerLevels::new();
    if let Some(room) = level(&pl["notifications"]["room"]) {
        notifications.room = room;
    }
    let mut creators: Vec<OwnedUserId> = Vec::new();
    if ctx.rules.authorization.explicitly_privilege_room_creators {
        let create = state_event(w, known, "m.room.create").await?;
        if let Some((_, creator)) = &create
            && let Ok(c) = OwnedUserId::try_from(creator.as_str())
        {
            creators.push(c);
        }
        for extra in create
            .as_ref()
            .and_then(|(c, _)| c["additional_creators"].as_array())
            .into_iter()
            .flatten()
        {
            if let Some(Ok(u)) = extra.as_str().map(OwnedUserId::try_from) {
                creators.push(u);
            }
        }
    }
    Ok(PushConditionPowerLevelsCtx::new(
        users,
        level(&pl["users_default"]).unwrap_or_default(),
        notifications,
        RoomPowerLevelsRules::new(&ctx.rules.authorization, creators),
    ))
}

/// Evaluates an event being stored (`event`: its JSON, `sender`) for the room's local
/// members and records the outcome in the event's transaction. The sender is skipped: one's
/// own events never notify.
pub async fn record_push_actions(
    hs: &Homeserver,
    w: &mut RoomWrite,
    ctx: &RoomContext,
    event_nid: i64,
    event: &JsonValue,
    sender: &UserId,
    known: &KnownState,
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
    let power_levels = power_levels_ctx(w, ctx, known).await?;
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
            ctx.room_id.clone(),
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
