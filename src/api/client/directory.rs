//! Room directory: aliases and the public room list.

use std::sync::Arc;

use axum::Router;
use ruma::api::client::{
    alias::{create_alias, delete_alias, get_alias},
    directory::{
        get_public_rooms, get_public_rooms_filtered, get_room_visibility, set_room_visibility,
    },
    room::{Visibility, aliases},
};

use crate::{
    error::{Error, Result},
    http::{Ruma, route},
    rooms::{aliases as domain, directory},
    server::Homeserver,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = route(router, create);
    let router = route(router, get);
    let router = route(router, delete);
    let router = route(router, public_rooms);
    let router = route(router, public_rooms_filtered);
    let router = route(router, visibility);
    let router = route(router, set_visibility);
    let router = route(router, set_appservice_visibility);
    route(router, room_aliases)
}

async fn set_appservice_visibility(
    hs: Arc<Homeserver>,
    req: Ruma<ruma::api::client::appservice::set_room_visibility::v3::Request>,
) -> Result<ruma::api::client::appservice::set_room_visibility::v3::Response> {
    let b = &req.body;
    crate::rooms::directory::set_appservice_listed(
        &hs,
        req.requester()?,
        &b.network_id,
        &b.room_id,
        b.visibility == Visibility::Public,
    )
    .await?;
    Ok(ruma::api::client::appservice::set_room_visibility::v3::Response::new())
}

async fn public_rooms(
    hs: Arc<Homeserver>,
    req: Ruma<get_public_rooms::v3::Request>,
) -> Result<get_public_rooms::v3::Response> {
    let b = &req.body;
    let limit = b.limit.map(|l| u64::from(l) as usize);
    let listing = crate::federation::directory::public_rooms(
        &hs,
        b.server.as_deref(),
        limit,
        b.since.as_deref(),
        None,
        &ruma::directory::RoomNetwork::Matrix,
    )
    .await?;
    let mut response = get_public_rooms::v3::Response::new(listing.typed_chunk()?);
    response.next_batch = listing.next_batch;
    response.prev_batch = listing.prev_batch;
    response.total_room_count_estimate = Some((listing.total as u32).into());
    Ok(response)
}

async fn public_rooms_filtered(
    hs: Arc<Homeserver>,
    req: Ruma<get_public_rooms_filtered::v3::Request>,
) -> Result<get_public_rooms_filtered::v3::Response> {
    let b = &req.body;
    let limit = b.limit.map(|l| u64::from(l) as usize);
    let listing = crate::federation::directory::public_rooms(
        &hs,
        b.server.as_deref(),
        limit,
        b.since.as_deref(),
        b.filter.generic_search_term.as_deref(),
        &b.room_network,
    )
    .await?;
    let mut response = get_public_rooms_filtered::v3::Response::new();
    response.chunk = listing.typed_chunk()?;
    response.next_batch = listing.next_batch;
    response.prev_batch = listing.prev_batch;
    response.total_room_count_estimate = Some((listing.total as u32).into());
    Ok(response)
}

async fn visibility(
    hs: Arc<Homeserver>,
    req: Ruma<get_room_visibility::v3::Request>,
) -> Result<get_room_visibility::v3::Response> {
    let listed = directory::is_listed(&hs, &req.body.room_id).await?;
    Ok(get_room_visibility::v3::Response::new(if listed {
        Visibility::Public
    } else {
        Visibility::Private
    }))
}

async fn set_visibility(
    hs: Arc<Homeserver>,
    req: Ruma<set_room_visibility::v3::Request>,
) -> Result<set_room_visibility::v3::Response> {
    let listed = match &req.body.visibility {
        Visibility::Public => true,
        Visibility::Private => false,
        other => {
            return Err(Error::InvalidParam(format!(
                "unknown visibility {}",
                other.as_str()
            )));
        }
    };
    directory::set_listed(&hs, req.requester()?, &req.body.room_id, listed).await?;
    Ok(set_room_visibility::v3::Response::new())
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
    let (room_id, servers) =
        crate::federation::query::room_alias(&hs, &req.body.room_alias).await?;
    Ok(get_alias::v3::Response::new(room_id, servers))
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
