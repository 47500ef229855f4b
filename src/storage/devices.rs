//! `devices`: a user's logged-in sessions. Deleting a device deletes its tokens (cascade).

use serde_json::Value as JsonValue;
use sqlx::{Row, types::Json};

use super::{Result, Storage};

#[derive(Debug, Clone)]
pub struct DeviceRow {
    pub device_id: String,
    pub display_name: Option<String>,
    pub last_seen_ip: Option<String>,
    pub last_seen_ts: Option<i64>,
    pub user_agent: Option<String>,
}

fn device_row(r: sqlx::postgres::PgRow) -> DeviceRow {
    DeviceRow {
        device_id: r.get(0),
        display_name: r.get(1),
        last_seen_ip: r.get(2),
        last_seen_ts: r.get(3),
        user_agent: r.get(4),
    }
}

impl Storage {
    pub async fn devices(&self, user_id: &str) -> Result<Vec<DeviceRow>> {
        let rows = sqlx::query(
            "SELECT device_id, display_name, last_seen_ip, last_seen_ts, user_agent
             FROM devices d WHERE user_id = $1
               AND NOT EXISTS (SELECT 1 FROM dehydrated_devices h
                               WHERE h.user_id = d.user_id AND h.device_id = d.device_id)
             ORDER BY created_ts, device_id",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(device_row).collect())
    }

    pub async fn device(&self, user_id: &str, device_id: &str) -> Result<Option<DeviceRow>> {
        let row = sqlx::query(
            "SELECT device_id, display_name, last_seen_ip, last_seen_ts, user_agent
             FROM devices WHERE user_id = $1 AND device_id = $2",
        )
        .bind(user_id)
        .bind(device_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(device_row))
    }

    /// Returns false when the device does not exist.
    pub async fn rename_device(
        &self,
        user_id: &str,
        device_id: &str,
        display_name: Option<&str>,
    ) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let res = sqlx::query(
            "UPDATE devices SET display_name = $3 WHERE user_id = $1 AND device_id = $2",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(display_name)
        .execute(&mut *tx)
        .await?;
        let found = res.rows_affected() == 1;
        if found {
            // Others show device names (in verification): their lists are stale now.
            super::e2ee::mark_device_lists_changed(&mut tx, &[user_id.to_owned()]).await?;
            super::device_lists::poke_devices(&mut tx, user_id, &[device_id.to_owned()]).await?;
        }
        tx.commit().await?;
        Ok(found)
    }

    /// Deletes the listed devices with their tokens and keys; unknown IDs are ignored.
    /// Others learn of it through the device list stream.
    pub async fn delete_devices(&self, user_id: &str, device_ids: &[String]) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let deleted: Vec<String> = sqlx::query_scalar(
            "DELETE FROM devices WHERE user_id = $1 AND device_id = ANY($2) RETURNING device_id",
        )
        .bind(user_id)
        .bind(device_ids)
        .fetch_all(&mut *tx)
        .await?;
        if !deleted.is_empty() {
            sqlx::query("DELETE FROM pushers WHERE user_id = $1 AND device_id = ANY($2)")
                .bind(user_id)
                .bind(device_ids)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "DELETE FROM to_device_messages WHERE user_id = $1 AND device_id = ANY($2)",
            )
            .bind(user_id)
            .bind(device_ids)
            .execute(&mut *tx)
            .await?;
            super::e2ee::mark_device_lists_changed(&mut tx, &[user_id.to_owned()]).await?;
            super::device_lists::poke_devices(&mut tx, user_id, &deleted).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Deletes every device of the user but `keep`.
    pub async fn delete_other_devices(&self, user_id: &str, keep: Option<&str>) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let deleted: Vec<String> = sqlx::query_scalar(
            "DELETE FROM devices WHERE user_id = $1 AND ($2::text IS NULL OR device_id <> $2)
             RETURNING device_id",
        )
        .bind(user_id)
        .bind(keep)
        .fetch_all(&mut *tx)
        .await?;
        if !deleted.is_empty() {
            sqlx::query(
                "DELETE FROM pushers p WHERE p.user_id = $1
                   AND NOT EXISTS (SELECT 1 FROM devices d
                                   WHERE d.user_id = p.user_id AND d.device_id = p.device_id)",
            )
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "DELETE FROM to_device_messages m WHERE m.user_id = $1
                   AND NOT EXISTS (SELECT 1 FROM devices d
                                   WHERE d.user_id = m.user_id AND d.device_id = m.device_id)",
            )
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "DELETE FROM dehydrated_devices h WHERE h.user_id = $1
                   AND NOT EXISTS (SELECT 1 FROM devices d
                                   WHERE d.user_id = h.user_id AND d.device_id = h.device_id)",
            )
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
            super::e2ee::mark_device_lists_changed(&mut tx, &[user_id.to_owned()]).await?;
            super::device_lists::poke_devices(&mut tx, user_id, &deleted).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Records where and when a device was last used. Called at most once a minute per
    /// token, so it stays off the request hot path.
    pub async fn touch_device(
        &self,
        user_id: &str,
        device_id: &str,
        ip: Option<&str>,
        user_agent: Option<&str>,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE devices SET last_seen_ts = $3, last_seen_ip = COALESCE($4, last_seen_ip),
                    user_agent = COALESCE($5, user_agent)
             WHERE user_id = $1 AND device_id = $2",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(now_ms)
        .bind(ip)
        .bind(user_agent)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The user's dehydrated device: (device ID, device data).
    pub async fn dehydrated_device(&self, user_id: &str) -> Result<Option<(String, JsonValue)>> {
        let row =
            sqlx::query("SELECT device_id, device_data FROM dehydrated_devices WHERE user_id = $1")
                .bind(user_id)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|r| (r.get(0), r.get::<Json<JsonValue>, _>(1).0)))
    }

    /// Replaces the user's dehydrated device (a device without tokens) with a new one.
    /// False when `device_id` is already one of the user's ordinary devices.
    pub async fn replace_dehydrated_device(
        &self,
        user_id: &str,
        device_id: &str,
        display_name: Option<&str>,
        device_data: &JsonValue,
        now_ms: i64,
    ) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let old: Option<String> = sqlx::query_scalar(
            "DELETE FROM dehydrated_devices WHERE user_id = $1 RETURNING device_id",
        )
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(old) = &old {
            remove_device_and_inbox(&mut tx, user_id, old).await?;
        }
        let created = sqlx::query(
            "INSERT INTO devices (user_id, device_id, display_name, created_ts)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(display_name)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if created == 0 {
            return Ok(false);
        }
        sqlx::query(
            "INSERT INTO dehydrated_devices (user_id, device_id, device_data) VALUES ($1, $2, $3)",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(Json(device_data))
        .execute(&mut *tx)
        .await?;
        super::e2ee::mark_device_lists_changed(&mut tx, &[user_id.to_owned()]).await?;
        let changed: Vec<String> = old.into_iter().chain([device_id.to_owned()]).collect();
        super::device_lists::poke_devices(&mut tx, user_id, &changed).await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Deletes the user's dehydrated device; its ID, if there was one.
    pub async fn delete_dehydrated_device(&self, user_id: &str) -> Result<Option<String>> {
        let mut tx = self.pool().begin().await?;
        let old: Option<String> = sqlx::query_scalar(
            "DELETE FROM dehydrated_devices WHERE user_id = $1 RETURNING device_id",
        )
        .bind(user_id)
        .fetch_optional(&mut *tx)
        .await?;
        if let Some(old) = &old {
            remove_device_and_inbox(&mut tx, user_id, old).await?;
            super::e2ee::mark_device_lists_changed(&mut tx, &[user_id.to_owned()]).await?;
            super::device_lists::poke_devices(&mut tx, user_id, std::slice::from_ref(old)).await?;
        }
        tx.commit().await?;
        Ok(old)
    }
}

async fn remove_device_and_inbox(
    conn: &mut sqlx::PgConnection,
    user_id: &str,
    device_id: &str,
) -> Result<()> {
    for sql in [
        "DELETE FROM devices WHERE user_id = $1 AND device_id = $2",
        "DELETE FROM to_device_messages WHERE user_id = $1 AND device_id = $2",
    ] {
        sqlx::query(sql)
            .bind(user_id)
            .bind(device_id)
            .execute(&mut *conn)
            .await?;
    }
    Ok(())
}
