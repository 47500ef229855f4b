//! Sliding sync connections and positions, and the per-room facts room lists are sorted
//! and filtered by.

use serde_json::Value as JsonValue;
use sqlx::{Row, types::Json};

use super::{Result, Storage, sync::ReceiptRow};

/// What a position on a connection recorded.
#[derive(Debug)]
pub struct SlidingPosition {
    pub conn_key: i64,
    pub streams: String,
    pub rooms: JsonValue,
    pub lists: JsonValue,
}

impl Storage {
    /// The position `pos` of the device's connection `conn_id`, if it still exists.
    pub async fn sliding_position(
        &self,
        user_id: &str,
        device_id: &str,
        conn_id: &str,
        pos: i64,
    ) -> Result<Option<SlidingPosition>> {
        let row = sqlx::query(
            "SELECT c.conn_key, p.streams, p.rooms, p.lists
             FROM sliding_sync_connections c
             JOIN sliding_sync_positions p ON p.conn_key = c.conn_key
             WHERE c.user_id = $1 AND c.device_id = $2 AND c.conn_id = $3 AND p.pos = $4",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(conn_id)
        .bind(pos)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| SlidingPosition {
            conn_key: r.get(0),
            streams: r.get(1),
            rooms: r.get::<Json<JsonValue>, _>(2).0,
            lists: r.get::<Json<JsonValue>, _>(3).0,
        }))
    }

    /// Starts the connection afresh (a request without `pos`): whatever it had is gone.
    pub async fn sliding_reset_connection(
        &self,
        user_id: &str,
        device_id: &str,
        conn_id: &str,
        now_ms: i64,
    ) -> Result<i64> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "DELETE FROM sliding_sync_connections
             WHERE user_id = $1 AND device_id = $2 AND conn_id = $3",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(conn_id)
        .execute(&mut *tx)
        .await?;
        let key = sqlx::query_scalar(
            "INSERT INTO sliding_sync_connections (user_id, device_id, conn_id, last_used_ts)
             VALUES ($1, $2, $3, $4) RETURNING conn_key",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(conn_id)
        .bind(now_ms)
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(key)
    }

    /// Records a new position on a connection. The client has used `used` (if any), so
    /// every other position of the connection (older ones, or newer ones whose response
    /// was lost) goes. `None`: the connection is gone (its device was logged out meanwhile).
    pub async fn sliding_save_position(
        &self,
        conn_key: i64,
        used: Option<i64>,
        streams: &str,
        rooms: &JsonValue,
        lists: &JsonValue,
        now_ms: i64,
    ) -> Result<Option<i64>> {
        let mut tx = self.pool().begin().await?;
        sqlx::query(
            "DELETE FROM sliding_sync_positions
             WHERE conn_key = $1 AND pos IS DISTINCT FROM $2",
        )
        .bind(conn_key)
        .bind(used)
        .execute(&mut *tx)
        .await?;
        // The connection row is locked so that a logout cannot remove it in between.
        let pos: Option<i64> = sqlx::query_scalar(
            "INSERT INTO sliding_sync_positions (conn_key, streams, rooms, lists, created_ts)
             SELECT conn_key, $2, $3, $4, $5 FROM sliding_sync_connections
             WHERE conn_key = $1 FOR UPDATE
             RETURNING pos",
        )
        .bind(conn_key)
        .bind(streams)
        .bind(Json(rooms))
        .bind(Json(lists))
        .bind(now_ms)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(pos) = pos else {
            return Ok(None);
        };
        sqlx::query("UPDATE sliding_sync_connections SET last_used_ts = $2 WHERE conn_key = $1")
            .bind(conn_key)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some(pos))
    }

    /// Forgets connections unused since `before_ms`; their clients start over.
    pub async fn prune_sliding_connections(&self, before_ms: i64) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM sliding_sync_connections WHERE last_used_ts < $1")
                .bind(before_ms)
                .execute(self.pool())
                .await?
                .rows_affected(),
        )
    }

    /// Which rooms have events in their range (since, until]: one query for all the
    /// rooms a sliding sync response may update.
    pub async fn rooms_with_events_in_ranges(
        &self,
        ranges: &[(String, i64, i64)],
    ) -> Result<Vec<String>> {
        if ranges.is_empty() {
            return Ok(Vec::new());
        }
        let rooms: Vec<&str> = ranges.iter().map(|r| r.0.as_str()).collect();
        let since: Vec<i64> = ranges.iter().map(|r| r.1).collect();
        let until: Vec<i64> = ranges.iter().map(|r| r.2).collect();
        Ok(sqlx::query_scalar(
            "SELECT r.room_id FROM unnest($1::text[], $2::bigint[], $3::bigint[])
                 AS r(room_id, since, until)
             WHERE EXISTS (SELECT 1 FROM events e WHERE e.room_id = r.room_id
                           AND e.stream_pos > r.since AND e.stream_pos <= r.until)",
        )
        .bind(rooms)
        .bind(since)
        .bind(until)
        .fetch_all(self.pool())
        .await?)
    }

    /// Each room's newest bump event position (the index `events_bump` answers each).
    pub async fn bump_stamps(&self, rooms: &[String]) -> Result<Vec<(String, Option<i64>)>> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as(
            "SELECT r.room_id,
                    (SELECT max(e.stream_pos) FROM events e
                     WHERE e.room_id = r.room_id AND e.stream_pos IS NOT NULL
                       AND e.event_type IN ('m.room.create', 'm.room.message',
                           'm.room.encrypted', 'm.sticker', 'm.call.invite', 'm.poll.start',
                           'm.beacon_info'))
             FROM unnest($1::text[]) AS r(room_id)",
        )
        .bind(rooms)
        .fetch_all(self.pool())
        .await?)
    }

    /// The current state events of `types` (any state key) in `rooms`:
    /// (room, type, state_key, content).
    pub async fn current_state_contents(
        &self,
        rooms: &[String],
        types: &[&str],
    ) -> Result<Vec<(String, String, String, JsonValue)>> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT c.room_id, c.event_type, c.state_key, e.pdu->'content'
             FROM current_state c JOIN events e ON e.event_nid = c.event_nid
             WHERE c.room_id = ANY($1) AND c.event_type = ANY($2)",
        )
        .bind(rooms)
        .bind(types)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                (
                    r.get(0),
                    r.get(1),
                    r.get(2),
                    r.get::<Option<Json<JsonValue>>, _>(3)
                        .map_or(JsonValue::Null, |j| j.0),
                )
            })
            .collect())
    }

    /// The user's room account data of one type, per room.
    pub async fn room_account_data_of_type(
        &self,
        user_id: &str,
        data_type: &str,
    ) -> Result<Vec<(String, JsonValue)>> {
        let rows = sqlx::query(
            "SELECT room_id, content FROM account_data
             WHERE user_id = $1 AND data_type = $2 AND room_id <> ''",
        )
        .bind(user_id)
        .bind(data_type)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get(0), r.get::<Json<JsonValue>, _>(1).0))
            .collect())
    }

    /// A room's receipts on `event_ids`, and the user's own: what a room sent for the
    /// first time needs (all of a big room's receipts would be too many).
    pub async fn receipts_for_events_or_user(
        &self,
        room_id: &str,
        event_ids: &[String],
        user_id: &str,
        until: i64,
    ) -> Result<Vec<ReceiptRow>> {
        let rows = sqlx::query(
            "SELECT room_id, user_id, receipt_type, thread_id, event_id, ts FROM receipts
             WHERE room_id = $1 AND (event_id = ANY($2) OR user_id = $3) AND stream_pos <= $4",
        )
        .bind(room_id)
        .bind(event_ids)
        .bind(user_id)
        .bind(until)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ReceiptRow {
                room_id: r.get(0),
                user_id: r.get(1),
                receipt_type: r.get(2),
                thread_id: r.get(3),
                event_id: r.get(4),
                ts: r.get(5),
            })
            .collect())
    }

    /// Members of a room with their profile (display name, avatar) from their member
    /// event, other than `except`, joined and invited first: the heroes of an unnamed room.
    pub async fn hero_profiles(
        &self,
        room_id: &str,
        except: &str,
        limit: i64,
    ) -> Result<Vec<(String, Option<String>, Option<String>)>> {
        Ok(sqlx::query_as(
            "SELECT m.user_id, e.pdu->'content'->>'displayname', e.pdu->'content'->>'avatar_url'
             FROM memberships m JOIN events e ON e.event_nid = m.event_nid
             WHERE m.room_id = $1 AND m.user_id <> $2 AND m.membership IN ('join', 'invite')
             ORDER BY m.stream_pos NULLS LAST, m.user_id
             LIMIT $3",
        )
        .bind(room_id)
        .bind(except)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }
}
