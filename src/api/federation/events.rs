//! Retrieving events: `/event`, `/state`, `/state_ids`, `/event_auth`,
//! `/get_missing_events`, `/backfill`, `/timestamp_to_event`.

use std::sync::Arc;

use ruma::{
    MilliSecondsSinceUnixEpoch, OwnedEventId,
    api::federation::{
        authorization::get_event_authorization,
        backfill::get_backfill,
        event::{
            get_event, get_event_by_timestamp, get_missing_events, get_room_state,
            get_room_state_ids,
        },
    },
};
use serde_json::value::RawValue as RawJsonValue;

use crate::{
    error::{Error, Result},
    http::Ruma,
    rooms::remote_reads,
    server::Homeserver,
    storage::events::StoredEvent,
};

pub(super) fn raw_pdu(pdu: &serde_json::Value) -> Result<Box<RawJsonValue>> {
    serde_json::value::to_raw_value(pdu).map_err(|e| Error::Internal(e.to_string()))
}

fn raw_pdus(events: &[StoredEvent]) -> Result<Vec<Box<RawJsonValue>>> {
    events.iter().map(|e| raw_pdu(&e.pdu)).collect()
}

fn event_ids(events: &[StoredEvent]) -> Vec<OwnedEventId> {
    events
        .iter()
        .filter_map(|e| OwnedEventId::try_from(e.event_id.as_str()).ok())
        .collect()
}

pub(super) fn origin<T>(req: &Ruma<T>) -> Result<&ruma::ServerName> {
    req.origin
        .as_deref()
        .ok_or_else(|| Error::Unauthorized("not signed by a server".into()))
}

pub async fn event(
    hs: Arc<Homeserver>,
    req: Ruma<get_event::v1::Request>,
) -> Result<get_event::v1::Response> {
    let pdu = remote_reads::event_for_server(&hs, origin(&req)?, &req.body.event_id).await?;
    Ok(get_event::v1::Response::new(
        hs.config.server_name().to_owned(),
        MilliSecondsSinceUnixEpoch::now(),
        raw_pdu(&pdu)?,
    ))
}

pub async fn state(
    hs: Arc<Homeserver>,
    req: Ruma<get_room_state::v1::Request>,
) -> Result<get_room_state::v1::Response> {
    let b = &req.body;
    let (state, chain) =
        remote_reads::state_for_server(&hs, origin(&req)?, &b.room_id, &b.event_id).await?;
    Ok(get_room_state::v1::Response::new(
        raw_pdus(&chain)?,
        raw_pdus(&state)?,
    ))
}

pub async fn state_ids(
    hs: Arc<Homeserver>,
    req: Ruma<get_room_state_ids::v1::Request>,
) -> Result<get_room_state_ids::v1::Response> {
    let b = &req.body;
    let (state, chain) =
        remote_reads::state_for_server(&hs, origin(&req)?, &b.room_id, &b.event_id).await?;
    Ok(get_room_state_ids::v1::Response::new(
        event_ids(&chain),
        event_ids(&state),
    ))
}

pub async fn event_auth(
    hs: Arc<Homeserver>,
    req: Ruma<get_event_authorization::v1::Request>,
) -> Result<get_event_authorization::v1::Response> {
    let b = &req.body;
    let chain =
        remote_reads::auth_chain_for_server(&hs, origin(&req)?, &b.room_id, &b.event_id).await?;
    Ok(get_event_authorization::v1::Response::new(raw_pdus(
        &chain,
    )?))
}

pub async fn missing_events(
    hs: Arc<Homeserver>,
    req: Ruma<get_missing_events::v1::Request>,
) -> Result<get_missing_events::v1::Response> {
    let b = &req.body;
    let ids = |list: &[OwnedEventId]| list.iter().map(|e| e.to_string()).collect::<Vec<_>>();
    let events = remote_reads::missing_events_for_server(
        &hs,
        origin(&req)?,
        &b.room_id,
        &ids(&b.earliest_events),
        &ids(&b.latest_events),
        usize::try_from(u64::from(b.limit)).unwrap_or(usize::MAX),
        i64::try_from(u64::from(b.min_depth)).unwrap_or(i64::MAX),
    )
    .await?;
    Ok(get_missing_events::v1::Response::new(raw_pdus(&events)?))
}

pub async fn backfill(
    hs: Arc<Homeserver>,
    req: Ruma<get_backfill::v1::Request>,
) -> Result<get_backfill::v1::Response> {
    let b = &req.body;
    let from: Vec<String> = b.v.iter().map(|e| e.to_string()).collect();
    let events = remote_reads::backfill_for_server(
        &hs,
        origin(&req)?,
        &b.room_id,
        &from,
        usize::try_from(u64::from(b.limit)).unwrap_or(usize::MAX),
    )
    .await?;
    Ok(get_backfill::v1::Response::new(
        hs.config.server_name().to_owned(),
        MilliSecondsSinceUnixEpoch::now(),
        raw_pdus(&events)?,
    ))
}

pub async fn timestamp_to_event(
    hs: Arc<Homeserver>,
    req: Ruma<get_event_by_timestamp::v1::Request>,
) -> Result<get_event_by_timestamp::v1::Response> {
    let b = &req.body;
    let forwards = b.dir == ruma::api::Direction::Forward;
    let (event_id, at) = remote_reads::event_at_timestamp_for_server(
        &hs,
        origin(&req)?,
        &b.room_id,
        i64::from(b.ts.0),
        forwards,
    )
    .await?;
    let event_id = OwnedEventId::try_from(event_id).map_err(|e| Error::Internal(e.to_string()))?;
    let at = MilliSecondsSinceUnixEpoch(ruma::UInt::try_from(at).unwrap_or_default());
    Ok(get_event_by_timestamp::v1::Response::new(event_id, at))
}
