//! `access_tokens`, `refresh_tokens`, `login_tokens`, `openid_tokens`. Only SHA-256
//! hashes are stored.

use sqlx::Row;

use super::{Result, Storage};

/// What an access token resolves to.
#[derive(Debug, Clone)]
pub struct AccessTokenRow {
    pub user_id: String,
    pub device_id: String,
    pub expires_ts: Option<i64>,
    pub is_admin: bool,
    pub is_guest: bool,
    pub suspended: bool,
    pub locked: bool,
    /// The refresh token this token came with, when that replaced another not yet retired.
    pub retires_refresh: Option<i64>,
}

/// A new login: device (created or reused) plus its first tokens.
pub struct NewSession<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub initial_display_name: Option<&'a str>,
    pub access_hash: &'a [u8],
    pub access_expires_ts: Option<i64>,
    pub refresh_hash: Option<&'a [u8]>,
    pub ip: Option<&'a str>,
    pub now_ms: i64,
}

impl Storage {
    /// Creates the device, or reuses it and revokes the tokens it had (as the spec asks
    /// when a client logs in with an existing device ID), then stores the new tokens.
    pub async fn create_session(&self, s: &NewSession<'_>) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        let created: bool = sqlx::query_scalar(
            "INSERT INTO devices (user_id, device_id, display_name, last_seen_ip, last_seen_ts, created_ts)
             VALUES ($1, $2, $3, $4, $5, $5)
             ON CONFLICT (user_id, device_id) DO UPDATE
               SET display_name = COALESCE(devices.display_name, EXCLUDED.display_name)
             RETURNING xmax = 0",
        )
        .bind(s.user_id)
        .bind(s.device_id)
        .bind(s.initial_display_name)
        .bind(s.ip)
        .bind(s.now_ms)
        .fetch_one(&mut *tx)
        .await?;
        if created {
            // A new device is a change of the user's device list (clients re-query keys).
            super::e2ee::mark_device_lists_changed(&mut tx, &[s.user_id.to_owned()]).await?;
        }
        // Access tokens issued with a refresh token go with it (cascade).
        for sql in [
            "DELETE FROM refresh_tokens WHERE user_id = $1 AND device_id = $2",
            "DELETE FROM access_tokens WHERE user_id = $1 AND device_id = $2",
        ] {
            sqlx::query(sql)
                .bind(s.user_id)
                .bind(s.device_id)
                .execute(&mut *tx)
                .await?;
        }
        let refresh_id =
            insert_refresh(&mut tx, s.user_id, s.device_id, s.refresh_hash, s.now_ms).await?;
        insert_access(&mut tx, s, refresh_id).await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn access_token(&self, hash: &[u8]) -> Result<Option<AccessTokenRow>> {
        let row = sqlx::query(
            "SELECT t.user_id, t.device_id, t.expires_ts, u.is_admin, u.is_guest,
                    u.suspended, u.locked,
                    (SELECT p.replaced_by FROM refresh_tokens p
                     WHERE t.refresh_token_id IS NOT NULL AND p.replaced_by = t.refresh_token_id
                     LIMIT 1)
             FROM access_tokens t JOIN users u ON u.user_id = t.user_id
             WHERE t.token_hash = $1 AND NOT u.deactivated",
        )
        .bind(hash)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| AccessTokenRow {
            user_id: r.get(0),
            device_id: r.get(1),
            expires_ts: r.get(2),
            is_admin: r.get(3),
            is_guest: r.get(4),
            suspended: r.get(5),
            locked: r.get(6),
            retires_refresh: r.get(7),
        }))
    }

    /// Consumes a refresh token and issues the next pair for the same device. The old
    /// access token goes with the old refresh token (cascade). `None`: unknown token.
    pub async fn rotate_refresh_token(
        &self,
        old_hash: &[u8],
        access_hash: &[u8],
        access_expires_ts: i64,
        refresh_hash: &[u8],
        now_ms: i64,
    ) -> Result<Option<(String, String)>> {
        let mut tx = self.pool().begin().await?;
        // The device's row first: concurrent refreshes of one session (a token and its
        // predecessor, say, from two processes of one app) then queue instead of locking
        // each other's tokens in opposite orders.
        sqlx::query(
            "SELECT 1 FROM devices d JOIN refresh_tokens r
                 ON r.user_id = d.user_id AND r.device_id = d.device_id
             WHERE r.token_hash = $1 FOR UPDATE OF d",
        )
        .bind(old_hash)
        .execute(&mut *tx)
        .await?;
        let row = sqlx::query(
            "SELECT id, user_id, device_id, replaced_by FROM refresh_tokens
             WHERE token_hash = $1 FOR UPDATE",
        )
        .bind(old_hash)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else { return Ok(None) };
        let (old_id, user_id, device_id, unused_successor): (i64, String, String, Option<i64>) =
            (row.get(0), row.get(1), row.get(2), row.get(3));
        // Using this token proves its own predecessor is done with.
        sqlx::query("DELETE FROM refresh_tokens WHERE replaced_by = $1")
            .bind(old_id)
            .execute(&mut *tx)
            .await?;
        // Refreshed before, and the result never used (a lost response): that pair goes,
        // this token stays valid until the new pair is used.
        if let Some(successor) = unused_successor {
            sqlx::query("DELETE FROM refresh_tokens WHERE id = $1")
                .bind(successor)
                .execute(&mut *tx)
                .await?;
        }
        let refresh_id =
            insert_refresh(&mut tx, &user_id, &device_id, Some(refresh_hash), now_ms).await?;
        sqlx::query("UPDATE refresh_tokens SET replaced_by = $2 WHERE id = $1")
            .bind(old_id)
            .bind(refresh_id)
            .execute(&mut *tx)
            .await?;
        let session = NewSession {
            user_id: &user_id,
            device_id: &device_id,
            initial_display_name: None,
            access_hash,
            access_expires_ts: Some(access_expires_ts),
            refresh_hash: Some(refresh_hash),
            ip: None,
            now_ms,
        };
        insert_access(&mut tx, &session, refresh_id).await?;
        tx.commit().await?;
        Ok(Some((user_id, device_id)))
    }

    /// The first use of an access token issued by a refresh ends the refresh token it
    /// replaced (and the access token that came with that).
    pub async fn retire_refreshed_predecessor(&self, refresh_token_id: i64) -> Result<()> {
        sqlx::query("DELETE FROM refresh_tokens WHERE replaced_by = $1")
            .bind(refresh_token_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn insert_login_token(
        &self,
        hash: &[u8],
        user_id: &str,
        expires_ts: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO login_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)",
        )
        .bind(hash)
        .bind(user_id)
        .bind(expires_ts)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// An OpenID token (by hash) naming `user_id` until `expires_ts`; expired ones go.
    pub async fn insert_openid_token(
        &self,
        hash: &[u8],
        user_id: &str,
        expires_ts: i64,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM openid_tokens WHERE expires_ts <= $1")
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO openid_tokens (token_hash, user_id, expires_ts) VALUES ($1, $2, $3)",
        )
        .bind(hash)
        .bind(user_id)
        .bind(expires_ts)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The user an unexpired OpenID token names (it may be used more than once).
    pub async fn openid_token_user(&self, hash: &[u8], now_ms: i64) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT user_id FROM openid_tokens WHERE token_hash = $1 AND expires_ts > $2",
        )
        .bind(hash)
        .bind(now_ms)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Single use: the token is deleted whether or not it has expired.
    pub async fn take_login_token(&self, hash: &[u8], now_ms: i64) -> Result<Option<String>> {
        let row = sqlx::query(
            "DELETE FROM login_tokens WHERE token_hash = $1 RETURNING user_id, expires_ts",
        )
        .bind(hash)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.and_then(|r| {
            let expires: i64 = r.get(1);
            (expires > now_ms).then(|| r.get(0))
        }))
    }
}

async fn insert_refresh(
    tx: &mut sqlx::PgConnection,
    user_id: &str,
    device_id: &str,
    hash: Option<&[u8]>,
    now_ms: i64,
) -> Result<Option<i64>> {
    let Some(hash) = hash else { return Ok(None) };
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO refresh_tokens (token_hash, user_id, device_id, created_ts)
         VALUES ($1, $2, $3, $4) RETURNING id",
    )
    .bind(hash)
    .bind(user_id)
    .bind(device_id)
    .bind(now_ms)
    .fetch_one(tx)
    .await?;
    Ok(Some(id))
}

async fn insert_access(
    tx: &mut sqlx::PgConnection,
    s: &NewSession<'_>,
    refresh_id: Option<i64>,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO access_tokens (token_hash, user_id, device_id, expires_ts, refresh_token_id, created_ts)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(s.access_hash)
    .bind(s.user_id)
    .bind(s.device_id)
    .bind(s.access_expires_ts)
    .bind(refresh_id)
    .bind(s.now_ms)
    .execute(tx)
    .await?;
    Ok(())
}
