//! Config sections of client-facing features: `[voip]` (TURN), `[user_directory]`,
//! `[well_known]` (delegation and support contacts).

use serde::Deserialize;

/// TURN servers for calls (`GET /voip/turnServer`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoipConfig {
    /// e.g. `turn:turn.example.org:3478?transport=udp`; none: no TURN is offered.
    #[serde(default)]
    pub turn_uris: Vec<String>,
    /// coturn's `static-auth-secret` (`use-auth-secret`): credentials made per user.
    #[serde(default)]
    pub turn_shared_secret: Option<String>,
    /// Fixed credentials, when there is no shared secret.
    #[serde(default)]
    pub turn_username: Option<String>,
    #[serde(default)]
    pub turn_password: Option<String>,
    /// How long made credentials last, in seconds.
    #[serde(default = "default_turn_user_lifetime_secs")]
    pub turn_user_lifetime_secs: u64,
    /// Whether guests get TURN credentials.
    #[serde(default)]
    pub turn_allow_guests: bool,
}

fn default_turn_user_lifetime_secs() -> u64 {
    86_400
}

impl Default for VoipConfig {
    fn default() -> Self {
        Self {
            turn_uris: Vec::new(),
            turn_shared_secret: None,
            turn_username: None,
            turn_password: None,
            turn_user_lifetime_secs: default_turn_user_lifetime_secs(),
            turn_allow_guests: false,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserDirectoryConfig {
    /// Let the user directory find every local account, not only those sharing a room
    /// with the searcher or in public rooms.
    #[serde(default)]
    pub search_all_users: bool,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WellKnownConfig {
    /// `m.server` delegation answered at /.well-known/matrix/server, e.g. "matrix.example.org:443".
    #[serde(default)]
    pub server: Option<String>,
    /// Who to contact about this server (/.well-known/matrix/support).
    #[serde(default)]
    pub support_contacts: Vec<SupportContact>,
    /// A page about getting help with this server.
    #[serde(default)]
    pub support_page: Option<String>,
}

/// One contact of /.well-known/matrix/support: a role and a Matrix ID or an email address.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct SupportContact {
    /// `m.role.admin`, `m.role.security` or a namespaced role.
    pub role: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub matrix_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email_address: Option<String>,
}
