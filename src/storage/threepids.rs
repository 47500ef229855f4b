//! `user_threepids`, `threepid_sessions` and `threepid_id_server_bindings`: accounts'
//! email addresses, the sessions that validate them, and where they were bound.

use super::{Result, Storage};

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ThreepidRow {
    pub medium: String,
    pub address: String,
    pub user_id: String,
    pub validated_ts: i64,
    pub added_ts: i64,
}

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ThreepidSessionRow {
    pub session_id: String,
    pub client_secret: String,
    pub medium: String,
    pub address: String,
    pub purpose: String,
    pub token_hash: String,
    pub send_attempt: i64,
    pub next_link: Option<String>,
    pub expires_ts: i64,
    pub validated_ts: Option<i64>,
}

pub struct NewThreepidSession<'a> {
    pub session_id: &'a str,
    pub client_secret: &'a str,
    pub medium: &'a str,
    pub address: &'a str,
    pub purpose: &'a str,
    pub token_hash: &'a str,
    pub send_attempt: i64,
    pub next_link: Option<&'a str>,
    pub now_ms: i64,
    pub expires_ts: i64,
}

// A constant column list: nothing of a request reaches the SQL text.
const SESSION_COLUMNS: &str = "session_id, client_secret, medium, address, purpose, token_hash,
     send_attempt, next_link, expires_ts, validated_ts";

impl Storage {
    pub async fn threepids_of(&self, user_id: &str) -> Result<Vec<ThreepidRow>> {
        Ok(sqlx::query_as(
            "SELECT medium, address, user_id, validated_ts, added_ts FROM user_threepids
             WHERE user_id = $1 ORDER BY added_ts, address",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// The account a 3PID belongs to.
    pub async fn threepid_owner(&self, medium: &str, address: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT t.user_id FROM user_threepids t JOIN users u USING (user_id)
             WHERE t.medium = $1 AND t.address = $2 AND NOT u.deactivated",
        )
        .bind(medium)
        .bind(address)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Adds a 3PID to an account; false when another account holds it already.
    pub async fn add_threepid(
        &self,
        user_id: &str,
        medium: &str,
        address: &str,
        validated_ts: i64,
        now_ms: i64,
    ) -> Result<bool> {
        let owner: Option<String> = sqlx::query_scalar(
            "INSERT INTO user_threepids (medium, address, user_id, validated_ts, added_ts)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (medium, address) DO UPDATE SET medium = EXCLUDED.medium
             RETURNING user_id",
        )
        .bind(medium)
        .bind(address)
        .bind(user_id)
        .bind(validated_ts)
        .bind(now_ms)
        .fetch_optional(self.pool())
        .await?;
        Ok(owner.as_deref() == Some(user_id))
    }

    pub async fn delete_threepid(
        &self,
        user_id: &str,
        medium: &str,
        address: &str,
    ) -> Result<bool> {
        let done = sqlx::query(
            "DELETE FROM user_threepids WHERE user_id = $1 AND medium = $2 AND address = $3",
        )
        .bind(user_id)
        .bind(medium)
        .bind(address)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn delete_threepids_of(&self, user_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM user_threepids WHERE user_id = $1")
            .bind(user_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// A new validation session; expired ones are swept here, where sessions are made.
    pub async fn create_threepid_session(&self, s: &NewThreepidSession<'_>) -> Result<()> {
        sqlx::query("DELETE FROM threepid_sessions WHERE expires_ts < $1")
            .bind(s.now_ms)
            .execute(self.pool())
            .await?;
        sqlx::query(
            "INSERT INTO threepid_sessions (session_id, client_secret, medium, address, purpose,
                 token_hash, send_attempt, next_link, created_ts, expires_ts)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(s.session_id)
        .bind(s.client_secret)
        .bind(s.medium)
        .bind(s.address)
        .bind(s.purpose)
        .bind(s.token_hash)
        .bind(s.send_attempt)
        .bind(s.next_link)
        .bind(s.now_ms)
        .bind(s.expires_ts)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The newest unexpired session for this secret, address and purpose.
    pub async fn latest_threepid_session(
        &self,
        client_secret: &str,
        medium: &str,
        address: &str,
        purpose: &str,
        now_ms: i64,
    ) -> Result<Option<ThreepidSessionRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM threepid_sessions
             WHERE client_secret = $1 AND medium = $2 AND address = $3 AND purpose = $4
               AND expires_ts > $5
             ORDER BY created_ts DESC LIMIT 1"
        )))
        .bind(client_secret)
        .bind(medium)
        .bind(address)
        .bind(purpose)
        .bind(now_ms)
        .fetch_optional(self.pool())
        .await?)
    }

    /// A session by its ID and secret (both, so an ID alone reveals nothing).
    pub async fn threepid_session(
        &self,
        session_id: &str,
        client_secret: &str,
    ) -> Result<Option<ThreepidSessionRow>> {
        Ok(sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "SELECT {SESSION_COLUMNS} FROM threepid_sessions
             WHERE session_id = $1 AND client_secret = $2"
        )))
        .bind(session_id)
        .bind(client_secret)
        .fetch_optional(self.pool())
        .await?)
    }

    pub async fn set_threepid_session_attempt(
        &self,
        session_id: &str,
        send_attempt: i64,
        token_hash: &str,
        next_link: Option<&str>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE threepid_sessions SET send_attempt = $2, token_hash = $3, next_link = $4
             WHERE session_id = $1",
        )
        .bind(session_id)
        .bind(send_attempt)
        .bind(token_hash)
        .bind(next_link)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Marks the session proven; it stays usable until `usable_until`.
    pub async fn validate_threepid_session(
        &self,
        session_id: &str,
        now_ms: i64,
        usable_until: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE threepid_sessions SET validated_ts = COALESCE(validated_ts, $2),
                 expires_ts = GREATEST(expires_ts, $3)
             WHERE session_id = $1",
        )
        .bind(session_id)
        .bind(now_ms)
        .bind(usable_until)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// A session is spent once its 3PID is used (added, or a password reset).
    pub async fn delete_threepid_session(&self, session_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM threepid_sessions WHERE session_id = $1")
            .bind(session_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn record_id_server_binding(
        &self,
        user_id: &str,
        medium: &str,
        address: &str,
        id_server: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO threepid_id_server_bindings (user_id, medium, address, id_server)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(user_id)
        .bind(medium)
        .bind(address)
        .bind(id_server)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The identity servers a 3PID of the user was bound to through this server.
    pub async fn id_servers_bound(
        &self,
        user_id: &str,
        medium: &str,
        address: &str,
    ) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT id_server FROM threepid_id_server_bindings
             WHERE user_id = $1 AND medium = $2 AND address = $3 ORDER BY id_server",
        )
        .bind(user_id)
        .bind(medium)
        .bind(address)
        .fetch_all(self.pool())
        .await?)
    }

    /// Every (medium, address, id_server) the user bound through this server.
    pub async fn id_server_bindings_of(
        &self,
        user_id: &str,
    ) -> Result<Vec<(String, String, String)>> {
        Ok(sqlx::query_as(
            "SELECT medium, address, id_server FROM threepid_id_server_bindings
             WHERE user_id = $1 ORDER BY medium, address, id_server",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn forget_id_server_binding(
        &self,
        user_id: &str,
        medium: &str,
        address: &str,
        id_server: &str,
    ) -> Result<()> {
        sqlx::query(
            "DELETE FROM threepid_id_server_bindings
             WHERE user_id = $1 AND medium = $2 AND address = $3 AND id_server = $4",
        )
        .bind(user_id)
        .bind(medium)
        .bind(address)
        .bind(id_server)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
