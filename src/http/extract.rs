//! The ruma <-> axum bridge: `Ruma<T>` decodes any ruma request type (after checking the
//! access token its auth scheme asks for), and `route` registers a handler for every path
//! of the type's version history.

use std::{future::Future, net::SocketAddr, sync::Arc};

use axum::{
    Router,
    extract::{ConnectInfo, FromRequest, FromRequestParts, Path, Request, State},
    response::{IntoResponse, Response},
    routing::{MethodFilter, on},
};
use bytes::BytesMut;
use http_body_util::{BodyExt, LengthLimitError, Limited};
use ruma::api::{
    IncomingRequest, IncomingRequestExt, OutgoingResponseExt,
    auth_scheme::{
        AccessToken, AccessTokenOptional, AppserviceToken, AppserviceTokenOptional, NoAccessToken,
        NoAuthentication,
    },
    error::{DeserializationError, FromHttpRequestError},
    path_builder::PathBuilder,
};

use super::error::ApiError;
use crate::{
    error::{Error, Result},
    ratelimit::Action,
    server::Homeserver,
    users::{self, ClientInfo, Requester},
};

/// Whether an endpoint wants an access token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenUse {
    Ignored,
    Optional,
    Required,
}

/// Maps ruma's auth scheme of an endpoint to how axon treats the access token.
pub trait AuthRequirement {
    const TOKEN: TokenUse;
}

impl AuthRequirement for NoAuthentication {
    const TOKEN: TokenUse = TokenUse::Ignored;
}
impl AuthRequirement for NoAccessToken {
    const TOKEN: TokenUse = TokenUse::Ignored;
}
impl AuthRequirement for AccessToken {
    const TOKEN: TokenUse = TokenUse::Required;
}
impl AuthRequirement for AccessTokenOptional {
    const TOKEN: TokenUse = TokenUse::Optional;
}
// Application services are not supported yet; their tokens are treated as user tokens
// where required and ignored where optional (register, login), so ordinary clients work.
impl AuthRequirement for AppserviceToken {
    const TOKEN: TokenUse = TokenUse::Required;
}
impl AuthRequirement for AppserviceTokenOptional {
    const TOKEN: TokenUse = TokenUse::Ignored;
}

/// A decoded request with the caller behind it.
pub struct Ruma<T> {
    pub body: T,
    pub requester: Option<Requester>,
    pub client: ClientInfo,
}

impl<T> Ruma<T> {
    /// The authenticated caller; only `None` on endpoints whose token is optional.
    pub fn requester(&self) -> Result<&Requester> {
        self.requester.as_ref().ok_or(Error::MissingToken)
    }
}

fn access_token(parts: &http::request::Parts) -> Option<String> {
    if let Some(value) = parts.headers.get(http::header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        return value.strip_prefix("Bearer ").map(|t| t.trim().to_owned());
    }
    parts.uri.query().and_then(|q| {
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == "access_token").then(|| percent_decode(v))
        })
    })
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(b) = u8::from_str_radix(&s[i + 1..i + 3], 16)
        {
            out.push(b);
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The authenticated requester of a request whose body the handler reads itself (media
/// uploads stream it to storage instead of buffering it).
pub struct Authed(pub crate::users::Requester);

impl axum::extract::FromRequestParts<Arc<Homeserver>> for Authed {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        hs: &Arc<Homeserver>,
    ) -> Result<Self, ApiError> {
        let client = client_info(parts);
        let token = access_token(parts).ok_or(Error::MissingToken)?;
        let requester = users::authenticate(hs, &token, &client).await?;
        hs.rate_limiter
            .check(Action::Request, requester.user_id.as_str())?;
        Ok(Self(requester))
    }
}

fn client_info(parts: &http::request::Parts) -> ClientInfo {
    let ip = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip().to_string());
    let user_agent = parts
        .headers
        .get(http::header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().take(512).collect());
    ClientInfo { ip, user_agent }
}

/// Reads the whole body, refusing more than `limit` bytes (by Content-Length up front, and
/// while reading for chunked bodies).
async fn read_body(
    parts: &http::request::Parts,
    body: axum::body::Body,
    limit: usize,
) -> Result<bytes::Bytes> {
    let declared_too_large = parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
        .is_some_and(|len| len > limit as u64);
    if declared_too_large {
        return Err(Error::TooLarge);
    }
    let collected = Limited::new(body, limit).collect().await.map_err(|e| {
        if e.downcast_ref::<LengthLimitError>().is_some() {
            Error::TooLarge
        } else {
            Error::BadJson(format!("could not read the request body: {e}"))
        }
    })?;
    Ok(collected.to_bytes())
}

fn json_error(e: serde_json::Error) -> Error {
    if e.is_syntax() || e.is_eof() {
        Error::NotJson(format!("body is not valid JSON: {e}"))
    } else {
        Error::BadJson(format!("body does not match the endpoint: {e}"))
    }
}

/// A JSON body for the few endpoints ruma has no type for (Synapse's admin API), with the
/// same size limit and errors as `Ruma<T>`.
pub struct JsonBody<T> {
    pub body: T,
    pub client: ClientInfo,
}

impl<T: serde::de::DeserializeOwned> FromRequest<Arc<Homeserver>> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, hs: &Arc<Homeserver>) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        let client = client_info(&parts);
        let bytes = read_body(&parts, body, hs.config.limits.max_request_size).await?;
        let body = serde_json::from_slice(&bytes).map_err(json_error)?;
        Ok(Self { body, client })
    }
}

fn decode_error(err: FromHttpRequestError) -> Error {
    match err {
        FromHttpRequestError::Deserialization(DeserializationError::Json(e)) => json_error(e),
        FromHttpRequestError::Deserialization(DeserializationError::Utf8(e)) => {
            Error::NotJson(format!("body is not UTF-8: {e}"))
        }
        FromHttpRequestError::Deserialization(DeserializationError::Query(e)) => {
            let msg = e.to_string();
            if msg.contains("missing field") {
                Error::MissingParam(format!("query parameters: {msg}"))
            } else {
                Error::InvalidParam(format!("query parameters: {msg}"))
            }
        }
        FromHttpRequestError::Deserialization(DeserializationError::Ident(e)) => {
            Error::InvalidParam(format!("invalid identifier: {e}"))
        }
        FromHttpRequestError::Deserialization(e) => Error::BadJson(e.to_string()),
        FromHttpRequestError::MethodMismatch { .. } => {
            Error::Unrecognized("method not allowed for this endpoint".into())
        }
        _ => Error::BadJson(err.to_string()),
    }
}

impl<T> FromRequest<Arc<Homeserver>> for Ruma<T>
where
    T: IncomingRequest,
    T::Authentication: AuthRequirement,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, hs: &Arc<Homeserver>) -> Result<Self, ApiError> {
        let (mut parts, body) = req.into_parts();
        let path_args: Vec<String> =
            match Path::<Vec<String>>::from_request_parts(&mut parts, hs).await {
                Ok(Path(args)) => args,
                Err(_) => Vec::new(),
            };
        let mut path_args = path_args;
        if parts.extensions.get::<EmptyLastArg>().is_some() {
            path_args.push(String::new());
        }
        let client = client_info(&parts);

        let token = access_token(&parts);
        let requester = match (<T::Authentication as AuthRequirement>::TOKEN, token) {
            (TokenUse::Ignored, _) | (TokenUse::Optional, None) => None,
            (TokenUse::Required, None) => return Err(Error::MissingToken.into()),
            (_, Some(token)) => Some(users::authenticate(hs, &token, &client).await?),
        };
        // Endpoints the spec marks rate-limited, per user. Anonymous ones (login,
        // registration) have their own, stricter limits in the domain.
        if T::RATE_LIMITED
            && let Some(requester) = &requester
        {
            hs.rate_limiter
                .check(Action::Request, requester.user_id.as_str())?;
        }

        let bytes = read_body(&parts, body, hs.config.limits.max_request_size).await?;

        let args: Vec<&str> = path_args.iter().map(String::as_str).collect();
        let http_req = http::Request::from_parts(parts, bytes.as_ref());
        let body = T::try_from_http_request(http_req, &args).map_err(decode_error)?;
        Ok(Ruma {
            body,
            requester,
            client,
        })
    }
}

/// Encodes a ruma response.
pub fn respond<R: OutgoingResponseExt>(response: R) -> Response {
    match response.try_into_http_response::<BytesMut>() {
        Ok(r) => r
            .map(|b| axum::body::Body::from(b.freeze()))
            .into_response(),
        Err(e) => ApiError(Error::Internal(format!("encoding response: {e}"))).into_response(),
    }
}

/// Marks routes registered without the last path argument, which then is empty.
#[derive(Debug, Clone, Copy)]
struct EmptyLastArg;

/// Registers `handler` for every path and the method of ruma request type `T`.
pub fn route<T, F, Fut>(router: Router<Arc<Homeserver>>, handler: F) -> Router<Arc<Homeserver>>
where
    T: IncomingRequest + Send + 'static,
    T::Authentication: AuthRequirement,
    F: Fn(Arc<Homeserver>, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T::OutgoingResponse>> + Send + 'static,
{
    register(router, handler, false)
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
    let router = register(router, handler.clone(), false);
    register(router, handler, true)
}

fn register<T, F, Fut>(
    router: Router<Arc<Homeserver>>,
    handler: F,
    empty_last: bool,
) -> Router<Arc<Homeserver>>
where
    T: IncomingRequest + Send + 'static,
    T::Authentication: AuthRequirement,
    F: Fn(Arc<Homeserver>, Ruma<T>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Result<T::OutgoingResponse>> + Send + 'static,
{
    let method = MethodFilter::try_from(T::METHOD).expect("ruma endpoints use standard methods");
    let service = move |State(hs): State<Arc<Homeserver>>, req: Ruma<T>| {
        let handler = handler.clone();
        async move {
            match handler(hs, req).await {
                Ok(response) => respond(response),
                Err(e) => ApiError(e).into_response(),
            }
        }
    };
    let mut router = router;
    for path in T::PATH_BUILDER.all_paths() {
        if !empty_last {
            router = router.route(path, on(method, service.clone()));
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
