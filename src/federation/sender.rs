//! The outbound queue's worker. The event write queues each local event for every other
//! server in its room (`federation_outbox`, in the event's transaction); this sends them
//! as transactions (`PUT /send/{txnId}`: at most 50 PDUs and 100 EDUs, oldest first), one
//! in flight per destination. A destination is leased in PostgreSQL while a process sends
//! to it, so with several processes each destination is sent by one. Failures back off
//! with jitter from seconds to a day; a server that contacts us is tried again at once
//! (`destination_is_back`); after an outage of more than an hour only each room's newest
//! event is sent, and the destination fetches what it misses before it.

use std::{
    collections::HashSet,
    sync::{Arc, Weak},
    time::Duration,
};

use rand::Rng as _;
use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedTransactionId, ServerName,
    api::federation::transactions::send_transaction_message,
};

use super::client::SendError;
use crate::{
    error::Result,
    server::{Homeserver, now_ms},
    storage::federation::{FEDERATION_WAKE_KEY, LeasedDestination},
};

const MAX_PDUS: i64 = 50;
const MAX_EDUS: i64 = 100;
/// Destinations sent to at once by one process.
pub const MAX_CONCURRENT: usize = 32;
const FIRST_BACKOFF_MS: i64 = 5_000;
const MAX_BACKOFF_MS: i64 = 24 * 3_600_000;
/// Failing this long is a long outage: the queue is compacted to each room's newest event.
const CATCH_UP_AFTER_MS: i64 = 3_600_000;

pub fn spawn(hs: &Arc<Homeserver>) {
    if hs.config.federation_enabled() {
        tokio::spawn(worker(Arc::downgrade(hs)));
    }
}

/// A lease outlives one request (it is renewed before each batch), so a process that
/// died holds its destinations this long at most.
fn lease_ms(hs: &Homeserver) -> i64 {
    let timeout = i64::try_from(hs.config.federation.request_timeout_secs).unwrap_or(60);
    (timeout + 15) * 1000
}

/// The wait before attempt `failures + 1`: doubling from 5 s to a day, ±20 %.
pub fn backoff_ms(failures: i32) -> i64 {
    let base = FIRST_BACKOFF_MS
        .saturating_mul(1i64 << failures.clamp(0, 30))
        .min(MAX_BACKOFF_MS);
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    ((base as f64) * jitter) as i64
}

async fn worker(weak: Weak<Homeserver>) {
    let (mut wake, federation) = match weak.upgrade() {
        Some(hs) => match super::state(&hs) {
            Ok(federation) => (hs.notifier.subscribe(), federation),
            Err(e) => {
                tracing::error!("federation sender not started: {e}");
                return;
            }
        },
        None => return,
    };
    let interest: HashSet<String> = [FEDERATION_WAKE_KEY.to_owned()].into();
    let permits = federation.sending.clone();
    loop {
        {
            let Some(hs) = weak.upgrade() else { return };
            if hs.notifier.is_closing() {
                return;
            }
            if !hs.storage.health().is_down() {
                // Lease as many due destinations as there are free slots. A permit is held
                // from before the lease until the sending ends, so that shutdown
                // (`federation::stop`) can wait for both.
                while let Ok(permit) = permits.clone().try_acquire_owned() {
                    let now = now_ms();
                    match hs.storage.lease_destination(now, now + lease_ms(&hs)).await {
                        // Shutdown began while leasing: give it straight back.
                        Ok(Some(leased)) if hs.notifier.is_closing() => {
                            let _ = hs.storage.release_destination(&leased.destination).await;
                            return;
                        }
                        Ok(Some(leased)) => {
                            let destination = leased.destination.clone();
                            federation
                                .leased
                                .lock()
                                .unwrap_or_else(|e| e.into_inner())
                                .insert(destination.clone());
                            let hs = hs.clone();
                            let federation = federation.clone();
                            tokio::spawn(async move {
                                if let Err(e) = send_all(&hs, leased).await {
                                    tracing::warn!(%destination, "federation sender: {e}");
                                    let _ = hs.storage.release_destination(&destination).await;
                                }
                                federation
                                    .leased
                                    .lock()
                                    .unwrap_or_else(|e| e.into_inner())
                                    .remove(&destination);
                                drop(permit);
                            });
                        }
                        Ok(None) => break,
                        Err(e) => {
                            tracing::warn!("federation sender: {e}");
                            break;
                        }
                    }
                }
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        crate::server::wake::wait_for(&mut wake, &interest, deadline).await;
    }
}

/// Sends a leased destination everything it is owed, batch after batch, until the queue
/// is empty or a send fails.
async fn send_all(hs: &Homeserver, leased: LeasedDestination) -> Result<()> {
    let destination = leased.destination.as_str();
    let Ok(server) = ServerName::parse(destination) else {
        tracing::warn!(destination, "not a server name; its queue is dropped");
        hs.storage.compact_outbox(destination).await?;
        return Ok(());
    };
    if leased
        .failing_since_ts
        .is_some_and(|since| now_ms() - since > CATCH_UP_AFTER_MS)
    {
        let dropped = hs.storage.compact_outbox(destination).await?;
        if dropped > 0 {
            tracing::info!(
                destination,
                dropped,
                "catching up after an outage: newest events only"
            );
        }
    }
    let federation = super::state(hs)?;
    loop {
        if hs.notifier.is_closing() {
            hs.storage.release_destination(destination).await?;
            return Ok(());
        }
        let batch = hs
            .storage
            .outbox_batch(destination, MAX_PDUS, MAX_EDUS)
            .await?;
        if batch.is_empty() {
            hs.storage.release_destination(destination).await?;
            return Ok(());
        }
        let ids = batch.ids();
        // The same batch gets the same ID when retried, so the destination can tell a
        // retry from a new transaction; a different batch never reuses one.
        let txn_id = format!(
            "{}-{}",
            ids.iter().min().unwrap_or(&0),
            ids.iter().max().unwrap_or(&0)
        );
        let pdus = batch
            .pdus
            .iter()
            .filter_map(|(_, pdu)| serde_json::value::to_raw_value(pdu).ok())
            .collect();
        let mut request = send_transaction_message::v1::Request::new(
            OwnedTransactionId::from(txn_id.as_str()),
            hs.config.server_name().to_owned(),
            MilliSecondsSinceUnixEpoch::now(),
        );
        request.pdus = pdus;
        let mut edus = Vec::with_capacity(batch.edus.len());
        for (_, queued) in &batch.edus {
            let mut edu = queued.clone();
            // Device list EDUs carry the device as it is when sent.
            if let Err(e) = super::device_lists::fill_edu(hs, &mut edu).await {
                tracing::warn!(destination, "EDU not sent: {e}");
                continue;
            }
            if let Ok(edu) = serde_json::from_value(edu) {
                edus.push(edu);
            }
        }
        request.edus = edus;
        match federation
            .client
            .send(hs.keys.pair(), &server, request)
            .await
        {
            Ok(response) => {
                for (event_id, result) in &response.pdus {
                    if let Err(why) = result {
                        tracing::debug!(destination, %event_id, "refused: {why}");
                    }
                }
                hs.storage.outbox_sent(destination, &ids, now_ms()).await?;
                hs.storage
                    .renew_lease(destination, now_ms() + lease_ms(hs))
                    .await?;
            }
            // Taken (a success status), with an answer that is not a transaction's: the
            // PDUs' results are unknown, but the destination has them.
            Err(SendError::Undecodable(why)) => {
                tracing::debug!(destination, "transaction taken, answer unreadable: {why}");
                hs.storage.outbox_sent(destination, &ids, now_ms()).await?;
                hs.storage
                    .renew_lease(destination, now_ms() + lease_ms(hs))
                    .await?;
            }
            // What the destination will never take (malformed, too big) is dropped.
            Err(SendError::Refused { status, body }) if status == 400 || status == 413 => {
                tracing::warn!(destination, status, "transaction refused, dropped: {body}");
                hs.storage.outbox_sent(destination, &ids, now_ms()).await?;
            }
            Err(e) => {
                let wait = backoff_ms(leased.failures);
                tracing::info!(
                    destination,
                    retry_in_s = wait / 1000,
                    "transaction not delivered: {e}"
                );
                hs.storage
                    .destination_failed(destination, now_ms() + wait, now_ms())
                    .await?;
                return Ok(());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::backoff_ms;

    #[test]
    fn backoff_doubles_with_jitter_up_to_a_day() {
        for _ in 0..100 {
            let first = backoff_ms(0);
            assert!((4_000..=6_000).contains(&first), "{first}");
            let third = backoff_ms(2);
            assert!((16_000..=24_000).contains(&third), "{third}");
            let late = backoff_ms(40);
            assert!((69_120_000..=103_680_000).contains(&late), "{late}");
        }
    }
}
