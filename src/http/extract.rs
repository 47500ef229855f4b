//! The ruma <-> axum bridge: `Ruma<T>` decodes any ruma request type (after checking the
//! access token its auth scheme asks for), and `route` registers a handler for every path
//! of the type's version history.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use axum::{
    extract::{
        ConnectInfo, FromRequest, FromRequestParts, Path, Request, rejection::PathRejection,
    },
    response::{IntoResponse, Response},
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
    federation::authentication::{ServerSignatures, XMatrix, XMatrixExtractError},
};

pub use super::routing::{
    Patches, route, route_optional_last, route_patched, route_patched_with_unstable,
    route_with_method, routed_endpoints,
};
use super::{
    error::ApiError,
    routing::{EmptyLastArg, MethodAlias, RequestPatch},
};
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
    /// Only an application service's token counts (registration and login of its users);
    /// any other is ignored, as before there were appservices.
    AppserviceOptional,
    /// Another server's X-Matrix signature, not an access token.
    Server,
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
impl AuthRequirement for AppserviceToken {
    const TOKEN: TokenUse = TokenUse::Required;
}
impl AuthRequirement for AppserviceTokenOptional {
    const TOKEN: TokenUse = TokenUse::AppserviceOptional;
}
impl AuthRequirement for ServerSignatures {
    const TOKEN: TokenUse = TokenUse::Server;
}

/// A decoded request with the caller behind it.
pub struct Ruma<T> {
    pub body: T,
    pub requester: Option<Requester>,
    /// The server that signed the request (X-Matrix endpoints only), verified.
    pub origin: Option<ruma::OwnedServerName>,
    pub client: ClientInfo,
    /// The JSON body as read (after any patch), for the fields ruma's types leave out
    /// (custom member content on `/join`).
    pub raw_body: bytes::Bytes,
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
        // The auth scheme is case-insensitive (RFC 9110 11.1).
        let (scheme, token) = value.split_once(' ')?;
        return scheme
            .eq_ignore_ascii_case("bearer")
            .then(|| token.trim().to_owned());
    }
    parts.uri.query().and_then(|q| {
        q.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == "access_token").then(|| percent_decode(v))
        })
    })
}

/// Decodes `%XX` escapes and `+` of a query value. Works on bytes: a `%` followed by
/// anything (raw UTF-8 included) that is not two hex digits is kept as it is.
fn percent_decode(s: &str) -> String {
    fn hex(b: u8) -> Option<u8> {
        (b as char).to_digit(16).map(|d| d as u8)
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = (bytes[i] == b'%')
            .then(|| Some(hex(*bytes.get(i + 1)?)? << 4 | hex(*bytes.get(i + 2)?)?))
            .flatten();
        if let Some(b) = escaped {
            out.push(b);
            i += 3;
        } else {
            out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The body of a request an `Authed` extractor before it has authenticated, read under the
/// same limits and JSON guard as `Ruma<T>` bodies (for the plain axum handlers that decode
/// JSON themselves: sliding sync).
pub struct AuthedBody(pub bytes::Bytes);

impl FromRequest<Arc<Homeserver>> for AuthedBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, hs: &Arc<Homeserver>) -> Result<Self, ApiError> {
        let (parts, body) = req.into_parts();
        Ok(Self(read_checked_body(hs, &parts, body, true).await?))
    }
}

/// axum's `Path`, answering a Matrix error (not plain text) for undecodable arguments
/// (`%FF`) and NUL characters; for the handlers that do not use `Ruma<T>` (media).
pub struct MatrixPath<T>(pub T);

impl<T, S> FromRequestParts<S> for MatrixPath<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        let raw = Path::<Vec<String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::InvalidParam(format!("path: {}", e.body_text())))?;
        check_no_nul(parts, &raw.0)?;
        let Path(value) = Path::<T>::from_request_parts(parts, state)
            .await
            .map_err(|e| Error::InvalidParam(format!("path: {}", e.body_text())))?;
        Ok(Self(value))
    }
}

/// axum's `Query`, answering a Matrix error for an undecodable query string.
pub struct MatrixQuery<T>(pub T);

impl<T, S> FromRequestParts<S> for MatrixQuery<T>
where
    T: serde::de::DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        check_no_nul(parts, &[])?;
        let axum::extract::Query(value) =
            axum::extract::Query::<T>::from_request_parts(parts, state)
                .await
                .map_err(|e| Error::InvalidParam(format!("query: {}", e.body_text())))?;
        Ok(Self(value))
    }
}

/// Refuses NUL characters in path arguments and the query string: nothing stored or
/// looked up may contain them (PostgreSQL text cannot).
fn check_no_nul(parts: &http::request::Parts, path_args: &[String]) -> Result<()> {
    let in_query = parts.uri.query().is_some_and(|q| q.contains("%00"));
    if in_query || path_args.iter().any(|a| a.contains('\0')) {
        return Err(Error::InvalidParam(
            "NUL characters are not allowed in paths or query parameters".into(),
        ));
    }
    Ok(())
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
        let requester =
            users::authenticate_masquerading(hs, &token, &client, masquerade(parts)).await?;
        check_guest(parts, &requester)?;
        if !unlimited_appservice(hs, &requester) {
            hs.rate_limiter
                .check(Action::Request, requester.user_id.as_str())?;
        }
        Ok(Self(requester))
    }
}

/// A guest may only call the endpoints `users::guests` lists.
/// `user_id=` and `device_id=` of the query (only an appservice's token may use them).
fn masquerade(parts: &http::request::Parts) -> users::appservice::Masquerade {
    let query = parts.uri.query().unwrap_or_default();
    let find = |name: &str| {
        query.split('&').find_map(|pair| {
            let (k, v) = pair.split_once('=')?;
            (k == name).then(|| percent_decode(v))
        })
    };
    users::appservice::Masquerade {
        user_id: find("user_id"),
        device_id: find("device_id").or_else(|| find("org.matrix.msc3202.device_id")),
    }
}

/// An appservice whose registration says `rate_limited: false`.
fn unlimited_appservice(hs: &Homeserver, requester: &Requester) -> bool {
    requester
        .appservice
        .as_deref()
        .and_then(|id| users::appservice::by_id(hs, id))
        .is_some_and(|r| !r.rate_limited)
}

/// What the account may call: a guest the guest endpoints; a locked or suspended account
/// what `users::moderation` allows.
fn check_guest(parts: &http::request::Parts, requester: &Requester) -> Result<(), Error> {
    let route = parts
        .extensions
        .get::<axum::extract::MatchedPath>()
        .map_or("", |m| m.as_str());
    users::moderation::check_request(requester, parts.method.as_str(), route)?;
    if !requester.is_guest {
        return Ok(());
    }
    if users::guests::guest_may(parts.method.as_str(), route) {
        Ok(())
    } else {
        Err(Error::GuestAccessForbidden)
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
/// while reading for chunked bodies) and a client that stops sending for `stall` (a body
/// shorter than its Content-Length would otherwise hold the request open for ever).
async fn read_body(
    parts: &http::request::Parts,
    body: axum::body::Body,
    limit: usize,
    stall: Duration,
) -> Result<bytes::Bytes> {
    if declared_length(parts).is_some_and(|len| len > limit as u64) {
        return Err(Error::TooLarge);
    }
    let mut body = Limited::new(body, limit);
    let mut collected = BytesMut::new();
    loop {
        let frame = match tokio::time::timeout(stall, body.frame()).await {
            Err(_) => return Err(Error::RequestTimeout),
            Ok(None) => break,
            Ok(Some(frame)) => frame.map_err(|e| {
                if e.downcast_ref::<LengthLimitError>().is_some() {
                    Error::TooLarge
                } else {
                    Error::BadJson(format!("could not read the request body: {e}"))
                }
            })?,
        };
        if let Ok(data) = frame.into_data() {
            collected.extend_from_slice(&data);
        }
    }
    Ok(collected.freeze())
}

fn declared_length(parts: &http::request::Parts) -> Option<u64> {
    parts
        .headers
        .get(http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<u64>().ok())
}

/// Reads a body under the edge's limits: the JSON guard's depth and NUL checks apply to
/// every body. Bodies of requests no access token vouches for are held to the smaller
/// unauthenticated size and share one budget of bytes in flight, so anonymous requests
/// cannot make the server buffer much.
async fn read_checked_body(
    hs: &Homeserver,
    parts: &http::request::Parts,
    body: axum::body::Body,
    authenticated: bool,
) -> Result<bytes::Bytes> {
    let limits = &hs.config.limits;
    let stall = Duration::from_secs(limits.body_read_timeout_secs);
    let bytes = if authenticated {
        read_body(parts, body, limits.max_request_size, stall).await?
    } else {
        let limit = limits
            .max_unauthenticated_request_size
            .min(limits.max_request_size);
        // What the body can be at most: exact for bodiless requests (most GETs), the
        // declared length, or the limit for chunked bodies.
        let expected = axum::body::HttpBody::size_hint(&body)
            .upper()
            .or(declared_length(parts))
            .map_or(limit as u64, |len| len.min(limit as u64));
        if expected == 0 {
            read_body(parts, body, limit, stall).await?
        } else {
            let permits = u32::try_from(expected).unwrap_or(u32::MAX);
            let _budget = hs
                .unauthenticated_body_budget
                .try_acquire_many(permits)
                .map_err(|_| Error::LimitExceeded {
                    retry_after_ms: 1000,
                })?;
            // A small body has no reason to trickle: the whole of it within the stall
            // timeout, so a slow client cannot hold its share of the budget for long.
            tokio::time::timeout(stall, read_body(parts, body, limit, stall))
                .await
                .map_err(|_| Error::RequestTimeout)??
        }
    };
    if bytes.is_empty() {
        // Most request bodies are optional in the spec, and clients send none (nio's
        // POST /join): an absent body is an empty object, as Synapse reads it.
        let has_body = matches!(parts.method, http::Method::POST | http::Method::PUT);
        return Ok(if has_body {
            bytes::Bytes::from_static(b"{}")
        } else {
            bytes
        });
    }
    crate::json_guard::check(&bytes, crate::json_guard::MAX_DEPTH)
        .map_err(|e| Error::BadJson(e.to_string()))?;
    Ok(bytes)
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
        let bytes = read_checked_body(hs, &parts, body, false).await?;
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
        let mut path_args: Vec<String> =
            match Path::<Vec<String>>::from_request_parts(&mut parts, hs).await {
                Ok(Path(args)) => args,
                Err(PathRejection::FailedToDeserializePathParams(e)) => {
                    return Err(Error::InvalidParam(format!("path: {}", e.body_text())).into());
                }
                Err(_) => Vec::new(),
            };
        if parts.extensions.get::<EmptyLastArg>().is_some() {
            path_args.push(String::new());
        }
        check_no_nul(&parts, &path_args)?;
        let client = client_info(&parts);

        let token_use = <T::Authentication as AuthRequirement>::TOKEN;
        // The signature covers the body, so it is checked once the body is read.
        let xmatrix = if token_use == TokenUse::Server {
            Some(
                XMatrix::extract_from_http_headers(&parts.headers).map_err(|e| match e {
                    XMatrixExtractError::MissingAuthorizationHeader => {
                        Error::Unauthorized("an X-Matrix Authorization header is required".into())
                    }
                    other => Error::BadAuthorization(format!("malformed X-Matrix header: {other}")),
                })?,
            )
        } else {
            None
        };
        let token = access_token(&parts);
        let requester = match (token_use, token) {
            (TokenUse::Ignored | TokenUse::Server, _)
            | (TokenUse::Optional | TokenUse::AppserviceOptional, None) => None,
            (TokenUse::Required, None) => return Err(Error::MissingToken.into()),
            // Registration and login name their user in the body; a `user_id=` the
            // appservice adds (mautrix does) is not whom the request acts as.
            (TokenUse::AppserviceOptional, Some(token)) => {
                match users::appservice::by_token(hs, &token) {
                    Some(registration) => Some(
                        users::appservice::requester(hs, registration, Default::default()).await?,
                    ),
                    None => None,
                }
            }
            (_, Some(token)) => Some(
                users::authenticate_masquerading(hs, &token, &client, masquerade(&parts)).await?,
            ),
        };
        if let Some(requester) = &requester {
            check_guest(&parts, requester)?;
        }
        // Endpoints the spec marks rate-limited, per user. Anonymous ones (login,
        // registration) have their own, stricter limits in the domain.
        if T::RATE_LIMITED
            && let Some(requester) = &requester
            && !unlimited_appservice(hs, requester)
        {
            hs.rate_limiter
                .check(Action::Request, requester.user_id.as_str())?;
        }

        let vouched = requester.is_some() || xmatrix.is_some();
        let mut bytes = read_checked_body(hs, &parts, body, vouched).await?;
        if let Some(RequestPatch(edit)) = parts.extensions.get::<RequestPatch>().copied()
            && !bytes.is_empty()
        {
            let mut json: serde_json::Value = serde_json::from_slice(&bytes).map_err(json_error)?;
            edit(&mut json)?;
            bytes = serde_json::to_vec(&json)
                .map_err(|e| Error::Internal(e.to_string()))?
                .into();
        }

        let args: Vec<&str> = path_args.iter().map(String::as_str).collect();
        let mut http_req = http::Request::from_parts(parts, bytes.as_ref());
        // A route also answering another method (`route_with_method`) decodes as the spec's.
        if http_req.extensions().get::<MethodAlias>().is_some() {
            *http_req.method_mut() = T::METHOD;
        }
        // A body that is not JSON cannot have been signed: say so, not "bad signature".
        if xmatrix.is_some() && !http_req.body().is_empty() {
            if serde_json::from_slice::<serde::de::IgnoredAny>(http_req.body()).is_err() {
                return Err(Error::NotJson("the request body is not JSON".into()).into());
            }
            // Signed bodies are canonical JSON: no floats, integers within 2^53.
            if serde_json::from_slice::<ruma::CanonicalJsonValue>(http_req.body()).is_err() {
                return Err(Error::BadJson("the request body is not canonical JSON".into()).into());
            }
        }
        let origin = match &xmatrix {
            Some(xmatrix) => {
                Some(crate::federation::auth::verify_request(hs, xmatrix, &http_req).await?)
            }
            None => None,
        };
        // ruma's decoders are not all total (a login body without `type` panicked); a
        // request they cannot decode is the client's error, not a dropped connection.
        DECODING.set(true);
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            T::try_from_http_request(http_req, &args)
        }));
        DECODING.set(false);
        let decoded = decoded
            .map_err(|_| Error::BadJson("the request does not match the endpoint".into()))?;
        let body = decoded.map_err(decode_error)?;
        Ok(Ruma {
            body,
            requester,
            origin,
            client,
            raw_body: bytes,
        })
    }
}

thread_local! {
    /// Set while ruma decodes a request on this thread: a panic there is a malformed
    /// request, answered 400, not a bug of ours.
    static DECODING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether a panic now on this thread comes from decoding a request (for the panic hook,
/// which then logs quietly: clients can cause these at will).
pub fn panic_is_from_decoding() -> bool {
    DECODING.get()
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
