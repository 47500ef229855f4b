//! In-process token buckets, keyed by action and by client (IP or user).

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use crate::config::{RateLimit, RateLimitsConfig};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Login,
    FailedLogin,
    Registration,
    Request,
    /// Validation mails, per address: a few, then one a minute.
    ThreepidMail,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Bucket count above which idle (refilled) buckets are swept.
const SWEEP_THRESHOLD: usize = 10_000;

#[derive(Debug)]
pub struct RateLimiter {
    config: RateLimitsConfig,
    buckets: Mutex<HashMap<(Action, String), Bucket>>,
}

impl RateLimiter {
    pub fn new(config: RateLimitsConfig) -> Self {
        Self {
            config,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    fn limit(&self, action: Action) -> RateLimit {
        match action {
            Action::Login => self.config.login,
            Action::FailedLogin => self.config.failed_login,
            Action::Registration => self.config.registration,
            Action::Request => self.config.requests,
            Action::ThreepidMail => RateLimit {
                per_second: 1.0 / 60.0,
                burst: 5,
            },
        }
    }

    /// Takes one token for `key`; `M_LIMIT_EXCEEDED` when the bucket is empty.
    pub fn check(&self, action: Action, key: &str) -> crate::error::Result<()> {
        self.take(action, key, true).map_err(limit_exceeded)
    }

    /// Whether a token is available, without taking it (e.g. before a password check whose
    /// failure is what gets counted).
    pub fn peek(&self, action: Action, key: &str) -> crate::error::Result<()> {
        self.take(action, key, false).map_err(limit_exceeded)
    }

    /// Counts a failure against `key`; an empty bucket is reported by the next `peek`.
    pub fn record(&self, action: Action, key: &str) {
        let _ = self.take(action, key, true);
    }

    fn take(&self, action: Action, key: &str, consume: bool) -> Result<(), Duration> {
        if !self.config.enabled {
            return Ok(());
        }
        let limit = self.limit(action);
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() > SWEEP_THRESHOLD {
            buckets.retain(|(a, _), b| {
                let l = self.limit(*a);
                b.tokens + now.duration_since(b.updated).as_secs_f64() * l.per_second
                    < f64::from(l.burst)
            });
        }
        let bucket = buckets.entry((action, key.to_owned())).or_insert(Bucket {
            tokens: f64::from(limit.burst),
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * limit.per_second).min(f64::from(limit.burst));
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            if consume {
                bucket.tokens -= 1.0;
            }
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (1.0 - bucket.tokens) / limit.per_second,
            ))
        }
    }
}

fn limit_exceeded(retry: Duration) -> crate::error::Error {
    crate::error::Error::LimitExceeded {
        retry_after_ms: retry.as_millis().max(1) as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refuse() {
        let config = RateLimitsConfig {
            login: RateLimit {
                per_second: 0.5,
                burst: 2,
            },
            ..Default::default()
        };
        let limiter = RateLimiter::new(config);
        assert!(limiter.check(Action::Login, "a").is_ok());
        assert!(limiter.check(Action::Login, "a").is_ok());
        let crate::error::Error::LimitExceeded { retry_after_ms } =
            limiter.check(Action::Login, "a").unwrap_err()
        else {
            panic!("expected LimitExceeded")
        };
        assert!(
            retry_after_ms > 1000 && retry_after_ms <= 2000,
            "{retry_after_ms}"
        );
        // other keys are independent
        assert!(limiter.check(Action::Login, "b").is_ok());
        // peek does not consume
        assert!(limiter.peek(Action::Login, "b").is_ok());
        assert!(limiter.check(Action::Login, "b").is_ok());
        assert!(limiter.check(Action::Login, "b").is_err());
    }

    #[test]
    fn disabled_never_limits() {
        let config = RateLimitsConfig {
            enabled: false,
            ..Default::default()
        };
        let limiter = RateLimiter::new(config);
        for _ in 0..100 {
            assert!(limiter.check(Action::Registration, "x").is_ok());
        }
    }
}
