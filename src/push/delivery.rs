//! Delivery to push gateways (`POST /_matrix/push/v1/notify`, Push Gateway API). Each
//! process runs one worker: it leases due rows of `push_queue` (so no two processes send
//! the same one), posts them, deletes what was delivered, and reschedules failures with
//! exponential backoff. Rows survive restarts; gateways that reject a pushkey get that
//! pusher removed. URLs go through the outbound policy (no private addresses unless
//! allowed).

use std::{
    collections::HashSet,
    sync::{Arc, Weak},
    time::Duration,
};

use serde_json::{Value as JsonValue, json};

use crate::{
    error::Result,
    server::{Homeserver, now_ms},
    storage::push::{PUSH_WAKE_KEY, QueuedPush},
};

/// How long a leased row stays with the process that leased it.
const LEASE_MS: i64 = 60_000;
const BATCH: i64 = 50;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
const MAX_BACKOFF_MS: i64 = 3_600_000;
/// A notification nobody could deliver for this long is dropped.
const GIVE_UP_MS: i64 = 24 * 3_600_000;

pub fn spawn_worker(hs: &Arc<Homeserver>) {
    tokio::spawn(worker(Arc::downgrade(hs)));
}

async fn worker(weak: Weak<Homeserver>) {
    let (client, mut wake) = match weak.upgrade() {
        Some(hs) => match hs.outbound.client(REQUEST_TIMEOUT) {
            Ok(c) => (c, hs.notifier.subscribe()),
            Err(e) => {
                tracing::error!("push delivery disabled: no HTTP client: {e}");
                return;
            }
        },
        None => return,
    };
    let interest: HashSet<String> = [PUSH_WAKE_KEY.to_owned()].into();
    loop {
        {
            let Some(hs) = weak.upgrade() else { return };
            // While the database is away (the supervisor says so) or the process stops,
            // there is nothing to read: wait instead of logging a failure every second.
            let database_usable = !hs.storage.health().is_down() && !hs.notifier.is_closing();
            if database_usable && let Err(e) = drain(&hs, &client).await {
                tracing::warn!("push delivery: {e}");
            }
            if database_usable && let Err(e) = super::badges::send_pending(&hs, &client).await {
                tracing::warn!("push badges: {e}");
            }
        }
        let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
        crate::server::wake::wait_for(&mut wake, &interest, deadline).await;
    }
}

/// Sends everything due now.
async fn drain(hs: &Homeserver, client: &reqwest::Client) -> Result<()> {
    loop {
        let now = now_ms();
        let batch = hs.storage.lease_pushes(now, now + LEASE_MS, BATCH).await?;
        if batch.is_empty() {
            return Ok(());
        }
        for item in batch {
            deliver(hs, client, &item).await?;
        }
    }
}

enum Outcome {
    Done,
    Retry,
}

async fn deliver(hs: &Homeserver, client: &reqwest::Client, item: &QueuedPush) -> Result<()> {
    let outcome = attempt(hs, client, item).await?;
    match outcome {
        Outcome::Done => hs.storage.finish_push(item.id).await?,
        Outcome::Retry if now_ms() - item.created_ts > GIVE_UP_MS => {
            tracing::warn!(user = %item.user_id, "push undeliverable for a day, dropped");
            hs.storage.finish_push(item.id).await?
        }
        Outcome::Retry => {
            let backoff = 1000i64
                .saturating_mul(1i64 << item.attempts.clamp(0, 20))
                .min(MAX_BACKOFF_MS);
            hs.storage.retry_push(item.id, now_ms() + backoff).await?
        }
    }
    Ok(())
}

async fn attempt(hs: &Homeserver, client: &reqwest::Client, item: &QueuedPush) -> Result<Outcome> {
    let Some(pusher) = &item.pusher else {
        return Ok(Outcome::Done); // the pusher is gone
    };
    let Some(url) = pusher["data"]["url"]
        .as_str()
        .and_then(|u| reqwest::Url::parse(u).ok())
    else {
        return Ok(Outcome::Done);
    };
    if let Err(why) = hs.outbound.check_url_resolved(&url).await {
        tracing::warn!(%url, "push gateway refused by the outbound policy: {why}");
        return Ok(Outcome::Done);
    }
    let Some(body) = notification(hs, item, pusher).await? else {
        return Ok(Outcome::Done); // the event is gone
    };
    let response = match client.post(url.clone()).json(&body).send().await {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(%url, "push gateway unreachable, will retry: {e}");
            return Ok(Outcome::Retry);
        }
    };
    let status = response.status();
    if status.is_success() {
        let answer: JsonValue = response.json().await.unwrap_or_default();
        let rejected: Vec<String> = answer["rejected"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|k| k.as_str().map(str::to_owned))
            .collect();
        if !rejected.is_empty() {
            hs.storage
                .delete_rejected_pushkeys(&item.user_id, &item.app_id, &rejected)
                .await?;
        }
        Ok(Outcome::Done)
    } else if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
        tracing::warn!(%url, %status, "push gateway refused a notification; dropped");
        Ok(Outcome::Done)
    } else {
        tracing::info!(%url, %status, "push gateway failed, will retry");
        Ok(Outcome::Retry)
    }
}

/// The Push Gateway API body for one queued notification; None if its event is gone.
async fn notification(
    hs: &Homeserver,
    item: &QueuedPush,
    pusher: &JsonValue,
) -> Result<Option<JsonValue>> {
    let Some(event) = hs.storage.events_by_nid(&[item.event_nid]).await?.pop() else {
        return Ok(None);
    };
    let pdu = &event.pdu;
    let mut tweaks = serde_json::Map::new();
    for action in item.actions.as_array().into_iter().flatten() {
        if let Some(tweak) = action["set_tweak"].as_str() {
            let value = match (tweak, action.get("value")) {
                ("highlight", None) => json!(true),
                (_, Some(v)) => v.clone(),
                (_, None) => continue,
            };
            tweaks.insert(tweak.to_owned(), value);
        }
    }
    let highlight = tweaks.get("highlight") == Some(&json!(true));
    let mut data = pusher["data"].clone();
    if let Some(d) = data.as_object_mut() {
        d.remove("url");
    }
    let event_type = pdu["type"].as_str().unwrap_or_default();
    let important = matches!(
        event_type,
        "m.room.message" | "m.room.encrypted" | "m.call.invite"
    );
    let mut n = json!({
        // `id` is the older name of `event_id`, which Synapse still sends.
        "id": event.event_id,
        "event_id": event.event_id,
        "room_id": event.room_id,
        "prio": if highlight || important { "high" } else { "low" },
        "counts": { "unread": hs.storage.total_unread(&item.user_id).await? },
        "devices": [{
            "app_id": item.app_id,
            "pushkey": item.pushkey,
            // In seconds, as Synapse sends it.
            "pushkey_ts": item.pusher_ts.unwrap_or_default() / 1000,
            "data": data,
            "tweaks": tweaks,
        }],
    });
    if pusher["data"]["format"] != "event_id_only" {
        let sender = pdu["sender"].as_str().unwrap_or_default();
        n["type"] = pdu["type"].clone();
        n["sender"] = pdu["sender"].clone();
        n["content"] = pdu["content"].clone();
        {
            let room_id = event.room_id.as_str();
            let state = &hs.storage;
            let member = state
                .current_state_content(room_id, "m.room.member", sender)
                .await?;
            if let Some(name) = member.as_ref().and_then(|m| m["displayname"].as_str()) {
                n["sender_display_name"] = json!(name);
            }
            let room_name = state
                .current_state_content(room_id, "m.room.name", "")
                .await?;
            if let Some(name) = room_name.as_ref().and_then(|m| m["name"].as_str()) {
                n["room_name"] = json!(name);
            }
            let alias = state
                .current_state_content(room_id, "m.room.canonical_alias", "")
                .await?;
            if let Some(alias) = alias.as_ref().and_then(|m| m["alias"].as_str()) {
                n["room_alias"] = json!(alias);
                // A room without a name is called by its alias (as Synapse names it).
                if n.get("room_name").is_none() {
                    n["room_name"] = json!(alias);
                }
            }
        }
        if let Some(target) = pdu.get("state_key").and_then(|k| k.as_str()) {
            n["user_is_target"] = json!(target == item.user_id);
        }
        if event_type == "m.room.member"
            && let Some(membership) = pdu["content"]["membership"].as_str()
        {
            n["membership"] = json!(membership);
        }
    }
    Ok(Some(json!({ "notification": n })))
}
