//! Resolving forked room state: v1 (`v1.rs`, written here) for room version 1, v2 and
//! v2.1 through ruma for the others. The resolvers are synchronous and read events from
//! memory, so `resolve_groups` first loads the states' events and their auth chains.
//!
//! Cost: loading is proportional to the states' size plus their auth chains, once per
//! fork. Forks only arrive from other servers, and rarely.

mod v1;

use std::collections::{HashMap, HashSet};

use ruma::{
    EventId, OwnedEventId,
    room_version_rules::StateResolutionVersion,
    state_res::{StateMap, utils::event_id_set::EventIdSet},
};

use super::{
    context::{RoomContext, parse_stored},
    pdu::Pdu,
};
use crate::{
    error::{Error, Result},
    storage::{events::RoomWrite, state::StateNids},
};

/// Events with their numeric IDs, loaded for one resolution.
#[derive(Default)]
struct Loaded {
    events: HashMap<OwnedEventId, Pdu>,
    nids: HashMap<OwnedEventId, i64>,
}

impl Loaded {
    fn add(&mut self, stored: &crate::storage::events::StoredEvent) -> Result<()> {
        let pdu = parse_stored(stored)?;
        self.nids.insert(pdu.event_id.clone(), stored.event_nid);
        self.events.insert(pdu.event_id.clone(), pdu);
        Ok(())
    }

    /// Loads the auth chains of everything loaded so far, a level at a time. Auth events
    /// that are not here are asked for once.
    async fn load_auth_chains(&mut self, w: &mut RoomWrite) -> Result<()> {
        let mut asked: HashSet<String> = HashSet::new();
        loop {
            let frontier: Vec<String> = self
                .missing_auth_events()
                .into_iter()
                .filter(|id| !asked.contains(id))
                .collect();
            if frontier.is_empty() {
                return Ok(());
            }
            for stored in w.events_by_ids(&frontier).await? {
                self.add(&stored)?;
            }
            asked.extend(frontier);
        }
    }

    fn missing_auth_events(&self) -> Vec<String> {
        let mut missing: HashSet<&OwnedEventId> = HashSet::new();
        for e in self.events.values() {
            missing.extend(
                e.auth_events
                    .iter()
                    .filter(|a| !self.events.contains_key(*a)),
            );
        }
        missing.into_iter().map(|id| id.to_string()).collect()
    }

    /// The full auth chain of a set of events (the events themselves excluded).
    fn auth_chain<'a>(
        &self,
        starts: impl Iterator<Item = &'a OwnedEventId>,
    ) -> EventIdSet<OwnedEventId> {
        let mut chain = EventIdSet::new();
        let mut stack: Vec<&OwnedEventId> = starts
            .filter_map(|id| self.events.get(id))
            .flat_map(|e| e.auth_events.iter())
            .collect();
        while let Some(id) = stack.pop() {
            if chain.insert(id.clone())
                && let Some(e) = self.events.get(id)
            {
                stack.extend(e.auth_events.iter());
            }
        }
        chain
    }

    /// Room v12's conflicted state subgraph: events on an auth-event path from one
    /// conflicted event to another (the conflicted events included).
    fn conflicted_subgraph(&self, conflicted: &HashSet<OwnedEventId>) -> EventIdSet<OwnedEventId> {
        // Whether a conflicted event is reachable from an event (itself counting).
        let mut reaches: HashMap<OwnedEventId, bool> = HashMap::new();
        let below = self.auth_chain(conflicted.iter());
        let mut candidates: Vec<&OwnedEventId> = below.iter().chain(conflicted.iter()).collect();
        candidates.sort_by_key(|id| self.events.get(*id).map_or(0, |e| e.depth));
        // Auth events are always shallower than the events they authorise, so visiting by
        // ascending depth sees every auth event before its dependants.
        for id in candidates {
            let reached = conflicted.contains(id)
                || self.events.get(id).is_some_and(|e| {
                    e.auth_events
                        .iter()
                        .any(|a| reaches.get(a).copied().unwrap_or(false))
                });
            reaches.insert(id.clone(), reached);
        }
        reaches
            .into_iter()
            .filter(|(_, r)| *r)
            .map(|(id, _)| id)
            .collect()
    }
}

fn to_state_map(state: &StateNids, ids: &HashMap<i64, OwnedEventId>) -> StateMap<OwnedEventId> {
    state
        .iter()
        .filter_map(|((t, k), nid)| {
            ids.get(nid)
                .map(|id| ((t.as_str().into(), k.clone()), id.clone()))
        })
        .collect()
}

/// The resolution of the states of the given groups, per the room version.
pub async fn resolve_groups(
    w: &mut RoomWrite,
    ctx: &RoomContext,
    groups: &[i64],
) -> Result<StateNids> {
    let mut states = Vec::with_capacity(groups.len());
    for group in groups {
        let state = w.state_at_group(*group).await?;
        if !states.contains(&state) {
            states.push(state);
        }
    }
    if states.len() <= 1 {
        return Ok(states.pop().unwrap_or_default());
    }
    let all_nids: Vec<i64> = states
        .iter()
        .flat_map(|s| s.values().copied())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut loaded = Loaded::default();
    for stored in w.events_by_nid(&all_nids).await? {
        loaded.add(&stored)?;
    }
    let by_nid: HashMap<i64, OwnedEventId> = loaded
        .nids
        .iter()
        .map(|(id, nid)| (*nid, id.clone()))
        .collect();
    let maps: Vec<StateMap<OwnedEventId>> =
        states.iter().map(|s| to_state_map(s, &by_nid)).collect();
    loaded.load_auth_chains(w).await?;

    let rules = &ctx.rules;
    let resolved = match &rules.state_res {
        StateResolutionVersion::V1 => v1::resolve(&rules.authorization, &maps, &loaded.events),
        StateResolutionVersion::V2(v2) => {
            let chains: Vec<EventIdSet<OwnedEventId>> =
                maps.iter().map(|m| loaded.auth_chain(m.values())).collect();
            ruma::state_res::resolve(
                &rules.authorization,
                v2,
                &maps,
                chains,
                |id: &EventId| loaded.events.get(id).cloned(),
                |conflicted: &StateMap<Vec<OwnedEventId>>| {
                    let set: HashSet<OwnedEventId> =
                        conflicted.values().flatten().cloned().collect();
                    Some(loaded.conflicted_subgraph(&set))
                },
            )
            .map_err(|e| Error::Internal(format!("state resolution: {e}")))?
        }
        _ => return Err(Error::Internal("unknown state resolution version".into())),
    };
    resolved
        .into_iter()
        .map(|((t, k), id)| {
            let nid = loaded
                .nids
                .get(&id)
                .ok_or_else(|| Error::Internal(format!("resolved to an unloaded event {id}")))?;
            Ok(((t.to_string(), k), *nid))
        })
        .collect()
}
