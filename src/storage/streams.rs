//! Server-wide streams (events, account data, receipts, typing, presence, to-device,
//! device lists) and the wake-up channel.
//!
//! Each stream's positions are taken under that stream's advisory lock, held until commit,
//! so positions become visible in order: a reader that sees position N sees everything
//! below it, in every axon process. Every write also sends a NOTIFY on `axon_wake` in its
//! transaction (delivered at commit) naming what changed: `r:<room>` or `u:<user>`.
//! Event commits, the hot path, also publish their keys on this process's [`WakeBus`]
//! straight after the commit, without waiting for PostgreSQL to deliver the NOTIFY back.

use std::sync::Arc;

use sqlx::{PgConnection, postgres::PgListener};
use tokio::sync::broadcast;

use super::{Result, Storage};

pub const WAKE_CHANNEL: &str = "axon_wake";

/// The process's wake-up bus. Keys from this process's event commits are published on it
/// directly; everything else arrives through LISTEN (`sync::notifier`). NOTIFYs that this
/// process has already published carry its origin tag, `~<origin>~`, so its listener
/// skips them while other processes strip the tag and publish the key.
#[derive(Debug, Clone)]
pub struct WakeBus {
    tx: broadcast::Sender<Arc<str>>,
    tag: Arc<str>,
}

impl Default for WakeBus {
    fn default() -> Self {
        Self {
            tx: broadcast::channel(4096).0,
            tag: format!("~{:016x}~", rand::random::<u64>()).into(),
        }
    }
}

impl WakeBus {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.tx.subscribe()
    }

    pub fn publish(&self, key: &str) {
        // No receivers is fine: nobody is waiting.
        let _ = self.tx.send(Arc::from(key));
    }

    /// The key a NOTIFY payload names, or None when this process published it already.
    pub fn key_of_notify<'a>(&self, payload: &'a str) -> Option<&'a str> {
        if payload.starts_with(&*self.tag) {
            return None;
        }
        match payload.strip_prefix('~') {
            // Another process's tag.
            Some(rest) => rest.split_once('~').map(|(_, key)| key),
            None => Some(payload),
        }
    }

    pub(crate) fn tag(&self) -> &str {
        &self.tag
    }
}

/// Advisory lock keys (first key of pg_advisory_xact_lock(int, int)); 1 is per room.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Events = 2,
    AccountData = 3,
    Receipts = 4,
    Typing = 5,
    Presence = 6,
    ToDevice = 7,
    DeviceLists = 8,
}

pub(crate) async fn lock_stream(conn: &mut PgConnection, stream: Stream) -> Result<()> {
    sqlx::query("SELECT pg_advisory_xact_lock($1, 0)")
        .bind(stream as i32)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Wakes whoever waits on `key` (`r:<room>` or `u:<user>`), once the transaction commits.
pub(crate) async fn notify(conn: &mut PgConnection, key: &str) -> Result<()> {
    sqlx::query("SELECT pg_notify($1, $2)")
        .bind(WAKE_CHANNEL)
        .bind(key)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Wakes the syncs of these users and of everyone in their joined rooms (for changes that
/// matter to whoever shares a room: presence, device lists).
pub(crate) async fn wake_users_and_their_rooms(
    conn: &mut PgConnection,
    users: &[String],
) -> Result<()> {
    if users.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "SELECT pg_notify($2, key) FROM (
             SELECT DISTINCT 'r:' || room_id AS key FROM memberships
             WHERE user_id = ANY($1) AND membership = 'join'
             UNION SELECT 'u:' || u FROM unnest($1::text[]) AS u) keys",
    )
    .bind(users)
    .bind(WAKE_CHANNEL)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The newest visible position of each stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Positions {
    pub events: i64,
    pub account_data: i64,
    pub receipts: i64,
    pub typing: i64,
    pub presence: i64,
    pub to_device: i64,
    pub device_lists: i64,
}

impl Storage {
    pub async fn positions(&self) -> Result<Positions> {
        #[allow(clippy::type_complexity)]
        let (events, account_data, receipts, typing, presence, to_device, device_lists): (
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
            i64,
        ) = sqlx::query_as(
            "SELECT (SELECT COALESCE(max(stream_pos), 0) FROM events),
                        (SELECT COALESCE(max(stream_pos), 0) FROM account_data),
                        (SELECT COALESCE(max(stream_pos), 0) FROM receipts),
                        (SELECT COALESCE(max(stream_pos), 0) FROM typing_rooms),
                        (SELECT COALESCE(max(stream_pos), 0) FROM presence),
                        (SELECT pos FROM to_device_head),
                        (SELECT COALESCE(max(stream_pos), 0) FROM device_list_changes)",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(Positions {
            events,
            account_data,
            receipts,
            typing,
            presence,
            to_device,
            device_lists,
        })
    }

    pub fn wake_bus(&self) -> &WakeBus {
        &self.wake
    }

    /// A connection listening on the wake-up channel: its own, not one of the pool's.
    pub async fn wake_listener(&self) -> Result<PgListener> {
        let single = sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect_with(self.options.clone())
            .await?;
        let mut listener = PgListener::connect_with(&single).await?;
        listener.listen(WAKE_CHANNEL).await?;
        Ok(listener)
    }
}

#[cfg(test)]
mod tests {
    use super::WakeBus;

    #[test]
    fn notify_payloads_are_published_once_per_process() {
        let (here, there) = (WakeBus::default(), WakeBus::default());
        let own = format!("{}r:!a:x", here.tag());
        // Published by this process already: the listener skips it.
        assert_eq!(here.key_of_notify(&own), None);
        // Another process strips the tag.
        assert_eq!(there.key_of_notify(&own), Some("r:!a:x"));
        // Untagged NOTIFYs (writes that do not publish themselves) pass as they are.
        assert_eq!(here.key_of_notify("u:@a:x"), Some("u:@a:x"));
        assert_eq!(here.key_of_notify("*"), Some("*"));
        assert_ne!(here.tag(), there.tag());
    }
}
