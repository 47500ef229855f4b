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

impl Storage {
    /// Public rooms with their joined member counts, most members first.
    pub async fn public_rooms(&self) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT r.room_id, (SELECT count(*) FROM memberships m WHERE m.room_id = r.room_id AND m.membership = 'join')
             AS joined FROM rooms r WHERE r.is_public ORDER BY joined DESC, r.room_id",
        )
        .fetch_all(self.pool())
        .await?)
    }

    /// The public rooms of a third-party network (`Some(network)`), or of every network
    /// and the Matrix directory together (`None`), most members first.
    pub async fn public_rooms_of_networks(
        &self,
        network: Option<&str>,
    ) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT r.room_id, (SELECT count(*) FROM memberships m WHERE m.room_id = r.room_id AND m.membership = 'join')
             AS joined FROM rooms r
             WHERE ($1::text IS NULL AND r.is_public)
                OR r.room_id IN (SELECT room_id FROM appservice_room_list
                                 WHERE $1::text IS NULL OR network_id = $1)
             ORDER BY joined DESC, r.room_id",
        )
        .bind(network)
        .fetch_all(self.pool())
        .await?)
    }

    /// Lists or unlists a room under an appservice's network.
    pub async fn set_appservice_room_listed(
        &self,
        appservice_id: &str,
        network_id: &str,
        room_id: &str,
        listed: bool,
    ) -> Result<()> {
        let sql = if listed {
            "INSERT INTO appservice_room_list (appservice_id, network_id, room_id)
             VALUES ($1, $2, $3) ON CONFLICT DO NOTHING"
        } else {
            "DELETE FROM appservice_room_list
             WHERE appservice_id = $1 AND network_id = $2 AND room_id = $3"
        };
        sqlx::query(sql)
            .bind(appservice_id)
            .bind(network_id)
            .bind(room_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    pub async fn room_is_public(&self, room_id: &str) -> Result<bool> {
        Ok(
            sqlx::query_scalar("SELECT is_public FROM rooms WHERE room_id = $1")
                .bind(room_id)
                .fetch_optional(self.pool())
                .await?
                .unwrap_or(false),
        )
    }

    /// Contents of the state events of the given types (state key "") in the given rooms.
    pub async fn room_summaries(
        &self,
        room_ids: &[String],
        types: &[&str],
    ) -> Result<Vec<(String, String, serde_json::Value)>> {
        let rows: Vec<(String, String, sqlx::types::Json<serde_json::Value>)> = sqlx::query_as(
            "SELECT c.room_id, c.event_type, e.pdu->'content' FROM current_state c
             JOIN events e ON e.event_nid = c.event_nid
             WHERE c.room_id = ANY($1) AND c.state_key = '' AND c.event_type = ANY($2)",
        )
        .bind(room_ids)
        .bind(types)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|(r, t, c)| (r, t, c.0)).collect())
    }
}

/// What a report is about.
pub struct NewReport<'a> {
    pub reporter: &'a str,
    pub room_id: Option<&'a str>,
    pub event_id: Option<&'a str>,
    pub user_id: Option<&'a str>,
    pub reason: Option<&'a str>,
    pub now_ms: i64,
}

impl Storage {
    pub async fn insert_report(&self, r: &NewReport<'_>) -> Result<()> {
        sqlx::query(
            "INSERT INTO reports (reporter, room_id, event_id, user_id, reason, created_ts) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(r.reporter)
        .bind(r.room_id)
        .bind(r.event_id)
        .bind(r.user_id)
        .bind(r.reason)
        .bind(r.now_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Rooms both users are joined to.
    pub async fn mutual_rooms(&self, a: &str, b: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT m1.room_id FROM memberships m1 JOIN memberships m2 ON m1.room_id = m2.room_id
             WHERE m1.user_id = $1 AND m2.user_id = $2 AND m1.membership = 'join' AND m2.membership = 'join'
             ORDER BY m1.room_id",
        )
        .bind(a)
        .bind(b)
        .fetch_all(self.pool())
        .await?)
    }

    /// The room's event closest to `ts` on the given side (inclusive): (event_id, ts).
    pub async fn event_near_timestamp(
        &self,
        room_id: &str,
        ts: i64,
        forwards: bool,
    ) -> Result<Option<(String, i64)>> {
        let sql = if forwards {
            "SELECT event_id, origin_server_ts FROM events WHERE room_id = $1 AND stream_pos IS NOT NULL
             AND origin_server_ts >= $2 ORDER BY origin_server_ts, stream_pos LIMIT 1"
        } else {
            "SELECT event_id, origin_server_ts FROM events WHERE room_id = $1 AND stream_pos IS NOT NULL
             AND origin_server_ts <= $2 ORDER BY origin_server_ts DESC, stream_pos DESC LIMIT 1"
        };
        Ok(sqlx::query_as(sql)
            .bind(room_id)
            .bind(ts)
            .fetch_optional(self.pool())
            .await?)
    }
}

impl Storage {
    /// Points every alias of `from` at `to` (room upgrades).
    pub async fn move_aliases(&self, from: &str, to: &str) -> Result<()> {
        sqlx::query("UPDATE room_aliases SET room_id = $2 WHERE room_id = $1")
            .bind(from)
            .bind(to)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}

impl Storage {
    pub async fn joined_member_count(&self, room_id: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM memberships WHERE room_id = $1 AND membership = 'join'",
        )
        .bind(room_id)
        .fetch_one(self.pool())
        .await?)
    }

    /// Current `m.space.child` state of a room: (child room ID, content, sender, ts).
    pub async fn space_children(
        &self,
        room_id: &str,
    ) -> Result<Vec<(String, serde_json::Value, String, i64)>> {
        let rows: Vec<(String, sqlx::types::Json<serde_json::Value>, String, i64)> = sqlx::query_as(
            "SELECT c.state_key, e.pdu->'content', e.sender, e.origin_server_ts FROM current_state c
             JOIN events e ON e.event_nid = c.event_nid
             WHERE c.room_id = $1 AND c.event_type = 'm.space.child'",
        )
        .bind(room_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|(k, c, s, t)| (k, c.0, s, t))
            .collect())
    }
}

impl Storage {
    pub async fn joined_members(&self, room_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT user_id FROM memberships WHERE room_id = $1 AND membership = 'join' ORDER BY user_id",
        )
        .bind(room_id)
        .fetch_all(self.pool())
        .await?)
    }

    /// The users banned from a room, with the reason of each ban.
    pub async fn banned_members(&self, room_id: &str) -> Result<Vec<(String, Option<String>)>> {
        Ok(sqlx::query_as(
            "SELECT m.user_id, e.pdu->'content'->>'reason' FROM memberships m
             JOIN events e ON e.event_nid = m.event_nid
             WHERE m.room_id = $1 AND m.membership = 'ban' ORDER BY m.user_id",
        )
        .bind(room_id)
        .fetch_all(self.pool())
        .await?)
    }
}
