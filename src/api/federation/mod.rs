//! Server-Server API handlers, one file per area of the spec.

use std::sync::Arc;

use axum::Router;

use crate::{http::route, server::Homeserver};

pub mod events;
pub mod keys;
pub mod media;
pub mod membership;
pub mod query;
pub mod thirdparty;
pub mod transactions;
pub mod user_keys;
pub mod version;

/// The key endpoints: our keys wherever they are asked for (the client listener too);
/// the notary's only with federation on, since they make us fetch from other servers.
pub fn key_routes(router: Router<Arc<Homeserver>>, notary: bool) -> Router<Arc<Homeserver>> {
    let router = route(router, keys::server_keys).route(
        "/_matrix/key/v2/server/{key_id}",
        axum::routing::get(keys::server_keys_by_id),
    );
    if !notary {
        return router;
    }
    let router = route(router, keys::query_one).route(
        "/_matrix/key/v2/query/{server_name}/{key_id}",
        axum::routing::get(keys::query_one_by_id),
    );
    route(router, keys::query_batch)
}

/// The federation endpoints proper (`/_matrix/federation/...`).
/// The endpoints under `/_matrix/federation` that third parties call without X-Matrix,
/// served on the client listener too: `/openid/userinfo` (widgets ask where the client API
/// is, as Synapse's `openid` resource allows) and identity servers' `/3pid/onbind` (sent
/// to the homeserver's client URL).
pub fn unsigned_routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = router.route(
        "/_matrix/federation/v1/openid/userinfo",
        axum::routing::get(query::openid_userinfo),
    );
    crate::http::extract::route_with_method(
        router,
        thirdparty::on_bind,
        axum::routing::MethodFilter::POST,
    )
}

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = unsigned_routes(router);
    let router = route(router, thirdparty::exchange);
    let router = route(router, version::version);
    let router = route(router, events::event);
    let router = route(router, events::state);
    let router = route(router, events::state_ids);
    let router = route(router, events::event_auth);
    let router = route(router, events::missing_events);
    let router = route(router, events::backfill);
    let router = route(router, events::timestamp_to_event);
    let router = route(router, membership::make_join);
    let router = route(router, membership::send_join);
    let router = route(router, membership::make_leave);
    let router = route(router, membership::send_leave);
    let router = route(router, membership::make_knock);
    let router = route(router, membership::send_knock);
    let router = route(router, membership::invite_v1);
    let router = route(router, membership::send_join_v1);
    let router = route(router, membership::send_leave_v1);
    let router = route(router, membership::invite_v2);
    let router = route(router, query::profile);
    let router = route(router, query::directory);
    let router = route(router, query::public_rooms);
    let router = route(router, query::public_rooms_filtered);
    let router = route(router, query::hierarchy);
    let router = route(router, media::download);
    let router = route(router, media::thumbnail);
    let router = route(router, user_keys::devices);
    let router = route(router, user_keys::query);
    let router = route(router, user_keys::claim);
    route(router, transactions::send)
}
