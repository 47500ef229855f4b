//! Full-text search of room events (POST /search): the `events_search` index (migration
//! 0030) over message bodies, room names and topics.

use super::{Result, Storage, events::StoredEvent};

/// The indexed text of an event: exactly the index's expression.
const SEARCH_TEXT: &str = "to_tsvector('english', coalesce(e.pdu->'content'->>'body', \
     e.pdu->'content'->>'name', e.pdu->'content'->>'topic', ''))";
/// The event types the index covers (its predicate).
const SEARCHED_TYPES: &str = "e.event_type IN ('m.room.message', 'm.room.name', 'm.room.topic')";

/// What to look for, where.
pub struct SearchQuery<'a> {
    pub rooms: &'a [String],
    /// The event types asked for (a subset of the indexed ones).
    pub types: &'a [String],
    /// Only these senders, when given; never these.
    pub senders: Option<&'a [String]>,
    pub not_senders: &'a [String],
    pub term: &'a str,
    /// Newest first, else best match first.
    pub recent: bool,
    pub limit: i64,
    pub offset: i64,
}

impl Storage {
    /// One page of matching timeline events, and how many match in all.
    pub async fn search_events(&self, q: &SearchQuery<'_>) -> Result<(Vec<StoredEvent>, i64)> {
        let matching = format!(
            "FROM events e
             WHERE e.room_id = ANY($1) AND {SEARCHED_TYPES} AND e.event_type = ANY($2)
               AND ($3::text[] IS NULL OR e.sender = ANY($3)) AND NOT (e.sender = ANY($4))
               AND e.stream_pos IS NOT NULL AND NOT e.outlier AND NOT e.soft_failed
               AND {SEARCH_TEXT} @@ websearch_to_tsquery('english', $5)"
        );
        let order = if q.recent {
            "e.stream_pos DESC".to_owned()
        } else {
            format!(
                "ts_rank({SEARCH_TEXT}, websearch_to_tsquery('english', $5)) DESC, \
                 e.stream_pos DESC"
            )
        };
        let nids: Vec<i64> = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT e.event_nid {matching} ORDER BY {order} LIMIT $6 OFFSET $7"
        )))
        .bind(q.rooms)
        .bind(q.types)
        .bind(q.senders)
        .bind(q.not_senders)
        .bind(q.term)
        .bind(q.limit)
        .bind(q.offset)
        .fetch_all(self.pool())
        .await?;
        let count: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) {matching}")))
                .bind(q.rooms)
                .bind(q.types)
                .bind(q.senders)
                .bind(q.not_senders)
                .bind(q.term)
                .fetch_one(self.pool())
                .await?;
        // In the page's order.
        let mut events = self.events_by_nid(&nids).await?;
        events.sort_by_key(|e| nids.iter().position(|n| *n == e.event_nid));
        Ok((events, count))
    }
}
