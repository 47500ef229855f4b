//! `account_data`: global (room_id '') and per-room data, each change on a stream position.

use serde_json::Value as JsonValue;
use sqlx::{Row, types::Json};

use super::{
    Result, Storage,
    streams::{self, Stream},
};

impl Storage {
    pub async fn account_data(
        &self,
        user_id: &str,
        room_id: &str,
        data_type: &str,
    ) -> Result<Option<JsonValue>> {
        let row = sqlx::query(
            "SELECT content FROM account_data WHERE user_id = $1 AND room_id = $2 AND data_type = $3",
        )
        .bind(user_id)
        .bind(room_id)
        .bind(data_type)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| r.get::<Json<JsonValue>, _>(0).0))
    }

    /// Sets an entry. `max_bytes` bounds the size of all the user's entries together
    /// (read markers, which the server keeps per room, not counted): a write that would
    /// pass it is not made, and the answer is false.
    pub async fn set_account_data(
        &self,
        user_id: &str,
        room_id: &str,
        data_type: &str,
        content: &JsonValue,
        max_bytes: Option<i64>,
    ) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        if let Some(max) = max_bytes {
            // The user's row lock serialises this user's checked writes, so the sum holds;
            // it is taken before the server-wide stream lock, which stays short.
            sqlx::query("SELECT 1 FROM users WHERE user_id = $1 FOR UPDATE")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
            // Stored sizes (compressed as kept), read without decompressing the values.
            let others: i64 = sqlx::query_scalar(
                "SELECT coalesce(sum(pg_column_size(content)), 0)::bigint
                 FROM account_data
                 WHERE user_id = $1 AND data_type <> 'm.fully_read'
                   AND NOT (room_id = $2 AND data_type = $3)",
            )
            .bind(user_id)
            .bind(room_id)
            .bind(data_type)
            .fetch_one(&mut *tx)
            .await?;
            let size = serde_json::to_string(content).map_or(i64::MAX, |t| t.len() as i64);
            if others.saturating_add(size) > max {
                return Ok(false);
            }
        }
        streams::lock_stream(&mut tx, Stream::AccountData).await?;
        sqlx::query(
            "INSERT INTO account_data (user_id, room_id, data_type, content) VALUES ($1, $2, $3, $4)
             ON CONFLICT (user_id, room_id, data_type)
             DO UPDATE SET content = EXCLUDED.content, stream_pos = nextval('account_data_stream')",
        )
        .bind(user_id)
        .bind(room_id)
        .bind(data_type)
        .bind(Json(content))
        .execute(&mut *tx)
        .await?;
        streams::notify(&mut tx, &format!("u:{user_id}")).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Read-modify-write of one global account data entry, serialised per user (the user
    /// row is locked), so concurrent edits (push rules) do not lose each other. `change`
    /// gets the current content; its error aborts without writing.
    pub async fn update_global_account_data<E>(
        &self,
        user_id: &str,
        data_type: &str,
        change: impl FnOnce(Option<JsonValue>) -> std::result::Result<JsonValue, E>,
    ) -> Result<std::result::Result<JsonValue, E>> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("SELECT 1 FROM users WHERE user_id = $1 FOR UPDATE")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let current: Option<JsonValue> = sqlx::query(
            "SELECT content FROM account_data WHERE user_id = $1 AND room_id = '' AND data_type = $2",
        )
        .bind(user_id)
        .bind(data_type)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| r.get::<Json<JsonValue>, _>(0).0);
        let content = match change(current) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e)),
        };
        streams::lock_stream(&mut tx, Stream::AccountData).await?;
        sqlx::query(
            "INSERT INTO account_data (user_id, room_id, data_type, content) VALUES ($1, '', $2, $3)
             ON CONFLICT (user_id, room_id, data_type)
             DO UPDATE SET content = EXCLUDED.content, stream_pos = nextval('account_data_stream')",
        )
        .bind(user_id)
        .bind(data_type)
        .bind(Json(&content))
        .execute(&mut *tx)
        .await?;
        streams::notify(&mut tx, &format!("u:{user_id}")).await?;
        tx.commit().await?;
        Ok(Ok(content))
    }
}
