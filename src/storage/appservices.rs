//! `appservice_state` and `appservice_txns`: each application service's place in the
//! event stream and its transactions not yet accepted.

use serde::{Deserialize, Serialize};
use serde_json::Value as JsonValue;
use sqlx::types::Json;

use super::{
    Result, Storage,
    events::{StoredEvent, stored_event},
    presence::PresenceRow,
    sync::ReceiptRow,
};

/// An appservice's place in the ephemeral streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct EphemeralPositions {
    pub receipts: i64,
    pub typing: i64,
    pub presence: i64,
    pub to_device: i64,
    /// Absent in positions stored before device lists were sent (MSC3202): from now on.
    #[serde(default)]
    pub device_lists: Option<i64>,
}

/// A user whose device list changed: at `stream_pos` for the user, at `shared_pos` for
/// those sharing a room (see migration 0024).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct DeviceListChangeRow {
    pub user_id: String,
    pub stream_pos: i64,
    pub shared_pos: i64,
}

/// A to-device message in an inbox.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ToDeviceRow {
    pub stream_pos: i64,
    pub user_id: String,
    pub device_id: String,
    pub sender: String,
    pub event_type: String,
    pub content: Json<JsonValue>,
}

impl Storage {
    /// The appservice's place in the event stream; the first time, the stream's current
    /// end (a new appservice is sent what happens from now on, not the history).
    pub async fn appservice_position(&self, appservice_id: &str) -> Result<i64> {
        let pos: i64 = sqlx::query_scalar(
            "INSERT INTO appservice_state (appservice_id, events_pos)
             VALUES ($1, (SELECT coalesce(max(stream_pos), 0) FROM events))
             ON CONFLICT (appservice_id) DO UPDATE SET appservice_id = EXCLUDED.appservice_id
             RETURNING events_pos",
        )
        .bind(appservice_id)
        .fetch_one(self.pool())
        .await?;
        Ok(pos)
    }

    /// Takes (or renews) the lease to send to the appservice for `lease_ms`; false while
    /// another process holds it.
    pub async fn lease_appservice(
        &self,
        appservice_id: &str,
        owner: &str,
        now_ms: i64,
        lease_ms: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE appservice_state SET lease_owner = $2, lease_until = $3 + $4
             WHERE appservice_id = $1 AND (lease_until < $3 OR lease_owner = $2)",
        )
        .bind(appservice_id)
        .bind(owner)
        .bind(now_ms)
        .bind(lease_ms)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    pub async fn release_appservice_lease(&self, appservice_id: &str, owner: &str) -> Result<()> {
        sqlx::query(
            "UPDATE appservice_state SET lease_until = 0
             WHERE appservice_id = $1 AND lease_owner = $2",
        )
        .bind(appservice_id)
        .bind(owner)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Timeline events after `pos`, in stream order, at most `limit` (soft-failed events
    /// and outliers are no one's news).
    pub async fn events_after(&self, pos: i64, limit: i64) -> Result<Vec<StoredEvent>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {} FROM events WHERE stream_pos > $1 AND NOT soft_failed AND NOT outlier
             ORDER BY stream_pos LIMIT $2",
            super::events::EVENT_COLUMNS
        )))
        .bind(pos)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows.into_iter().map(stored_event).collect())
    }

    /// The appservice's place in the ephemeral streams; None before its first round.
    pub async fn appservice_ephemeral_position(
        &self,
        appservice_id: &str,
    ) -> Result<Option<EphemeralPositions>> {
        let pos: Option<Option<Json<EphemeralPositions>>> = sqlx::query_scalar(
            "SELECT ephemeral_pos FROM appservice_state WHERE appservice_id = $1",
        )
        .bind(appservice_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(pos.flatten().map(|Json(p)| p))
    }

    /// Moves the appservice to `pos` (and `ephemeral` in those streams) and, when there is
    /// anything to send, queues it as its next transaction; the to-device messages it
    /// carries leave their inboxes (`delivered`: user, device, up to position). All or
    /// nothing.
    pub async fn queue_appservice_txn(
        &self,
        appservice_id: &str,
        pos: i64,
        ephemeral: Option<&EphemeralPositions>,
        delivered: &[(String, String, i64)],
        body: Option<&JsonValue>,
        now_ms: i64,
    ) -> Result<()> {
        let mut tx = self.pool().begin().await?;
        if let Some(ephemeral) = ephemeral {
            sqlx::query("UPDATE appservice_state SET ephemeral_pos = $2 WHERE appservice_id = $1")
                .bind(appservice_id)
                .bind(Json(ephemeral))
                .execute(&mut *tx)
                .await?;
        }
        for (user, device, upto) in delivered {
            sqlx::query(
                "DELETE FROM to_device_messages
                 WHERE user_id = $1 AND device_id = $2 AND stream_pos <= $3",
            )
            .bind(user)
            .bind(device)
            .bind(upto)
            .execute(&mut *tx)
            .await?;
        }
        let txn_id: i64 = sqlx::query_scalar(
            "UPDATE appservice_state SET events_pos = $2,
                 next_txn_id = next_txn_id + CASE WHEN $3 THEN 1 ELSE 0 END
             WHERE appservice_id = $1 RETURNING next_txn_id - CASE WHEN $3 THEN 1 ELSE 0 END",
        )
        .bind(appservice_id)
        .bind(pos)
        .bind(body.is_some())
        .fetch_one(&mut *tx)
        .await?;
        if let Some(body) = body {
            sqlx::query(
                "INSERT INTO appservice_txns (appservice_id, txn_id, body, created_ts)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(appservice_id)
            .bind(txn_id)
            .bind(Json(body))
            .bind(now_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// The appservice's oldest transaction not yet accepted.
    pub async fn oldest_appservice_txn(
        &self,
        appservice_id: &str,
    ) -> Result<Option<(i64, JsonValue)>> {
        let row: Option<(i64, Json<JsonValue>)> = sqlx::query_as(
            "SELECT txn_id, body FROM appservice_txns WHERE appservice_id = $1
             ORDER BY txn_id LIMIT 1",
        )
        .bind(appservice_id)
        .fetch_optional(self.pool())
        .await?;
        Ok(row.map(|(id, Json(body))| (id, body)))
    }

    pub async fn delete_appservice_txn(&self, appservice_id: &str, txn_id: i64) -> Result<()> {
        sqlx::query("DELETE FROM appservice_txns WHERE appservice_id = $1 AND txn_id = $2")
            .bind(appservice_id)
            .bind(txn_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// (transactions waiting, place in the event stream) of an appservice, for admins.
    pub async fn appservice_queue(&self, appservice_id: &str) -> Result<(i64, Option<i64>)> {
        let waiting: i64 =
            sqlx::query_scalar("SELECT count(*) FROM appservice_txns WHERE appservice_id = $1")
                .bind(appservice_id)
                .fetch_one(self.pool())
                .await?;
        let pos: Option<i64> =
            sqlx::query_scalar("SELECT events_pos FROM appservice_state WHERE appservice_id = $1")
                .bind(appservice_id)
                .fetch_optional(self.pool())
                .await?;
        Ok((waiting, pos))
    }

    /// Rooms whose typing changed in (since, until].
    pub async fn typing_rooms_changed(&self, since: i64, until: i64) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT room_id FROM typing_rooms WHERE stream_pos > $1 AND stream_pos <= $2",
        )
        .bind(since)
        .bind(until)
        .fetch_all(self.pool())
        .await?)
    }

    /// Receipts set in (since, until], in every room.
    pub async fn receipts_changed(&self, since: i64, until: i64) -> Result<Vec<ReceiptRow>> {
        let rows: Vec<(String, String, String, String, String, i64)> = sqlx::query_as(
            "SELECT room_id, user_id, receipt_type, thread_id, event_id, ts FROM receipts
             WHERE stream_pos > $1 AND stream_pos <= $2 ORDER BY stream_pos",
        )
        .bind(since)
        .bind(until)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(
                |(room_id, user_id, receipt_type, thread_id, event_id, ts)| ReceiptRow {
                    room_id,
                    user_id,
                    receipt_type,
                    thread_id,
                    event_id,
                    ts,
                },
            )
            .collect())
    }

    /// Presence that changed in (since, until].
    pub async fn presence_changed(&self, since: i64, until: i64) -> Result<Vec<PresenceRow>> {
        self.presence_between(since, until).await
    }

    /// To-device messages sent in (since, until], to anyone.
    pub async fn to_device_between(&self, since: i64, until: i64) -> Result<Vec<ToDeviceRow>> {
        Ok(sqlx::query_as(
            "SELECT stream_pos, user_id, device_id, sender, event_type, content
             FROM to_device_messages WHERE stream_pos > $1 AND stream_pos <= $2
             ORDER BY stream_pos",
        )
        .bind(since)
        .bind(until)
        .fetch_all(self.pool())
        .await?)
    }

    /// Users whose device list changed in (since, until], by `stream_pos`.
    pub async fn device_list_changes_between(
        &self,
        since: i64,
        until: i64,
    ) -> Result<Vec<DeviceListChangeRow>> {
        Ok(sqlx::query_as(
            "SELECT user_id, stream_pos, shared_pos FROM device_list_changes
             WHERE stream_pos > $1 AND stream_pos <= $2",
        )
        .bind(since)
        .bind(until)
        .fetch_all(self.pool())
        .await?)
    }

    /// Unclaimed one-time keys (algorithm -> count) and unused fallback key algorithms of
    /// each device of `user_id`: (device, counts, fallback algorithms).
    pub async fn key_counts_of_devices(
        &self,
        user_id: &str,
    ) -> Result<Vec<(String, Vec<(String, i64)>, Vec<String>)>> {
        let devices: Vec<String> = sqlx::query_scalar(
            "SELECT device_id FROM devices WHERE user_id = $1 ORDER BY device_id",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        let counts: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT device_id, algorithm, count(*) FROM one_time_keys WHERE user_id = $1
             GROUP BY device_id, algorithm",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        let fallbacks: Vec<(String, String)> = sqlx::query_as(
            "SELECT device_id, algorithm FROM fallback_keys WHERE user_id = $1 AND NOT used
             ORDER BY algorithm",
        )
        .bind(user_id)
        .fetch_all(self.pool())
        .await?;
        Ok(devices
            .into_iter()
            .map(|device| {
                let of = counts
                    .iter()
                    .filter(|(d, _, _)| *d == device)
                    .map(|(_, alg, n)| (alg.clone(), *n))
                    .collect();
                let unused = fallbacks
                    .iter()
                    .filter(|(d, _)| *d == device)
                    .map(|(_, alg)| alg.clone())
                    .collect();
                (device, of, unused)
            })
            .collect())
    }

    /// Local users among a room's joined and invited members.
    pub async fn local_members(&self, room_id: &str, server_name: &str) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT user_id FROM memberships WHERE room_id = $1
               AND membership IN ('join', 'invite')
               AND right(user_id, length($2) + 1) = ':' || $2",
        )
        .bind(room_id)
        .bind(server_name)
        .fetch_all(self.pool())
        .await?)
    }
}
