//! `media`: metadata of local media (the bytes are in the object store).

use sqlx::Row;

use super::{Result, Storage};

#[derive(Debug, Clone)]
pub struct MediaRow {
    pub media_id: String,
    pub user_id: String,
    pub content_type: Option<String>,
    pub filename: Option<String>,
    pub size: Option<i64>,
    pub uploaded_ts: Option<i64>,
    pub expires_ts: Option<i64>,
}

impl Storage {
    pub async fn media(&self, media_id: &str) -> Result<Option<MediaRow>> {
        let row = sqlx::query(
            "SELECT media_id, user_id, content_type, filename, size, uploaded_ts, expires_ts
             FROM media WHERE media_id = $1",
        )
        .bind(media_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| MediaRow {
            media_id: r.get(0),
            user_id: r.get(1),
            content_type: r.get(2),
            filename: r.get(3),
            size: r.get(4),
            uploaded_ts: r.get(5),
            expires_ts: r.get(6),
        }))
    }

    /// A reserved URI (`/create`), waiting for its upload until `expires_ts`.
    pub async fn reserve_media(
        &self,
        media_id: &str,
        user_id: &str,
        now: i64,
        expires_ts: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO media (media_id, user_id, created_ts, expires_ts) VALUES ($1, $2, $3, $4)",
        )
        .bind(media_id)
        .bind(user_id)
        .bind(now)
        .bind(expires_ts)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// URIs the user reserved that are still waiting (limits how many one may hold).
    pub async fn pending_media_count(&self, user_id: &str, now: i64) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM media WHERE user_id = $1 AND uploaded_ts IS NULL
               AND expires_ts > $2",
        )
        .bind(user_id)
        .bind(now)
        .fetch_one(self.pool())
        .await?)
    }

    /// Records a finished upload: a new row, or the reserved one (only while it waits; false
    /// if it was uploaded meanwhile).
    pub async fn complete_media(
        &self,
        media_id: &str,
        user_id: &str,
        content_type: Option<&str>,
        filename: Option<&str>,
        size: i64,
        now: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO media (media_id, user_id, content_type, filename, size, created_ts,
                                uploaded_ts)
             VALUES ($1, $2, $3, $4, $5, $6, $6)
             ON CONFLICT (media_id) DO UPDATE SET
                 content_type = EXCLUDED.content_type, filename = EXCLUDED.filename,
                 size = EXCLUDED.size, uploaded_ts = EXCLUDED.uploaded_ts
             WHERE media.uploaded_ts IS NULL AND media.user_id = EXCLUDED.user_id",
        )
        .bind(media_id)
        .bind(user_id)
        .bind(content_type)
        .bind(filename)
        .bind(size)
        .bind(now)
        .execute(self.pool())
        .await?
        .rows_affected();
        Ok(done == 1)
    }

    /// A stored thumbnail's content type and size.
    pub async fn thumbnail(
        &self,
        media_id: &str,
        width: i32,
        height: i32,
        method: &str,
    ) -> Result<Option<(String, i64)>> {
        let row = sqlx::query(
            "SELECT content_type, size FROM media_thumbnails
             WHERE media_id = $1 AND width = $2 AND height = $3 AND method = $4",
        )
        .bind(media_id)
        .bind(width)
        .bind(height)
        .bind(method)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    pub async fn insert_thumbnail(
        &self,
        media_id: &str,
        width: i32,
        height: i32,
        method: &str,
        content_type: &str,
        size: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO media_thumbnails (media_id, width, height, method, content_type, size)
             VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
        )
        .bind(media_id)
        .bind(width)
        .bind(height)
        .bind(method)
        .bind(content_type)
        .bind(size)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// A cached preview of `url` fetched after `since`.
    pub async fn url_preview(&self, url: &str, since: i64) -> Result<Option<serde_json::Value>> {
        let row =
            sqlx::query("SELECT preview FROM url_previews WHERE url = $1 AND fetched_ts > $2")
                .bind(url)
                .bind(since)
                .fetch_optional(self.pool())
                .await?;
        Ok(row.map(|r| r.get::<sqlx::types::Json<serde_json::Value>, _>(0).0))
    }

    pub async fn store_url_preview(
        &self,
        url: &str,
        preview: &serde_json::Value,
        now: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO url_previews (url, preview, fetched_ts) VALUES ($1, $2, $3)
             ON CONFLICT (url) DO UPDATE SET preview = EXCLUDED.preview, fetched_ts = EXCLUDED.fetched_ts",
        )
        .bind(url)
        .bind(sqlx::types::Json(preview))
        .bind(now)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
