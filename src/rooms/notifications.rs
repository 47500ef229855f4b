//! `GET /notifications`: the events that notified a user, newest first, paged by stream
//! position, with whether each has been read.

use std::collections::HashMap;

use serde_json::Value as JsonValue;

use crate::{
    error::{Error, Result},
    rooms::timeline,
    server::Homeserver,
    users::Requester,
};

const DEFAULT_LIMIT: i64 = 20;
const MAX_LIMIT: i64 = 100;

pub struct Notification {
    pub actions: JsonValue,
    pub event: JsonValue,
    pub read: bool,
    pub room_id: String,
    pub ts: i64,
}

/// Returns the page and the token of the next (older) one, if there may be more.
pub async fn notifications(
    hs: &Homeserver,
    requester: &Requester,
    from: Option<&str>,
    limit: Option<u64>,
    only: Option<&str>,
) -> Result<(Vec<Notification>, Option<String>)> {
    let before = match from {
        None => i64::MAX,
        Some(t) => t
            .parse::<i64>()
            .map_err(|_| Error::InvalidParam("invalid from token".into()))?,
    };
    let limit = limit.map_or(DEFAULT_LIMIT, |l| i64::try_from(l).unwrap_or(MAX_LIMIT));
    let limit = limit.clamp(1, MAX_LIMIT);
    let only_highlight = only == Some("highlight");
    let rows = hs
        .storage
        .notifications(requester.user_id.as_str(), before, limit, only_highlight)
        .await?;
    let nids: Vec<i64> = rows.iter().map(|r| r.event_nid).collect();
    let events: HashMap<i64, _> = hs
        .storage
        .events_by_nid(&nids)
        .await?
        .into_iter()
        .map(|e| (e.event_nid, e))
        .collect();
    let next = (rows.len() as i64 == limit)
        .then(|| rows.last().map(|r| r.stream_pos.to_string()))
        .flatten();
    let page = rows
        .into_iter()
        .filter_map(|r| {
            let e = events.get(&r.event_nid)?;
            Some(Notification {
                ts: e.pdu["origin_server_ts"].as_i64().unwrap_or(0),
                event: timeline::client_event(e, &r.room_id),
                actions: r.actions,
                read: r.read,
                room_id: r.room_id,
            })
        })
        .collect();
    Ok((page, next))
}
