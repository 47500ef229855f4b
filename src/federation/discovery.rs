//! Server discovery (the spec's "Resolving server names"): from a server name to the
//! addresses, port, TLS name and `Host` header its requests use. In order: an IP literal;
//! a name with an explicit port; `/.well-known/matrix/server` delegation (then the same
//! steps for the delegated name, SRV included); SRV `_matrix-fed._tcp`, then the
//! deprecated `_matrix._tcp`; A/AAAA on port 8448. Every address passes the outbound
//! policy, so private and loopback addresses are refused unless `[outbound]` allows them.

use std::{
    collections::HashMap,
    net::{IpAddr, SocketAddr},
    sync::Mutex,
    time::{Duration, Instant},
};

use hickory_resolver::{
    TokioResolver,
    config::{ConnectionConfig, NameServerConfig, ResolverConfig},
    net::runtime::TokioRuntimeProvider,
    proto::rr::RData,
};
use ruma::ServerName;

use crate::{config::FederationConfig, outbound::OutboundPolicy};

/// How long a `.well-known` answer is kept without Cache-Control (the spec's 24 hours),
/// at most (48 hours), and after an error (an hour).
const WELL_KNOWN_DEFAULT: Duration = Duration::from_secs(24 * 3600);
const WELL_KNOWN_MAX: Duration = Duration::from_secs(48 * 3600);
const WELL_KNOWN_ERROR: Duration = Duration::from_secs(3600);
/// A `.well-known` document is a few dozen bytes; more is not read.
const WELL_KNOWN_MAX_BYTES: usize = 64 * 1024;
/// Redirects followed for `.well-known`, each hop checked against the outbound policy.
const MAX_REDIRECTS: usize = 5;

/// Where a server's requests go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    /// The name (or IP literal) TLS verifies and SNI carries.
    pub tls_name: String,
    /// The `Host` header the spec asks for.
    pub host_header: String,
    /// The addresses to connect to, in order of preference, all with the port to use.
    pub addrs: Vec<SocketAddr>,
}

impl Route {
    /// `https://<tls name>:<port>`: the URL every request to this server starts with.
    pub fn base_url(&self) -> String {
        let port = self.addrs.first().map_or(8448, SocketAddr::port);
        if self.tls_name.contains(':') {
            format!("https://[{}]:{port}", self.tls_name)
        } else {
            format!("https://{}:{port}", self.tls_name)
        }
    }
}

pub struct Discovery {
    dns: std::sync::Arc<TokioResolver>,
    policy: OutboundPolicy,
    well_known_client: reqwest::Client,
    well_known_port: u16,
    default_port: u16,
    /// Server name -> (delegated server, until when the answer holds).
    well_known: Mutex<HashMap<String, (Option<String>, Instant)>>,
}

impl std::fmt::Debug for Discovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Discovery").finish_non_exhaustive()
    }
}

fn host_and_port(name: &str) -> (String, Option<u16>) {
    // IPv6 literals come bracketed: `[::1]:8448`.
    if let Some(rest) = name.strip_prefix('[')
        && let Some((ip, after)) = rest.split_once(']')
    {
        return (
            ip.to_owned(),
            after.strip_prefix(':').and_then(|p| p.parse().ok()),
        );
    }
    match name.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => match port.parse() {
            Ok(port) => (host.to_owned(), Some(port)),
            Err(_) => (name.to_owned(), None),
        },
        _ => (name.to_owned(), None),
    }
}

fn host_header(host: &str, port: Option<u16>) -> String {
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    match port {
        Some(port) => format!("{host}:{port}"),
        None => host,
    }
}

impl Discovery {
    pub fn new(
        config: &FederationConfig,
        policy: OutboundPolicy,
        tls: &rustls::ClientConfig,
        timeout: Duration,
    ) -> Result<Self, String> {
        let builder = if config.resolver_nameservers.is_empty() {
            TokioResolver::builder_tokio().map_err(|e| format!("DNS resolver: {e}"))?
        } else {
            let servers = config
                .resolver_nameservers
                .iter()
                .map(|addr| {
                    let mut udp = ConnectionConfig::udp();
                    udp.port = addr.port();
                    let mut tcp = ConnectionConfig::tcp();
                    tcp.port = addr.port();
                    NameServerConfig::new(addr.ip(), true, vec![udp, tcp])
                })
                .collect();
            TokioResolver::builder_with_config(
                ResolverConfig::from_name_servers(servers),
                TokioRuntimeProvider::default(),
            )
        };
        let dns = std::sync::Arc::new(builder.build().map_err(|e| format!("DNS resolver: {e}"))?);
        // `.well-known` is fetched with the same resolver and the same policy.
        let well_known_client = reqwest::Client::builder()
            .dns_resolver(std::sync::Arc::new(PolicyResolver {
                dns: dns.clone(),
                policy: policy.clone(),
            }))
            .redirect(reqwest::redirect::Policy::none())
            .tls_backend_preconfigured(tls.clone())
            .timeout(timeout)
            .build()
            .map_err(|e| format!("HTTP client: {e}"))?;
        Ok(Self {
            dns,
            policy,
            well_known_client,
            well_known_port: config.well_known_port,
            default_port: config.default_port,
            well_known: Mutex::default(),
        })
    }

    /// Resolves a server name to its route.
    pub async fn resolve(&self, server: &ServerName) -> Result<Route, String> {
        let (host, port) = host_and_port(server.as_str());
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.ip_route(ip, port);
        }
        if let Some(port) = port {
            return self
                .address_route(&host, port, host_header(&host, Some(port)))
                .await;
        }
        if let Some(delegated) = self.delegation(&host).await {
            let (d_host, d_port) = host_and_port(&delegated);
            if let Ok(ip) = d_host.parse::<IpAddr>() {
                return self.ip_route(ip, d_port);
            }
            if let Some(port) = d_port {
                return self
                    .address_route(&d_host, port, host_header(&d_host, Some(port)))
                    .await;
            }
            return self.srv_then_default(&d_host).await;
        }
        self.srv_then_default(&host).await
    }

    fn ip_route(&self, ip: IpAddr, port: Option<u16>) -> Result<Route, String> {
        if !self.policy.permits(ip) {
            return Err(format!("{ip} is not a public address"));
        }
        Ok(Route {
            tls_name: ip.to_string(),
            host_header: host_header(&ip.to_string(), port),
            addrs: vec![SocketAddr::new(ip, port.unwrap_or(self.default_port))],
        })
    }

    async fn address_route(&self, host: &str, port: u16, header: String) -> Result<Route, String> {
        let addrs = self.addresses(host, port).await?;
        Ok(Route {
            tls_name: host.to_owned(),
            host_header: header,
            addrs,
        })
    }

    /// SRV (`_matrix-fed._tcp`, then `_matrix._tcp`), else A/AAAA on the default port;
    /// the `Host` header and TLS name stay `host` throughout.
    async fn srv_then_default(&self, host: &str) -> Result<Route, String> {
        for service in ["_matrix-fed._tcp", "_matrix._tcp"] {
            let mut targets = self.srv(&format!("{service}.{host}.")).await;
            targets.sort_by_key(|(priority, weight, _, _)| (*priority, std::cmp::Reverse(*weight)));
            for (_, _, target, port) in targets {
                if let Ok(addrs) = self.addresses(&target, port).await {
                    return Ok(Route {
                        tls_name: host.to_owned(),
                        host_header: host.to_owned(),
                        addrs,
                    });
                }
            }
        }
        self.address_route(host, self.default_port, host.to_owned())
            .await
    }

    async fn srv(&self, name: &str) -> Vec<(u16, u16, String, u16)> {
        let Ok(lookup) = self.dns.srv_lookup(name).await else {
            return Vec::new();
        };
        lookup
            .answers()
            .iter()
            .filter_map(|record| match &record.data {
                RData::SRV(srv) => {
                    let target = srv.target.to_utf8();
                    let target = target.trim_end_matches('.').to_owned();
                    // "." means the service is not offered here.
                    (!target.is_empty()).then_some((srv.priority, srv.weight, target, srv.port))
                }
                _ => None,
            })
            .collect()
    }

    /// A name's permitted addresses, with `port`.
    pub async fn addresses(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, String> {
        if let Ok(ip) = host.parse::<IpAddr>() {
            return if self.policy.permits(ip) {
                Ok(vec![SocketAddr::new(ip, port)])
            } else {
                Err(format!("{ip} is not a public address"))
            };
        }
        // RFC 6761: `localhost` is the loopback interface, never asked of DNS.
        let all: Vec<IpAddr> = if host.eq_ignore_ascii_case("localhost") {
            vec![
                IpAddr::from([127, 0, 0, 1]),
                IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
            ]
        } else {
            self.dns
                .lookup_ip(format!("{}.", host.trim_end_matches('.')))
                .await
                .map_err(|e| format!("{host}: {e}"))?
                .iter()
                .collect()
        };
        let permitted: Vec<SocketAddr> = all
            .iter()
            .filter(|ip| self.policy.permits(**ip))
            .map(|ip| SocketAddr::new(*ip, port))
            .collect();
        if permitted.is_empty() {
            return Err(if all.is_empty() {
                format!("{host} has no address")
            } else {
                format!("{host} resolves to no public address")
            });
        }
        Ok(permitted)
    }

    /// The server a name delegates to by `/.well-known/matrix/server`, cached as the answer
    /// says (Cache-Control max-age, 24 h by default, 48 h at most; failures an hour).
    async fn delegation(&self, host: &str) -> Option<String> {
        let now = Instant::now();
        if let Some((answer, until)) = self
            .well_known
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(host)
            && *until > now
        {
            return answer.clone();
        }
        let (answer, keep) = match self.fetch_well_known(host).await {
            Ok((server, keep)) => (Some(server), keep),
            Err(e) => {
                tracing::debug!(host, "no .well-known delegation: {e}");
                (None, WELL_KNOWN_ERROR)
            }
        };
        let mut cache = self.well_known.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() > 10_000 {
            cache.retain(|_, (_, until)| *until > now);
        }
        cache.insert(host.to_owned(), (answer.clone(), now + keep));
        answer
    }

    async fn fetch_well_known(&self, host: &str) -> Result<(String, Duration), String> {
        let mut url = reqwest::Url::parse(&format!(
            "https://{}:{}/.well-known/matrix/server",
            host, self.well_known_port
        ))
        .map_err(|e| e.to_string())?;
        for _ in 0..=MAX_REDIRECTS {
            self.policy.check_url(&url)?;
            let response = self
                .well_known_client
                .get(url.clone())
                .send()
                .await
                .map_err(|e| e.to_string())?;
            if response.status().is_redirection() {
                let location = response
                    .headers()
                    .get(reqwest::header::LOCATION)
                    .and_then(|l| l.to_str().ok())
                    .ok_or("a redirect without Location")?;
                url = url.join(location).map_err(|e| e.to_string())?;
                if url.scheme() != "https" {
                    return Err("redirected away from https".into());
                }
                continue;
            }
            if !response.status().is_success() {
                return Err(format!("status {}", response.status()));
            }
            let keep = cache_lifetime(response.headers());
            let body = read_limited(response, WELL_KNOWN_MAX_BYTES).await?;
            let document: serde_json::Value =
                serde_json::from_slice(&body).map_err(|e| format!("not JSON: {e}"))?;
            let server = document["m.server"].as_str().ok_or("no m.server string")?;
            ServerName::parse(server).map_err(|e| format!("m.server {server:?}: {e}"))?;
            return Ok((server.to_owned(), keep));
        }
        Err("too many redirects".into())
    }
}

/// A name's addresses the policy permits, with `port`.
async fn permitted_addresses(
    dns: &TokioResolver,
    policy: &OutboundPolicy,
    host: &str,
    port: u16,
) -> Result<Vec<SocketAddr>, String> {
    if let Ok(ip) = host.parse::<IpAddr>() {
        return if policy.permits(ip) {
            Ok(vec![SocketAddr::new(ip, port)])
        } else {
            Err(format!("{ip} is not a public address"))
        };
    }
    // RFC 6761: `localhost` is the loopback interface, never asked of DNS.
    let all: Vec<IpAddr> = if host.eq_ignore_ascii_case("localhost") {
        vec![
            IpAddr::from([127, 0, 0, 1]),
            IpAddr::from(std::net::Ipv6Addr::LOCALHOST),
        ]
    } else {
        dns.lookup_ip(format!("{}.", host.trim_end_matches('.')))
            .await
            .map_err(|e| format!("{host}: {e}"))?
            .iter()
            .collect()
    };
    let permitted: Vec<SocketAddr> = all
        .iter()
        .filter(|ip| policy.permits(**ip))
        .map(|ip| SocketAddr::new(*ip, port))
        .collect();
    if permitted.is_empty() {
        return Err(if all.is_empty() {
            format!("{host} has no address")
        } else {
            format!("{host} resolves to no public address")
        });
    }
    Ok(permitted)
}

/// reqwest's resolver for `.well-known` requests: discovery's DNS, the outbound policy.
struct PolicyResolver {
    dns: std::sync::Arc<TokioResolver>,
    policy: OutboundPolicy,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let (dns, policy) = (self.dns.clone(), self.policy.clone());
        Box::pin(async move {
            let addrs = permitted_addresses(&dns, &policy, name.as_str(), 0)
                .await
                .map_err(|e| -> Box<dyn std::error::Error + Send + Sync> { e.into() })?;
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// `Cache-Control: max-age` within the spec's bounds; no-store or no-cache count as zero.
fn cache_lifetime(headers: &reqwest::header::HeaderMap) -> Duration {
    let Some(value) = headers
        .get(reqwest::header::CACHE_CONTROL)
        .and_then(|v| v.to_str().ok())
    else {
        return WELL_KNOWN_DEFAULT;
    };
    for directive in value.split(',').map(str::trim) {
        if directive.eq_ignore_ascii_case("no-store") || directive.eq_ignore_ascii_case("no-cache")
        {
            return Duration::ZERO;
        }
        if let Some(age) = directive.strip_prefix("max-age=")
            && let Ok(secs) = age.trim().parse::<u64>()
        {
            return Duration::from_secs(secs).min(WELL_KNOWN_MAX);
        }
    }
    WELL_KNOWN_DEFAULT
}

/// A response body, refused past `max` bytes.
pub async fn read_limited(mut response: reqwest::Response, max: usize) -> Result<Vec<u8>, String> {
    if response
        .content_length()
        .is_some_and(|len| len > max as u64)
    {
        return Err(format!("body larger than {max} bytes"));
    }
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| e.to_string())? {
        if body.len() + chunk.len() > max {
            return Err(format!("body larger than {max} bytes"));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_split_into_host_and_port() {
        assert_eq!(host_and_port("example.org"), ("example.org".into(), None));
        assert_eq!(
            host_and_port("example.org:8448"),
            ("example.org".into(), Some(8448))
        );
        assert_eq!(host_and_port("1.2.3.4:80"), ("1.2.3.4".into(), Some(80)));
        assert_eq!(host_and_port("[::1]:8448"), ("::1".into(), Some(8448)));
        assert_eq!(host_and_port("[::1]"), ("::1".into(), None));
        assert_eq!(host_header("::1", Some(1)), "[::1]:1");
    }

    #[test]
    fn well_known_lifetimes_stay_in_bounds() {
        let mut headers = reqwest::header::HeaderMap::new();
        assert_eq!(cache_lifetime(&headers), WELL_KNOWN_DEFAULT);
        headers.insert("cache-control", "public, max-age=600".parse().unwrap());
        assert_eq!(cache_lifetime(&headers), Duration::from_secs(600));
        headers.insert("cache-control", "max-age=999999999".parse().unwrap());
        assert_eq!(cache_lifetime(&headers), WELL_KNOWN_MAX);
        headers.insert("cache-control", "no-store".parse().unwrap());
        assert_eq!(cache_lifetime(&headers), Duration::ZERO);
    }
}
