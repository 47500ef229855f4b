//! Joins, leaves, knocks and invites: `GET /make_join`, `PUT /v1|v2/send_join`,
//! `GET /make_leave`, `PUT /v1|v2/send_leave`, `GET /make_knock`, `PUT /send_knock`,
//! `PUT /v1|v2/invite`.

use std::sync::Arc;

use ruma::{
    RoomVersionId,
    api::federation::membership::{
        RawStrippedState, create_invite, create_join_event, create_knock_event, create_leave_event,
        prepare_join_event, prepare_knock_event, prepare_leave_event,
    },
};
use serde_json::{Value as JsonValue, json};

use super::events::{origin, raw_pdu};
use crate::{
    error::{Error, Result},
    federation::{
        invite,
        legacy::{InviteV1, SendJoinV1, SendLeaveV1, V1Response},
        membership,
    },
    http::Ruma,
    rooms::remote_membership,
    server::Homeserver,
    storage::events::StoredEvent,
};

pub async fn make_join(
    hs: Arc<Homeserver>,
    req: Ruma<prepare_join_event::v1::Request>,
) -> Result<prepare_join_event::v1::Response> {
    let b = &req.body;
    let (version, template) =
        remote_membership::join_template(&hs, origin(&req)?, &b.room_id, &b.user_id, &b.ver)
            .await?;
    let mut response = prepare_join_event::v1::Response::new(raw_pdu(&template)?);
    response.room_version = Some(version);
    Ok(response)
}

fn raw_all(events: &[StoredEvent]) -> Result<Vec<Box<serde_json::value::RawValue>>> {
    events.iter().map(|e| raw_pdu(&e.pdu)).collect()
}

pub async fn send_join(
    hs: Arc<Homeserver>,
    req: Ruma<create_join_event::v2::Request>,
) -> Result<create_join_event::v2::Response> {
    let b = &req.body;
    let joined = membership::send_join(
        &hs,
        origin(&req)?,
        &b.room_id,
        &b.event_id,
        &b.pdu,
        b.omit_members,
    )
    .await?;
    let mut state = create_join_event::v2::RoomState::new();
    state.auth_chain = raw_all(&joined.state.auth_chain)?;
    state.state = raw_all(&joined.state.state)?;
    state.event = Some(raw_pdu(&joined.event.pdu)?);
    state.members_omitted = b.omit_members;
    if b.omit_members {
        state.servers_in_room = Some(joined.state.servers_in_room);
    }
    Ok(create_join_event::v2::Response::new(state))
}

/// v1: the same, answered `[200, {"origin", "auth_chain", "state"}]` (never omitting
/// members).
pub async fn send_join_v1(hs: Arc<Homeserver>, req: Ruma<SendJoinV1>) -> Result<V1Response> {
    let b = &req.body;
    let joined =
        membership::send_join(&hs, origin(&req)?, &b.room_id, &b.event_id, &b.event, false).await?;
    let pdus = |events: &[StoredEvent]| events.iter().map(|e| e.pdu.clone()).collect::<Vec<_>>();
    Ok(V1Response::new(json!({
        "origin": hs.config.server_name(),
        "auth_chain": pdus(&joined.state.auth_chain),
        "state": pdus(&joined.state.state),
        "event": joined.event.pdu,
    })))
}

pub async fn make_leave(
    hs: Arc<Homeserver>,
    req: Ruma<prepare_leave_event::v1::Request>,
) -> Result<prepare_leave_event::v1::Response> {
    let b = &req.body;
    let (version, template) =
        remote_membership::leave_template(&hs, origin(&req)?, &b.room_id, &b.user_id).await?;
    Ok(prepare_leave_event::v1::Response::new(
        Some(version),
        raw_pdu(&template)?,
    ))
}

pub async fn send_leave(
    hs: Arc<Homeserver>,
    req: Ruma<create_leave_event::v2::Request>,
) -> Result<create_leave_event::v2::Response> {
    let b = &req.body;
    membership::send_leave(&hs, origin(&req)?, &b.room_id, &b.event_id, &b.pdu).await?;
    Ok(create_leave_event::v2::Response::new())
}

/// v1: the same, answered `[200, {}]`.
pub async fn send_leave_v1(hs: Arc<Homeserver>, req: Ruma<SendLeaveV1>) -> Result<V1Response> {
    let b = &req.body;
    membership::send_leave(&hs, origin(&req)?, &b.room_id, &b.event_id, &b.event).await?;
    Ok(V1Response::new(json!({})))
}

pub async fn invite_v2(
    hs: Arc<Homeserver>,
    req: Ruma<create_invite::v2::Request>,
) -> Result<create_invite::v2::Response> {
    let b = &req.body;
    let event = invite::receive_invite(
        &hs,
        origin(&req)?,
        &b.room_id,
        &b.event_id,
        &b.room_version,
        &b.event,
        &invite::sent_room_state(&b.invite_room_state),
    )
    .await?;
    Ok(create_invite::v2::Response::new(event))
}

/// v1: the body is the event itself, its room state in `unsigned.invite_room_state`;
/// the room's version is not given, and v1 or v2 rooms are the only ones it served.
pub async fn invite_v1(hs: Arc<Homeserver>, req: Ruma<InviteV1>) -> Result<V1Response> {
    let b = &req.body;
    let mut event: serde_json::Map<String, JsonValue> = serde_json::from_str(b.event.get())
        .map_err(|e| Error::BadJson(format!("invite event: {e}")))?;
    let room_state: Vec<JsonValue> = event
        .get_mut("unsigned")
        .and_then(|u| u.as_object_mut())
        .and_then(|u| u.remove("invite_room_state"))
        .and_then(|s| match s {
            JsonValue::Array(items) => Some(items),
            _ => None,
        })
        .unwrap_or_default();
    let pdu =
        serde_json::value::to_raw_value(&event).map_err(|e| Error::Internal(e.to_string()))?;
    let signed = invite::receive_invite(
        &hs,
        origin(&req)?,
        &b.room_id,
        &b.event_id,
        &RoomVersionId::V1,
        &pdu,
        &room_state,
    )
    .await?;
    let signed: JsonValue =
        serde_json::from_str(signed.get()).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(V1Response::new(json!({ "event": signed })))
}

pub async fn make_knock(
    hs: Arc<Homeserver>,
    req: Ruma<prepare_knock_event::v1::Request>,
) -> Result<prepare_knock_event::v1::Response> {
    let b = &req.body;
    let (version, template) =
        remote_membership::knock_template(&hs, origin(&req)?, &b.room_id, &b.user_id, &b.ver)
            .await?;
    Ok(prepare_knock_event::v1::Response::new(
        version,
        raw_pdu(&template)?,
    ))
}

pub async fn send_knock(
    hs: Arc<Homeserver>,
    req: Ruma<create_knock_event::v1::Request>,
) -> Result<create_knock_event::v1::Response> {
    let b = &req.body;
    let room_state =
        membership::send_knock(&hs, origin(&req)?, &b.room_id, &b.event_id, &b.pdu).await?;
    let room_state = room_state
        .iter()
        .map(|e| Ok(RawStrippedState::Pdu(raw_pdu(e)?)))
        .collect::<Result<_>>()?;
    Ok(create_knock_event::v1::Response::new(room_state))
}
