//! History from other servers: a `/messages` page back that reaches the start of what
//! this server holds of a room asks the room's other servers for what came before
//! (`/backfill` from the room's backward extremities), takes it in as history
//! (`rooms::receive::receive_historical`), and reads the page again. `timestamp_to_event`
//! with nothing here in that direction asks them too.

use std::{collections::HashMap, time::Duration};

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedEventId, RoomId, ServerName,
    api::{
        Direction,
        federation::{backfill::get_backfill, event::get_event_by_timestamp},
    },
    uint,
};

use crate::{
    error::{Error, Result},
    rooms::{
        context::{RoomContext, room_context},
        receive::{Received, event_id_of, receive_historical},
        timeline::{self, EventFilter, Page},
    },
    server::Homeserver,
    users::Requester,
};

/// Events asked of a server at once (what Synapse serves at most).
const BACKFILL_BATCH: u32 = 100;
/// Backward extremities backfilled from at once.
const MAX_FROM: i64 = 20;
/// Servers of the room tried, one after the other, before the page is answered as it is.
const MAX_SERVERS_TRIED: usize = 3;
/// How long a `/messages` request waits for backfill before answering with what is here.
const BACKFILL_WAIT: Duration = Duration::from_secs(20);

/// `GET /messages`: `timeline::messages`, after backfilling when the page back reached the
/// start of the room here.
#[allow(clippy::too_many_arguments)]
pub async fn messages(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    from: Option<i64>,
    to: Option<i64>,
    backwards: bool,
    limit: u32,
    filter: &EventFilter,
) -> Result<Page> {
    let page =
        timeline::messages(hs, requester, room_id, from, to, backwards, limit, filter).await?;
    if !page.reached_start || !hs.config.federation_enabled() {
        return Ok(page);
    }
    match tokio::time::timeout(BACKFILL_WAIT, backfill_room(hs, room_id)).await {
        Ok(Ok(stored)) if stored > 0 => {
            timeline::messages(hs, requester, room_id, from, to, backwards, limit, filter).await
        }
        Ok(Err(e)) => {
            tracing::info!(%room_id, "backfill failed: {e}");
            Ok(page)
        }
        _ => Ok(page),
    }
}

/// Backfills one batch of the room's history from the first of its other servers that
/// answers; returns how many events were taken in.
pub async fn backfill_room(hs: &Homeserver, room_id: &RoomId) -> Result<usize> {
    let from = hs
        .storage
        .backward_extremities(room_id.as_str(), MAX_FROM)
        .await?;
    if from.is_empty() {
        return Ok(0);
    }
    let ctx = room_context(hs, room_id).await?;
    let ours = hs.config.server_name().as_str();
    let mut servers: Vec<String> = hs.storage.room_servers(room_id.as_str()).await?;
    servers.retain(|s| s != ours);
    // The room's own server (in its ID, before v12) is the likeliest to hold its start.
    if let Some(origin) = room_id.server_name() {
        servers.sort_by_key(|s| s != origin.as_str());
    }
    for server in servers.iter().take(MAX_SERVERS_TRIED) {
        let Ok(server) = ServerName::parse(server) else {
            continue;
        };
        match backfill_from(hs, &ctx, &server, &from).await {
            Ok(stored) if stored > 0 => return Ok(stored),
            Ok(_) => {}
            Err(e) => tracing::info!(%room_id, %server, "backfill from the server failed: {e}"),
        }
    }
    Ok(0)
}

/// One `/backfill` from `server`, its events of this room taken in oldest first.
async fn backfill_from(
    hs: &Homeserver,
    ctx: &RoomContext,
    server: &ServerName,
    from: &[String],
) -> Result<usize> {
    let federation = super::state(hs)?;
    let ids: Vec<OwnedEventId> = from
        .iter()
        .filter_map(|id| OwnedEventId::try_from(id.as_str()).ok())
        .collect();
    let answer = federation
        .client
        .send(
            hs.keys.pair(),
            server,
            get_backfill::v1::Request::new(ctx.room_id.clone(), ids, uint!(100)),
        )
        .await?;
    let mut events: Vec<(i64, String, CanonicalJsonObject)> = Vec::new();
    for raw in answer.pdus.iter().take(BACKFILL_BATCH as usize) {
        let Ok(object) = serde_json::from_str::<CanonicalJsonObject>(raw.get()) else {
            continue;
        };
        // Another room's events are refused here; a v12 create event names no room and
        // is matched to it by its ID when checked.
        match object.get("room_id") {
            Some(CanonicalJsonValue::String(r)) if r == ctx.room_id.as_str() => {}
            None => {}
            _ => continue,
        }
        let Ok(id) = event_id_of(&object, &ctx.rules) else {
            continue;
        };
        let depth = match object.get("depth") {
            Some(CanonicalJsonValue::Integer(d)) => i64::from(*d),
            _ => continue,
        };
        if events.iter().all(|(_, known, _)| known != id.as_str()) {
            events.push((depth, id.to_string(), object));
        }
    }
    let wanted: Vec<String> = events.iter().map(|(_, id, _)| id.clone()).collect();
    let held: std::collections::HashSet<String> = hs
        .storage
        .events_by_id(&wanted)
        .await?
        .into_iter()
        .filter(|e| !e.outlier)
        .map(|e| e.event_id)
        .collect();
    events.retain(|(_, id, _)| !held.contains(id));
    events.sort_by_key(|(depth, _, _)| *depth);
    let positions = hs.storage.backfill_positions(events.len()).await?;
    let mut stored = 0;
    for ((_, id, object), position) in events.into_iter().zip(positions) {
        match take_in(hs, ctx, server, object, position).await {
            Ok(Received::Accepted) => stored += 1,
            Ok(_) => {}
            Err(e) => tracing::debug!(event_id = %id, "backfilled event refused: {e}"),
        }
    }
    Ok(stored)
}

/// One backfilled event: the state before it recovered from `server` when the events it
/// follows are not here (the oldest of a batch).
async fn take_in(
    hs: &Homeserver,
    ctx: &RoomContext,
    server: &ServerName,
    object: CanonicalJsonObject,
    position: i64,
) -> Result<Received> {
    let keys = super::keys::pdu_keys(hs, ctx, &object).await?;
    let no_states = HashMap::new();
    match receive_historical(
        hs,
        &ctx.room_id,
        object.clone(),
        &keys,
        &no_states,
        position,
    )
    .await
    {
        Err(Error::UnknownEvents(missing)) => {
            let prev_states =
                super::inbound::recover_prev_states(hs, server, ctx, &object, &missing).await?;
            receive_historical(hs, &ctx.room_id, object, &keys, &prev_states, position)
                .await
                .map(|(_, r)| r)
        }
        other => other.map(|(_, r)| r),
    }
}

/// `GET /timestamp_to_event`: the event nearest `ts` here; with none here in that
/// direction (history this server never held), the answer of the first of the room's
/// other servers that has one.
pub async fn event_at_timestamp(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    ts: i64,
    forwards: bool,
) -> Result<(String, i64)> {
    let local = timeline::event_at_timestamp(hs, requester, room_id, ts, forwards).await;
    if !matches!(local, Err(Error::NotFound(_))) || !hs.config.federation_enabled() {
        return local;
    }
    let federation = super::state(hs)?;
    let ours = hs.config.server_name().as_str();
    let servers: Vec<String> = hs
        .storage
        .room_servers(room_id.as_str())
        .await?
        .into_iter()
        .filter(|s| s != ours)
        .collect();
    let dir = if forwards {
        Direction::Forward
    } else {
        Direction::Backward
    };
    let at = ruma::MilliSecondsSinceUnixEpoch(ruma::UInt::try_from(ts.max(0)).unwrap_or_default());
    for server in servers.iter().take(MAX_SERVERS_TRIED) {
        let Ok(server) = ServerName::parse(server) else {
            continue;
        };
        let request = get_event_by_timestamp::v1::Request::new(room_id.to_owned(), at, dir);
        match federation
            .client
            .send(hs.keys.pair(), &server, request)
            .await
        {
            Ok(answer) => {
                return Ok((
                    answer.event_id.to_string(),
                    i64::from(answer.origin_server_ts.0),
                ));
            }
            Err(e) => tracing::debug!(%room_id, %server, "timestamp_to_event: {e}"),
        }
    }
    local
}
