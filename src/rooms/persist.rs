//! The one way an event enters a room (DESIGN.md): build (or receive) a full PDU, check it
//! against the auth rules, work out the state after it, and persist event, DAG edges,
//! state, current state, memberships and stream position in one transaction. Writes to a
//! room are serialized (in process by `RoomLocks`, across processes by an advisory lock).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex, Weak},
};

use ruma::{
    EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, OwnedRoomId, RoomId, RoomVersionId, UserId,
    events::{StateEventType, TimelineEventType},
    room_version_rules::RoomVersionRules,
};
use serde_json::Value as JsonValue;

use super::pdu::{self, NewEvent, Pdu, Placement};
use crate::{
    error::{Error, Result},
    server::Homeserver,
    storage::{
        events::{NewEventRow, RoomWrite, StoredEvent},
        state::StateNids,
    },
};

/// In-process serialization of writes per room, so that waiting writers do not each hold a
/// database connection while the advisory lock is busy. Local writes are also bounded:
/// beyond `max_pending_writes` in the process, or `max_pending_writes_per_room` in one
/// room, a write is refused at once with 429 `M_LIMIT_EXCEEDED` rather than queued, so an
/// overloaded server answers quickly and its memory does not grow with the queue.
#[derive(Debug)]
pub struct RoomLocks {
    locks: Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>,
    pending: Arc<tokio::sync::Semaphore>,
    per_room: usize,
}

/// A room's write lock, held; with the write's place in the process's bound.
pub struct RoomWriteSlot {
    _guard: tokio::sync::OwnedMutexGuard<()>,
    _permit: Option<tokio::sync::OwnedSemaphorePermit>,
}

/// What an overloaded server asks clients to wait before retrying.
const BUSY_RETRY_MS: u64 = 1000;

impl RoomLocks {
    pub fn new(limits: &crate::config::LimitsConfig) -> Self {
        Self {
            locks: Mutex::default(),
            pending: Arc::new(tokio::sync::Semaphore::new(limits.max_pending_writes)),
            per_room: limits.max_pending_writes_per_room,
        }
    }

    fn room_mutex(&self, room_id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        if locks.len() > 1024 {
            locks.retain(|_, weak| weak.strong_count() > 0);
        }
        match locks.get(room_id).and_then(Weak::upgrade) {
            Some(m) => m,
            None => {
                let m = Arc::new(tokio::sync::Mutex::new(()));
                locks.insert(room_id.to_owned(), Arc::downgrade(&m));
                m
            }
        }
    }

    /// The room's lock for a local write, or `LimitExceeded` when too many wait already.
    pub async fn lock(&self, room_id: &str) -> Result<RoomWriteSlot> {
        let busy = || Error::LimitExceeded {
            retry_after_ms: BUSY_RETRY_MS,
        };
        let permit = self
            .pending
            .clone()
            .try_acquire_owned()
            .map_err(|_| busy())?;
        let mutex = self.room_mutex(room_id);
        // Every other writer holding or waiting for this room holds a clone of the mutex
        // (so the count is theirs plus this one).
        if Arc::strong_count(&mutex) > self.per_room {
            return Err(busy());
        }
        Ok(RoomWriteSlot {
            _guard: mutex.lock_owned().await,
            _permit: Some(permit),
        })
    }

    /// The room's lock without the bound: for events from other servers, which their
    /// transactions already pace.
    pub async fn lock_unbounded(&self, room_id: &str) -> RoomWriteSlot {
        RoomWriteSlot {
            _guard: self.room_mutex(room_id).lock_owned().await,
            _permit: None,
        }
    }
}

/// A room's identity and rules.
#[derive(Debug, Clone)]
pub struct RoomContext {
    pub room_id: OwnedRoomId,
    pub version: RoomVersionId,
    pub rules: RoomVersionRules,
}

pub fn rules_for(version: &RoomVersionId) -> Result<RoomVersionRules> {
    version
        .rules()
        .ok_or_else(|| Error::Internal(format!("no rules for room version {version}")))
}

pub async fn room_context(hs: &Homeserver, room_id: &RoomId) -> Result<RoomContext> {
    let (version, _) = hs
        .storage
        .room(room_id.as_str())
        .await?
        .ok_or_else(|| Error::NotFound("unknown room".into()))?;
    let version = RoomVersionId::try_from(version.as_str())
        .map_err(|e| Error::Internal(format!("stored room version: {e}")))?;
    let rules = rules_for(&version)?;
    Ok(RoomContext {
        room_id: room_id.to_owned(),
        version,
        rules,
    })
}

/// The room must exist here and the requester be joined to it.
pub async fn require_joined(
    hs: &Homeserver,
    requester: &crate::users::Requester,
    room_id: &RoomId,
) -> Result<()> {
    if hs.storage.room(room_id.as_str()).await?.is_none() {
        return Err(Error::NotFound("unknown room".into()));
    }
    match hs
        .storage
        .membership(room_id.as_str(), requester.user_id.as_str())
        .await?
        .as_deref()
    {
        Some("join") => Ok(()),
        _ => Err(Error::Forbidden("you are not in this room".into())),
    }
}

pub fn parse_stored(e: &StoredEvent) -> Result<Pdu> {
    let event_id =
        EventId::parse(&e.event_id).map_err(|_| Error::Internal("stored event ID".into()))?;
    let json = serde_json::from_value(e.pdu.clone())
        .map_err(|e| Error::Internal(format!("stored PDU: {e}")))?;
    Pdu::from_json(event_id, json)
}

/// State keys the auth rules may consult for an event: its auth types, plus the create
/// event, which room v12 leaves out of auth_events but the rules still read.
pub(super) fn auth_keys(
    rules: &RoomVersionRules,
    sender: &UserId,
    new: &NewEvent,
) -> Result<Vec<(String, String)>> {
    let content =
        serde_json::value::to_raw_value(&new.content).map_err(|e| Error::BadJson(e.to_string()))?;
    let event_type = TimelineEventType::from(new.event_type.as_str());
    let mut keys: Vec<(String, String)> = ruma::state_res::auth_types_for_event(
        &event_type,
        sender,
        new.state_key.as_deref(),
        &content,
        &rules.authorization,
    )
    .map_err(|e| Error::BadJson(format!("invalid event: {e}")))?
    .into_iter()
    .map(|(t, k)| (t.to_string(), k))
    .collect();
    let create = (StateEventType::RoomCreate.to_string(), String::new());
    if !keys.contains(&create) {
        keys.push(create);
    }
    Ok(keys)
}

/// What the auth checks read: the state before the event, by key, for the keys they use.
pub(super) struct AuthState {
    pub by_key: KnownState,
    pub by_id: HashMap<OwnedEventId, Pdu>,
}

pub(super) async fn load_auth_state(
    w: &mut RoomWrite,
    current: &StateNids,
    keys: &[(String, String)],
) -> Result<AuthState> {
    let wanted: Vec<(i64, (String, String))> = keys
        .iter()
        .filter_map(|k| current.get(k).map(|nid| (*nid, k.clone())))
        .collect();
    let nids: Vec<i64> = wanted.iter().map(|(n, _)| *n).collect();
    let events = w.events_by_nid(&nids).await?;
    let mut by_nid: HashMap<i64, Pdu> = HashMap::new();
    for e in &events {
        by_nid.insert(e.event_nid, parse_stored(e)?);
    }
    let mut state = AuthState {
        by_key: HashMap::new(),
        by_id: HashMap::new(),
    };
    for (nid, key) in wanted {
        if let Some(p) = by_nid.get(&nid) {
            state.by_id.insert(p.event_id.clone(), p.clone());
            state.by_key.insert(key, p.clone());
        }
    }
    Ok(state)
}

/// State events by (type, state key).
pub type KnownState = HashMap<(String, String), Pdu>;

/// A checked PDU with the state group before it (None only for a room's create event),
/// and the state it was checked against (what push evaluation reads too).
pub struct Checked {
    pub pdu: Pdu,
    pub state_before: Option<i64>,
    pub auth_state: KnownState,
}

/// Builds the next event of a room on its current forward extremities and checks it
/// against the auth rules with the state before it.
pub async fn build_checked(
    hs: &Homeserver,
    w: &mut RoomWrite,
    ctx: &RoomContext,
    sender: &UserId,
    new: &NewEvent,
) -> Result<Checked> {
    let extremities = w.extremities().await?;
    let keys = auth_keys(&ctx.rules, sender, new)?;
    let mut auth = AuthState {
        by_key: HashMap::new(),
        by_id: HashMap::new(),
    };
    for (key, event) in w.current_state_events_for(&keys).await? {
        let pdu = parse_stored(&event)?;
        auth.by_id.insert(pdu.event_id.clone(), pdu.clone());
        auth.by_key.insert(key, pdu);
    }
    let mut auth_events: Vec<OwnedEventId> = keys
        .iter()
        .filter(|(t, _)| {
            !(ctx.rules.authorization.room_create_event_id_as_room_id && t == "m.room.create")
        })
        .filter_map(|k| auth.by_key.get(k).map(|p| p.event_id.clone()))
        .collect();
    auth_events.sort();
    auth_events.dedup();
    let prev_events: Vec<OwnedEventId> = extremities
        .iter()
        .map(|e| {
            EventId::parse(&e.event_id).map_err(|_| Error::Internal("stored extremity".into()))
        })
        .collect::<Result<_>>()?;
    let depth = extremities.iter().map(|e| e.depth).max().unwrap_or(0) + 1;
    let pdu = pdu::build(
        &hs.keys,
        hs.config.server_name(),
        &ctx.rules,
        sender,
        new,
        &Placement {
            room_id: Some(&ctx.room_id),
            prev_events: &prev_events,
            auth_events: &auth_events,
            depth,
        },
        MilliSecondsSinceUnixEpoch::now(),
    )?;
    check_auth(&ctx.rules, &pdu, &auth)?;
    // Local events build on every extremity; with several (a fork from another server),
    // the state before is their resolution, kept when the fork arrived.
    let state_before =
        if extremities.len() > 1 {
            Some(w.resolved_state_group().await?.ok_or_else(|| {
                Error::Internal("forked room without a resolved state group".into())
            })?)
        } else {
            extremities.first().and_then(|e| e.state_after)
        };
    Ok(Checked {
        pdu,
        state_before,
        auth_state: auth.by_key,
    })
}

pub(super) fn check_auth(rules: &RoomVersionRules, pdu: &Pdu, auth: &AuthState) -> Result<()> {
    let rules = &rules.authorization;
    ruma::state_res::check_state_independent_auth_rules(rules, pdu, |id: &EventId| {
        auth.by_id.get(id)
    })
    .map_err(Error::Forbidden)?;
    ruma::state_res::check_state_dependent_auth_rules(rules, pdu, |t: &StateEventType, k: &str| {
        auth.by_key.get(&(t.to_string(), k.to_owned()))
    })
    .map_err(Error::Forbidden)?;
    Ok(())
}

/// How a stored event touches the room beyond the DAG.
pub(super) struct StoreAs<'a> {
    /// The client's (device, transaction ID), for idempotent sends.
    pub txn: Option<(&'a str, &'a str)>,
    /// Soft-failed events stay out of the extremities, the current state and the timeline.
    pub soft_failed: bool,
    /// The state before the event is the current state, so its own key goes straight into
    /// the current state (else the caller works the current state out).
    pub extends_current: bool,
    /// Whether a redaction may be applied to its target (local ones are checked before).
    pub redaction_allowed: bool,
}

/// Persists a checked PDU as the room's newest event: event, edges, extremities, state
/// group, current state and membership; the stream position is given at commit.
pub async fn store(
    w: &mut RoomWrite,
    ctx: &RoomContext,
    checked: &Checked,
    txn: Option<(&str, &str)>,
) -> Result<i64> {
    let how = StoreAs {
        txn,
        soft_failed: false,
        extends_current: true,
        redaction_allowed: true,
    };
    Ok(store_pdu(w, ctx, &checked.pdu, checked.state_before, &how)
        .await?
        .0)
}

/// Stores a PDU whose state before is `before`; returns its nid and state group after.
pub(super) async fn store_pdu(
    w: &mut RoomWrite,
    ctx: &RoomContext,
    pdu: &Pdu,
    before: Option<i64>,
    how: &StoreAs<'_>,
) -> Result<(i64, Option<i64>)> {
    let pdu_json = serde_json::to_value(&pdu.json).map_err(|e| Error::Internal(e.to_string()))?;
    let prev: Vec<String> = pdu.prev_events.iter().map(|e| e.to_string()).collect();
    let event_type = pdu.event_type.to_string();
    // The state event this one replaces (clients' `unsigned.prev_content`).
    let replaces_nid = match (&pdu.state_key, before) {
        (Some(key), Some(group)) => w
            .state_keys_at_group(group, &[(event_type.clone(), key.clone())])
            .await?
            .into_values()
            .next(),
        _ => None,
    };
    let nid = w
        .insert_event(&NewEventRow {
            event_id: pdu.event_id.as_str(),
            sender: pdu.sender.as_str(),
            event_type: &event_type,
            state_key: pdu.state_key.as_deref(),
            depth: pdu.depth,
            origin_server_ts: i64::from(pdu.origin_server_ts.0),
            pdu: &pdu_json,
            prev_events: &prev,
            txn: how.txn,
            soft_failed: how.soft_failed,
            state_before: before,
            // A state event's group after it needs its nid: set below.
            state_after: if pdu.state_key.is_none() {
                before
            } else {
                None
            },
            replaces_nid,
        })
        .await?;
    let after = match &pdu.state_key {
        None => before,
        Some(key) => {
            let delta: StateNids = [((event_type.clone(), key.clone()), nid)].into();
            let group = w
                .write_state_group(before, &delta, how.extends_current)
                .await?;
            if how.extends_current && !how.soft_failed {
                w.set_current_state(&event_type, key, nid).await?;
                if pdu.event_type == TimelineEventType::RoomMember {
                    w.set_membership(key, membership_of(pdu), nid).await?;
                }
            }
            w.set_event_state(nid, before, Some(group)).await?;
            Some(group)
        }
    };
    if how.soft_failed {
        return Ok((nid, after));
    }
    let relates_to = &pdu.content_json()["m.relates_to"];
    if let (Some(parent), Some(rel_type)) = (
        relates_to["event_id"].as_str(),
        relates_to["rel_type"].as_str(),
    ) {
        w.insert_relation(nid, parent, rel_type, &event_type, pdu.sender.as_str())
            .await?;
    }
    if pdu.event_type == TimelineEventType::RoomRedaction
        && how.redaction_allowed
        && let Some(target) = &pdu.redacts
    {
        // The stored copy loses what redaction removes; it is kept nowhere else.
        if let Some(event) = w.event_by_id(target.as_str()).await?
            && event.redacted_by.is_none()
        {
            let redacted = super::redaction::redacted_pdu(ctx, &event.pdu)?;
            w.apply_redaction(event.event_nid, &redacted, pdu.event_id.as_str())
                .await?;
        }
    }
    Ok((nid, after))
}

/// A member event's membership (`leave` when unreadable, as the auth rules treat it).
pub(super) fn membership_of(pdu: &Pdu) -> &'static str {
    match pdu.content_json()["membership"].as_str() {
        Some("join") => "join",
        Some("invite") => "invite",
        Some("ban") => "ban",
        Some("knock") => "knock",
        _ => "leave",
    }
}

/// Stores a built local event, records what it means to each local member's push rules,
/// and commits: everything in the one transaction.
pub async fn store_and_commit(
    hs: &Homeserver,
    mut w: crate::storage::events::RoomWrite,
    ctx: &RoomContext,
    checked: &Checked,
    txn: Option<(&str, &str)>,
) -> Result<i64> {
    let nid = store(&mut w, ctx, checked, txn).await?;
    let event = serde_json::to_value(&checked.pdu.json)
        .map_err(|e| Error::Internal(format!("event JSON: {e}")))?;
    crate::push::evaluate::record_push_actions(
        hs,
        &mut w,
        ctx,
        nid,
        &event,
        &checked.pdu.sender,
        &checked.auth_state,
    )
    .await?;
    w.commit(&[nid]).await?;
    Ok(nid)
}

/// Sends one event from a local user: the whole path, in one transaction.
pub async fn send(
    hs: &Homeserver,
    room_id: &RoomId,
    sender: &UserId,
    new: NewEvent,
    txn: Option<(&str, &str)>,
) -> Result<OwnedEventId> {
    let started = std::time::Instant::now();
    let ctx = room_context(hs, room_id).await?;
    let _slot = hs.room_locks.lock(room_id.as_str()).await?;
    let mut w = hs.storage.begin_room_write(room_id.as_str()).await?;
    let checked = build_checked(hs, &mut w, &ctx, sender, &new).await?;
    store_and_commit(hs, w, &ctx, &checked, txn).await?;
    hs.metrics.observe_event_persist(started.elapsed());
    Ok(checked.pdu.event_id)
}

/// `PUT /rooms/{roomId}/send/{type}/{txnId}`: idempotent per device and transaction ID (a
/// retry answers the first event's ID); counts as the user's activity for presence.
pub async fn send_message(
    hs: &Homeserver,
    requester: &crate::users::Requester,
    room_id: &RoomId,
    new: NewEvent,
    txn_id: &str,
) -> Result<OwnedEventId> {
    let (sender, device) = (&requester.user_id, requester.device_id.as_str());
    if let Some(id) = event_for_txn(hs, sender, device, txn_id).await? {
        return Ok(id);
    }
    let event_id = send_once(hs, room_id, sender, new, device, txn_id).await?;
    crate::users::presence::note_activity(hs, sender).await;
    Ok(event_id)
}

/// The event a device already sent under `txn_id`, if any.
pub async fn event_for_txn(
    hs: &Homeserver,
    sender: &UserId,
    device: &str,
    txn_id: &str,
) -> Result<Option<OwnedEventId>> {
    crate::limits::check_txn_id(txn_id)?;
    hs.storage
        .event_for_txn(sender.as_str(), device, txn_id)
        .await?
        .map(|id| OwnedEventId::try_from(id).map_err(|e| Error::Internal(e.to_string())))
        .transpose()
}

/// `send` under a device's transaction ID, for callers that checked `event_for_txn`
/// first. Concurrent retries of one transaction can both pass that check; the second's
/// insert then meets the first's row (a unique index), and it answers the first's event ID
/// as a retry should.
pub async fn send_once(
    hs: &Homeserver,
    room_id: &RoomId,
    sender: &UserId,
    new: NewEvent,
    device: &str,
    txn_id: &str,
) -> Result<OwnedEventId> {
    match send(hs, room_id, sender, new, Some((device, txn_id))).await {
        Ok(id) => Ok(id),
        Err(e) => match event_for_txn(hs, sender, device, txn_id).await {
            Ok(Some(first)) => Ok(first),
            _ => Err(e),
        },
    }
}

/// `PUT /rooms/{roomId}/state/{type}/{key}`: checks what the auth rules do not, then sends.
pub async fn send_state(
    hs: &Homeserver,
    room_id: &RoomId,
    sender: &UserId,
    event_type: &str,
    state_key: &str,
    content: JsonValue,
) -> Result<OwnedEventId> {
    if event_type == "m.room.canonical_alias" {
        super::aliases::check_canonical_alias(hs, room_id, &content).await?;
    }
    let new = NewEvent {
        event_type: event_type.to_owned(),
        content,
        state_key: Some(state_key.to_owned()),
        redacts: None,
    };
    send_state_once(hs, room_id, sender, new).await
}

/// Sends a state event unless the same sender already set the same content for its type
/// and key: then the current event's ID is the answer and no event is made, as Synapse
/// does (setting state twice, joining twice).
pub async fn send_state_once(
    hs: &Homeserver,
    room_id: &RoomId,
    sender: &UserId,
    new: NewEvent,
) -> Result<OwnedEventId> {
    if let Some(key) = &new.state_key
        && let Some(current) = current_state_event(hs, room_id, &new.event_type, key).await?
        && current.pdu["sender"].as_str() == Some(sender.as_str())
        && current.pdu["content"] == new.content
        && current.redacted_by.is_none()
    {
        return OwnedEventId::try_from(current.event_id)
            .map_err(|e| Error::Internal(e.to_string()));
    }
    send(hs, room_id, sender, new, None).await
}

/// A state event of the room's current state.
pub(crate) async fn current_state_event(
    hs: &Homeserver,
    room_id: &RoomId,
    event_type: &str,
    state_key: &str,
) -> Result<Option<crate::storage::events::StoredEvent>> {
    let key = (event_type.to_owned(), state_key.to_owned());
    let state = hs
        .storage
        .current_state_keys(room_id.as_str(), std::slice::from_ref(&key))
        .await?;
    let Some(nid) = state.get(&key) else {
        return Ok(None);
    };
    Ok(hs.storage.events_by_nid(&[*nid]).await?.into_iter().next())
}

/// A state event's content as JSON, from the room's current state.
pub async fn current_state_content(
    hs: &Homeserver,
    room_id: &RoomId,
    event_type: &str,
    state_key: &str,
) -> Result<Option<JsonValue>> {
    Ok(current_state_event(hs, room_id, event_type, state_key)
        .await?
        .map(|e| e.pdu["content"].clone()))
}

#[cfg(test)]
mod tests {
    use super::RoomLocks;
    use crate::{config::LimitsConfig, error::Error};

    fn limits(total: usize, per_room: usize) -> LimitsConfig {
        LimitsConfig {
            max_pending_writes: total,
            max_pending_writes_per_room: per_room,
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn writes_beyond_the_room_bound_are_refused_not_queued() {
        let locks = std::sync::Arc::new(RoomLocks::new(&limits(100, 2)));
        let held = locks.lock("!a:x").await.expect("first");
        // A second writer waits for the lock: within the bound.
        let waiting = tokio::spawn({
            let locks = locks.clone();
            async move { locks.lock("!a:x").await.map(|_| ()) }
        });
        // Held (the guard), waiting (its future), and this look: three handles.
        while std::sync::Arc::strong_count(&locks.room_mutex("!a:x")) < 3 {
            tokio::task::yield_now().await;
        }
        // A third is refused at once, with a retry hint.
        match locks.lock("!a:x").await {
            Err(Error::LimitExceeded { retry_after_ms }) => assert!(retry_after_ms > 0),
            other => panic!("expected LimitExceeded, got {:?}", other.map(|_| ())),
        }
        // Another room is not affected; the unbounded lock ignores the bound.
        drop(locks.lock("!b:x").await.expect("other room"));
        drop(held);
        waiting
            .await
            .unwrap()
            .expect("the waiting writer gets the lock");
        drop(locks.lock("!a:x").await.expect("free again"));
    }

    #[tokio::test]
    async fn the_process_bound_counts_every_room() {
        let locks = RoomLocks::new(&limits(2, 10));
        let a = locks.lock("!a:x").await.expect("a");
        let b = locks.lock("!b:x").await.expect("b");
        assert!(matches!(
            locks.lock("!c:x").await,
            Err(Error::LimitExceeded { .. })
        ));
        let _unbounded = locks.lock_unbounded("!c:x").await;
        drop((a, b));
        locks.lock("!d:x").await.expect("slots are given back");
    }
}
