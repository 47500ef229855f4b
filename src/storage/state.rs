//! Room state storage: state groups on segments of deltas (see migrations/0003_rooms.sql).
//!
//! Writing a group costs rows in proportion to its delta; every so often a snapshot writes
//! the whole state, but only once the deltas since the previous snapshot outnumber the
//! state's entries, so total rows stay within about twice the number of state changes.

use std::collections::HashMap;

use sqlx::{PgConnection, Row};

use super::{Result, Storage};

/// (event type, state key) -> event_nid
pub type StateNids = HashMap<(String, String), i64>;

/// Loads the full state of a group.
pub(crate) async fn load_group(conn: &mut PgConnection, group_id: i64) -> Result<StateNids> {
    load(conn, group_id, None).await
}

/// Only the given keys of a group's state: what visibility checks need, without loading
/// a large room's whole state.
pub(crate) async fn load_group_keys(
    conn: &mut PgConnection,
    group_id: i64,
    keys: &[(String, String)],
) -> Result<StateNids> {
    load(conn, group_id, Some(keys)).await
}

/// Walks the group's segment chain; the nearest segment and highest seq win per key.
async fn load(
    conn: &mut PgConnection,
    group_id: i64,
    keys: Option<&[(String, String)]>,
) -> Result<StateNids> {
    let types: Option<Vec<&str>> = keys.map(|k| k.iter().map(|k| k.0.as_str()).collect());
    let skeys: Option<Vec<&str>> = keys.map(|k| k.iter().map(|k| k.1.as_str()).collect());
    let rows = sqlx::query(
        "WITH RECURSIVE chain(segment_id, max_seq, depth) AS (
             SELECT g.segment_id, g.seq, 0 FROM state_groups g WHERE g.group_id = $1
           UNION ALL
             SELECT s.parent_segment, s.parent_seq, c.depth + 1
             FROM chain c JOIN state_segments s ON s.segment_id = c.segment_id
             WHERE s.parent_segment IS NOT NULL
         )
         SELECT DISTINCT ON (r.event_type, r.state_key) r.event_type, r.state_key, r.event_nid
         FROM chain c JOIN state_rows r ON r.segment_id = c.segment_id AND r.seq <= c.max_seq
         WHERE $2::text[] IS NULL
            OR (r.event_type, r.state_key) IN (SELECT * FROM unnest($2::text[], $3::text[]))
         ORDER BY r.event_type, r.state_key, c.depth ASC, r.seq DESC",
    )
    .bind(group_id)
    .bind(types)
    .bind(skeys)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect())
}

struct GroupInfo {
    state_size: usize,
    segment_id: i64,
    seq: i32,
    tip_seq: i32,
    deltas_since_snapshot: i64,
}

async fn group_info(conn: &mut PgConnection, group_id: i64) -> Result<GroupInfo> {
    let r = sqlx::query(
        "SELECT g.segment_id, g.seq, s.tip_seq, g.deltas, g.state_size
         FROM state_groups g JOIN state_segments s ON s.segment_id = g.segment_id
         WHERE g.group_id = $1",
    )
    .bind(group_id)
    .fetch_one(&mut *conn)
    .await?;
    Ok(GroupInfo {
        segment_id: r.get(0),
        seq: r.get(1),
        tip_seq: r.get(2),
        deltas_since_snapshot: i64::from(r.get::<i32, _>(3)),
        state_size: r.get::<i32, _>(4) as usize,
    })
}

async fn insert_rows(
    conn: &mut PgConnection,
    segment_id: i64,
    seq: i32,
    rows: &[(&(String, String), i64)],
) -> Result<()> {
    let types: Vec<&str> = rows.iter().map(|(k, _)| k.0.as_str()).collect();
    let keys: Vec<&str> = rows.iter().map(|(k, _)| k.1.as_str()).collect();
    let nids: Vec<i64> = rows.iter().map(|(_, n)| *n).collect();
    sqlx::query(
        "INSERT INTO state_rows (segment_id, seq, event_type, state_key, event_nid)
         SELECT $1, $2, * FROM unnest($3::text[], $4::text[], $5::bigint[])",
    )
    .bind(segment_id)
    .bind(seq)
    .bind(&types)
    .bind(&keys)
    .bind(&nids)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

async fn insert_group(
    conn: &mut PgConnection,
    room_id: &str,
    (segment_id, seq): (i64, i32),
    size: usize,
    deltas: i64,
) -> Result<i64> {
    Ok(sqlx::query_scalar(
        "INSERT INTO state_groups (room_id, segment_id, seq, state_size, deltas)
         VALUES ($1, $2, $3, $4, $5) RETURNING group_id",
    )
    .bind(room_id)
    .bind(segment_id)
    .bind(seq)
    .bind(size as i32)
    .bind(deltas as i32)
    .fetch_one(&mut *conn)
    .await?)
}

/// Records the state after `delta` is applied to group `parent` as a new group. `new_keys`
/// counts delta entries whose key the parent's state does not have (it sizes the state).
pub(crate) async fn write_group(
    conn: &mut PgConnection,
    room_id: &str,
    parent: Option<i64>,
    delta: &StateNids,
    new_keys: usize,
) -> Result<i64> {
    let parent = match parent {
        Some(p) => Some((p, group_info(conn, p).await?)),
        None => None,
    };
    let size = parent.as_ref().map_or(0, |(_, i)| i.state_size) + new_keys;
    let needs_snapshot = match &parent {
        None => true,
        Some((_, info)) => info.deltas_since_snapshot + delta.len() as i64 > size as i64,
    };
    if needs_snapshot {
        let mut full = match &parent {
            Some((p, _)) => load_group(conn, *p).await?,
            None => StateNids::new(),
        };
        full.extend(delta.iter().map(|(k, v)| (k.clone(), *v)));
        let segment_id: i64 = sqlx::query_scalar(
            "INSERT INTO state_segments (room_id, tip_seq) VALUES ($1, 0) RETURNING segment_id",
        )
        .bind(room_id)
        .fetch_one(&mut *conn)
        .await?;
        let rows: Vec<_> = full.iter().map(|(k, n)| (k, *n)).collect();
        insert_rows(conn, segment_id, 0, &rows).await?;
        return insert_group(conn, room_id, (segment_id, 0), full.len(), 0).await;
    }
    let (_, info) = parent.expect("parent present when no snapshot is needed");
    let rows: Vec<_> = delta.iter().map(|(k, n)| (k, *n)).collect();
    let (segment_id, seq) = if info.seq == info.tip_seq {
        // Extends the segment it sits at the tip of.
        sqlx::query("UPDATE state_segments SET tip_seq = $2 WHERE segment_id = $1")
            .bind(info.segment_id)
            .bind(info.seq + 1)
            .execute(&mut *conn)
            .await?;
        (info.segment_id, info.seq + 1)
    } else {
        // A fork: a new segment branching off the parent group.
        let segment_id: i64 = sqlx::query_scalar(
            "INSERT INTO state_segments (room_id, parent_segment, parent_seq, tip_seq)
             VALUES ($1, $2, $3, 1) RETURNING segment_id",
        )
        .bind(room_id)
        .bind(info.segment_id)
        .bind(info.seq)
        .fetch_one(&mut *conn)
        .await?;
        (segment_id, 1)
    };
    insert_rows(conn, segment_id, seq, &rows).await?;
    let deltas = info.deltas_since_snapshot + delta.len() as i64;
    insert_group(conn, room_id, (segment_id, seq), size, deltas).await
}

impl Storage {
    pub async fn state_at_group(&self, group_id: i64) -> Result<StateNids> {
        let mut conn = self.pool().acquire().await?;
        load_group(&mut conn, group_id).await
    }

    pub async fn state_keys_at_group(
        &self,
        group_id: i64,
        keys: &[(String, String)],
    ) -> Result<StateNids> {
        let mut conn = self.pool().acquire().await?;
        load_group_keys(&mut conn, group_id, keys).await
    }

    /// Rows written for a room's state, for measuring growth.
    pub async fn state_row_count(&self, room_id: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM state_rows r JOIN state_segments s ON s.segment_id = r.segment_id WHERE s.room_id = $1",
        )
        .bind(room_id)
        .fetch_one(self.pool())
        .await?)
    }
}
