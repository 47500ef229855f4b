//! Server-wide streams (events, account data, receipts, typing, presence) and the wake-up channel.
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

/// The newest visible position of each stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Positions {
    pub events: i64,
    pub account_data: i64,
    pub receipts: i64,
    pub typing: i64,
    pub presence: i64,
}

impl Storage {
    pub async fn positions(&self) -> Result<Positions> {
        let (events, account_data, receipts, typing, presence): (i64, i64, i64, i64, i64) =
            sqlx::query_as(
                "SELECT (SELECT COALESCE(max(stream_pos), 0) FROM events),
                        (SELECT COALESCE(max(stream_pos), 0) FROM account_data),
                        (SELECT COALESCE(max(stream_pos), 0) FROM receipts),
                        (SELECT COALESCE(max(stream_pos), 0) FROM typing_rooms),
                        (SELECT COALESCE(max(stream_pos), 0) FROM presence)",
            )
            .fetch_one(self.pool())
            .await?;
        Ok(Positions {
            events,
            account_data,
            receipts,
            typing,
            presence,
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
