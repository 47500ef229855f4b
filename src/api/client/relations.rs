//! Relations and threads.

use std::sync::Arc;

use axum::Router;
use ruma::{
    api::{
        Direction,
        client::{
            relations::{
                get_relating_events, get_relating_events_with_rel_type,
                get_relating_events_with_rel_type_and_event_type,
            },
            threads::get_threads,
        },
    },
    serde::Raw,
};
use serde_json::Value as JsonValue;

use crate::{
    error::{Error, Result},
    http::{Ruma, route},
    rooms::timeline,
    server::Homeserver,
    users::Requester,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = route(router, relations);
    let router = route(router, relations_by_type);
    let router = route(router, relations_by_type_and_event_type);
    route(router, threads)
}

fn token(t: Option<&str>) -> Result<Option<i64>> {
    t.map(|t| t.strip_prefix('s').unwrap_or(t).parse::<i64>())
        .transpose()
        .map_err(|_| Error::InvalidParam("invalid pagination token".into()))
}

fn raws<T>(events: &[JsonValue]) -> Result<Vec<Raw<T>>> {
    events
        .iter()
        .map(|e| {
            serde_json::value::to_raw_value(e)
                .map(Raw::from_json)
                .map_err(|e| Error::Internal(e.to_string()))
        })
        .collect()
}

/// The common shape of the three /relations endpoints.
struct Query<'a> {
    room_id: &'a ruma::RoomId,
    event_id: &'a ruma::EventId,
    rel_type: Option<String>,
    event_type: Option<String>,
    from: Option<&'a str>,
    to: Option<&'a str>,
    dir: &'a Direction,
    limit: Option<ruma::UInt>,
    recurse: bool,
}

async fn run(
    hs: &Homeserver,
    requester: &Requester,
    q: Query<'_>,
) -> Result<(Vec<JsonValue>, Option<String>)> {
    let limit = q
        .limit
        .map(|l| u32::try_from(l).unwrap_or(1000))
        .unwrap_or(50);
    let (events, next) = timeline::relations(
        hs,
        requester,
        q.room_id,
        q.event_id.as_str(),
        q.rel_type.as_deref(),
        q.event_type.as_deref(),
        token(q.from)?,
        token(q.to)?,
        *q.dir == Direction::Backward,
        limit,
        q.recurse,
    )
    .await?;
    Ok((events, next.map(|n| format!("s{n}"))))
}

async fn relations(
    hs: Arc<Homeserver>,
    req: Ruma<get_relating_events::v1::Request>,
) -> Result<get_relating_events::v1::Response> {
    let b = &req.body;
    let (events, next) = run(
        &hs,
        req.requester()?,
        Query {
            room_id: &b.room_id,
            event_id: &b.event_id,
            rel_type: None,
            event_type: None,
            from: b.from.as_deref(),
            to: b.to.as_deref(),
            dir: &b.dir,
            limit: b.limit,
            recurse: b.recurse,
        },
    )
    .await?;
    let mut response = get_relating_events::v1::Response::new(raws(&events)?);
    response.next_batch = next;
    Ok(response)
}

async fn relations_by_type(
    hs: Arc<Homeserver>,
    req: Ruma<get_relating_events_with_rel_type::v1::Request>,
) -> Result<get_relating_events_with_rel_type::v1::Response> {
    let b = &req.body;
    let (events, next) = run(
        &hs,
        req.requester()?,
        Query {
            room_id: &b.room_id,
            event_id: &b.event_id,
            rel_type: Some(b.rel_type.to_string()),
            event_type: None,
            from: b.from.as_deref(),
            to: b.to.as_deref(),
            dir: &b.dir,
            limit: b.limit,
            recurse: b.recurse,
        },
    )
    .await?;
    let mut response = get_relating_events_with_rel_type::v1::Response::new(raws(&events)?);
    response.next_batch = next;
    Ok(response)
}

async fn relations_by_type_and_event_type(
    hs: Arc<Homeserver>,
    req: Ruma<get_relating_events_with_rel_type_and_event_type::v1::Request>,
) -> Result<get_relating_events_with_rel_type_and_event_type::v1::Response> {
    let b = &req.body;
    let (events, next) = run(
        &hs,
        req.requester()?,
        Query {
            room_id: &b.room_id,
            event_id: &b.event_id,
            rel_type: Some(b.rel_type.to_string()),
            event_type: Some(b.event_type.to_string()),
            from: b.from.as_deref(),
            to: b.to.as_deref(),
            dir: &b.dir,
            limit: b.limit,
            recurse: b.recurse,
        },
    )
    .await?;
    let mut response =
        get_relating_events_with_rel_type_and_event_type::v1::Response::new(raws(&events)?);
    response.next_batch = next;
    Ok(response)
}

async fn threads(
    hs: Arc<Homeserver>,
    req: Ruma<get_threads::v1::Request>,
) -> Result<get_threads::v1::Response> {
    let b = &req.body;
    let participated = b.include == get_threads::v1::IncludeThreads::Participated;
    let limit = b
        .limit
        .map(|l| u32::try_from(l).unwrap_or(100))
        .unwrap_or(50);
    let (events, next) = timeline::threads(
        &hs,
        req.requester()?,
        &b.room_id,
        participated,
        token(b.from.as_deref())?,
        limit,
    )
    .await?;
    let mut response = get_threads::v1::Response::new(raws(&events)?);
    response.next_batch = next.map(|n| format!("s{n}"));
    Ok(response)
}
