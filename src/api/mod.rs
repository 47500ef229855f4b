//! Thin HTTP handlers: parse (ruma), call one domain function, answer (ruma); and the
//! assembly of every route into the application.

use std::sync::Arc;

use axum::{
    Router,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, header};

use crate::server::Homeserver;

pub mod admin;
pub mod client;
pub mod federation;

/// The client listener's application: the Client-Server and admin APIs, our signing
/// keys, and the federation API when it has no listener of its own.
pub fn app(hs: Arc<Homeserver>) -> Router {
    let federating = hs.config.federation_enabled();
    let router = client::routes(Router::new());
    let router = admin::routes(router);
    let shared = federating && hs.config.listen.federation.is_none();
    let router = federation::key_routes(router, shared);
    let router = if shared {
        federation::routes(router)
    } else {
        federation::unsigned_routes(router)
    };
    crate::http::guarded(router, hs)
}

/// The federation listener's application: the Server-Server and key APIs.
pub fn federation_app(hs: Arc<Homeserver>) -> Router {
    let router = federation::key_routes(Router::new(), true);
    let router = federation::routes(router);
    crate::http::guarded(router, hs)
}

/// The metrics listener's app: `GET /metrics` in Prometheus' text format.
pub fn metrics_app(hs: Arc<Homeserver>) -> Router {
    Router::new()
        .route("/metrics", axum::routing::get(metrics))
        .with_state(hs)
}

async fn metrics(axum::extract::State(hs): axum::extract::State<Arc<Homeserver>>) -> Response {
    let gauges = crate::metrics::Gauges {
        db_pool_size: hs.storage.pool_size(),
        db_pool_idle: hs.storage.pool_idle(),
        db_pool_max: hs.config.database.max_connections,
        db_up: !hs.storage.health().is_down(),
        // Unknown while the database is away: reported as -1.
        push_queue_depth: hs.storage.push_queue_depth().await.unwrap_or(-1),
    };
    (
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/plain; version=0.0.4"),
        )],
        hs.metrics.render(&gauges),
    )
        .into_response()
}
