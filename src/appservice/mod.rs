//! Application services, the homeserver's side of the Application Service API: events
//! pushed to each appservice in transactions (`PUT /_matrix/app/v1/transactions/{txnId}`),
//! made from the event stream in order, kept in PostgreSQL until accepted, retried with
//! backoff; the ping (`POST /_matrix/app/v1/ping`); and the user and alias queries for
//! IDs an appservice claims. Who an appservice may act as is `users::appservice`.

use std::{
    collections::HashMap,
    sync::Arc,
    time::{Duration, Instant},
};

use ruma::{RoomAliasId, UserId};
use serde_json::{Value as JsonValue, json};

mod devices;
mod ephemeral;
pub mod keys;

use crate::{
    config::Registration,
    error::{Error, Result},
    rooms::timeline::client_event,
    server::{Homeserver, now_ms},
    storage::{appservices::EphemeralPositions, events::StoredEvent},
    users::{Requester, appservice as registry},
};

/// Events read from the stream per round; a transaction carries those of interest.
const BATCH: i64 = 100;
/// Longest wait for an appservice's answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a process holds the right to send to an appservice without renewing it.
const LEASE_MS: i64 = 60_000;
/// The longest pause between attempts at a failing appservice.
const MAX_BACKOFF: Duration = Duration::from_secs(300);

/// The HTTP client for appservices: their URLs come from the admin's registration
/// files, so they may be on loopback or the local network (the outbound policy for
/// user-chosen URLs does not apply); redirects are not followed.
struct Client(reqwest::Client);

fn client(hs: &Homeserver) -> Result<Arc<Client>> {
    hs.extensions.get_or_try_init(|| {
        reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map(Client)
            .map_err(|e| Error::Internal(format!("appservice client: {e}")))
    })
}

/// Starts one sender per appservice that has a URL.
pub fn spawn_workers(hs: &Arc<Homeserver>) {
    for registration in &hs.config.appservice_registrations {
        if registration.url.is_none() {
            continue;
        }
        let weak = Arc::downgrade(hs);
        let id = registration.id.clone();
        tokio::spawn(async move { worker(weak, id).await });
    }
}

enum Round {
    /// Something was sent or queued: go on at once.
    Progress,
    /// Nothing new: wait for events.
    Idle,
    /// Another process sends to this appservice.
    NotOurs,
}

async fn worker(hs: std::sync::Weak<Homeserver>, id: String) {
    let owner = crate::secrets::random_id(16);
    let mut backoff = Duration::from_secs(1);
    loop {
        let Some(strong) = hs.upgrade() else { return };
        if strong.notifier.is_closing() {
            // Another process (or the next run of this one) takes over at once.
            if let Err(e) = strong.storage.release_appservice_lease(&id, &owner).await {
                tracing::info!(appservice = %id, "releasing the lease: {e}");
            }
            return;
        }
        let Some(registration) = registry::by_id(&strong, &id) else {
            return;
        };
        let mut wake = strong.notifier.subscribe();
        let round = one_round(&strong, registration, &owner).await;
        let pause = match round {
            Ok(Round::Progress) => {
                backoff = Duration::from_secs(1);
                continue;
            }
            Ok(Round::Idle) => {
                backoff = Duration::from_secs(1);
                tokio::select! {
                    _ = wait_for_events(&mut wake, Duration::from_secs(5)) => {}
                    _ = strong.notifier.closed() => {}
                }
                continue;
            }
            Ok(Round::NotOurs) => Duration::from_secs(5),
            Err(e) => {
                tracing::warn!(appservice = %id, "appservice transaction failed, retrying in {}s: {e}", backoff.as_secs());
                let pause = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                pause
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = strong.notifier.closed() => {}
        }
    }
}

/// Waits for news (a wake-up of a room or a user: events, typing, receipts, to-device),
/// or `at_most`.
async fn wait_for_events(rx: &mut tokio::sync::broadcast::Receiver<Arc<str>>, at_most: Duration) {
    let deadline = tokio::time::Instant::now() + at_most;
    let _ = tokio::time::timeout_at(deadline, rx.recv()).await;
}

/// One step: the oldest transaction not yet accepted is sent (in order, again and
/// again until accepted); with none, the next events of interest become one.
async fn one_round(hs: &Homeserver, registration: &Registration, owner: &str) -> Result<Round> {
    let id = registration.id.as_str();
    let position = hs.storage.appservice_position(id).await?;
    if !hs
        .storage
        .lease_appservice(id, owner, now_ms(), LEASE_MS)
        .await?
    {
        return Ok(Round::NotOurs);
    }
    if let Some((txn_id, body)) = hs.storage.oldest_appservice_txn(id).await? {
        send_transaction(hs, registration, txn_id, &body).await?;
        hs.storage.delete_appservice_txn(id, txn_id).await?;
        return Ok(Round::Progress);
    }
    let now = hs.storage.positions().await?;
    let events = hs.storage.events_after(position, BATCH).await?;
    let end = events.last().and_then(|e| e.stream_pos).unwrap_or(position);
    let ephemeral_now = EphemeralPositions {
        receipts: now.receipts,
        typing: now.typing,
        presence: now.presence,
        to_device: now.to_device,
        device_lists: Some(now.device_lists),
    };
    // The ephemeral streams and device lists, when the registration asks for them; the
    // first time, from now on.
    let ephemeral_since = if registration.receive_ephemeral || registration.device_info {
        Some(
            hs.storage
                .appservice_ephemeral_position(id)
                .await?
                .unwrap_or(ephemeral_now),
        )
    } else {
        None
    };
    // Wanting device lists only, the other streams stay where they are: their news alone
    // is no reason for a round.
    let ephemeral_now = match &ephemeral_since {
        Some(since) if !registration.receive_ephemeral => EphemeralPositions {
            device_lists: ephemeral_now.device_lists,
            ..*since
        },
        _ => ephemeral_now,
    };
    let ephemeral_moved = ephemeral_since.is_some_and(|since| since != ephemeral_now);
    if end == position && !ephemeral_moved {
        return Ok(Round::Idle);
    }
    let mut interest = Interest::default();
    let mut chosen = Vec::new();
    let mut chosen_pdus = Vec::new();
    for event in &events {
        if interest.wants(hs, registration, event).await? {
            chosen.push(client_event(event, &event.room_id));
            chosen_pdus.push(&event.pdu);
        }
    }
    let extra = match &ephemeral_since {
        Some(since) if registration.receive_ephemeral => {
            ephemeral::collect(hs, registration, &mut interest, since, &ephemeral_now).await?
        }
        _ => ephemeral::Ephemeral::default(),
    };
    let device_lists = match &ephemeral_since {
        Some(since) if registration.device_info => {
            devices::changes(
                hs,
                registration,
                &mut interest,
                since.device_lists.unwrap_or(now.device_lists),
                now.device_lists,
                &chosen_pdus,
            )
            .await?
        }
        _ => devices::DeviceLists::default(),
    };
    let worth_sending = !chosen.is_empty()
        || !extra.events.is_empty()
        || !extra.to_device.is_empty()
        || !device_lists.is_empty();
    let mut body = json!({ "events": chosen });
    if !extra.events.is_empty() {
        // The spec's field, and MSC2409's name for it, which older bridges read.
        body["ephemeral"] = json!(extra.events);
        body["de.sorunome.msc2409.ephemeral"] = json!(extra.events);
    }
    if !extra.to_device.is_empty() {
        body["de.sorunome.msc2409.to_device"] = json!(extra.to_device);
    }
    if registration.device_info && worth_sending {
        let mut users = devices::users_named(
            hs,
            registration,
            &chosen_pdus,
            &extra.events,
            &extra.to_device,
        );
        users.insert(registry::sender(hs, registration)?.to_string());
        devices::add_to_body(hs, &mut body, &device_lists, &users).await?;
    }
    let delivered = extra.delivered;
    hs.storage
        .queue_appservice_txn(
            id,
            end,
            ephemeral_since.map(|_| &ephemeral_now),
            &delivered,
            worth_sending.then_some(&body),
            now_ms(),
        )
        .await?;
    Ok(Round::Progress)
}

/// What makes an event the appservice's business, with the rooms looked up once per
/// batch.
#[derive(Default)]
struct Interest {
    rooms: HashMap<String, bool>,
}

impl Interest {
    async fn wants(
        &mut self,
        hs: &Homeserver,
        registration: &Registration,
        event: &StoredEvent,
    ) -> Result<bool> {
        let server = hs.config.server_name().as_str();
        let user = |v: &JsonValue| {
            v.as_str()
                .is_some_and(|u| registration.is_interested_in_user(u, server))
        };
        if user(&event.pdu["sender"])
            || (event.pdu["type"] == "m.room.member" && user(&event.pdu["state_key"]))
        {
            return Ok(true);
        }
        self.wants_room(hs, registration, &event.room_id).await
    }

    /// Whether the room is its business: its ID or an alias in its namespaces, or one of
    /// its users a member.
    async fn wants_room(
        &mut self,
        hs: &Homeserver,
        registration: &Registration,
        room: &str,
    ) -> Result<bool> {
        if let Some(known) = self.rooms.get(room) {
            return Ok(*known);
        }
        let server = hs.config.server_name().as_str();
        let wanted = registration.is_interested_in_room(room)
            || hs
                .storage
                .local_members(room, server)
                .await?
                .iter()
                .any(|m| registration.is_interested_in_user(m, server))
            || hs
                .storage
                .room_aliases(room)
                .await?
                .iter()
                .any(|a| registration.is_interested_in_alias(a));
        self.rooms.insert(room.to_owned(), wanted);
        Ok(wanted)
    }
}

async fn send_transaction(
    hs: &Homeserver,
    registration: &Registration,
    txn_id: i64,
    body: &JsonValue,
) -> Result<()> {
    let url = registration
        .url
        .as_deref()
        .ok_or_else(|| Error::Internal("the appservice has no URL".into()))?;
    let response = client(hs)?
        .0
        .put(format!("{url}/_matrix/app/v1/transactions/{txn_id}"))
        .bearer_auth(&registration.hs_token)
        .json(body)
        .send()
        .await
        .map_err(|e| Error::Internal(format!("{url}: {e}")))?;
    if !response.status().is_success() {
        return Err(Error::Internal(format!(
            "{url} answered {} to transaction {txn_id}",
            response.status()
        )));
    }
    Ok(())
}

/// `POST /_matrix/client/v1/appservice/{appserviceId}/ping`: the appservice asks us to
/// ping it, to check both directions work. Only that appservice may ask.
pub async fn ping(
    hs: &Homeserver,
    requester: &Requester,
    appservice_id: &str,
    transaction_id: Option<&str>,
) -> Result<Duration> {
    let registration = registry::by_id(hs, appservice_id)
        .filter(|r| requester.appservice.as_deref() == Some(r.id.as_str()))
        .ok_or_else(|| {
            Error::Forbidden("only the application service itself may ask for its ping".into())
        })?;
    let url = registration
        .url
        .as_deref()
        .ok_or_else(|| Error::AppserviceFailed {
            status: 400,
            errcode: "M_URL_NOT_SET",
            message: "the application service has no URL".into(),
        })?;
    let mut body = json!({});
    if let Some(txn) = transaction_id {
        body["transaction_id"] = txn.into();
    }
    let started = Instant::now();
    let answer = client(hs)?
        .0
        .post(format!("{url}/_matrix/app/v1/ping"))
        .bearer_auth(&registration.hs_token)
        .json(&body)
        .send()
        .await;
    let response = match answer {
        Ok(r) => r,
        Err(e) if e.is_timeout() => {
            return Err(Error::AppserviceFailed {
                status: 504,
                errcode: "M_CONNECTION_TIMEOUT",
                message: "the application service did not answer in time".into(),
            });
        }
        Err(e) => {
            return Err(Error::AppserviceFailed {
                status: 502,
                errcode: "M_CONNECTION_FAILED",
                message: format!("the application service could not be reached: {e}"),
            });
        }
    };
    let elapsed = started.elapsed();
    if !response.status().is_success() {
        let status = response.status().as_u16();
        let text: String = response
            .text()
            .await
            .unwrap_or_default()
            .chars()
            .take(1000)
            .collect();
        return Err(Error::AppserviceFailed {
            status: 502,
            errcode: "M_BAD_STATUS",
            message: format!("the application service answered {status}: {text}"),
        });
    }
    Ok(elapsed)
}

/// Asks the appservice that claims `user_id` whether the user exists (it may create it
/// then). False when no appservice claims it or the answer is no.
pub async fn query_user(hs: &Homeserver, user_id: &UserId) -> bool {
    let Some(registration) = registry::claimed_user(hs, user_id.as_str()) else {
        return false;
    };
    query(
        hs,
        registration,
        &format!("users/{}", encode(user_id.as_str())),
    )
    .await
}

/// Asks the appservice that claims `alias` whether it exists (it may create the room and
/// the alias then). False when no appservice claims it or the answer is no.
pub async fn query_alias(hs: &Homeserver, alias: &RoomAliasId) -> bool {
    let Some(registration) = hs
        .config
        .appservice_registrations
        .iter()
        .find(|r| r.is_interested_in_alias(alias.as_str()))
    else {
        return false;
    };
    query(
        hs,
        registration,
        &format!("rooms/{}", encode(alias.as_str())),
    )
    .await
}

async fn query(hs: &Homeserver, registration: &Registration, path: &str) -> bool {
    let (Some(url), Ok(client)) = (registration.url.as_deref(), client(hs)) else {
        return false;
    };
    match client
        .0
        .get(format!("{url}/_matrix/app/v1/{path}"))
        .bearer_auth(&registration.hs_token)
        .send()
        .await
    {
        Ok(response) => response.status().is_success(),
        Err(e) => {
            tracing::info!(appservice = %registration.id, "query {path}: {e}");
            false
        }
    }
}

/// Largest answer read from an appservice's lookup endpoints.
const MAX_ANSWER_BYTES: usize = 1024 * 1024;

/// `GET {url}/_matrix/app/v1/{path}` with the appservice's `hs_token`; its JSON answer
/// (third-party lookups).
pub(crate) async fn get_json(
    hs: &Homeserver,
    registration: &Registration,
    path: &str,
) -> Result<JsonValue> {
    let url = registration
        .url
        .as_deref()
        .ok_or_else(|| Error::NotFound("the application service has no URL".into()))?;
    let response = client(hs)?
        .0
        .get(format!("{url}/_matrix/app/v1/{path}"))
        .bearer_auth(&registration.hs_token)
        .send()
        .await
        .map_err(|e| Error::RemoteUnavailable(format!("{}: {e}", registration.id)))?;
    if !response.status().is_success() {
        return Err(Error::RemoteUnavailable(format!(
            "{} answered {}",
            registration.id,
            response.status()
        )));
    }
    read_json_capped(registration, response).await
}

/// An appservice's JSON answer, read up to `MAX_ANSWER_BYTES`.
async fn read_json_capped(
    registration: &Registration,
    mut response: reqwest::Response,
) -> Result<JsonValue> {
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| Error::RemoteUnavailable(format!("{}: {e}", registration.id)))?
    {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(Error::RemoteUnavailable(format!(
                "{}: the answer is too large",
                registration.id
            )));
        }
        body.extend_from_slice(&chunk);
    }
    serde_json::from_slice(&body)
        .map_err(|e| Error::RemoteUnavailable(format!("{}: not JSON: {e}", registration.id)))
}

fn encode(id: &str) -> String {
    url::form_urlencoded::byte_serialize(id.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// What an admin sees of the loaded appservices: ID, URL, transactions waiting, place
/// in the event stream.
pub async fn status(hs: &Homeserver, requester: &Requester) -> Result<Vec<JsonValue>> {
    if !requester.is_admin {
        return Err(Error::Forbidden("you are not a server admin".into()));
    }
    let mut out = Vec::new();
    for r in &hs.config.appservice_registrations {
        let (waiting, position) = hs.storage.appservice_queue(&r.id).await?;
        out.push(json!({
            "id": r.id,
            "url": r.url,
            "sender": registry::sender(hs, r)?,
            "file": r.file.display().to_string(),
            "transactions_waiting": waiting,
            "events_position": position,
        }));
    }
    Ok(out)
}
