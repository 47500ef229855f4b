//! State resolution for room version 1, from the spec (ruma implements only v2).
//!
//! Conflicts are keys that hold different events in different states (a key missing
//! from some states is not a conflict, as in Synapse, the one other implementation).
//! Auth-relevant conflicts are resolved first, in the order power levels, join rules,
//! memberships, each against the state resolved so far: candidates are taken in
//! ascending depth then descending sha1(event_id), and each one is kept while it passes
//! the auth rules on top of the one before. Other conflicts take the first event, by
//! descending depth then ascending sha1(event_id), that passes the auth rules.

use std::collections::{BTreeMap, HashMap};

use ruma::{
    OwnedEventId, events::StateEventType, room_version_rules::AuthorizationRules,
    state_res::StateMap,
};
use sha1::{Digest, Sha1};

use crate::rooms::pdu::Pdu;

type Key = (StateEventType, String);

/// Splits the states into the unconflicted map and, per conflicted key, its events.
fn separate(
    states: &[StateMap<OwnedEventId>],
) -> (StateMap<OwnedEventId>, BTreeMap<Key, Vec<OwnedEventId>>) {
    let mut values: HashMap<&Key, Vec<&OwnedEventId>> = HashMap::new();
    for state in states {
        for (key, id) in state {
            let ids = values.entry(key).or_default();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
    }
    let mut unconflicted = StateMap::new();
    let mut conflicted = BTreeMap::new();
    for (key, ids) in values {
        if let [only] = ids.as_slice() {
            unconflicted.insert(key.clone(), (*only).clone());
        } else {
            conflicted.insert(key.clone(), ids.into_iter().cloned().collect());
        }
    }
    (unconflicted, conflicted)
}

fn sha1_of(id: &OwnedEventId) -> [u8; 20] {
    Sha1::digest(id.as_str().as_bytes()).into()
}

/// Whether `event` passes the state-dependent auth rules in `state` (plus `overlay`).
fn allowed(
    rules: &AuthorizationRules,
    event: &Pdu,
    state: &HashMap<Key, Pdu>,
    overlay: Option<&Pdu>,
) -> bool {
    ruma::state_res::check_state_dependent_auth_rules(rules, event, |t: &StateEventType, k| {
        if let Some(o) = overlay
            && o.event_type.to_string() == t.to_string()
            && o.state_key.as_deref() == Some(k)
        {
            return Some(o);
        }
        state.get(&(t.clone(), k.to_owned()))
    })
    .is_ok()
}

/// Picks among conflicting auth events: the earliest first, then each later one for as
/// long as it is allowed on top of the one before it.
fn resolve_auth_conflict<'a>(
    rules: &AuthorizationRules,
    mut candidates: Vec<&'a Pdu>,
    state: &HashMap<Key, Pdu>,
) -> &'a Pdu {
    candidates.sort_by(|a, b| {
        a.depth
            .cmp(&b.depth)
            .then_with(|| sha1_of(&b.event_id).cmp(&sha1_of(&a.event_id)))
    });
    let mut chosen = candidates[0];
    for event in &candidates[1..] {
        if !allowed(rules, event, state, Some(chosen)) {
            break;
        }
        chosen = event;
    }
    chosen
}

/// Picks among other conflicting events: the newest that is allowed, else the oldest.
fn resolve_other_conflict<'a>(
    rules: &AuthorizationRules,
    mut candidates: Vec<&'a Pdu>,
    state: &HashMap<Key, Pdu>,
) -> &'a Pdu {
    candidates.sort_by(|a, b| {
        b.depth
            .cmp(&a.depth)
            .then_with(|| sha1_of(&a.event_id).cmp(&sha1_of(&b.event_id)))
    });
    candidates
        .iter()
        .find(|e| allowed(rules, e, state, None))
        .copied()
        .unwrap_or(candidates[candidates.len() - 1])
}

/// Resolves `states`; `events` must hold every event they name (missing ones are
/// ignored, as events that could not be verified).
pub fn resolve(
    rules: &AuthorizationRules,
    states: &[StateMap<OwnedEventId>],
    events: &HashMap<OwnedEventId, Pdu>,
) -> StateMap<OwnedEventId> {
    let (mut resolved, conflicted) = separate(states);
    let mut auth_state: HashMap<Key, Pdu> = resolved
        .iter()
        .filter_map(|(k, id)| events.get(id).map(|e| (k.clone(), e.clone())))
        .collect();
    let candidates_of = |ids: &Vec<OwnedEventId>| -> Vec<&Pdu> {
        ids.iter().filter_map(|id| events.get(id)).collect()
    };
    let phases: [fn(&StateEventType) -> bool; 3] = [
        |t| *t == StateEventType::RoomPowerLevels,
        |t| *t == StateEventType::RoomJoinRules,
        |t| *t == StateEventType::RoomMember,
    ];
    for in_phase in phases {
        // Every key of a phase is resolved against the state as it was before the phase.
        let mut winners = Vec::new();
        for (key, ids) in conflicted.iter().filter(|(k, _)| in_phase(&k.0)) {
            let candidates = candidates_of(ids);
            if !candidates.is_empty() {
                winners.push((
                    key.clone(),
                    resolve_auth_conflict(rules, candidates, &auth_state),
                ));
            }
        }
        for (key, winner) in winners {
            resolved.insert(key.clone(), winner.event_id.clone());
            auth_state.insert(key, winner.clone());
        }
    }
    for (key, ids) in &conflicted {
        if resolved.contains_key(key) {
            continue;
        }
        let candidates = candidates_of(ids);
        if !candidates.is_empty() {
            let winner = resolve_other_conflict(rules, candidates, &auth_state);
            resolved.insert(key.clone(), winner.event_id.clone());
        }
    }
    resolved
}

#[cfg(test)]
mod tests {
    use ruma::{CanonicalJsonObject, EventId, RoomVersionId};
    use serde_json::json;

    use super::*;

    fn rules() -> AuthorizationRules {
        RoomVersionId::V1.rules().unwrap().authorization
    }

    /// An unsigned event of a v1 room; the state-dependent auth rules do not look at
    /// signatures or hashes.
    fn ev(
        id: &str,
        kind: &str,
        sender: &str,
        key: &str,
        content: serde_json::Value,
        depth: i64,
    ) -> Pdu {
        let json: CanonicalJsonObject = serde_json::from_value(json!({
            "event_id": id, "room_id": "!r:x", "type": kind, "sender": sender,
            "state_key": key, "content": content, "depth": depth,
            "origin_server_ts": 1, "prev_events": [], "auth_events": [],
        }))
        .unwrap();
        Pdu::from_json(EventId::parse(id).unwrap(), json).unwrap()
    }

    fn key(t: &str, k: &str) -> Key {
        (t.into(), k.to_owned())
    }

    /// create, alice joins, power levels (alice 100, bob 50), bob and carol join.
    fn base() -> Vec<Pdu> {
        vec![
            ev(
                "$create:x",
                "m.room.create",
                "@alice:x",
                "",
                json!({"creator": "@alice:x"}),
                1,
            ),
            ev(
                "$ja:x",
                "m.room.member",
                "@alice:x",
                "@alice:x",
                json!({"membership": "join"}),
                2,
            ),
            ev(
                "$pl:x",
                "m.room.power_levels",
                "@alice:x",
                "",
                json!({"users": {"@alice:x": 100, "@bob:x": 50}, "state_default": 50}),
                3,
            ),
            ev(
                "$jr:x",
                "m.room.join_rules",
                "@alice:x",
                "",
                json!({"join_rule": "public"}),
                4,
            ),
            ev(
                "$jb:x",
                "m.room.member",
                "@bob:x",
                "@bob:x",
                json!({"membership": "join"}),
                5,
            ),
            ev(
                "$jc:x",
                "m.room.member",
                "@carol:x",
                "@carol:x",
                json!({"membership": "join"}),
                6,
            ),
        ]
    }

    fn state_of(events: &[&Pdu]) -> StateMap<OwnedEventId> {
        events
            .iter()
            .map(|e| {
                (
                    (
                        e.event_type.to_string().into(),
                        e.state_key.clone().unwrap(),
                    ),
                    e.event_id.clone(),
                )
            })
            .collect()
    }

    fn run(extra: Vec<Pdu>, forks: &[&[&str]]) -> StateMap<OwnedEventId> {
        let all: Vec<Pdu> = base().into_iter().chain(extra).collect();
        let by_id: HashMap<OwnedEventId, Pdu> = all
            .iter()
            .map(|e| (e.event_id.clone(), e.clone()))
            .collect();
        let pick = |ids: &[&str]| {
            let mut evs: Vec<&Pdu> = base_ids()
                .iter()
                .map(|i| &by_id[&EventId::parse(*i).unwrap()])
                .collect();
            evs.extend(ids.iter().map(|i| &by_id[&EventId::parse(*i).unwrap()]));
            state_of(&evs)
        };
        let states: Vec<_> = forks.iter().map(|f| pick(f)).collect();
        resolve(&rules(), &states, &by_id)
    }

    fn base_ids() -> Vec<&'static str> {
        vec!["$create:x", "$ja:x", "$pl:x", "$jr:x", "$jb:x", "$jc:x"]
    }

    fn winner(state: &StateMap<OwnedEventId>, t: &str, k: &str) -> String {
        state[&key(t, k)].to_string()
    }

    #[test]
    fn unconflicted_keys_pass_through() {
        let topic = ev(
            "$t:x",
            "m.room.topic",
            "@bob:x",
            "",
            json!({"topic": "a"}),
            7,
        );
        let s = run(vec![topic], &[&["$t:x"], &[]]);
        assert_eq!(winner(&s, "m.room.topic", ""), "$t:x");
        assert_eq!(winner(&s, "m.room.power_levels", ""), "$pl:x");
    }

    #[test]
    fn power_conflicts_stop_at_the_first_event_that_fails() {
        // Ascending depth: alice demotes bob (7), bob's change (8) fails on top of that, so
        // the walk stops there and alice's later change (9) is never reached.
        let demote = ev(
            "$pa:x",
            "m.room.power_levels",
            "@alice:x",
            "",
            json!({"users": {"@alice:x": 100}, "state_default": 50}),
            7,
        );
        let bobs = ev(
            "$pb:x",
            "m.room.power_levels",
            "@bob:x",
            "",
            json!({"users": {"@alice:x": 100, "@bob:x": 50}, "state_default": 50, "events": {"m.room.topic": 50}}),
            8,
        );
        let later = ev(
            "$pc:x",
            "m.room.power_levels",
            "@alice:x",
            "",
            json!({"users": {"@alice:x": 100, "@carol:x": 10}, "state_default": 50}),
            9,
        );
        let s = run(
            vec![demote, bobs, later],
            &[&["$pa:x"], &["$pb:x"], &["$pc:x"]],
        );
        assert_eq!(winner(&s, "m.room.power_levels", ""), "$pa:x");
    }

    #[test]
    fn the_deepest_of_allowed_power_changes_wins() {
        let first = ev(
            "$p1:x",
            "m.room.power_levels",
            "@alice:x",
            "",
            json!({"users": {"@alice:x": 100, "@bob:x": 40}, "state_default": 50}),
            8,
        );
        let second = ev(
            "$p2:x",
            "m.room.power_levels",
            "@alice:x",
            "",
            json!({"users": {"@alice:x": 100, "@bob:x": 60}, "state_default": 50}),
            7,
        );
        let s = run(vec![first, second], &[&["$p1:x"], &["$p2:x"]]);
        assert_eq!(winner(&s, "m.room.power_levels", ""), "$p1:x");
    }

    #[test]
    fn other_conflicts_take_the_deepest_allowed_event() {
        // carol (power 0) cannot set the topic; bob (50) can. carol's is deeper but fails.
        let bobs = ev(
            "$tb:x",
            "m.room.topic",
            "@bob:x",
            "",
            json!({"topic": "b"}),
            7,
        );
        let carols = ev(
            "$tc:x",
            "m.room.topic",
            "@carol:x",
            "",
            json!({"topic": "c"}),
            9,
        );
        let s = run(vec![bobs.clone(), carols], &[&["$tb:x"], &["$tc:x"]]);
        assert_eq!(winner(&s, "m.room.topic", ""), "$tb:x");
        // Two allowed topics: the deeper one wins.
        let alices = ev(
            "$ta:x",
            "m.room.topic",
            "@alice:x",
            "",
            json!({"topic": "a"}),
            8,
        );
        let s = run(vec![bobs, alices], &[&["$tb:x"], &["$ta:x"]]);
        assert_eq!(winner(&s, "m.room.topic", ""), "$ta:x");
    }

    #[test]
    fn power_levels_are_resolved_before_the_events_they_authorise() {
        // Fork A: alice demotes bob. Fork B: bob sets a topic. The topic is not conflicted
        // (only fork B has one), so it stays; but a conflicting topic from bob is checked
        // against the resolved power levels, where bob has no power any more.
        let demote = ev(
            "$pa:x",
            "m.room.power_levels",
            "@alice:x",
            "",
            json!({"users": {"@alice:x": 100}, "state_default": 50}),
            7,
        );
        let topic_a = ev(
            "$ta:x",
            "m.room.topic",
            "@alice:x",
            "",
            json!({"topic": "a"}),
            7,
        );
        let topic_b = ev(
            "$tb:x",
            "m.room.topic",
            "@bob:x",
            "",
            json!({"topic": "b"}),
            9,
        );
        let s = run(
            vec![demote, topic_a, topic_b],
            &[&["$pa:x", "$ta:x"], &["$tb:x"]],
        );
        assert_eq!(winner(&s, "m.room.power_levels", ""), "$pa:x");
        assert_eq!(winner(&s, "m.room.topic", ""), "$ta:x");
    }

    #[test]
    fn equal_depths_are_ordered_by_sha1_of_the_event_id() {
        let one = ev(
            "$t1:x",
            "m.room.topic",
            "@alice:x",
            "",
            json!({"topic": "1"}),
            7,
        );
        let two = ev(
            "$t2:x",
            "m.room.topic",
            "@alice:x",
            "",
            json!({"topic": "2"}),
            7,
        );
        let s = run(vec![one.clone(), two.clone()], &[&["$t1:x"], &["$t2:x"]]);
        let lowest = if sha1_of(&one.event_id) < sha1_of(&two.event_id) {
            "$t1:x"
        } else {
            "$t2:x"
        };
        assert_eq!(winner(&s, "m.room.topic", ""), lowest);
    }
}
