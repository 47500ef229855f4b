//! Room summary and space hierarchy.

use std::sync::Arc;

use axum::Router;
use ruma::{
    api::client::{
        room::get_summary,
        space::{SpaceHierarchyRoomsChunk, get_hierarchy},
    },
    room::RoomSummary,
    serde::Raw,
};

use crate::{
    error::{Error, Result},
    http::{Ruma, route},
    rooms::membership,
    server::Homeserver,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = route(router, summary);
    route(router, hierarchy)
}

fn to_summary(value: serde_json::Value) -> Result<RoomSummary> {
    serde_json::from_value(value).map_err(|e| Error::Internal(format!("room summary: {e}")))
}

async fn summary(
    hs: Arc<Homeserver>,
    req: Ruma<get_summary::v1::Request>,
) -> Result<get_summary::v1::Response> {
    let room_id = membership::resolve_room(&hs, req.body.room_id_or_alias.as_str()).await?;
    let (summary, membership) =
        crate::federation::spaces::summary(&hs, req.requester.as_ref(), &room_id, &req.body.via)
            .await?;
    let mut response = get_summary::v1::Response::new(to_summary(summary)?);
    response.membership = membership.map(|m| m.as_str().into());
    Ok(response)
}

async fn hierarchy(
    hs: Arc<Homeserver>,
    req: Ruma<get_hierarchy::v1::Request>,
) -> Result<get_hierarchy::v1::Response> {
    let b = &req.body;
    let (rooms, next) = crate::federation::spaces::hierarchy(
        &hs,
        req.requester()?,
        &b.room_id,
        b.suggested_only,
        b.max_depth.map(|d| u64::from(d) as usize),
        b.limit.map(|l| u64::from(l) as usize).unwrap_or(50),
        b.from.as_deref(),
    )
    .await?;
    let mut response = get_hierarchy::v1::Response::new();
    response.next_batch = next;
    for room in rooms {
        let children = room
            .children_state
            .iter()
            .map(|c| {
                serde_json::value::to_raw_value(c)
                    .map(Raw::from_json)
                    .map_err(|e| Error::Internal(e.to_string()))
            })
            .collect::<Result<_>>()?;
        response.rooms.push(SpaceHierarchyRoomsChunk::new(
            to_summary(room.summary)?,
            children,
        ));
    }
    Ok(response)
}
