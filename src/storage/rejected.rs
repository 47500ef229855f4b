//! Rejected events: kept so that what is built on them is not stuck on a missing prev
//! event (migration 0036).

use sqlx::types::Json;

use super::{
    Result,
    events::{NewEventRow, RoomWrite},
};

impl RoomWrite {
    /// Keeps a rejected event as an outlier marked rejected, with its `state_before` as the
    /// state before and after it (an outlier row of it already here becomes that). An
    /// event already in the DAG is left alone.
    pub async fn keep_rejected(&mut self, e: &NewEventRow<'_>) -> Result<()> {
        let nid: Option<i64> = sqlx::query_scalar(
            "INSERT INTO events (event_id, room_id, sender, event_type, state_key, depth,
                                 origin_server_ts, pdu, soft_failed, state_before, state_after,
                                 outlier, rejected)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, FALSE, $9, $9, TRUE, TRUE)
             ON CONFLICT (event_id) DO UPDATE
               SET state_before = EXCLUDED.state_before, state_after = EXCLUDED.state_after,
                   rejected = TRUE
               WHERE events.outlier
             RETURNING event_nid",
        )
        .bind(e.event_id)
        .bind(&self.room_id)
        .bind(e.sender)
        .bind(e.event_type)
        .bind(e.state_key)
        .bind(e.depth)
        .bind(e.origin_server_ts)
        .bind(Json(e.pdu))
        .bind(e.state_before)
        .fetch_optional(&mut *self.tx)
        .await?;
        if let Some(nid) = nid {
            sqlx::query(
                "INSERT INTO event_edges (event_nid, prev_event_id)
                 SELECT $1, p FROM unnest($2::text[]) AS p ON CONFLICT DO NOTHING",
            )
            .bind(nid)
            .bind(e.prev_events)
            .execute(&mut *self.tx)
            .await?;
        }
        Ok(())
    }
}
