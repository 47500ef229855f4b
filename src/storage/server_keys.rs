//! `server_keys`, `server_key_documents`: other servers' signing keys and the signed
//! documents they came in.

use serde_json::Value as JsonValue;
use sqlx::types::Json;

use super::{Result, Storage};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ServerKeyRow {
    pub key_id: String,
    pub public_key: String,
    pub valid_until_ts: i64,
    pub expired: bool,
}

/// A key as a verified document lists it.
#[derive(Debug, Clone)]
pub struct NewServerKey {
    pub key_id: String,
    pub public_key: String,
    pub valid_until_ts: i64,
    pub expired: bool,
}

impl Storage {
    /// The keys known for `server_name` among `key_ids`.
    pub async fn server_keys(
        &self,
        server_name: &str,
        key_ids: &[String],
    ) -> Result<Vec<ServerKeyRow>> {
        Ok(sqlx::query_as(
            "SELECT key_id, public_key, valid_until_ts, expired FROM server_keys
             WHERE server_name = $1 AND key_id = ANY($2)",
        )
        .bind(server_name)
        .bind(key_ids)
        .fetch_all(self.pool())
        .await?)
    }

    /// Records a verified key document: its keys, and the document itself for each of its
    /// current keys where it is the newest seen for that key. A key's validity only
    /// grows, unless the server now lists it as expired.
    pub async fn store_server_keys(
        &self,
        server_name: &str,
        keys: &[NewServerKey],
        document: &JsonValue,
        document_valid_until_ts: i64,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        for key in keys {
            sqlx::query(
                "INSERT INTO server_keys
                     (server_name, key_id, public_key, valid_until_ts, expired, fetched_ts)
                 VALUES ($1, $2, $3, $4, $5, $6)
                 ON CONFLICT (server_name, key_id) DO UPDATE SET
                     public_key = EXCLUDED.public_key,
                     valid_until_ts = CASE WHEN EXCLUDED.expired THEN EXCLUDED.valid_until_ts
                         ELSE GREATEST(server_keys.valid_until_ts, EXCLUDED.valid_until_ts) END,
                     expired = EXCLUDED.expired,
                     fetched_ts = EXCLUDED.fetched_ts",
            )
            .bind(server_name)
            .bind(&key.key_id)
            .bind(&key.public_key)
            .bind(key.valid_until_ts)
            .bind(key.expired)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        for key in keys.iter().filter(|k| !k.expired) {
            sqlx::query(
                "INSERT INTO server_key_documents
                     (server_name, key_id, document, valid_until_ts, fetched_ts)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (server_name, key_id) DO UPDATE SET
                     document = EXCLUDED.document,
                     valid_until_ts = EXCLUDED.valid_until_ts,
                     fetched_ts = EXCLUDED.fetched_ts
                 WHERE server_key_documents.valid_until_ts <= EXCLUDED.valid_until_ts",
            )
            .bind(server_name)
            .bind(&key.key_id)
            .bind(Json(document))
            .bind(document_valid_until_ts)
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The documents held for a server's keys (all its keys when `key_ids` is empty):
    /// (key ID, document, valid_until_ts).
    pub async fn server_key_documents(
        &self,
        server_name: &str,
        key_ids: &[String],
    ) -> Result<Vec<(String, JsonValue, i64)>> {
        let rows: Vec<(String, Json<JsonValue>, i64)> = sqlx::query_as(
            "SELECT key_id, document, valid_until_ts FROM server_key_documents
             WHERE server_name = $1 AND (cardinality($2::text[]) = 0 OR key_id = ANY($2))",
        )
        .bind(server_name)
        .bind(key_ids)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(k, d, v)| (k, d.0, v)).collect())
    }
}
