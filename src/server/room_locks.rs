//! In-process serialization of writes per room.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
};

use crate::error::{Error, Result};

/// In-process serialization of writes per room, so that waiting writers do not each hold a
/// database connection while the advisory lock is busy. Local writes are also bounded:
/// beyond `max_pending_writes` in the process, or `max_pending_writes_per_room` in one
/// room, a write is refused at once with 429 `M_LIMIT_EXCEEDED` rather than queued, so an
/// overloaded server answers quickly and its memory does not grow with the queue.
#[derive(Debug)]
pub struct RoomLocks {
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    pending: Arc<tokio::sync::Semaphore>,
    per_room: usize,
}

/// A room's write lock, held; with the write's place in the process's bound.
pub struct RoomWriteSlot {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// What an overloaded server asks clients to wait before retrying.
const BUSY_RETRY_MS: u64 = 1000;

impl RoomLocks {
    pub fn new(limits: &crate::config::LimitsConfig) -> Self {
        Self {
            locks: Mutex::default(),
            pending: Arc::new(tokio::sync::Semaphore::new(limits.max_pending_writes)),
            per_room: limits.max_pending_writes_per_room,
        }
    }

    fn room_mutex(&self, room_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        if locks.len() > 1024 {
            locks.retain(|_, weak| weak.strong_count() > 0);
        }
        match locks.get(room_id).and_then(Weak::upgrade) {
            Some(m) => m,
            None => {
                let m = Arc::new(tokio::sync::Mutex::new(()));
                locks.insert(room_id.to_owned(), Arc::downgrade(&m));
                m
            }
        }
    }

    /// The room's lock for a local write, or `LimitExceeded` when too many wait already.
    pub async fn lock(&self, room_id: &str) -> Result<RoomWriteSlot> {
        let busy = || Error::LimitExceeded {
            retry_after_ms: BUSY_RETRY_MS,
        };
        let permit = self
            .pending
            .clone()
            .try_acquire_owned()
            .map_err(|_| busy())?;
        let mutex = self.room_mutex(room_id);
        // Every other writer holding or waiting for this room holds a clone of the mutex
        // (so the count is theirs plus this one).
        if Arc::strong_count(&mutex) > self.per_room {
            return Err(busy());
        }
        Ok(RoomWriteSlot {
            _guard: mutex.lock_owned().await,
            _permit: Some(permit),
        })
    }

    /// The room's lock without the bound: for events from other servers, which their
    /// transactions already pace.
    pub async fn lock_unbounded(&self, room_id: &str) -> RoomWriteSlot {
        RoomWriteSlot {
            _guard: self.room_mutex(room_id).lock_owned().await,
            _permit: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::RoomLocks;
    use crate::{config::LimitsConfig, error::Error};

    fn limits(total: usize, per_room: usize) -> LimitsConfig {
        LimitsConfig {
            max_pending_writes: total,
            max_pending_writes_per_room: per_room,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn writes_beyond_the_room_bound_are_refused_not_queued() {
        let locks = std::sync::Arc::new(RoomLocks::new(&limits(100, 2)));
        let held = locks.lock("!a:x").await.expect("first");
        // A second writer waits for the lock: within the bound.
        let waiting = tokio::spawn({
            let locks = locks.clone();
            async move { locks.lock("!a:x").await.map(|_| ()) }
        });
        // Held (the guard), waiting (its future), and this look: three handles.
        while std::sync::Arc::strong_count(&locks.room_mutex("!a:x")) < 3 {
            tokio::task::yield_now().await;
        }
        // A third is refused at once, with a retry hint.
        match locks.lock("!a:x").await {
            Err(Error::LimitExceeded { retry_after_ms }) => assert!(retry_after_ms > 0),
            other => panic!("expected LimitExceeded, got {:?}", other.map(|_| ())),
        }
        // Another room is not affected; the unbounded lock ignores the bound.
        drop(locks.lock("!b:x").await.expect("other room"));
        drop(held);
        waiting
            .await
            .unwrap()
            .expect("the waiting writer gets the lock");
        drop(locks.lock("!a:x").await.expect("free again"));
    }

    #[tokio::test]
    async fn the_process_bound_counts_every_room() {
        let locks = RoomLocks::new(&limits(2, 10));
        let a = locks.lock("!a:x").await.expect("a");
        let b = locks.lock("!b:x").await.expect("b");
        assert!(matches!(
            locks.lock("!c:x").await,
            Err(Error::LimitExceeded { .. })
        ));
        let _unbounded = locks.lock_unbounded("!c:x").await;
        drop((a, b));
        locks.lock("!d:x").await.expect("slots are given back");
    }
}
