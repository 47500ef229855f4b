//! Backfilled history: positions below every live event, and where a room's history
//! held here begins (its backward extremities).

use super::{Result, Storage, events::RoomWrite};

/// How many of a room's earliest timeline events are looked at for backward extremities.
const EARLIEST_EVENTS: i64 = 200;

impl Storage {
    /// `count` new stream positions for backfilled events, ascending, each below every
    /// position given so far.
    pub async fn backfill_positions(&self, count: usize) -> Result<Vec<i64>> {
        let count = i64::try_from(count).unwrap_or(i64::MAX);
        let mut positions: Vec<i64> = sqlx::query_scalar(
            "SELECT -nextval('events_backfill_stream') FROM generate_series(1, $1)",
        )
        .bind(count)
        .fetch_all(self.pool())
        .await?;
        positions.sort_unstable();
        Ok(positions)
    }

    /// Events the start of the room's timeline here points back to that are not in the
    /// DAG here (held as outliers at most): where backfilling continues. At most `limit`,
    /// the deepest first.
    pub async fn backward_extremities(&self, room_id: &str, limit: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "WITH earliest AS (
                 SELECT event_nid, depth FROM events
                 WHERE room_id = $1 AND stream_pos IS NOT NULL
                 ORDER BY stream_pos ASC LIMIT $2)
             SELECT prev FROM (
                 SELECT DISTINCT ON (ee.prev_event_id) ee.prev_event_id AS prev, e.depth
                 FROM earliest e JOIN event_edges ee ON ee.event_nid = e.event_nid
                 WHERE NOT EXISTS (SELECT 1 FROM events p
                                   WHERE p.event_id = ee.prev_event_id AND NOT p.outlier)
                 ORDER BY ee.prev_event_id, e.depth DESC) x
             ORDER BY depth DESC LIMIT $3",
        )
        .bind(room_id)
        .bind(EARLIEST_EVENTS)
        .bind(limit)
        .fetch_all(self.pool())
        .await?)
    }
}

impl RoomWrite {
    /// Commits a backfilled event at its position (from `backfill_positions`). Nobody is
    /// woken: history is read by paging back, never pushed to /sync.
    pub async fn commit_historical(mut self, nid: i64, position: i64) -> Result<()> {
        sqlx::query("UPDATE events SET stream_pos = $2 WHERE event_nid = $1")
            .bind(nid)
            .bind(position)
            .execute(&mut *self.tx)
            .await?;
        self.tx.commit().await?;
        Ok(())
    }
}
