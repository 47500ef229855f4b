//! `rooms` flags and `room_aliases`.

use super::{Result, Storage, is_unique_violation};

impl Storage {
    /// Ok(false) when the alias is taken.
    pub async fn insert_alias(&self, alias: &str, room_id: &str, creator: &str) -> Result<bool> {
        match sqlx::query("INSERT INTO room_aliases (alias, room_id, creator) VALUES ($1, $2, $3)")
            .bind(alias)
            .bind(room_id)
            .bind(creator)
            .execute(self.pool())
            .await
        {
            Ok(_) => Ok(true),
            Err(e) if is_unique_violation(&e) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn set_room_public(&self, room_id: &str, public: bool) -> Result<()> {
        sqlx::query("UPDATE rooms SET is_public = $2 WHERE room_id = $1")
            .bind(room_id)
            .bind(public)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

impl Storage {
    /// (room_id, creator) of an alias.
    pub async fn alias(&self, alias: &str) -> Result<Option<(String, String)>> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT room_id, creator FROM room_aliases WHERE alias = $1")
                .bind(alias)
                .fetch_optional(self.pool())
                .await?;
        Ok(row)
    }

    pub async fn delete_alias(&self, alias: &str) -> Result<()> {
        sqlx::query("DELETE FROM room_aliases WHERE alias = $1")
            .bind(alias)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn room_aliases(&self, room_id: &str) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT alias FROM room_aliases WHERE room_id = $1 ORDER BY alias")
                .bind(room_id)
                .fetch_all(self.pool())
                .await?,
        )
    }
}
