//! The write path (DESIGN.md): build a local PDU on the room's extremities and check it,
//! persist a checked PDU (event, DAG edges, state, current state, memberships, relations,
//! redactions), and the tail every event takes before its commit, local or from another
//! server (`finish`). Writes to a room are serialized, in process by
//! `server::room_locks`, across processes by an advisory lock (`begin_room_write`).

use std::collections::HashMap;

use ruma::{EventId, MilliSecondsSinceUnixEpoch, OwnedEventId, UserId, events::TimelineEventType};

use super::{
    auth::{AuthState, KnownState, auth_keys, check_auth, load_auth_state, membership_of},
    context::{RoomContext, parse_stored},
    pdu::{self, NewEvent, Pdu, Placement},
    state_res,
};
use crate::{
    error::{Error, Result},
    server::Homeserver,
    storage::{
        events::{NewEventRow, RoomWrite},
        state::StateNids,
    },
};

/// A checked PDU with the state group before it (None only for a room's create event),
/// and the state it was checked against (what push evaluation reads too).
pub struct Checked {
    pub pdu: Pdu,
    pub state_before: Option<i64>,
    pub auth_state: KnownState,
    /// Built on every forward extremity, so its state before is the current state.
    pub extends_current: bool,
}

/// Most prev_events an event may name: other servers reject more (Synapse, the spec's
/// "at most 20"). A room with more forward extremities is merged over several events.
pub const MAX_PREV_EVENTS: usize = 20;

/// Builds the next event of a room on its forward extremities (the newest
/// `MAX_PREV_EVENTS` of them) and checks it against the auth rules with the state before it.
pub async fn build_checked(
    hs: &Homeserver,
    w: &mut RoomWrite,
    ctx: &RoomContext,
    sender: &UserId,
    new: &NewEvent,
) -> Result<Checked> {
    let mut extremities = w.extremities().await?;
    let all = extremities.len();
    if all > MAX_PREV_EVENTS {
        // `extremities()` is ordered by depth: keep the deepest.
        extremities.drain(..all - MAX_PREV_EVENTS);
    }
    let extends_current = extremities.len() == all;
    let keys = auth_keys(&ctx.rules, sender, new)?;
    let groups: Vec<i64> = extremities.iter().filter_map(|e| e.state_after).collect();
    let (state_before, auth) = if extends_current {
        // On every extremity: with several (a fork from another server), the state before
        // is their resolution, kept when the fork arrived; auth reads the current state.
        let state_before = if extremities.len() > 1 {
            Some(w.resolved_state_group().await?.ok_or_else(|| {
                Error::Internal("forked room without a resolved state group".into())
            })?)
        } else {
            extremities.first().and_then(|e| e.state_after)
        };
        let mut auth = AuthState {
            by_key: HashMap::new(),
            by_id: HashMap::new(),
        };
        for (key, event) in w.current_state_events_for(&keys).await? {
            let pdu = parse_stored(&event)?;
            auth.by_id.insert(pdu.event_id.clone(), pdu.clone());
            auth.by_key.insert(key, pdu);
        }
        (state_before, auth)
    } else {
        let before = resolve_state_before(w, ctx, &groups).await?;
        let at_before = w.state_keys_at_group(before, &keys).await?;
        (Some(before), load_auth_state(w, &at_before, &keys).await?)
    };
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
        new.origin_server_ts
            .unwrap_or_else(MilliSecondsSinceUnixEpoch::now),
    )?;
    check_auth(&ctx.rules, &pdu, &auth)?;
    Ok(Checked {
        pdu,
        state_before,
        auth_state: auth.by_key,
        extends_current,
    })
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
    /// A local event with federation on: this server's name. The event is queued for every
    /// other server in the room in the statement that stores it (federation's sender
    /// reads the queue; rooms knows nothing more of federation).
    pub federate_from: Option<&'a str>,
    /// Backfilled history (`receive::receive_historical`): no forward extremity.
    pub historical: bool,
    /// With `federate_from`, a server not to queue the event for: the one it came from.
    pub federate_except: Option<&'a str>,
}

/// Persists a checked PDU as the room's newest event: event, edges, extremities, state
/// group, current state and membership; the stream position is given at commit.
pub async fn store(
    w: &mut RoomWrite,
    ctx: &RoomContext,
    checked: &Checked,
    txn: Option<(&str, &str)>,
    federate_from: Option<&str>,
) -> Result<i64> {
    let how = StoreAs {
        txn,
        soft_failed: false,
        extends_current: checked.extends_current,
        redaction_allowed: true,
        federate_from,
        historical: false,
        federate_except: None,
    };
    let (nid, _) = store_pdu(w, ctx, &checked.pdu, checked.state_before, &how).await?;
    if !checked.extends_current {
        update_current_state(w, ctx).await?;
    }
    Ok(nid)
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
    // A kicked or banned member's server must hear of it, though no longer in the room.
    // (An invited member's server hears of the invite through /invite; a server that is
    // not in the room does not know it, and must not be sent its events.)
    let kicked_or_banned = matches!(
        pdu_json["content"]["membership"].as_str(),
        Some("leave" | "ban")
    );
    let member_server = match (&pdu.event_type, &pdu.state_key) {
        (TimelineEventType::RoomMember, Some(key)) if kicked_or_banned => {
            ruma::UserId::parse(key.as_str())
                .ok()
                .map(|u| u.server_name().to_string())
        }
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
            outlier: false,
            historical: how.historical,
            federate_from: how.federate_from,
            member_server: member_server.as_deref(),
            federate_except: how.federate_except,
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

/// Stores a built local event and takes it through the tail (`finish`).
pub async fn store_and_commit(
    hs: &Homeserver,
    mut w: RoomWrite,
    ctx: &RoomContext,
    checked: &Checked,
    txn: Option<(&str, &str)>,
) -> Result<i64> {
    let federate_from = hs
        .config
        .federation_enabled()
        .then(|| hs.config.server_name().as_str());
    let nid = store(&mut w, ctx, checked, txn, federate_from).await?;
    finish(hs, w, ctx, nid, &checked.pdu, &checked.auth_state, false).await?;
    Ok(nid)
}

/// The tail every stored event takes, local or from another server, in its transaction:
/// what it means to each local member's push rules (unread counts, notifications, the
/// push queue), then the commit: stream position, memberships and wake-ups. `known` is
/// the state it was checked against. Soft-failed events reach no one.
pub(super) async fn finish(
    hs: &Homeserver,
    mut w: RoomWrite,
    ctx: &RoomContext,
    nid: i64,
    pdu: &Pdu,
    known: &KnownState,
    soft_failed: bool,
) -> Result<()> {
    if soft_failed {
        w.commit(&[]).await?;
        return Ok(());
    }
    let event =
        serde_json::to_value(&pdu.json).map_err(|e| Error::Internal(format!("event JSON: {e}")))?;
    let state = |t: &str| known.get(&(t.to_owned(), String::new()));
    let room = crate::push::evaluate::PushRoom {
        room_id: &ctx.room_id,
        auth_rules: &ctx.rules.authorization,
        power_levels: state("m.room.power_levels").map(Pdu::content_json),
        create: state("m.room.create").map(|p| (p.content_json(), p.sender.clone())),
    };
    crate::push::evaluate::record_push_actions(hs, &mut w, &room, nid, &event, &pdu.sender).await?;
    w.commit(&[nid]).await?;
    Ok(())
}

/// The state group before an event with these prev_events' state groups: theirs when
/// they agree, else their resolution (written as a new group).
pub(super) async fn resolve_state_before(
    w: &mut RoomWrite,
    ctx: &RoomContext,
    groups: &[i64],
) -> Result<i64> {
    let first = *groups
        .first()
        .ok_or_else(|| Error::BadJson("PDU has no prev_events".into()))?;
    if groups.iter().all(|g| *g == first) {
        return Ok(first);
    }
    let resolved = state_res::resolve_groups(w, ctx, groups).await?;
    Ok(w.write_full_state_group(first, &resolved).await?)
}

/// After a fork or a merge: the current state becomes the resolution of the forward
/// extremities' states; the current state and memberships are brought in line.
pub(super) async fn update_current_state(w: &mut RoomWrite, ctx: &RoomContext) -> Result<()> {
    let extremities = w.extremities().await?;
    let groups: Vec<i64> = extremities.iter().filter_map(|e| e.state_after).collect();
    let group = resolve_state_before(w, ctx, &groups).await?;
    w.set_resolved_state_group((extremities.len() > 1).then_some(group))
        .await?;
    let resolved = w.state_at_group(group).await?;
    let current = w.current_state().await?;
    for ((t, k), nid) in &current {
        if !resolved.contains_key(&(t.clone(), k.clone())) {
            w.delete_current_state(t, k).await?;
            if t == "m.room.member" {
                w.set_membership(k, "leave", *nid).await?;
            }
        }
    }
    let changed: StateNids = resolved
        .into_iter()
        .filter(|(k, n)| current.get(k) != Some(n))
        .collect();
    let member_nids: Vec<i64> = changed
        .iter()
        .filter(|((t, _), _)| t == "m.room.member")
        .map(|(_, n)| *n)
        .collect();
    let members = w.events_by_nid(&member_nids).await?;
    for ((t, k), nid) in &changed {
        w.set_current_state(t, k, *nid).await?;
    }
    for stored in &members {
        let p = parse_stored(stored)?;
        if let Some(key) = &p.state_key {
            w.set_membership(key, membership_of(&p), stored.event_nid)
                .await?;
        }
    }
    Ok(())
}
