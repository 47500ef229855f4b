//! `receipts` and `typing`.

use super::{
    Result, Storage,
    streams::{self, Stream},
};

impl Storage {
    /// Records a receipt, replacing the user's previous one of that type and thread
    /// unless that one is for a later event (receipts only move forward, as Synapse's);
    /// whether it was recorded.
    pub async fn set_receipt(
        &self,
        room_id: &str,
        user_id: &str,
        receipt_type: &str,
        thread_id: &str,
        event_id: &str,
        ts: i64,
    ) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        streams::lock_stream(&mut tx, Stream::Receipts).await?;
        let done = sqlx::query(
            "INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id, ts) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (room_id, user_id, receipt_type, thread_id)
             DO UPDATE SET event_id = EXCLUDED.event_id, ts = EXCLUDED.ts, stream_pos = nextval('receipts_stream')
             WHERE NOT EXISTS (
                 SELECT 1 FROM events old, events new
                 WHERE old.event_id = receipts.event_id AND new.event_id = EXCLUDED.event_id
                   AND old.stream_pos > new.stream_pos)",
        )
        .bind(room_id)
        .bind(user_id)
        .bind(receipt_type)
        .bind(thread_id)
        .bind(event_id)
        .bind(ts)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if done {
            streams::notify(&mut tx, &format!("r:{room_id}")).await?;
        }
        tx.commit().await?;
        Ok(done)
    }

    pub async fn set_typing(
        &self,
        room_id: &str,
        user_id: &str,
        expires_ts: Option<i64>,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        streams::lock_stream(&mut tx, Stream::Typing).await?;
        match expires_ts {
            Some(expires) => {
                sqlx::query(
                    "INSERT INTO typing (room_id, user_id, expires_ts) VALUES ($1, $2, $3)
                     ON CONFLICT (room_id, user_id) DO UPDATE SET expires_ts = EXCLUDED.expires_ts",
                )
                .bind(room_id)
                .bind(user_id)
                .bind(expires)
                .execute(&mut *tx)
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM typing WHERE room_id = $1 AND user_id = $2")
                    .bind(room_id)
                    .bind(user_id)
                    .execute(&mut *tx)
                    .await?;
            }
        }
        bump_typing(&mut tx, &[room_id.to_owned()]).await?;
        tx.commit().await?;
        Ok(())
    }

    /// Removes typing notices that have run out; their rooms' typing changes. Returns
    /// the (room, user) of each.
    pub async fn expire_typing(&self, now_ms: i64) -> Result<Vec<(String, String)>> {
        let mut tx = self.pool().begin().await?;
        streams::lock_stream(&mut tx, Stream::Typing).await?;
        let expired: Vec<(String, String)> =
            sqlx::query_as("DELETE FROM typing WHERE expires_ts <= $1 RETURNING room_id, user_id")
                .bind(now_ms)
                .fetch_all(&mut *tx)
                .await?;
        let mut rooms: Vec<String> = expired.iter().map(|(r, _)| r.clone()).collect();
        rooms.sort();
        rooms.dedup();
        bump_typing(&mut tx, &rooms).await?;
        tx.commit().await?;
        Ok(expired)
    }

    /// Users typing in a room now.
    pub async fn typing_users(&self, room_id: &str, now_ms: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT user_id FROM typing WHERE room_id = $1 AND expires_ts > $2 ORDER BY user_id",
        )
        .bind(room_id)
        .bind(now_ms)
        .fetch_all(self.pool())
        .await?)
    }
}

/// Gives the rooms a new typing position and wakes their syncs (stream lock held).
async fn bump_typing(conn: &mut sqlx::PgConnection, rooms: &[String]) -> Result<()> {
    for room_id in rooms {
        sqlx::query(
            "INSERT INTO typing_rooms (room_id, stream_pos) VALUES ($1, nextval('typing_stream'))
             ON CONFLICT (room_id) DO UPDATE SET stream_pos = EXCLUDED.stream_pos",
        )
        .bind(room_id)
        .execute(&mut *conn)
        .await?;
        streams::notify(conn, &format!("r:{room_id}")).await?;
    }
    Ok(())
}
