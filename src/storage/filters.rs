//! `filters`: stored /sync filters.

use serde_json::Value as JsonValue;
use sqlx::{Row, types::Json};

use super::{Result, Storage};

impl Storage {
    pub async fn create_filter(&self, user_id: &str, filter: &JsonValue) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "INSERT INTO filters (user_id, filter) VALUES ($1, $2) RETURNING filter_id",
        )
        .bind(user_id)
        .bind(Json(filter))
        .fetch_one(self.pool())
        .await?)
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
