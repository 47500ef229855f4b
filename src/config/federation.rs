//! `[federation]`: talking to other homeservers.

use std::{collections::BTreeMap, path::PathBuf};

use ruma::{OwnedServerName, ServerName};
use serde::Deserialize;

use super::ConfigError;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FederationConfig {
    /// Serve and use the Server-Server API. Unset: on, unless the server's name is
    /// `localhost` or a loopback address (a server no one else can reach).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// PEM certificate chain for the federation listener; with `tls_key`, axon serves TLS
    /// itself (a renewed file is picked up without a restart). Unset: plain HTTP, for a
    /// reverse proxy in front.
    #[serde(default)]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of `tls_cert`.
    #[serde(default)]
    pub tls_key: Option<PathBuf>,
    /// A PEM CA certificate trusted besides the system's roots (private federations,
    /// tests).
    #[serde(default)]
    pub tls_ca_file: Option<PathBuf>,
    /// Check other servers' certificates. Only tests turn this off; it logs a warning.
    #[serde(default = "default_true")]
    pub verify_certificates: bool,
    /// Notaries asked for other servers' keys when the servers themselves do not answer
    /// (Synapse's `trusted_key_servers`; matrix.org by default).
    #[serde(default = "default_trusted_key_servers")]
    pub trusted_key_servers: Vec<TrustedKeyServer>,
    /// Longest wait for another server's answer, in seconds.
    #[serde(default = "default_request_timeout_secs")]
    pub request_timeout_secs: u64,
    /// DNS servers (`ip:port`) for other servers' SRV and address records. Empty: the
    /// system's (`/etc/resolv.conf`).
    #[serde(default)]
    pub resolver_nameservers: Vec<std::net::SocketAddr>,
    /// The port `.well-known/matrix/server` is fetched from (443 as the spec says; tests
    /// use another).
    #[serde(default = "default_well_known_port")]
    pub well_known_port: u16,
    /// The port used when neither the name, its delegation nor SRV gives one (8448 as
    /// the spec says; tests use another).
    #[serde(default = "default_federation_port")]
    pub default_port: u16,
    /// Show this server's public room list to other servers (`/publicRooms` over
    /// federation). Off by default, as Synapse's `allow_public_rooms_over_federation`.
    #[serde(default)]
    pub public_rooms: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustedKeyServer {
    pub server_name: OwnedServerName,
    /// Key ID -> unpadded base64 ed25519 key. When given, the notary's answers must be
    /// signed by one of these; else by the keys it publishes itself.
    #[serde(default)]
    pub verify_keys: BTreeMap<String, String>,
}

impl Default for FederationConfig {
    fn default() -> Self {
        Self {
            enabled: None,
            tls_cert: None,
            tls_key: None,
            tls_ca_file: None,
            verify_certificates: true,
            trusted_key_servers: default_trusted_key_servers(),
            request_timeout_secs: default_request_timeout_secs(),
            resolver_nameservers: Vec::new(),
            well_known_port: default_well_known_port(),
            default_port: default_federation_port(),
            public_rooms: false,
        }
    }
}

fn default_true() -> bool {
    true
}

fn default_trusted_key_servers() -> Vec<TrustedKeyServer> {
    vec![TrustedKeyServer {
        server_name: ServerName::parse("matrix.org").expect("valid").to_owned(),
        verify_keys: BTreeMap::new(),
    }]
}

fn default_request_timeout_secs() -> u64 {
    60
}

fn default_well_known_port() -> u16 {
    443
}

fn default_federation_port() -> u16 {
    8448
}

impl FederationConfig {
    /// Whether federation is on for a server of this name.
    pub fn is_enabled(&self, server_name: &ServerName) -> bool {
        self.enabled.unwrap_or_else(|| !is_local_name(server_name))
    }

    pub(super) fn validate(&self) -> Result<(), ConfigError> {
        match (&self.tls_cert, &self.tls_key) {
            (Some(_), None) => {
                return Err(ConfigError::new(
                    "federation.tls_key",
                    "must be set with federation.tls_cert",
                ));
            }
            (None, Some(_)) => {
                return Err(ConfigError::new(
                    "federation.tls_cert",
                    "must be set with federation.tls_key",
                ));
            }
            _ => {}
        }
        for (key, path) in [
            ("federation.tls_cert", &self.tls_cert),
            ("federation.tls_key", &self.tls_key),
            ("federation.tls_ca_file", &self.tls_ca_file),
        ] {
            if let Some(path) = path
                && !path.is_file()
            {
                return Err(ConfigError::new(
                    key,
                    format!("{} is not a readable file", path.display()),
                ));
            }
        }
        if !(1..=600).contains(&self.request_timeout_secs) {
            return Err(ConfigError::new(
                "federation.request_timeout_secs",
                "must be between 1 and 600",
            ));
        }
        for (i, server) in self.trusted_key_servers.iter().enumerate() {
            for key_id in server.verify_keys.keys() {
                if !key_id.starts_with("ed25519:") {
                    return Err(ConfigError::new(
                        format!("federation.trusted_key_servers[{i}].verify_keys"),
                        format!("`{key_id}` is not an ed25519 key ID"),
                    ));
                }
            }
        }
        Ok(())
    }
}

/// `localhost` (any port) or a loopback IP: a name other servers cannot reach.
fn is_local_name(server_name: &ServerName) -> bool {
    let host = server_name.host();
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn federation_defaults_follow_the_name() {
        let config = FederationConfig::default();
        for local in [
            "localhost",
            "localhost:8448",
            "127.0.0.1:8448",
            "[::1]:8448",
        ] {
            assert!(
                !config.is_enabled(&ServerName::parse(local).unwrap()),
                "{local}"
            );
        }
        for real in ["example.org", "matrix.example.org:8448", "203.0.113.5"] {
            assert!(
                config.is_enabled(&ServerName::parse(real).unwrap()),
                "{real}"
            );
        }
        let forced = FederationConfig {
            enabled: Some(true),
            ..Default::default()
        };
        assert!(forced.is_enabled(&ServerName::parse("localhost:1").unwrap()));
    }
}
