//! The running homeserver's shared parts, handed to every domain function.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use crate::{
    config::Config, error::Result, keys::ServerKeys, ratelimit::RateLimiter,
    rooms::persist::RoomLocks, storage::Storage,
};

#[derive(Debug)]
pub struct Homeserver {
    pub config: Config,
    pub storage: Storage,
    pub rate_limiter: RateLimiter,
    pub last_seen: LastSeen,
    pub keys: ServerKeys,
    pub room_locks: RoomLocks,
    pub notifier: crate::sync::notifier::Notifier,
    pub presence: crate::users::presence::PresenceTracker,
    pub outbound: crate::outbound::OutboundPolicy,
    pub media: crate::media::MediaStore,
    /// Bytes of unauthenticated request bodies being read (limits.max_unauthenticated_*).
    pub unauthenticated_body_budget: tokio::sync::Semaphore,
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Member events each device was sent (lazy-loading syncs skip them).
    pub sent_members: crate::sync::sent_members::SentMembers,
}

/// Decides when a device's last-seen time is worth writing: at most once a minute per
/// device per process, so authenticated requests do not each cost a write.
#[derive(Debug, Default)]
pub struct LastSeen {
    written: Mutex<HashMap<(String, String), Instant>>,
}

const LAST_SEEN_INTERVAL: Duration = Duration::from_secs(60);

impl LastSeen {
    pub fn due(&self, user_id: &str, device_id: &str) -> bool {
        let now = Instant::now();
        let mut written = self.written.lock().unwrap_or_else(|e| e.into_inner());
        if written.len() > 100_000 {
            written.retain(|_, at| now.duration_since(*at) < LAST_SEEN_INTERVAL);
        }
        match written.get_mut(&(user_id.to_owned(), device_id.to_owned())) {
            Some(at) if now.duration_since(*at) < LAST_SEEN_INTERVAL => false,
            Some(at) => {
                *at = now;
                true
            }
            None => {
                written.insert((user_id.to_owned(), device_id.to_owned()), now);
                true
            }
        }
    }
}

impl Homeserver {
    /// Assembles the server; loads (or makes, the first time) its signing key.
    pub async fn new(config: Config, storage: Storage) -> Result<Arc<Self>> {
        let rate_limiter = RateLimiter::new(config.rate_limits.clone());
        let keys = ServerKeys::load(&storage).await?;
        let outbound = crate::outbound::OutboundPolicy::new(&config.outbound);
        let media = crate::media::MediaStore::open(&config).await?;
        let notifier = crate::sync::notifier::Notifier::new(storage.wake_bus().clone());
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
