//! `appservice_state` and `appservice_txns`: each application service's place in the
//! event stream and its transactions not yet accepted.

use serde_json::Value as JsonValue;
use sqlx::types::Json;

use super::{
    Result, Storage,
    events::{StoredEvent, stored_event},
};

impl Storage {
    /// The appservice's place in the event stream; the first time, the stream's current
    /// end (a new appservice is sent what happens from now on, not the history).
    pub async fn appservice_position(&self, appservice_id: &str) -> Result<i64> {
        let pos: i64 = sqlx::query_scalar(
            "INSERT INTO appservice_state (appservice_id, events_pos)
             VALUES ($1, (SELECT coalesce(max(stream_pos), 0) FROM events))
             ON CONFLICT (appservice_id) DO UPDATE SET appservice_id = EXCLUDED.appservice_id
             RETURNING events_pos",
        )
        .bind(appservice_id)
        .fetch_one(self.pool())
        .await?;
        Ok(pos)
    }

    /// Takes (or renews) the lease to send to the appservice for `lease_ms`; false while
    /// another process holds it.
    pub async fn lease_appservice(
        &self,
        appservice_id: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE appservice_state SET lease_owner = $2, lease_until = $3 + $4
             WHERE appservice_id = $1 AND (lease_until < $3 OR lease_owner = $2)",
        )
        .bind(appservice_id)
        .bind(owner)
        .bind(now_ms)
        .bind(lease_ms)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn release_appservice_lease(&self, appservice_id: &str, owner: &str) -> Result<()> {
        sqlx::query(
            "UPDATE appservice_state SET lease_until = 0
             WHERE appservice_id = $1 AND lease_owner = $2",
        )
        .bind(appservice_id)
        .bind(owner)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Timeline events after `pos`, in stream order, at most `limit`.
    pub async fn events_after(&self, pos: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM events WHERE stream_pos > $1 ORDER BY stream_pos LIMIT $2",
            super::events::EVENT_COLUMNS
        )))
        .bind(pos)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(stored_event).collect())
    }

    /// Moves the appservice to `pos` and, when there is anything to send, queues it as
    /// its next transaction: both or neither.
    pub async fn queue_appservice_txn(
        &self,
        appservice_id: &str,
        pos: i64,
        body: Option<&JsonValue>,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let txn_id: i64 = sqlx::query_scalar(
            "UPDATE appservice_state SET events_pos = $2,
                 next_txn_id = next_txn_id + CASE WHEN $3 THEN 1 ELSE 0 END
             WHERE appservice_id = $1 RETURNING next_txn_id - CASE WHEN $3 THEN 1 ELSE 0 END",
        )
        .bind(appservice_id)
        .bind(pos)
        .bind(body.is_some())
        .fetch_one(&mut *tx)
        .await?;
        if let Some(body) = body {
            sqlx::query(
                "INSERT INTO appservice_txns (appservice_id, txn_id, body, created_ts)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(appservice_id)
            .bind(txn_id)
            .bind(Json(body))
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The appservice's oldest transaction not yet accepted.
    pub async fn oldest_appservice_txn(
        &self,
        appservice_id: &str,
    ) -> Result<Option<(i64, JsonValue)>> {
        let row: Option<(i64, Json<JsonValue>)> = sqlx::query_as(
            "SELECT txn_id, body FROM appservice_txns WHERE appservice_id = $1
             ORDER BY txn_id LIMIT 1",
        )
        .bind(appservice_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|(id, Json(body))| (id, body)))
    }

    pub async fn delete_appservice_txn(&self, appservice_id: &str, txn_id: i64) -> Result<()> {
        sqlx::query("DELETE FROM appservice_txns WHERE appservice_id = $1 AND txn_id = $2")
            .bind(appservice_id)
            .bind(txn_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// (transactions waiting, place in the event stream) of an appservice, for admins.
    pub async fn appservice_queue(&self, appservice_id: &str) -> Result<(i64, Option<i64>)> {
        let waiting: i64 =
            sqlx::query_scalar("SELECT count(*) FROM appservice_txns WHERE appservice_id = $1")
                .bind(appservice_id)
                .fetch_one(self.pool())
                .await?;
        let pos: Option<i64> =
            sqlx::query_scalar("SELECT events_pos FROM appservice_state WHERE appservice_id = $1")
                .bind(appservice_id)
                .fetch_optional(self.pool())
                .await?;
        Ok((waiting, pos))
    }

    /// Local users among a room's joined and invited members.
    pub async fn local_members(&self, room_id: &str, server_name: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT user_id FROM memberships WHERE room_id = $1
               AND membership IN ('join', 'invite')
               AND right(user_id, length($2) + 1) = ':' || $2",
        )
        .bind(room_id)
        .bind(server_name)
        .fetch_all(self.pool())
        .await?)
    }
}
