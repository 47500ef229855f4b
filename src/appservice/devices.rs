//! What an encrypting bridge needs beside the events (MSC3202, for registrations with
//! `org.matrix.msc3202: true`): whose device lists to fetch again (`device_lists`
//! `changed` and `left`), and, for its users named in the transaction, how many one-time
//! keys each device has left and which fallback keys are unused, so it uploads more in
//! time. Under the unstable field names the bridges read (mautrix, matrix-bot-sdk).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value as JsonValue, json};

use super::Interest;
use crate::{config::Registration, error::Result, server::Homeserver};

/// Device list changes since the appservice's last transaction.
#[derive(Default)]
pub(super) struct DeviceLists {
    pub changed: BTreeSet<String>,
    pub left: BTreeSet<String>,
}

impl DeviceLists {
    pub fn is_empty(&self) -> bool {
        self.changed.is_empty() && self.left.is_empty()
    }
}

/// Users whose devices the appservice should fetch again: its own users whose devices
/// changed in (since, until], others who share a room it cares about and whose devices
/// changed, and those who joined such a room in `events`; and those who left one in
/// `events` and are in none any more.
pub(super) async fn changes(
    hs: &Homeserver,
    registration: &Registration,
    interest: &mut Interest,
    since: i64,
    until: i64,
    events: &[&JsonValue],
) -> Result<DeviceLists> {
    let server = hs.config.server_name().as_str();
    let mut lists = DeviceLists::default();
    for change in hs.storage.device_list_changes_between(since, until).await? {
        let wanted = if registration.is_interested_in_user(&change.user_id, server) {
            true
        } else {
            // A change only the user sees (their user-signing key) is not shared.
            change.shared_pos > since
                && shares_a_room(hs, registration, interest, &change.user_id).await?
        };
        if wanted {
            lists.changed.insert(change.user_id);
        }
    }
    for event in events {
        if event["type"] != "m.room.member" {
            continue;
        }
        let Some(user) = event["state_key"].as_str() else {
            continue;
        };
        if registration.is_interested_in_user(user, server) {
            continue;
        }
        let membership = event["content"]["membership"].as_str();
        if membership == Some("join") {
            lists.changed.insert(user.to_owned());
        } else if matches!(membership, Some("leave" | "ban"))
            && !shares_a_room(hs, registration, interest, user).await?
        {
            lists.left.insert(user.to_owned());
        }
    }
    // Who left and came back within the batch is simply changed.
    for user in &lists.changed {
        lists.left.remove(user);
    }
    Ok(lists)
}

/// Whether the user is joined to a room the appservice cares about.
async fn shares_a_room(
    hs: &Homeserver,
    registration: &Registration,
    interest: &mut Interest,
    user: &str,
) -> Result<bool> {
    for room in hs.storage.rooms_with_membership(user, "join").await? {
        if interest.wants_room(hs, registration, &room).await? {
            return Ok(true);
        }
    }
    Ok(false)
}

/// Adds the MSC3202 fields to a transaction body: the device lists, and the key counts
/// of `users` (the appservice's users the transaction names, and its sender).
pub(super) async fn add_to_body(
    hs: &Homeserver,
    body: &mut JsonValue,
    lists: &DeviceLists,
    users: &BTreeSet<String>,
) -> Result<()> {
    if !lists.is_empty() {
        body["org.matrix.msc3202.device_lists"] = json!({
            "changed": lists.changed,
            "left": lists.left,
        });
    }
    let mut counts: BTreeMap<&str, BTreeMap<String, JsonValue>> = BTreeMap::new();
    let mut fallbacks: BTreeMap<&str, BTreeMap<String, JsonValue>> = BTreeMap::new();
    for user in users {
        for (device, of, unused) in hs.storage.key_counts_of_devices(user).await? {
            // Every device, with zero counts too: a bridge uploads when it sees zero.
            let mut by_algorithm: BTreeMap<String, i64> =
                [("signed_curve25519".to_owned(), 0)].into();
            by_algorithm.extend(of);
            counts
                .entry(user)
                .or_default()
                .insert(device.clone(), json!(by_algorithm));
            fallbacks
                .entry(user)
                .or_default()
                .insert(device, json!(unused));
        }
    }
    if !counts.is_empty() {
        // The MSC's field, and the name Synapse also sends it under.
        body["org.matrix.msc3202.device_one_time_keys_count"] = json!(counts);
        body["org.matrix.msc3202.device_one_time_key_counts"] = json!(counts);
        body["org.matrix.msc3202.device_unused_fallback_key_types"] = json!(fallbacks);
    }
    Ok(())
}

/// The appservice's users a transaction names: senders and member state keys of its
/// events, recipients of its to-device messages, users in its ephemeral events.
pub(super) fn users_named(
    hs: &Homeserver,
    registration: &Registration,
    events: &[&JsonValue],
    ephemeral: &[JsonValue],
    to_device: &[JsonValue],
) -> BTreeSet<String> {
    let server = hs.config.server_name().as_str();
    let mut named = BTreeSet::new();
    let mut add = |v: &JsonValue| {
        if let Some(user) = v.as_str()
            && registration.is_interested_in_user(user, server)
        {
            named.insert(user.to_owned());
        }
    };
    for event in events {
        add(&event["sender"]);
        if event["type"] == "m.room.member" {
            add(&event["state_key"]);
        }
    }
    for message in to_device {
        add(&message["to_user_id"]);
    }
    for event in ephemeral {
        add(&event["sender"]);
        if let Some(typing) = event["content"]["user_ids"].as_array() {
            typing.iter().for_each(&mut add);
        }
        if event["type"] == "m.receipt"
            && let Some(by_event) = event["content"].as_object()
        {
            for receipts in by_event.values().filter_map(JsonValue::as_object) {
                for users in receipts.values().filter_map(JsonValue::as_object) {
                    users.keys().for_each(|u| add(&json!(u)));
                }
            }
        }
    }
    named
}
