//! Sending and reading events: send, state, event, members, messages.

use std::{collections::BTreeMap, sync::Arc};

use axum::Router;
use ruma::{
    api::{
        Direction,
        client::{
            context::get_context,
            membership::{get_member_events, joined_members},
            message::{get_message_events, send_message_event},
            redact::redact_event,
            room::get_room_event,
            state::{get_state_event_for_key, get_state_events, send_state_event},
        },
    },
    serde::Raw,
};
use serde_json::Value as JsonValue;

use crate::{
    error::{Error, Result},
    http::{
        Ruma,
        error::ApiError,
        extract::{Authed, AuthedBody, MatrixPath, Patches, route_optional_last, route_patched},
        route,
    },
    rooms::{pdu::NewEvent, redaction, send, timeline},
    server::Homeserver,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = route(router, send_message);
    let router = route_optional_last(router, send_state);
    let router = route_optional_last(router, state_event);
    let router = route(router, state);
    let router = route(router, event);
    let router = route(router, members);
    let patches = Patches {
        request: None,
        response: Some(joined_members_fields),
    };
    let router = route_patched(router, joined_members, patches);
    let router = route(router, redact);
    let router = route(router, context);
    let router = route(router, messages);
    // The older form without a transaction ID, which Synapse still serves.
    router
        .route(
            "/_matrix/client/v3/rooms/{room_id}/send/{event_type}",
            axum::routing::post(send_message_without_txn),
        )
        .route(
            "/_matrix/client/r0/rooms/{room_id}/send/{event_type}",
            axum::routing::post(send_message_without_txn),
        )
}

/// `POST /rooms/{roomId}/send/{eventType}`: a send the server gives a transaction ID of
/// its own (so a retry sends again: clients wanting idempotency use the PUT form).
async fn send_message_without_txn(
    axum::extract::State(hs): axum::extract::State<Arc<Homeserver>>,
    Authed(requester): Authed,
    MatrixPath((room_id, event_type)): MatrixPath<(ruma::OwnedRoomId, String)>,
    AuthedBody(body): AuthedBody,
) -> std::result::Result<axum::Json<JsonValue>, ApiError> {
    let content: JsonValue =
        serde_json::from_slice(&body).map_err(|e| Error::NotJson(e.to_string()))?;
    if !content.is_object() {
        return Err(Error::BadJson("event content must be a JSON object".into()).into());
    }
    let new = NewEvent {
        event_type,
        content,
        state_key: None,
        redacts: None,
        origin_server_ts: None,
    };
    let txn = format!("post-{}", crate::secrets::random_id(24));
    let event_id = send::send_message(&hs, &requester, &room_id, new, &txn).await?;
    Ok(axum::Json(serde_json::json!({ "event_id": event_id })))
}

async fn redact(
    hs: Arc<Homeserver>,
    req: Ruma<redact_event::v3::Request>,
) -> Result<redact_event::v3::Response> {
    let b = &req.body;
    let event_id = redaction::redact(
        &hs,
        req.requester()?,
        &b.room_id,
        &b.event_id,
        b.reason.as_deref(),
        b.txn_id.as_str(),
    )
    .await?;
    Ok(redact_event::v3::Response::new(event_id))
}

fn to_raw<T>(value: &JsonValue) -> Result<Raw<T>> {
    serde_json::value::to_raw_value(value)
        .map(Raw::from_json)
        .map_err(|e| Error::Internal(e.to_string()))
}

fn content_of<T>(raw: &Raw<T>) -> Result<JsonValue> {
    let v: JsonValue =
        serde_json::from_str(raw.json().get()).map_err(|e| Error::NotJson(e.to_string()))?;
    if !v.is_object() {
        return Err(Error::BadJson("event content must be a JSON object".into()));
    }
    Ok(v)
}

/// `ts=` is honoured for application services only (timestamp massaging).
fn massaged(
    requester: &crate::users::Requester,
    ts: Option<ruma::MilliSecondsSinceUnixEpoch>,
) -> Option<ruma::MilliSecondsSinceUnixEpoch> {
    ts.filter(|_| requester.appservice.is_some())
}

async fn send_message(
    hs: Arc<Homeserver>,
    req: Ruma<send_message_event::v3::Request>,
) -> Result<send_message_event::v3::Response> {
    let b = &req.body;
    let requester = req.requester()?;
    let new = NewEvent {
        event_type: b.event_type.to_string(),
        content: content_of(&b.body)?,
        state_key: None,
        redacts: None,
        origin_server_ts: massaged(requester, b.timestamp),
    };
    let event_id = send::send_message(&hs, requester, &b.room_id, new, b.txn_id.as_str()).await?;
    Ok(send_message_event::v3::Response::new(event_id))
}

async fn send_state(
    hs: Arc<Homeserver>,
    req: Ruma<send_state_event::v3::Request>,
) -> Result<send_state_event::v3::Response> {
    let b = &req.body;
    let requester = req.requester()?;
    let event_id = send::send_state(
        &hs,
        &b.room_id,
        &requester.user_id,
        &b.event_type.to_string(),
        &b.state_key,
        content_of(&b.body)?,
        massaged(requester, b.timestamp),
    )
    .await?;
    Ok(send_state_event::v3::Response::new(event_id))
}

async fn state_event(
    hs: Arc<Homeserver>,
    req: Ruma<get_state_event_for_key::v3::Request>,
) -> Result<get_state_event_for_key::v3::Response> {
    let b = &req.body;
    let content = timeline::state_event(
        &hs,
        req.requester()?,
        &b.room_id,
        &b.event_type.to_string(),
        &b.state_key,
        b.format == get_state_event_for_key::v3::StateEventFormat::Event,
    )
    .await?;
    let raw =
        serde_json::value::to_raw_value(&content).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(get_state_event_for_key::v3::Response::new(raw))
}

async fn state(
    hs: Arc<Homeserver>,
    req: Ruma<get_state_events::v3::Request>,
) -> Result<get_state_events::v3::Response> {
    let events = timeline::state(&hs, req.requester()?, &req.body.room_id).await?;
    Ok(get_state_events::v3::Response::new(
        events.iter().map(to_raw).collect::<Result<_>>()?,
    ))
}

async fn event(
    hs: Arc<Homeserver>,
    req: Ruma<get_room_event::v3::Request>,
) -> Result<get_room_event::v3::Response> {
    let e = timeline::event(
        &hs,
        req.requester()?,
        &req.body.room_id,
        req.body.event_id.as_str(),
    )
    .await?;
    Ok(get_room_event::v3::Response::new(to_raw(&e)?))
}

async fn members(
    hs: Arc<Homeserver>,
    req: Ruma<get_member_events::v3::Request>,
) -> Result<get_member_events::v3::Response> {
    let b = &req.body;
    let at = parse_token(b.at.as_deref(), true)?;
    let events = timeline::members(&hs, req.requester()?, &b.room_id, at).await?;
    let keep = |e: &JsonValue| {
        let m = e["content"]["membership"].as_str().unwrap_or_default();
        b.membership.as_ref().is_none_or(|want| want.as_str() == m)
            && b.not_membership
                .as_ref()
                .is_none_or(|not| not.as_str() != m)
    };
    Ok(get_member_events::v3::Response::new(
        events
            .iter()
            .filter(|e| keep(e))
            .map(to_raw)
            .collect::<Result<_>>()?,
    ))
}

/// Each joined member has `display_name` and `avatar_url`, null when unset, as Synapse
/// answers (ruma leaves unset ones out; clients and sytest read the keys).
fn joined_members_fields(response: &mut JsonValue) {
    let Some(joined) = response.get_mut("joined").and_then(|j| j.as_object_mut()) else {
        return;
    };
    for member in joined.values_mut().filter_map(|m| m.as_object_mut()) {
        for key in ["display_name", "avatar_url"] {
            member.entry(key).or_insert(JsonValue::Null);
        }
    }
}

async fn joined_members(
    hs: Arc<Homeserver>,
    req: Ruma<joined_members::v3::Request>,
) -> Result<joined_members::v3::Response> {
    let events = timeline::members(&hs, req.requester()?, &req.body.room_id, None).await?;
    let mut joined = BTreeMap::new();
    for e in events
        .iter()
        .filter(|e| e["content"]["membership"] == "join")
    {
        let Some(user) = e["state_key"]
            .as_str()
            .and_then(|u| ruma::UserId::parse(u).ok())
        else {
            continue;
        };
        let mut member = joined_members::v3::RoomMember::new();
        member.display_name = e["content"]["displayname"].as_str().map(str::to_owned);
        member.avatar_url = e["content"]["avatar_url"].as_str().map(Into::into);
        joined.insert(user, member);
    }
    Ok(joined_members::v3::Response::new(joined))
}

/// Pagination tokens: `s<pos>` from /messages and /context, or a /sync token, whose
/// events part is the last position it has seen (so the boundary is just after it).
fn parse_token(token: Option<&str>, backwards: bool) -> Result<Option<i64>> {
    token
        .map(|t| crate::sync_token::pagination_position(t, backwards))
        .transpose()
        .map_err(|_| Error::InvalidParam("invalid pagination token".into()))
}

async fn messages(
    hs: Arc<Homeserver>,
    req: Ruma<get_message_events::v3::Request>,
) -> Result<get_message_events::v3::Response> {
    let b = &req.body;
    let backwards = b.dir == Direction::Backward;
    let limit = u32::try_from(b.limit).unwrap_or(1000);
    let filter = timeline::EventFilter::from_ruma(&b.filter);
    let page = crate::federation::backfill::messages(
        &hs,
        req.requester()?,
        &b.room_id,
        parse_token(b.from.as_deref(), backwards)?,
        parse_token(b.to.as_deref(), backwards)?,
        backwards,
        limit,
        &filter,
    )
    .await?;
    let mut response = get_message_events::v3::Response::new();
    response.start = format!("s{}", page.start);
    response.end = page.end.map(|e| format!("s{e}"));
    response.chunk = page.events.iter().map(to_raw).collect::<Result<_>>()?;
    response.state = page.state.iter().map(to_raw).collect::<Result<_>>()?;
    Ok(response)
}

async fn context(
    hs: Arc<Homeserver>,
    req: Ruma<get_context::v3::Request>,
) -> Result<get_context::v3::Response> {
    let b = &req.body;
    let limit = u32::try_from(b.limit).unwrap_or(100);
    let c = timeline::context(
        &hs,
        req.requester()?,
        &b.room_id,
        b.event_id.as_str(),
        limit,
        &timeline::EventFilter::from_ruma(&b.filter),
    )
    .await?;
    let mut response = get_context::v3::Response::new();
    response.start = Some(format!("s{}", c.start));
    response.end = Some(format!("s{}", c.end));
    response.event = Some(to_raw(&c.event)?);
    response.events_before = c.before.iter().map(to_raw).collect::<Result<_>>()?;
    response.events_after = c.after.iter().map(to_raw).collect::<Result<_>>()?;
    response.state = c.state.iter().map(to_raw).collect::<Result<_>>()?;
    Ok(response)
}
