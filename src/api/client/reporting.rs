//! Reporting, knocking, mutual rooms, timestamp lookup.

use std::sync::Arc;

use axum::Router;
use ruma::{
    MilliSecondsSinceUnixEpoch, UInt,
    api::{
        Direction,
        client::{
            knock::knock_room,
            membership::get_mutual_rooms,
            reporting::report_user,
            room::{get_event_by_timestamp, report_content, report_room},
        },
    },
};

use crate::{
    error::{Error, Result},
    http::{Ruma, route},
    rooms::{membership, reports},
    server::Homeserver,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = route(router, report_event);
    let router = route(router, report_a_room);
    let router = route(router, report_a_user);
    let router = route(router, knock);
    let router = route(router, mutual_rooms);
    let router = route(router, mutual_rooms_unstable);
    route(router, timestamp_to_event)
}

async fn report_event(
    hs: Arc<Homeserver>,
    req: Ruma<report_content::v3::Request>,
) -> Result<report_content::v3::Response> {
    let b = &req.body;
    reports::report_event(
        &hs,
        req.requester()?,
        &b.room_id,
        &b.event_id,
        b.reason.as_deref(),
    )
    .await?;
    Ok(report_content::v3::Response::new())
}

async fn report_a_room(
    hs: Arc<Homeserver>,
    req: Ruma<report_room::v3::Request>,
) -> Result<report_room::v3::Response> {
    reports::report_room(&hs, req.requester()?, &req.body.room_id, &req.body.reason).await?;
    Ok(report_room::v3::Response::new())
}

async fn report_a_user(
    hs: Arc<Homeserver>,
    req: Ruma<report_user::v3::Request>,
) -> Result<report_user::v3::Response> {
    reports::report_user(&hs, req.requester()?, &req.body.user_id, &req.body.reason).await?;
    Ok(report_user::v3::Response::new())
}

async fn knock(
    hs: Arc<Homeserver>,
    req: Ruma<knock_room::v3::Request>,
) -> Result<knock_room::v3::Response> {
    let b = &req.body;
    let room_id = crate::federation::knock::knock_room(
        &hs,
        req.requester()?,
        b.room_id_or_alias.as_str(),
        &b.via,
        b.reason.as_deref(),
    )
    .await?;
    Ok(knock_room::v3::Response::new(room_id))
}

async fn mutual_rooms(
    hs: Arc<Homeserver>,
    req: Ruma<get_mutual_rooms::v1::Request>,
) -> Result<get_mutual_rooms::v1::Response> {
    if req.body.from.is_some() {
        return Err(Error::InvalidParam(
            "all mutual rooms fit in one response; there is no next batch".into(),
        ));
    }
    let rooms = membership::mutual_rooms(&hs, req.requester()?, &req.body.user_id).await?;
    Ok(get_mutual_rooms::v1::Response::new(
        UInt::try_from(rooms.len()).unwrap_or_default(),
        rooms,
    ))
}

async fn mutual_rooms_unstable(
    hs: Arc<Homeserver>,
    req: Ruma<get_mutual_rooms::unstable::Request>,
) -> Result<get_mutual_rooms::unstable::Response> {
    let rooms = membership::mutual_rooms(&hs, req.requester()?, &req.body.user_id).await?;
    Ok(get_mutual_rooms::unstable::Response::new(rooms))
}

async fn timestamp_to_event(
    hs: Arc<Homeserver>,
    req: Ruma<get_event_by_timestamp::v1::Request>,
) -> Result<get_event_by_timestamp::v1::Response> {
    let b = &req.body;
    let forwards = b.dir == Direction::Forward;
    let ts = i64::from(b.ts.0);
    let (event_id, at) = crate::federation::backfill::event_at_timestamp(
        &hs,
        req.requester()?,
        &b.room_id,
        ts,
        forwards,
    )
    .await?;
    let event_id = ruma::EventId::parse(event_id).map_err(|e| Error::Internal(e.to_string()))?;
    let at = MilliSecondsSinceUnixEpoch(UInt::try_from(at).unwrap_or_default());
    Ok(get_event_by_timestamp::v1::Response::new(event_id, at))
}
