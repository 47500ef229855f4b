//! `profile_fields`: one row per field of a user's profile.

use serde_json::Value as JsonValue;
use sqlx::{Row, types::Json};

use super::{Result, Storage};

impl Storage {
    pub async fn profile(&self, user_id: &str) -> Result<Vec<(String, JsonValue)>> {
        let rows = sqlx::query(
            "SELECT field, value FROM profile_fields WHERE user_id = $1 ORDER BY field",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.get(0), r.get::<Json<JsonValue>, _>(1).0))
            .collect())
    }

    pub async fn profile_field(&self, user_id: &str, field: &str) -> Result<Option<JsonValue>> {
        let row = sqlx::query("SELECT value FROM profile_fields WHERE user_id = $1 AND field = $2")
            .bind(user_id)
            .bind(field)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.get::<Json<JsonValue>, _>(0).0))
    }

    /// Total size of the profile's JSON with `field` replaced by `value_len` bytes.
    pub async fn profile_size_with(
        &self,
        user_id: &str,
        field: &str,
        value_len: i64,
    ) -> Result<i64> {
        let others: Option<i64> = sqlx::query_scalar(
            "SELECT sum(length(field) + length(value::text))::bigint FROM profile_fields
             WHERE user_id = $1 AND field <> $2",
        )
        .bind(user_id)
        .bind(field)
        .fetch_one(self.pool())
        .await?;
        Ok(others.unwrap_or(0) + field.len() as i64 + value_len)
    }

    pub async fn set_profile_field(
        &self,
        user_id: &str,
        field: &str,
        value: &JsonValue,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO profile_fields (user_id, field, value) VALUES ($1, $2, $3)
             ON CONFLICT (user_id, field) DO UPDATE SET value = EXCLUDED.value",
        )
        .bind(user_id)
        .bind(field)
        .bind(Json(value))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn delete_profile_field(&self, user_id: &str, field: &str) -> Result<()> {
        sqlx::query("DELETE FROM profile_fields WHERE user_id = $1 AND field = $2")
            .bind(user_id)
            .bind(field)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
