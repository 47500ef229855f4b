//! Sync tokens: `s<events>_<account data>_<receipts>_<typing>_<presence>_<to-device>_
//! <device lists>`, each the last position of
//! that stream the client has seen. They stay valid across restarts (positions live in the
//! database). Parts a token lacks count as 0, so the token format can grow.

use std::fmt;

use crate::{
    error::{Error, Result},
    storage::streams::Positions,
};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncToken(pub Positions);

impl fmt::Display for SyncToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.0;
        write!(
            f,
            "s{}_{}_{}_{}_{}_{}_{}",
            p.events, p.account_data, p.receipts, p.typing, p.presence, p.to_device, p.device_lists
        )
    }
}

fn parts(token: &str) -> Option<Vec<i64>> {
    token
        .strip_prefix('s')?
        .split('_')
        .map(|p| p.parse::<i64>().ok().filter(|n| *n >= 0))
        .collect()
}

impl SyncToken {
    pub fn parse(token: &str) -> Result<Self> {
        let p = parts(token)
            .filter(|p| !p.is_empty() && p.len() <= 16)
            .ok_or_else(|| Error::InvalidParam("invalid sync token".into()))?;
        let at = |i: usize| p.get(i).copied().unwrap_or(0);
        Ok(Self(Positions {
            events: at(0),
            account_data: at(1),
            receipts: at(2),
            typing: at(3),
            presence: at(4),
            to_device: at(5),
            device_lists: at(6),
        }))
    }

    /// Whether anything is newer in `now` than in this token.
    pub fn behind(&self, now: &Positions) -> bool {
        let p = &self.0;
        now.events > p.events
            || now.account_data > p.account_data
            || now.receipts > p.receipts
            || now.typing > p.typing
            || now.presence > p.presence
            || now.to_device > p.to_device
            || now.device_lists > p.device_lists
    }
}

/// The timeline boundary a pagination token stands for in a direction (pages never include
/// it): a /messages token `s<pos>` is that position; a sync token its last event (forwards)
/// or the position after it (backwards).
pub fn pagination_position(token: &str, backwards: bool) -> Result<i64> {
    // Backfilled history has positions below zero.
    if let Some(position) = token
        .strip_prefix("s-")
        .and_then(|n| n.parse::<i64>().ok())
        .and_then(i64::checked_neg)
    {
        return Ok(position);
    }
    match parts(token) {
        Some(p) if p.len() == 1 => Ok(p[0]),
        // A sync token has seen its events position: paging back starts there (the
        // boundary is just after it), paging forward just after it.
        Some(p) if p.len() > 1 && backwards => Ok(p[0] + 1),
        Some(p) if p.len() > 1 => Ok(p[0]),
        // Bare numbers, as earlier axon versions accepted.
        _ => token
            .parse::<i64>()
            .map_err(|_| Error::InvalidParam("invalid pagination token".into())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_old_formats() {
        let t = SyncToken(Positions {
            events: 5,
            account_data: 2,
            receipts: 9,
            typing: 1,
            presence: 3,
            to_device: 4,
            device_lists: 8,
        });
        assert_eq!(SyncToken::parse(&t.to_string()).unwrap(), t);
        // A shorter token from an older format: missing streams start from 0.
        let short = SyncToken::parse("s7_3").unwrap();
        assert_eq!(
            (short.0.events, short.0.account_data, short.0.receipts),
            (7, 3, 0)
        );
        for bad in ["", "s", "x5", "s5_x", "s-1", "s1__2"] {
            assert!(SyncToken::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(pagination_position("s12", true).unwrap(), 12);
        assert_eq!(pagination_position(&t.to_string(), true).unwrap(), 6);
        assert_eq!(pagination_position(&t.to_string(), false).unwrap(), 5);
        assert_eq!(pagination_position("12", false).unwrap(), 12);
        assert!(pagination_position("abc", true).is_err());
    }
}
