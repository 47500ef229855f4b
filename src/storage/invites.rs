//! Memberships held without the room's DAG: invites from other servers to rooms this
//! server may not hold (with the stripped state the inviting server sent), and their
//! rejection.

use serde_json::Value as JsonValue;
use sqlx::types::Json;

use super::{Result, Storage, events::RoomWrite};

impl RoomWrite {
    /// Sets the stripped state shown with the user's current (out-of-band) membership.
    pub async fn set_invite_state(&mut self, user_id: &str, stripped: &JsonValue) -> Result<()> {
        sqlx::query("UPDATE memberships SET invite_state = $3 WHERE room_id = $1 AND user_id = $2")
            .bind(&self.room_id)
            .bind(user_id)
            .bind(Json(stripped))
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }
}

impl Storage {
    /// The stripped state kept with a membership whose event is `event_nid`, when it came
    /// from another server out of band.
    pub async fn invite_state(
        &self,
        room_id: &str,
        user_id: &str,
        event_nid: i64,
    ) -> Result<Option<JsonValue>> {
        let found: Option<Option<Json<JsonValue>>> = sqlx::query_scalar(
            "SELECT invite_state FROM memberships
             WHERE room_id = $1 AND user_id = $2 AND event_nid = $3",
        )
        .bind(room_id)
        .bind(user_id)
        .bind(event_nid)
        .fetch_optional(self.pool())
        .await?;
        Ok(found.flatten().map(|j| j.0))
    }

    /// (event ID, PDU) of the user's current membership event in a room.
    pub async fn membership_event(
        &self,
        room_id: &str,
        user_id: &str,
    ) -> Result<Option<(String, JsonValue)>> {
        let found: Option<(String, Json<JsonValue>)> = sqlx::query_as(
            "SELECT e.event_id, e.pdu FROM memberships m JOIN events e ON e.event_nid = m.event_nid
             WHERE m.room_id = $1 AND m.user_id = $2",
        )
        .bind(room_id)
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(found.map(|(id, j)| (id, j.0)))
    }

    /// What is kept with the user's current membership of a room when it came from
    /// another server out of band.
    pub async fn current_invite_state(
        &self,
        room_id: &str,
        user_id: &str,
    ) -> Result<Option<JsonValue>> {
        let found: Option<Option<Json<JsonValue>>> = sqlx::query_scalar(
            "SELECT invite_state FROM memberships WHERE room_id = $1 AND user_id = $2",
        )
        .bind(room_id)
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(found.flatten().map(|j| j.0))
    }
}
