//! The auth rules' side of a write: which state keys an event's checks read, loading that
//! state, and running ruma's state-independent and state-dependent checks.

use std::collections::HashMap;

use ruma::{
    EventId, OwnedEventId, UserId,
    events::{StateEventType, TimelineEventType},
    room_version_rules::RoomVersionRules,
};

use super::{
    context::parse_stored,
    pdu::{NewEvent, Pdu},
};
use crate::{
    error::{Error, Result},
    storage::{events::RoomWrite, state::StateNids},
};

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

pub(super) fn check_auth(rules: &RoomVersionRules, pdu: &Pdu, auth: &AuthState) -> Result<()> {
    let rules = &rules.authorization;
    ruma::state_res::check_state_independent_auth_rules(rules, pdu, |id: &EventId| {
        auth.by_id.get(id)
    })
    .map_err(Error::Rejected)?;
    ruma::state_res::check_state_dependent_auth_rules(rules, pdu, |t: &StateEventType, k: &str| {
        auth.by_key.get(&(t.to_string(), k.to_owned()))
    })
    .map_err(Error::Rejected)?;
    Ok(())
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
