//! Federation's tables: received transaction IDs, the outbox and its destinations; and
//! which servers are in a room.

use serde_json::Value as JsonValue;
use sqlx::{PgConnection, types::Json};

use super::{Result, Storage, streams};

/// A member's server, from their user ID (`@local:server`, the server possibly with a port).
/// The same expression as the index `memberships_joined_server` (migration 0026).
pub(crate) const SERVER_OF_USER: &str = "substr(user_id, strpos(user_id, ':') + 1)";

/// The distinct servers with a member joined to the room `room` (a SQL parameter), when
/// `when` (a SQL condition) holds: one index seek per server (a loose index scan over
/// `memberships_joined_server`), so a room of thousands of members from a few servers
/// costs a few seeks. The rows of the CTE `servers(d)` (with a NULL row at the end).
pub(crate) fn distinct_servers_cte(room: &str, when: &str) -> String {
    format!(
        "servers(d) AS (
             SELECT min({SERVER_OF_USER}) FROM memberships
             WHERE room_id = {room} AND membership = 'join' AND {when}
             UNION ALL
             SELECT (SELECT min({SERVER_OF_USER}) FROM memberships
                     WHERE room_id = {room} AND membership = 'join' AND {SERVER_OF_USER} > s.d)
             FROM servers s WHERE s.d IS NOT NULL)"
    )
}

impl Storage {
    /// Whether any user of `server` is joined to the room.
    pub async fn server_joined(&self, room_id: &str, server: &str) -> Result<bool> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "SELECT EXISTS (SELECT 1 FROM memberships
             WHERE room_id = $1 AND membership = 'join' AND {SERVER_OF_USER} = $2)"
        )))
        .bind(room_id)
        .bind(server)
        .fetch_one(self.pool())
        .await?)
    }

    /// The room's forward extremities (event IDs).
    pub async fn forward_extremities(&self, room_id: &str) -> Result<Vec<String>> {
        Ok(
            sqlx::query_scalar("SELECT event_id FROM forward_extremities WHERE room_id = $1")
                .bind(room_id)
                .fetch_all(self.pool())
                .await?,
        )
    }

    /// The servers with a joined member in the room.
    pub async fn room_servers(&self, room_id: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
            "WITH RECURSIVE {} SELECT d FROM servers WHERE d IS NOT NULL",
            distinct_servers_cte("$1", "TRUE")
        )))
        .bind(room_id)
        .fetch_all(self.pool())
        .await?)
    }
}

/// The wake-up key of the federation sender.
pub const FEDERATION_WAKE_KEY: &str = "federation";

/// EDU kinds worth nothing once late: a typing notice queued longer than this ago is
/// dropped instead of sent (the receiver would expire it at once anyway).
const STALE_TYPING_MS: i64 = 60_000;

/// Queues one EDU for each server of `destinations` (a SQL query yielding `d`, with `$1`
/// and `$2` its parameters), in `conn`'s transaction, and wakes the sender.
async fn queue_edu_to(
    conn: &mut PgConnection,
    destinations: &str,
    params: (&str, &str),
    edu: &JsonValue,
) -> Result<u64> {
    let queued: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "WITH dests AS ({destinations}),
         known AS (
             INSERT INTO federation_destinations (destination)
             SELECT d FROM dests ON CONFLICT DO NOTHING),
         queued AS (
             INSERT INTO federation_outbox (destination, edu, queued_ts)
             SELECT d, $3, (extract(epoch FROM clock_timestamp()) * 1000)::bigint
             FROM dests RETURNING 1)
         SELECT count(*) FROM queued"
    )))
    .bind(params.0)
    .bind(params.1)
    .bind(Json(edu))
    .fetch_one(&mut *conn)
    .await?;
    if queued > 0 {
        streams::notify(conn, FEDERATION_WAKE_KEY).await?;
    }
    Ok(queued as u64)
}

/// The servers (other than the user's own) with a member joined to a room the user is
/// joined to: `$1` the user, `$2` unused.
const SERVERS_SHARING_WITH_USER: &str = "
    SELECT DISTINCT substr(theirs.user_id, strpos(theirs.user_id, ':') + 1) AS d
    FROM memberships mine JOIN memberships theirs USING (room_id)
    WHERE mine.user_id = $1 AND mine.membership = 'join' AND theirs.membership = 'join'
      AND $2 = ''
      AND substr(theirs.user_id, strpos(theirs.user_id, ':') + 1)
          <> substr($1, strpos($1, ':') + 1)";

/// Queues an EDU about a local user (presence, device lists) for every other server
/// sharing a room with them, in the caller's transaction.
pub(crate) async fn queue_user_edu_in(
    conn: &mut PgConnection,
    user_id: &str,
    edu: &JsonValue,
) -> Result<u64> {
    queue_edu_to(conn, SERVERS_SHARING_WITH_USER, (user_id, ""), edu).await
}

impl Storage {
    /// Queues an EDU about a room (typing, receipts) for every server with a member
    /// joined to it, except `local_server`.
    pub async fn queue_room_edu(
        &self,
        room_id: &str,
        local_server: &str,
        edu: &JsonValue,
    ) -> Result<u64> {
        let mut conn = self.pool().acquire().await?;
        let servers = format!(
            "WITH RECURSIVE {} SELECT d FROM servers WHERE d IS NOT NULL AND d <> $2",
            distinct_servers_cte("$1", "TRUE")
        );
        queue_edu_to(&mut conn, &servers, (room_id, local_server), edu).await
    }

    /// Queues an EDU about a local user (presence) for every other server sharing a room
    /// with them.
    pub async fn queue_user_edu(&self, user_id: &str, edu: &JsonValue) -> Result<u64> {
        let mut conn = self.pool().acquire().await?;
        queue_user_edu_in(&mut conn, user_id, edu).await
    }
}

/// Queues an EDU for one server, in the caller's transaction.
pub(crate) async fn queue_edu_in(
    conn: &mut PgConnection,
    destination: &str,
    edu: &JsonValue,
) -> Result<u64> {
    queue_edu_to(
        conn,
        "SELECT $1::text AS d WHERE $2 = ''",
        (destination, ""),
        edu,
    )
    .await
}

/// A destination leased for sending.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LeasedDestination {
    pub destination: String,
    pub failures: i32,
    pub failing_since_ts: Option<i64>,
}

/// A batch of what a destination is owed, oldest first.
#[derive(Debug, Default)]
pub struct OutboxBatch {
    /// (row id, PDU)
    pub pdus: Vec<(i64, JsonValue)>,
    /// (row id, EDU)
    pub edus: Vec<(i64, JsonValue)>,
}

impl OutboxBatch {
    pub fn is_empty(&self) -> bool {
        self.pdus.is_empty() && self.edus.is_empty()
    }

    pub fn ids(&self) -> Vec<i64> {
        self.pdus
            .iter()
            .chain(&self.edus)
            .map(|(id, _)| *id)
            .collect()
    }
}

impl Storage {
    /// Takes the due destination that waited longest and has something to send, for
    /// `lease_until`; no other process takes it meanwhile.
    pub async fn lease_destination(
        &self,
        now_ms: i64,
        lease_until: i64,
    ) -> Result<Option<LeasedDestination>> {
        Ok(sqlx::query_as(
            "UPDATE federation_destinations SET lease_until_ts = $2
             WHERE destination = (
                 SELECT d.destination FROM federation_destinations d
                 WHERE d.next_attempt_ts <= $1 AND d.lease_until_ts <= $1
                   AND EXISTS (SELECT 1 FROM federation_outbox o
                               WHERE o.destination = d.destination)
                 ORDER BY d.next_attempt_ts LIMIT 1
                 FOR UPDATE SKIP LOCKED)
             RETURNING destination, failures, failing_since_ts",
        )
        .bind(now_ms)
        .bind(lease_until)
        .fetch_optional(self.pool())
        .await?)
    }

    /// Keeps a lease while a send is under way.
    pub async fn renew_lease(&self, destination: &str, lease_until: i64) -> Result<()> {
        sqlx::query(
            "UPDATE federation_destinations SET lease_until_ts = $2 WHERE destination = $1",
        )
        .bind(destination)
        .bind(lease_until)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The oldest PDUs and EDUs a destination is owed.
    pub async fn outbox_batch(
        &self,
        destination: &str,
        max_pdus: i64,
        max_edus: i64,
    ) -> Result<OutboxBatch> {
        let pdus: Vec<(i64, Json<JsonValue>)> = sqlx::query_as(
            "SELECT o.id, e.pdu FROM federation_outbox o
             JOIN events e ON e.event_nid = o.event_nid
             WHERE o.destination = $1 AND o.event_nid IS NOT NULL
             ORDER BY o.id LIMIT $2",
        )
        .bind(destination)
        .bind(max_pdus)
        .fetch_all(self.pool())
        .await?;
        sqlx::query(
            "DELETE FROM federation_outbox
             WHERE destination = $1 AND edu->>'edu_type' = 'm.typing'
               AND queued_ts < (extract(epoch FROM clock_timestamp()) * 1000)::bigint - $2",
        )
        .bind(destination)
        .bind(STALE_TYPING_MS)
        .execute(self.pool())
        .await?;
        let edus: Vec<(i64, Json<JsonValue>)> = sqlx::query_as(
            "SELECT id, edu FROM federation_outbox
             WHERE destination = $1 AND edu IS NOT NULL ORDER BY id LIMIT $2",
        )
        .bind(destination)
        .bind(max_edus)
        .fetch_all(self.pool())
        .await?;
        Ok(OutboxBatch {
            pdus: pdus.into_iter().map(|(id, j)| (id, j.0)).collect(),
            edus: edus.into_iter().map(|(id, j)| (id, j.0)).collect(),
        })
    }

    /// A batch arrived: its rows go, the destination is healthy again.
    pub async fn outbox_sent(&self, destination: &str, ids: &[i64], now_ms: i64) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        sqlx::query("DELETE FROM federation_outbox WHERE destination = $1 AND id = ANY($2)")
            .bind(destination)
            .bind(ids)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE federation_destinations SET failures = 0, failing_since_ts = NULL,
                 next_attempt_ts = 0, last_success_ts = $2
             WHERE destination = $1",
        )
        .bind(destination)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    /// A send failed: try again at `next_attempt_ts`; the lease is given back.
    pub async fn destination_failed(
        &self,
        destination: &str,
        next_attempt_ts: i64,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE federation_destinations SET failures = failures + 1,
                 failing_since_ts = COALESCE(failing_since_ts, $3),
                 next_attempt_ts = $2, lease_until_ts = 0
             WHERE destination = $1",
        )
        .bind(destination)
        .bind(next_attempt_ts)
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Gives a lease back without changing the retry state.
    pub async fn release_destination(&self, destination: &str) -> Result<()> {
        sqlx::query("UPDATE federation_destinations SET lease_until_ts = 0 WHERE destination = $1")
            .bind(destination)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// The destination contacted us: a backed-off one is tried again at once. Returns
    /// whether it was backing off.
    pub async fn destination_is_back(&self, destination: &str) -> Result<bool> {
        let changed = sqlx::query(
            "UPDATE federation_destinations SET next_attempt_ts = 0
             WHERE destination = $1 AND next_attempt_ts > 0",
        )
        .bind(destination)
        .execute(self.pool())
        .await?
        .rows_affected();
        if changed > 0 {
            let mut conn = self.pool().acquire().await?;
            streams::notify(&mut conn, FEDERATION_WAKE_KEY).await?;
        }
        Ok(changed > 0)
    }

    /// After a long outage: of the PDUs owed to a destination, only each room's newest
    /// stays (the destination fetches what it misses before them), and of the presence
    /// EDUs only each user's newest. Returns how many went.
    pub async fn compact_outbox(&self, destination: &str) -> Result<u64> {
        Ok(sqlx::query(
            "DELETE FROM federation_outbox o
             WHERE o.destination = $1 AND o.event_nid IS NOT NULL
               AND o.id NOT IN (
                   SELECT max(o2.id) FROM federation_outbox o2
                   JOIN events e ON e.event_nid = o2.event_nid
                   WHERE o2.destination = $1 GROUP BY e.room_id)",
        )
        .bind(destination)
        .execute(self.pool())
        .await?
        .rows_affected()
            + sqlx::query(
                "DELETE FROM federation_outbox o
                 WHERE o.destination = $1 AND o.edu->>'edu_type' = 'm.presence'
                   AND o.id NOT IN (
                       SELECT max(o2.id) FROM federation_outbox o2
                       WHERE o2.destination = $1 AND o2.edu->>'edu_type' = 'm.presence'
                       GROUP BY o2.edu->'content'->'push'->0->>'user_id')",
            )
            .bind(destination)
            .execute(self.pool())
            .await?
            .rows_affected())
    }

    /// PDUs and EDUs queued for a destination.
    pub async fn outbox_len(&self, destination: &str) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT count(*) FROM federation_outbox WHERE destination = $1")
                .bind(destination)
                .fetch_one(self.pool())
                .await?,
        )
    }

    /// The answer already given to a transaction from `origin`, if any.
    pub async fn received_txn(&self, origin: &str, txn_id: &str) -> Result<Option<JsonValue>> {
        let row: Option<Json<JsonValue>> = sqlx::query_scalar(
            "SELECT response FROM federation_received_txns WHERE origin = $1 AND txn_id = $2",
        )
        .bind(origin)
        .bind(txn_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|j| j.0))
    }

    pub async fn record_received_txn(
        &self,
        origin: &str,
        txn_id: &str,
        response: &JsonValue,
        now_ms: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO federation_received_txns (origin, txn_id, response, received_ts)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(origin)
        .bind(txn_id)
        .bind(Json(response))
        .bind(now_ms)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Received transaction IDs older than `before`.
    pub async fn prune_received_txns(&self, before: i64) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM federation_received_txns WHERE received_ts < $1")
                .bind(before)
                .execute(self.pool())
                .await?
                .rows_affected(),
        )
    }
}
