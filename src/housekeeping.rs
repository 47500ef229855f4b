//! Housekeeping: the process's periodic sweeps. Typing notices and presence end by
//! timeout without a request (each sweep turns that into stream changes), and old rows
//! of several tables are pruned.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use crate::server::{Homeserver, now_ms};

/// Starts the sweep; it stops once the homeserver is dropped.
pub fn spawn(hs: &Arc<Homeserver>) {
    tokio::spawn(expiry_loop(Arc::downgrade(hs)));
}

/// How long read notifications stay in `GET /notifications` (Synapse keeps a month).
const PUSH_ACTIONS_KEPT_MS: i64 = 30 * 86_400_000;

/// Read push actions older than PUSH_ACTIONS_KEPT_MS, in batches so no statement runs long.
async fn prune_push_actions(hs: &Homeserver) {
    loop {
        match hs
            .storage
            .prune_push_actions(now_ms() - PUSH_ACTIONS_KEPT_MS, 10_000)
            .await
        {
            Ok(10_000) => continue,
            Ok(_) => return,
            Err(e) => {
                tracing::warn!("pruning push actions: {e}");
                return;
            }
        }
    }
}

/// Typing notices and presence end by timeout without a request; this turns that into
/// stream changes. It also prunes old sendToDevice transaction IDs.
async fn expiry_loop(hs: Weak<Homeserver>) {
    for round in 1u64.. {
        tokio::time::sleep(Duration::from_millis(1000)).await;
        let Some(hs) = hs.upgrade() else { return };
        // Hourly: sendToDevice transaction IDs older than a day.
        if round % 3600 == 0
            && let Err(e) = hs.storage.prune_to_device_txns(now_ms() - 86_400_000).await
        {
            tracing::warn!("pruning to-device transactions: {e}");
        }
        // Hourly: sliding sync connections unused for a week.
        if round % 3600 == 1800
            && let Err(e) = hs
                .storage
                .prune_sliding_connections(now_ms() - crate::sync::sliding::CONNECTION_LIFETIME_MS)
                .await
        {
            tracing::warn!("pruning sliding sync connections: {e}");
        }
        // Hourly: IDs of transactions other servers sent, after a day.
        if round % 3600 == 2700
            && let Err(e) = hs.storage.prune_received_txns(now_ms() - 86_400_000).await
        {
            tracing::warn!("pruning received federation transactions: {e}");
        }
        // Hourly: push actions read and older than PUSH_ACTIONS_KEPT_MS.
        if round % 3600 == 900 {
            prune_push_actions(&hs).await;
        }
        if let Err(e) = crate::rooms::receipts::expire_typing(&hs).await {
            tracing::warn!("expiring typing notices: {e}");
        }
        if let Err(e) = crate::users::presence::sweep(&hs).await {
            tracing::warn!("presence timeouts: {e}");
        }
    }
}
