//! `event_push_actions`: per local user and event, whether it notifies or highlights; and
//! what push rule evaluation needs to know about a room's local members.

use serde_json::Value as JsonValue;
use sqlx::{Row, types::Json};

use super::{Result, Storage, events::RoomWrite, streams};

/// The wake-up key that tells delivery workers there is something to send.
pub const PUSH_WAKE_KEY: &str = "push";

/// A local member, as push rules see them.
#[derive(Debug, Clone)]
pub struct PushMember {
    pub user_id: String,
    pub display_name: Option<String>,
    /// Their stored `m.push_rules` content, if they ever changed a rule.
    pub push_rules: Option<JsonValue>,
}

#[derive(Debug, Clone)]
pub struct PushActionRow {
    pub user_id: String,
    pub thread_id: String,
    pub notify: bool,
    pub highlight: bool,
    pub actions: JsonValue,
}

/// Unread counts of one thread (`main` for the main timeline).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnreadCounts {
    pub thread_id: String,
    pub notifications: i64,
    pub highlights: i64,
}

/// One row of `GET /notifications`.
#[derive(Debug, Clone)]
pub struct NotificationRow {
    pub event_nid: i64,
    pub room_id: String,
    pub stream_pos: i64,
    pub actions: JsonValue,
    pub read: bool,
}

/// The stream position up to which row `a`'s user has read the event of push action row `a`:
/// their newest read receipt in its room, unthreaded (covering every thread) or in its
/// own thread (`main` included). The one definition of "read" for counts and lists.
const READ_UP_TO: &str = "COALESCE((
    SELECT max(ev.stream_pos) FROM receipts rc JOIN events ev ON ev.event_id = rc.event_id
    WHERE rc.room_id = a.room_id AND rc.user_id = a.user_id
      AND rc.receipt_type IN ('m.read', 'm.read.private')
      AND rc.thread_id IN ('', a.thread_id)), 0)";

impl Storage {
    /// A user's notifications, newest first, before stream position `before`; `read` says
    /// whether a read receipt covers each.
    pub async fn notifications(
        &self,
        user_id: &str,
        before: i64,
        limit: i64,
        only_highlight: bool,
    ) -> Result<Vec<NotificationRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT a.event_nid, a.room_id, e.stream_pos, a.actions,
                    e.stream_pos <= {READ_UP_TO}
             FROM event_push_actions a JOIN events e ON e.event_nid = a.event_nid
             WHERE a.user_id = $1 AND e.stream_pos IS NOT NULL AND e.stream_pos < $2
               AND (a.highlight OR NOT $4)
             ORDER BY e.stream_pos DESC LIMIT $3"
        )))
        .bind(user_id)
        .bind(before)
        .bind(limit)
        .bind(only_highlight)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| NotificationRow {
                event_nid: r.get(0),
                room_id: r.get(1),
                stream_pos: r.get(2),
                actions: r.get::<Json<JsonValue>, _>(3).0,
                read: r.get(4),
            })
            .collect())
    }

    /// Unread notification and highlight counts of a user in a room, per thread: events
    /// after their read receipt (an unthreaded receipt covers every thread; a threaded one
    /// its thread, `main` included).
    pub async fn unread_counts(&self, user_id: &str, room_id: &str) -> Result<Vec<UnreadCounts>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT a.thread_id, count(*) FILTER (WHERE a.notify),
                    count(*) FILTER (WHERE a.highlight)
             FROM event_push_actions a JOIN events e ON e.event_nid = a.event_nid
             WHERE a.user_id = $1 AND a.room_id = $2 AND e.stream_pos IS NOT NULL
               AND e.stream_pos > {READ_UP_TO}
             GROUP BY a.thread_id
             ORDER BY a.thread_id"
        )))
        .bind(user_id)
        .bind(room_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| UnreadCounts {
                thread_id: r.get(0),
                notifications: r.get(1),
                highlights: r.get(2),
            })
            .collect())
    }
}

impl Storage {
    /// Deletes push actions that count no more: read (a receipt covers them) and sent
    /// before `before_ts`. Unread ones stay, so badges never change by pruning; read ones
    /// stay in /notifications until they are that old. At most `batch` rows; returns how
    /// many went.
    pub async fn prune_push_actions(&self, before_ts: i64, batch: i64) -> Result<u64> {
        let done = sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM event_push_actions d
             WHERE (d.user_id, d.event_nid) IN (
                 SELECT a.user_id, a.event_nid
                 FROM event_push_actions a JOIN events e ON e.event_nid = a.event_nid
                 WHERE e.origin_server_ts < $1 AND e.stream_pos <= {READ_UP_TO}
                 LIMIT $2)"
        )))
        .bind(before_ts)
        .bind(batch)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }
}

/// A queued notification, leased for sending.
#[derive(Debug, Clone)]
pub struct QueuedPush {
    pub id: i64,
    pub user_id: String,
    pub app_id: String,
    pub pushkey: String,
    pub event_nid: i64,
    pub actions: JsonValue,
    pub attempts: i32,
    pub created_ts: i64,
    /// The pusher's URL and data, if it still exists.
    pub pusher: Option<JsonValue>,
    /// When the pusher was set, in milliseconds.
    pub pusher_ts: Option<i64>,
}

impl Storage {
    /// Leases up to `limit` due notifications until `lease_until` (oldest first), so no
    /// other process takes them meanwhile.
    pub async fn lease_pushes(
        &self,
        now: i64,
        lease_until: i64,
        limit: i64,
    ) -> Result<Vec<QueuedPush>> {
        let rows = sqlx::query(
            "WITH due AS (
                 SELECT id FROM push_queue WHERE next_attempt_ts <= $1
                 ORDER BY id LIMIT $3 FOR UPDATE SKIP LOCKED)
             UPDATE push_queue q SET next_attempt_ts = $2 FROM due WHERE q.id = due.id
             RETURNING q.id, q.user_id, q.app_id, q.pushkey, q.event_nid, q.actions, q.attempts,
                       q.created_ts,
                       (SELECT p.pusher FROM pushers p WHERE p.user_id = q.user_id
                          AND p.app_id = q.app_id AND p.pushkey = q.pushkey),
                       (SELECT p.created_ts FROM pushers p WHERE p.user_id = q.user_id
                          AND p.app_id = q.app_id AND p.pushkey = q.pushkey)",
        )
        .bind(now)
        .bind(lease_until)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        let mut out: Vec<QueuedPush> = rows
            .into_iter()
            .map(|r| QueuedPush {
                id: r.get(0),
                user_id: r.get(1),
                app_id: r.get(2),
                pushkey: r.get(3),
                event_nid: r.get(4),
                actions: r.get::<Json<JsonValue>, _>(5).0,
                attempts: r.get(6),
                created_ts: r.get(7),
                pusher: r.get::<Option<Json<JsonValue>>, _>(8).map(|j| j.0),
                pusher_ts: r.get(9),
            })
            .collect();
        out.sort_by_key(|p| p.id);
        Ok(out)
    }

    /// Notifications waiting in the push queue (for metrics).
    pub async fn push_queue_depth(&self) -> Result<i64> {
        Ok(sqlx::query_scalar("SELECT count(*) FROM push_queue")
            .fetch_one(self.pool())
            .await?)
    }

    pub async fn finish_push(&self, id: i64) -> Result<()> {
        sqlx::query("DELETE FROM push_queue WHERE id = $1")
            .bind(id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn retry_push(&self, id: i64, next_attempt_ts: i64) -> Result<()> {
        sqlx::query(
            "UPDATE push_queue SET attempts = attempts + 1, next_attempt_ts = $2 WHERE id = $1",
        )
        .bind(id)
        .bind(next_attempt_ts)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The user's unread notifications over all rooms (the badge a gateway shows).
    pub async fn total_unread(&self, user_id: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT count(*) FROM event_push_actions a JOIN events e ON e.event_nid = a.event_nid
             WHERE a.user_id = $1 AND a.notify AND e.stream_pos IS NOT NULL
               AND e.stream_pos > {READ_UP_TO}"
        )))
        .bind(user_id)
        .fetch_one(self.pool())
        .await?)
    }
}

impl RoomWrite {
    /// (In the event's transaction, so an invitee's new membership is seen.) The room's
    /// joined members on this server (user IDs ending in `:<server_name>`),
    /// plus `also` (an invitee), with display names and push rules, in one query. With
    /// `only_also`, just that one.
    pub async fn push_members(
        &mut self,
        server_name: &str,
        also: Option<&str>,
        only_also: bool,
    ) -> Result<(Vec<PushMember>, i64)> {
        let rows = sqlx::query(
            "SELECT m.user_id, e.pdu->'content'->>'displayname', a.content,
                    (SELECT count(*) FROM memberships
                     WHERE room_id = $1 AND membership = 'join') AS joined
             FROM memberships m
             JOIN events e ON e.event_nid = m.event_nid
             LEFT JOIN account_data a ON a.user_id = m.user_id AND a.room_id = ''
                                     AND a.data_type = 'm.push_rules'
             WHERE m.room_id = $1
               AND ((m.membership = 'join' AND m.user_id LIKE '%:' || $2 AND NOT $4)
                    OR m.user_id = $3)",
        )
        .bind(self.room_id().to_owned())
        .bind(server_name)
        .bind(also)
        .bind(only_also)
        .fetch_all(self.conn())
        .await?;
        let joined = rows.first().map_or(0, |r| r.get::<i64, _>(3));
        let members = rows
            .into_iter()
            .map(|r| PushMember {
                user_id: r.get(0),
                display_name: r.get(1),
                push_rules: r.get::<Option<Json<JsonValue>>, _>(2).map(|j| j.0),
            })
            .collect();
        Ok((members, joined))
    }

    /// Records push actions for an event, and queues it for the users' pushers, in the
    /// event's transaction.
    pub async fn insert_push_actions(
        &mut self,
        event_nid: i64,
        rows: &[PushActionRow],
        now_ms: i64,
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let users: Vec<&str> = rows.iter().map(|r| r.user_id.as_str()).collect();
        let threads: Vec<&str> = rows.iter().map(|r| r.thread_id.as_str()).collect();
        let notify: Vec<bool> = rows.iter().map(|r| r.notify).collect();
        let highlight: Vec<bool> = rows.iter().map(|r| r.highlight).collect();
        let actions: Vec<Json<&JsonValue>> = rows.iter().map(|r| Json(&r.actions)).collect();
        let room_id = self.room_id().to_owned();
        // Each notified user's pushers get it queued, in the same statement.
        let queued: i64 = sqlx::query_scalar(
            "WITH actions AS (
                 INSERT INTO event_push_actions
                     (user_id, room_id, event_nid, thread_id, notify, highlight, actions)
                 SELECT u, $1, $2, t, n, h, a
                 FROM unnest($3::text[], $4::text[], $5::bool[], $6::bool[], $7::jsonb[])
                      AS x(u, t, n, h, a)
                 ON CONFLICT DO NOTHING),
             queued AS (
                 INSERT INTO push_queue (user_id, app_id, pushkey, event_nid, actions,
                                         next_attempt_ts, created_ts)
                 SELECT p.user_id, p.app_id, p.pushkey, $2, x.a, $8, $8
                 FROM unnest($3::text[], $7::jsonb[]) AS x(u, a)
                 JOIN pushers p ON p.user_id = x.u
                 RETURNING 1)
             SELECT count(*) FROM queued",
        )
        .bind(&room_id)
        .bind(event_nid)
        .bind(&users)
        .bind(&threads)
        .bind(&notify)
        .bind(&highlight)
        .bind(&actions)
        .bind(now_ms)
        .fetch_one(self.conn())
        .await?;
        if queued > 0 {
            streams::notify(self.conn(), PUSH_WAKE_KEY).await?;
        }
        Ok(())
    }
}
