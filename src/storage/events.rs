//! `events`, `event_edges`, `forward_extremities`, `current_state`, `memberships`, `rooms`:
//! reads, and `RoomWrite`, the transaction every new event of a room is persisted in.

use serde_json::Value as JsonValue;
use sqlx::{Postgres, Row, Transaction, types::Json};

use super::{
    Result, Storage,
    state::{self, StateNids},
    streams::{self, Stream},
};

/// Advisory lock namespace of per-room writes (streams use the others: storage::streams).
const LOCK_ROOM: i32 = 1;

#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub event_nid: i64,
    pub event_id: String,
    pub room_id: String,
    pub pdu: JsonValue,
    pub stream_pos: Option<i64>,
    pub state_before: Option<i64>,
    pub state_after: Option<i64>,
    pub redacted_by: Option<String>,
    /// (device, transaction ID) of a local client's send, for `unsigned.transaction_id`.
    pub txn: Option<(String, String)>,
    /// The state event this one replaced, if it is a state event with a predecessor.
    pub replaces_nid: Option<i64>,
    /// Its sender has since deactivated with erasure.
    pub sender_erased: bool,
    /// Stored for lookups only (state or auth of another server's event, an invite to a
    /// room not held here): not in the DAG's timeline, extremities or state.
    pub outlier: bool,
    /// Another server's event the auth rules reject, kept as an outlier (migration 0036).
    pub rejected: bool,
}

pub(crate) const EVENT_COLUMNS: &str = "event_nid, event_id, pdu, stream_pos, state_before, state_after, redacted_by, room_id, txn_device, txn_id, replaces_nid, sender_erased, outlier, rejected";
/// EVENT_COLUMNS of a table aliased `e`.
const E_EVENT_COLUMNS: &str = "e.event_nid, e.event_id, e.pdu, e.stream_pos, e.state_before, e.state_after, e.redacted_by, e.room_id, e.txn_device, e.txn_id, e.replaces_nid, e.sender_erased, e.outlier, e.rejected";

pub(crate) fn stored_event(r: sqlx::postgres::PgRow) -> StoredEvent {
    StoredEvent {
        event_nid: r.get(0),
        event_id: r.get(1),
        pdu: r.get::<Json<JsonValue>, _>(2).0,
        stream_pos: r.get(3),
        state_before: r.get(4),
        state_after: r.get(5),
        redacted_by: r.get(6),
        room_id: r.get(7),
        txn: match (r.get(8), r.get(9)) {
            (Some(device), Some(txn)) => Some((device, txn)),
            _ => None,
        },
        replaces_nid: r.get(10),
        sender_erased: r.get(11),
        outlier: r.get(12),
        rejected: r.get(13),
    }
}

/// A forward extremity with what is needed to build on it.
#[derive(Debug, Clone)]
pub struct Extremity {
    pub event_id: String,
    pub depth: i64,
    pub state_after: Option<i64>,
}

/// A new event's row.
pub struct NewEventRow<'a> {
    pub event_id: &'a str,
    pub sender: &'a str,
    pub event_type: &'a str,
    pub state_key: Option<&'a str>,
    pub depth: i64,
    pub origin_server_ts: i64,
    pub pdu: &'a JsonValue,
    pub prev_events: &'a [String],
    pub txn: Option<(&'a str, &'a str)>,
    /// Kept out of the forward extremities and the timeline (see migrations/0007).
    pub soft_failed: bool,
    /// Stored only for lookups (migrations/0026): out of the extremities and timeline too.
    pub outlier: bool,
    /// Backfilled history: in the DAG and the timeline (at a position below every live
    /// one, `commit_historical`), never a forward extremity.
    pub historical: bool,
    /// A local event with federation on: this server's name. The event is queued
    /// (`federation_outbox`) for every other server with a member joined to the room, in
    /// this same statement.
    pub federate_from: Option<&'a str>,
    /// With `federate_from`, for a membership event: the member's server, queued too.
    pub member_server: Option<&'a str>,
    /// With `federate_from`: a server not to queue it for (the one it came from, for an
    /// event this server passes on).
    pub federate_except: Option<&'a str>,
    pub state_before: Option<i64>,
    pub state_after: Option<i64>,
    pub replaces_nid: Option<i64>,
}

impl Storage {
    /// Starts the write transaction of one room: holds the room's advisory lock until commit,
    /// so writes to a room are serialized across all axon processes.
    pub async fn begin_room_write(&self, room_id: &str) -> Result<RoomWrite> {
        // BEGIN and the lock in one round trip (a simple query); the key is a number, so
        // nothing of the room ID goes into the SQL text.
        let tx = self
            .pool()
            .begin_with(sqlx::AssertSqlSafe(format!(
                "BEGIN; SELECT pg_advisory_xact_lock({LOCK_ROOM}, {})",
                room_lock_key(room_id)
            )))
            .await?;
        Ok(RoomWrite {
            tx,
            room_id: room_id.to_owned(),
            wake: self.wake_bus().clone(),
        })
    }

    /// (room version, creator) of a room known here.
    pub async fn room(&self, room_id: &str) -> Result<Option<(String, String)>> {
        let row = sqlx::query("SELECT room_version, creator FROM rooms WHERE room_id = $1")
            .bind(room_id)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| (r.get(0), r.get(1))))
    }

    pub async fn event(&self, event_id: &str) -> Result<Option<StoredEvent>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE event_id = $1"
        )))
        .bind(event_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(stored_event))
    }

    pub async fn events_by_id(&self, ids: &[String]) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE event_id = ANY($1)"
        )))
        .bind(ids)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(stored_event).collect())
    }

    pub async fn events_by_nid(&self, nids: &[i64]) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {EVENT_COLUMNS} FROM events WHERE event_nid = ANY($1)"
        )))
        .bind(nids)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(stored_event).collect())
    }

    pub async fn current_state(&self, room_id: &str) -> Result<StateNids> {
        let rows = sqlx::query(
            "SELECT event_type, state_key, event_nid FROM current_state WHERE room_id = $1",
        )
        .bind(room_id)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ((r.get(0), r.get(1)), r.get(2)))
            .collect())
    }

    /// The current state's entries for the given keys only (a room's state may be large).
    pub async fn current_state_keys(
        &self,
        room_id: &str,
        keys: &[(String, String)],
    ) -> Result<StateNids> {
        let mut conn = self.pool().acquire().await?;
        current_state_keys(&mut conn, room_id, keys).await
    }

    /// The content of one current state event, if the room has it.
    pub async fn current_state_content(
        &self,
        room_id: &str,
        event_type: &str,
        state_key: &str,
    ) -> Result<Option<JsonValue>> {
        let content: Option<Option<Json<JsonValue>>> = sqlx::query_scalar(
            "SELECT e.pdu->'content' FROM current_state c
             JOIN events e ON e.event_nid = c.event_nid
             WHERE c.room_id = $1 AND c.event_type = $2 AND c.state_key = $3",
        )
        .bind(room_id)
        .bind(event_type)
        .bind(state_key)
        .fetch_optional(self.pool())
        .await?;
        Ok(content.map(|c| c.map_or(JsonValue::Null, |j| j.0)))
    }

    /// The event a client already sent with this transaction ID, if any.
    pub async fn event_for_txn(
        &self,
        sender: &str,
        device: &str,
        txn_id: &str,
    ) -> Result<Option<String>> {
        let mut conn = self.pool().acquire().await?;
        event_for_txn(&mut conn, sender, device, txn_id).await
    }

    /// The user's current membership in a room.
    pub async fn membership(&self, room_id: &str, user_id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "SELECT membership FROM memberships WHERE room_id = $1 AND user_id = $2",
        )
        .bind(room_id)
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// The user's current membership in a room and its stream position.
    pub async fn membership_and_position(
        &self,
        room_id: &str,
        user_id: &str,
    ) -> Result<Option<(String, Option<i64>)>> {
        Ok(sqlx::query_as(
            "SELECT membership, stream_pos FROM memberships WHERE room_id = $1 AND user_id = $2",
        )
        .bind(room_id)
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?)
    }

    /// State group after the user's current membership event.
    pub async fn membership_state_group(
        &self,
        room_id: &str,
        user_id: &str,
    ) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT e.state_after FROM memberships m JOIN events e ON e.event_nid = m.event_nid
             WHERE m.room_id = $1 AND m.user_id = $2",
        )
        .bind(room_id)
        .bind(user_id)
        .fetch_optional(self.pool())
        .await?
        .flatten())
    }

    /// State group after the room's last event before a stream token (tokens are exclusive
    /// bounds, as pagination uses them).
    pub async fn state_group_at_position(&self, room_id: &str, pos: i64) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT state_after FROM events WHERE room_id = $1 AND stream_pos < $2
             ORDER BY stream_pos DESC LIMIT 1",
        )
        .bind(room_id)
        .bind(pos)
        .fetch_optional(self.pool())
        .await?
        .flatten())
    }

    /// Hides a room the user has left from them (`POST /forget`).
    pub async fn forget_room(&self, room_id: &str, user_id: &str) -> Result<()> {
        sqlx::query("UPDATE memberships SET forgotten = TRUE WHERE room_id = $1 AND user_id = $2")
            .bind(room_id)
            .bind(user_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Rooms the user has the given membership in.
    pub async fn rooms_with_membership(
        &self,
        user_id: &str,
        membership: &str,
    ) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT room_id FROM memberships WHERE user_id = $1 AND membership = $2 ORDER BY room_id",
        )
        .bind(user_id)
        .bind(membership)
        .fetch_all(self.pool())
        .await?)
    }

    pub async fn forward_extremity_count(&self, room_id: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM forward_extremities WHERE room_id = $1")
                .bind(room_id)
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// Timeline page: events of a room by stream position, newest first when `backwards`.
    /// `from` is exclusive; `to` is inclusive as a bound the other way.
    pub async fn room_timeline(
        &self,
        room_id: &str,
        from: Option<i64>,
        to: Option<i64>,
        backwards: bool,
        limit: i64,
    ) -> Result<Vec<StoredEvent>> {
        let sql = if backwards {
            "SELECT event_nid, event_id, pdu, stream_pos, state_before, state_after, redacted_by, room_id, txn_device, txn_id, replaces_nid, sender_erased, outlier, rejected FROM events
             WHERE room_id = $1 AND stream_pos IS NOT NULL
               AND ($2::bigint IS NULL OR stream_pos < $2) AND ($3::bigint IS NULL OR stream_pos >= $3)
             ORDER BY stream_pos DESC LIMIT $4"
        } else {
            "SELECT event_nid, event_id, pdu, stream_pos, state_before, state_after, redacted_by, room_id, txn_device, txn_id, replaces_nid, sender_erased, outlier, rejected FROM events
             WHERE room_id = $1 AND stream_pos IS NOT NULL
               AND ($2::bigint IS NULL OR stream_pos > $2) AND ($3::bigint IS NULL OR stream_pos <= $3)
             ORDER BY stream_pos ASC LIMIT $4"
        };
        let rows = sqlx::query(sql)
            .bind(room_id)
            .bind(from)
            .bind(to)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        Ok(rows.into_iter().map(stored_event).collect())
    }

    /// Highest committed position of the events stream.
    pub async fn events_stream_position(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT COALESCE(max(stream_pos), 0) FROM events")
                .fetch_one(self.pool())
                .await?,
        )
    }
}

async fn current_state_keys(
    conn: &mut sqlx::PgConnection,
    room_id: &str,
    keys: &[(String, String)],
) -> Result<StateNids> {
    let types: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    let skeys: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    let rows = sqlx::query(
        "SELECT c.event_type, c.state_key, c.event_nid FROM current_state c
         JOIN unnest($2::text[], $3::text[]) AS k(t, s) ON c.event_type = k.t AND c.state_key = k.s
         WHERE c.room_id = $1",
    )
    .bind(room_id)
    .bind(&types)
    .bind(&skeys)
    .fetch_all(&mut *conn)
    .await?;
    Ok(rows
        .into_iter()
        .map(|r| ((r.get(0), r.get(1)), r.get(2)))
        .collect())
}

/// The second key of a room's advisory lock: 32-bit FNV-1a of its ID, the same in every
/// process and version (two rooms sharing a key only share a lock).
fn room_lock_key(room_id: &str) -> i32 {
    let hash = room_id.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    i32::from_ne_bytes(hash.to_ne_bytes())
}

/// The transaction in which one event (or a batch, for room creation) joins a room.
pub struct RoomWrite {
    pub(super) tx: Transaction<'static, Postgres>,
    pub(super) room_id: String,
    wake: streams::WakeBus,
}

impl RoomWrite {
    pub fn room_id(&self) -> &str {
        &self.room_id
    }

    /// `Storage::event_for_txn` inside the write (under the room's lock).
    pub async fn event_for_txn(
        &mut self,
        sender: &str,
        device: &str,
        txn_id: &str,
    ) -> Result<Option<String>> {
        event_for_txn(&mut self.tx, sender, device, txn_id).await
    }

    pub(crate) fn conn(&mut self) -> &mut sqlx::PgConnection {
        &mut self.tx
    }

    pub async fn insert_room(&mut self, version: &str, creator: &str, now_ms: i64) -> Result<()> {
        sqlx::query("INSERT INTO rooms (room_id, room_version, creator, created_ts) VALUES ($1, $2, $3, $4)")
            .bind(&self.room_id)
            .bind(version)
            .bind(creator)
            .bind(now_ms)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    pub async fn extremities(&mut self) -> Result<Vec<Extremity>> {
        let rows = sqlx::query(
            "SELECT e.event_id, e.depth, e.state_after FROM forward_extremities f
             JOIN events e ON e.event_id = f.event_id WHERE f.room_id = $1 ORDER BY e.depth, e.event_id",
        )
        .bind(&self.room_id)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| Extremity {
                event_id: r.get(0),
                depth: r.get(1),
                state_after: r.get(2),
            })
            .collect())
    }

    pub async fn state_at_group(&mut self, group: i64) -> Result<StateNids> {
        state::load_group(&mut self.tx, group).await
    }

    pub async fn state_keys_at_group(
        &mut self,
        group: i64,
        keys: &[(String, String)],
    ) -> Result<StateNids> {
        state::load_group_keys(&mut self.tx, group, keys).await
    }

    /// Replaces an event's stored PDU by its redacted form.
    pub async fn apply_redaction(
        &mut self,
        nid: i64,
        redacted_pdu: &JsonValue,
        by: &str,
    ) -> Result<()> {
        sqlx::query("UPDATE events SET pdu = $2, redacted_by = $3 WHERE event_nid = $1")
            .bind(nid)
            .bind(Json(redacted_pdu))
            .bind(by)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Inserts an event with its DAG edges (its stream position comes at commit); unless
    /// soft-failed or an outlier it replaces the extremities it points at. An outlier of
    /// the same ID takes the new row's place (the event has come into the DAG), keeping
    /// its nid, which state groups may name. One statement: this runs under the room's
    /// lock on every send.
    pub async fn insert_event(&mut self, e: &NewEventRow<'_>) -> Result<i64> {
        let (nid, _queued): (i64, i64) = sqlx::query_as(sqlx::AssertSqlSafe(format!(
            "WITH RECURSIVE {servers},
             ev AS (
                 INSERT INTO events (event_id, room_id, sender, event_type, state_key, depth,
                                     origin_server_ts, pdu, txn_device, txn_id, soft_failed,
                                     state_before, state_after, replaces_nid, outlier)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $13, $14, $15, $16)
                 ON CONFLICT (event_id) DO UPDATE
                   SET pdu = EXCLUDED.pdu, soft_failed = EXCLUDED.soft_failed,
                       state_before = EXCLUDED.state_before,
                       state_after = EXCLUDED.state_after,
                       replaces_nid = EXCLUDED.replaces_nid, outlier = EXCLUDED.outlier
                   WHERE events.outlier AND NOT EXCLUDED.outlier
                 RETURNING event_nid),
             edges AS (
                 INSERT INTO event_edges (event_nid, prev_event_id)
                 SELECT ev.event_nid, p FROM ev, unnest($12::text[]) AS p
                 ON CONFLICT DO NOTHING),
             replaced AS (
                 DELETE FROM forward_extremities
                 WHERE NOT ($11 OR $16 OR $21) AND room_id = $2 AND event_id = ANY($12)),
             tip AS (
                 INSERT INTO forward_extremities (room_id, event_id)
                 SELECT $2, $1 WHERE NOT ($11 OR $16 OR $21)),
             others AS (
                 SELECT d FROM servers
                 WHERE d IS NOT NULL AND d <> $17 AND d IS DISTINCT FROM $22::text
                 UNION
                 SELECT $18::text WHERE $17::text IS NOT NULL AND $18::text <> $17
                                    AND $18::text IS DISTINCT FROM $22::text),
             known AS (
                 INSERT INTO federation_destinations (destination)
                 SELECT d FROM others ON CONFLICT DO NOTHING),
             queued AS (
                 INSERT INTO federation_outbox (destination, event_nid, queued_ts)
                 SELECT o.d, ev.event_nid, (extract(epoch FROM clock_timestamp()) * 1000)::bigint
                 FROM others o, ev RETURNING 1),
             woken AS (
                 SELECT pg_notify($19, $20) FROM (SELECT 1 FROM queued LIMIT 1) q)
             SELECT event_nid, (SELECT count(*) FROM woken) FROM ev",
            servers = super::federation::distinct_servers_cte("$2", "$17::text IS NOT NULL"),
        )))
        .bind(e.event_id)
        .bind(&self.room_id)
        .bind(e.sender)
        .bind(e.event_type)
        .bind(e.state_key)
        .bind(e.depth)
        .bind(e.origin_server_ts)
        .bind(Json(e.pdu))
        .bind(e.txn.map(|t| t.0))
        .bind(e.txn.map(|t| t.1))
        .bind(e.soft_failed)
        .bind(e.prev_events)
        .bind(e.state_before)
        .bind(e.state_after)
        .bind(e.replaces_nid)
        .bind(e.outlier)
        .bind(e.federate_from)
        .bind(e.member_server)
        .bind(streams::WAKE_CHANNEL)
        .bind(super::federation::FEDERATION_WAKE_KEY)
        .bind(e.historical)
        .bind(e.federate_except)
        .fetch_one(&mut *self.tx)
        .await?;
        Ok(nid)
    }

    /// New state group for `parent` + `delta`. `parent_is_current`: the parent is the
    /// room's current state, whose keys are read from `current_state` (cheap) rather than
    /// by walking the group's segments.
    pub async fn write_state_group(
        &mut self,
        parent: Option<i64>,
        delta: &StateNids,
        parent_is_current: bool,
    ) -> Result<i64> {
        let keys: Vec<(String, String)> = delta.keys().cloned().collect();
        let existing = match parent {
            Some(_) if parent_is_current => self.current_state_for(&keys).await?,
            Some(p) => state::load_group_keys(&mut self.tx, p, &keys).await?,
            None => StateNids::new(),
        };
        let new_keys = delta.keys().filter(|k| !existing.contains_key(*k)).count();
        state::write_group(&mut self.tx, &self.room_id, parent, delta, new_keys).await
    }

    /// New state group holding `full`, written as a delta on `parent` when `full` only adds
    /// or replaces entries, else as a snapshot (resolution may drop a key).
    /// A new state group holding `full` and nothing else, with no parent (state another
    /// server sent).
    pub async fn write_root_state_group(&mut self, full: &StateNids) -> Result<i64> {
        state::write_group(&mut self.tx, &self.room_id, None, full, full.len()).await
    }

    pub async fn write_full_state_group(&mut self, parent: i64, full: &StateNids) -> Result<i64> {
        let base = state::load_group(&mut self.tx, parent).await?;
        if base.keys().all(|k| full.contains_key(k)) {
            let delta: StateNids = full
                .iter()
                .filter(|(k, n)| base.get(*k) != Some(*n))
                .map(|(k, n)| (k.clone(), *n))
                .collect();
            let new_keys = full.len() - base.len();
            return state::write_group(&mut self.tx, &self.room_id, Some(parent), &delta, new_keys)
                .await;
        }
        state::write_group(&mut self.tx, &self.room_id, None, full, full.len()).await
    }

    /// The resolved state of the forward extremities, while there are several.
    pub async fn resolved_state_group(&mut self) -> Result<Option<i64>> {
        Ok(
            sqlx::query_scalar("SELECT resolved_state_group FROM rooms WHERE room_id = $1")
                .bind(&self.room_id)
                .fetch_one(&mut *self.tx)
                .await?,
        )
    }

    pub async fn set_resolved_state_group(&mut self, group: Option<i64>) -> Result<()> {
        sqlx::query("UPDATE rooms SET resolved_state_group = $2 WHERE room_id = $1")
            .bind(&self.room_id)
            .bind(group)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    /// Removes a key from the current state (state resolution can drop one).
    pub async fn delete_current_state(&mut self, event_type: &str, state_key: &str) -> Result<()> {
        sqlx::query(
            "DELETE FROM current_state WHERE room_id = $1 AND event_type = $2 AND state_key = $3",
        )
        .bind(&self.room_id)
        .bind(event_type)
        .bind(state_key)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    /// The current state's entries for the given keys only (a room's state may be large).
    /// Joined members, read in this transaction (push evaluation must not wait for a
    /// second pool connection while holding this one).
    /// The current state's events for the given keys, in one query.
    pub async fn current_state_events_for(
        &mut self,
        keys: &[(String, String)],
    ) -> Result<Vec<((String, String), StoredEvent)>> {
        let types: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
        let skeys: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {E_EVENT_COLUMNS}, c.event_type, c.state_key FROM current_state c
             JOIN unnest($2::text[], $3::text[]) AS k(t, s)
               ON c.event_type = k.t AND c.state_key = k.s
             JOIN events e ON e.event_nid = c.event_nid
             WHERE c.room_id = $1"
        )))
        .bind(&self.room_id)
        .bind(&types)
        .bind(&skeys)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let key = (r.get(14), r.get(15));
                (key, stored_event(r))
            })
            .collect())
    }

    pub async fn current_state_for(&mut self, keys: &[(String, String)]) -> Result<StateNids> {
        current_state_keys(&mut self.tx, &self.room_id, keys).await
    }

    pub async fn current_state(&mut self) -> Result<StateNids> {
        let rows = sqlx::query(
            "SELECT event_type, state_key, event_nid FROM current_state WHERE room_id = $1",
        )
        .bind(&self.room_id)
        .fetch_all(&mut *self.tx)
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ((r.get(0), r.get(1)), r.get(2)))
            .collect())
    }

    pub async fn set_event_state(
        &mut self,
        nid: i64,
        before: Option<i64>,
        after: Option<i64>,
    ) -> Result<()> {
        sqlx::query("UPDATE events SET state_before = $2, state_after = $3 WHERE event_nid = $1")
            .bind(nid)
            .bind(before)
            .bind(after)
            .execute(&mut *self.tx)
            .await?;
        Ok(())
    }

    pub async fn set_current_state(
        &mut self,
        event_type: &str,
        state_key: &str,
        nid: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO current_state (room_id, event_type, state_key, event_nid) VALUES ($1, $2, $3, $4)
             ON CONFLICT (room_id, event_type, state_key) DO UPDATE SET event_nid = EXCLUDED.event_nid",
        )
        .bind(&self.room_id)
        .bind(event_type)
        .bind(state_key)
        .bind(nid)
        .execute(&mut *self.tx)
        .await?;
        Ok(())
    }

    pub async fn set_membership(
        &mut self,
        user_id: &str,
        membership: &str,
        nid: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO memberships (room_id, user_id, membership, event_nid) VALUES ($1, $2, $3, $4)
             ON CONFLICT (room_id, user_id) DO UPDATE
               SET membership = EXCLUDED.membership, event_nid = EXCLUDED.event_nid,
                   forgotten = FALSE, invite_state = NULL",
        )
        .bind(&self.room_id)
        .bind(user_id)
        .bind(membership)
        .bind(nid)
        .execute(&mut *self.tx)
        .await?;
        // Leaving (or being banned) may end this server's sharing a room with someone.
        if membership == "leave" || membership == "ban" {
            super::device_lists::forget_unshared_device_lists(&mut self.tx, &self.room_id, user_id)
                .await?;
        }
        Ok(())
    }

    /// Gives the events their stream positions and commits. Positions are taken under a
    /// server-wide lock held until commit, so they become visible in order: no reader can
    /// see position N before every position below N. Memberships take their events'
    /// positions; syncs of the room's members and of users whose membership changed (an
    /// invitee is not a member yet) are woken: in this process right after the commit,
    /// in others by the NOTIFY (see migrations/0019).
    pub async fn commit(mut self, nids: &[i64]) -> Result<i64> {
        let (last, keys): (i64, Vec<String>) =
            sqlx::query_as("SELECT * FROM axon_publish_events($1, $2, $3, $4, $5)")
                .bind(nids)
                .bind(&self.room_id)
                .bind(Stream::Events as i32)
                .bind(streams::WAKE_CHANNEL)
                .bind(self.wake.tag())
                .fetch_one(&mut *self.tx)
                .await?;
        self.tx.commit().await?;
        for key in &keys {
            self.wake.publish(key);
        }
        Ok(last)
    }
}

async fn event_for_txn(
    conn: &mut sqlx::PgConnection,
    sender: &str,
    device: &str,
    txn_id: &str,
) -> Result<Option<String>> {
    Ok(sqlx::query_scalar(
        "SELECT event_id FROM events WHERE sender = $1 AND txn_device = $2 AND txn_id = $3",
    )
    .bind(sender)
    .bind(device)
    .bind(txn_id)
    .fetch_optional(conn)
    .await?)
}

#[cfg(test)]
mod tests {
    #[test]
    fn room_lock_keys_are_stable() {
        // Every process must derive the same key: pinned values, not just self-consistency.
        assert_eq!(super::room_lock_key(""), 0x811c_9dc5_u32 as i32);
        assert_eq!(super::room_lock_key("a"), 0xe40c_292c_u32 as i32);
        assert_ne!(super::room_lock_key("!a:x"), super::room_lock_key("!b:x"));
    }
}
