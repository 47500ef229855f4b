//! `GET /sync`, the classic sync: everything that changed for a user between the `since`
//! token and now, across the server's streams (storage::streams). A sync with nothing to
//! say waits, up to its timeout, for a wake-up (notifier) naming the user or one of their
//! rooms, then looks again.
//!
//! Exactly once: a response covers stream positions (since, now], where `now` is read
//! before anything else and every position up to it is already visible (positions commit
//! in order). Memberships that changed after `now` are left to the next sync.

pub mod legacy;
mod rooms;
pub mod sliding;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    time::Duration,
};

use futures_util::{StreamExt, TryFutureExt};
use ruma::{
    OwnedRoomId, RoomId,
    api::client::{filter::FilterDefinition, sync::sync_events::v3},
    serde::Raw,
};
use serde_json::{Value as JsonValue, json};

use crate::sync_token::SyncToken;
use crate::{
    e2ee::{keys, to_device},
    error::{Error, Result},
    push::rules as push_rules,
    rooms::timeline::{self, EventFilter},
    server::{Homeserver, now_ms},
    storage::{
        streams::Positions,
        sync::{MembershipRow, ReceiptRow},
    },
    users::{Requester, presence},
};

/// Longest a sync may wait: clients ask for 30 s typically; a bound keeps connections sane.
const MAX_TIMEOUT: Duration = Duration::from_secs(300);
/// Timeline events per room when the filter gives no limit (as Synapse).
const DEFAULT_TIMELINE_LIMIT: u32 = 10;
const MAX_TIMELINE_LIMIT: u32 = 500;
/// Rooms of one response built at once (each holds a pool connection per query).
const ROOMS_IN_PARALLEL: usize = 4;

pub struct SyncRequest {
    pub since: Option<String>,
    pub filter: FilterDefinition,
    pub full_state: bool,
    pub timeout: Duration,
    pub set_presence: ruma::presence::PresenceState,
}

/// A filter as sync applies it.
pub(crate) struct SyncFilter<'a> {
    pub def: &'a FilterDefinition,
    pub timeline: EventFilter,
    pub state: EventFilter,
    pub limit: u32,
    pub full_state: bool,
    /// `event_format: federation`: events as PDUs.
    pub federation_format: bool,
}

pub(crate) fn raw<T>(value: &JsonValue) -> Result<Raw<T>> {
    serde_json::value::to_raw_value(value)
        .map(Raw::from_json)
        .map_err(|e| Error::Internal(format!("event JSON: {e}")))
}

/// Whether an event type passes a `types` / `not_types` pair (patterns may end in `*`).
fn type_allowed(types: &Option<Vec<String>>, not_types: &[String], t: &str) -> bool {
    let m = |p: &String| timeline::type_matches(p, t);
    types.as_ref().is_none_or(|ts| ts.iter().any(m)) && !not_types.iter().any(m)
}

/// The filter a sync names: inline, by ID (one the user stored), or none.
pub async fn resolve_filter(
    hs: &Homeserver,
    requester: &Requester,
    filter: Option<&ruma::api::client::sync::sync_events::v3::Filter>,
) -> Result<FilterDefinition> {
    use ruma::api::client::sync::sync_events::v3::Filter;
    match filter {
        None => Ok(FilterDefinition::default()),
        Some(Filter::FilterDefinition(def)) => Ok(def.clone()),
        // ruma reads a `filter` that is not a valid definition as an ID; one that starts
        // like JSON was meant as a definition.
        Some(Filter::FilterId(id)) if id.trim_start().starts_with('{') => Err(Error::NotJson(
            "the filter is neither a valid filter definition nor a filter ID".into(),
        )),
        Some(Filter::FilterId(id)) => {
            let json =
                crate::users::account_data::get_filter(hs, requester, &requester.user_id, id)
                    .await?;
            serde_json::from_value(json)
                .map_err(|e| Error::InvalidParam(format!("stored filter {id} is not valid: {e}")))
        }
        Some(_) => Err(Error::InvalidParam("unsupported filter".into())),
    }
}

/// The whole of `GET /sync`.
pub async fn sync(
    hs: &Homeserver,
    requester: &Requester,
    req: SyncRequest,
) -> Result<v3::Response> {
    let since = req.since.as_deref().map(SyncToken::parse).transpose()?;
    let timeout = req.timeout.min(MAX_TIMEOUT);
    let deadline = tokio::time::Instant::now() + timeout;
    let limit = req
        .filter
        .room
        .timeline
        .limit
        .map_or(DEFAULT_TIMELINE_LIMIT, |l| {
            u32::try_from(l).unwrap_or(u32::MAX)
        })
        .clamp(0, MAX_TIMELINE_LIMIT);
    let filter = SyncFilter {
        def: &req.filter,
        timeline: EventFilter {
            always_current_state: true,
            ignored_senders: timeline::ignored_users(hs, requester.user_id.as_str()).await?,
            ..EventFilter::from_ruma(&req.filter.room.timeline)
        },
        state: EventFilter::from_ruma(&req.filter.room.state),
        limit,
        full_state: req.full_state,
        federation_format: req.filter.event_format
            == ruma::api::client::filter::EventFormat::Federation,
    };
    let ack = async {
        if let Some(since) = since {
            // The client has these: they are delivered.
            hs.storage
                .ack_to_device(
                    requester.user_id.as_str(),
                    requester.device_id.as_str(),
                    since.0.to_device,
                )
                .await?;
        }
        Ok::<_, Error>(())
    };
    tokio::try_join!(
        presence::on_sync(hs, &requester.user_id, &req.set_presence, timeout),
        ack
    )?;
    // Subscribed before reading positions, so no wake-up falls in between.
    let mut wake = hs.notifier.subscribe();
    let mut examined = since;
    let mut woken_at = None;
    loop {
        let now = hs.storage.positions().await?;
        let interest = match examined {
            Some(seen) if !seen.behind(&now) && !req.full_state => interest(hs, requester).await?,
            _ => {
                let built = build(hs, requester, since, now, &filter).await?;
                if since.is_none() || req.full_state || !built.empty {
                    if let Some(at) = woken_at {
                        hs.metrics
                            .observe_sync_wakeup(std::time::Instant::elapsed(&at));
                    }
                    return Ok(built.response);
                }
                examined = Some(SyncToken(now));
                built.interest
            }
        };
        let woken = hs.notifier.wait_for(&mut wake, &interest, deadline).await;
        woken_at = Some(std::time::Instant::now());
        if !woken {
            let next = examined.unwrap_or_default();
            let mut response = v3::Response::new(next.to_string());
            add_key_counts(hs, requester, &mut response).await?;
            return Ok(response);
        }
    }
}

/// Wake-up keys that matter to this user: their own and their current rooms'.
fn interest_keys(user: &str, memberships: &[MembershipRow]) -> HashSet<String> {
    let rooms = memberships
        .iter()
        .filter(|m| m.membership != "leave" && m.membership != "ban")
        .map(|m| format!("r:{}", m.room_id));
    std::iter::once(format!("u:{user}")).chain(rooms).collect()
}

async fn interest(hs: &Homeserver, requester: &Requester) -> Result<HashSet<String>> {
    let user = requester.user_id.as_str();
    Ok(interest_keys(
        user,
        &hs.storage.user_memberships(user).await?,
    ))
}

struct Built {
    response: v3::Response,
    empty: bool,
    interest: HashSet<String>,
}

async fn build(
    hs: &Homeserver,
    requester: &Requester,
    since: Option<SyncToken>,
    now: Positions,
    f: &SyncFilter<'_>,
) -> Result<Built> {
    let user = requester.user_id.as_str();
    let from = since.map(|s| s.0).unwrap_or_default();
    let room_filter = &f.def.room;
    let wanted = |room: &str| {
        room_filter
            .rooms
            .as_ref()
            .is_none_or(|rs| rs.iter().any(|r| r.as_str() == room))
            && !room_filter.not_rooms.iter().any(|r| r.as_str() == room)
    };
    let mut response = v3::Response::new(SyncToken(now).to_string());
    let memberships = hs.storage.user_memberships(user).await?;
    let interest = interest_keys(user, &memberships);
    // (room, whether its whole state is sent, whether the user joined since the token)
    let mut joined: Vec<(OwnedRoomId, bool, bool)> = Vec::new();
    for m in memberships {
        let pos = m.stream_pos.unwrap_or(0);
        if pos > now.events || !wanted(&m.room_id) {
            continue;
        }
        let Ok(room_id) = RoomId::parse(&m.room_id) else {
            continue;
        };
        let changed = since.is_none() || pos > from.events;
        match m.membership.as_str() {
            "join" => {
                let newly_joined = since.is_some()
                    && changed
                    && hs
                        .storage
                        .membership_at(&m.room_id, user, from.events)
                        .await?
                        .as_deref()
                        != Some("join");
                let full = since.is_none() || f.full_state || newly_joined;
                joined.push((room_id, full, newly_joined));
            }
            "invite" if changed => {
                let invite = rooms::invited_room(hs, m.event_nid).await?;
                let inviter = invite.1.as_deref().unwrap_or_default();
                if !f.timeline.ignored_senders.contains(inviter) {
                    response.rooms.invite.insert(room_id, invite.0);
                }
            }
            "knock" if changed => {
                let knock = rooms::knocked_room(hs, m.event_nid).await?;
                response.rooms.knock.insert(room_id, knock);
            }
            "leave" | "ban"
                if (since.is_some() && changed)
                    || (since.is_none() && room_filter.include_leave) =>
            {
                let mut since_events = since.map(|s| s.0.events);
                if let Some(from_events) = since_events {
                    // Joined and left since the token: the client never had this room's
                    // state, so it gets all of it (as Synapse), up to the leave.
                    let history = hs.storage.membership_history(&m.room_id, user, pos).await?;
                    let joined_at_since = history
                        .iter()
                        .rev()
                        .find(|(p, _)| *p <= from_events)
                        .is_some_and(|(_, m)| m == "join");
                    let joined_since = history.iter().any(|(p, m)| *p > from_events && m == "join");
                    if !joined_at_since && joined_since {
                        since_events = None;
                    }
                }
                let left = rooms::left_room(hs, requester, &room_id, since_events, pos, f).await?;
                response.rooms.leave.insert(room_id, left);
            }
            _ => {}
        }
    }

    let settled: Vec<String> = joined
        .iter()
        .filter(|(_, full, _)| !full)
        .map(|(r, _, _)| r.to_string())
        .collect();
    let fresh: Vec<String> = joined
        .iter()
        .filter(|(_, full, _)| *full)
        .map(|(r, _, _)| r.to_string())
        .collect();
    // What follows is independent reads: run at once, the sync waits for the slowest
    // rather than for their sum (each is a round trip to PostgreSQL).
    let typing_now = async {
        // Rooms whose typing changed say so even when nobody types any more; rooms new
        // to the client only when someone types (as Synapse: no empty m.typing).
        let changed = hs
            .storage
            .typing_rooms_between(&settled, from.typing, now.typing)
            .await?;
        let mut typing: HashMap<String, Vec<String>> =
            changed.iter().map(|r| (r.clone(), Vec::new())).collect();
        let list: Vec<String> = changed.into_iter().chain(fresh.iter().cloned()).collect();
        for (room, who) in hs.storage.typing_in_rooms(&list, now_ms()).await? {
            typing.entry(room).or_default().push(who);
        }
        Ok::<_, Error>(typing)
    };
    // An initial sync always carries the push rules (clients read them from here).
    let initial_push_rules = async {
        if since.is_none()
            && type_allowed(
                &f.def.account_data.types,
                &f.def.account_data.not_types,
                push_rules::ACCOUNT_DATA_TYPE,
            )
        {
            return Ok(Some(
                push_rules::account_data_content(hs, &requester.user_id).await?,
            ));
        }
        Ok::<_, Error>(None)
    };
    let device_lists = async {
        if since.is_none() {
            return Ok::<_, Error>((Vec::new(), Vec::new()));
        }
        Ok::<_, Error>(tokio::try_join!(
            hs.storage
                .device_lists_changed(user, from.device_lists, from.events),
            hs.storage.device_lists_left(user, from.events)
        )?)
    };
    let device = requester.device_id.as_str();
    #[allow(clippy::type_complexity)]
    let (
        active,
        mut receipts,
        fresh_receipts,
        typing,
        account_data,
        push_rules_content,
        presence_now,
        (to_device, seen),
        (devices_changed, devices_left),
        (),
    ) = tokio::try_join!(
        hs.storage
            .rooms_with_events_between(&settled, from.events, now.events)
            .err_into(),
        // Newly joined rooms get all their receipts and typing; the others what changed.
        hs.storage
            .receipts_between(&settled, from.receipts, now.receipts)
            .err_into(),
        hs.storage
            .receipts_between(&fresh, 0, now.receipts)
            .err_into(),
        typing_now,
        hs.storage
            .account_data_between(user, from.account_data, now.account_data)
            .err_into(),
        initial_push_rules,
        presence_events(hs, user, since, now, &f.def.presence),
        to_device::pending(hs, user, device, from.to_device, now.to_device),
        device_lists,
        add_key_counts(hs, requester, &mut response),
    )?;
    let active: HashSet<String> = active.into_iter().collect();
    receipts.extend(fresh_receipts);
    let mut room_data: HashMap<String, Vec<JsonValue>> = HashMap::new();
    for (room, data_type, content) in account_data {
        let event = json!({ "type": data_type, "content": content });
        if room.is_empty() && since.is_none() && data_type == push_rules::ACCOUNT_DATA_TYPE {
            // Given below, merged over the current server defaults.
            continue;
        }
        if room.is_empty() {
            if type_allowed(
                &f.def.account_data.types,
                &f.def.account_data.not_types,
                &data_type,
            ) {
                response.account_data.events.push(raw(&event)?);
            }
        } else if type_allowed(
            &room_filter.account_data.types,
            &room_filter.account_data.not_types,
            &data_type,
        ) {
            room_data.entry(room).or_default().push(event);
        }
    }
    if let Some(content) = push_rules_content {
        response.account_data.events.push(raw(
            &json!({ "type": push_rules::ACCOUNT_DATA_TYPE, "content": content }),
        )?);
    }
    let mut receipts_by_room: HashMap<String, Vec<ReceiptRow>> = HashMap::new();
    for r in receipts {
        if r.receipt_type == "m.read.private" && r.user_id != user {
            continue;
        }
        receipts_by_room
            .entry(r.room_id.clone())
            .or_default()
            .push(r);
    }
    let ephemeral_ok = |t: &str| {
        type_allowed(
            &room_filter.ephemeral.types,
            &room_filter.ephemeral.not_types,
            t,
        )
    };

    let touched: Vec<&(OwnedRoomId, bool, bool)> = joined
        .iter()
        .filter(|(room_id, full, _)| {
            let key = room_id.as_str();
            *full
                || active.contains(key)
                || receipts_by_room.contains_key(key)
                || typing.contains_key(key)
                || room_data.contains_key(key)
        })
        .collect();
    // Rooms are built a few at a time: each is a handful of queries, and an initial sync
    // of a hundred rooms would otherwise wait for them one after another.
    let owned: Vec<(OwnedRoomId, bool, bool)> = touched.iter().map(|&r| r.clone()).collect();
    let built: Vec<Result<v3::JoinedRoom>> = futures_util::stream::iter(owned)
        .map(|(room_id, full, newly_joined)| async move {
            // A room joined since the token shows its recent history, not only what
            // happened since (as Synapse), and is always `limited` so that clients
            // paginate back rather than take it for the whole room.
            let since_events = (since.is_some() && !newly_joined).then_some(from.events);
            let (mut room, counts) = tokio::try_join!(
                rooms::joined_room(hs, requester, &room_id, full, since_events, now.events, f),
                hs.storage.unread_counts(user, room_id.as_str()).err_into()
            )?;
            room.timeline.limited |= newly_joined;
            add_unread_counts(counts, f, &mut room);
            Ok(room)
        })
        .buffered(ROOMS_IN_PARALLEL)
        .collect()
        .await;
    for ((room_id, full, _), room) in touched.into_iter().zip(built) {
        let key = room_id.as_str();
        let mut room = room?;
        if let Some(users) = typing.get(key)
            && ephemeral_ok("m.typing")
        {
            room.ephemeral.events.push(raw(
                &json!({ "type": "m.typing", "content": { "user_ids": users } }),
            )?);
        }
        if let Some(rs) = receipts_by_room.get(key)
            && ephemeral_ok("m.receipt")
        {
            room.ephemeral.events.push(raw(&receipt_event(rs))?);
        }
        for event in room_data.get(key).into_iter().flatten() {
            room.account_data.events.push(raw(event)?);
        }
        let empty = room.timeline.events.is_empty()
            && room.ephemeral.events.is_empty()
            && room.account_data.events.is_empty()
            && !*full;
        if !empty {
            response.rooms.join.insert(room_id.clone(), room);
        }
    }
    for event in presence_now {
        response.presence.events.push(raw(&event)?);
    }
    for event in &to_device {
        response.to_device.events.push(raw(event)?);
    }
    if seen < now.to_device {
        response.next_batch = SyncToken(Positions {
            to_device: seen,
            ..now
        })
        .to_string();
    }
    let ids = |v: Vec<String>| -> Vec<ruma::OwnedUserId> {
        v.into_iter().filter_map(|u| u.try_into().ok()).collect()
    };
    response.device_lists.changed = ids(devices_changed);
    response.device_lists.left = ids(devices_left);
    let empty = response.rooms.join.is_empty()
        && response.rooms.invite.is_empty()
        && response.rooms.leave.is_empty()
        && response.rooms.knock.is_empty()
        && response.account_data.events.is_empty()
        && response.presence.events.is_empty()
        && response.to_device.events.is_empty()
        && response.device_lists.changed.is_empty()
        && response.device_lists.left.is_empty();
    Ok(Built {
        response,
        empty,
        interest,
    })
}

/// `m.presence` events for the sync: changes (or, initially, the state) of the user and
/// of everyone sharing a room with them, through the filter's `presence` part.
async fn presence_events(
    hs: &Homeserver,
    user: &str,
    since: Option<SyncToken>,
    now: Positions,
    filter: &ruma::api::client::filter::Filter,
) -> Result<Vec<JsonValue>> {
    if !presence::is_enabled(hs) || !type_allowed(&filter.types, &filter.not_types, "m.presence") {
        return Ok(Vec::new());
    }
    let rows = hs
        .storage
        .presence_for_sync(
            user,
            since.map(|s| (s.0.presence, s.0.events)),
            now.presence,
        )
        .await?;
    let at = now_ms();
    let limit = filter
        .limit
        .map_or(usize::MAX, |l| usize::try_from(l).unwrap_or(usize::MAX));
    Ok(rows
        .iter()
        .filter(|r| {
            filter
                .senders
                .as_ref()
                .is_none_or(|s| s.iter().any(|u| u.as_str() == r.user_id))
                && !filter.not_senders.iter().any(|u| u.as_str() == r.user_id)
        })
        .take(limit)
        .map(|r| presence::presence_event(r, at))
        .collect())
}

/// Unread notification and highlight counts of a joined room; per thread when the filter
/// asks for `unread_thread_notifications` (the main timeline's stay in the room's counts).
fn add_unread_counts(
    counts: Vec<crate::storage::push::UnreadCounts>,
    f: &SyncFilter<'_>,
    room: &mut v3::JoinedRoom,
) {
    use ruma::api::client::sync::sync_events::UnreadNotificationsCount;
    let by_thread = f.def.room.timeline.unread_thread_notifications;
    let count = |n: i64| Some(ruma::UInt::try_from(n.max(0)).unwrap_or_default());
    let (mut notifications, mut highlights) = (0, 0);
    for c in counts {
        if by_thread && c.thread_id != "main" {
            let Ok(root) = ruma::OwnedEventId::try_from(c.thread_id.as_str()) else {
                continue;
            };
            let mut counts = UnreadNotificationsCount::new();
            counts.notification_count = count(c.notifications);
            counts.highlight_count = count(c.highlights);
            room.unread_thread_notifications.insert(root, counts);
        } else {
            notifications += c.notifications;
            highlights += c.highlights;
        }
    }
    room.unread_notifications.notification_count = count(notifications);
    room.unread_notifications.highlight_count = count(highlights);
}

/// The device's one-time key counts and unused fallback key types, in every response.
async fn add_key_counts(
    hs: &Homeserver,
    requester: &Requester,
    response: &mut v3::Response,
) -> Result<()> {
    let (user, device) = (requester.user_id.as_str(), requester.device_id.as_str());
    let (counts, fallback) = tokio::try_join!(
        keys::one_time_key_counts(hs, user, device),
        hs.storage
            .unused_fallback_key_types(user, device)
            .err_into()
    )?;
    for (algorithm, count) in counts {
        response.device_one_time_keys_count.insert(
            algorithm.into(),
            ruma::UInt::try_from(count.max(0)).unwrap_or_default(),
        );
    }
    response.device_unused_fallback_key_types =
        Some(fallback.into_iter().map(Into::into).collect());
    Ok(())
}

/// One `m.receipt` event for a room's receipts.
fn receipt_event(receipts: &[ReceiptRow]) -> JsonValue {
    let mut content: BTreeMap<&str, BTreeMap<&str, BTreeMap<&str, JsonValue>>> = BTreeMap::new();
    for r in receipts {
        let mut receipt = json!({ "ts": r.ts });
        if !r.thread_id.is_empty() {
            receipt["thread_id"] = json!(r.thread_id);
        }
        content
            .entry(&r.event_id)
            .or_default()
            .entry(&r.receipt_type)
            .or_default()
            .insert(&r.user_id, receipt);
    }
    json!({ "type": "m.receipt", "content": content })
}
