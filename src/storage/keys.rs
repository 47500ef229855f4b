//! `signing_keys`: the server's ed25519 keys.

use sqlx::Row;

use super::{Result, Storage};

#[derive(Debug, Clone)]
pub struct SigningKeyRow {
    pub key_id: String,
    pub pkcs8: Vec<u8>,
    pub public_key: Vec<u8>,
    pub expired_ts: Option<i64>,
}

impl Storage {
    /// All keys, the current one (unexpired, newest) first.
    pub async fn signing_keys(&self) -> Result<Vec<SigningKeyRow>> {
        let rows = sqlx::query(
            "SELECT key_id, pkcs8, public_key, expired_ts FROM signing_keys
             ORDER BY expired_ts IS NOT NULL, created_ts DESC",
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| SigningKeyRow {
                key_id: r.get(0),
                pkcs8: r.get(1),
                public_key: r.get(2),
                expired_ts: r.get(3),
            })
            .collect())
    }

    /// Adds a new current key and expires the others, in one transaction.
    pub async fn add_signing_key(
        &self,
        key_id: &str,
        pkcs8: &[u8],
        public_key: &[u8],
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE signing_keys SET expired_ts = $1 WHERE expired_ts IS NULL")
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO signing_keys (key_id, pkcs8, public_key, created_ts) VALUES ($1, $2, $3, $4)",
        )
        .bind(key_id)
        .bind(pkcs8)
        .bind(public_key)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }
}
