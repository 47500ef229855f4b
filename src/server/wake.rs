//! Wake-ups for long polls (sync, sliding sync) and queue workers (push). Every write NOTIFYs `axon_wake` with `r:<room>` or
//! `u:<user>` (storage::streams); each process LISTENs and fans the keys out in-process, so
//! an event sent through one axon process wakes a sync held by another. Event commits
//! publish on the process's bus themselves (storage::streams::WakeBus); the listener skips
//! those.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use tokio::sync::broadcast;

use super::Homeserver;
use crate::storage::streams::WakeBus;

/// Said to every waiter when notifications may have been missed (listener reconnecting,
/// or a waiter too slow): everyone checks again.
pub const WAKE_ALL: &str = "*";

/// The waiters' side of the process's wake-up bus.
#[derive(Debug)]
pub struct Notifier {
    bus: WakeBus,
    /// True once the process is shutting down: long polls answer at once.
    closing: tokio::sync::watch::Sender<bool>,
}

impl Notifier {
    pub fn new(bus: WakeBus) -> Self {
        Self {
            bus,
            closing: tokio::sync::watch::Sender::new(false),
        }
    }

    /// Shutdown has begun: every waiting long poll (and every later one) returns now, so
    /// clients get their answer instead of a cut connection.
    pub fn shut_down(&self) {
        self.closing.send_replace(true);
    }

    /// Resolves once shutdown has begun.
    pub async fn closed(&self) {
        let mut closing = self.closing.subscribe();
        let _ = closing.wait_for(|c| *c).await;
    }

    /// Whether shutdown has begun.
    pub fn is_closing(&self) -> bool {
        *self.closing.borrow()
    }

    /// Waits until a key in `interest` (or WAKE_ALL) arrives, or `deadline` passes, or the
    /// process shuts down. Returns whether there is something to look at.
    pub async fn wait_for(
        &self,
        rx: &mut broadcast::Receiver<Arc<str>>,
        interest: &std::collections::HashSet<String>,
        deadline: tokio::time::Instant,
    ) -> bool {
        let mut closing = self.closing.subscribe();
        if *closing.borrow_and_update() {
            return false;
        }
        tokio::select! {
            woken = wait_for(rx, interest, deadline) => woken,
            _ = async { closing.wait_for(|c| *c).await.map(|_| ()) } => false,
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<str>> {
        self.bus.subscribe()
    }

    fn publish(&self, key: &str) {
        self.bus.publish(key);
    }

    /// A NOTIFY from the listener: published unless this process published it already.
    fn publish_notify(&self, payload: &str) {
        if let Some(key) = self.bus.key_of_notify(payload) {
            self.bus.publish(key);
        }
    }
}

/// Waits until a key in `interest` (or WAKE_ALL) arrives, or `deadline` passes. Returns
/// whether it woke for a key.
pub async fn wait_for(
    rx: &mut broadcast::Receiver<Arc<str>>,
    interest: &std::collections::HashSet<String>,
    deadline: tokio::time::Instant,
) -> bool {
    loop {
        match tokio::time::timeout_at(deadline, rx.recv()).await {
            Err(_) => return false,
            Ok(Ok(key)) => {
                if &*key == WAKE_ALL || interest.contains(&*key) {
                    return true;
                }
            }
            // Missed some: they may have been ours.
            Ok(Err(broadcast::error::RecvError::Lagged(_))) => return true,
            Ok(Err(broadcast::error::RecvError::Closed)) => return false,
        }
    }
}

/// Starts the process's LISTEN loop; it stops once the homeserver is dropped.
pub fn spawn_listener(hs: &Arc<Homeserver>) {
    tokio::spawn(listen_loop(Arc::downgrade(hs)));
}

async fn listen_loop(hs: Weak<Homeserver>) {
    loop {
        let listener = match hs.upgrade() {
            Some(hs) => hs.storage.wake_listener().await,
            None => return,
        };
        let mut listener = match listener {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!("cannot LISTEN for wake-ups, retrying: {e}");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        // Whatever was sent while not listening is unknown.
        if let Some(hs) = hs.upgrade() {
            hs.notifier.publish(WAKE_ALL);
        }
        loop {
            match tokio::time::timeout(Duration::from_secs(5), listener.recv()).await {
                Err(_) => {
                    if hs.strong_count() == 0 {
                        return;
                    }
                }
                Ok(Ok(n)) => match hs.upgrade() {
                    Some(hs) => hs.notifier.publish_notify(n.payload()),
                    None => return,
                },
                Ok(Err(e)) => {
                    let stopping = hs.upgrade().is_none_or(|hs| hs.notifier.is_closing());
                    if stopping {
                        // The database is being stopped with the process.
                        return;
                    }
                    tracing::warn!("wake-up listener failed, reconnecting: {e}");
                    break;
                }
            }
        }
    }
}
