//! Events from another server through the one persistence path (`rooms::receive`): a test
//! plays the server `remote.test` with its own signing key and sends signed PDUs for its
//! user @bob:remote.test. Forks, their resolution per room version, soft failure,
//! rejection, and the local events that merge a fork.

mod common;

use std::collections::BTreeMap;

use axon::{
    error::Error,
    rooms::receive::{Received, receive_pdu},
};
use common::TestServer;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, RoomId, RoomVersionId,
    room_version_rules::{EventIdFormatVersion, EventsReferenceFormatVersion, RoomVersionRules},
    serde::Base64,
    signatures::{Ed25519KeyPair, PublicKeyMap},
};
use serde_json::{Value, json};

const REMOTE: &str = "remote.test";
const BOB: &str = "@bob:remote.test";

/// The other server: its key pair, and its keys as axon would have fetched them.
struct Remote {
    pair: Ed25519KeyPair,
    keys: PublicKeyMap,
}

impl Remote {
    fn new() -> Self {
        let doc = Ed25519KeyPair::generate();
        let pair = Ed25519KeyPair::from_der(&doc, "1".into()).unwrap();
        let set = BTreeMap::from([(
            "ed25519:1".to_owned(),
            Base64::new(pair.public_key().to_vec()),
        )]);
        let keys = BTreeMap::from([(REMOTE.to_owned(), set)]);
        Self { pair, keys }
    }
}

/// A room as the test sends PDUs into it: its ID and its version's rules.
struct Room {
    id: String,
    rules: RoomVersionRules,
}

struct Draft<'a> {
    kind: &'a str,
    state_key: Option<&'a str>,
    content: Value,
    prev: Vec<String>,
    auth: Vec<String>,
    depth: i64,
    ts: i64,
}

fn references(ids: &[String], rules: &RoomVersionRules) -> Value {
    match rules.events_reference_format {
        EventsReferenceFormatVersion::V1 => ids.iter().map(|id| json!([id, {}])).collect(),
        _ => json!(ids),
    }
}

/// A PDU signed by remote.test, as that server would send it.
fn remote_pdu(remote: &Remote, room: &Room, d: &Draft<'_>) -> CanonicalJsonObject {
    let mut pdu = json!({
        "room_id": room.id, "sender": BOB, "type": d.kind, "content": d.content,
        "prev_events": references(&d.prev, &room.rules),
        "auth_events": references(&d.auth, &room.rules),
        "depth": d.depth, "origin_server_ts": d.ts,
    });
    if let Some(key) = d.state_key {
        pdu["state_key"] = json!(key);
    }
    if room.rules.event_id_format == EventIdFormatVersion::V1 {
        pdu["event_id"] = json!(format!("${}:{REMOTE}", rand_suffix()));
    }
    let mut obj: CanonicalJsonObject = serde_json::from_value(pdu).unwrap();
    ruma::signatures::hash_and_sign_event(REMOTE, &remote.pair, &mut obj, &room.rules.redaction)
        .unwrap();
    obj
}

fn rand_suffix() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("ev{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn receive(
    s: &TestServer,
    remote: &Remote,
    room: &Room,
    d: &Draft<'_>,
) -> Result<(String, Received), Error> {
    let room_id = RoomId::parse(&room.id).unwrap();
    receive_pdu(&s.hs, &room_id, remote_pdu(remote, room, d), &remote.keys)
        .await
        .map(|(id, r)| (id.to_string(), r))
}

/// The event ID of a state event in the room's current state.
async fn state_id(s: &TestServer, token: &str, room: &str, kind: &str, key: &str) -> String {
    let (status, state) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state"),
            Some(token),
        )
        .await;
    assert_eq!(status, 200, "{state}");
    state
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == kind && e["state_key"] == key)
        .unwrap_or_else(|| panic!("no {kind}/{key} in {state}"))["event_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

async fn state_content(s: &TestServer, token: &str, room: &str, kind: &str) -> Value {
    let (status, content) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/{kind}/"),
            Some(token),
        )
        .await;
    assert_eq!(status, 200, "{content}");
    content
}

/// (event ID, depth) of the newest event of the room's timeline.
async fn newest(s: &TestServer, token: &str, room: &str) -> (String, i64) {
    let (status, page) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1"),
            Some(token),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let id = page["chunk"][0]["event_id"].as_str().unwrap().to_owned();
    (id.clone(), depth_of(s, &id).await)
}

async fn depth_of(s: &TestServer, id: &str) -> i64 {
    let stored = s.hs.storage.event(id).await.unwrap().unwrap();
    stored.pdu["depth"].as_i64().unwrap()
}

async fn prev_events_of(s: &TestServer, id: &str) -> Vec<String> {
    let stored = s.hs.storage.event(id).await.unwrap().unwrap();
    let json: CanonicalJsonObject = serde_json::from_value(stored.pdu).unwrap();
    let Some(CanonicalJsonValue::Array(refs)) = json.get("prev_events") else {
        panic!("no prev_events")
    };
    refs.iter()
        .map(|r| match r {
            CanonicalJsonValue::String(s) => s.clone(),
            CanonicalJsonValue::Array(pair) => match &pair[0] {
                CanonicalJsonValue::String(s) => s.clone(),
                _ => panic!("bad reference"),
            },
            _ => panic!("bad reference"),
        })
        .collect()
}

async fn put_state(s: &TestServer, token: &str, room: &str, kind: &str, content: Value) -> String {
    let (status, res) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/{kind}/"),
            Some(token),
            content,
        )
        .await;
    assert_eq!(status, 200, "{res}");
    res["event_id"].as_str().unwrap().to_owned()
}

async fn send_text(s: &TestServer, token: &str, room: &str, body: &str) -> String {
    let (status, res) = s
        .put(
            &format!(
                "/_matrix/client/v3/rooms/{room}/send/m.room.message/{}",
                rand_suffix()
            ),
            Some(token),
            json!({"msgtype": "m.text", "body": body}),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    res["event_id"].as_str().unwrap().to_owned()
}

async fn extremities(s: &TestServer, room: &str) -> i64 {
    s.hs.storage.forward_extremity_count(room).await.unwrap()
}

async fn timeline_bodies(s: &TestServer, token: &str, room: &str) -> Vec<String> {
    let (status, page) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100"),
            Some(token),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| {
            e["content"]["body"]
                .as_str()
                .or(e["content"]["topic"].as_str())
                .map(str::to_owned)
        })
        .collect()
}

/// One room version through the whole story: a remote join, a fork and its merge, a
/// conflicting fork resolved per the version's algorithm, a soft failure, rejections.
async fn fork_story(s: &TestServer, token: &str, version: &str) {
    let remote = Remote::new();
    let (status, res) = s
        .post(
            "/_matrix/client/v3/createRoom",
            Some(token),
            json!({"preset": "public_chat", "room_version": version}),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let room_id = res["room_id"].as_str().unwrap().to_owned();
    let version_id = RoomVersionId::try_from(version).unwrap();
    let room = Room {
        id: room_id.clone(),
        rules: version_id.rules().unwrap(),
    };
    let with_create = !room.rules.authorization.room_create_event_id_as_room_id;
    let auth = |ids: Vec<String>, create: &str| -> Vec<String> {
        let mut all = ids;
        if with_create {
            all.insert(0, create.to_owned());
        }
        all
    };
    let r = room_id.as_str();
    let create = state_id(s, token, r, "m.room.create", "").await;
    let join_rules = state_id(s, token, r, "m.room.join_rules", "").await;

    // bob joins the public room from his server.
    let pl = state_id(s, token, r, "m.room.power_levels", "").await;
    let (tip, depth) = newest(s, token, r).await;
    let join = Draft {
        kind: "m.room.member",
        state_key: Some(BOB),
        content: json!({"membership": "join"}),
        prev: vec![tip],
        auth: auth(vec![pl, join_rules.clone()], &create),
        depth: depth + 1,
        ts: now(),
    };
    let join_pdu = remote_pdu(&remote, &room, &join);
    let room_ref = RoomId::parse(&room.id).unwrap();
    let (join_id, outcome) = receive_pdu(&s.hs, &room_ref, join_pdu.clone(), &remote.keys)
        .await
        .unwrap();
    let join_id = join_id.to_string();
    assert_eq!(outcome, Received::Accepted, "v{version}");
    // The same PDU again changes nothing.
    let again = receive_pdu(&s.hs, &room_ref, join_pdu, &remote.keys)
        .await
        .unwrap();
    assert_eq!(again.1, Received::AlreadyKnown);
    let (status, members) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{r}/joined_members"),
            Some(token),
        )
        .await;
    assert_eq!(status, 200);
    assert!(members["joined"][BOB].is_object(), "v{version}: {members}");

    // alice lets bob change state.
    let pl = put_state(
        s,
        token,
        r,
        "m.room.power_levels",
        power_levels(&room, Some(BOB)),
    )
    .await;

    // A fork: alice names the room while bob, not having seen it, sets the topic.
    let (base, base_depth) = newest(s, token, r).await;
    put_state(s, token, r, "m.room.name", json!({"name": "N"})).await;
    let topic = Draft {
        kind: "m.room.topic",
        state_key: Some(""),
        content: json!({"topic": "from bob"}),
        prev: vec![base.clone()],
        auth: auth(vec![pl.clone(), join_id.clone()], &create),
        depth: base_depth + 1,
        ts: now(),
    };
    let (bob_topic, outcome) = receive(s, &remote, &room, &topic).await.unwrap();
    assert_eq!(outcome, Received::Accepted, "v{version}");
    assert_eq!(
        extremities(s, r).await,
        2,
        "v{version}: the room has forked"
    );
    assert_eq!(state_content(s, token, r, "m.room.name").await["name"], "N");
    assert_eq!(
        state_content(s, token, r, "m.room.topic").await["topic"],
        "from bob"
    );
    // alice's next event builds on both sides and merges them.
    let merge = send_text(s, token, r, "merged").await;
    let mut prevs = prev_events_of(s, &merge).await;
    prevs.sort();
    assert_eq!(prevs.len(), 2, "v{version}: {prevs:?}");
    assert!(prevs.contains(&bob_topic));
    assert_eq!(extremities(s, r).await, 1);

    // A conflicting fork: alice and bob set the topic concurrently, bob's arriving second.
    // v2 and later order the two by origin_server_ts (bob's is older, so alice's wins);
    // v1 takes the deeper event (bob's claims a greater depth, so his wins).
    let (base, base_depth) = newest(s, token, r).await;
    put_state(s, token, r, "m.room.topic", json!({"topic": "from alice"})).await;
    let v1 = version == "1";
    let conflicting = Draft {
        kind: "m.room.topic",
        state_key: Some(""),
        content: json!({"topic": "bob again"}),
        prev: vec![base],
        auth: auth(vec![pl.clone(), join_id.clone()], &create),
        depth: base_depth + if v1 { 5 } else { 1 },
        ts: 1_000,
    };
    let (_, outcome) = receive(s, &remote, &room, &conflicting).await.unwrap();
    assert_eq!(outcome, Received::Accepted);
    assert_eq!(extremities(s, r).await, 2);
    let expected = if v1 { "bob again" } else { "from alice" };
    assert_eq!(
        state_content(s, token, r, "m.room.topic").await["topic"],
        expected,
        "v{version}: resolved topic"
    );
    send_text(s, token, r, "merged again").await;
    assert_eq!(extremities(s, r).await, 1);
    assert_eq!(
        state_content(s, token, r, "m.room.topic").await["topic"],
        expected
    );

    // Soft failure: alice takes bob's power away; bob's topic, built on an event before
    // that, passes the state before it but not the current state.
    let (before_demotion, depth) = newest(s, token, r).await;
    put_state(
        s,
        token,
        r,
        "m.room.power_levels",
        power_levels(&room, None),
    )
    .await;
    let late = Draft {
        kind: "m.room.topic",
        state_key: Some(""),
        content: json!({"topic": "too late"}),
        prev: vec![before_demotion],
        auth: auth(vec![pl.clone(), join_id.clone()], &create),
        depth: depth + 1,
        ts: now(),
    };
    let (late_id, outcome) = receive(s, &remote, &room, &late).await.unwrap();
    assert_eq!(outcome, Received::SoftFailed, "v{version}");
    let (status, _) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{r}/event/{late_id}"),
            Some(token),
        )
        .await;
    assert_eq!(status, 404, "a soft-failed event is not served to clients");
    assert_eq!(extremities(s, r).await, 1);
    assert_eq!(
        state_content(s, token, r, "m.room.topic").await["topic"],
        expected
    );
    assert!(
        !timeline_bodies(s, token, r)
            .await
            .contains(&"too late".to_owned())
    );

    // Rejections: not allowed by its own auth events (bob's membership left out), a bad
    // signature, and references to events this server does not have.
    let (tip, depth) = newest(s, token, r).await;
    let unauthorised = Draft {
        kind: "m.room.message",
        state_key: None,
        content: json!({"msgtype": "m.text", "body": "sneaky"}),
        prev: vec![tip.clone()],
        auth: auth(vec![pl.clone()], &create),
        depth: depth + 1,
        ts: now(),
    };
    let err = receive(s, &remote, &room, &unauthorised).await.unwrap_err();
    assert!(matches!(err, Error::Rejected(_)), "v{version}: {err:?}");
    let impostor = Remote::new();
    let signed_by_other = remote_pdu(&impostor, &room, &unauthorised);
    let err = receive_pdu(&s.hs, &room_ref, signed_by_other, &remote.keys)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Forbidden(_)), "v{version}: {err:?}");
    let dangling = Draft {
        prev: vec![format!("$unknown:{REMOTE}")],
        auth: auth(vec![pl, join_id], &create),
        ..unauthorised
    };
    let err = receive(s, &remote, &room, &dangling).await.unwrap_err();
    assert!(
        matches!(err, Error::UnknownEvents(ref ids) if ids.len() == 1),
        "{err:?}"
    );
    // A PDU for another room, and a second create event, are refused as malformed.
    let elsewhere = Room {
        id: format!("!elsewhere:{REMOTE}"),
        rules: room.rules.clone(),
    };
    let misrouted = remote_pdu(&remote, &elsewhere, &dangling);
    let err = receive_pdu(&s.hs, &room_ref, misrouted, &remote.keys)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadJson(_)), "v{version}: {err:?}");
    let second_create = Draft {
        kind: "m.room.create",
        state_key: Some(""),
        content: json!({"creator": BOB}),
        ..dangling
    };
    let err = receive(s, &remote, &room, &second_create)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::BadJson(_)), "v{version}: {err:?}");
    assert!(
        !timeline_bodies(s, token, r)
            .await
            .contains(&"sneaky".to_owned())
    );

    // Neither the soft-failed nor the rejected events became something to build on.
    let after = send_text(s, token, r, "after").await;
    assert_eq!(prev_events_of(s, &after).await, vec![tip]);
}

/// Power levels giving alice 100 (room v12: she is the creator, who is not listed) and,
/// when given, one more user 50.
fn power_levels(room: &Room, moderator: Option<&str>) -> Value {
    let mut users = serde_json::Map::new();
    if !room.rules.authorization.explicitly_privilege_room_creators {
        users.insert("@alice:localhost".into(), json!(100));
    }
    if let Some(m) = moderator {
        users.insert(m.into(), json!(50));
    }
    json!({ "users": users })
}

fn now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

#[tokio::test]
async fn remote_events_fork_and_merge_in_every_state_resolution_version() {
    let s = TestServer::start().await;
    let (token, _) = s.register("alice", "correct horse battery").await;
    // v1: state res v1; v2: v2.0 with legacy event IDs; v11: v2.0; v12: v2.1.
    for version in ["1", "2", "11", "12"] {
        fork_story(&s, &token, version).await;
    }
}

/// A room with more forward extremities than an event may name: local events name the 20
/// deepest, and the next one merges the rest. Remote messages reach local members' unread
/// counts and notifications (the same tail as local events).
#[tokio::test]
async fn wide_forks_merge_within_twenty_prev_events_and_remote_events_notify() {
    let s = TestServer::start().await;
    let (token, _) = s.register("alice", "correct horse battery").await;
    let remote = Remote::new();
    let (status, res) = s
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&token),
            json!({"preset": "public_chat", "room_version": "11"}),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let r = res["room_id"].as_str().unwrap().to_owned();
    let room = Room {
        id: r.clone(),
        rules: RoomVersionId::V11.rules().unwrap(),
    };
    let create = state_id(&s, &token, &r, "m.room.create", "").await;
    let join_rules = state_id(&s, &token, &r, "m.room.join_rules", "").await;
    let pl = state_id(&s, &token, &r, "m.room.power_levels", "").await;
    let (tip, depth) = newest(&s, &token, &r).await;
    let join = Draft {
        kind: "m.room.member",
        state_key: Some(BOB),
        content: json!({"membership": "join"}),
        prev: vec![tip],
        auth: vec![create.clone(), pl.clone(), join_rules],
        depth: depth + 1,
        ts: now(),
    };
    let (join_id, outcome) = receive(&s, &remote, &room, &join).await.unwrap();
    assert_eq!(outcome, Received::Accepted);

    // 25 messages from bob, each on bob's join only: 25 forward extremities.
    let mut sent = Vec::new();
    for i in 0..25 {
        let message = Draft {
            kind: "m.room.message",
            state_key: None,
            content: json!({"msgtype": "m.text", "body": format!("wide {i}")}),
            prev: vec![join_id.clone()],
            auth: vec![create.clone(), pl.clone(), join_id.clone()],
            depth: depth + 2,
            ts: now(),
        };
        let (id, outcome) = receive(&s, &remote, &room, &message).await.unwrap();
        assert_eq!(outcome, Received::Accepted);
        sent.push(id);
    }
    assert_eq!(extremities(&s, &r).await, 25);

    // Every one of bob's messages counts for alice, as a local one would.
    let (status, sync) = s
        .get("/_matrix/client/v3/sync?timeout=0", Some(&token))
        .await;
    assert_eq!(status, 200, "{sync}");
    let room_sync = &sync["rooms"]["join"][&r];
    assert_eq!(
        room_sync["unread_notifications"]["notification_count"], 25,
        "{room_sync}"
    );
    let (status, notifications) = s
        .get("/_matrix/client/v3/notifications?limit=50", Some(&token))
        .await;
    assert_eq!(status, 200, "{notifications}");
    assert_eq!(notifications["notifications"].as_array().unwrap().len(), 25);

    // alice's next event names 20 of them; the one after names the other 5 and hers.
    let first = send_text(&s, &token, &r, "first merge").await;
    let prevs = prev_events_of(&s, &first).await;
    assert_eq!(prevs.len(), 20, "{prevs:?}");
    assert!(prevs.iter().all(|p| sent.contains(p)));
    assert_eq!(extremities(&s, &r).await, 6);
    let second = send_text(&s, &token, &r, "second merge").await;
    let mut rest = prev_events_of(&s, &second).await;
    rest.sort();
    let mut expected: Vec<String> = sent
        .iter()
        .filter(|id| !prevs.contains(id))
        .cloned()
        .chain([first])
        .collect();
    expected.sort();
    assert_eq!(rest, expected);
    assert_eq!(extremities(&s, &r).await, 1);
    // The room's state came through whole.
    let (status, members) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{r}/joined_members"),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200);
    assert!(members["joined"][BOB].is_object(), "{members}");
}
