//! The running homeserver's shared parts, handed to every domain function: config,
//! storage, signing keys, room write locks, wake-ups, the media object store and
//! per-process caches. It sits below every domain and imports none of them.

use std::sync::Arc;

pub mod caches;
pub mod extensions;
pub mod keys;
pub mod media_store;
pub mod room_locks;
pub mod sent_members;
pub mod wake;

use self::{
    caches::{LastSeen, PresenceTracker},
    keys::ServerKeys,
    media_store::MediaStore,
    room_locks::RoomLocks,
    sent_members::SentMembers,
    wake::Notifier,
};
use crate::{config::Config, error::Result, ratelimit::RateLimiter, storage::Storage};

#[derive(Debug)]
pub struct Homeserver {
    pub config: Config,
    pub storage: Storage,
    pub rate_limiter: RateLimiter,
    pub last_seen: LastSeen,
    pub keys: ServerKeys,
    pub room_locks: RoomLocks,
    pub notifier: Notifier,
    pub presence: PresenceTracker,
    pub outbound: crate::outbound::OutboundPolicy,
    pub media: MediaStore,
    /// Bytes of unauthenticated request bodies being read (limits.max_unauthenticated_*).
    pub unauthenticated_body_budget: tokio::sync::Semaphore,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Member events each device was sent (lazy-loading syncs skip them).
    pub sent_members: SentMembers,
    /// Domain state by type (federation's clients and caches).
    pub extensions: extensions::Extensions,
}

impl Homeserver {
    /// Assembles the server; loads (or makes, the first time) its signing key.
    pub async fn new(config: Config, storage: Storage) -> Result<Arc<Self>> {
        let rate_limiter = RateLimiter::new(config.rate_limits.clone());
        let keys = ServerKeys::load(&storage).await?;
        let outbound = crate::outbound::OutboundPolicy::new(&config.outbound);
        let media = MediaStore::open(&config).await?;
        let notifier = Notifier::new(storage.wake_bus().clone());
        let room_locks = RoomLocks::new(&config.limits);
        let unauthenticated_body_budget =
            tokio::sync::Semaphore::new(config.limits.max_unauthenticated_bytes_in_flight);
        Ok(Arc::new(Self {
            config,
            storage,
            rate_limiter,
            last_seen: LastSeen::default(),
            keys,
            room_locks,
            notifier,
            presence: Default::default(),
            outbound,
            media,
            unauthenticated_body_budget,
            metrics: Default::default(),
            sent_members: Default::default(),
            extensions: Default::default(),
        }))
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
