//! `event_relations`: which events relate to which, for /relations, /threads and bundled
//! aggregations.

use sqlx::Row;

use super::{
    Result, Storage,
    events::{RoomWrite, StoredEvent},
};

/// What bundled aggregations need about one parent event.
#[derive(Debug, Default, Clone)]
pub struct Aggregation {
    pub thread_count: i64,
    pub thread_latest: Option<String>,
    pub thread_participated: bool,
    pub latest_edit: Option<String>,
    pub references: Vec<String>,
}

impl RoomWrite {
    pub async fn insert_relation(
        &mut self,
        nid: i64,
        parent: &str,
        rel_type: &str,
        event_type: &str,
        sender: &str,
    ) -> Result<()> {
        let room = self.room_id().to_owned();
        sqlx::query(
            "INSERT INTO event_relations (event_nid, room_id, parent_id, rel_type, event_type, sender)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(nid)
        .bind(room)
        .bind(parent)
        .bind(rel_type)
        .bind(event_type)
        .bind(sender)
        .execute(self.conn())
        .await?;
        Ok(())
    }
}

impl Storage {
    /// Events relating to `parents`, by stream position; `from` exclusive.
    #[allow(clippy::too_many_arguments)]
    pub async fn relating_events(
        &self,
        parents: &[String],
        rel_type: Option<&str>,
        event_type: Option<&str>,
        from: Option<i64>,
        to: Option<i64>,
        backwards: bool,
        limit: i64,
    ) -> Result<Vec<StoredEvent>> {
        let order = if backwards { "DESC" } else { "ASC" };
        let cmp_from = if backwards { "<" } else { ">" };
        let cmp_to = if backwards { ">=" } else { "<=" };
        let sql = format!(
            "SELECT e.event_nid, e.event_id, e.pdu, e.stream_pos, e.state_before, e.state_after, e.redacted_by, e.room_id, e.txn_device, e.txn_id, e.replaces_nid, e.sender_erased, e.outlier, e.rejected
             FROM event_relations r JOIN events e ON e.event_nid = r.event_nid
             WHERE r.parent_id = ANY($1) AND ($2::text IS NULL OR r.rel_type = $2)
               AND ($3::text IS NULL OR r.event_type = $3)
               AND ($4::bigint IS NULL OR e.stream_pos {cmp_from} $4) AND ($5::bigint IS NULL OR e.stream_pos {cmp_to} $5)
             ORDER BY e.stream_pos {order} LIMIT $6"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(parents)
            .bind(rel_type)
            .bind(event_type)
            .bind(from)
            .bind(to)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.into_iter().map(super::events::stored_event).collect())
    }

    /// Thread roots of a room, latest activity first, as (root event ID, latest position).
    /// With `participant`, only threads that user started or posted in.
    pub async fn thread_roots(
        &self,
        room_id: &str,
        participant: Option<&str>,
        before: Option<i64>,
        limit: i64,
    ) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query(
            "SELECT r.parent_id, max(e.stream_pos) AS latest FROM event_relations r
             JOIN events e ON e.event_nid = r.event_nid
             WHERE r.room_id = $1 AND r.rel_type = 'm.thread'
             GROUP BY r.parent_id
             HAVING ($2::text IS NULL OR bool_or(r.sender = $2)
                     OR EXISTS (SELECT 1 FROM events p WHERE p.event_id = r.parent_id AND p.sender = $2))
                AND ($3::bigint IS NULL OR max(e.stream_pos) < $3)
             ORDER BY latest DESC LIMIT $4",
        )
        .bind(room_id)
        .bind(participant)
        .bind(before)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(|r| (r.get(0), r.get(1))).collect())
    }

    /// Aggregations for the given parents, as seen by `viewer`.
    pub async fn aggregations(
        &self,
        parents: &[String],
        viewer: &str,
    ) -> Result<Vec<(String, Aggregation)>> {
        let rows = sqlx::query(
            "SELECT r.parent_id, r.rel_type, e.event_id, e.stream_pos, r.sender, p.sender AS parent_sender
             FROM event_relations r
             JOIN events e ON e.event_nid = r.event_nid
             JOIN events p ON p.event_id = r.parent_id
             WHERE r.parent_id = ANY($1) AND r.rel_type IN ('m.thread', 'm.replace', 'm.reference')
               AND e.redacted_by IS NULL
             ORDER BY e.stream_pos",
        )
        .bind(parents)
        .fetch_all(self.pool())
        .await?;
        let mut out: std::collections::HashMap<String, Aggregation> = Default::default();
        for r in rows {
            let (parent, rel, event_id, sender, parent_sender): (
                String,
                String,
                String,
                String,
                String,
            ) = (r.get(0), r.get(1), r.get(2), r.get(4), r.get(5));
            let agg = out.entry(parent.clone()).or_default();
            match rel.as_str() {
                "m.thread" => {
                    agg.thread_count += 1;
                    agg.thread_latest = Some(event_id);
                    if sender == viewer || parent_sender == viewer {
                        agg.thread_participated = true;
                    }
                }
                // Only the original sender's edits count.
                "m.replace" if sender == parent_sender => agg.latest_edit = Some(event_id),
                "m.reference" => agg.references.push(event_id),
                _ => {}
            }
        }
        Ok(out.into_iter().collect())
    }
}
