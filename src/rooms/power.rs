//! Power levels as the domain needs them before sending (the auth rules check them again).

use ruma::UserId;
use serde_json::Value as JsonValue;

use super::context::{self, RoomContext};
use crate::{error::Result, server::Homeserver};

/// A user's power in a room; `None` for creators of room v12+, whose power is unlimited.
pub async fn user_power(hs: &Homeserver, ctx: &RoomContext, user: &UserId) -> Result<Option<i64>> {
    if ctx.rules.authorization.explicitly_privilege_room_creators {
        let create = context::current_state_content(hs, &ctx.room_id, "m.room.create", "").await?;
        let creator_event_sender = hs.storage.room(ctx.room_id.as_str()).await?.map(|(_, c)| c);
        let additional = create
            .as_ref()
            .and_then(|c| c["additional_creators"].as_array().cloned())
            .unwrap_or_default();
        if creator_event_sender.as_deref() == Some(user.as_str())
            || additional.iter().any(|c| c.as_str() == Some(user.as_str()))
        {
            return Ok(None);
        }
    }
    let levels =
        context::current_state_content(hs, &ctx.room_id, "m.room.power_levels", "").await?;
    Ok(Some(match levels {
        Some(pl) => level(&pl["users"][user.as_str()])
            .unwrap_or_else(|| level(&pl["users_default"]).unwrap_or(0)),
        // Without a power levels event the creator has 100, everyone else 0.
        None => {
            let creator = hs.storage.room(ctx.room_id.as_str()).await?.map(|(_, c)| c);
            if creator.as_deref() == Some(user.as_str()) {
                100
            } else {
                0
            }
        }
    }))
}

/// The level a power levels field requires, with the spec's default.
pub async fn required(
    hs: &Homeserver,
    ctx: &RoomContext,
    field: &str,
    default: i64,
) -> Result<i64> {
    let levels =
        context::current_state_content(hs, &ctx.room_id, "m.room.power_levels", "").await?;
    Ok(levels.and_then(|pl| level(&pl[field])).unwrap_or(default))
}

/// The level a state event of `event_type` requires: its entry in `events`, else
/// `state_default` (50 with a power levels event, 0 without, as the auth rules say).
pub async fn required_for_state(
    hs: &Homeserver,
    ctx: &RoomContext,
    event_type: &str,
) -> Result<i64> {
    let levels =
        context::current_state_content(hs, &ctx.room_id, "m.room.power_levels", "").await?;
    Ok(match levels {
        None => 0,
        Some(pl) => level(&pl["events"][event_type])
            .or_else(|| level(&pl["state_default"]))
            .unwrap_or(50),
    })
}

/// Power levels are integers, or (before room v10) strings holding integers.
fn level(v: &JsonValue) -> Option<i64> {
    v.as_i64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
}

pub fn at_least(power: Option<i64>, needed: i64) -> bool {
    power.is_none_or(|p| p >= needed)
}
