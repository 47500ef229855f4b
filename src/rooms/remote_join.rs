//! Joining a room that lives on other servers (the joining side of `send_join`): the
//! room as the resident server's answer describes it becomes this server's, after
//! checks: every event of the state and its auth chain verified (format, hashes,
//! signatures) and checked against its own auth events, stored as outliers; the state
//! before the join as a root state group; the join checked against that state, stored as
//! the room's first timeline event here, and the current state and memberships set from
//! the state after it.

use std::collections::HashMap;

use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedEventId, RoomId, RoomVersionId,
    signatures::PublicKeyMap,
};

use super::{
    auth::{auth_keys, check_auth, load_auth_state},
    context::{RoomContext, rules_for},
    pdu::NewEvent,
    persist::{self, StoreAs, update_current_state},
    receive::{store_outliers_in, verify_pdu},
};
use crate::{
    error::{Error, Result},
    server::{Homeserver, now_ms},
    storage::state::StateNids,
};

fn string<'a>(object: &'a CanonicalJsonObject, field: &str) -> Option<&'a str> {
    match object.get(field) {
        Some(CanonicalJsonValue::String(s)) => Some(s),
        _ => None,
    }
}

/// Makes the joined room this server's (again, for a room it left). Events of the answer
/// that do not check out are left out.
pub async fn adopt_joined_room(
    hs: &Homeserver,
    room_id: &RoomId,
    version: &RoomVersionId,
    join: CanonicalJsonObject,
    state: Vec<CanonicalJsonObject>,
    auth_chain: Vec<CanonicalJsonObject>,
    keys: &PublicKeyMap,
) -> Result<OwnedEventId> {
    let ctx = RoomContext {
        room_id: room_id.to_owned(),
        version: version.clone(),
        rules: rules_for(version)?,
    };
    let create = state
        .iter()
        .find(|e| string(e, "type") == Some("m.room.create") && string(e, "state_key") == Some(""))
        .cloned()
        .ok_or_else(|| Error::BadJson("the room's state has no create event".into()))?;
    let creator = string(&create, "sender")
        .ok_or_else(|| Error::BadJson("the create event has no sender".into()))?
        .to_owned();
    let _slot = hs.room_locks.lock_unbounded(room_id.as_str()).await;
    // A room this server left and joins again keeps what it held; the answer's state
    // is the state before the join, and the old forward extremities are resolved with it.
    let held = hs.storage.room(room_id.as_str()).await?;
    if held.as_ref().is_some_and(|(v, _)| v != version.as_str()) {
        return Err(Error::BadJson(
            "the room's version is not the one held here".into(),
        ));
    }
    let mut w = hs.storage.begin_room_write(room_id.as_str()).await?;
    if held.is_none() {
        w.insert_room(version.as_str(), &creator, now_ms()).await?;
    }

    // The create event first: every other event's auth leads to it (room v12 finds it
    // through the current state, which holds it from here on).
    let here = store_outliers_in(&mut w, &ctx, vec![create.clone()], keys, true).await?;
    let create_id = here
        .into_iter()
        .next()
        .ok_or_else(|| Error::BadJson("the create event does not check out".into()))?;
    let create_nid = w
        .events_by_ids(std::slice::from_ref(&create_id))
        .await?
        .first()
        .map(|e| e.event_nid)
        .ok_or_else(|| Error::Internal("the stored create event is gone".into()))?;
    w.set_current_state("m.room.create", "", create_nid).await?;
    let mut events = auth_chain;
    events.extend(state.iter().cloned());
    let here = store_outliers_in(&mut w, &ctx, events, keys, false).await?;

    // The state before the join, of the events that checked out (format, hashes,
    // signatures, their own auth events): one that does not is left out, not stored, and
    // does not stop the join (as Synapse, and sytest, expect); the join itself must pass
    // the auth rules against what is left.
    let state_ids: Vec<String> = state
        .iter()
        .filter_map(|e| super::receive::event_id_of(e, &ctx.rules).ok())
        .map(|id| id.to_string())
        .filter(|id| here.contains(id) || *id == create_id)
        .collect();
    let mut before = StateNids::new();
    for stored in w.events_by_ids(&state_ids).await? {
        if let (Some(kind), Some(key)) = (
            stored.pdu["type"].as_str(),
            stored.pdu["state_key"].as_str(),
        ) {
            before.insert((kind.to_owned(), key.to_owned()), stored.event_nid);
        }
    }
    if !before.contains_key(&("m.room.create".to_owned(), String::new())) {
        return Err(Error::BadJson(
            "the room's state has no usable create event".into(),
        ));
    }
    let group = w.write_root_state_group(&before).await?;

    // The join, against that state.
    let pdu = verify_pdu(&ctx, join, keys)?;
    let new = NewEvent {
        event_type: pdu.event_type.to_string(),
        content: pdu.content_json(),
        state_key: pdu.state_key.clone(),
        redacts: None,
        origin_server_ts: None,
    };
    let keys_needed = auth_keys(&ctx.rules, &pdu.sender, &new)?;
    let at_before: StateNids = keys_needed
        .iter()
        .filter_map(|k| before.get(k).map(|nid| (k.clone(), *nid)))
        .collect();
    let auth = load_auth_state(&mut w, &at_before, &keys_needed).await?;
    check_auth(&ctx.rules, &pdu, &auth)?;
    let how = StoreAs {
        txn: None,
        soft_failed: false,
        extends_current: false,
        redaction_allowed: false,
        federate_from: None,
        historical: false,
        federate_except: None,
    };
    let (nid, _) = persist::store_pdu(&mut w, &ctx, &pdu, Some(group), &how).await?;
    update_current_state(&mut w, &ctx).await?;
    let known: HashMap<(String, String), super::pdu::Pdu> = auth.by_key;
    persist::finish(hs, w, &ctx, nid, &pdu, &known, false).await?;
    Ok(pdu.event_id)
}
