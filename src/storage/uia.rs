//! `uia_sessions`: user-interactive auth in progress.

use serde_json::Value as JsonValue;
use sqlx::{Row, types::Json};

use super::{Result, Storage};

#[derive(Debug, Clone)]
pub struct UiaSessionRow {
    pub action: String,
    pub user_id: Option<String>,
    pub flows: JsonValue,
    pub params: JsonValue,
    pub completed: Vec<String>,
    pub expires_ts: i64,
}

pub struct NewUiaSession<'a> {
    pub session_id: &'a str,
    pub action: &'a str,
    pub user_id: Option<&'a str>,
    pub flows: &'a JsonValue,
    pub params: &'a JsonValue,
    pub now_ms: i64,
    pub expires_ts: i64,
}

impl Storage {
    pub async fn create_uia_session(&self, s: &NewUiaSession<'_>) -> Result<()> {
        // Expired sessions are swept here, where sessions are made, not on a timer.
        sqlx::query("DELETE FROM uia_sessions WHERE expires_ts < $1")
            .bind(s.now_ms)
            .execute(self.pool())
            .await?;
        sqlx::query(
            "INSERT INTO uia_sessions (session_id, action, user_id, flows, params, created_ts, expires_ts)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(s.session_id)
        .bind(s.action)
        .bind(s.user_id)
        .bind(Json(s.flows))
        .bind(Json(s.params))
        .bind(s.now_ms)
        .bind(s.expires_ts)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn uia_session(&self, session_id: &str) -> Result<Option<UiaSessionRow>> {
        let row = sqlx::query(
            "SELECT action, user_id, flows, params, completed, expires_ts FROM uia_sessions WHERE session_id = $1",
        )
        .bind(session_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| UiaSessionRow {
            action: r.get(0),
            user_id: r.get(1),
            flows: r.get::<Json<JsonValue>, _>(2).0,
            params: r.get::<Json<JsonValue>, _>(3).0,
            completed: r.get::<Json<Vec<String>>, _>(4).0,
            expires_ts: r.get(5),
        }))
    }

    pub async fn set_uia_completed(&self, session_id: &str, completed: &[String]) -> Result<()> {
        sqlx::query("UPDATE uia_sessions SET completed = $2 WHERE session_id = $1")
            .bind(session_id)
            .bind(Json(completed))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Sets keys of what a session remembers of its request (registration keeps its first
    /// request's parameters and, once done, the account it made); other keys stay.
    pub async fn set_uia_params(&self, session_id: &str, params: &JsonValue) -> Result<()> {
        sqlx::query("UPDATE uia_sessions SET params = params || $2 WHERE session_id = $1")
            .bind(session_id)
            .bind(Json(params))
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Adds one key to what a session remembers (the 3PID an email stage proved).
    pub async fn merge_uia_param(
        &self,
        session_id: &str,
        key: &str,
        value: &JsonValue,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE uia_sessions SET params = params || jsonb_build_object($2::text, $3::jsonb)
             WHERE session_id = $1",
        )
        .bind(session_id)
        .bind(key)
        .bind(Json(value))
        .execute(self.pool())
        .await?;
        Ok(())
    }

    pub async fn delete_uia_session(&self, session_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM uia_sessions WHERE session_id = $1")
            .bind(session_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
