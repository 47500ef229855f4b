//! `users`: accounts and their credentials.

use sqlx::Row;

use super::{Result, Storage, is_unique_violation};

#[derive(Debug, Clone)]
pub struct UserRow {
    pub user_id: String,
    pub password_hash: Option<String>,
    pub is_admin: bool,
    pub is_guest: bool,
    pub deactivated: bool,
    pub suspended: bool,
    pub locked: bool,
}

pub struct NewUser<'a> {
    pub user_id: &'a str,
    pub localpart: &'a str,
    pub password_hash: Option<&'a str>,
    pub is_admin: bool,
    pub is_guest: bool,
    pub now_ms: i64,
}

impl Storage {
    /// Inserts a user; `Ok(false)` when the user ID is taken.
    pub async fn create_user(&self, user: &NewUser<'_>) -> Result<bool> {
        let res = sqlx::query(
            "INSERT INTO users (user_id, localpart, password_hash, is_admin, is_guest, created_ts)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(user.user_id)
        .bind(user.localpart)
        .bind(user.password_hash)
        .bind(user.is_admin)
        .bind(user.is_guest)
        .bind(user.now_ms)
        .execute(self.pool())
        .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn user(&self, user_id: &str) -> Result<Option<UserRow>> {
        let row = sqlx::query(
            "SELECT user_id, password_hash, is_admin, is_guest, deactivated, suspended, locked
             FROM users WHERE user_id = $1",
        )
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| UserRow {
            user_id: r.get(0),
            password_hash: r.get(1),
            is_admin: r.get(2),
            is_guest: r.get(3),
            deactivated: r.get(4),
            suspended: r.get(5),
            locked: r.get(6),
        }))
    }

    /// Suspends or unsuspends an account (admin moderation).
    pub async fn set_suspended(&self, user_id: &str, suspended: bool) -> Result<()> {
        sqlx::query("UPDATE users SET suspended = $2 WHERE user_id = $1")
            .bind(user_id)
            .bind(suspended)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Locks or unlocks an account (admin moderation).
    pub async fn set_locked(&self, user_id: &str, locked: bool) -> Result<()> {
        sqlx::query("UPDATE users SET locked = $2 WHERE user_id = $1")
            .bind(user_id)
            .bind(locked)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn localpart_exists(&self, localpart: &str) -> Result<bool> {
        Ok(sqlx::query("SELECT 1 FROM users WHERE localpart = $1")
            .bind(localpart)
            .fetch_optional(self.pool())
            .await?
            .is_some())
    }

    /// The next free all-digits localpart, as Synapse generates for guests and
    /// registrations without a username.
    pub async fn next_numeric_localpart(&self) -> Result<i64> {
        let max: Option<i64> = sqlx::query_scalar(
            "SELECT max(localpart::bigint) FROM users WHERE localpart ~ '^[0-9]{1,18}$'",
        )
        .fetch_one(self.pool())
        .await?;
        Ok(max.unwrap_or(0) + 1)
    }

    pub async fn set_password_hash(&self, user_id: &str, hash: &str) -> Result<()> {
        sqlx::query("UPDATE users SET password_hash = $2 WHERE user_id = $1")
            .bind(user_id)
            .bind(hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Deactivates in one transaction: no password, no devices (and so no tokens), and
    /// with `erase`, no profile or account data, and their events marked erased.
    pub async fn deactivate_user(&self, user_id: &str, erase: bool) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("UPDATE users SET deactivated = TRUE, password_hash = NULL WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM devices WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM login_tokens WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        for sql in [
            "DELETE FROM user_threepids WHERE user_id = $1",
            "DELETE FROM threepid_id_server_bindings WHERE user_id = $1",
        ] {
            sqlx::query(sql).bind(user_id).execute(&mut *tx).await?;
        }
        if erase {
            for sql in [
                "DELETE FROM profile_fields WHERE user_id = $1",
                "DELETE FROM account_data WHERE user_id = $1",
                "DELETE FROM filters WHERE user_id = $1",
            ] {
                sqlx::query(sql).bind(user_id).execute(&mut *tx).await?;
            }
            sqlx::query("UPDATE events SET sender_erased = TRUE WHERE sender = $1")
                .bind(user_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// This server's guest accounts joined to a room.
    pub async fn joined_local_guests(&self, room_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT m.user_id FROM memberships m JOIN users u USING (user_id)
             WHERE m.room_id = $1 AND m.membership = 'join' AND u.is_guest",
        )
        .bind(room_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// A guest becomes a full account with a password.
    pub async fn upgrade_guest(&self, user_id: &str, password_hash: Option<&str>) -> Result<()> {
        sqlx::query("UPDATE users SET is_guest = FALSE, password_hash = $2 WHERE user_id = $1")
            .bind(user_id)
            .bind(password_hash)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
