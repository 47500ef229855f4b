//! `pushers`: where each user's notifications are sent.

use serde_json::Value as JsonValue;
use sqlx::{Row, types::Json};

use super::{Result, Storage};

pub struct NewPusher<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub app_id: &'a str,
    pub pushkey: &'a str,
    pub kind: &'a str,
    pub url: Option<&'a str>,
    pub pusher: &'a JsonValue,
    pub now_ms: i64,
}

impl Storage {
    /// Adds or replaces a pusher; unless `append`, the same app ID and pushkey is taken
    /// from every other user (one device, one account).
    /// A new pusher beyond the user's `max` is not added; the answer is then false.
    pub async fn set_pusher(&self, p: &NewPusher<'_>, append: bool, max: i64) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("SELECT 1 FROM users WHERE user_id = $1 FOR UPDATE")
            .bind(p.user_id)
            .execute(&mut *tx)
            .await?;
        let (exists, count): (bool, i64) = sqlx::query_as(
            "SELECT bool_or(app_id = $2 AND pushkey = $3) IS TRUE, count(*)
             FROM pushers WHERE user_id = $1",
        )
        .bind(p.user_id)
        .bind(p.app_id)
        .bind(p.pushkey)
        .fetch_one(&mut *tx)
        .await?;
        if !exists && count >= max {
            return Ok(false);
        }
        if !append {
            sqlx::query("DELETE FROM pushers WHERE app_id = $1 AND pushkey = $2 AND user_id <> $3")
                .bind(p.app_id)
                .bind(p.pushkey)
                .bind(p.user_id)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(
            "INSERT INTO pushers (user_id, app_id, pushkey, device_id, kind, url, pusher, created_ts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (user_id, app_id, pushkey) DO UPDATE SET
                 device_id = EXCLUDED.device_id, kind = EXCLUDED.kind, url = EXCLUDED.url,
                 pusher = EXCLUDED.pusher",
        )
        .bind(p.user_id)
        .bind(p.app_id)
        .bind(p.pushkey)
        .bind(p.device_id)
        .bind(p.kind)
        .bind(p.url)
        .bind(Json(p.pusher))
        .bind(p.now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(true)
    }

    pub async fn delete_pusher(&self, user_id: &str, app_id: &str, pushkey: &str) -> Result<()> {
        sqlx::query("DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = $3")
            .bind(user_id)
            .bind(app_id)
            .bind(pushkey)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// A user's pushers as set (spec JSON).
    pub async fn pushers(&self, user_id: &str) -> Result<Vec<JsonValue>> {
        let rows = sqlx::query(
            "SELECT pusher FROM pushers WHERE user_id = $1 ORDER BY created_ts, app_id, pushkey",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| r.get::<Json<JsonValue>, _>(0).0)
            .collect())
    }

    /// A user's pushers as set, with when each was set (ms).
    pub async fn pushers_with_ts(&self, user_id: &str) -> Result<Vec<(JsonValue, i64)>> {
        let rows: Vec<(Json<JsonValue>, i64)> = sqlx::query_as(
            "SELECT pusher, created_ts FROM pushers WHERE user_id = $1
             ORDER BY created_ts, app_id, pushkey",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(Json(p), ts)| (p, ts)).collect())
    }

    /// Removes pushers a gateway rejected (by app ID and pushkey, for this user).
    pub async fn delete_rejected_pushkeys(
        &self,
        user_id: &str,
        app_id: &str,
        pushkeys: &[String],
    ) -> Result<()> {
        sqlx::query("DELETE FROM pushers WHERE user_id = $1 AND app_id = $2 AND pushkey = ANY($3)")
            .bind(user_id)
            .bind(app_id)
            .bind(pushkeys)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Removes the pushers set through other devices than `keep` (a password change).
    pub async fn delete_pushers_of_other_devices(&self, user_id: &str, keep: &str) -> Result<()> {
        sqlx::query("DELETE FROM pushers WHERE user_id = $1 AND device_id <> $2")
            .bind(user_id)
            .bind(keep)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
