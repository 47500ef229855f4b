//! The running homeserver's shared parts, handed to every domain function.

use std::sync::Arc;

use crate::{config::Config, ratelimit::RateLimiter, storage::Storage};

#[derive(Debug)]
pub struct Homeserver {
    pub config: Config,
    pub storage: Storage,
    pub rate_limiter: RateLimiter,
}

impl Homeserver {
    pub fn new(config: Config, storage: Storage) -> Arc<Self> {
        let rate_limiter = RateLimiter::new(config.rate_limits.clone());
        Arc::new(Self {
            config,
            storage,
            rate_limiter,
        })
    }
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
