//! Typed configuration: a TOML file overlaid with `AXON_<SECTION>__<KEY>` environment
//! variables, validated once at start. Every error names the key it is about.

use std::{collections::BTreeMap, net::SocketAddr, path::PathBuf};

use ruma::{OwnedServerName, ServerName};
use serde::Deserialize;

mod appservices;
mod client;
mod email;
mod env;
mod federation;
mod limits;

pub use appservices::{AppservicesConfig, Namespace, Namespaces, Registration};
pub use client::{SupportContact, UserDirectoryConfig, VoipConfig, WellKnownConfig};
pub use email::{EmailConfig, SmtpTls};
pub use federation::{FederationConfig, TrustedKeyServer};
pub use limits::LimitsConfig;

/// A configuration problem, always naming the offending key.
#[derive(Debug, thiserror::Error)]
#[error("configuration error at `{key}`: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    fn new(key: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The name users and rooms are qualified with (`@alice:<server_name>`).
    pub server_name: OwnedServerName,
    /// Public URL clients reach this server at; derived from `listen.client` when unset.
    #[serde(default)]
    pub public_baseurl: Option<String>,
    /// Where axon keeps its embedded database and other local data.
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    #[serde(default)]
    pub listen: ListenConfig,
    #[serde(default)]
    pub database: DatabaseConfig,
    #[serde(default)]
    pub registration: RegistrationConfig,
    #[serde(default)]
    pub auth: AuthConfig,
    #[serde(default)]
    pub rate_limits: RateLimitsConfig,
    #[serde(default)]
    pub limits: LimitsConfig,
    #[serde(default)]
    pub well_known: WellKnownConfig,
    #[serde(default)]
    pub rooms: RoomsConfig,
    #[serde(default)]
    pub presence: PresenceConfig,
    #[serde(default)]
    pub user_directory: UserDirectoryConfig,
    #[serde(default)]
    pub voip: VoipConfig,
    #[serde(default)]
    pub email: EmailConfig,
    #[serde(default)]
    pub appservices: AppservicesConfig,
    /// The registrations `appservices.config_files` hold, read and checked at load.
    #[serde(skip)]
    pub appservice_registrations: Vec<Registration>,
    /// Which non-public addresses outbound requests (push gateways) may reach.
    #[serde(default)]
    pub outbound: crate::outbound::OutboundConfig,
    #[serde(default)]
    pub media: MediaConfig,
    #[serde(default)]
    pub federation: FederationConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MediaConfig {
    /// Largest upload, in bytes; larger ones get 413 M_TOO_LARGE.
    #[serde(default = "default_max_upload_size")]
    pub max_upload_size: u64,
    /// Where media files live (local object store). Default: `<data_dir>/media`.
    #[serde(default)]
    pub path: Option<PathBuf>,
    /// Serve the legacy unauthenticated download endpoints (`/_matrix/media/v3/download`).
    /// Off, as after the spec's authenticated-media freeze: they answer 404.
    #[serde(default)]
    pub legacy_unauthenticated: bool,
    /// How long a URI from `/_matrix/media/v1/create` waits for its upload, in seconds.
    #[serde(default = "default_pending_upload_secs")]
    pub pending_upload_secs: u64,
    /// The thumbnail sizes made (a request gets the best fit among them).
    #[serde(default = "default_thumbnail_sizes")]
    pub thumbnail_sizes: Vec<ThumbnailSize>,
    /// Images with more pixels than this are not decoded (decompression bombs).
    #[serde(default = "default_max_image_pixels")]
    pub max_image_pixels: u64,
    /// Fetch URL previews (`/media/preview_url`). Off by default: the server then makes
    /// requests to URLs users choose (within the `[outbound]` policy).
    #[serde(default)]
    pub url_previews: bool,
    /// Largest page or image a preview reads, in bytes.
    #[serde(default = "default_preview_max_bytes")]
    pub preview_max_bytes: u64,
    /// Keep media in an S3-compatible bucket instead of under `path`.
    #[serde(default)]
    pub s3: Option<S3Config>,
}

/// An S3-compatible object store (AWS, MinIO, Garage, Ceph...).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct S3Config {
    pub bucket: String,
    /// The store's URL, for anything but AWS itself (`http://` is allowed).
    #[serde(default)]
    pub endpoint: Option<String>,
    #[serde(default = "default_s3_region")]
    pub region: String,
    /// Credentials; when unset, the usual `AWS_*` variables and instance metadata apply.
    #[serde(default)]
    pub access_key_id: Option<String>,
    #[serde(default)]
    pub secret_access_key: Option<String>,
    /// `endpoint/bucket/key` addressing, which most self-hosted stores need, instead of
    /// `bucket.endpoint/key`.
    #[serde(default)]
    pub path_style: bool,
    /// A key prefix inside the bucket, to share it with other data.
    #[serde(default)]
    pub prefix: Option<String>,
}

// Hand-written so the secret never reaches a log line.
impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "<redacted>"),
            )
            .field("path_style", &self.path_style)
            .field("prefix", &self.prefix)
            .finish()
    }
}

fn default_s3_region() -> String {
    "us-east-1".to_owned()
}

fn default_preview_max_bytes() -> u64 {
    10 * 1024 * 1024
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThumbnailSize {
    pub width: u32,
    pub height: u32,
    pub method: ThumbnailMethod,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThumbnailMethod {
    Crop,
    Scale,
}

impl ThumbnailMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Crop => "crop",
            Self::Scale => "scale",
        }
    }
}

// Synapse's defaults.
fn default_thumbnail_sizes() -> Vec<ThumbnailSize> {
    use ThumbnailMethod::{Crop, Scale};
    [
        (32, 32, Crop),
        (96, 96, Crop),
        (320, 240, Scale),
        (640, 480, Scale),
        (800, 600, Scale),
    ]
    .into_iter()
    .map(|(width, height, method)| ThumbnailSize {
        width,
        height,
        method,
    })
    .collect()
}

fn default_max_image_pixels() -> u64 {
    32_000_000
}

impl Default for MediaConfig {
    fn default() -> Self {
        Self {
            max_upload_size: default_max_upload_size(),
            path: None,
            legacy_unauthenticated: false,
            pending_upload_secs: default_pending_upload_secs(),
            thumbnail_sizes: default_thumbnail_sizes(),
            max_image_pixels: default_max_image_pixels(),
            url_previews: false,
            preview_max_bytes: default_preview_max_bytes(),
            s3: None,
        }
    }
}

fn default_max_upload_size() -> u64 {
    50 * 1024 * 1024
}

fn default_pending_upload_secs() -> u64 {
    24 * 3600
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresenceConfig {
    /// Track and share presence. Off: /sync has no presence and /presence answers 403.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// An online user with no activity for this long becomes `unavailable`.
    #[serde(default = "default_idle_after_secs")]
    pub idle_after_secs: u64,
    /// A user with no sync for this long (after any sync in progress ends) goes `offline`.
    #[serde(default = "default_offline_after_secs")]
    pub offline_after_secs: u64,
}

impl Default for PresenceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            idle_after_secs: default_idle_after_secs(),
            offline_after_secs: default_offline_after_secs(),
        }
    }
}

// Synapse's timers: idle after 5 minutes, offline 30 seconds after the last sync.
fn default_idle_after_secs() -> u64 {
    300
}

fn default_offline_after_secs() -> u64 {
    30
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoomsConfig {
    /// Room version of new rooms when the client does not choose one.
    #[serde(default = "default_room_version")]
    pub default_version: ruma::RoomVersionId,
}

impl Default for RoomsConfig {
    fn default() -> Self {
        Self {
            default_version: default_room_version(),
        }
    }
}

fn default_room_version() -> ruma::RoomVersionId {
    ruma::RoomVersionId::V12
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListenConfig {
    /// Address of the Client-Server API listener.
    #[serde(default = "default_client_listen")]
    pub client: SocketAddr,
    /// Address of the Prometheus metrics listener (`GET /metrics`); none by default.
    #[serde(default)]
    pub metrics: Option<SocketAddr>,
    /// Address of the Server-Server API listener (e.g. `0.0.0.0:8448`), with TLS when
    /// `federation.tls_cert` is set. Unset: the federation API is served on `client` (for
    /// a reverse proxy that sends both there).
    #[serde(default)]
    pub federation: Option<SocketAddr>,
}

impl Default for ListenConfig {
    fn default() -> Self {
        Self {
            client: default_client_listen(),
            metrics: None,
            federation: None,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseConfig {
    /// `postgres://` URL of an external server. Unset: axon runs its own cluster in data_dir.
    #[serde(default)]
    pub url: Option<String>,
    /// Connection pool size.
    #[serde(default = "default_max_connections")]
    pub max_connections: u32,
}

impl Default for DatabaseConfig {
    fn default() -> Self {
        Self {
            url: None,
            max_connections: default_max_connections(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RegistrationMode {
    Open,
    Token,
    Closed,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RegistrationConfig {
    #[serde(default = "default_registration_mode")]
    pub mode: RegistrationMode,
    /// Secret for the shared-secret admin registration API. Unset disables that API.
    #[serde(default, deserialize_with = "env::opt_string_or_number")]
    pub shared_secret: Option<String>,
    /// Allow `kind=guest` registration.
    #[serde(default)]
    pub allow_guests: bool,
    /// Tokens accepted by `m.login.registration_token` when mode is `token`.
    #[serde(default)]
    pub tokens: Vec<String>,
}

impl Default for RegistrationConfig {
    fn default() -> Self {
        Self {
            mode: default_registration_mode(),
            shared_secret: None,
            allow_guests: false,
            tokens: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthConfig {
    /// Lifetime of access tokens issued to clients that ask for a refresh token, in seconds.
    /// Clients that do not ask for one get tokens that do not expire, as in Synapse.
    #[serde(default = "default_access_token_lifetime")]
    pub access_token_lifetime_secs: u64,
    /// Lifetime of tokens from `POST /login/get_token`, in seconds.
    #[serde(default = "default_login_token_lifetime")]
    pub login_token_lifetime_secs: u64,
    /// How long a user-interactive auth session stays usable, in seconds.
    #[serde(default = "default_uia_session_lifetime")]
    pub uia_session_lifetime_secs: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            access_token_lifetime_secs: default_access_token_lifetime(),
            login_token_lifetime_secs: default_login_token_lifetime(),
            uia_session_lifetime_secs: default_uia_session_lifetime(),
        }
    }
}

/// A token bucket: `per_second` sustained, `burst` at once.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub per_second: f64,
    pub burst: u32,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(from = "RawRateLimits")]
pub struct RateLimitsConfig {
    /// Off only for load tests.
    pub enabled: bool,
    /// Login attempts, per client IP and per user.
    pub login: RateLimit,
    /// Failed logins and failed password checks, per user.
    pub failed_login: RateLimit,
    /// Registrations, per client IP.
    pub registration: RateLimit,
    /// Other rate-limited client requests, per user (or IP when anonymous).
    pub requests: RateLimit,
}

impl Default for RateLimitsConfig {
    fn default() -> Self {
        RawRateLimits::default().into()
    }
}

/// As written in the file: any field of any limit may be left out and keeps its default.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimits {
    #[serde(default = "default_true")]
    enabled: bool,
    #[serde(default)]
    login: PartialRateLimit,
    #[serde(default)]
    failed_login: PartialRateLimit,
    #[serde(default)]
    registration: PartialRateLimit,
    #[serde(default)]
    requests: PartialRateLimit,
}

impl Default for RawRateLimits {
    fn default() -> Self {
        Self {
            enabled: true,
            login: PartialRateLimit::default(),
            failed_login: PartialRateLimit::default(),
            registration: PartialRateLimit::default(),
            requests: PartialRateLimit::default(),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartialRateLimit {
    per_second: Option<f64>,
    burst: Option<u32>,
}

impl PartialRateLimit {
    fn or(self, default: RateLimit) -> RateLimit {
        RateLimit {
            per_second: self.per_second.unwrap_or(default.per_second),
            burst: self.burst.unwrap_or(default.burst),
        }
    }
}

impl From<RawRateLimits> for RateLimitsConfig {
    fn from(raw: RawRateLimits) -> Self {
        // Synapse's defaults: a few logins and registrations at once, then one every ~6 s.
        let slow = RateLimit {
            per_second: 0.17,
            burst: 3,
        };
        Self {
            enabled: raw.enabled,
            login: raw.login.or(slow),
            failed_login: raw.failed_login.or(slow),
            registration: raw.registration.or(slow),
            requests: raw.requests.or(RateLimit {
                per_second: 10.0,
                burst: 50,
            }),
        }
    }
}

fn default_data_dir() -> PathBuf {
    PathBuf::from("data")
}
fn default_client_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8008))
}
fn default_max_connections() -> u32 {
    16
}
fn default_registration_mode() -> RegistrationMode {
    RegistrationMode::Closed
}
fn default_access_token_lifetime() -> u64 {
    300
}
fn default_login_token_lifetime() -> u64 {
    120
}
fn default_uia_session_lifetime() -> u64 {
    900
}
fn default_true() -> bool {
    true
}

impl Config {
    /// Reads the file (if any), overlays the environment, and validates.
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        Self::load_from(path, &env)
    }

    pub fn load_from(
        path: Option<&std::path::Path>,
        environment: &BTreeMap<String, String>,
    ) -> Result<Self, ConfigError> {
        let mut table = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    ConfigError::new("--config", format!("cannot read {}: {e}", path.display()))
                })?;
                text.parse::<toml::Table>().map_err(|e| {
                    let key = env::toml_error_key(&text, &e);
                    ConfigError::new(key, format!("invalid TOML: {}", e.message()))
                })?
            }
            None => toml::Table::new(),
        };
        let from_env = env::overlay(&mut table, environment)?;
        // An environment value is untyped: `10` may be meant as the string "10" (a room
        // version). When a value from the environment has the wrong type for its key, it
        // is read again as the string it was, once per key.
        let mut retyped = std::collections::BTreeSet::new();
        let mut config: Config = loop {
            match serde_path_to_error::deserialize(toml::Value::Table(table.clone())) {
                Ok(config) => break config,
                Err(e) => {
                    let key = e.path().to_string();
                    if let Some(raw) = from_env.get(&key)
                        && retyped.insert(key.clone())
                        && env::set_string(&mut table, &key, raw)
                    {
                        continue;
                    }
                    let key = if key == "." {
                        "(top level)".to_owned()
                    } else {
                        key
                    };
                    return Err(ConfigError::new(key, e.into_inner().message().to_owned()));
                }
            }
        };
        config.validate()?;
        config.appservice_registrations = config.appservices.load()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        self.federation.validate()?;
        self.email.validate()?;
        for contact in &self.well_known.support_contacts {
            if contact.matrix_id.is_none() && contact.email_address.is_none() {
                return Err(ConfigError::new(
                    "well_known.support_contacts",
                    "each contact needs a matrix_id or an email_address",
                ));
            }
            if let Some(id) = &contact.matrix_id
                && ruma::UserId::parse(id.as_str()).is_err()
            {
                return Err(ConfigError::new(
                    "well_known.support_contacts",
                    format!("{id} is not a user ID"),
                ));
            }
        }
        if self.voip.turn_shared_secret.is_some() && self.voip.turn_username.is_some() {
            return Err(ConfigError::new(
                "voip.turn_username",
                "set either turn_shared_secret or turn_username, not both",
            ));
        }
        if self.limits.max_request_size < 1024 {
            return Err(ConfigError::new(
                "limits.max_request_size",
                "must be at least 1024 bytes",
            ));
        }
        for (key, secs) in [
            ("presence.idle_after_secs", self.presence.idle_after_secs),
            (
                "presence.offline_after_secs",
                self.presence.offline_after_secs,
            ),
        ] {
            if !(1..=86_400).contains(&secs) {
                return Err(ConfigError::new(key, "must be between 1 and 86400"));
            }
        }
        for (key, value) in [
            (
                "limits.max_unauthenticated_request_size",
                self.limits.max_unauthenticated_request_size as u64,
            ),
            (
                "limits.max_unauthenticated_bytes_in_flight",
                self.limits.max_unauthenticated_bytes_in_flight as u64,
            ),
        ] {
            if !(1024..=u32::MAX as u64).contains(&value) {
                return Err(ConfigError::new(
                    key,
                    "must be between 1024 and 4294967295 bytes",
                ));
            }
        }
        if self.limits.max_unauthenticated_bytes_in_flight
            < self.limits.max_unauthenticated_request_size
        {
            return Err(ConfigError::new(
                "limits.max_unauthenticated_bytes_in_flight",
                "must be at least limits.max_unauthenticated_request_size",
            ));
        }
        for (key, value) in [
            ("limits.max_connections", self.limits.max_connections as u64),
            (
                "limits.header_read_timeout_secs",
                self.limits.header_read_timeout_secs,
            ),
            (
                "limits.body_read_timeout_secs",
                self.limits.body_read_timeout_secs,
            ),
            (
                "limits.max_to_device_message_size",
                self.limits.max_to_device_message_size as u64,
            ),
            (
                "limits.max_account_data_size",
                self.limits.max_account_data_size as u64,
            ),
            (
                "limits.max_pending_to_device",
                self.limits.max_pending_to_device.max(0) as u64,
            ),
            (
                "limits.max_account_data_bytes",
                self.limits.max_account_data_bytes.max(0) as u64,
            ),
            ("limits.max_filters", self.limits.max_filters.max(0) as u64),
            ("limits.max_pushers", self.limits.max_pushers.max(0) as u64),
        ] {
            if value == 0 {
                return Err(ConfigError::new(key, "must be at least 1"));
            }
        }
        if self.limits.max_pending_writes == 0 {
            return Err(ConfigError::new(
                "limits.max_pending_writes",
                "must be at least 1",
            ));
        }
        if self.limits.max_pending_writes_per_room == 0 {
            return Err(ConfigError::new(
                "limits.max_pending_writes_per_room",
                "must be at least 1",
            ));
        }
        if self.database.max_connections == 0 {
            return Err(ConfigError::new(
                "database.max_connections",
                "must be at least 1",
            ));
        }
        if let Some(url) = &self.database.url
            && !(url.starts_with("postgres://") || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::new(
                "database.url",
                "must start with postgres://",
            ));
        }
        if let Some(base) = &self.public_baseurl
            && !(base.starts_with("http://") || base.starts_with("https://"))
        {
            return Err(ConfigError::new(
                "public_baseurl",
                "must start with http:// or https://",
            ));
        }
        for (key, limit) in [
            ("rate_limits.login", self.rate_limits.login),
            ("rate_limits.failed_login", self.rate_limits.failed_login),
            ("rate_limits.registration", self.rate_limits.registration),
            ("rate_limits.requests", self.rate_limits.requests),
        ] {
            if !(limit.per_second > 0.0 && limit.per_second.is_finite()) || limit.burst == 0 {
                return Err(ConfigError::new(
                    key,
                    "per_second must be > 0 and burst >= 1",
                ));
            }
        }
        if self.registration.mode == RegistrationMode::Token && self.registration.tokens.is_empty()
        {
            return Err(ConfigError::new(
                "registration.tokens",
                "mode is `token` but no tokens are configured",
            ));
        }
        if self.rooms.default_version.rules().is_none() {
            return Err(ConfigError::new(
                "rooms.default_version",
                "unknown room version",
            ));
        }
        if let Some(s3) = &self.media.s3 {
            if s3.bucket.is_empty() {
                return Err(ConfigError::new("media.s3.bucket", "must not be empty"));
            }
            if let Some(endpoint) = &s3.endpoint
                && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
            {
                return Err(ConfigError::new(
                    "media.s3.endpoint",
                    "must start with http:// or https://",
                ));
            }
            if s3.access_key_id.is_some() != s3.secret_access_key.is_some() {
                return Err(ConfigError::new(
                    "media.s3.secret_access_key",
                    "access_key_id and secret_access_key go together",
                ));
            }
        }
        if self.auth.access_token_lifetime_secs < 10 {
            return Err(ConfigError::new(
                "auth.access_token_lifetime_secs",
                "must be at least 10",
            ));
        }
        Ok(())
    }

    /// The base URL clients are told to use.
    pub fn public_baseurl(&self) -> String {
        match &self.public_baseurl {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => format!("http://{}", self.listen.client),
        }
    }

    pub fn server_name(&self) -> &ServerName {
        &self.server_name
    }

    /// Whether this server serves and uses the Server-Server API.
    pub fn federation_enabled(&self) -> bool {
        self.federation.is_enabled(&self.server_name)
    }
}

#[cfg(test)]
mod tests;
