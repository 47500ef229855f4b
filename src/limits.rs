//! Size rules on identifiers clients choose, shared by the domains that take them.

use crate::error::{Error, Result};

/// Longest event type, state key and transaction ID, in bytes (the spec's limit on an
/// event's identifiers; they also go into indexes, which cannot take arbitrarily long
/// values).
pub const MAX_ID_BYTES: usize = 255;

/// A client's transaction ID (send, redact, sendToDevice).
pub fn check_txn_id(txn_id: &str) -> Result<()> {
    if txn_id.len() > MAX_ID_BYTES {
        return Err(Error::InvalidParam(format!(
            "transaction IDs are at most {MAX_ID_BYTES} bytes"
        )));
    }
    Ok(())
}
