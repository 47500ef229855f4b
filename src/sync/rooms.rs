//! The per-room parts of a sync response: timeline, state, summary; invites, knocks, leaves.

use std::collections::HashSet;

use ruma::{OwnedUserId, RoomId, UInt, api::client::sync::sync_events::v3};
use serde_json::{Value as JsonValue, json};

use super::{SyncFilter, raw};
use crate::{
    error::Result,
    rooms::timeline,
    server::Homeserver,
    storage::{events::StoredEvent, state::StateNids},
    users::Requester,
};

/// Event client format for sync: without `room_id`, which the section gives.
pub(super) fn sync_format(mut events: Vec<JsonValue>) -> Vec<JsonValue> {
    for e in &mut events {
        if let Some(o) = e.as_object_mut() {
            o.remove("room_id");
        }
    }
    events
}

pub(super) struct TimelinePart {
    pub events: Vec<StoredEvent>,
    pub limited: bool,
    /// Pagination token for events before the timeline.
    pub prev_batch: String,
}

/// The newest `limit` events in (lower, upper] that the filter and visibility let through.
pub(super) async fn timeline_part(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    lower: Option<i64>,
    upper: i64,
    f: &SyncFilter<'_>,
) -> Result<TimelinePart> {
    let (mut events, end) = timeline::page_events(
        hs,
        requester,
        room_id,
        upper + 1,
        lower.map(|l| l + 1),
        true,
        f.limit + 1,
        &f.timeline,
    )
    .await?;
    let limited = events.len() > f.limit as usize || end.is_some();
    events.truncate(f.limit as usize);
    events.reverse();
    let first = events
        .first()
        .and_then(|e| e.stream_pos)
        .unwrap_or(upper + 1);
    // An initial sync whose timeline holds the whole room points back from the end, as
    // Synapse's does: paging back from there gives the timeline again, and `end`, which
    // clients and sytest expect of a room's first page (events come once by ID).
    let first = if lower.is_none() && !limited {
        upper + 1
    } else {
        first
    };
    Ok(TimelinePart {
        events,
        limited,
        prev_batch: format!("s{first}"),
    })
}

/// Senders whose membership a lazy-loading client needs for the timeline: those without a
/// member event of their own earlier in it (as Synapse).
fn timeline_senders(part: &TimelinePart) -> HashSet<String> {
    let mut members = HashSet::new();
    let mut member_events_seen: HashSet<&str> = HashSet::new();
    for e in &part.events {
        if let Some(sender) = e.pdu["sender"].as_str()
            && !member_events_seen.contains(sender)
        {
            members.insert(sender.to_owned());
        }
        if e.pdu["type"] == "m.room.member"
            && let Some(key) = e.pdu["state_key"].as_str()
        {
            member_events_seen.insert(key);
        }
    }
    members
}

/// State at the start of the timeline: all of it (`delta_since` None) or, incrementally,
/// the keys that changed in a gap since a position. When lazy loading, member events only
/// for the timeline's senders (and, in full state, the user), for members that changed in
/// the gap, and not those this device already has unless the filter wants them again.
async fn state_part(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    part: &TimelinePart,
    upper: i64,
    delta_since: Option<i64>,
    f: &SyncFilter<'_>,
) -> Result<Vec<JsonValue>> {
    let group = match part.events.first() {
        Some(first) => first.state_before,
        None => {
            hs.storage
                .state_group_at_position(room_id.as_str(), upper + 1)
                .await?
        }
    };
    let lazy = f.state.lazy_load_members;
    let mut members = if lazy {
        timeline_senders(part)
    } else {
        HashSet::new()
    };
    if delta_since.is_none() {
        members.insert(requester.user_id.to_string());
    }
    let mut changed: HashSet<(String, String)> = HashSet::new();
    let state: StateNids = match (group, delta_since) {
        (None, _) => StateNids::new(),
        (Some(group), None) => hs.storage.state_at_group(group).await?,
        (Some(group), Some(since)) => {
            let first = part
                .events
                .first()
                .and_then(|e| e.stream_pos)
                .unwrap_or(upper + 1);
            let mut keys = if part.limited {
                hs.storage
                    .state_keys_changed_between(room_id.as_str(), since, first)
                    .await?
            } else {
                Vec::new()
            };
            changed.extend(keys.iter().cloned());
            keys.extend(
                members
                    .iter()
                    .map(|m| ("m.room.member".to_owned(), m.clone())),
            );
            if keys.is_empty() {
                StateNids::new()
            } else {
                hs.storage.state_keys_at_group(group, &keys).await?
            }
        }
    };
    let in_timeline: HashSet<&str> = part.events.iter().map(|e| e.event_id.as_str()).collect();
    let device = (requester.user_id.as_str(), requester.device_id.as_str());
    let nids: Vec<i64> = state.into_values().collect();
    let mut events: Vec<StoredEvent> = hs
        .storage
        .events_by_nid(&nids)
        .await?
        .into_iter()
        .filter(|e| !in_timeline.contains(e.event_id.as_str()) && f.state.accepts(e))
        .filter(|e| {
            if !lazy || e.pdu["type"] != "m.room.member" {
                return true;
            }
            let key = e.pdu["state_key"].as_str().unwrap_or_default();
            if changed.contains(&("m.room.member".to_owned(), key.to_owned())) {
                return true;
            }
            members.contains(key)
                && (f.state.include_redundant_members
                    || delta_since.is_none_or(|since| {
                        !hs.sent_members.known(
                            device,
                            room_id.as_str(),
                            key,
                            e.event_id.as_str(),
                            since,
                        )
                    }))
        })
        .collect();
    events.sort_by_key(|e| e.stream_pos);
    if lazy {
        let sent = events
            .iter()
            .chain(&part.events)
            .filter(|e| e.pdu["type"] == "m.room.member")
            .filter_map(|e| Some((e.pdu["state_key"].as_str()?, e.event_id.as_str())));
        hs.sent_members.mark(device, room_id.as_str(), sent, upper);
    }
    if f.federation_format {
        return Ok(events.iter().map(federation_format).collect());
    }
    Ok(sync_format(
        events
            .iter()
            .map(|e| timeline::client_event(e, room_id.as_str()))
            .collect(),
    ))
}

/// An event as the filter's `event_format: federation` asks: the PDU as servers exchange
/// it, with its event ID.
fn federation_format(e: &StoredEvent) -> JsonValue {
    let mut pdu = e.pdu.clone();
    pdu["event_id"] = json!(e.event_id);
    pdu
}

async fn timeline_events(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    part: &TimelinePart,
    f: &SyncFilter<'_>,
) -> Result<v3::Timeline> {
    let events = if f.federation_format {
        part.events.iter().map(federation_format).collect()
    } else {
        let events = timeline::client_events(hs, &part.events, room_id.as_str(), requester).await?;
        sync_format(events)
    };
    let mut timeline = v3::Timeline::new();
    timeline.limited = part.limited;
    timeline.prev_batch = Some(part.prev_batch.clone());
    timeline.events = events.iter().map(raw).collect::<Result<_>>()?;
    Ok(timeline)
}

/// Member counts and heroes, for a room whose membership the client must learn.
async fn summary(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
) -> Result<v3::RoomSummary> {
    let (joined, invited) = hs.storage.member_counts(room_id.as_str()).await?;
    let mut summary = v3::RoomSummary::new();
    summary.joined_member_count = UInt::new(joined.max(0) as u64);
    summary.invited_member_count = UInt::new(invited.max(0) as u64);
    let names = [
        ("m.room.name".to_owned(), String::new()),
        ("m.room.canonical_alias".to_owned(), String::new()),
    ];
    let named = !hs
        .storage
        .current_state_keys(room_id.as_str(), &names)
        .await?
        .is_empty();
    if !named {
        summary.heroes = hs
            .storage
            .heroes(room_id.as_str(), requester.user_id.as_str())
            .await?
            .iter()
            .filter_map(|u| OwnedUserId::try_from(u.as_str()).ok())
            .collect();
    }
    Ok(summary)
}

fn is_member_event(event: &JsonValue) -> bool {
    event["type"] == "m.room.member"
}

/// A joined room: the timeline in (since, upper], the state at its start (all of it when
/// `newly` joined, else what changed in a gap), and the summary when membership changed.
pub(super) async fn joined_room(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    newly: bool,
    since: Option<i64>,
    upper: i64,
    f: &SyncFilter<'_>,
) -> Result<v3::JoinedRoom> {
    let part = timeline_part(hs, requester, room_id, since, upper, f).await?;
    let delta_since = if newly { None } else { since };
    let (state, timeline) = tokio::try_join!(
        state_part(hs, requester, room_id, &part, upper, delta_since, f),
        timeline_events(hs, requester, room_id, &part, f)
    )?;
    let mut room = v3::JoinedRoom::new();
    room.timeline = timeline;
    if newly
        || state.iter().any(is_member_event)
        || part.events.iter().any(|e| is_member_event(&e.pdu))
    {
        room.summary = summary(hs, requester, room_id).await?;
    }
    room.state = v3::State::Before(v3::StateEvents::with_events(
        state.iter().map(raw).collect::<Result<_>>()?,
    ));
    Ok(room)
}

/// A room left (or banned from) at position `left_at`: the timeline up to that event.
pub(super) async fn left_room(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    since: Option<i64>,
    left_at: i64,
    f: &SyncFilter<'_>,
) -> Result<v3::LeftRoom> {
    let part = timeline_part(hs, requester, room_id, since, left_at, f).await?;
    let state = state_part(hs, requester, room_id, &part, left_at, since, f).await?;
    let mut room = v3::LeftRoom::new();
    room.timeline = timeline_events(hs, requester, room_id, &part, f).await?;
    room.state = v3::State::Before(v3::StateEvents::with_events(
        state.iter().map(raw).collect::<Result<_>>()?,
    ));
    Ok(room)
}

pub(super) async fn stripped_state(hs: &Homeserver, event_nid: i64) -> Result<Vec<JsonValue>> {
    let Some(own) = hs.storage.events_by_nid(&[event_nid]).await?.pop() else {
        return Ok(Vec::new());
    };
    let mut events = Vec::new();
    // An invite from another server to a room not held here: the state it came with.
    if own.outlier
        && let Some(user) = own.pdu["state_key"].as_str()
        && let Some(sent) =
            crate::rooms::invites::stripped_state_of(hs, &own.room_id, user, event_nid).await?
    {
        let mut shown: Vec<JsonValue> = sent
            .into_iter()
            .filter(|e| !(e["type"] == "m.room.member" && e["state_key"] == user))
            .collect();
        shown.push(crate::rooms::invites::stripped(&own.pdu));
        return Ok(shown);
    }
    if let Some(group) = own.state_after {
        let mut keys: Vec<(String, String)> = crate::rooms::invites::STRIPPED_STATE
            .iter()
            .map(|t| ((*t).to_owned(), String::new()))
            .collect();
        // The inviter's own membership: clients (matrix-sdk) read who invited them, with
        // their display name, from it.
        if let Some(sender) = own.pdu["sender"].as_str()
            && own.pdu["state_key"].as_str() != Some(sender)
        {
            keys.push(("m.room.member".to_owned(), sender.to_owned()));
        }
        let nids: Vec<i64> = hs
            .storage
            .state_keys_at_group(group, &keys)
            .await?
            .into_values()
            .collect();
        events = hs.storage.events_by_nid(&nids).await?;
    }
    events.push(own);
    Ok(events
        .iter()
        .map(|e| crate::rooms::invites::stripped(&e.pdu))
        .collect())
}

/// An invite, and who sent it.
pub(super) async fn invited_room(
    hs: &Homeserver,
    event_nid: i64,
) -> Result<(v3::InvitedRoom, Option<String>)> {
    let events = stripped_state(hs, event_nid).await?;
    // The invite itself comes last.
    let inviter = events
        .last()
        .and_then(|e| e["sender"].as_str())
        .map(str::to_owned);
    let mut room = v3::InvitedRoom::new();
    room.invite_state.events = events.iter().map(raw).collect::<Result<_>>()?;
    Ok((room, inviter))
}

pub(super) async fn knocked_room(hs: &Homeserver, event_nid: i64) -> Result<v3::KnockedRoom> {
    let events = stripped_state(hs, event_nid).await?;
    let mut room = v3::KnockedRoom::new();
    room.knock_state.events = events.iter().map(raw).collect::<Result<_>>()?;
    Ok(room)
}
