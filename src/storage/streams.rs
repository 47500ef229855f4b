//! Server-wide streams (events, account data, receipts, typing, presence, to-device,
//! device lists) and the wake-up channel.
//!
//! Each stream's positions are taken under that stream's advisory lock, held until commit,
//! so positions become visible in order: a reader that sees position N sees everything
//! below it, in every axon process. Every write also sends a NOTIFY on `axon_wake` in its
//! transaction (delivered at commit) naming what changed: `r:<room>` or `u:<user>`.

use sqlx::{PgConnection, postgres::PgListener};

use super::{Result, Storage};

pub const WAKE_CHANNEL: &str = "axon_wake";

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
