//! Rooms: signed PDUs, room versions, membership and power levels, sending, state,
//! paging, concurrency, and state storage growth.

mod common;

use std::collections::BTreeMap;

use common::{TestServer, assert_error};
use ruma::{CanonicalJsonObject, RoomVersionId, signatures::Verified};
use serde_json::{Value, json};

async fn create_room(s: &TestServer, token: &str, body: Value) -> String {
    let (status, res) = s
        .post("/_matrix/client/v3/createRoom", Some(token), body)
        .await;
    assert_eq!(status, 200, "{res}");
    res["room_id"].as_str().unwrap().to_owned()
}

async fn send_text(s: &TestServer, token: &str, room: &str, txn: &str, body: &str) -> (u16, Value) {
    let (status, res) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
            Some(token),
            json!({"msgtype": "m.text", "body": body}),
        )
        .await;
    (status.as_u16(), res)
}

/// Every PDU of the room, as stored, with its event ID.
async fn pdus(s: &TestServer, room: &str) -> Vec<(String, CanonicalJsonObject)> {
    let mut conn: sqlx::PgConnection = sqlx::ConnectOptions::connect(&s.db).await.unwrap();
    let rows: Vec<(String, sqlx::types::Json<Value>)> =
        sqlx::query_as("SELECT event_id, pdu FROM events WHERE room_id = $1 ORDER BY stream_pos")
            .bind(room)
            .fetch_all(&mut conn)
            .await
            .unwrap();
    rows.into_iter()
        .map(|(id, pdu)| (id, serde_json::from_value(pdu.0).unwrap()))
        .collect()
}

/// The server's published keys, checked against its own signature, as a key map.
async fn published_keys(s: &TestServer) -> ruma::signatures::PublicKeyMap {
    let (status, doc) = s.get("/_matrix/key/v2/server", None).await;
    assert_eq!(status, 200, "{doc}");
    assert_eq!(doc["server_name"], "localhost");
    assert!(doc["valid_until_ts"].as_i64().unwrap() > 0);
    let mut set = BTreeMap::new();
    for section in ["verify_keys", "old_verify_keys"] {
        for (id, key) in doc[section].as_object().unwrap() {
            set.insert(
                id.clone(),
                ruma::serde::Base64::parse(key["key"].as_str().unwrap()).unwrap(),
            );
        }
    }
    let map = BTreeMap::from([("localhost".to_owned(), set)]);
    let object: CanonicalJsonObject = serde_json::from_value(doc).unwrap();
    ruma::signatures::verify_json(&map, &object).expect("key document is self-signed");
    map
}

#[tokio::test]
async fn every_room_version_creates_verifiable_events() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let keys = published_keys(&s).await;
    for version in 1..=12 {
        let room = create_room(
            &s,
            &alice,
            json!({"room_version": version.to_string(), "name": "v", "topic": "t", "preset": "public_chat"}),
        )
        .await;
        if version >= 12 {
            assert!(
                !room.contains(':'),
                "v12 room IDs have no server name: {room}"
            );
        } else {
            assert!(room.ends_with(":localhost"), "{room}");
        }
        let (status, _) = send_text(&s, &alice, &room, "t1", "hello").await;
        assert_eq!(status, 200);
        let rules = RoomVersionId::try_from(version.to_string().as_str())
            .unwrap()
            .rules()
            .unwrap();
        let events = pdus(&s, &room).await;
        assert!(events.len() >= 7, "v{version}: {}", events.len());
        for (event_id, pdu) in &events {
            let verified = ruma::signatures::verify_event(&keys, pdu, &rules)
                .unwrap_or_else(|e| panic!("v{version} {event_id}: {e}"));
            assert_eq!(verified, Verified::All, "v{version} {event_id}");
            if version >= 3 {
                let hash = ruma::signatures::reference_hash(pdu, &rules).unwrap();
                assert_eq!(
                    event_id,
                    &format!("${hash}"),
                    "v{version}: event ID is the reference hash"
                );
            }
        }
    }
}

#[tokio::test]
async fn create_room_fields_and_state() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let (bob, _) = s.register("bob", "pw").await;
    let room = create_room(
        &s,
        &alice,
        json!({
            "name": "Garden", "topic": "plants", "room_alias_name": "garden", "visibility": "public",
            "preset": "public_chat", "invite": ["@bob:localhost"], "is_direct": true,
            "initial_state": [{"type": "m.room.history_visibility", "state_key": "", "content": {"history_visibility": "joined"}}],
            "power_level_content_override": {"events_default": 10},
            "creation_content": {"m.federate": false}
        }),
    )
    .await;
    let base = format!("/_matrix/client/v3/rooms/{room}");
    let (status, name) = s
        .get(&format!("{base}/state/m.room.name/"), Some(&alice))
        .await;
    assert_eq!((status.as_u16(), name), (200, json!({"name": "Garden"})));
    let (_, topic) = s
        .get(&format!("{base}/state/m.room.topic"), Some(&alice))
        .await;
    assert_eq!(topic["topic"], "plants");
    let (_, hv) = s
        .get(
            &format!("{base}/state/m.room.history_visibility"),
            Some(&alice),
        )
        .await;
    assert_eq!(hv["history_visibility"], "joined");
    let (_, pl) = s
        .get(&format!("{base}/state/m.room.power_levels"), Some(&alice))
        .await;
    assert_eq!(pl["events_default"], 10);
    assert!(
        pl["users"].get("@alice:localhost").is_none(),
        "v12 creators are not listed: {pl}"
    );
    let (_, create) = s
        .get(&format!("{base}/state/m.room.create"), Some(&alice))
        .await;
    assert_eq!(create["room_version"], "12");
    assert_eq!(create["m.federate"], false);
    let (_, alias) = s
        .get(
            &format!("{base}/state/m.room.canonical_alias"),
            Some(&alice),
        )
        .await;
    assert_eq!(alias["alias"], "#garden:localhost");
    let (_, jr) = s
        .get(&format!("{base}/state/m.room.join_rules"), Some(&alice))
        .await;
    assert_eq!(jr["join_rule"], "public");

    let (status, state) = s.get(&format!("{base}/state"), Some(&alice)).await;
    assert_eq!(status, 200);
    assert!(
        state
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.create")
    );

    // bob was invited, as a direct chat
    let (_, members) = s.get(&format!("{base}/members"), Some(&alice)).await;
    let bob_member = members["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["state_key"] == "@bob:localhost")
        .unwrap();
    assert_eq!(bob_member["content"]["membership"], "invite");
    assert_eq!(bob_member["content"]["is_direct"], true);
    // joining by alias
    let (status, body) = s
        .post(
            "/_matrix/client/v3/join/%23garden:localhost",
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room_id"], room);
    let (_, joined) = s.get(&format!("{base}/joined_members"), Some(&alice)).await;
    assert_eq!(joined["joined"].as_object().unwrap().len(), 2);
    assert_eq!(
        joined["joined"]["@alice:localhost"]["display_name"],
        "alice"
    );
    let (_, rooms) = s.get("/_matrix/client/v3/joined_rooms", Some(&bob)).await;
    assert_eq!(rooms["joined_rooms"], json!([room]));

    // errors
    let r = s
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            json!({"room_version": "99"}),
        )
        .await;
    assert_error(&r, 400, "M_UNSUPPORTED_ROOM_VERSION");
    let r = s
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            json!({"room_alias_name": "garden"}),
        )
        .await;
    assert_error(&r, 400, "M_ROOM_IN_USE");
    let r = s
        .post("/_matrix/client/v3/createRoom", Some(&alice), json!({"invite_3pid": [{"id_server": "not a server/", "id_access_token": "y", "medium": "email", "address": "a@b.c"}]}))
        .await;
    assert_error(&r, 400, "M_INVALID_PARAM");
    let r = s
        .post("/_matrix/client/v3/createRoom", Some(&alice), json!({"invite_3pid": [{"id_server": "id.example", "id_access_token": "y", "medium": "msisdn", "address": "447700900000"}]}))
        .await;
    assert_error(&r, 400, "M_THREEPID_MEDIUM_NOT_SUPPORTED");
    assert_error(
        &s.post("/_matrix/client/v3/createRoom", None, json!({}))
            .await,
        401,
        "M_MISSING_TOKEN",
    );
    let r = s
        .get(&format!("{base}/state/m.room.nothing"), Some(&alice))
        .await;
    assert_error(&r, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn membership_and_power_levels() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let (bob, _) = s.register("bob", "pw").await;
    let (carol, _) = s.register("carol", "pw").await;
    let room = create_room(&s, &alice, json!({"preset": "private_chat"})).await;
    let base = format!("/_matrix/client/v3/rooms/{room}");

    // invite-only: bob cannot join uninvited, nor send
    assert_error(
        &s.post(&format!("{base}/join"), Some(&bob), json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &send_text(&s, &bob, &room, "x", "hi").await.into_result(),
        403,
        "M_FORBIDDEN",
    );
    // a non-member cannot read
    assert_error(
        &s.get(&format!("{base}/state"), Some(&bob)).await,
        403,
        "M_FORBIDDEN",
    );

    let (status, _) = s
        .post(
            &format!("{base}/invite"),
            Some(&alice),
            json!({"user_id": "@bob:localhost"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = s.post(&format!("{base}/join"), Some(&bob), json!({})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(send_text(&s, &bob, &room, "x", "hi").await.0, 200);

    // bob (power 0) may not change the name, invite is allowed (invite level 0), kick is not
    let r = s
        .put(
            &format!("{base}/state/m.room.name"),
            Some(&bob),
            json!({"name": "mine"}),
        )
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");
    let (status, _) = s
        .post(
            &format!("{base}/invite"),
            Some(&bob),
            json!({"user_id": "@carol:localhost"}),
        )
        .await;
    assert_eq!(status, 200);
    let r = s
        .post(
            &format!("{base}/kick"),
            Some(&bob),
            json!({"user_id": "@alice:localhost"}),
        )
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");

    // kick, ban, unban by the creator
    let (status, _) = s
        .post(
            &format!("{base}/kick"),
            Some(&alice),
            json!({"user_id": "@bob:localhost", "reason": "bye"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_error(
        &send_text(&s, &bob, &room, "y", "hi").await.into_result(),
        403,
        "M_FORBIDDEN",
    );
    let (status, _) = s
        .post(
            &format!("{base}/ban"),
            Some(&alice),
            json!({"user_id": "@bob:localhost"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .post(
            &format!("{base}/invite"),
            Some(&alice),
            json!({"user_id": "@bob:localhost"}),
        )
        .await;
    assert_eq!(status, 403, "banned users cannot be invited");
    let (status, _) = s
        .post(
            &format!("{base}/unban"),
            Some(&alice),
            json!({"user_id": "@bob:localhost"}),
        )
        .await;
    assert_eq!(status, 200);
    let r = s
        .post(
            &format!("{base}/unban"),
            Some(&alice),
            json!({"user_id": "@bob:localhost"}),
        )
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");
    let r = s
        .post(
            &format!("{base}/kick"),
            Some(&alice),
            json!({"user_id": "@nobody:localhost"}),
        )
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");

    // carol joins (invited), leaves
    let (status, _) = s
        .post(&format!("{base}/join"), Some(&carol), json!({}))
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .post(&format!("{base}/leave"), Some(&carol), json!({}))
        .await;
    assert_eq!(status, 200);
    let (_, rooms) = s.get("/_matrix/client/v3/joined_rooms", Some(&carol)).await;
    assert_eq!(rooms["joined_rooms"], json!([]));

    // unknown rooms
    let r = s
        .post(
            "/_matrix/client/v3/rooms/!nope:localhost/join",
            Some(&bob),
            json!({}),
        )
        .await;
    assert_error(&r, 404, "M_NOT_FOUND");
    let r = s
        .post(
            "/_matrix/client/v3/join/%23nope:localhost",
            Some(&bob),
            json!({}),
        )
        .await;
    assert_error(&r, 404, "M_NOT_FOUND");
    assert_error(
        &send_text(&s, &alice, "!nope:localhost", "z", "x")
            .await
            .into_result(),
        404,
        "M_NOT_FOUND",
    );
}

trait IntoResult {
    fn into_result(self) -> (reqwest::StatusCode, Value);
}
impl IntoResult for (u16, Value) {
    fn into_result(self) -> (reqwest::StatusCode, Value) {
        (reqwest::StatusCode::from_u16(self.0).unwrap(), self.1)
    }
}

#[tokio::test]
async fn send_is_idempotent_and_events_are_readable() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let room = create_room(&s, &alice, json!({})).await;
    let (status, first) = send_text(&s, &alice, &room, "txn1", "hello").await;
    assert_eq!(status, 200);
    let (_, again) = send_text(&s, &alice, &room, "txn1", "hello").await;
    assert_eq!(
        first["event_id"], again["event_id"],
        "same txn ID, same event"
    );
    let (_, other) = send_text(&s, &alice, &room, "txn2", "hello").await;
    assert_ne!(first["event_id"], other["event_id"]);
    // another device of the same user has its own transaction IDs
    let (alice2, _) = s.login_ok("alice", "pw").await;
    let (_, from_other_device) = send_text(&s, &alice2, &room, "txn1", "hello").await;
    assert_ne!(first["event_id"], from_other_device["event_id"]);

    let event_id = first["event_id"].as_str().unwrap();
    let (status, event) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/event/{event_id}"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["content"]["body"], "hello");
    assert_eq!(event["sender"], "@alice:localhost");
    assert_eq!(event["room_id"], room);
    let r = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/event/$nope"),
            Some(&alice),
        )
        .await;
    assert_error(&r, 404, "M_NOT_FOUND");
    let r = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/t3"),
            Some(&alice),
            json!([1]),
        )
        .await;
    assert_eq!(r.0, 400, "{}", r.1);
}

#[tokio::test]
async fn paging_returns_each_message_once_in_order() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let room = create_room(&s, &alice, json!({})).await;
    const N: usize = 1000;
    for i in 0..N {
        let (status, _) = send_text(&s, &alice, &room, &format!("t{i}"), &format!("m{i}")).await;
        assert_eq!(status, 200);
    }
    let page = |from: Option<String>, dir: &'static str| {
        let s = &s;
        let alice = &alice;
        let room = &room;
        async move {
            let mut path = format!("/_matrix/client/v3/rooms/{room}/messages?dir={dir}&limit=70");
            if let Some(f) = from {
                path.push_str(&format!("&from={f}"));
            }
            let (status, body) = s.get(&path, Some(alice)).await;
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    let bodies = |chunk: &Value| -> Vec<String> {
        chunk["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["type"] == "m.room.message")
            .map(|e| e["content"]["body"].as_str().unwrap().to_owned())
            .collect()
    };
    // backwards from the end
    let mut seen = Vec::new();
    let mut from = None;
    loop {
        let body = page(from.clone(), "b").await;
        seen.extend(bodies(&body));
        match body["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..N).rev().map(|i| format!("m{i}")).collect();
    assert_eq!(seen, expected);
    // forwards from the start
    let mut seen = Vec::new();
    let mut from = None;
    loop {
        let body = page(from.clone(), "f").await;
        seen.extend(bodies(&body));
        match body["end"].as_str() {
            Some(end) => from = Some(end.to_owned()),
            None => break,
        }
    }
    let expected: Vec<String> = (0..N).map(|i| format!("m{i}")).collect();
    assert_eq!(seen, expected);
    let r = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&from=garbage"),
            Some(&alice),
        )
        .await;
    assert_error(&r, 400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn concurrent_senders_lose_nothing() {
    let s = std::sync::Arc::new(TestServer::start().await);
    let (alice, _) = s.register("alice", "pw").await;
    let room = create_room(&s, &alice, json!({"preset": "public_chat"})).await;
    let mut tokens = Vec::new();
    for i in 0..8 {
        let (t, _) = s.register(&format!("sender{i}"), "pw").await;
        let (status, _) = s
            .post(
                &format!("/_matrix/client/v3/rooms/{room}/join"),
                Some(&t),
                json!({}),
            )
            .await;
        assert_eq!(status, 200);
        tokens.push(t);
    }
    let mut tasks = Vec::new();
    for (i, token) in tokens.into_iter().enumerate() {
        let (s, room) = (s.clone(), room.clone());
        tasks.push(tokio::spawn(async move {
            for j in 0..200 {
                let (status, body) =
                    send_text(&s, &token, &room, &format!("t{j}"), &format!("{i}:{j}")).await;
                assert_eq!(status, 200, "{body}");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut conn: sqlx::PgConnection = sqlx::ConnectOptions::connect(&s.db).await.unwrap();
    let (messages, distinct_positions): (i64, i64) = sqlx::query_as(
        "SELECT count(*), count(DISTINCT stream_pos) FROM events WHERE room_id = $1 AND event_type = 'm.room.message'",
    )
    .bind(&room)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!((messages, distinct_positions), (1600, 1600));
    assert_eq!(
        s.hs.storage.forward_extremity_count(&room).await.unwrap(),
        1
    );
    // each sender's messages are in the order sent
    let bodies: Vec<String> = sqlx::query_scalar(
        "SELECT pdu->'content'->>'body' FROM events WHERE room_id = $1 AND event_type = 'm.room.message' ORDER BY stream_pos",
    )
    .bind(&room)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    for i in 0..8 {
        let mine: Vec<&String> = bodies
            .iter()
            .filter(|b| b.starts_with(&format!("{i}:")))
            .collect();
        let expected: Vec<String> = (0..200).map(|j| format!("{i}:{j}")).collect();
        assert_eq!(
            mine.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            expected.iter().map(|s| s.as_str()).collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn key_rotation_keeps_old_keys() {
    let s = TestServer::start().await;
    let before = published_keys(&s).await;
    let new_id = axon::server::keys::rotate(&s.hs.storage).await.unwrap();
    // a restarted server signs with the new key and still publishes the old one
    let s = s.restart().await;
    let (_, doc) = s.get("/_matrix/key/v2/server", None).await;
    assert!(doc["verify_keys"].get(&new_id).is_some(), "{doc}");
    for old in before["localhost"].keys() {
        assert!(
            doc["old_verify_keys"][old]["expired_ts"].as_i64().unwrap() > 0,
            "{doc}"
        );
    }
    published_keys(&s).await;
}

/// 10,000 members join one by one; the state rows written must grow linearly with them,
/// not with members × state size.
#[tokio::test]
async fn state_storage_grows_linearly() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let room_id = create_room(&s, &alice, json!({"preset": "public_chat"})).await;
    let room = ruma::RoomId::parse(&room_id).unwrap();
    const MEMBERS: i64 = 10_000;
    for i in 0..MEMBERS {
        let user = ruma::UserId::parse(format!("@m{i}:localhost")).unwrap();
        let join = axon::rooms::pdu::NewEvent {
            event_type: "m.room.member".into(),
            content: json!({"membership": "join"}),
            state_key: Some(user.to_string()),
            redacts: None,
            origin_server_ts: None,
        };
        axon::rooms::send::send(&s.hs, &room, &user, join, None)
            .await
            .unwrap();
    }
    let rows = s.hs.storage.state_row_count(&room_id).await.unwrap();
    // one delta row per join, plus snapshots that together stay below the deltas
    assert!(rows >= MEMBERS, "{rows}");
    assert!(
        rows <= 3 * MEMBERS,
        "state rows {rows} for {MEMBERS} joins: not linear"
    );
    // and the state is right: everyone is a member
    let (status, joined) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room_id}/joined_members"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        joined["joined"].as_object().unwrap().len() as i64,
        MEMBERS + 1
    );
    // state at the newest group equals current state
    let mut conn: sqlx::PgConnection = sqlx::ConnectOptions::connect(&s.db).await.unwrap();
    let group: i64 = sqlx::query_scalar(
        "SELECT state_after FROM events WHERE room_id = $1 ORDER BY stream_pos DESC LIMIT 1",
    )
    .bind(&room_id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    let at_group = s.hs.storage.state_at_group(group).await.unwrap();
    let current = s.hs.storage.current_state(&room_id).await.unwrap();
    assert_eq!(at_group, current);
}

#[tokio::test]
async fn room_aliases() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let (bob, _) = s.register("bob", "pw").await;
    let room = create_room(&s, &alice, json!({"preset": "public_chat"})).await;
    let path = "/_matrix/client/v3/directory/room/%23lounge:localhost";
    assert_error(&s.get(path, None).await, 404, "M_NOT_FOUND");
    // only members may point an alias at a room
    assert_error(
        &s.put(path, Some(&bob), json!({"room_id": room})).await,
        403,
        "M_FORBIDDEN",
    );
    let (status, body) = s.put(path, Some(&alice), json!({"room_id": room})).await;
    assert_eq!(status, 200, "{body}");
    let r = s.put(path, Some(&alice), json!({"room_id": room})).await;
    assert_error(&r, 409, "M_UNKNOWN");
    let (status, body) = s.get(path, None).await;
    assert_eq!(status, 200);
    assert_eq!(body["room_id"], room);
    assert_eq!(body["servers"], json!(["localhost"]));
    let (status, body) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/aliases"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["aliases"], json!(["#lounge:localhost"]));
    assert_error(
        &s.get(
            &format!("/_matrix/client/v3/rooms/{room}/aliases"),
            Some(&bob),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    // joinable by alias
    assert_eq!(
        s.post(
            "/_matrix/client/v3/join/%23lounge:localhost",
            Some(&bob),
            json!({})
        )
        .await
        .0,
        200
    );
    // other servers' aliases and unknown rooms
    let r = s
        .put(
            "/_matrix/client/v3/directory/room/%23x:elsewhere.org",
            Some(&alice),
            json!({"room_id": room}),
        )
        .await;
    assert_error(&r, 400, "M_INVALID_PARAM");
    let r = s
        .put(
            "/_matrix/client/v3/directory/room/%23y:localhost",
            Some(&alice),
            json!({"room_id": "!nope:localhost"}),
        )
        .await;
    assert_error(&r, 404, "M_NOT_FOUND");
    // deletion: not by bob, yes by its creator
    assert_error(&s.delete(path, Some(&bob), None).await, 403, "M_FORBIDDEN");
    assert_eq!(s.delete(path, Some(&alice), None).await.0, 200);
    assert_error(&s.get(path, None).await, 404, "M_NOT_FOUND");
    assert_error(
        &s.delete(path, Some(&alice), None).await,
        404,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn redaction_per_room_version() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let (bob, _) = s.register("bob", "pw").await;
    for version in ["10", "11", "12"] {
        let room = create_room(
            &s,
            &alice,
            json!({"preset": "public_chat", "room_version": version}),
        )
        .await;
        s.post(
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            Some(&bob),
            json!({}),
        )
        .await;
        let (_, sent) = send_text(&s, &bob, &room, &format!("r{version}"), "secret").await;
        let target = sent["event_id"].as_str().unwrap();
        let (_, alices) = send_text(&s, &alice, &room, &format!("a{version}"), "mine").await;
        let alices = alices["event_id"].as_str().unwrap();

        // bob (power 0) may redact his own event but not alice's
        let r = s
            .put(
                &format!("/_matrix/client/v3/rooms/{room}/redact/{alices}/x{version}"),
                Some(&bob),
                json!({}),
            )
            .await;
        assert_error(&r, 403, "M_FORBIDDEN");
        let (status, body) = s
            .put(
                &format!("/_matrix/client/v3/rooms/{room}/redact/{target}/t{version}"),
                Some(&bob),
                json!({"reason": "oops"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let redaction_id = body["event_id"].as_str().unwrap().to_owned();
        // idempotent per transaction ID
        let (_, again) = s
            .put(
                &format!("/_matrix/client/v3/rooms/{room}/redact/{target}/t{version}"),
                Some(&bob),
                json!({"reason": "oops"}),
            )
            .await;
        assert_eq!(again["event_id"], redaction_id.as_str());

        let (status, event) = s
            .get(
                &format!("/_matrix/client/v3/rooms/{room}/event/{target}"),
                Some(&alice),
            )
            .await;
        assert_eq!(status, 200);
        assert_eq!(event["content"], json!({}), "v{version}: content is gone");
        assert_eq!(
            event["unsigned"]["redacted_because"]["event_id"],
            redaction_id.as_str()
        );
        assert_eq!(
            event["unsigned"]["redacted_because"]["content"]["reason"],
            "oops"
        );
        assert_eq!(event["unsigned"]["redacted_by"], redaction_id.as_str());
        let (_, redaction) = s
            .get(
                &format!("/_matrix/client/v3/rooms/{room}/event/{redaction_id}"),
                Some(&alice),
            )
            .await;
        if version == "10" {
            assert_eq!(
                redaction["redacts"], target,
                "before v11 redacts is top-level"
            );
        } else {
            assert_eq!(
                redaction["content"]["redacts"], target,
                "from v11 redacts is in content"
            );
        }
        // the creator may redact others' events
        let (status, _) = s
            .put(
                &format!("/_matrix/client/v3/rooms/{room}/redact/{alices}/y{version}"),
                Some(&alice),
                json!({}),
            )
            .await;
        assert_eq!(status, 200);
        // the redacted PDU still carries a valid signature
        let keys = published_keys(&s).await;
        let rules = RoomVersionId::try_from(version).unwrap().rules().unwrap();
        for (id, pdu) in pdus(&s, &room).await {
            let v = ruma::signatures::verify_event(&keys, &pdu, &rules)
                .unwrap_or_else(|e| panic!("{id}: {e}"));
            if id == target {
                assert_eq!(v, Verified::Signatures, "redacted: signatures only");
            }
        }
    }
    let r = s
        .put(
            "/_matrix/client/v3/rooms/!nope:localhost/redact/$x/t",
            Some(&alice),
            json!({}),
        )
        .await;
    assert_error(&r, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn context_tags_and_forget() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let (bob, _) = s.register("bob", "pw").await;
    let room = create_room(&s, &alice, json!({"preset": "public_chat"})).await;
    let mut ids = Vec::new();
    for i in 0..9 {
        let (_, body) = send_text(&s, &alice, &room, &format!("c{i}"), &format!("m{i}")).await;
        ids.push(body["event_id"].as_str().unwrap().to_owned());
    }
    let (status, ctx) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/context/{}?limit=4", ids[4]),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200, "{ctx}");
    assert_eq!(ctx["event"]["content"]["body"], "m4");
    let before: Vec<&str> = ctx["events_before"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content"]["body"].as_str().unwrap())
        .collect();
    let after: Vec<&str> = ctx["events_after"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(before, ["m3", "m2"]);
    assert_eq!(after, ["m5", "m6"]);
    assert!(
        ctx["state"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.create")
    );
    // paging on from the context's end continues after m6
    let end = ctx["end"].as_str().unwrap();
    let (_, page) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=1&from={end}"),
            Some(&alice),
        )
        .await;
    assert_eq!(page["chunk"][0]["content"]["body"], "m7");
    assert_error(
        &s.get(
            &format!("/_matrix/client/v3/rooms/{room}/context/$nope"),
            Some(&alice),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.get(
            &format!("/_matrix/client/v3/rooms/{room}/context/{}", ids[0]),
            Some(&bob),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );

    // tags
    let tags = format!("/_matrix/client/v3/user/@alice:localhost/rooms/{room}/tags");
    let (_, body) = s.get(&tags, Some(&alice)).await;
    assert_eq!(body["tags"], json!({}));
    assert_eq!(
        s.put(
            &format!("{tags}/m.favourite"),
            Some(&alice),
            json!({"order": 0.5})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.put(&format!("{tags}/u.work"), Some(&alice), json!({}))
            .await
            .0,
        200
    );
    let (_, body) = s.get(&tags, Some(&alice)).await;
    assert_eq!(body["tags"]["m.favourite"]["order"], 0.5);
    assert!(body["tags"]["u.work"].is_object());
    assert_eq!(
        s.delete(&format!("{tags}/u.work"), Some(&alice), None)
            .await
            .0,
        200
    );
    let (_, body) = s.get(&tags, Some(&alice)).await;
    assert!(body["tags"].get("u.work").is_none(), "{body}");
    // tags are m.tag room account data
    let (_, data) = s
        .get(
            &format!("/_matrix/client/v3/user/@alice:localhost/rooms/{room}/account_data/m.tag"),
            Some(&alice),
        )
        .await;
    assert_eq!(data["tags"]["m.favourite"]["order"], 0.5);
    assert_error(&s.get(&tags, Some(&bob)).await, 403, "M_FORBIDDEN");

    // forget: only after leaving
    let forget = format!("/_matrix/client/v3/rooms/{room}/forget");
    assert_error(
        &s.post(&forget, Some(&alice), json!({})).await,
        400,
        "M_BAD_STATE",
    );
    assert_error(
        &s.post(&forget, Some(&bob), json!({})).await,
        404,
        "M_NOT_FOUND",
    );
    s.post(
        &format!("/_matrix/client/v3/rooms/{room}/join"),
        Some(&bob),
        json!({}),
    )
    .await;
    s.post(
        &format!("/_matrix/client/v3/rooms/{room}/leave"),
        Some(&bob),
        json!({}),
    )
    .await;
    assert_eq!(s.post(&forget, Some(&bob), json!({})).await.0, 200);
}

/// Bodies of the messages a user sees, oldest first.
async fn visible_bodies(s: &TestServer, token: &str, room: &str) -> Vec<String> {
    let (status, body) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=100"),
            Some(token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .map(|e| e["content"]["body"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn history_visibility_is_enforced() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let (bob, _) = s.register("bob", "pw").await;
    let (carol, _) = s.register("carol", "pw").await;
    let (dave, _) = s.register("dave", "pw").await;
    let join = |room: String, token: String| {
        let s = &s;
        async move {
            let (status, body) = s
                .post(
                    &format!("/_matrix/client/v3/rooms/{room}/join"),
                    Some(&token),
                    json!({}),
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
    };

    // shared: a newcomer sees what came before; after leaving, only what they were there for
    let room = create_room(&s, &alice, json!({"preset": "public_chat"})).await;
    send_text(&s, &alice, &room, "1", "before").await;
    join(room.clone(), bob.clone()).await;
    assert_eq!(visible_bodies(&s, &bob, &room).await, ["before"]);
    send_text(&s, &alice, &room, "2", "during").await;
    s.post(
        &format!("/_matrix/client/v3/rooms/{room}/leave"),
        Some(&bob),
        json!({}),
    )
    .await;
    send_text(&s, &alice, &room, "3", "after").await;
    assert_eq!(visible_bodies(&s, &bob, &room).await, ["during"]);
    assert_eq!(
        visible_bodies(&s, &alice, &room).await,
        ["before", "during", "after"]
    );
    // an event one cannot see is "not found"
    let (_, after) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1"),
            Some(&alice),
        )
        .await;
    let after_id = after["chunk"][0]["event_id"].as_str().unwrap();
    assert_error(
        &s.get(
            &format!("/_matrix/client/v3/rooms/{room}/event/{after_id}"),
            Some(&bob),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    // never a member, not world readable: nothing
    assert!(visible_bodies(&s, &dave, &room).await.is_empty());
    assert_error(
        &s.get(
            &format!("/_matrix/client/v3/rooms/{room}/state"),
            Some(&dave),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );

    // joined: only from one's own join on
    let room = create_room(
        &s,
        &alice,
        json!({"preset": "public_chat", "initial_state": [{"type": "m.room.history_visibility", "content": {"history_visibility": "joined"}}]}),
    )
    .await;
    send_text(&s, &alice, &room, "4", "private past").await;
    join(room.clone(), carol.clone()).await;
    send_text(&s, &alice, &room, "5", "welcome").await;
    assert_eq!(visible_bodies(&s, &carol, &room).await, ["welcome"]);

    // world_readable: anyone may read, member or not
    let room = create_room(
        &s,
        &alice,
        json!({"preset": "public_chat", "initial_state": [{"type": "m.room.history_visibility", "content": {"history_visibility": "world_readable"}}]}),
    )
    .await;
    send_text(&s, &alice, &room, "6", "for all").await;
    assert_eq!(visible_bodies(&s, &dave, &room).await, ["for all"]);
    assert_eq!(
        s.get(
            &format!("/_matrix/client/v3/rooms/{room}/state"),
            Some(&dave)
        )
        .await
        .0,
        200
    );

    // invited: from the invite on
    let room = create_room(
        &s,
        &alice,
        json!({"preset": "private_chat", "initial_state": [{"type": "m.room.history_visibility", "content": {"history_visibility": "invited"}}]}),
    )
    .await;
    send_text(&s, &alice, &room, "7", "secret").await;
    s.post(
        &format!("/_matrix/client/v3/rooms/{room}/invite"),
        Some(&alice),
        json!({"user_id": "@dave:localhost"}),
    )
    .await;
    send_text(&s, &alice, &room, "8", "you are invited").await;
    assert_eq!(visible_bodies(&s, &dave, &room).await, ["you are invited"]);

    // Changes of the setting are seen under the looser of the old and the new one: a
    // newcomer sees the change from shared to joined and the one back to shared, not
    // the one from joined to invited, nor what was said under those two.
    let room = create_room(&s, &alice, json!({"preset": "public_chat"})).await;
    for (i, setting) in ["joined", "invited", "shared"].into_iter().enumerate() {
        let (status, body) = s
            .put(
                &format!("/_matrix/client/v3/rooms/{room}/state/m.room.history_visibility/"),
                Some(&alice),
                json!({"history_visibility": setting}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        send_text(
            &s,
            &alice,
            &room,
            &format!("hv{i}"),
            &format!("under {setting}"),
        )
        .await;
    }
    let (eve, _) = s.register("eve", "pw").await;
    join(room.clone(), eve.clone()).await;
    let (status, page) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&limit=100"),
            Some(&eve),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let seen: Vec<String> = page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| match e["type"].as_str() {
            Some("m.room.history_visibility") => e["content"]["history_visibility"]
                .as_str()
                .map(|v| format!("set {v}")),
            Some("m.room.message") => e["content"]["body"].as_str().map(str::to_owned),
            _ => None,
        })
        .collect();
    assert_eq!(
        seen,
        ["set shared", "set joined", "set shared", "under shared"]
    );
}

#[tokio::test]
async fn messages_filters() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let (bob, _) = s.register("bob", "pw").await;
    let room = create_room(&s, &alice, json!({"preset": "public_chat"})).await;
    s.post(
        &format!("/_matrix/client/v3/rooms/{room}/join"),
        Some(&bob),
        json!({}),
    )
    .await;
    send_text(&s, &alice, &room, "1", "from alice").await;
    send_text(&s, &bob, &room, "2", "from bob").await;
    s.put(
        &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/3"),
        Some(&alice),
        json!({"msgtype": "m.image", "body": "pic", "url": "mxc://localhost/abc"}),
    )
    .await;
    s.put(
        &format!("/_matrix/client/v3/rooms/{room}/send/org.example.custom/4"),
        Some(&alice),
        json!({"x": 1}),
    )
    .await;
    let query = |filter: Value| {
        let s = &s;
        let (room, alice) = (room.clone(), alice.clone());
        async move {
            let encoded: String = url_escape(&filter.to_string());
            let (status, body) = s
                .get(
                    &format!(
                        "/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=10&filter={encoded}"
                    ),
                    Some(&alice),
                )
                .await;
            assert_eq!(status, 200, "{body}");
            body
        }
    };
    let types = |body: &Value| -> Vec<String> {
        body["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    };
    let body = query(json!({"types": ["m.room.message"]})).await;
    assert_eq!(types(&body), ["m.room.message"; 3]);
    let body = query(json!({"types": ["org.example.*"]})).await;
    assert_eq!(types(&body), ["org.example.custom"]);
    let body = query(json!({"not_types": ["m.room.*"]})).await;
    assert_eq!(types(&body), ["org.example.custom"]);
    let body = query(json!({"senders": ["@bob:localhost"], "types": ["m.room.message"]})).await;
    assert_eq!(body["chunk"][0]["content"]["body"], "from bob");
    assert_eq!(body["chunk"].as_array().unwrap().len(), 1);
    let body = query(json!({"not_senders": ["@alice:localhost"]})).await;
    assert!(
        body["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["sender"] == "@bob:localhost"),
        "{body}"
    );
    let body = query(json!({"contains_url": true})).await;
    assert_eq!(body["chunk"].as_array().unwrap().len(), 1);
    assert_eq!(body["chunk"][0]["content"]["body"], "pic");
    // lazy loading: the senders' member events come along
    let body = query(json!({"types": ["m.room.message"], "lazy_load_members": true})).await;
    let members: Vec<&str> = body["state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state_key"].as_str().unwrap())
        .collect();
    assert_eq!(members.len(), 2, "{body}");
    assert!(members.contains(&"@alice:localhost") && members.contains(&"@bob:localhost"));
    let r = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&filter=%7Bnot%20json"),
            Some(&alice),
        )
        .await;
    assert_eq!(r.0, 400, "{}", r.1);
}

fn url_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn public_room_directory() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let (bob, _) = s.register("bob", "pw").await;
    let garden = create_room(&s, &alice, json!({"visibility": "public", "preset": "public_chat", "name": "Garden", "topic": "plants and trees", "room_alias_name": "garden"})).await;
    let kitchen = create_room(
        &s,
        &alice,
        json!({"visibility": "public", "preset": "public_chat", "name": "Kitchen"}),
    )
    .await;
    let _private = create_room(&s, &alice, json!({"name": "Secret"})).await;
    s.post(
        &format!("/_matrix/client/v3/rooms/{kitchen}/join"),
        Some(&bob),
        json!({}),
    )
    .await;

    let (status, body) = s.get("/_matrix/client/v3/publicRooms", None).await;
    assert_eq!(status, 200, "{body}");
    let chunk = body["chunk"].as_array().unwrap();
    assert_eq!(chunk.len(), 2, "private rooms are not listed: {body}");
    assert_eq!(chunk[0]["room_id"], kitchen, "most members first");
    assert_eq!(chunk[0]["num_joined_members"], 2);
    assert_eq!(chunk[1]["name"], "Garden");
    assert_eq!(chunk[1]["topic"], "plants and trees");
    assert_eq!(chunk[1]["canonical_alias"], "#garden:localhost");
    // ruma leaves out the default join rule, "public"
    assert_eq!(chunk[1]["join_rule"].as_str().unwrap_or("public"), "public");
    assert_eq!(body["total_room_count_estimate"], 2);

    // paging
    let (_, first) = s.get("/_matrix/client/v3/publicRooms?limit=1", None).await;
    assert_eq!(first["chunk"].as_array().unwrap().len(), 1);
    let next = first["next_batch"].as_str().unwrap();
    let (_, second) = s
        .get(
            &format!("/_matrix/client/v3/publicRooms?limit=1&since={next}"),
            None,
        )
        .await;
    assert_eq!(second["chunk"][0]["room_id"], garden);
    assert!(second["next_batch"].is_null());
    assert_error(
        &s.get("/_matrix/client/v3/publicRooms?since=zzz", None)
            .await,
        400,
        "M_INVALID_PARAM",
    );

    // search (POST, authenticated)
    let (status, body) = s
        .post(
            "/_matrix/client/v3/publicRooms",
            Some(&bob),
            json!({"filter": {"generic_search_term": "TREES"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["chunk"].as_array().unwrap().len(), 1);
    assert_eq!(body["chunk"][0]["room_id"], garden);
    assert_error(
        &s.post("/_matrix/client/v3/publicRooms", None, json!({}))
            .await,
        401,
        "M_MISSING_TOKEN",
    );

    // listing visibility: read by anyone, changed by room moderators
    let path = format!("/_matrix/client/v3/directory/list/room/{garden}");
    let (_, v) = s.get(&path, None).await;
    assert_eq!(v["visibility"], "public");
    assert_error(
        &s.put(&path, Some(&bob), json!({"visibility": "private"}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_eq!(
        s.put(&path, Some(&alice), json!({"visibility": "private"}))
            .await
            .0,
        200
    );
    let (_, v) = s.get(&path, None).await;
    assert_eq!(v["visibility"], "private");
    let (_, body) = s.get("/_matrix/client/v3/publicRooms", None).await;
    assert_eq!(body["chunk"].as_array().unwrap().len(), 1);
    assert_error(
        &s.get(
            "/_matrix/client/v3/directory/list/room/!nope:localhost",
            None,
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn receipts_read_markers_and_typing() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let (bob, _) = s.register("bob", "pw").await;
    let room = create_room(&s, &alice, json!({})).await;
    let (_, sent) = send_text(&s, &alice, &room, "1", "hi").await;
    let event = sent["event_id"].as_str().unwrap();
    let base = format!("/_matrix/client/v3/rooms/{room}");

    assert_eq!(
        s.post(
            &format!("{base}/receipt/m.read/{event}"),
            Some(&alice),
            json!({})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.post(
            &format!("{base}/receipt/m.read/{event}"),
            Some(&alice),
            json!({"thread_id": "main"})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.post(
            &format!("{base}/receipt/m.read.private/{event}"),
            Some(&alice),
            json!({})
        )
        .await
        .0,
        200
    );
    let mut conn: sqlx::PgConnection = sqlx::ConnectOptions::connect(&s.db).await.unwrap();
    let receipts: Vec<(String, String, String)> = sqlx::query_as(
        "SELECT receipt_type, thread_id, event_id FROM receipts WHERE room_id = $1 AND user_id = '@alice:localhost' ORDER BY 1, 2",
    )
    .bind(&room)
    .fetch_all(&mut conn)
    .await
    .unwrap();
    assert_eq!(
        receipts,
        vec![
            ("m.read".into(), "".into(), event.into()),
            ("m.read".into(), "main".into(), event.into()),
            ("m.read.private".into(), "".into(), event.into())
        ]
    );
    // Receipts only move forward: one for an earlier event than the last is ignored.
    let (_, later) = send_text(&s, &alice, &room, "2", "later").await;
    let later = later["event_id"].as_str().unwrap();
    for target in [later, event] {
        let (status, _) = s
            .post(
                &format!("{base}/receipt/m.read/{target}"),
                Some(&alice),
                json!({}),
            )
            .await;
        assert_eq!(status, 200);
    }
    let now_at: String = sqlx::query_scalar(
        "SELECT event_id FROM receipts WHERE room_id = $1 AND user_id = '@alice:localhost'
           AND receipt_type = 'm.read' AND thread_id = ''",
    )
    .bind(&room)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(now_at, later);
    assert_error(
        &s.post(
            &format!("{base}/receipt/m.read/$nope"),
            Some(&alice),
            json!({}),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.post(
            &format!("{base}/receipt/m.read/{event}"),
            Some(&bob),
            json!({}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.post(
            &format!("{base}/receipt/m.bogus/{event}"),
            Some(&alice),
            json!({}),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );

    // read markers: m.fully_read lands in room account data
    let (status, body) = s
        .post(
            &format!("{base}/read_markers"),
            Some(&alice),
            json!({"m.fully_read": event, "m.read": event}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, marker) = s
        .get(
            &format!(
                "/_matrix/client/v3/user/@alice:localhost/rooms/{room}/account_data/m.fully_read"
            ),
            Some(&alice),
        )
        .await;
    assert_eq!(marker["event_id"], event);

    // typing: own state only, joined rooms only, with a timeout
    let typing = format!("{base}/typing/@alice:localhost");
    assert_eq!(
        s.put(
            &typing,
            Some(&alice),
            json!({"typing": true, "timeout": 30000})
        )
        .await
        .0,
        200
    );
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    assert_eq!(
        s.hs.storage.typing_users(&room, now).await.unwrap(),
        ["@alice:localhost"]
    );
    assert_eq!(
        s.hs.storage
            .typing_users(&room, now + 31_000)
            .await
            .unwrap(),
        Vec::<String>::new()
    );
    assert_eq!(
        s.put(&typing, Some(&alice), json!({"typing": false}))
            .await
            .0,
        200
    );
    assert!(
        s.hs.storage
            .typing_users(&room, now)
            .await
            .unwrap()
            .is_empty()
    );
    assert_error(
        &s.put(
            &typing,
            Some(&bob),
            json!({"typing": true, "timeout": 1000}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    let bobs = format!("{base}/typing/@bob:localhost");
    assert_error(
        &s.put(&bobs, Some(&bob), json!({"typing": true, "timeout": 1000}))
            .await,
        403,
        "M_FORBIDDEN",
    );
    // Without a timeout, typing lasts Synapse's default 30 s.
    assert_eq!(
        s.put(&typing, Some(&alice), json!({"typing": true}))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn knock_report_mutual_rooms_and_timestamps() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let (bob, _) = s.register("bob", "pw").await;

    // knocking: only where the join rule is "knock" and the room version has it
    let room = create_room(
        &s,
        &alice,
        json!({"initial_state": [{"type": "m.room.join_rules", "content": {"join_rule": "knock"}}]}),
    )
    .await;
    let (status, body) = s
        .post(
            &format!("/_matrix/client/v3/knock/{room}"),
            Some(&bob),
            json!({"reason": "let me in"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room_id"], room);
    let (_, members) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/members?membership=knock"),
            Some(&alice),
        )
        .await;
    assert_eq!(
        members["chunk"][0]["state_key"], "@bob:localhost",
        "{members}"
    );
    let invite_only = create_room(&s, &alice, json!({})).await;
    assert_error(
        &s.post(
            &format!("/_matrix/client/v3/knock/{invite_only}"),
            Some(&bob),
            json!({}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    let v6 = create_room(&s, &alice, json!({"room_version": "6"})).await;
    assert_error(
        &s.post(
            &format!("/_matrix/client/v3/knock/{v6}"),
            Some(&bob),
            json!({}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );

    // mutual rooms
    let shared = create_room(&s, &alice, json!({"preset": "public_chat"})).await;
    s.post(
        &format!("/_matrix/client/v3/rooms/{shared}/join"),
        Some(&bob),
        json!({}),
    )
    .await;
    let (status, body) = s
        .get(
            "/_matrix/client/v1/mutual_rooms?user_id=@bob:localhost",
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["joined"], json!([shared]));
    assert_eq!(body["count"], 1);
    assert_error(
        &s.get("/_matrix/client/v1/mutual_rooms", Some(&alice)).await,
        400,
        "M_MISSING_PARAM",
    );

    // reports
    let (_, sent) = send_text(&s, &alice, &shared, "r1", "rude").await;
    let event = sent["event_id"].as_str().unwrap();
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{shared}/report/{event}"),
            Some(&bob),
            json!({"reason": "spam"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_error(
        &s.post(
            &format!("/_matrix/client/v3/rooms/{invite_only}/report/{event}"),
            Some(&bob),
            json!({}),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    assert_eq!(
        s.post(
            &format!("/_matrix/client/v3/rooms/{shared}/report"),
            Some(&bob),
            json!({"reason": "bad room"})
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.post(
            "/_matrix/client/v3/users/@alice:localhost/report",
            Some(&bob),
            json!({"reason": "bad user"})
        )
        .await
        .0,
        200
    );
    assert_error(
        &s.post(
            "/_matrix/client/v3/users/@ghost:localhost/report",
            Some(&bob),
            json!({"reason": "x"}),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    let mut conn: sqlx::PgConnection = sqlx::ConnectOptions::connect(&s.db).await.unwrap();
    let reports: i64 =
        sqlx::query_scalar("SELECT count(*) FROM reports WHERE reporter = '@bob:localhost'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert_eq!(reports, 3);

    // timestamp_to_event
    let (_, first) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{shared}/event/{event}"),
            Some(&alice),
        )
        .await;
    let ts = first["origin_server_ts"].as_i64().unwrap();
    let (status, found) = s
        .get(
            &format!("/_matrix/client/v1/rooms/{shared}/timestamp_to_event?ts={ts}&dir=f"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["origin_server_ts"].as_i64().unwrap(), ts);
    let r = s
        .get(
            &format!(
                "/_matrix/client/v1/rooms/{shared}/timestamp_to_event?ts={}&dir=f",
                ts + 3_600_000
            ),
            Some(&alice),
        )
        .await;
    assert_error(&r, 404, "M_NOT_FOUND");
    let (status, found) = s
        .get(
            &format!(
                "/_matrix/client/v1/rooms/{shared}/timestamp_to_event?ts={}&dir=b",
                ts + 3_600_000
            ),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200);
    assert!(found["origin_server_ts"].as_i64().unwrap() >= ts);
}

#[tokio::test]
async fn room_upgrade() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let (bob, _) = s.register("bob", "pw").await;
    let old = create_room(
        &s,
        &alice,
        json!({"room_version": "10", "preset": "public_chat", "visibility": "public", "name": "Old", "topic": "t",
               "room_alias_name": "hall", "power_level_content_override": {"users": {"@alice:localhost": 100, "@bob:localhost": 20}}}),
    )
    .await;
    s.post(
        &format!("/_matrix/client/v3/rooms/{old}/join"),
        Some(&bob),
        json!({}),
    )
    .await;
    // bob lacks the power to upgrade
    let r = s
        .post(
            &format!("/_matrix/client/v3/rooms/{old}/upgrade"),
            Some(&bob),
            json!({"new_version": "12"}),
        )
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");
    let r = s
        .post(
            &format!("/_matrix/client/v3/rooms/{old}/upgrade"),
            Some(&alice),
            json!({"new_version": "77"}),
        )
        .await;
    assert_error(&r, 400, "M_UNSUPPORTED_ROOM_VERSION");

    let (status, body) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{old}/upgrade"),
            Some(&alice),
            json!({"new_version": "12"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let new = body["replacement_room"].as_str().unwrap().to_owned();
    let get = |room: String, t: &'static str| {
        let s = &s;
        let alice = alice.clone();
        async move {
            s.get(
                &format!("/_matrix/client/v3/rooms/{room}/state/{t}"),
                Some(&alice),
            )
            .await
            .1
        }
    };
    assert_eq!(
        get(old.clone(), "m.room.tombstone").await["replacement_room"],
        new.as_str()
    );
    let create = get(new.clone(), "m.room.create").await;
    assert_eq!(create["predecessor"]["room_id"], old.as_str());
    assert_eq!(create["room_version"], "12");
    assert_eq!(get(new.clone(), "m.room.name").await["name"], "Old");
    assert_eq!(get(new.clone(), "m.room.topic").await["topic"], "t");
    let pl = get(new.clone(), "m.room.power_levels").await;
    assert_eq!(pl["users"]["@bob:localhost"], 20, "{pl}");
    assert!(
        pl["users"].get("@alice:localhost").is_none(),
        "the v12 creator is not listed: {pl}"
    );
    // the alias moved, the old room is quiet
    let (_, alias) = s
        .get("/_matrix/client/v3/directory/room/%23hall:localhost", None)
        .await;
    assert_eq!(alias["room_id"], new.as_str());
    let old_pl = get(old.clone(), "m.room.power_levels").await;
    assert_eq!(old_pl["events_default"], 50);
    assert_error(
        &send_text(&s, &bob, &old, "q", "still here?")
            .await
            .into_result(),
        403,
        "M_FORBIDDEN",
    );
    let (_, listing) = s.get("/_matrix/client/v3/publicRooms", None).await;
    let listed: Vec<&str> = listing["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["room_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [new.as_str()]);
}

#[tokio::test]
async fn relations_threads_and_bundled_aggregations() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let (bob, _) = s.register("bob", "pw").await;
    let room = create_room(&s, &alice, json!({"preset": "public_chat"})).await;
    s.post(
        &format!("/_matrix/client/v3/rooms/{room}/join"),
        Some(&bob),
        json!({}),
    )
    .await;
    let send = |token: String, txn: &'static str, content: Value| {
        let s = &s;
        let room = room.clone();
        async move {
            let (status, body) = s
                .put(
                    &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
                    Some(&token),
                    content,
                )
                .await;
            assert_eq!(status, 200, "{body}");
            body["event_id"].as_str().unwrap().to_owned()
        }
    };
    let root = send(
        alice.clone(),
        "root",
        json!({"msgtype": "m.text", "body": "root"}),
    )
    .await;
    let reply1 = send(bob.clone(), "r1", json!({"msgtype": "m.text", "body": "reply 1", "m.relates_to": {"rel_type": "m.thread", "event_id": root}})).await;
    let reply2 = send(alice.clone(), "r2", json!({"msgtype": "m.text", "body": "reply 2", "m.relates_to": {"rel_type": "m.thread", "event_id": root}})).await;
    let edit = send(alice.clone(), "e1", json!({"msgtype": "m.text", "body": "* root!", "m.new_content": {"msgtype": "m.text", "body": "root!"}, "m.relates_to": {"rel_type": "m.replace", "event_id": root}})).await;
    // an edit by someone else does not count
    send(bob.clone(), "e2", json!({"msgtype": "m.text", "body": "* hijack", "m.new_content": {"msgtype": "m.text", "body": "hijack"}, "m.relates_to": {"rel_type": "m.replace", "event_id": root}})).await;
    let reference = send(bob.clone(), "ref", json!({"msgtype": "m.text", "body": "see above", "m.relates_to": {"rel_type": "m.reference", "event_id": root}})).await;
    // a reply to a thread reply, for recursion
    let nested = send(bob.clone(), "n1", json!({"msgtype": "m.text", "body": "+1", "m.relates_to": {"rel_type": "m.reference", "event_id": reply1}})).await;

    let base = format!("/_matrix/client/v1/rooms/{room}/relations/{root}");
    let (status, body) = s.get(&base, Some(&alice)).await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids.len(),
        5,
        "two replies, two edits, one reference: {body}"
    );
    assert_eq!(ids[0], reference, "newest first");
    let (_, body) = s.get(&format!("{base}/m.thread?dir=f"), Some(&alice)).await;
    let ids: Vec<&str> = body["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [reply1.as_str(), reply2.as_str()]);
    let (_, body) = s
        .get(
            &format!("{base}/m.thread/m.room.message?limit=1"),
            Some(&alice),
        )
        .await;
    assert_eq!(body["chunk"].as_array().unwrap().len(), 1);
    let next = body["next_batch"].as_str().unwrap();
    let (_, body) = s
        .get(
            &format!("{base}/m.thread/m.room.message?limit=1&from={next}"),
            Some(&alice),
        )
        .await;
    assert_eq!(body["chunk"][0]["event_id"], reply1.as_str());
    let (_, body) = s.get(&format!("{base}?recurse=true"), Some(&alice)).await;
    let ids: Vec<&str> = body["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&nested.as_str()),
        "recursion reaches relations of relations: {ids:?}"
    );
    assert_error(
        &s.get(
            &format!("/_matrix/client/v1/rooms/{room}/relations/$nope"),
            Some(&alice),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );

    // bundled aggregations on the root
    let (_, event) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/event/{root}"),
            Some(&bob),
        )
        .await;
    let rel = &event["unsigned"]["m.relations"];
    assert_eq!(rel["m.thread"]["count"], 2, "{event}");
    assert_eq!(rel["m.thread"]["latest_event"]["event_id"], reply2.as_str());
    assert_eq!(rel["m.thread"]["current_user_participated"], true);
    assert_eq!(rel["m.replace"]["event_id"], edit.as_str());
    assert_eq!(
        rel["m.reference"]["chunk"],
        json!([{"event_id": reference}])
    );

    // threads list
    let other_root = send(
        bob.clone(),
        "root2",
        json!({"msgtype": "m.text", "body": "other"}),
    )
    .await;
    send(bob.clone(), "r3", json!({"msgtype": "m.text", "body": "x", "m.relates_to": {"rel_type": "m.thread", "event_id": other_root}})).await;
    let (status, body) = s
        .get(
            &format!("/_matrix/client/v1/rooms/{room}/threads"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let roots: Vec<&str> = body["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        roots,
        [other_root.as_str(), root.as_str()],
        "latest activity first"
    );
    let (_, body) = s
        .get(
            &format!("/_matrix/client/v1/rooms/{room}/threads?include=participated"),
            Some(&alice),
        )
        .await;
    let roots: Vec<&str> = body["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(roots, [root.as_str()]);
    let (_, body) = s
        .get(
            &format!("/_matrix/client/v1/rooms/{room}/threads?limit=1"),
            Some(&alice),
        )
        .await;
    let next = body["next_batch"].as_str().unwrap();
    let (_, body) = s
        .get(
            &format!("/_matrix/client/v1/rooms/{room}/threads?limit=1&from={next}"),
            Some(&alice),
        )
        .await;
    assert_eq!(body["chunk"][0]["event_id"], root.as_str());
}

#[tokio::test]
async fn room_summary_and_space_hierarchy() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let (bob, _) = s.register("bob", "pw").await;
    let space = create_room(
        &s,
        &alice,
        json!({"preset": "public_chat", "name": "Space", "creation_content": {"type": "m.space"}}),
    )
    .await;
    let lobby = create_room(
        &s,
        &alice,
        json!({"preset": "public_chat", "name": "Lobby"}),
    )
    .await;
    let secret = create_room(&s, &alice, json!({"name": "Secret"})).await;
    let sub = create_room(
        &s,
        &alice,
        json!({"preset": "public_chat", "name": "Sub", "creation_content": {"type": "m.space"}}),
    )
    .await;
    let deep = create_room(&s, &alice, json!({"preset": "public_chat", "name": "Deep"})).await;
    let child = |parent: String, child: String, content: Value| {
        let s = &s;
        let alice = alice.clone();
        async move {
            let (status, body) = s
                .put(
                    &format!("/_matrix/client/v3/rooms/{parent}/state/m.space.child/{child}"),
                    Some(&alice),
                    content,
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }
    };
    child(
        space.clone(),
        lobby.clone(),
        json!({"via": ["localhost"], "suggested": true, "order": "a"}),
    )
    .await;
    child(
        space.clone(),
        secret.clone(),
        json!({"via": ["localhost"], "order": "b"}),
    )
    .await;
    child(
        space.clone(),
        sub.clone(),
        json!({"via": ["localhost"], "order": "c"}),
    )
    .await;
    child(sub.clone(), deep.clone(), json!({"via": ["localhost"]})).await;

    // summary
    let (status, body) = s
        .get(
            &format!("/_matrix/client/v1/room_summary/{lobby}"),
            Some(&bob),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "Lobby");
    assert_eq!(body["num_joined_members"], 1);
    assert_eq!(body["room_version"], "12");
    let (_, body) = s
        .get(
            &format!("/_matrix/client/v1/room_summary/{space}"),
            Some(&alice),
        )
        .await;
    assert_eq!(body["room_type"], "m.space");
    assert_eq!(body["membership"], "join");
    // private rooms are not summarised for outsiders
    assert_error(
        &s.get(
            &format!("/_matrix/client/v1/room_summary/{secret}"),
            Some(&bob),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );

    // hierarchy, as bob: the secret room is left out
    let (status, body) = s
        .get(
            &format!("/_matrix/client/v1/rooms/{space}/hierarchy"),
            Some(&bob),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let names: Vec<&str> = body["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Space", "Lobby", "Sub", "Deep"]);
    assert_eq!(
        body["rooms"][0]["children_state"].as_array().unwrap().len(),
        3
    );
    // as alice, everything
    let (_, body) = s
        .get(
            &format!("/_matrix/client/v1/rooms/{space}/hierarchy"),
            Some(&alice),
        )
        .await;
    let names: Vec<&str> = body["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Space", "Lobby", "Secret", "Sub", "Deep"]);
    // max_depth, suggested_only, paging
    let (_, body) = s
        .get(
            &format!("/_matrix/client/v1/rooms/{space}/hierarchy?max_depth=1"),
            Some(&alice),
        )
        .await;
    assert_eq!(body["rooms"].as_array().unwrap().len(), 4);
    let (_, body) = s
        .get(
            &format!("/_matrix/client/v1/rooms/{space}/hierarchy?suggested_only=true"),
            Some(&alice),
        )
        .await;
    let names: Vec<&str> = body["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Space", "Lobby"]);
    let (_, first) = s
        .get(
            &format!("/_matrix/client/v1/rooms/{space}/hierarchy?limit=2"),
            Some(&alice),
        )
        .await;
    assert_eq!(first["rooms"].as_array().unwrap().len(), 2);
    let next = first["next_batch"].as_str().unwrap();
    let (_, second) = s
        .get(
            &format!("/_matrix/client/v1/rooms/{space}/hierarchy?limit=2&from={next}"),
            Some(&alice),
        )
        .await;
    assert_eq!(second["rooms"][0]["name"], "Secret");
    // a private space is closed to outsiders
    assert_error(
        &s.get(
            &format!("/_matrix/client/v1/rooms/{secret}/hierarchy"),
            Some(&bob),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
}

/// Auth rules that differ between room versions.
#[tokio::test]
async fn version_specific_auth_rules() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let (bob, _) = s.register("bob", "pw").await;
    let (carol, _) = s.register("carol", "pw").await;

    // restricted joins (v8+): members of an allowed room may join, others may not
    let allowed = create_room(&s, &alice, json!({"preset": "public_chat"})).await;
    s.post(
        &format!("/_matrix/client/v3/rooms/{allowed}/join"),
        Some(&bob),
        json!({}),
    )
    .await;
    for version in ["8", "10", "12"] {
        let room = create_room(
            &s,
            &alice,
            json!({"room_version": version, "initial_state": [{"type": "m.room.join_rules", "content":
                {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": allowed}]}}]}),
        )
        .await;
        let (status, body) = s
            .post(
                &format!("/_matrix/client/v3/rooms/{room}/join"),
                Some(&bob),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "v{version}: {body}");
        let (_, member) = s
            .get(
                &format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/@bob:localhost"),
                Some(&alice),
            )
            .await;
        assert_eq!(
            member["join_authorised_via_users_server"],
            "@alice:localhost"
        );
        let r = s
            .post(
                &format!("/_matrix/client/v3/rooms/{room}/join"),
                Some(&carol),
                json!({}),
            )
            .await;
        assert_error(&r, 403, "M_FORBIDDEN");
    }
    // before v8 "restricted" means nothing: treated as invite-only by the auth rules
    let v7 = create_room(
        &s,
        &alice,
        json!({"room_version": "7", "initial_state": [{"type": "m.room.join_rules", "content":
            {"join_rule": "restricted", "allow": [{"type": "m.room_membership", "room_id": allowed}]}}]}),
    )
    .await;
    assert_error(
        &s.post(
            &format!("/_matrix/client/v3/rooms/{v7}/join"),
            Some(&bob),
            json!({}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );

    // integer power levels (v10+): string values are refused; before v10 they are accepted
    for (version, ok) in [("9", true), ("10", false), ("11", false)] {
        let room = create_room(&s, &alice, json!({"room_version": version})).await;
        let r = s
            .put(
                &format!("/_matrix/client/v3/rooms/{room}/state/m.room.power_levels"),
                Some(&alice),
                json!({"users": {"@alice:localhost": 100}, "events_default": "10"}),
            )
            .await;
        assert_eq!(r.0 == 200, ok, "v{version}: {}", r.1);
    }

    // v12 creators: unlimited power, not demotable; in v11 the creator is an ordinary 100
    let v12 = create_room(
        &s,
        &alice,
        json!({"room_version": "12", "preset": "public_chat"}),
    )
    .await;
    s.post(
        &format!("/_matrix/client/v3/rooms/{v12}/join"),
        Some(&bob),
        json!({}),
    )
    .await;
    let r = s
        .put(
            &format!("/_matrix/client/v3/rooms/{v12}/state/m.room.power_levels"),
            Some(&alice),
            json!({"users": {"@alice:localhost": 0, "@bob:localhost": 100}}),
        )
        .await;
    // a creator cannot be listed in v12 power levels
    assert_error(&r, 403, "M_FORBIDDEN");
    assert!(
        r.1["error"].as_str().unwrap().contains("creator"),
        "{}",
        r.1
    );
    let r = s
        .put(
            &format!("/_matrix/client/v3/rooms/{v12}/state/m.room.power_levels"),
            Some(&alice),
            json!({"users": {"@bob:localhost": 100}}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    // bob (100) still cannot kick the creator
    let r = s
        .post(
            &format!("/_matrix/client/v3/rooms/{v12}/kick"),
            Some(&bob),
            json!({"user_id": "@alice:localhost"}),
        )
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");
    let v11 = create_room(
        &s,
        &alice,
        json!({"room_version": "11", "preset": "public_chat"}),
    )
    .await;
    s.post(
        &format!("/_matrix/client/v3/rooms/{v11}/join"),
        Some(&bob),
        json!({}),
    )
    .await;
    s.put(
        &format!("/_matrix/client/v3/rooms/{v11}/state/m.room.power_levels"),
        Some(&alice),
        json!({"users": {"@alice:localhost": 100, "@bob:localhost": 100}}),
    )
    .await;
    // in v11 the creator is only as strong as their power level: equal power cannot kick
    let r = s
        .post(
            &format!("/_matrix/client/v3/rooms/{v11}/kick"),
            Some(&bob),
            json!({"user_id": "@alice:localhost"}),
        )
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn state_for_former_members_and_members_at() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let (bob, _) = s.register("bob", "pw").await;
    let (carol, _) = s.register("carol", "pw").await;
    let room = create_room(
        &s,
        &alice,
        json!({"preset": "public_chat", "name": "First"}),
    )
    .await;
    let base = format!("/_matrix/client/v3/rooms/{room}");
    s.post(&format!("{base}/join"), Some(&bob), json!({})).await;
    // a position before carol joins
    let (_, page) = s
        .get(&format!("{base}/messages?dir=b&limit=1"), Some(&alice))
        .await;
    let before_carol = page["start"].as_str().unwrap().to_owned();
    s.post(&format!("{base}/join"), Some(&carol), json!({}))
        .await;
    s.post(&format!("{base}/leave"), Some(&bob), json!({}))
        .await;
    s.put(
        &format!("{base}/state/m.room.name"),
        Some(&alice),
        json!({"name": "Second"}),
    )
    .await;

    // bob left: he sees the state as it was when he left
    let (status, name) = s
        .get(&format!("{base}/state/m.room.name"), Some(&bob))
        .await;
    assert_eq!(status, 200, "{name}");
    assert_eq!(name["name"], "First");
    let (status, state) = s.get(&format!("{base}/state"), Some(&bob)).await;
    assert_eq!(status, 200);
    let bob_member = state
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["state_key"] == "@bob:localhost")
        .unwrap();
    assert_eq!(bob_member["content"]["membership"], "leave");
    // alice sees the current state
    assert_eq!(
        s.get(&format!("{base}/state/m.room.name"), Some(&alice))
            .await
            .1["name"],
        "Second"
    );

    // members at a past position
    let (status, members) = s
        .get(&format!("{base}/members?at={before_carol}"), Some(&alice))
        .await;
    assert_eq!(status, 200, "{members}");
    let users: Vec<&str> = members["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state_key"].as_str().unwrap())
        .collect();
    assert!(
        users.contains(&"@bob:localhost") && !users.contains(&"@carol:localhost"),
        "{users:?}"
    );
    let (_, members) = s
        .get(
            &format!("{base}/members?not_membership=leave"),
            Some(&alice),
        )
        .await;
    let users: Vec<&str> = members["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["state_key"].as_str().unwrap())
        .collect();
    assert!(
        users.contains(&"@carol:localhost") && !users.contains(&"@bob:localhost"),
        "{users:?}"
    );
    assert_error(
        &s.get(&format!("{base}/members?at=zzz"), Some(&alice)).await,
        400,
        "M_INVALID_PARAM",
    );
}

#[tokio::test]
async fn canonical_alias_must_point_to_the_room() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let room = create_room(&s, &alice, json!({"room_alias_name": "mine"})).await;
    // #theirs points at another room
    create_room(&s, &alice, json!({"room_alias_name": "theirs"})).await;
    let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.canonical_alias");
    assert_eq!(
        s.put(&path, Some(&alice), json!({"alias": "#mine:localhost"}))
            .await
            .0,
        200
    );
    let r = s
        .put(&path, Some(&alice), json!({"alias": "#theirs:localhost"}))
        .await;
    assert_error(&r, 400, "M_BAD_ALIAS");
    let r = s
        .put(
            &path,
            Some(&alice),
            json!({"alias": "#mine:localhost", "alt_aliases": ["#nowhere:localhost"]}),
        )
        .await;
    assert_error(&r, 400, "M_BAD_ALIAS");
    let r = s
        .put(&path, Some(&alice), json!({"alias": "not an alias"}))
        .await;
    assert_error(&r, 400, "M_INVALID_PARAM");
    // an empty content removes the canonical alias
    assert_eq!(s.put(&path, Some(&alice), json!({})).await.0, 200);
}

/// Unknown rooms, non-members and bad input on the room endpoints that have no error test
/// above.
#[tokio::test]
async fn room_endpoint_error_paths() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let (bob, _) = s.register("bob", "pw").await;
    let room = create_room(&s, &alice, json!({})).await;
    let (_, sent) = send_text(&s, &alice, &room, "1", "hi").await;
    let event = sent["event_id"].as_str().unwrap();
    let nope = "!nope:localhost";

    // unknown rooms
    for path in [
        format!("/_matrix/client/v1/rooms/{nope}/threads"),
        format!("/_matrix/client/v1/rooms/{nope}/relations/{event}"),
        format!("/_matrix/client/v1/rooms/{nope}/hierarchy"),
        format!("/_matrix/client/v1/room_summary/{nope}"),
        format!("/_matrix/client/v3/rooms/{nope}/messages?dir=b"),
        format!("/_matrix/client/v3/rooms/{nope}/members"),
        format!("/_matrix/client/v3/rooms/{nope}/context/{event}"),
        format!("/_matrix/client/v1/rooms/{nope}/timestamp_to_event?ts=1&dir=f"),
    ] {
        assert_error(&s.get(&path, Some(&alice)).await, 404, "M_NOT_FOUND");
    }
    for (path, body) in [
        (
            format!("/_matrix/client/v3/rooms/{nope}/upgrade"),
            json!({"new_version": "12"}),
        ),
        (
            format!("/_matrix/client/v3/rooms/{nope}/receipt/m.read/{event}"),
            json!({}),
        ),
        (
            format!("/_matrix/client/v3/rooms/{nope}/read_markers"),
            json!({"m.fully_read": event}),
        ),
        (
            format!("/_matrix/client/v3/rooms/{nope}/invite"),
            json!({"user_id": "@bob:localhost"}),
        ),
        (
            format!("/_matrix/client/v3/rooms/{nope}/report"),
            json!({"reason": "x"}),
        ),
    ] {
        assert_error(&s.post(&path, Some(&alice), body).await, 404, "M_NOT_FOUND");
    }
    let r = s
        .put(
            &format!("/_matrix/client/v3/rooms/{nope}/typing/@alice:localhost"),
            Some(&alice),
            json!({"typing": false}),
        )
        .await;
    assert_error(&r, 404, "M_NOT_FOUND");

    // a non-member of a private room
    assert_error(
        &s.get(
            &format!("/_matrix/client/v1/rooms/{room}/relations/{event}"),
            Some(&bob),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.get(
            &format!("/_matrix/client/v1/room_summary/{room}"),
            Some(&bob),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    assert!(visible_bodies(&s, &bob, &room).await.is_empty());
    let r = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/read_markers"),
            Some(&bob),
            json!({"m.fully_read": event}),
        )
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");
    let r = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic"),
            Some(&bob),
            json!({"topic": "mine"}),
        )
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");

    // missing and unknown tokens, bad JSON
    assert_error(
        &s.get("/_matrix/client/v3/joined_rooms", None).await,
        401,
        "M_MISSING_TOKEN",
    );
    assert_error(
        &s.get(
            &format!("/_matrix/client/v3/rooms/{room}/state"),
            Some("axa_bogus"),
        )
        .await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    let res = s
        .http
        .put(format!(
            "{}/_matrix/client/v3/rooms/{room}/send/m.room.message/bad",
            s.base
        ))
        .bearer_auth(&alice)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    assert_eq!(res.json::<Value>().await.unwrap()["errcode"], "M_NOT_JSON");
    let r = s
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            json!({"preset": 7}),
        )
        .await;
    assert_error(&r, 400, "M_BAD_JSON");
    let r = s
        .get("/_matrix/client/v3/rooms/not-a-room/state", Some(&alice))
        .await;
    assert_error(&r, 400, "M_INVALID_PARAM");
}
