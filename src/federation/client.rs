//! Requests to other servers: TLS checked against the system's roots (plus
//! `federation.tls_ca_file`), one connection pool per destination on the addresses
//! discovery found, the `Host` header the spec asks for, X-Matrix signatures, a timeout,
//! and answers read up to a bound.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use ruma::{
    OwnedServerName, ServerName,
    api::{
        OutgoingRequest, OutgoingRequestExt,
        auth_scheme::{AuthScheme, NoAuthentication},
        federation::authentication::{ServerSignatures, XMatrixSigningInput},
        path_builder::SinglePath,
    },
    signatures::Ed25519KeyPair,
};

use super::discovery::{Discovery, Route, read_limited};
use crate::{config::FederationConfig, error::Error, outbound::OutboundPolicy};

/// How long a destination's route (and its connection pool) is used before discovery
/// runs again.
const ROUTE_LIFETIME: Duration = Duration::from_secs(3600);
/// The largest answer read from another server (a big room's state is tens of MB).
pub const MAX_RESPONSE_BYTES: usize = 64 * 1024 * 1024;
/// Destinations whose pools are kept before the oldest are dropped.
const MAX_POOLS: usize = 2048;

/// Why a request to another server failed.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Not reached: discovery, connection, TLS or a timeout.
    #[error("{0}")]
    Unreachable(String),
    /// It answered with an error status.
    #[error("answered {status}: {body}")]
    Refused { status: u16, body: String },
    /// It answered something that is not the endpoint's response.
    #[error("bad answer: {0}")]
    BadResponse(String),
    /// It answered with a success status, but a body that is not the endpoint's
    /// response (some servers answer a transaction with `{}`).
    #[error("undecodable answer: {0}")]
    Undecodable(String),
}

impl From<SendError> for Error {
    fn from(e: SendError) -> Self {
        Error::RemoteUnavailable(e.to_string())
    }
}

/// How an endpoint's auth scheme is satisfied on requests axon sends.
pub trait OutgoingAuth: AuthScheme {
    fn input<'a>(
        origin: &ServerName,
        destination: &ServerName,
        key: &'a Ed25519KeyPair,
    ) -> Self::Input<'a>;
}

impl OutgoingAuth for ServerSignatures {
    fn input<'a>(
        origin: &ServerName,
        destination: &ServerName,
        key: &'a Ed25519KeyPair,
    ) -> XMatrixSigningInput<'a> {
        XMatrixSigningInput::new(origin.to_owned(), destination.to_owned(), key)
    }
}

impl OutgoingAuth for NoAuthentication {
    fn input(_: &ServerName, _: &ServerName, _: &Ed25519KeyPair) {}
}

struct Pool {
    client: reqwest::Client,
    route: Route,
    until: Instant,
}

pub struct FederationClient {
    origin: OwnedServerName,
    tls: Arc<rustls::ClientConfig>,
    timeout: Duration,
    pub discovery: Discovery,
    pools: Mutex<HashMap<OwnedServerName, Pool>>,
}

impl std::fmt::Debug for FederationClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FederationClient")
            .field("origin", &self.origin)
            .finish_non_exhaustive()
    }
}

/// The TLS client configuration: platform roots plus the configured CA, or no checks at
/// all when `verify_certificates` is off (tests only).
pub fn tls_config(config: &FederationConfig) -> Result<Arc<rustls::ClientConfig>, String> {
    crate::outbound::tls_client_config(config.verify_certificates, config.tls_ca_file.as_deref())
}

impl FederationClient {
    pub fn new(
        config: &FederationConfig,
        origin: &ServerName,
        policy: OutboundPolicy,
    ) -> Result<Self, String> {
        let tls = tls_config(config)?;
        let timeout = Duration::from_secs(config.request_timeout_secs);
        let discovery = Discovery::new(config, policy, &tls, timeout.min(Duration::from_secs(30)))?;
        Ok(Self {
            origin: origin.to_owned(),
            tls,
            timeout,
            discovery,
            pools: Mutex::default(),
        })
    }

    /// The pool for a destination, discovering its route when there is none or it is old.
    async fn pool(&self, destination: &ServerName) -> Result<(reqwest::Client, Route), SendError> {
        let now = Instant::now();
        if let Some(pool) = self
            .pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(destination)
            && pool.until > now
        {
            return Ok((pool.client.clone(), pool.route.clone()));
        }
        let route = self
            .discovery
            .resolve(destination)
            .await
            .map_err(|e| SendError::Unreachable(format!("{destination}: {e}")))?;
        let mut builder = reqwest::Client::builder()
            .tls_backend_preconfigured((*self.tls).clone())
            .redirect(reqwest::redirect::Policy::none())
            .timeout(self.timeout)
            .connect_timeout(self.timeout.min(Duration::from_secs(20)))
            .pool_idle_timeout(Duration::from_secs(90));
        if route.tls_name.parse::<std::net::IpAddr>().is_err() {
            builder = builder.resolve_to_addrs(&route.tls_name, &route.addrs);
        }
        let client = builder
            .build()
            .map_err(|e| SendError::Unreachable(format!("HTTP client: {e}")))?;
        let mut pools = self.pools.lock().unwrap_or_else(|e| e.into_inner());
        if pools.len() >= MAX_POOLS {
            pools.retain(|_, p| p.until > now);
        }
        pools.insert(
            destination.to_owned(),
            Pool {
                client: client.clone(),
                route: route.clone(),
                until: now + ROUTE_LIFETIME,
            },
        );
        Ok((client, route))
    }

    /// An unsigned `GET` of `path_and_query` on `destination` (the legacy media
    /// download of servers without the federation media API): its headers and at most
    /// `max_bytes` of its body.
    pub async fn get_unsigned(
        &self,
        destination: &ServerName,
        path_and_query: &str,
        max_bytes: usize,
    ) -> Result<(reqwest::header::HeaderMap, Vec<u8>), SendError> {
        let (client, route) = self.pool(destination).await?;
        let url = format!("{}{path_and_query}", route.base_url());
        let mut request = client.get(url);
        if let Ok(host) = reqwest::header::HeaderValue::from_str(&route.host_header) {
            request = request.header(reqwest::header::HOST, host);
        }
        let response = request
            .send()
            .await
            .map_err(|e| SendError::Unreachable(format!("{destination}: {e}")))?;
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_body(destination, status, response, max_bytes).await?;
        Ok((headers, body))
    }

    /// Forgets a destination's route, so the next request discovers it again.
    pub fn forget_route(&self, destination: &ServerName) {
        self.pools
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(destination);
    }

    /// Sends a ruma request to `destination`, signed with `key` when its endpoint asks
    /// for X-Matrix, and decodes the answer.
    pub async fn send<R>(
        &self,
        key: &Ed25519KeyPair,
        destination: &ServerName,
        request: R,
    ) -> Result<R::IncomingResponse, SendError>
    where
        R: OutgoingRequest<PathBuilder = SinglePath>,
        R::Authentication: OutgoingAuth,
    {
        self.send_limited(key, destination, request, MAX_RESPONSE_BYTES)
            .await
    }

    /// `send`, reading at most `max_bytes` of the answer (media).
    pub async fn send_limited<R>(
        &self,
        key: &Ed25519KeyPair,
        destination: &ServerName,
        request: R,
        max_bytes: usize,
    ) -> Result<R::IncomingResponse, SendError>
    where
        R: OutgoingRequest<PathBuilder = SinglePath>,
        R::Authentication: OutgoingAuth,
    {
        let (client, route) = self.pool(destination).await?;
        let auth = <R::Authentication as OutgoingAuth>::input(&self.origin, destination, key);
        let http_request = request
            .try_into_http_request::<Vec<u8>>(&route.base_url(), auth, ())
            .map_err(|e| SendError::BadResponse(format!("request not built: {e}")))?;
        let mut outgoing = reqwest::Request::try_from(http_request)
            .map_err(|e| SendError::BadResponse(format!("request not built: {e}")))?;
        if let Ok(host) = reqwest::header::HeaderValue::from_str(&route.host_header) {
            outgoing.headers_mut().insert(reqwest::header::HOST, host);
        }
        let response = match client.execute(outgoing).await {
            Ok(r) => r,
            Err(e) => {
                // The route may be stale (a moved server); look it up again next time.
                if e.is_connect() {
                    self.forget_route(destination);
                }
                return Err(SendError::Unreachable(format!("{destination}: {e}")));
            }
        };
        let status = response.status();
        let headers = response.headers().clone();
        let body = read_body(destination, status, response, max_bytes).await?;
        let mut builder = http::Response::builder().status(status);
        for (name, value) in &headers {
            builder = builder.header(name, value);
        }
        let http_response = builder
            .body(body.as_slice())
            .map_err(|e| SendError::BadResponse(e.to_string()))?;
        // ruma's decoders are not all total: a malformed answer must not panic us.
        let decoded = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            <R::IncomingResponse as ruma::api::IncomingResponseExt>::try_from_http_response(
                http_response,
            )
        }))
        .map_err(|_| SendError::Undecodable(format!("{destination}: undecodable answer")))?;
        decoded.map_err(|e| SendError::Undecodable(format!("{destination}: {e}")))
    }
}

/// An answer's body, at most `max_bytes`; an error status is `Refused` with the start of
/// what it said.
async fn read_body(
    destination: &ServerName,
    status: reqwest::StatusCode,
    response: reqwest::Response,
    max_bytes: usize,
) -> Result<Vec<u8>, SendError> {
    let body = read_limited(response, max_bytes)
        .await
        .map_err(|e| SendError::BadResponse(format!("{destination}: {e}")))?;
    if !status.is_success() {
        let text = String::from_utf8_lossy(&body[..body.len().min(512)]).into_owned();
        return Err(SendError::Refused {
            status: status.as_u16(),
            body: text,
        });
    }
    Ok(body)
}
