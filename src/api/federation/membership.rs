//! Joins and leaves: `GET /make_join`, `PUT /v2/send_join`, `GET /make_leave`,
//! `PUT /v2/send_leave`.

use std::sync::Arc;

use ruma::api::federation::membership::{
    create_join_event, create_leave_event, prepare_join_event, prepare_leave_event,
};

use super::events::{origin, raw_pdu};
use crate::{
    error::Result, federation::membership, http::Ruma, rooms::remote_membership,
    server::Homeserver, storage::events::StoredEvent,
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
