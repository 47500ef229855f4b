//! Registering handlers: `route` and its variants put a handler of a ruma request type on
//! every path of the type's version history (and, where deployed clients need it, another
//! method or the `/unstable` prefix), with optional JSON patches in and out.

use std::{future::Future, sync::Arc};

use axum::{
    Router,
    extract::State,
    response::{IntoResponse, Response},
    routing::{MethodFilter, on},
};
use ruma::api::{IncomingRequest, OutgoingResponseExt, path_builder::PathBuilder};

use super::{
    error::ApiError,
    extract::{AuthRequirement, Ruma, respond},
};
use crate::{
    error::{Error, Result},
    server::Homeserver,
};

/// Every (method, path pattern) registered through `route`, for tests that walk them all.
static ROUTED: std::sync::Mutex<std::collections::BTreeSet<(String, String)>> =
    std::sync::Mutex::new(std::collections::BTreeSet::new());

/// The endpoints served through `Ruma<T>` (all but the streaming media ones), as
/// (method, path pattern), once an app has been built.
pub fn routed_endpoints() -> Vec<(String, String)> {
    ROUTED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
        .cloned()
        .collect()
}

/// Encodes a ruma response, then edits its JSON with `patch`.
fn respond_patched<R: OutgoingResponseExt>(
    response: R,
    patch: fn(&mut serde_json::Value),
) -> Response {
    let encoded = match response.try_into_http_response::<Vec<u8>>() {
        Ok(r) => r,
        Err(e) => {
            return ApiError(Error::Internal(format!("encoding response: {e}"))).into_response();
        }
    };
    let (mut parts, body) = encoded.into_parts();
    parts.headers.remove(http::header::CONTENT_LENGTH);
    let body = match serde_json::from_slice::<serde_json::Value>(&body) {
        Ok(mut json) => {
            patch(&mut json);
            serde_json::to_vec(&json).unwrap_or(body)
        }
        Err(_) => body,
    };
    http::Response::from_parts(parts, axum::body::Body::from(body)).into_response()
}

/// A route's request patch (`Patches::request`).
#[derive(Clone, Copy)]
pub(super) struct RequestPatch(pub(super) fn(&mut serde_json::Value) -> Result<()>);

/// Marks routes registered without the last path argument, which then is empty.
#[derive(Debug, Clone, Copy)]
pub(super) struct EmptyLastArg;

/// Marks a route registered for a method other than its endpoint's.
#[derive(Clone, Copy)]
pub(super) struct MethodAlias;

/// Registers `handler` for every path and the method of ruma request type `T`.
pub fn route<T, F, Fut>(router: Router<Arc<Homeserver>>, handler: F) -> Router<Arc<Homeserver>>
where
    T: IncomingRequest + Send + 'static,
    T::Authentication: AuthRequirement,
    F: Fn(Arc<Homeserver>, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T::OutgoingResponse>> + Send + 'static,
{
    register(router, handler, false, Patches::default(), None, false)
}

/// As `route`, answering `method` too, where deployed clients or servers use another
/// method than the spec's (identity servers POST `/3pid/onbind`, which the spec PUTs).
pub fn route_with_method<T, F, Fut>(
    router: Router<Arc<Homeserver>>,
    handler: F,
    method: MethodFilter,
) -> Router<Arc<Homeserver>>
where
    T: IncomingRequest + Send + 'static,
    T::Authentication: AuthRequirement,
    F: Fn(Arc<Homeserver>, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T::OutgoingResponse>> + Send + 'static,
{
    let router = register(
        router,
        handler.clone(),
        false,
        Patches::default(),
        None,
        false,
    );
    register(
        router,
        handler,
        false,
        Patches::default(),
        Some(method),
        false,
    )
}

/// Edits of the JSON on the way in and out of one endpoint, where Synapse and ruma differ
/// and clients rely on Synapse: a request field Synapse defaults but ruma requires (a
/// typing notice's `timeout`), a response field ruma leaves out when it holds its default
/// but clients and test suites read (`limited: false` in /sync). A request patch may also
/// refuse the request with a more precise error than ruma's decoding would give.
#[derive(Debug, Clone, Copy, Default)]
pub struct Patches {
    pub request: Option<fn(&mut serde_json::Value) -> Result<()>>,
    pub response: Option<fn(&mut serde_json::Value)>,
}

/// As `route`, with `patch` applied to the request body before ruma decodes it and to the
/// JSON of every successful response.
pub fn route_patched<T, F, Fut>(
    router: Router<Arc<Homeserver>>,
    handler: F,
    patch: Patches,
) -> Router<Arc<Homeserver>>
where
    T: IncomingRequest + Send + 'static,
    T::Authentication: AuthRequirement,
    F: Fn(Arc<Homeserver>, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T::OutgoingResponse>> + Send + 'static,
{
    register(router, handler, false, patch, None, false)
}

/// As `route_patched`, also under `/_matrix/client/unstable/`, where Synapse serves the
/// endpoint too and clients or test suites call it there.
pub fn route_patched_with_unstable<T, F, Fut>(
    router: Router<Arc<Homeserver>>,
    handler: F,
    patch: Patches,
) -> Router<Arc<Homeserver>>
where
    T: IncomingRequest + Send + 'static,
    T::Authentication: AuthRequirement,
    F: Fn(Arc<Homeserver>, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T::OutgoingResponse>> + Send + 'static,
{
    register(router, handler, false, patch, None, true)
}

/// As `route`, and also for the paths with the last argument left empty (`.../state/{type}`
/// and `.../state/{type}/` mean state key ""), which a path pattern cannot match.
pub fn route_optional_last<T, F, Fut>(
    router: Router<Arc<Homeserver>>,
    handler: F,
) -> Router<Arc<Homeserver>>
where
    T: IncomingRequest + Send + 'static,
    T::Authentication: AuthRequirement,
    F: Fn(Arc<Homeserver>, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T::OutgoingResponse>> + Send + 'static,
{
    let router = register(
        router,
        handler.clone(),
        false,
        Patches::default(),
        None,
        false,
    );
    register(router, handler, true, Patches::default(), None, false)
}

fn register<T, F, Fut>(
    router: Router<Arc<Homeserver>>,
    handler: F,
    empty_last: bool,
    patch: Patches,
    method: Option<MethodFilter>,
    unstable_too: bool,
) -> Router<Arc<Homeserver>>
where
    T: IncomingRequest + Send + 'static,
    T::Authentication: AuthRequirement,
    F: Fn(Arc<Homeserver>, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T::OutgoingResponse>> + Send + 'static,
{
    let aliased = method.is_some();
    let method = method.unwrap_or_else(|| {
        MethodFilter::try_from(T::METHOD).expect("ruma endpoints use standard methods")
    });
    {
        let mut routed = ROUTED.lock().unwrap_or_else(|e| e.into_inner());
        for path in T::PATH_BUILDER.all_paths() {
            routed.insert((T::METHOD.to_string(), path.to_owned()));
        }
    }
    let service = move |State(hs): State<Arc<Homeserver>>, req: Ruma<T>| {
        let handler = handler.clone();
        async move {
            match (handler(hs, req).await, patch.response) {
                (Ok(response), None) => respond(response),
                (Ok(response), Some(patch)) => respond_patched(response, patch),
                (Err(e), _) => ApiError(e).into_response(),
            }
        }
    };
    let mut router = router;
    let mut paths: Vec<String> = T::PATH_BUILDER.all_paths().map(str::to_owned).collect();
    if unstable_too {
        let unstable: Vec<String> = paths
            .iter()
            .filter_map(|p| p.strip_prefix("/_matrix/client/v3/"))
            .map(|rest| format!("/_matrix/client/unstable/{rest}"))
            .filter(|p| !paths.contains(p))
            .collect();
        paths.extend(unstable);
    }
    for path in &paths {
        if !empty_last {
            let method_router = on(method, service.clone());
            let method_router = if aliased {
                method_router.layer(axum::Extension(MethodAlias))
            } else {
                method_router
            };
            // The extractor finds the request patch in the route's extensions.
            let method_router = match patch.request {
                Some(edit) => method_router.layer(axum::Extension(RequestPatch(edit))),
                None => method_router,
            };
            router = router.route(path, method_router);
            continue;
        }
        let Some((prefix, last)) = path.rsplit_once('/') else {
            continue;
        };
        if !last.starts_with('{') {
            continue;
        }
        for short in [prefix.to_owned(), format!("{prefix}/")] {
            router = router.route(
                &short,
                on(method, service.clone()).layer(axum::Extension(EmptyLastArg)),
            );
        }
    }
    router
}
