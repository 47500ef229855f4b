//! Inbound transactions (`PUT /send/{txnId}`): at most 50 PDUs and 100 EDUs; answered
//! once per origin and transaction ID (a retry gets the first answer); each PDU through
//! `rooms::receive` with its servers' keys, after fetching prev events this server lacks
//! (`get_missing_events`, bounded); one room's PDUs in order, rooms in parallel. EDUs of
//! kinds not built yet are accepted and dropped.

use std::collections::{BTreeMap, HashMap};

use futures_util::future::join_all;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedEventId, OwnedRoomId, RoomId, ServerName, UInt,
    api::federation::{
        event::{get_event, get_missing_events, get_room_state, get_room_state_ids},
        transactions::edu::Edu,
    },
    serde::Raw,
    to_device::DeviceIdOrAllDevices,
};
use serde_json::value::RawValue as RawJsonValue;

use crate::{
    error::{Error, Result},
    rooms::{
        context::{RoomContext, room_context},
        receive::{
            Received, event_id_of, receive_pdu, receive_pdu_with_prev_states, store_outliers,
        },
        remote_reads::check_server_acl,
    },
    server::{Homeserver, now_ms},
    storage::state::StateNids,
};

pub const MAX_PDUS: usize = 50;
pub const MAX_EDUS: usize = 100;
/// Events fetched with `get_missing_events` for one PDU.
// Sent explicitly (ruma leaves out the spec's default of 10, which sytest and some
// servers expect to see).
const MISSING_EVENTS_LIMIT: u32 = 20;

pub type PduResults = BTreeMap<OwnedEventId, std::result::Result<(), String>>;

/// One locked section per origin: a server sends one transaction at a time, and a retry
/// that races its first attempt must not process it twice.
#[derive(Default)]
pub struct OriginLocks(tokio::sync::Mutex<HashMap<String, std::sync::Arc<tokio::sync::Mutex<()>>>>);

/// Handles a transaction from `origin` (already verified by its X-Matrix signature).
pub async fn receive_transaction(
    hs: &Homeserver,
    origin: &ServerName,
    txn_id: &str,
    pdus: &[Box<RawJsonValue>],
    edus: &[Raw<Edu>],
) -> Result<PduResults> {
    if pdus.len() > MAX_PDUS || edus.len() > MAX_EDUS {
        return Err(Error::BadJson(format!(
            "a transaction holds at most {MAX_PDUS} PDUs and {MAX_EDUS} EDUs"
        )));
    }
    let federation = super::state(hs)?;
    let lock = {
        let mut locks = federation.origin_locks.0.lock().await;
        if locks.len() > 1000 {
            locks.retain(|_, l| std::sync::Arc::strong_count(l) > 1);
        }
        locks.entry(origin.to_string()).or_default().clone()
    };
    let _one_at_a_time = lock.lock().await;
    if let Some(answer) = hs.storage.received_txn(origin.as_str(), txn_id).await? {
        return serde_json::from_value(answer)
            .map_err(|e| Error::Internal(format!("stored transaction answer: {e}")));
    }

    // Group by room, keeping each room's order.
    let mut rooms: Vec<(OwnedRoomId, Vec<CanonicalJsonObject>)> = Vec::new();
    for raw in pdus {
        let Ok(object) = serde_json::from_str::<CanonicalJsonObject>(raw.get()) else {
            tracing::debug!(%origin, "a PDU that is not a JSON object, dropped");
            continue;
        };
        let room_id = match object.get("room_id") {
            Some(CanonicalJsonValue::String(r)) => RoomId::parse(r).ok(),
            _ => None,
        };
        let Some(room_id) = room_id else {
            tracing::debug!(%origin, "a PDU without a room, dropped");
            continue;
        };
        match rooms.iter_mut().find(|(r, _)| *r == room_id) {
            Some((_, list)) => list.push(object),
            None => rooms.push((room_id, vec![object])),
        }
    }
    let per_room = join_all(rooms.into_iter().map(|(room_id, objects)| async move {
        receive_room_pdus(hs, origin, &room_id, objects).await
    }))
    .await;
    let mut results = PduResults::new();
    for room_results in per_room {
        results.extend(room_results);
    }
    for edu in edus {
        take_edu(hs, origin, edu).await;
    }
    let answer =
        serde_json::to_value(&results).map_err(|e| Error::Internal(format!("answer: {e}")))?;
    hs.storage
        .record_received_txn(origin.as_str(), txn_id, &answer, now_ms())
        .await?;
    Ok(results)
}

/// Most receipts taken from one `m.receipt` EDU.
const MAX_RECEIPTS_PER_EDU: usize = 100;
/// Most users' presence taken from one `m.presence` EDU.
const MAX_PRESENCE_PER_EDU: usize = 500;

/// One EDU: typing notices, read receipts, presence, device list and signing key updates
/// of the origin's users, and to-device messages from them, are taken in; one the origin
/// may not send (another server's user, a user not in the room or sharing none with us,
/// a server the room's ACL denies) is dropped, as are unknown kinds. EDUs get no answer.
async fn take_edu(hs: &Homeserver, origin: &ServerName, edu: &Raw<Edu>) {
    let outcome = match edu.deserialize() {
        Ok(Edu::Typing(t)) => {
            crate::rooms::receipts::remote_typing(hs, origin, &t.room_id, &t.user_id, t.typing)
                .await
        }
        Ok(Edu::Receipt(r)) => {
            let mut taken = 0;
            let mut outcome = Ok(());
            'rooms: for (room_id, map) in &r.receipts {
                for (user_id, data) in &map.read {
                    for event_id in &data.event_ids {
                        taken += 1;
                        if taken > MAX_RECEIPTS_PER_EDU {
                            break 'rooms;
                        }
                        let thread = match &data.data.thread {
                            ruma::events::receipt::ReceiptThread::Main => Some("main".to_owned()),
                            ruma::events::receipt::ReceiptThread::Thread(root) => {
                                Some(root.to_string())
                            }
                            _ => None,
                        };
                        let ts = data.data.ts.map(|t| i64::from(t.0)).unwrap_or_else(now_ms);
                        let one = crate::rooms::receipts::remote_receipt(
                            hs,
                            origin,
                            room_id,
                            user_id,
                            event_id,
                            thread.as_deref(),
                            ts,
                        )
                        .await;
                        if one.is_err() {
                            outcome = one;
                        }
                    }
                }
            }
            outcome
        }
        Ok(Edu::Presence(p)) => {
            let mut outcome = Ok(());
            for update in p.push.iter().take(MAX_PRESENCE_PER_EDU) {
                let one = crate::users::presence::remote_presence(
                    hs,
                    origin,
                    &crate::users::presence::RemotePresence {
                        user_id: &update.user_id,
                        state: &update.presence,
                        status_msg: update.status_msg.as_deref(),
                        last_active_ago: i64::from(update.last_active_ago),
                        currently_active: update.currently_active,
                    },
                )
                .await;
                if one.is_err() {
                    outcome = one;
                }
            }
            outcome
        }
        Ok(Edu::DeviceListUpdate(update)) => {
            super::device_lists::receive_update(hs, origin, &update).await
        }
        Ok(Edu::SigningKeyUpdate(update)) => {
            super::device_lists::receive_signing_keys(hs, origin, &update).await
        }
        Ok(Edu::DirectToDevice(d)) => {
            let messages = d
                .messages
                .iter()
                .map(|(user, devices)| {
                    let devices = devices
                        .iter()
                        .filter_map(|(device, raw)| {
                            let name = match device {
                                DeviceIdOrAllDevices::DeviceId(id) => id.to_string(),
                                DeviceIdOrAllDevices::AllDevices => "*".to_owned(),
                            };
                            Some((name, serde_json::from_str(raw.json().get()).ok()?))
                        })
                        .collect();
                    (user.to_string(), devices)
                })
                .collect();
            crate::e2ee::to_device::receive_remote(
                hs,
                origin,
                &d.sender,
                &d.ev_type.to_string(),
                d.message_id.as_str(),
                &messages,
            )
            .await
        }
        Ok(_) => {
            tracing::debug!(%origin, "EDU of a kind not handled, dropped");
            Ok(())
        }
        Err(e) => Err(Error::BadJson(format!("EDU: {e}"))),
    };
    if let Err(e) = outcome {
        tracing::debug!(%origin, "EDU dropped: {e}");
    }
}

/// One room's PDUs, in order. A room this server does not know has none of them taken.
async fn receive_room_pdus(
    hs: &Homeserver,
    origin: &ServerName,
    room_id: &RoomId,
    objects: Vec<CanonicalJsonObject>,
) -> PduResults {
    let mut results = PduResults::new();
    let ctx = match room_context(hs, room_id).await {
        Ok(ctx) => ctx,
        Err(_) => {
            tracing::debug!(%origin, %room_id, "PDUs for a room this server is not in, dropped");
            return results;
        }
    };
    let acl = check_server_acl(hs, room_id, origin).await;
    for object in objects {
        let Ok(event_id) = event_id_of(&object, &ctx.rules) else {
            tracing::debug!(%origin, "a PDU without a computable event ID, dropped");
            continue;
        };
        let outcome = match &acl {
            Err(e) => Err(e.to_string()),
            // Soft-failed and already known PDUs are taken, as far as the sender is
            // concerned.
            Ok(()) => match receive_with_missing(hs, origin, &ctx, object).await {
                Ok(_) => Ok(()),
                // Handled: the auth rules refuse it, and it is not stored.
                Err(Error::Rejected(why)) => {
                    tracing::debug!(%origin, %event_id, "PDU rejected: {why}");
                    Ok(())
                }
                Err(e) => Err(e.to_string()),
            },
        };
        results.insert(event_id, outcome);
    }
    results
}

/// `receive_pdu`, after fetching the prev events this server lacks from the origin.
async fn receive_with_missing(
    hs: &Homeserver,
    origin: &ServerName,
    ctx: &RoomContext,
    object: CanonicalJsonObject,
) -> Result<Received> {
    let keys = super::keys::pdu_keys(hs, ctx, &object).await?;
    let missing = match receive_pdu(hs, &ctx.room_id, object.clone(), &keys).await {
        Err(Error::UnknownEvents(missing)) => missing,
        other => return other.map(|(_, r)| r),
    };
    // First the events in between, from the sender (one that does not serve them is
    // asked for the state instead).
    if let Err(e) = fetch_missing(hs, origin, ctx, &object, &missing).await {
        tracing::debug!(%origin, "get_missing_events: {e}");
    }
    let missing = match receive_pdu(hs, &ctx.room_id, object.clone(), &keys).await {
        Err(Error::UnknownEvents(missing)) => missing,
        other => return other.map(|(_, r)| r),
    };
    // Still a gap before an event the sender pushed: refused, as Synapse does. Its prev
    // events are the sender's own history, which it must give; taking the sender's word
    // for the state there instead would let it make up the room's state. (The oldest
    // event get_missing_events gives may have its gap filled from the state at it.)
    let prevs = event_refs(&object, "prev_events");
    let unknown_prevs: Vec<&String> = missing.iter().filter(|m| prevs.contains(m)).collect();
    if !unknown_prevs.is_empty() {
        return Err(Error::Forbidden(format!(
            "your server did not give the prev events {unknown_prevs:?} of this event"
        )));
    }
    // Missing auth events are fetched one by one.
    let prev_states = recover_prev_states(hs, origin, ctx, &object, &missing).await?;
    Ok(
        receive_pdu_with_prev_states(hs, &ctx.room_id, object, &keys, &prev_states)
            .await?
            .1,
    )
}

/// Most prev events of one PDU whose state is asked of the sender.
const MAX_RECOVERED_PREVS: usize = 5;
/// Beyond this many unknown events, the whole state is asked for at once (`/state`)
/// rather than event by event.
const FETCH_ONE_BY_ONE: usize = 20;
/// Most events one recovery takes in (state plus auth chain).
const MAX_RECOVERED_EVENTS: usize = 20_000;

/// For prev events this server lacks after `get_missing_events`: the state after each as
/// the sender has it (`/state_ids`, then the events not here by `/event` or `/state`,
/// stored as outliers after their checks). Missing auth events are fetched the same way.
pub(super) async fn recover_prev_states(
    hs: &Homeserver,
    origin: &ServerName,
    ctx: &RoomContext,
    object: &CanonicalJsonObject,
    missing: &[String],
) -> Result<HashMap<String, StateNids>> {
    let federation = super::state(hs)?;
    let refs = |field: &str| event_refs(object, field);
    let prevs: Vec<String> = refs("prev_events")
        .into_iter()
        .filter(|p| missing.contains(p))
        .collect();
    let auths: Vec<String> = refs("auth_events")
        .into_iter()
        .filter(|a| missing.contains(a))
        .collect();
    if prevs.len() > MAX_RECOVERED_PREVS {
        return Err(Error::BadJson(format!(
            "{} prev events are missing; at most {MAX_RECOVERED_PREVS} are recovered",
            prevs.len()
        )));
    }
    if !auths.is_empty() {
        let fetched = fetch_events(hs, origin, &federation, &auths).await;
        store_fetched(hs, ctx, fetched).await?;
    }
    let mut states = HashMap::new();
    for prev in prevs {
        let prev_id = OwnedEventId::try_from(prev.as_str())
            .map_err(|e| Error::BadJson(format!("prev event: {e}")))?;
        let ids = federation
            .client
            .send(
                hs.keys.pair(),
                origin,
                get_room_state_ids::v1::Request::new(prev_id.clone(), ctx.room_id.clone()),
            )
            .await
            .map_err(|e| Error::RemoteUnavailable(format!("state at {prev}: {e}")))?;
        let state_ids: Vec<String> = ids.pdu_ids.iter().map(|e| e.to_string()).collect();
        let mut wanted: Vec<String> = state_ids.clone();
        wanted.extend(ids.auth_chain_ids.iter().map(|e| e.to_string()));
        wanted.push(prev.clone());
        wanted.sort();
        wanted.dedup();
        if wanted.len() > MAX_RECOVERED_EVENTS {
            return Err(Error::BadJson(
                "the state to recover is beyond its bound".into(),
            ));
        }
        let known: std::collections::HashSet<String> = hs
            .storage
            .events_by_id(&wanted)
            .await?
            .into_iter()
            .map(|e| e.event_id)
            .collect();
        let unknown: Vec<String> = wanted
            .into_iter()
            .filter(|id| !known.contains(id))
            .collect();
        let mut fetched = Vec::new();
        if unknown.len() > FETCH_ONE_BY_ONE {
            let whole = federation
                .client
                .send(
                    hs.keys.pair(),
                    origin,
                    get_room_state::v1::Request::new(prev_id.clone(), ctx.room_id.clone()),
                )
                .await
                .map_err(|e| Error::RemoteUnavailable(format!("state at {prev}: {e}")))?;
            for raw in whole.auth_chain.iter().chain(&whole.pdus) {
                if let Ok(event) = serde_json::from_str::<CanonicalJsonObject>(raw.get()) {
                    fetched.push(event);
                }
            }
            fetched
                .extend(fetch_events(hs, origin, &federation, std::slice::from_ref(&prev)).await);
        } else {
            fetched = fetch_events(hs, origin, &federation, &unknown).await;
        }
        store_fetched(hs, ctx, fetched).await?;
        // The state after the prev event: the state before it, plus itself if it is state.
        let mut with_prev = state_ids.clone();
        with_prev.push(prev.clone());
        let stored = hs.storage.events_by_id(&with_prev).await?;
        let mut state = StateNids::new();
        for event in stored.iter().filter(|e| e.event_id != prev) {
            if let (Some(kind), Some(key)) =
                (event.pdu["type"].as_str(), event.pdu["state_key"].as_str())
            {
                state.insert((kind.to_owned(), key.to_owned()), event.event_nid);
            }
        }
        match stored.iter().find(|e| e.event_id == prev) {
            Some(event) => {
                if let (Some(kind), Some(key)) =
                    (event.pdu["type"].as_str(), event.pdu["state_key"].as_str())
                {
                    state.insert((kind.to_owned(), key.to_owned()), event.event_nid);
                }
            }
            None => {
                return Err(Error::BadJson(format!(
                    "the prev event {prev} could not be fetched or did not check out"
                )));
            }
        }
        states.insert(prev, state);
    }
    Ok(states)
}

/// The event IDs an event names in `field` (`prev_events`, `auth_events`), in either
/// room version format.
fn event_refs(object: &CanonicalJsonObject, field: &str) -> Vec<String> {
    match object.get(field) {
        Some(CanonicalJsonValue::Array(items)) => items
            .iter()
            .filter_map(|r| match r {
                CanonicalJsonValue::String(s) => Some(s.clone()),
                CanonicalJsonValue::Array(pair) => match pair.first() {
                    Some(CanonicalJsonValue::String(s)) => Some(s.clone()),
                    _ => None,
                },
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Events by ID from `origin`, one request each; those it does not give are left out.
async fn fetch_events(
    hs: &Homeserver,
    origin: &ServerName,
    federation: &super::Federation,
    ids: &[String],
) -> Vec<CanonicalJsonObject> {
    let mut out = Vec::new();
    for id in ids {
        let Ok(event_id) = OwnedEventId::try_from(id.as_str()) else {
            continue;
        };
        match federation
            .client
            .send(
                hs.keys.pair(),
                origin,
                get_event::v1::Request::new(event_id),
            )
            .await
        {
            Ok(response) => {
                if let Ok(event) = serde_json::from_str::<CanonicalJsonObject>(response.pdu.get()) {
                    out.push(event);
                }
            }
            Err(e) => tracing::debug!(%origin, event_id = %id, "event not fetched: {e}"),
        }
    }
    out
}

/// Stores fetched events of the room as outliers, with their servers' keys.
async fn store_fetched(
    hs: &Homeserver,
    ctx: &RoomContext,
    events: Vec<CanonicalJsonObject>,
) -> Result<()> {
    let mut keys = ruma::signatures::PublicKeyMap::new();
    let mut of_room = Vec::new();
    for event in events {
        if !matches!(event.get("room_id"), Some(CanonicalJsonValue::String(r)) if r == ctx.room_id.as_str())
        {
            continue;
        }
        match super::keys::pdu_keys(hs, ctx, &event).await {
            Ok(found) => {
                for (server, set) in found {
                    keys.entry(server).or_default().extend(set);
                }
                of_room.push(event);
            }
            Err(e) => tracing::debug!("fetched event without usable keys: {e}"),
        }
    }
    store_outliers(hs, &ctx.room_id, of_room, &keys).await?;
    Ok(())
}

/// Asks the origin for the events between our forward extremities and the PDU, and takes
/// them in, oldest first. Events that are still missing after that fail the PDU.
async fn fetch_missing(
    hs: &Homeserver,
    origin: &ServerName,
    ctx: &RoomContext,
    object: &CanonicalJsonObject,
    missing: &[String],
) -> Result<()> {
    let event_id = event_id_of(object, &ctx.rules)?;
    let earliest: Vec<OwnedEventId> = hs
        .storage
        .forward_extremities(ctx.room_id.as_str())
        .await?
        .into_iter()
        .filter_map(|id| OwnedEventId::try_from(id).ok())
        .collect();
    let mut request =
        get_missing_events::v1::Request::new(ctx.room_id.clone(), earliest, vec![event_id]);
    request.limit = UInt::from(MISSING_EVENTS_LIMIT);
    let federation = super::state(hs)?;
    let response = federation
        .client
        .send(hs.keys.pair(), origin, request)
        .await
        .map_err(|e| Error::RemoteUnavailable(format!("missing events {missing:?}: {e}")))?;
    let mut recoveries = 0;
    for raw in response.events.iter().take(MISSING_EVENTS_LIMIT as usize) {
        let Ok(fetched) = serde_json::from_str::<CanonicalJsonObject>(raw.get()) else {
            continue;
        };
        if !matches!(fetched.get("room_id"), Some(CanonicalJsonValue::String(r)) if r == ctx.room_id.as_str())
        {
            continue;
        }
        let keys = super::keys::pdu_keys(hs, ctx, &fetched).await?;
        let outcome = match receive_pdu(hs, &ctx.room_id, fetched.clone(), &keys).await {
            // The oldest of the gap may still lack its own prev events: their state is
            // asked of the sender (as for the PDU itself), so the rest can follow on.
            Err(Error::UnknownEvents(prevs)) if recoveries < MAX_GAP_RECOVERIES => {
                recoveries += 1;
                match recover_prev_states(hs, origin, ctx, &fetched, &prevs).await {
                    Ok(states) => {
                        receive_pdu_with_prev_states(hs, &ctx.room_id, fetched, &keys, &states)
                            .await
                            .map(|_| ())
                    }
                    Err(e) => Err(e),
                }
            }
            other => other.map(|_| ()),
        };
        if let Err(e) = outcome {
            tracing::debug!(%origin, "a fetched missing event was refused: {e}");
        }
    }
    Ok(())
}

/// Fetched missing events whose own gap is filled by asking for state, per PDU.
const MAX_GAP_RECOVERIES: usize = 2;
