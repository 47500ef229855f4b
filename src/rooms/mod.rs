//! Rooms: PDUs, the write path (local and remote events), room creation, membership and
//! reading.

pub mod aliases;
pub mod auth;
pub mod context;
pub mod create;
pub mod directory;
pub mod invites;
pub mod membership;
pub mod notifications;
pub mod pdu;
pub mod persist;
pub mod power;
pub mod receipts;
pub mod receive;
pub mod redaction;
pub mod remote_join;
pub mod remote_membership;
pub mod remote_reads;
pub mod reports;
pub mod search;
pub mod send;
pub mod spaces;
pub mod state_res;
pub mod third_party_invite;
pub mod timeline;
pub mod upgrade;
pub mod visibility;
