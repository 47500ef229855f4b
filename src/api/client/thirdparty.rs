//! `/thirdparty/*`: third-party protocols, locations and users.

use std::sync::Arc;

use axum::Router;
use ruma::api::client::thirdparty::{
    get_location_for_protocol, get_location_for_room_alias, get_protocol, get_protocols,
    get_user_for_protocol, get_user_for_user_id,
};

use crate::{
    error::Result,
    http::{Ruma, route},
    server::Homeserver,
    thirdparty as domain,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = route(router, protocols);
    let router = route(router, protocol);
    let router = route(router, locations);
    let router = route(router, users);
    let router = route(router, locations_for_alias);
    route(router, users_for_user_id)
}

async fn protocols(
    hs: Arc<Homeserver>,
    _req: Ruma<get_protocols::v3::Request>,
) -> Result<get_protocols::v3::Response> {
    Ok(get_protocols::v3::Response::new(
        domain::protocols(&hs).await,
    ))
}

async fn protocol(
    hs: Arc<Homeserver>,
    req: Ruma<get_protocol::v3::Request>,
) -> Result<get_protocol::v3::Response> {
    Ok(get_protocol::v3::Response::new(
        domain::protocol(&hs, &req.body.protocol).await?,
    ))
}

async fn locations(
    hs: Arc<Homeserver>,
    req: Ruma<get_location_for_protocol::v3::Request>,
) -> Result<get_location_for_protocol::v3::Response> {
    Ok(get_location_for_protocol::v3::Response::new(
        domain::locations(&hs, &req.body.protocol, &req.body.fields).await?,
    ))
}

async fn users(
    hs: Arc<Homeserver>,
    req: Ruma<get_user_for_protocol::v3::Request>,
) -> Result<get_user_for_protocol::v3::Response> {
    Ok(get_user_for_protocol::v3::Response::new(
        domain::users(&hs, &req.body.protocol, &req.body.fields).await?,
    ))
}

async fn locations_for_alias(
    hs: Arc<Homeserver>,
    req: Ruma<get_location_for_room_alias::v3::Request>,
) -> Result<get_location_for_room_alias::v3::Response> {
    Ok(get_location_for_room_alias::v3::Response::new(
        domain::locations_for_alias(&hs, req.body.alias.as_str()).await?,
    ))
}

async fn users_for_user_id(
    hs: Arc<Homeserver>,
    req: Ruma<get_user_for_user_id::v3::Request>,
) -> Result<get_user_for_user_id::v3::Response> {
    Ok(get_user_for_user_id::v3::Response::new(
        domain::users_for_user_id(&hs, req.body.userid.as_str()).await?,
    ))
}
