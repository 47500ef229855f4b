//! Which member events each device has been sent, so that lazy-loading syncs leave out the
//! ones a client already has (unless the filter asks for `include_redundant_members`).
//!
//! Kept in memory, as Synapse does: a miss only costs a redundant member event. An entry
//! counts as known only once the client syncs from a token at or after the response that
//! carried it, so a retried or lost response never leaves a client without a member.

use std::{collections::HashMap, sync::Mutex};

/// Entries kept across all devices before the cache starts over.
const MAX_ENTRIES: usize = 200_000;

type DeviceKey = (String, String);
/// (room, member) -> (event ID, events position of the response that carried it)
type Sent = HashMap<(String, String), (String, i64)>;

#[derive(Debug, Default)]
pub struct SentMembers {
    devices: Mutex<(HashMap<DeviceKey, Sent>, usize)>,
}

impl SentMembers {
    /// Whether the client syncing from `since` already has `event_id` as `member`'s
    /// membership in `room`.
    pub fn known(
        &self,
        device: (&str, &str),
        room: &str,
        member: &str,
        event_id: &str,
        since: i64,
    ) -> bool {
        let guard = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        guard
            .0
            .get(&(device.0.to_owned(), device.1.to_owned()))
            .and_then(|sent| sent.get(&(room.to_owned(), member.to_owned())))
            .is_some_and(|(id, at)| id == event_id && *at <= since)
    }

    /// Notes member events sent in a response whose `next_batch` is at `at`.
    pub fn mark<'a>(
        &self,
        device: (&str, &str),
        room: &str,
        sent: impl IntoIterator<Item = (&'a str, &'a str)>,
        at: i64,
    ) {
        let mut guard = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        let (devices, total) = &mut *guard;
        if *total > MAX_ENTRIES {
            devices.clear();
            *total = 0;
        }
        let entries = devices
            .entry((device.0.to_owned(), device.1.to_owned()))
            .or_default();
        for (member, event_id) in sent {
            let key = (room.to_owned(), member.to_owned());
            match entries.get_mut(&key) {
                // The earliest response that carried this event decides when it is known.
                Some((id, _)) if id == event_id => {}
                Some(entry) => *entry = (event_id.to_owned(), at),
                None => {
                    entries.insert(key, (event_id.to_owned(), at));
                    *total += 1;
                }
            }
        }
    }

    /// Forgets what a device was sent: its next sync is an initial one.
    pub fn forget(&self, device: (&str, &str)) {
        let mut guard = self.devices.lock().unwrap_or_else(|e| e.into_inner());
        let (devices, total) = &mut *guard;
        if let Some(sent) = devices.remove(&(device.0.to_owned(), device.1.to_owned())) {
            *total -= sent.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_only_once_the_client_synced_past_the_response() {
        let cache = SentMembers::default();
        let device = ("@a:x", "D");
        cache.mark(device, "!r:x", [("@b:x", "$1")], 10);
        assert!(!cache.known(device, "!r:x", "@b:x", "$1", 9));
        assert!(cache.known(device, "!r:x", "@b:x", "$1", 10));
        assert!(!cache.known(device, "!r:x", "@b:x", "$2", 10));
        assert!(!cache.known(("@a:x", "E"), "!r:x", "@b:x", "$1", 10));
        // Sent again later: the earlier response still counts.
        cache.mark(device, "!r:x", [("@b:x", "$1")], 20);
        assert!(cache.known(device, "!r:x", "@b:x", "$1", 10));
        cache.forget(device);
        assert!(!cache.known(device, "!r:x", "@b:x", "$1", 10));
    }
}
