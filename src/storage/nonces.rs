//! `admin_register_nonces`: single-use nonces for shared-secret registration.

use super::{Result, Storage};

impl Storage {
    pub async fn insert_register_nonce(
        &self,
        nonce: &str,
        expires_ts: i64,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query("DELETE FROM admin_register_nonces WHERE expires_ts < $1")
            .bind(now_ms)
            .execute(self.pool())
            .await?;
        sqlx::query("INSERT INTO admin_register_nonces (nonce, expires_ts) VALUES ($1, $2)")
            .bind(nonce)
            .bind(expires_ts)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Consumes the nonce; true when it existed and had not expired.
    pub async fn take_register_nonce(&self, nonce: &str, now_ms: i64) -> Result<bool> {
        let expires: Option<i64> = sqlx::query_scalar(
            "DELETE FROM admin_register_nonces WHERE nonce = $1 RETURNING expires_ts",
        )
        .bind(nonce)
        .fetch_optional(self.pool())
        .await?;
        Ok(expires.is_some_and(|e| e > now_ms))
    }
}
