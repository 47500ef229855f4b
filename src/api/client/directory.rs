//! Room directory: aliases.

use std::sync::Arc;

use axum::Router;
use ruma::api::client::{
    alias::{create_alias, delete_alias, get_alias},
    room::aliases,
};

use crate::{
    error::Result,
    http::{Ruma, route},
    rooms::aliases as domain,
    server::Homeserver,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = route(router, create);
    let router = route(router, get);
    let router = route(router, delete);
    route(router, room_aliases)
}

async fn create(
    hs: Arc<Homeserver>,
    req: Ruma<create_alias::v3::Request>,
) -> Result<create_alias::v3::Response> {
    domain::create(
        &hs,
        req.requester()?,
        &req.body.room_alias,
        &req.body.room_id,
    )
    .await?;
    Ok(create_alias::v3::Response::new())
}

async fn get(
    hs: Arc<Homeserver>,
    req: Ruma<get_alias::v3::Request>,
) -> Result<get_alias::v3::Response> {
    let room_id = domain::resolve(&hs, &req.body.room_alias).await?;
    Ok(get_alias::v3::Response::new(
        room_id,
        vec![hs.config.server_name.clone()],
    ))
}

async fn delete(
    hs: Arc<Homeserver>,
    req: Ruma<delete_alias::v3::Request>,
) -> Result<delete_alias::v3::Response> {
    domain::delete(&hs, req.requester()?, &req.body.room_alias).await?;
    Ok(delete_alias::v3::Response::new())
}

async fn room_aliases(
    hs: Arc<Homeserver>,
    req: Ruma<aliases::v3::Request>,
) -> Result<aliases::v3::Response> {
    Ok(aliases::v3::Response::new(
        domain::of_room(&hs, req.requester()?, &req.body.room_id).await?,
    ))
}
