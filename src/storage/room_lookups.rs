//! Event lookups inside a room's write transaction (they see what it wrote so far).

use super::{
    Result,
    events::{EVENT_COLUMNS, RoomWrite, StoredEvent, stored_event},
};

impl RoomWrite {
    /// Events by number, of any room.
    pub async fn events_by_nid(&mut self, nids: &[i64]) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE event_nid = ANY($1)"
        )))
        .bind(nids)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows.into_iter().map(stored_event).collect())
    }

    /// An event of this room by ID.
    pub async fn event_by_id(&mut self, event_id: &str) -> Result<Option<StoredEvent>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1 AND room_id = $2"
        )))
        .bind(event_id)
        .bind(&self.room_id)
        .fetch_optional(&mut *self.tx)
        .await?;
        Ok(row.map(stored_event))
    }

    /// Events of this room by ID.
    pub async fn events_by_ids(&mut self, ids: &[String]) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ANY($1) AND room_id = $2"
        )))
        .bind(ids)
        .bind(&self.room_id)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows.into_iter().map(stored_event).collect())
    }

    /// Those of `ids` that are events of another room.
    pub async fn events_of_other_rooms(&mut self, ids: &[String]) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT event_id FROM events WHERE event_id = ANY($1) AND room_id <> $2",
        )
        .bind(ids)
        .bind(&self.room_id)
        .fetch_all(&mut *self.tx)
        .await?)
    }
}
