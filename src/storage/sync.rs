//! Reads for /sync: what changed for a user between two stream positions.

use serde_json::Value as JsonValue;
use sqlx::{Row, types::Json};

use super::{Result, Storage};

/// A user's membership of a room, with the position of the event that set it.
#[derive(Debug, Clone)]
pub struct MembershipRow {
    pub room_id: String,
    pub membership: String,
    pub event_nid: i64,
    pub stream_pos: Option<i64>,
}

#[derive(Debug, Clone)]
pub struct ReceiptRow {
    pub room_id: String,
    pub user_id: String,
    pub receipt_type: String,
    pub thread_id: String,
    pub event_id: String,
    pub ts: i64,
}

impl Storage {
    /// Every room the user has a (not forgotten) membership in, any kind.
    pub async fn user_memberships(&self, user_id: &str) -> Result<Vec<MembershipRow>> {
        let rows = sqlx::query(
            "SELECT room_id, membership, event_nid, stream_pos FROM memberships
             WHERE user_id = $1 AND NOT forgotten",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| MembershipRow {
                room_id: r.get(0),
                membership: r.get(1),
                event_nid: r.get(2),
                stream_pos: r.get(3),
            })
            .collect())
    }

    /// The user's membership in a room as of stream position `pos`.
    pub async fn membership_at(
        &self,
        room_id: &str,
        user_id: &str,
        pos: i64,
    ) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT pdu->'content'->>'membership' FROM events
             WHERE room_id = $1 AND state_key = $2 AND event_type = 'm.room.member'
               AND stream_pos <= $3
             ORDER BY stream_pos DESC LIMIT 1",
        )
        .bind(room_id)
        .bind(user_id)
        .bind(pos)
        .fetch_optional(self.pool())
        .await?
        .flatten())
    }

    /// The user's membership changes in a room up to `until`, oldest first, as (stream
    /// position, membership): enough to tell their membership at any event.
    pub async fn membership_history(
        &self,
        room_id: &str,
        user_id: &str,
        until: i64,
    ) -> Result<Vec<(i64, String)>> {
        let rows: Vec<(i64, Option<String>)> = sqlx::query_as(
            "SELECT stream_pos, pdu->'content'->>'membership' FROM events
             WHERE room_id = $1 AND state_key = $2 AND event_type = 'm.room.member'
               AND stream_pos IS NOT NULL AND stream_pos <= $3
             ORDER BY stream_pos",
        )
        .bind(room_id)
        .bind(user_id)
        .bind(until)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|(pos, m)| Some((pos, m?)))
            .collect())
    }

    /// Which of `rooms` have timeline events in (since, until].
    pub async fn rooms_with_events_between(
        &self,
        rooms: &[String],
        since: i64,
        until: i64,
    ) -> Result<Vec<String>> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT room_id FROM events
             WHERE stream_pos > $2 AND stream_pos <= $3 AND room_id = ANY($1)",
        )
        .bind(rooms)
        .bind(since)
        .bind(until)
        .fetch_all(self.pool())
        .await?)
    }

    /// State keys a room's events changed in (since, until) (both exclusive).
    pub async fn state_keys_changed_between(
        &self,
        room_id: &str,
        since: i64,
        until: i64,
    ) -> Result<Vec<(String, String)>> {
        Ok(sqlx::query_as(
            "SELECT DISTINCT event_type, state_key FROM events
             WHERE room_id = $1 AND state_key IS NOT NULL AND stream_pos > $2 AND stream_pos < $3",
        )
        .bind(room_id)
        .bind(since)
        .bind(until)
        .fetch_all(self.pool())
        .await?)
    }

    /// Receipts in `rooms` set in (since, until].
    pub async fn receipts_between(
        &self,
        rooms: &[String],
        since: i64,
        until: i64,
    ) -> Result<Vec<ReceiptRow>> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT room_id, user_id, receipt_type, thread_id, event_id, ts FROM receipts
             WHERE room_id = ANY($1) AND stream_pos > $2 AND stream_pos <= $3",
        )
        .bind(rooms)
        .bind(since)
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

    /// Which of `rooms` had typing changes in (since, until].
    pub async fn typing_rooms_between(
        &self,
        rooms: &[String],
        since: i64,
        until: i64,
    ) -> Result<Vec<String>> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_scalar(
            "SELECT room_id FROM typing_rooms
             WHERE room_id = ANY($1) AND stream_pos > $2 AND stream_pos <= $3",
        )
        .bind(rooms)
        .bind(since)
        .bind(until)
        .fetch_all(self.pool())
        .await?)
    }

    /// (room, user) of everyone typing now in `rooms`.
    pub async fn typing_in_rooms(
        &self,
        rooms: &[String],
        now_ms: i64,
    ) -> Result<Vec<(String, String)>> {
        if rooms.is_empty() {
            return Ok(Vec::new());
        }
        Ok(sqlx::query_as(
            "SELECT room_id, user_id FROM typing WHERE room_id = ANY($1) AND expires_ts > $2
             ORDER BY room_id, user_id",
        )
        .bind(rooms)
        .bind(now_ms)
        .fetch_all(self.pool())
        .await?)
    }

    /// The user's account data (global: room '') changed in (since, until].
    pub async fn account_data_between(
        &self,
        user_id: &str,
        since: i64,
        until: i64,
    ) -> Result<Vec<(String, String, JsonValue)>> {
        let rows = sqlx::query(
            "SELECT room_id, data_type, content FROM account_data
             WHERE user_id = $1 AND stream_pos > $2 AND stream_pos <= $3 ORDER BY stream_pos",
        )
        .bind(user_id)
        .bind(since)
        .bind(until)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get(0), r.get(1), r.get::<Json<JsonValue>, _>(2).0))
            .collect())
    }

    /// (joined, invited) member counts of a room.
    pub async fn member_counts(&self, room_id: &str) -> Result<(i64, i64)> {
        Ok(sqlx::query_as(
            "SELECT count(*) FILTER (WHERE membership = 'join'),
                    count(*) FILTER (WHERE membership = 'invite')
             FROM memberships WHERE room_id = $1",
        )
        .bind(room_id)
        .fetch_one(self.pool())
        .await?)
    }

    /// Up to five members other than `user_id`, joined or invited, earliest first; the
    /// spec's heroes, which name a room that has no name.
    pub async fn heroes(&self, room_id: &str, user_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT user_id FROM memberships
             WHERE room_id = $1 AND user_id <> $2 AND membership IN ('join', 'invite')
             ORDER BY stream_pos NULLS LAST, user_id LIMIT 5",
        )
        .bind(room_id)
        .bind(user_id)
        .fetch_all(self.pool())
        .await?)
    }
}
