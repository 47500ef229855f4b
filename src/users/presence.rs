//! Presence: online, unavailable (idle) or offline, with a status message. Set by
//! `PUT /presence`, by `set_presence` on /sync (a syncing client keeps its user online) and
//! by activity (sending, receipts); undone by timeouts: idle after `idle_after_secs` without
//! activity, offline `offline_after_secs` after the last sync ended. Shared with everyone
//! who shares a room, through /sync.

use std::time::Duration;

use ruma::{UserId, presence::PresenceState};
use serde_json::{Value as JsonValue, json};

use crate::{
    error::{Error, Result},
    server::{Homeserver, now_ms},
    storage::presence::{PresenceChange, PresenceRow, PresenceTimeouts},
    users::Requester,
};

/// A user stops being "currently active" this long after their last activity (Synapse's
/// granularity), or at the idle timeout if that is shorter.
const ACTIVE_GRANULARITY_MS: i64 = 60_000;
/// Status messages go to everyone sharing a room on every change: keep them short.
const MAX_STATUS_MSG_BYTES: usize = 4096;

fn ms(secs: u64) -> i64 {
    i64::try_from(secs.saturating_mul(1000)).unwrap_or(i64::MAX)
}

fn enabled(hs: &Homeserver) -> Result<()> {
    if hs.config.presence.enabled {
        Ok(())
    } else {
        Err(Error::Forbidden(
            "presence is disabled on this server".into(),
        ))
    }
}

fn state_name(state: &PresenceState) -> Result<&'static str> {
    match state {
        PresenceState::Online => Ok("online"),
        PresenceState::Unavailable => Ok("unavailable"),
        PresenceState::Offline => Ok("offline"),
        other => Err(Error::InvalidParam(format!(
            "unknown presence state {}",
            other.as_str()
        ))),
    }
}

/// What `GET /presence/{userId}/status` says.
pub struct PresenceView {
    pub state: PresenceState,
    pub status_msg: Option<String>,
    pub last_active_ago: Option<Duration>,
    pub currently_active: Option<bool>,
}

/// `GET /presence/{userId}/status`: for the user themselves and anyone sharing a room.
pub async fn get_presence(
    hs: &Homeserver,
    requester: &Requester,
    user_id: &UserId,
) -> Result<PresenceView> {
    enabled(hs)?;
    if requester.user_id != user_id
        && !hs
            .storage
            .share_a_room(requester.user_id.as_str(), user_id.as_str())
            .await?
    {
        return Err(Error::Forbidden(
            "you do not share a room with this user".into(),
        ));
    }
    let now = now_ms();
    Ok(match hs.storage.presence(user_id.as_str()).await? {
        None => PresenceView {
            state: PresenceState::Offline,
            status_msg: None,
            last_active_ago: None,
            currently_active: None,
        },
        Some(row) => PresenceView {
            state: PresenceState::from(row.state.as_str()),
            last_active_ago: (row.last_active_ts > 0).then(|| {
                Duration::from_millis(u64::try_from(now - row.last_active_ts).unwrap_or(0))
            }),
            currently_active: (row.state == "online").then_some(row.currently_active),
            status_msg: row.status_msg,
        },
    })
}

/// `PUT /presence/{userId}/status`: a user sets their own presence and status message
/// (absent clears it). Counts as a sync for the offline timeout, as in Synapse.
pub async fn set_presence_status(
    hs: &Homeserver,
    requester: &Requester,
    user_id: &UserId,
    state: &PresenceState,
    status_msg: Option<&str>,
) -> Result<()> {
    enabled(hs)?;
    if requester.user_id != user_id {
        return Err(Error::Forbidden(
            "you cannot set another user's presence".into(),
        ));
    }
    let state = state_name(state)?;
    if status_msg.is_some_and(|m| m.len() > MAX_STATUS_MSG_BYTES) {
        return Err(Error::InvalidParam(format!(
            "status_msg is longer than {MAX_STATUS_MSG_BYTES} bytes"
        )));
    }
    let now = now_ms();
    hs.storage
        .set_presence(&PresenceChange {
            user_id: user_id.as_str(),
            state,
            status_msg: Some(status_msg),
            active: state == "online",
            sync_until: now,
            now,
        })
        .await?;
    hs.presence.forget(user_id.as_str());
    federate(hs, user_id.as_str()).await;
    Ok(())
}

/// A sync with `set_presence`: online (the default) marks the user online and active,
/// unavailable marks them idle, offline leaves presence alone. Either of the first two
/// counts the user as syncing until the sync's timeout.
pub async fn on_sync(
    hs: &Homeserver,
    user_id: &UserId,
    set_presence: &PresenceState,
    timeout: Duration,
) -> Result<()> {
    let config = &hs.config.presence;
    let state = match set_presence {
        _ if !config.enabled => return Ok(()),
        PresenceState::Offline => return Ok(()),
        PresenceState::Unavailable => "unavailable",
        _ => "online",
    };
    let now = now_ms();
    let until = now.saturating_add(i64::try_from(timeout.as_millis()).unwrap_or(i64::MAX));
    let slack = (ms(config.offline_after_secs) / 4).min(5_000);
    if !hs.presence.sync_due(user_id.as_str(), state, until, slack) {
        return Ok(());
    }
    let active = state == "online";
    if hs
        .storage
        .touch_presence(user_id.as_str(), state, active, until, now)
        .await?
    {
        // Unchanged, but other servers forget it after REMOTE_PRESENCE_MS: remind them.
        if hs
            .presence
            .federation_due(user_id.as_str(), FEDERATION_REFRESH)
        {
            federate(hs, user_id.as_str()).await;
        }
        return Ok(());
    }
    hs.storage
        .set_presence(&PresenceChange {
            user_id: user_id.as_str(),
            state,
            status_msg: None,
            active,
            sync_until: until,
            now,
        })
        .await?;
    federate(hs, user_id.as_str()).await;
    Ok(())
}

/// Activity (a message sent, a receipt): the user was active now. An idle user comes back
/// online; an offline one stays offline (they chose to appear so), as in Synapse. Failures
/// are logged: presence never fails the action that caused it.
pub async fn note_activity(hs: &Homeserver, user_id: &UserId) {
    if let Err(e) = try_note_activity(hs, user_id.as_str()).await {
        tracing::warn!("presence activity of {user_id}: {e}");
    }
}

async fn try_note_activity(hs: &Homeserver, user: &str) -> Result<()> {
    let config = &hs.config.presence;
    let every = Duration::from_millis(
        u64::try_from((ms(config.idle_after_secs) / 4).min(20_000)).unwrap_or(20_000),
    );
    if !config.enabled || !hs.presence.bump_due(user, every) {
        return Ok(());
    }
    let now = now_ms();
    if hs
        .storage
        .touch_presence(user, "online", true, now, now)
        .await?
    {
        return Ok(());
    }
    match hs.storage.presence(user).await? {
        Some(row) if row.state != "offline" => {
            hs.storage
                .set_presence(&PresenceChange {
                    user_id: user,
                    state: "online",
                    status_msg: None,
                    active: true,
                    sync_until: now,
                    now,
                })
                .await?;
            federate(hs, user).await;
        }
        Some(_) => hs.storage.set_last_active(user, now).await?,
        None => {}
    }
    Ok(())
}

/// One pass of the idle and offline timeouts (run every second by sync's background task).
pub async fn sweep(hs: &Homeserver) -> Result<usize> {
    let config = &hs.config.presence;
    if !config.enabled {
        return Ok(0);
    }
    let now = now_ms();
    let idle = ms(config.idle_after_secs);
    let changed = hs
        .storage
        .sweep_presence(&PresenceTimeouts {
            idle_before: now - idle,
            offline_before: now - ms(config.offline_after_secs),
            inactive_before: now - idle.min(ACTIVE_GRANULARITY_MS),
        })
        .await?;
    for user in &changed {
        if is_local(hs, user) {
            federate(hs, user).await;
        }
    }
    Ok(changed.len())
}

/// How long another server's user's presence holds here without a new update; their
/// server sends one at least every `FEDERATION_REFRESH` while they stay online.
const REMOTE_PRESENCE_MS: i64 = 30 * 60_000;
const FEDERATION_REFRESH: Duration = Duration::from_secs(10 * 60);

fn is_local(hs: &Homeserver, user: &str) -> bool {
    UserId::parse(user).is_ok_and(|u| u.server_name() == hs.config.server_name())
}

/// Sends a local user's presence to the servers sharing a room with them (`m.presence`).
/// Failures are logged: presence never fails the action that caused it.
async fn federate(hs: &Homeserver, user: &str) {
    if !hs.config.federation_enabled() {
        return;
    }
    hs.presence.federation_due(user, Duration::ZERO);
    let row = match hs.storage.presence(user).await {
        Ok(Some(row)) => row,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!("presence of {user} not sent: {e}");
            return;
        }
    };
    let mut update = json!({
        "user_id": row.user_id,
        "presence": row.state,
        "last_active_ago": (now_ms() - row.last_active_ts).max(0),
        "currently_active": row.currently_active && row.state == "online",
    });
    if let Some(msg) = &row.status_msg {
        update["status_msg"] = json!(msg);
    }
    let edu = json!({ "edu_type": "m.presence", "content": { "push": [update] } });
    if let Err(e) = hs.storage.queue_user_edu(user, &edu).await {
        tracing::warn!("presence of {user} not sent: {e}");
    }
}

/// One update of an `m.presence` EDU from `origin`: taken for the origin's own users who
/// share a room with a local user, when presence is enabled here.
pub async fn remote_presence(
    hs: &Homeserver,
    origin: &ruma::ServerName,
    update: &RemotePresence<'_>,
) -> Result<()> {
    if !hs.config.presence.enabled {
        return Ok(());
    }
    if update.user_id.server_name() != origin {
        return Err(Error::Forbidden(format!(
            "{origin} cannot speak for {}",
            update.user_id
        )));
    }
    if !hs
        .storage
        .shares_room_with_server(update.user_id.as_str(), hs.config.server_name().as_str())
        .await?
    {
        return Err(Error::Forbidden(format!(
            "{} shares no room with this server",
            update.user_id
        )));
    }
    if update
        .status_msg
        .is_some_and(|m| m.len() > MAX_STATUS_MSG_BYTES)
    {
        return Err(Error::InvalidParam("status_msg too long".into()));
    }
    let state = state_name(update.state)?;
    let now = now_ms();
    hs.storage
        .set_remote_presence(
            &PresenceRow {
                user_id: update.user_id.to_string(),
                state: state.to_owned(),
                status_msg: update.status_msg.map(str::to_owned),
                last_active_ts: now.saturating_sub(update.last_active_ago.min(now)),
                currently_active: update.currently_active && state == "online",
            },
            now + REMOTE_PRESENCE_MS,
        )
        .await?;
    Ok(())
}

/// A presence update as another server sends it.
pub struct RemotePresence<'a> {
    pub user_id: &'a UserId,
    pub state: &'a PresenceState,
    pub status_msg: Option<&'a str>,
    pub last_active_ago: i64,
    pub currently_active: bool,
}

/// The `m.presence` event of one user, as /sync sends it.
pub fn presence_event(row: &PresenceRow, now: i64) -> JsonValue {
    let mut content = json!({ "presence": row.state });
    if row.last_active_ts > 0 {
        content["last_active_ago"] = json!((now - row.last_active_ts).max(0));
    }
    if let Some(msg) = &row.status_msg {
        content["status_msg"] = json!(msg);
    }
    if row.state == "online" {
        content["currently_active"] = json!(row.currently_active);
    }
    json!({ "type": "m.presence", "sender": row.user_id, "content": content })
}

/// Whether presence is shared at all.
pub fn is_enabled(hs: &Homeserver) -> bool {
    hs.config.presence.enabled
}
