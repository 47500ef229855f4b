//! `receipts` and `typing`.

use super::{Result, Storage};

impl Storage {
    /// Records a receipt, replacing the user's previous one of that type and thread.
    pub async fn set_receipt(
        &self,
        room_id: &str,
        user_id: &str,
        receipt_type: &str,
        thread_id: &str,
        event_id: &str,
        ts: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO receipts (room_id, user_id, receipt_type, thread_id, event_id, ts) VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (room_id, user_id, receipt_type, thread_id)
             DO UPDATE SET event_id = EXCLUDED.event_id, ts = EXCLUDED.ts, stream_pos = nextval('receipts_stream')",
        )
        .bind(room_id)
        .bind(user_id)
        .bind(receipt_type)
        .bind(thread_id)
        .bind(event_id)
        .bind(ts)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn set_typing(
        &self,
        room_id: &str,
        user_id: &str,
        expires_ts: Option<i64>,
    ) -> Result<()> {
        match expires_ts {
            Some(expires) => {
                sqlx::query(
                    "INSERT INTO typing (room_id, user_id, expires_ts) VALUES ($1, $2, $3)
                     ON CONFLICT (room_id, user_id) DO UPDATE SET expires_ts = EXCLUDED.expires_ts",
                )
                .bind(room_id)
                .bind(user_id)
                .bind(expires)
                .execute(self.pool())
                .await?;
            }
            None => {
                sqlx::query("DELETE FROM typing WHERE room_id = $1 AND user_id = $2")
                    .bind(room_id)
                    .bind(user_id)
                    .execute(self.pool())
                    .await?;
            }
        }
        Ok(())
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
