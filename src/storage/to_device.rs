//! The to-device inbox: messages for one device, kept until that device acknowledges them
//! (its next sync, or the next page of a dehydrated device's events).

use serde_json::Value as JsonValue;
use sqlx::{Row, types::Json};

use super::{
    Result, Storage,
    streams::{self, Stream},
};

/// One message for one device (or `*`: every device of the user).
pub struct OutgoingToDevice<'a> {
    pub user_id: &'a str,
    pub device_id: &'a str,
    pub content: &'a JsonValue,
}

#[derive(Debug, Clone)]
pub struct ToDeviceRow {
    pub stream_pos: i64,
    pub sender: String,
    pub event_type: String,
    pub content: JsonValue,
}

impl Storage {
    /// Queues messages from a sender's transaction, and the `m.direct_to_device` EDUs
    /// `(destination, EDU)` for other servers' users; false (and nothing sent) when the
    /// transaction was seen before. Messages to devices that do not exist are dropped.
    /// A message from another server has the sender device `""` and its message ID as
    /// the transaction.
    #[allow(clippy::too_many_arguments)]
    pub async fn send_to_device(
        &self,
        sender: (&str, &str),
        txn_id: &str,
        event_type: &str,
        messages: &[OutgoingToDevice<'_>],
        remote: &[(String, JsonValue)],
        max_pending: i64,
        now_ms: i64,
    ) -> Result<bool> {
        let mut tx = self.pool().begin().await?;
        let fresh = sqlx::query(
            "INSERT INTO to_device_txns (user_id, device_id, txn_id, created_ts)
             VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        )
        .bind(sender.0)
        .bind(sender.1)
        .bind(txn_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?
        .rows_affected()
            == 1;
        if !fresh {
            return Ok(false);
        }
        for (destination, edu) in remote {
            super::federation::queue_edu_in(&mut tx, destination, edu).await?;
        }
        streams::lock_stream(&mut tx, Stream::ToDevice).await?;
        let mut recipients: Vec<String> = Vec::new();
        for m in messages {
            let positions: Vec<i64> = sqlx::query_scalar(
                "INSERT INTO to_device_messages
                     (stream_pos, user_id, device_id, sender, event_type, content)
                 SELECT nextval('to_device_stream'), $1, d.device_id, $3, $4, $5
                 FROM devices d WHERE d.user_id = $1 AND ($2 = '*' OR d.device_id = $2)
                   -- one sender's share of the inbox is bounded; other senders'
                   -- messages (room keys) still arrive
                   AND NOT EXISTS (SELECT 1 FROM to_device_messages t
                                   WHERE t.user_id = $1 AND t.device_id = d.device_id
                                     AND t.sender = $3
                                   OFFSET $6 - 1 LIMIT 1)
                 ORDER BY d.device_id
                 RETURNING stream_pos",
            )
            .bind(m.user_id)
            .bind(m.device_id)
            .bind(sender.0)
            .bind(event_type)
            .bind(Json(m.content))
            .bind(max_pending)
            .fetch_all(&mut *tx)
            .await?;
            if !positions.is_empty() {
                recipients.push(m.user_id.to_owned());
            }
        }
        if !recipients.is_empty() {
            sqlx::query(
                "UPDATE to_device_head SET pos = (SELECT last_value FROM to_device_stream)",
            )
            .execute(&mut *tx)
            .await?;
            recipients.sort();
            recipients.dedup();
            for user in &recipients {
                streams::notify(&mut tx, &format!("u:{user}")).await?;
            }
        }
        tx.commit().await?;
        Ok(true)
    }

    /// Messages for a device in (after, until], oldest first, at most `limit`.
    pub async fn to_device_messages(
        &self,
        user_id: &str,
        device_id: &str,
        after: i64,
        until: i64,
        limit: i64,
    ) -> Result<Vec<ToDeviceRow>> {
        let rows = sqlx::query(
            "SELECT stream_pos, sender, event_type, content FROM to_device_messages
             WHERE user_id = $1 AND device_id = $2 AND stream_pos > $3 AND stream_pos <= $4
             ORDER BY stream_pos LIMIT $5",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(after)
        .bind(until)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|r| ToDeviceRow {
                stream_pos: r.get(0),
                sender: r.get(1),
                event_type: r.get(2),
                content: r.get::<Json<JsonValue>, _>(3).0,
            })
            .collect())
    }

    /// Forgets transaction IDs older than `before_ms` (retries come within minutes).
    pub async fn prune_to_device_txns(&self, before_ms: i64) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM to_device_txns WHERE created_ts < $1")
                .bind(before_ms)
                .execute(self.pool())
                .await?
                .rows_affected(),
        )
    }

    /// Deletes what a device has acknowledged: its messages up to `upto`.
    pub async fn ack_to_device(&self, user_id: &str, device_id: &str, upto: i64) -> Result<()> {
        sqlx::query(
            "DELETE FROM to_device_messages
             WHERE user_id = $1 AND device_id = $2 AND stream_pos <= $3",
        )
        .bind(user_id)
        .bind(device_id)
        .bind(upto)
        .execute(self.pool())
        .await?;
        Ok(())
    }
}
