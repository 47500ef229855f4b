//! Per-process memory that saves database writes: when a device's last-seen time or a
//! user's presence was last written. Losing it costs a redundant write, nothing more.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use super::now_ms;

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

/// Per-process memory of recent presence writes, so syncs and activity do not each cost a
/// database write.
#[derive(Debug, Default)]
pub struct PresenceTracker {
    /// User -> when activity was last written.
    bumped: Mutex<HashMap<String, Instant>>,
    /// User -> (state a sync set, time it promised to sync until).
    syncing: Mutex<HashMap<String, (&'static str, i64)>>,
    /// User -> when their presence was last sent to other servers.
    federated: Mutex<HashMap<String, Instant>>,
}

/// Whether `every` has passed since `user`'s time in `times`; if so, their time becomes now.
fn due_every(times: &Mutex<HashMap<String, Instant>>, user: &str, every: Duration) -> bool {
    let now = Instant::now();
    let mut times = times.lock().unwrap_or_else(|e| e.into_inner());
    if times.len() > 100_000 {
        times.retain(|_, at| now.duration_since(*at) < every);
    }
    match times.get(user) {
        Some(at) if now.duration_since(*at) < every => false,
        _ => {
            times.insert(user.to_owned(), now);
            true
        }
    }
}

impl PresenceTracker {
    pub(crate) fn bump_due(&self, user: &str, every: Duration) -> bool {
        due_every(&self.bumped, user, every)
    }

    /// Whether a sync setting `state` until `until` needs a write: not when this process
    /// already wrote the same state with a promise at most `slack` shorter.
    pub(crate) fn sync_due(&self, user: &str, state: &'static str, until: i64, slack: i64) -> bool {
        let mut syncing = self.syncing.lock().unwrap_or_else(|e| e.into_inner());
        if syncing.len() > 100_000 {
            let now = now_ms();
            syncing.retain(|_, (_, u)| *u > now);
        }
        match syncing.get(user) {
            Some((s, u)) if *s == state && *u >= until - slack => false,
            _ => {
                syncing.insert(user.to_owned(), (state, until));
                true
            }
        }
    }

    /// Whether a user's unchanged presence is due to be sent to other servers again
    /// (`every` since the last time); records now as the last time when it is.
    pub(crate) fn federation_due(&self, user: &str, every: Duration) -> bool {
        due_every(&self.federated, user, every)
    }

    pub(crate) fn forget(&self, user: &str) {
        self.syncing
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(user);
        self.bumped
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(user);
    }
}
