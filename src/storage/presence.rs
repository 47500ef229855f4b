//! `presence`: each user's presence, on the presence stream. Writes that change what others
//! see take a new position (stream lock held) and wake the user's rooms; writes that only
//! move timers (activity, sync deadlines) take none.

use sqlx::{Row, postgres::PgRow};

use super::{
    Result, Storage,
    streams::{self, Stream},
};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresenceRow {
    pub user_id: String,
    pub state: String,
    pub status_msg: Option<String>,
    pub last_active_ts: i64,
    pub currently_active: bool,
}

fn row(r: PgRow) -> PresenceRow {
    PresenceRow {
        user_id: r.get(0),
        state: r.get(1),
        status_msg: r.get(2),
        last_active_ts: r.get(3),
        currently_active: r.get(4),
    }
}

const COLUMNS: &str = "user_id, state, status_msg, last_active_ts, currently_active";

/// A visible change of one user's presence.
pub struct PresenceChange<'a> {
    pub user_id: &'a str,
    pub state: &'a str,
    /// `None` keeps the current message.
    pub status_msg: Option<Option<&'a str>>,
    /// Activity now: last_active_ts = now and currently_active.
    pub active: bool,
    /// The user counts as syncing until at least this time.
    pub sync_until: i64,
    pub now: i64,
}

/// The cut-off times of the timeout sweep.
pub struct PresenceTimeouts {
    /// Online users last active before this become unavailable.
    pub idle_before: i64,
    /// Users whose sync promise ended before this go offline.
    pub offline_before: i64,
    /// Users last active before this are no longer currently active.
    pub inactive_before: i64,
}

impl Storage {
    pub async fn presence(&self, user_id: &str) -> Result<Option<PresenceRow>> {
        Ok(sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM presence WHERE user_id = $1"
        )))
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?
        .map(row))
    }

    /// The cheap path of a sync or an activity: when the user is already in `state` (and
    /// currently active, if `active`), only the timers move. Returns whether it applied.
    pub async fn touch_presence(
        &self,
        user_id: &str,
        state: &str,
        active: bool,
        sync_until: i64,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE presence SET last_sync_ts = GREATEST(last_sync_ts, $4),
                    last_active_ts = CASE WHEN $3 THEN $5 ELSE last_active_ts END
             WHERE user_id = $1 AND state = $2 AND (currently_active OR NOT $3)",
        )
        .bind(user_id)
        .bind(state)
        .bind(active)
        .bind(sync_until)
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Records activity without a visible change (for users who appear offline).
    pub async fn set_last_active(&self, user_id: &str, now: i64) -> Result<()> {
        sqlx::query("UPDATE presence SET last_active_ts = $2 WHERE user_id = $1")
            .bind(user_id)
            .bind(now)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Sets a user's presence at a new stream position and wakes their rooms.
    pub async fn set_presence(&self, c: &PresenceChange<'_>) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        streams::lock_stream(&mut tx, Stream::Presence).await?;
        sqlx::query(
            "INSERT INTO presence (user_id, state, status_msg, last_active_ts, currently_active,
                                   last_sync_ts, stream_pos)
             VALUES ($1, $2, $3, CASE WHEN $5 THEN $7 ELSE 0 END, $5, $6,
                     nextval('presence_stream'))
             ON CONFLICT (user_id) DO UPDATE SET
                 state = EXCLUDED.state,
                 status_msg = CASE WHEN $4 THEN EXCLUDED.status_msg
                                   ELSE presence.status_msg END,
                 last_active_ts = CASE WHEN $5 THEN $7 ELSE presence.last_active_ts END,
                 currently_active = $5 OR (presence.currently_active AND $2 = 'online'),
                 last_sync_ts = GREATEST(presence.last_sync_ts, $6),
                 stream_pos = EXCLUDED.stream_pos",
        )
        .bind(c.user_id)
        .bind(c.state)
        .bind(c.status_msg.flatten())
        .bind(c.status_msg.is_some())
        .bind(c.active)
        .bind(c.sync_until)
        .bind(c.now)
        .execute(&mut *tx)
        .await?;
        streams::wake_users_and_their_rooms(&mut tx, &[c.user_id.to_owned()]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Applies the idle, offline and activity timeouts; returns the users who changed.
    pub async fn sweep_presence(&self, t: &PresenceTimeouts) -> Result<Vec<String>> {
        // Other servers' users only time out (their servers apply their idle rules).
        const DUE: &str = "state <> 'offline' AND (last_sync_ts < $2
                 OR (NOT remote AND state = 'online' AND last_active_ts < $1)
                 OR (NOT remote AND currently_active AND last_active_ts < $3))";
        // Most sweeps find nothing: look before taking the stream lock.
        let any: bool = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM presence WHERE {DUE})"
        )))
        .bind(t.idle_before)
        .bind(t.offline_before)
        .bind(t.inactive_before)
        .fetch_one(self.pool())
        .await?;
        if !any {
            return Ok(Vec::new());
        }
        let mut tx = self.pool().begin().await?;
        streams::lock_stream(&mut tx, Stream::Presence).await?;
        let users: Vec<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "UPDATE presence SET
                 state = CASE WHEN last_sync_ts < $2 THEN 'offline'
                              WHEN state = 'online' AND last_active_ts < $1 THEN 'unavailable'
                              ELSE state END,
                 currently_active = currently_active AND last_active_ts >= $3
                                    AND last_sync_ts >= $2,
                 stream_pos = nextval('presence_stream')
             WHERE {DUE}
             RETURNING user_id"
        )))
        .bind(t.idle_before)
        .bind(t.offline_before)
        .bind(t.inactive_before)
        .fetch_all(&mut *tx)
        .await?;
        streams::wake_users_and_their_rooms(&mut tx, &users).await?;
        tx.commit().await?;
        Ok(users)
    }

    /// Another server's user's presence as their server sent it, valid until
    /// `valid_until` unless sent again.
    pub async fn set_remote_presence(&self, p: &PresenceRow, valid_until: i64) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        streams::lock_stream(&mut tx, Stream::Presence).await?;
        sqlx::query(
            "INSERT INTO presence (user_id, state, status_msg, last_active_ts, currently_active,
                                   last_sync_ts, stream_pos, remote)
             VALUES ($1, $2, $3, $4, $5, $6, nextval('presence_stream'), TRUE)
             ON CONFLICT (user_id) DO UPDATE SET
                 state = EXCLUDED.state, status_msg = EXCLUDED.status_msg,
                 last_active_ts = EXCLUDED.last_active_ts,
                 currently_active = EXCLUDED.currently_active,
                 last_sync_ts = EXCLUDED.last_sync_ts, stream_pos = EXCLUDED.stream_pos,
                 remote = TRUE",
        )
        .bind(&p.user_id)
        .bind(&p.state)
        .bind(&p.status_msg)
        .bind(p.last_active_ts)
        .bind(p.currently_active)
        .bind(valid_until)
        .execute(&mut *tx)
        .await?;
        streams::wake_users_and_their_rooms(&mut tx, std::slice::from_ref(&p.user_id)).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Presence for a sync of `user_id`: of everyone sharing a joined room with them (and
    /// their own), what changed in (since, until] of the presence stream, plus the current
    /// presence of users who came to share a room in (since_events, until_events]. With
    /// `since` None, everyone's current presence.
    pub async fn presence_for_sync(
        &self,
        user_id: &str,
        since: Option<(i64, i64)>,
        until: i64,
    ) -> Result<Vec<PresenceRow>> {
        let (since_presence, since_events) = since.unwrap_or((-1, -1));
        // Two parts, so that each can use an index: changes since the token (a range of
        // the presence stream), and the current presence of whoever came to share a room.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM (
                 SELECT {COLUMNS}, p.stream_pos FROM presence p
                 WHERE p.stream_pos > $2 AND p.stream_pos <= $4
                   AND (p.user_id = $1 OR EXISTS (
                       SELECT 1 FROM memberships mine JOIN memberships theirs USING (room_id)
                       WHERE mine.user_id = $1 AND mine.membership = 'join'
                         AND theirs.user_id = p.user_id AND theirs.membership = 'join'))
                 UNION
                 -- Whoever came to share a room: their presence, or offline when they
                 -- have none yet (incremental syncs only, as Synapse: an initial sync
                 -- leaves offline users out).
                 SELECT u.user_id, coalesce(p.state, 'offline'), p.status_msg,
                        coalesce(p.last_active_ts, 0), coalesce(p.currently_active, false),
                        coalesce(p.stream_pos, 0)
                 FROM (
                     SELECT theirs.user_id FROM memberships mine
                     JOIN memberships theirs
                       ON theirs.room_id = mine.room_id AND theirs.stream_pos > $3
                     WHERE mine.user_id = $1 AND mine.membership = 'join'
                       AND theirs.membership = 'join'
                     UNION
                     SELECT theirs.user_id FROM memberships mine
                     JOIN memberships theirs ON theirs.room_id = mine.room_id
                     WHERE mine.user_id = $1 AND mine.membership = 'join'
                       AND mine.stream_pos > $3 AND theirs.membership = 'join'
                 ) u LEFT JOIN presence p USING (user_id)
                 WHERE CASE WHEN p.user_id IS NULL THEN $3 >= 0 ELSE p.stream_pos <= $4 END
             ) x ORDER BY x.stream_pos"
        )))
        .bind(user_id)
        .bind(since_presence)
        .bind(since_events)
        .bind(until)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(row).collect())
    }

    /// Presence of a room's joined members that changed in (since, until] (a peek into a
    /// world-readable room through the legacy `/events`).
    pub async fn presence_in_room_between(
        &self,
        room_id: &str,
        since: i64,
        until: i64,
    ) -> Result<Vec<PresenceRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM presence p
             WHERE p.stream_pos > $2 AND p.stream_pos <= $3
               AND EXISTS (SELECT 1 FROM memberships m WHERE m.room_id = $1
                           AND m.user_id = p.user_id AND m.membership = 'join')
             ORDER BY p.stream_pos"
        )))
        .bind(room_id)
        .bind(since)
        .bind(until)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(row).collect())
    }

    /// Everyone's presence that changed in (since, until].
    pub async fn presence_between(&self, since: i64, until: i64) -> Result<Vec<PresenceRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM presence WHERE stream_pos > $1 AND stream_pos <= $2
             ORDER BY stream_pos"
        )))
        .bind(since)
        .bind(until)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(row).collect())
    }

    /// Whether two users share a room both are joined to.
    pub async fn share_a_room(&self, a: &str, b: &str) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM memberships x JOIN memberships y USING (room_id)
                            WHERE x.user_id = $1 AND x.membership = 'join'
                              AND y.user_id = $2 AND y.membership = 'join')",
        )
        .bind(a)
        .bind(b)
        .fetch_one(self.pool())
        .await?)
    }
}
