//! axon, a Matrix homeserver. See ARCHITECTURE.md for where each part lives.

pub mod api;
pub mod config;
pub mod e2ee;
pub mod error;
pub mod federation;
pub mod housekeeping;
pub mod http;
pub mod identity;
pub mod json_guard;
pub mod limits;
pub mod mail;
pub mod media;
pub mod metrics;
pub mod outbound;
pub mod push;
pub mod ratelimit;
pub mod rooms;
pub mod run;
pub mod secrets;
pub mod server;
pub mod storage;
pub mod sync;
pub mod sync_token;
pub mod thirdparty;
pub mod users;
pub mod voip;
