//! Federation: the Server-Server API's logic. `discovery` finds where a server is,
//! `client` sends it signed requests, `keys` fetches, checks and caches other servers'
//! signing keys (and answers as a notary), `auth` verifies the X-Matrix signature of
//! requests from other servers, `sender` delivers the outbound queue, `inbound` takes
//! transactions in. Handlers are in `api::federation`; tables in `storage::server_keys`
//! and `storage::federation`.

use std::sync::Arc;

use crate::{
    error::{Error, Result},
    server::Homeserver,
};

pub mod auth;
pub mod backfill;
pub mod client;
pub mod device_lists;
pub mod directory;
pub mod discovery;
pub mod e2ee;
pub mod inbound;
pub mod invite;
pub mod join;
pub mod keys;
pub mod knock;
pub mod leave;
pub mod legacy;
pub mod media;
pub mod membership;
pub mod query;
pub mod sender;
pub mod spaces;
pub mod third_party_invite;

/// What federation keeps for the life of the server.
pub struct Federation {
    pub client: client::FederationClient,
    pub key_fetches: keys::KeyFetches,
    pub origin_locks: inbound::OriginLocks,
    /// Destinations this process holds the lease of (given back at shutdown).
    pub leased: std::sync::Mutex<std::collections::HashSet<String>>,
    /// One permit per destination being leased or sent to (`sender::MAX_CONCURRENT`).
    pub sending: Arc<tokio::sync::Semaphore>,
}

/// Federation's state, made the first time it is needed (`start` makes it at start-up,
/// so a bad TLS file stops the server there).
pub fn state(hs: &Homeserver) -> Result<Arc<Federation>> {
    hs.extensions
        .get_or_try_init(|| {
            Ok::<_, String>(Federation {
                client: client::FederationClient::new(
                    &hs.config.federation,
                    hs.config.server_name(),
                    hs.outbound.clone(),
                )?,
                key_fetches: Default::default(),
                origin_locks: Default::default(),
                leased: Default::default(),
                sending: Arc::new(tokio::sync::Semaphore::new(sender::MAX_CONCURRENT)),
            })
        })
        .map_err(|e| Error::Internal(format!("federation: {e}")))
}

/// Prepares federation when it is enabled (its HTTP client, TLS roots and resolver) and
/// starts the sender.
pub fn start(hs: &Arc<Homeserver>) -> Result<()> {
    if hs.config.federation_enabled() {
        state(hs)?;
        sender::spawn(hs);
    }
    Ok(())
}

/// At shutdown: gives back the leases of destinations this process was sending to, so
/// another process (or this one restarted) takes them at once.
pub async fn stop(hs: &Homeserver) {
    if !hs.config.federation_enabled() {
        return;
    }
    let Ok(federation) = state(hs) else { return };
    // Sends in flight see the shutdown before their next batch; wait for them a little
    // (a request in flight may take up to its timeout: its lease is given back anyway,
    // and a batch sent twice keeps its transaction ID).
    let grace = std::time::Duration::from_secs(hs.config.limits.shutdown_grace_secs);
    let all = u32::try_from(sender::MAX_CONCURRENT).unwrap_or(u32::MAX);
    let _quiet = tokio::time::timeout(grace, federation.sending.acquire_many(all)).await;
    let leased: Vec<String> = federation
        .leased
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .drain()
        .collect();
    for destination in leased {
        if let Err(e) = hs.storage.release_destination(&destination).await {
            tracing::debug!(%destination, "lease not given back: {e}");
        }
    }
}
