//! Outbound HTTP to addresses users choose (push gateways now, URL previews later). Such
//! URLs must not reach the server's own network: private, loopback, link-local and other
//! non-public addresses are refused unless `[outbound] allow_ranges` opens them. The
//! check runs on the addresses a name resolves to (the client's resolver filters them),
//! so DNS cannot smuggle a private address in; IP literals are checked before sending.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use serde::{Deserialize, Deserializer};

/// An address range, `addr/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .parse()
            .map_err(|_| format!("{s} is not an address range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s}: bad prefix length"))?,
        };
        Ok(Self { addr, prefix })
    }
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// `[outbound]` config: `allow_ranges` as a TOML array or a comma-separated string (as the
/// environment gives it: `AXON_OUTBOUND__ALLOW_RANGES=10.0.0.0/8,127.0.0.1`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundConfig {
    #[serde(default, deserialize_with = "ranges")]
    pub allow_ranges: Vec<Cidr>,
}

fn ranges<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Cidr>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Ranges {
        List(Vec<String>),
        Text(String),
    }
    let items: Vec<String> = match Ranges::deserialize(d)? {
        Ranges::List(l) => l,
        Ranges::Text(t) => t.split(',').map(str::to_owned).collect(),
    };
    items
        .iter()
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.parse().map_err(serde::de::Error::custom))
        .collect()
}

/// Whether an address is public (routable on the internet, not special-purpose).
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    const DENY: &[(u32, u8)] = &[
        (0x0000_0000, 8),  // "this" network
        (0x0a00_0000, 8),  // private
        (0x6440_0000, 10), // carrier-grade NAT
        (0x7f00_0000, 8),  // loopback
        (0xa9fe_0000, 16), // link-local
        (0xac10_0000, 12), // private
        (0xc000_0000, 24), // IETF protocol assignments
        (0xc000_0200, 24), // documentation
        (0xc0a8_0000, 16), // private
        (0xc612_0000, 15), // benchmarking
        (0xc633_6400, 24), // documentation
        (0xcb00_7100, 24), // documentation
        (0xe000_0000, 4),  // multicast
        (0xf000_0000, 4),  // reserved, broadcast
    ];
    let n = u32::from(ip);
    !DENY.iter().any(|(net, prefix)| {
        let mask = u32::MAX << (32 - u32::from(*prefix));
        n & mask == *net
    })
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    const DENY: &[(u128, u8)] = &[
        (0, 127),                                        // :: and ::1
        (0x0064_ff9b_0000_0000_0000_0000_0000_0000, 96), // NAT64
        (0x0100_0000_0000_0000_0000_0000_0000_0000, 64), // discard
        (0x2001_0db8_0000_0000_0000_0000_0000_0000, 32), // documentation
        (0xfc00_0000_0000_0000_0000_0000_0000_0000, 7),  // unique local
        (0xfe80_0000_0000_0000_0000_0000_0000_0000, 10), // link-local
        (0xff00_0000_0000_0000_0000_0000_0000_0000, 8),  // multicast
    ];
    let n = u128::from(ip);
    !DENY.iter().any(|(net, prefix)| {
        let mask = u128::MAX << (128 - u32::from(*prefix));
        n & mask == *net
    })
}

/// The policy: public addresses, plus the configured ranges.
#[derive(Debug, Clone, Default)]
pub struct OutboundPolicy {
    allow: Vec<Cidr>,
}

impl OutboundPolicy {
    pub fn new(config: &OutboundConfig) -> Self {
        Self {
            allow: config.allow_ranges.clone(),
        }
    }

    pub fn permits(&self, ip: IpAddr) -> bool {
        is_public(ip) || self.allow.iter().any(|c| c.contains(ip))
    }

    /// Checks a URL's host when it is an IP literal (names are checked as they resolve).
    pub fn check_url(&self, url: &reqwest::Url) -> Result<(), String> {
        let ip = match url.host() {
            Some(url::Host::Ipv4(v4)) => IpAddr::V4(v4),
            Some(url::Host::Ipv6(v6)) => IpAddr::V6(v6),
            Some(url::Host::Domain(_)) => return Ok(()),
            None => return Err("the URL has no host".into()),
        };
        if self.permits(ip) {
            Ok(())
        } else {
            Err(format!("{ip} is not a public address"))
        }
    }

    /// As `check_url`, and for a name, whether it resolves to any permitted address (a
    /// failed lookup passes: it may be temporary, and the request will fail anyway).
    pub async fn check_url_resolved(&self, url: &reqwest::Url) -> Result<(), String> {
        self.check_url(url)?;
        let Some(url::Host::Domain(name)) = url.host() else {
            return Ok(());
        };
        let port = url.port_or_known_default().unwrap_or(443);
        match tokio::net::lookup_host((name, port)).await {
            Ok(found) => {
                let found: Vec<SocketAddr> = found.collect();
                if found.is_empty() || found.iter().any(|a| self.permits(a.ip())) {
                    Ok(())
                } else {
                    Err(format!("{name} resolves to no public address"))
                }
            }
            Err(_) => Ok(()),
        }
    }

    /// An HTTP client that only connects to permitted addresses and follows no redirects.
    pub fn client(&self, timeout: Duration) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .dns_resolver(Arc::new(CheckedResolver(self.clone())))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .build()
    }

    /// `client` with the given TLS configuration (`tls_client_config`).
    pub fn client_with_tls(
        &self,
        timeout: Duration,
        tls: &rustls::ClientConfig,
    ) -> reqwest::Result<reqwest::Client> {
        reqwest::Client::builder()
            .dns_resolver(Arc::new(CheckedResolver(self.clone())))
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .tls_backend_preconfigured(tls.clone())
            .build()
    }
}

/// The rustls provider of every TLS connection axon makes or accepts itself (aws-lc-rs,
/// which sqlx and reqwest link already).
pub fn tls_provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::aws_lc_rs::default_provider())
}

/// The TLS client configuration of requests to other servers (homeservers, identity
/// servers): platform roots plus `ca_file`, or no checks at all when `verify` is off
/// (tests only; it logs a warning).
pub fn tls_client_config(
    verify: bool,
    ca_file: Option<&std::path::Path>,
) -> Result<Arc<rustls::ClientConfig>, String> {
    let provider = tls_provider();
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?;
    let config = if verify {
        let extra: Vec<rustls::pki_types::CertificateDer<'static>> = match ca_file {
            Some(path) => {
                use rustls::pki_types::pem::PemObject as _;
                rustls::pki_types::CertificateDer::pem_file_iter(path)
                    .map_err(|e| format!("federation.tls_ca_file {}: {e}", path.display()))?
                    .collect::<Result<_, _>>()
                    .map_err(|e| format!("federation.tls_ca_file {}: {e}", path.display()))?
            }
            None => Vec::new(),
        };
        let verifier = rustls_platform_verifier::Verifier::new_with_extra_roots(extra, provider)
            .map_err(|e| format!("TLS roots: {e}"))?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth()
    } else {
        tracing::warn!(
            "federation.verify_certificates is off: other servers' certificates are not checked"
        );
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(provider)))
            .with_no_client_auth()
    };
    Ok(Arc::new(config))
}

/// Accepts any certificate: `federation.verify_certificates = false`, for tests only.
#[derive(Debug)]
struct NoVerification(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _: &rustls::pki_types::CertificateDer<'_>,
        _: &[rustls::pki_types::CertificateDer<'_>],
        _: &rustls::pki_types::ServerName<'_>,
        _: &[u8],
        _: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Resolves names with the system resolver and drops the addresses the policy refuses.
struct CheckedResolver(OutboundPolicy);

impl reqwest::dns::Resolve for CheckedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.0.clone();
        Box::pin(async move {
            let found: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> = found
                .into_iter()
                .filter(|a| policy.permits(a.ip()))
                .collect();
            if allowed.is_empty() {
                return Err(format!("{} resolves to no public address", name.as_str()).into());
            }
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn public_and_private_addresses() {
        for public in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "93.184.216.34"] {
            assert!(is_public(ip(public)), "{public}");
        }
        for private in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_public(ip(private)), "{private}");
        }
        assert!(is_public(ip("172.32.0.1")));
    }

    #[test]
    fn allow_ranges_open_chosen_ranges() {
        let config: OutboundConfig =
            toml::from_str(r#"allow_ranges = "127.0.0.0/8, fd00::/8""#).unwrap();
        let policy = OutboundPolicy::new(&config);
        assert!(policy.permits(ip("127.0.0.1")));
        assert!(policy.permits(ip("fd12::1")));
        assert!(!policy.permits(ip("10.0.0.1")));
        let config: OutboundConfig = toml::from_str(r#"allow_ranges = ["10.0.0.5"]"#).unwrap();
        let policy = OutboundPolicy::new(&config);
        assert!(policy.permits(ip("10.0.0.5")));
        assert!(!policy.permits(ip("10.0.0.6")));
        assert!(toml::from_str::<OutboundConfig>(r#"allow_ranges = "10.0.0.0/40""#).is_err());
        assert!(toml::from_str::<OutboundConfig>(r#"allow_ranges = "nonsense""#).is_err());
    }
}
