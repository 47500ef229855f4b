//! `filters`: stored /sync filters.

use serde_json::Value as JsonValue;
use sqlx::{Row, types::Json};

use super::{Result, Storage};

impl Storage {
    /// Stores a filter, or finds the same one stored before (clients upload their filter
    /// at every start). A user keeps at most `max` filters: beyond it the oldest goes.
    pub async fn create_filter(&self, user_id: &str, filter: &JsonValue, max: i64) -> Result<i64> {
        let mut tx = self.pool().begin().await?;
        // Serialises one user's filter writes, so the bound holds under concurrency.
        sqlx::query("SELECT pg_advisory_xact_lock(hashtext('filters:' || $1))")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let existing: Option<i64> = sqlx::query_scalar(
            "SELECT filter_id FROM filters WHERE user_id = $1 AND filter = $2 LIMIT 1",
        )
        .bind(user_id)
        .bind(Json(filter))
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(id) = existing {
            tx.commit().await?;
            return Ok(id);
        }
        sqlx::query(
            "DELETE FROM filters WHERE user_id = $1 AND filter_id IN (
                 SELECT filter_id FROM filters WHERE user_id = $1
                 ORDER BY filter_id DESC OFFSET $2 - 1)",
        )
        .bind(user_id)
        .bind(max)
        .execute(&mut *tx)
        .await?;
        let id = sqlx::query_scalar(
            "INSERT INTO filters (user_id, filter) VALUES ($1, $2) RETURNING filter_id",
        )
        .bind(user_id)
        .bind(Json(filter))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    pub async fn filter(&self, user_id: &str, filter_id: i64) -> Result<Option<JsonValue>> {
        let row = sqlx::query("SELECT filter FROM filters WHERE user_id = $1 AND filter_id = $2")
            .bind(user_id)
            .bind(filter_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.get::<Json<JsonValue>, _>(0).0))
    }
}
