//! Who sees which events of a room: history visibility at each event (spec "History
//! visibility"), the reader's membership at each event (`unsigned.membership`), and sync's
//! exception for the room's current state.

use std::collections::HashMap;

use ruma::RoomId;

use crate::{error::Result, server::Homeserver, storage::events::StoredEvent, users::Requester};

/// The viewer's membership at each of `events` (by event ID; after the event, so their
/// own join counts as joined), from one read of their membership changes in the room.
pub(super) async fn viewer_memberships(
    hs: &Homeserver,
    events: &[StoredEvent],
    room_id: &str,
    viewer: &Requester,
) -> Result<HashMap<String, String>> {
    let Some(latest) = events.iter().filter_map(|e| e.stream_pos).max() else {
        return Ok(HashMap::new());
    };
    let history = hs
        .storage
        .membership_history(room_id, viewer.user_id.as_str(), latest)
        .await?;
    Ok(events
        .iter()
        .filter_map(|e| {
            let pos = e.stream_pos?;
            let changes_so_far = history.partition_point(|(p, _)| *p <= pos);
            let membership = changes_so_far
                .checked_sub(1)
                .map_or("leave", |i| history[i].1.as_str());
            Some((e.event_id.clone(), membership.to_owned()))
        })
        .collect())
}

/// The events the user may see under the history visibility at each event (spec "History
/// visibility"): world_readable; joined at the event; shared while now joined; invited at
/// the event when visibility is invited.
pub(super) async fn visible(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    events: Vec<StoredEvent>,
) -> Result<Vec<StoredEvent>> {
    Ok(visible_and_hidden(hs, requester, room_id, events).await?.0)
}

/// `visible`, and the events it leaves out.
async fn visible_and_hidden(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    events: Vec<StoredEvent>,
) -> Result<(Vec<StoredEvent>, Vec<StoredEvent>)> {
    let user = requester.user_id.as_str();
    let current = hs
        .storage
        .membership_and_position(room_id.as_str(), user)
        .await?;
    let joined_now = current.as_ref().is_some_and(|(m, _)| m == "join");
    // A local event after the user's current join was built on state holding that join:
    // visible without looking its state up. (A remote one may come from a fork that has
    // not seen the join, so it is checked.)
    let joined_since = match &current {
        Some((m, Some(pos))) if m == "join" => Some(*pos),
        _ => None,
    };
    let local_suffix = format!(":{}", hs.config.server_name);
    let keys = [
        ("m.room.history_visibility".to_owned(), String::new()),
        ("m.room.member".to_owned(), user.to_owned()),
    ];
    let mut verdicts: HashMap<Option<i64>, bool> = HashMap::new();
    let mut out = Vec::with_capacity(events.len());
    let mut hidden = Vec::new();
    for e in events {
        let after_join = joined_since.zip(e.stream_pos).is_some_and(|(j, p)| p > j)
            && e.pdu["sender"]
                .as_str()
                .is_some_and(|s| s.ends_with(&local_suffix));
        let allowed = after_join
            || verdict_at(hs, e.state_after, &keys, joined_now, &mut verdicts).await?
            // A history visibility change is seen under the looser of the old and the
            // new setting, so readers see where their view of the history changes.
            || (e.pdu["type"] == "m.room.history_visibility"
                && e.pdu["state_key"] == ""
                && verdict_at(hs, e.state_before, &keys, joined_now, &mut verdicts).await?);
        // A user always sees their own membership events (else a leave or a rejected
        // invite would never reach them), as in Synapse.
        let own_membership = e.pdu["type"] == "m.room.member" && e.pdu["state_key"] == user;
        if allowed || own_membership {
            out.push(e);
        } else {
            hidden.push(e);
        }
    }
    Ok((out, hidden))
}

/// Whether the reader may see an event at this state (history visibility and their
/// membership in it), looked up once per state group.
async fn verdict_at(
    hs: &Homeserver,
    group: Option<i64>,
    keys: &[(String, String); 2],
    joined_now: bool,
    verdicts: &mut HashMap<Option<i64>, bool>,
) -> Result<bool> {
    if let Some(known) = verdicts.get(&group) {
        return Ok(*known);
    }
    let state = match group {
        Some(g) => hs.storage.state_keys_at_group(g, keys).await?,
        None => Default::default(),
    };
    let nids: Vec<i64> = state.values().copied().collect();
    let contents = hs.storage.events_by_nid(&nids).await?;
    let content_of = |key: &(String, String)| {
        state
            .get(key)
            .and_then(|nid| contents.iter().find(|c| c.event_nid == *nid))
            .map(|c| &c.pdu["content"])
    };
    let visibility = content_of(&keys[0])
        .and_then(|c| c["history_visibility"].as_str())
        .unwrap_or("shared")
        .to_owned();
    let membership = content_of(&keys[1])
        .and_then(|c| c["membership"].as_str())
        .unwrap_or("leave")
        .to_owned();
    let v = match visibility.as_str() {
        "world_readable" => true,
        _ if membership == "join" => true,
        "shared" => joined_now,
        "invited" => membership == "invite",
        _ => false,
    };
    verdicts.insert(group, v);
    Ok(v)
}

/// The events `visible` lets through, and the state events among the others that are the
/// room's current state; in their order.
pub(super) async fn visible_or_current_state(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    events: Vec<StoredEvent>,
) -> Result<Vec<StoredEvent>> {
    let descending = events
        .first()
        .zip(events.last())
        .is_some_and(|(a, b)| a.stream_pos > b.stream_pos);
    let (mut seen, hidden) = visible_and_hidden(hs, requester, room_id, events).await?;
    let hidden_state: Vec<(String, String)> = hidden
        .iter()
        .filter_map(|e| {
            Some((
                e.pdu["type"].as_str()?.to_owned(),
                e.pdu["state_key"].as_str()?.to_owned(),
            ))
        })
        .collect();
    if hidden_state.is_empty() {
        return Ok(seen);
    }
    let current: std::collections::HashSet<i64> = hs
        .storage
        .current_state_keys(room_id.as_str(), &hidden_state)
        .await?
        .into_values()
        .collect();
    seen.extend(
        hidden
            .into_iter()
            .filter(|e| current.contains(&e.event_nid)),
    );
    // Back in the order they came (by position, in the direction they were read).
    seen.sort_by_key(|e| e.stream_pos);
    if descending {
        seen.reverse();
    }
    Ok(seen)
}
