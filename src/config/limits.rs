//! `[limits]`: what any client can make the server hold or wait for.

use serde::Deserialize;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LimitsConfig {
    /// Largest request body accepted, in bytes.
    #[serde(default = "default_max_request_size")]
    pub max_request_size: usize,
    /// Local room writes (sends, state, membership) in progress or waiting in this process;
    /// more are refused with 429 at once instead of queueing without end.
    #[serde(default = "default_max_pending_writes")]
    pub max_pending_writes: usize,
    /// The same, in one room (whose writes go one at a time).
    #[serde(default = "default_max_pending_writes_per_room")]
    pub max_pending_writes_per_room: usize,
    /// Largest body of a request no access token vouches for (login, registration).
    #[serde(default = "default_max_unauthenticated_request_size")]
    pub max_unauthenticated_request_size: usize,
    /// Bytes of such bodies being read at once, over all connections; beyond it anonymous
    /// requests get 429 at once.
    #[serde(default = "default_max_unauthenticated_bytes_in_flight")]
    pub max_unauthenticated_bytes_in_flight: usize,
    /// Open client connections; at most the process's file limit less a reserve.
    #[serde(default = "default_max_client_connections")]
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers; also how long an idle kept-alive
    /// connection stays open.
    #[serde(default = "default_header_read_timeout_secs")]
    pub header_read_timeout_secs: u64,
    /// Seconds a request body may stall (no bytes arriving) before the request gets 408.
    #[serde(default = "default_body_read_timeout_secs")]
    pub body_read_timeout_secs: u64,
    /// Seconds in-flight requests get to finish at shutdown (long polls are answered at
    /// once); then their connections are closed.
    #[serde(default = "default_shutdown_grace_secs")]
    pub shutdown_grace_secs: u64,
    /// Largest content of one to-device message, in bytes.
    #[serde(default = "default_max_to_device_message_size")]
    pub max_to_device_message_size: usize,
    /// To-device messages from one sender waiting for one device; beyond it that sender's
    /// new messages to the device are dropped (other senders' still arrive).
    #[serde(default = "default_max_pending_to_device")]
    pub max_pending_to_device: i64,
    /// Largest content of one account data entry (global or per room), in bytes.
    #[serde(default = "default_max_account_data_size")]
    pub max_account_data_size: usize,
    /// All of one user's account data together (global and per room, room tags included;
    /// the server's own read markers not counted), in bytes.
    #[serde(default = "default_max_account_data_bytes")]
    pub max_account_data_bytes: i64,
    /// Filters one user may keep (identical filters are stored once).
    #[serde(default = "default_max_filters")]
    pub max_filters: i64,
    /// Pushers one user may have.
    #[serde(default = "default_max_pushers")]
    pub max_pushers: i64,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_request_size: default_max_request_size(),
            max_pending_writes: default_max_pending_writes(),
            max_pending_writes_per_room: default_max_pending_writes_per_room(),
            max_unauthenticated_request_size: default_max_unauthenticated_request_size(),
            max_unauthenticated_bytes_in_flight: default_max_unauthenticated_bytes_in_flight(),
            max_connections: default_max_client_connections(),
            header_read_timeout_secs: default_header_read_timeout_secs(),
            body_read_timeout_secs: default_body_read_timeout_secs(),
            shutdown_grace_secs: default_shutdown_grace_secs(),
            max_to_device_message_size: default_max_to_device_message_size(),
            max_pending_to_device: default_max_pending_to_device(),
            max_account_data_size: default_max_account_data_size(),
            max_account_data_bytes: default_max_account_data_bytes(),
            max_filters: default_max_filters(),
            max_pushers: default_max_pushers(),
        }
    }
}

fn default_max_pending_writes() -> usize {
    1024
}
fn default_max_pending_writes_per_room() -> usize {
    32
}
fn default_max_request_size() -> usize {
    50 * 1024 * 1024
}
fn default_max_unauthenticated_request_size() -> usize {
    64 * 1024
}
fn default_max_unauthenticated_bytes_in_flight() -> usize {
    16 * 1024 * 1024
}
fn default_max_client_connections() -> usize {
    10_000
}
fn default_header_read_timeout_secs() -> u64 {
    30
}
fn default_body_read_timeout_secs() -> u64 {
    30
}
fn default_shutdown_grace_secs() -> u64 {
    5
}
fn default_max_to_device_message_size() -> usize {
    64 * 1024
}
fn default_max_pending_to_device() -> i64 {
    10_000
}
fn default_max_account_data_size() -> usize {
    1024 * 1024
}
fn default_max_account_data_bytes() -> i64 {
    32 * 1024 * 1024
}
fn default_max_filters() -> i64 {
    1_000
}
fn default_max_pushers() -> i64 {
    100
}
