//! Server-side key backup: `backup_versions` and the encrypted room keys in them.

use serde_json::Value as JsonValue;
use sqlx::{Row, types::Json};

use super::{Result, Storage};

#[derive(Debug, Clone)]
pub struct BackupVersionRow {
    pub version: i64,
    pub algorithm: String,
    pub auth_data: JsonValue,
    pub etag: i64,
    pub count: i64,
}

/// One backed-up room key and what decides whether another replaces it.
#[derive(Debug, Clone)]
pub struct BackupKeyRow {
    pub room_id: String,
    pub session_id: String,
    pub first_message_index: i64,
    pub forwarded_count: i64,
    pub is_verified: bool,
    pub session_data: JsonValue,
}

impl Storage {
    pub async fn create_backup_version(
        &self,
        user_id: &str,
        algorithm: &str,
        auth_data: &JsonValue,
    ) -> Result<i64> {
        let mut tx = self.pool().begin().await?;
        // Two creations at once must not pick the same number.
        sqlx::query("SELECT 1 FROM users WHERE user_id = $1 FOR UPDATE")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        let version = sqlx::query_scalar(
            "INSERT INTO backup_versions (user_id, version, algorithm, auth_data)
             SELECT $1, COALESCE(max(version), 0) + 1, $2, $3
             FROM backup_versions WHERE user_id = $1
             RETURNING version",
        )
        .bind(user_id)
        .bind(algorithm)
        .bind(Json(auth_data))
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(version)
    }

    /// A version (the newest not deleted when `version` is None) with its key count.
    pub async fn backup_version(
        &self,
        user_id: &str,
        version: Option<i64>,
    ) -> Result<Option<BackupVersionRow>> {
        let row = sqlx::query(
            "SELECT v.version, v.algorithm, v.auth_data, v.etag,
                    (SELECT count(*) FROM backup_keys k
                     WHERE k.user_id = v.user_id AND k.version = v.version)
             FROM backup_versions v
             WHERE v.user_id = $1 AND NOT v.deleted AND ($2::bigint IS NULL OR v.version = $2)
             ORDER BY v.version DESC LIMIT 1",
        )
        .bind(user_id)
        .bind(version)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| BackupVersionRow {
            version: r.get(0),
            algorithm: r.get(1),
            auth_data: r.get::<Json<JsonValue>, _>(2).0,
            etag: r.get(3),
            count: r.get(4),
        }))
    }

    pub async fn update_backup_auth_data(
        &self,
        user_id: &str,
        version: i64,
        auth_data: &JsonValue,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE backup_versions SET auth_data = $3 WHERE user_id = $1 AND version = $2",
        )
        .bind(user_id)
        .bind(version)
        .bind(Json(auth_data))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Marks a version deleted and drops its keys; false if there was none.
    pub async fn delete_backup_version(&self, user_id: &str, version: i64) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE backup_versions SET deleted = TRUE
             WHERE user_id = $1 AND version = $2 AND NOT deleted",
        )
        .bind(user_id)
        .bind(version)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        sqlx::query("DELETE FROM backup_keys WHERE user_id = $1 AND version = $2")
            .bind(user_id)
            .bind(version)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(done == 1)
    }

    /// Keys of a version, optionally of one room and one session.
    pub async fn backup_keys(
        &self,
        user_id: &str,
        version: i64,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<Vec<BackupKeyRow>> {
        let rows = sqlx::query(
            "SELECT room_id, session_id, first_message_index, forwarded_count, is_verified,
                    session_data
             FROM backup_keys
             WHERE user_id = $1 AND version = $2
               AND ($3::text IS NULL OR room_id = $3) AND ($4::text IS NULL OR session_id = $4)
             ORDER BY room_id, session_id",
        )
        .bind(user_id)
        .bind(version)
        .bind(room_id)
        .bind(session_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| BackupKeyRow {
                room_id: r.get(0),
                session_id: r.get(1),
                first_message_index: r.get(2),
                forwarded_count: r.get(3),
                is_verified: r.get(4),
                session_data: r.get::<Json<JsonValue>, _>(5).0,
            })
            .collect())
    }

    /// Writes keys already judged better than what they replace, and moves the etag on.
    pub async fn put_backup_keys(
        &self,
        user_id: &str,
        version: i64,
        keys: &[BackupKeyRow],
    ) -> Result<()> {
        if keys.is_empty() {
            return Ok(());
        }
        let mut tx = self.pool().begin().await?;
        for k in keys {
            sqlx::query(
                "INSERT INTO backup_keys (user_id, version, room_id, session_id,
                     first_message_index, forwarded_count, is_verified, session_data)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
                 ON CONFLICT (user_id, version, room_id, session_id) DO UPDATE SET
                     first_message_index = EXCLUDED.first_message_index,
                     forwarded_count = EXCLUDED.forwarded_count,
                     is_verified = EXCLUDED.is_verified,
                     session_data = EXCLUDED.session_data",
            )
            .bind(user_id)
            .bind(version)
            .bind(&k.room_id)
            .bind(&k.session_id)
            .bind(k.first_message_index)
            .bind(k.forwarded_count)
            .bind(k.is_verified)
            .bind(Json(&k.session_data))
            .execute(&mut *tx)
            .await?;
        }
        bump_etag(&mut tx, user_id, version).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn delete_backup_keys(
        &self,
        user_id: &str,
        version: i64,
        room_id: Option<&str>,
        session_id: Option<&str>,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let deleted = sqlx::query(
            "DELETE FROM backup_keys WHERE user_id = $1 AND version = $2
               AND ($3::text IS NULL OR room_id = $3) AND ($4::text IS NULL OR session_id = $4)",
        )
        .bind(user_id)
        .bind(version)
        .bind(room_id)
        .bind(session_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if deleted > 0 {
            bump_etag(&mut tx, user_id, version).await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

async fn bump_etag(conn: &mut sqlx::PgConnection, user_id: &str, version: i64) -> Result<()> {
    sqlx::query("UPDATE backup_versions SET etag = etag + 1 WHERE user_id = $1 AND version = $2")
        .bind(user_id)
        .bind(version)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
