//! The HTTP edge: the guards around every request (CORS, tracing, metrics, panics, the
//! database gate, Matrix fallbacks), the ruma extractor, error mapping and the
//! connection loop. The routes themselves are assembled in `api`.

use std::{sync::Arc, time::Duration};

use axum::{
    Router,
    extract::{MatchedPath, Request},
    middleware::Next,
    response::{IntoResponse, Response},
};
use http::{HeaderValue, Method, StatusCode, header};
use tower_http::trace::TraceLayer;
use tracing::Span;

use crate::server::Homeserver;

pub mod compat;
pub mod error;
pub mod extract;
pub mod routing;
pub mod serve;
pub mod tls;

pub use extract::{Ruma, route};

/// Wraps the routes in the guards every request passes, with Matrix answers for unknown
/// paths and methods.
pub fn guarded(router: Router<Arc<Homeserver>>, hs: Arc<Homeserver>) -> Router {
    router
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            hs.clone(),
            database_gate,
        ))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(panic_response))
        .layer(axum::middleware::from_fn_with_state(
            hs.clone(),
            record_metrics,
        ))
        .layer(axum::middleware::from_fn(cors))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|req: &Request| {
                    let route = req
                        .extensions()
                        .get::<MatchedPath>()
                        .map(|p| p.as_str().to_owned())
                        .unwrap_or_else(|| "(unmatched)".to_owned());
                    tracing::info_span!("request", method = %req.method(), route, status = tracing::field::Empty)
                })
                .on_request(())
                .on_response(|res: &Response, latency: Duration, span: &Span| {
                    span.record("status", res.status().as_u16());
                    tracing::info!(status = res.status().as_u16(), ms = latency.as_secs_f64() * 1000.0, "response");
                })
                .on_failure(()),
        )
        .with_state(hs)
}

/// Counts every answered request by route pattern and status, with its latency.
async fn record_metrics(
    axum::extract::State(hs): axum::extract::State<Arc<Homeserver>>,
    req: Request,
    next: Next,
) -> Response {
    let started = std::time::Instant::now();
    // Any token is a method to hyper; only the standard ones get their own series.
    let method = match *req.method() {
        Method::GET
        | Method::POST
        | Method::PUT
        | Method::DELETE
        | Method::OPTIONS
        | Method::HEAD
        | Method::PATCH => req.method().as_str().to_owned(),
        _ => "OTHER".to_owned(),
    };
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("(unmatched)", |p| p.as_str())
        .to_owned();
    let response = next.run(req).await;
    hs.metrics.observe_request(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed(),
    );
    response
}

/// While the database is known to be down, requests that need it get 503 with
/// `retry_after_ms` at once; the few that do not (versions, discovery) are still served.
async fn database_gate(
    axum::extract::State(hs): axum::extract::State<Arc<Homeserver>>,
    req: Request,
    next: Next,
) -> Response {
    let path = req.uri().path();
    let needs_database = !(path.starts_with("/.well-known/") || path == "/_matrix/client/versions");
    if needs_database && hs.storage.health().is_down() {
        return error::ApiError(crate::error::Error::Unavailable {
            retry_after_ms: 2000,
        })
        .into_response();
    }
    next.run(req).await
}

/// A panic in a handler: the panic hook has logged where; the client gets a Matrix 500
/// instead of a dropped connection.
fn panic_response(_panic: Box<dyn std::any::Any + Send + 'static>) -> Response {
    error::ApiError(crate::error::Error::Internal(
        "a request handler panicked".into(),
    ))
    .into_response()
}

/// CORS headers on every response, and an immediate answer to every OPTIONS request, as
/// the spec's "Web Browser Clients" section asks.
async fn cors(req: Request, next: Next) -> Response {
    let mut response = if req.method() == Method::OPTIONS {
        StatusCode::NO_CONTENT.into_response()
    } else {
        next.run(req).await
    };
    let headers = response.headers_mut();
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("GET, POST, PUT, DELETE, OPTIONS"),
    );
    headers.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("X-Requested-With, Content-Type, Authorization"),
    );
    response
}
