//! Inbound transactions (`PUT /send/{txnId}`): at most 50 PDUs and 100 EDUs; answered
//! once per origin and transaction ID (a retry gets the first answer); each PDU through
//! `rooms::receive` with its servers' keys, after fetching prev events this server lacks
//! (`get_missing_events`, bounded); one room's PDUs in order, rooms in parallel. EDUs of
//! kinds not built yet are accepted and dropped.

use std::collections::{BTreeMap, HashMap};

use futures_util::future::join_all;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, OwnedRoomId, RoomId,
    ServerName, UInt,
    api::federation::{event::get_missing_events, transactions::edu::Edu},
    serde::Raw,
};
use serde_json::value::RawValue as RawJsonValue;

use crate::{
    error::{Error, Result},
    rooms::{
        context::{RoomContext, room_context},
        receive::{Received, receive_pdu},
        remote_reads::check_server_acl,
    },
    server::{Homeserver, now_ms},
};

pub const MAX_PDUS: usize = 50;
pub const MAX_EDUS: usize = 100;
/// Events fetched with `get_missing_events` for one PDU.
const MISSING_EVENTS_LIMIT: u32 = 10;

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
        let kind = edu
            .get_field::<String>("edu_type")
            .ok()
            .flatten()
            .unwrap_or_default();
        tracing::debug!(%origin, kind, "EDU accepted and dropped (not handled yet)");
    }
    let answer =
        serde_json::to_value(&results).map_err(|e| Error::Internal(format!("answer: {e}")))?;
    hs.storage
        .record_received_txn(origin.as_str(), txn_id, &answer, now_ms())
        .await?;
    Ok(results)
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
        let Ok(event_id) = event_id_of(&ctx, &object) else {
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

pub(super) fn event_id_of(ctx: &RoomContext, object: &CanonicalJsonObject) -> Result<OwnedEventId> {
    match ctx.rules.event_id_format {
        ruma::room_version_rules::EventIdFormatVersion::V1 => match object.get("event_id") {
            Some(CanonicalJsonValue::String(id)) => {
                EventId::parse(id).map_err(|e| Error::BadJson(e.to_string()))
            }
            _ => Err(Error::BadJson("no event_id".into())),
        },
        _ => {
            let hash = ruma::signatures::reference_hash(object, &ctx.rules)
                .map_err(|e| Error::BadJson(e.to_string()))?;
            EventId::parse(format!("${hash}")).map_err(|e| Error::BadJson(e.to_string()))
        }
    }
}

/// `receive_pdu`, after fetching the prev events this server lacks from the origin.
async fn receive_with_missing(
    hs: &Homeserver,
    origin: &ServerName,
    ctx: &RoomContext,
    object: CanonicalJsonObject,
) -> Result<Received> {
    let keys = super::keys::pdu_keys(hs, ctx, &object).await?;
    match receive_pdu(hs, &ctx.room_id, object.clone(), &keys).await {
        Err(Error::UnknownEvents(missing)) => {
            fetch_missing(hs, origin, ctx, &object, &missing).await?;
            Ok(receive_pdu(hs, &ctx.room_id, object, &keys).await?.1)
        }
        other => other.map(|(_, r)| r),
    }
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
    let event_id = event_id_of(ctx, object)?;
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
    for raw in response.events.iter().take(MISSING_EVENTS_LIMIT as usize) {
        let Ok(fetched) = serde_json::from_str::<CanonicalJsonObject>(raw.get()) else {
            continue;
        };
        if !matches!(fetched.get("room_id"), Some(CanonicalJsonValue::String(r)) if r == ctx.room_id.as_str())
        {
            continue;
        }
        let keys = super::keys::pdu_keys(hs, ctx, &fetched).await?;
        match receive_pdu(hs, &ctx.room_id, fetched, &keys).await {
            Ok(_) => {}
            Err(e) => tracing::debug!(%origin, "a fetched missing event was refused: {e}"),
        }
    }
    Ok(())
}
