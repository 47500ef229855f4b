//! The second way an event enters a room (DESIGN.md): a PDU made by another server.
//! Federation calls `receive_pdu` once it holds the signing keys of the PDU's servers and
//! every event the PDU references. The checks are the spec's "checks performed on receipt
//! of a PDU"; storage and the tail are the local path's (`persist::store_pdu`, `persist::finish`). This is the only place
//! where a room forks, and so where forks are resolved.

use std::collections::{HashMap, HashSet};

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, EventId, OwnedEventId, RoomId, UserId,
    events::{StateEventType, TimelineEventType},
    room_version_rules::{EventIdFormatVersion, RoomVersionRules},
    signatures::{PublicKeyMap, Verified},
    state_res::events::{RoomCreateEvent, RoomPowerLevelsEvent, RoomPowerLevelsIntField},
};

use super::{
    auth::{AuthState, auth_keys, check_auth, load_auth_state},
    context::{self, RoomContext, parse_stored},
    pdu::{NewEvent, Pdu},
    persist::{self, StoreAs, resolve_state_before, update_current_state},
};
use crate::{
    error::{Error, Result},
    server::Homeserver,
    storage::{
        events::{NewEventRow, RoomWrite},
        state::StateNids,
    },
};

/// What became of a received PDU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// In the DAG, the timeline and (for state) the room's state.
    Accepted,
    /// Allowed by the state before it but not by the current state: kept in the DAG only.
    SoftFailed,
    /// Already here; nothing changed.
    AlreadyKnown,
}

/// A PDU's event ID: its `event_id` field (room v1, v2), else its reference hash.
pub fn event_id_of(json: &CanonicalJsonObject, rules: &RoomVersionRules) -> Result<OwnedEventId> {
    let id = match rules.event_id_format {
        EventIdFormatVersion::V1 => match json.get("event_id") {
            Some(CanonicalJsonValue::String(s)) => s.clone(),
            _ => return Err(Error::BadJson("PDU has no event_id".into())),
        },
        _ => {
            let hash = ruma::signatures::reference_hash(json, rules)
                .map_err(|e| Error::BadJson(format!("PDU: {e}")))?;
            format!("${hash}")
        }
    };
    EventId::parse(&id).map_err(|e| Error::BadJson(format!("event ID: {e}")))
}

/// The spec's limit on a PDU (local events keep to ruma's one byte less).
const MAX_REMOTE_PDU_BYTES: usize = 65_536;

/// The limits a local event meets, so nothing stored from another server fails to load or
/// to store: the whole PDU within the spec's 65,536 bytes, its content no deeper than a
/// client's may be, no NUL characters.
pub fn check_structure(json: &CanonicalJsonObject) -> Result<()> {
    let bytes = serde_json::to_vec(json).map_err(|e| Error::BadJson(format!("PDU: {e}")))?;
    if bytes.len() > MAX_REMOTE_PDU_BYTES {
        return Err(Error::EventTooLarge(format!(
            "PDU of {} bytes; at most {MAX_REMOTE_PDU_BYTES} are allowed",
            bytes.len()
        )));
    }
    // The PDU object is one level above what a client sends as content.
    crate::json_guard::check(&bytes, crate::json_guard::MAX_DEPTH + 1)
        .map_err(|e| Error::BadJson(format!("PDU: {e}")))
}

/// Checks a remote PDU's format, hashes and signatures (with `keys`, the verify keys of
/// its servers) and parses it; a PDU whose content hash fails is redacted, as the spec says.
pub fn verify_remote_pdu(
    ctx: &RoomContext,
    json: CanonicalJsonObject,
    keys: &PublicKeyMap,
) -> Result<Pdu> {
    let pdu = verify_pdu(ctx, json, keys)?;
    if pdu.event_type == TimelineEventType::RoomCreate {
        return Err(Error::BadJson(
            "a create event cannot be received into a room that exists".into(),
        ));
    }
    Ok(pdu)
}

/// `verify_remote_pdu`, create events included (a room being joined brings its own).
pub(super) fn verify_pdu(
    ctx: &RoomContext,
    mut json: CanonicalJsonObject,
    keys: &PublicKeyMap,
) -> Result<Pdu> {
    let rules = &ctx.rules;
    check_structure(&json)?;
    ruma::state_res::check_pdu_format(&json, &rules.event_format)
        .map_err(|e| Error::BadJson(format!("malformed PDU: {e}")))?;
    let event_id = event_id_of(&json, rules)?;
    match ruma::signatures::verify_event(keys, &json, rules)
        .map_err(|e| Error::Forbidden(format!("signature check failed: {e}")))?
    {
        Verified::All => {}
        Verified::Signatures => {
            json = ruma::canonical_json::redact(json, &rules.redaction, None)
                .map_err(|e| Error::BadJson(format!("PDU: {e}")))?;
        }
    }
    let pdu = Pdu::from_json(event_id, json).map_err(|e| Error::BadJson(e.to_string()))?;
    // Room v12: the create event has no room_id; the room's ID is made from its ID.
    if pdu.event_type == TimelineEventType::RoomCreate
        && rules.authorization.room_create_event_id_as_room_id
    {
        let derived = format!("!{}", pdu.event_id.as_str().trim_start_matches('$'));
        if derived != ctx.room_id.as_str() {
            return Err(Error::BadJson("the create event is another room's".into()));
        }
        return Ok(pdu);
    }
    if pdu.room_id.as_deref() != Some(&*ctx.room_id) {
        return Err(Error::BadJson("PDU is for another room".into()));
    }
    Ok(pdu)
}

/// Verifies, checks and persists a PDU from another server.
pub async fn receive_pdu(
    hs: &Homeserver,
    room_id: &RoomId,
    json: CanonicalJsonObject,
    keys: &PublicKeyMap,
) -> Result<(OwnedEventId, Received)> {
    receive_pdu_with_prev_states(hs, room_id, json, keys, &HashMap::new()).await
}

/// `receive_pdu` for a membership event another server's user made through this one
/// (`send_join`, `send_leave`, `send_knock`): this server passes it on to the other
/// servers in the room, which the user's own server does not know (not back to it).
pub async fn receive_and_pass_on(
    hs: &Homeserver,
    room_id: &RoomId,
    json: CanonicalJsonObject,
    keys: &PublicKeyMap,
) -> Result<(OwnedEventId, Received)> {
    let origin = match json.get("sender") {
        Some(CanonicalJsonValue::String(sender)) => UserId::parse(sender.as_str())
            .map(|u| u.server_name().to_owned())
            .map_err(|_| Error::BadJson("the event's sender".into()))?,
        _ => return Err(Error::BadJson("the event has no sender".into())),
    };
    receive(hs, room_id, json, keys, &HashMap::new(), Some(&origin)).await
}

/// `receive_pdu` for a PDU some of whose prev events this server lacks (or holds only as
/// outliers), with the state after each of those as the sending server gave it (by
/// event nid, those events stored as outliers first).
pub async fn receive_pdu_with_prev_states(
    hs: &Homeserver,
    room_id: &RoomId,
    json: CanonicalJsonObject,
    keys: &PublicKeyMap,
    prev_states: &HashMap<String, StateNids>,
) -> Result<(OwnedEventId, Received)> {
    receive(hs, room_id, json, keys, prev_states, None).await
}

async fn receive(
    hs: &Homeserver,
    room_id: &RoomId,
    json: CanonicalJsonObject,
    keys: &PublicKeyMap,
    prev_states: &HashMap<String, StateNids>,
    pass_on_from: Option<&ruma::ServerName>,
) -> Result<(OwnedEventId, Received)> {
    let ctx = context::room_context(hs, room_id).await?;
    let pdu = verify_remote_pdu(&ctx, json, keys)?;
    let slot = hs.room_locks.lock_unbounded(room_id.as_str()).await;
    let mut w = hs.storage.begin_room_write(room_id.as_str()).await?;
    // An outlier (held for lookups) comes into the DAG now; its row is taken over.
    if w.event_by_id(pdu.event_id.as_str())
        .await?
        .is_some_and(|e| !e.outlier)
    {
        return Ok((pdu.event_id, Received::AlreadyKnown));
    }
    let rules = &ctx.rules;

    // 1. Against its own auth events.
    let mut verdict = match load_own_auth_events(&mut w, rules, &pdu).await {
        Ok(auth) => check_auth(rules, &pdu, &auth),
        Err(Error::Rejected(why)) => Err(Error::Rejected(why)),
        Err(e) => return Err(e),
    };
    // A redaction of another room's event is nonsense: rejected, as Synapse does.
    if verdict.is_ok()
        && let Some(target) = &pdu.redacts
        && !w
            .events_of_other_rooms(&[target.to_string()])
            .await?
            .is_empty()
    {
        verdict = Err(Error::Rejected(format!(
            "it redacts {target}, an event of another room"
        )));
    }

    // 2. Against the state before it: the resolution of the states after its prev_events
    //    (for those this server lacks, the states the sender gave). An event rejected
    //    already is not worth fetching its prev events for.
    let before = match state_before(&mut w, &ctx, &pdu, prev_states).await {
        Ok(before) => before,
        Err(e) => return Err(verdict.err().unwrap_or(e)),
    };
    let keys = auth_keys(rules, &pdu.sender, &new_event_of(&pdu))?;
    let mut before_auth = None;
    if verdict.is_ok() {
        let at_before = w.state_keys_at_group(before, &keys).await?;
        let loaded = load_auth_state(&mut w, &at_before, &keys).await?;
        verdict = check_auth(rules, &pdu, &loaded);
        before_auth = Some(loaded);
    }
    // Rejected: kept out of the timeline and the state, but known, so that events after
    // it (another server built on it) are not stuck on a missing prev event.
    if let Err(Error::Rejected(why)) = verdict {
        keep_rejected(&mut w, &pdu, before).await?;
        w.commit(&[]).await?;
        return Err(Error::Rejected(why));
    }
    verdict?;
    let Some(before_auth) = before_auth else {
        return Err(Error::Internal("no auth state before the event".into()));
    };

    // 3. Against the current state: soft-failed on failure.
    let current = w.current_state_for(&keys).await?;
    let current_auth = load_auth_state(&mut w, &current, &keys).await?;
    let soft_failed = check_auth(rules, &pdu, &current_auth).is_err();

    let redaction_allowed = match &pdu.redacts {
        Some(target) => may_redact(&mut w, rules, &pdu, target, &before_auth).await?,
        None => false,
    };
    let old_extremities: HashSet<String> = w
        .extremities()
        .await?
        .into_iter()
        .map(|e| e.event_id)
        .collect();
    let prev_ids: HashSet<String> = pdu.prev_events.iter().map(|e| e.to_string()).collect();
    // Built on exactly the current extremities: its state before is the current state.
    let extends_current = !soft_failed && prev_ids == old_extremities;
    let how = StoreAs {
        txn: None,
        soft_failed,
        extends_current,
        redaction_allowed,
        federate_from: (pass_on_from.is_some() && !soft_failed && hs.config.federation_enabled())
            .then(|| hs.config.server_name().as_str()),
        historical: false,
        federate_except: pass_on_from.map(|s| s.as_str()),
    };
    let (nid, _) = persist::store_pdu(&mut w, &ctx, &pdu, Some(before), &how).await?;
    if !soft_failed && !extends_current {
        update_current_state(&mut w, &ctx).await?;
    }
    persist::finish(hs, w, &ctx, nid, &pdu, &before_auth.by_key, soft_failed).await?;
    drop(slot);
    if soft_failed {
        return Ok((pdu.event_id, Received::SoftFailed));
    }
    if pdu.event_type == TimelineEventType::RoomGuestAccess && pdu.state_key.as_deref() == Some("")
    {
        // Another server's change of guest access: our guests leave as after a local one.
        if let Err(e) = super::membership::remove_guests(hs, room_id).await {
            tracing::warn!(%room_id, "guests not removed after guest access changed: {e}");
        }
    }
    Ok((pdu.event_id, Received::Accepted))
}

fn new_event_of(pdu: &Pdu) -> NewEvent {
    NewEvent {
        event_type: pdu.event_type.to_string(),
        content: pdu.content_json(),
        state_key: pdu.state_key.clone(),
        redacts: pdu.redacts.clone(),
        origin_server_ts: None,
    }
}

/// The state group before a PDU: the resolution of the states after its prev_events (for
/// those this server lacks, or holds only as outliers, the states in `prev_states`).
async fn state_before(
    w: &mut RoomWrite,
    ctx: &RoomContext,
    pdu: &Pdu,
    prev_states: &HashMap<String, StateNids>,
) -> Result<i64> {
    let wanted: Vec<String> = pdu.prev_events.iter().map(|e| e.to_string()).collect();
    let found = w.events_by_ids(&wanted).await?;
    let mut groups: Vec<i64> = Vec::new();
    let mut missing = Vec::new();
    for id in &wanted {
        match found
            .iter()
            .find(|e| &e.event_id == id)
            .and_then(|e| e.state_after)
        {
            Some(group) => groups.push(group),
            None => match prev_states.get(id) {
                Some(state) => groups.push(w.write_root_state_group(state).await?),
                None => missing.push(id.clone()),
            },
        }
    }
    if !missing.is_empty() {
        return Err(Error::UnknownEvents(missing));
    }
    resolve_state_before(w, ctx, &groups).await
}

/// Takes in an event of the room's history from another server's `/backfill`, older than
/// every event of the timeline here: checked as any received PDU is (format, hashes,
/// signatures, its auth events, the state before it) but not against the current state;
/// stored in the DAG at `position` (from `Storage::backfill_positions`) without becoming
/// a forward extremity or touching the current state, and with no notification. The
/// room's create event may come this way too (the join held it as an outlier).
pub async fn receive_historical(
    hs: &Homeserver,
    room_id: &RoomId,
    json: CanonicalJsonObject,
    keys: &PublicKeyMap,
    prev_states: &HashMap<String, StateNids>,
    position: i64,
) -> Result<(OwnedEventId, Received)> {
    let ctx = context::room_context(hs, room_id).await?;
    let pdu = verify_pdu(&ctx, json, keys)?;
    let _slot = hs.room_locks.lock_unbounded(room_id.as_str()).await;
    let mut w = hs.storage.begin_room_write(room_id.as_str()).await?;
    if w.event_by_id(pdu.event_id.as_str())
        .await?
        .is_some_and(|e| !e.outlier)
    {
        return Ok((pdu.event_id, Received::AlreadyKnown));
    }
    let rules = &ctx.rules;
    let auth = load_own_auth_events(&mut w, rules, &pdu).await?;
    check_auth(rules, &pdu, &auth)?;
    let before = if pdu.event_type == TimelineEventType::RoomCreate {
        None
    } else {
        let before = state_before(&mut w, &ctx, &pdu, prev_states).await?;
        let keys = auth_keys(rules, &pdu.sender, &new_event_of(&pdu))?;
        let at_before = w.state_keys_at_group(before, &keys).await?;
        check_auth(
            rules,
            &pdu,
            &load_auth_state(&mut w, &at_before, &keys).await?,
        )?;
        Some(before)
    };
    let redaction_allowed = match (&pdu.redacts, before) {
        (Some(target), Some(group)) => {
            let keys = auth_keys(rules, &pdu.sender, &new_event_of(&pdu))?;
            let at_before = w.state_keys_at_group(group, &keys).await?;
            let before_auth = load_auth_state(&mut w, &at_before, &keys).await?;
            may_redact(&mut w, rules, &pdu, target, &before_auth).await?
        }
        _ => false,
    };
    let how = StoreAs {
        txn: None,
        soft_failed: false,
        extends_current: false,
        redaction_allowed,
        federate_from: None,
        historical: true,
        federate_except: None,
    };
    let (nid, _) = persist::store_pdu(&mut w, &ctx, &pdu, before, &how).await?;
    w.commit_historical(nid, position).await?;
    Ok((pdu.event_id, Received::Accepted))
}

/// Stores a checked PDU as an outlier (for lookups only); its nid.
pub(super) async fn insert_outlier(w: &mut RoomWrite, pdu: &Pdu) -> Result<i64> {
    let parts = OutlierParts::of(pdu)?;
    w.insert_event(&parts.row(pdu, None))
        .await
        .map_err(Into::into)
}

/// Keeps a rejected PDU (`storage::rejected`) with the state before it.
async fn keep_rejected(w: &mut RoomWrite, pdu: &Pdu, before: i64) -> Result<()> {
    let parts = OutlierParts::of(pdu)?;
    w.keep_rejected(&parts.row(pdu, Some(before)))
        .await
        .map_err(Into::into)
}

/// What an outlier's row is made of, owned while the row borrows it.
struct OutlierParts {
    json: serde_json::Value,
    prev: Vec<String>,
    event_type: String,
}

impl OutlierParts {
    fn of(pdu: &Pdu) -> Result<Self> {
        Ok(Self {
            json: serde_json::to_value(&pdu.json).map_err(|e| Error::Internal(e.to_string()))?,
            prev: pdu.prev_events.iter().map(|e| e.to_string()).collect(),
            event_type: pdu.event_type.to_string(),
        })
    }

    /// An outlier row of `pdu`, with `state` before and after it when known.
    fn row<'a>(&'a self, pdu: &'a Pdu, state: Option<i64>) -> NewEventRow<'a> {
        NewEventRow {
            event_id: pdu.event_id.as_str(),
            sender: pdu.sender.as_str(),
            event_type: &self.event_type,
            state_key: pdu.state_key.as_deref(),
            depth: pdu.depth,
            origin_server_ts: i64::from(pdu.origin_server_ts.0),
            pdu: &self.json,
            prev_events: &self.prev,
            txn: None,
            soft_failed: false,
            outlier: true,
            historical: false,
            federate_from: None,
            member_server: None,
            federate_except: None,
            state_before: state,
            state_after: state,
            replaces_nid: None,
        }
    }
}

/// Events of this room by ID, all of which must be here.
async fn load_known(
    w: &mut RoomWrite,
    ids: &[OwnedEventId],
) -> Result<Vec<crate::storage::events::StoredEvent>> {
    let wanted: Vec<String> = ids.iter().map(|e| e.to_string()).collect();
    let found = w.events_by_ids(&wanted).await?;
    if found.len() < wanted.len() {
        let have: HashSet<&str> = found.iter().map(|e| e.event_id.as_str()).collect();
        let missing = wanted
            .iter()
            .filter(|id| !have.contains(id.as_str()))
            .cloned()
            .collect();
        return Err(Error::UnknownEvents(missing));
    }
    Ok(found)
}

/// The PDU's auth events (and, in room v12, the create event they leave out), by key.
async fn load_own_auth_events(
    w: &mut RoomWrite,
    rules: &RoomVersionRules,
    pdu: &Pdu,
) -> Result<AuthState> {
    let mut state = AuthState {
        by_key: Default::default(),
        by_id: Default::default(),
    };
    let mut stored = match load_known(w, &pdu.auth_events).await {
        // An auth event of another room can never authorise this one: refused, rather
        // than fetched again and again.
        Err(Error::UnknownEvents(missing)) => {
            if let Some(id) = w.events_of_other_rooms(&missing).await?.first() {
                return Err(Error::Rejected(format!(
                    "its auth event {id} belongs to another room"
                )));
            }
            return Err(Error::UnknownEvents(missing));
        }
        other => other?,
    };
    // An event whose auth events were rejected is rejected too.
    if let Some(bad) = stored.iter().find(|e| e.rejected) {
        return Err(Error::Rejected(format!(
            "its auth event {} was rejected",
            bad.event_id
        )));
    }
    if rules.authorization.room_create_event_id_as_room_id {
        let current = w
            .current_state_for(&[("m.room.create".to_owned(), String::new())])
            .await?;
        stored.extend(
            w.events_by_nid(&current.into_values().collect::<Vec<_>>())
                .await?,
        );
    }
    for e in &stored {
        let p = parse_stored(e)?;
        if let Some(key) = &p.state_key {
            state
                .by_key
                .insert((p.event_type.to_string(), key.clone()), p.clone());
        }
        state.by_id.insert(p.event_id.clone(), p);
    }
    Ok(state)
}

/// A remote redaction applies to events of its own server, or when its sender has the
/// redact power level in the state before it.
async fn may_redact(
    w: &mut RoomWrite,
    rules: &RoomVersionRules,
    pdu: &Pdu,
    target: &EventId,
    before: &AuthState,
) -> Result<bool> {
    let Some(target) = w.event_by_id(target.as_str()).await? else {
        return Ok(false);
    };
    let target_sender = target.pdu["sender"]
        .as_str()
        .and_then(|s| UserId::parse(s).ok());
    if target_sender.is_some_and(|s| s.server_name() == pdu.sender.server_name()) {
        return Ok(true);
    }
    let rules = &rules.authorization;
    let get = |t: StateEventType| before.by_key.get(&(t.to_string(), String::new()));
    if rules.explicitly_privilege_room_creators
        && let Some(create) = get(StateEventType::RoomCreate)
        && RoomCreateEvent::new(create.clone())
            .creators(rules)
            .is_ok_and(|c| c.contains(&pdu.sender))
    {
        return Ok(true);
    }
    let Some(levels) = get(StateEventType::RoomPowerLevels) else {
        return Ok(false);
    };
    let levels = RoomPowerLevelsEvent::new(levels.clone());
    let mine = levels.user_power_level(&pdu.sender, rules);
    let needed = levels.get_as_int_or_default(RoomPowerLevelsIntField::Redact, rules);
    Ok(matches!((mine, needed), (Ok(m), Ok(n)) if m >= n))
}

/// Events another server sent for the state around one of its events (from `/state` or
/// `/event`), stored as outliers: kept for lookups (auth events, state resolution), never
/// in the timeline, the forward extremities or the current state. Each is verified
/// (format, hashes, signatures with `keys`) and checked against its own auth events,
/// oldest first; those that fail are left out. Returns the IDs now here.
pub async fn store_outliers(
    hs: &Homeserver,
    room_id: &RoomId,
    events: Vec<CanonicalJsonObject>,
    keys: &PublicKeyMap,
) -> Result<HashSet<String>> {
    let ctx = context::room_context(hs, room_id).await?;
    let _slot = hs.room_locks.lock_unbounded(room_id.as_str()).await;
    let mut w = hs.storage.begin_room_write(room_id.as_str()).await?;
    let here = store_outliers_in(&mut w, &ctx, events, keys, false).await?;
    w.commit(&[]).await?;
    Ok(here)
}

/// `store_outliers` inside a room write; `with_create`: the room's create event may be
/// among them (a room being joined).
pub(super) async fn store_outliers_in(
    w: &mut RoomWrite,
    ctx: &RoomContext,
    events: Vec<CanonicalJsonObject>,
    keys: &PublicKeyMap,
    with_create: bool,
) -> Result<HashSet<String>> {
    let rules = &ctx.rules;
    let mut here = HashSet::new();
    let mut pdus = Vec::new();
    let mut seen = HashSet::new();
    for json in events {
        let Ok(id) = event_id_of(&json, rules) else {
            continue;
        };
        // The same event may come twice (in the state and in the auth chain).
        if !seen.insert(id.clone()) {
            continue;
        }
        if w.event_by_id(id.as_str()).await?.is_some() {
            here.insert(id.to_string());
            continue;
        }
        let verified = if with_create {
            verify_pdu(ctx, json, keys)
        } else {
            verify_remote_pdu(ctx, json, keys)
        };
        match verified {
            Ok(pdu) => pdus.push(pdu),
            Err(e) => tracing::debug!(event_id = %id, "outlier refused: {e}"),
        }
    }
    pdus.sort_by_key(|p| p.depth);
    for pdu in pdus {
        let checked = match load_own_auth_events(w, rules, &pdu).await {
            Ok(auth) => check_auth(rules, &pdu, &auth),
            Err(e) => Err(e),
        };
        if let Err(e) = checked {
            tracing::debug!(event_id = %pdu.event_id, "outlier refused: {e}");
            continue;
        }
        insert_outlier(w, &pdu).await?;
        here.insert(pdu.event_id.to_string());
    }
    Ok(here)
}
