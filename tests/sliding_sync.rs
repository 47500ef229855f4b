//! Simplified sliding sync (MSC4186) over HTTP: request and response shapes, ordering by
//! bump stamp, incremental responses, positions (retry, unknown, expired), long-polling,
//! filters, extensions, and the error paths.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, assert_error};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SS: &str = "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync";

async fn ss(
    s: &TestServer,
    token: &str,
    pos: Option<&str>,
    timeout_ms: u64,
    body: &Value,
) -> (StatusCode, Value) {
    let mut path = format!("{SS}?timeout={timeout_ms}");
    if let Some(p) = pos {
        path.push_str(&format!("&pos={p}"));
    }
    s.post(&path, Some(token), body.clone()).await
}

async fn ok(s: &TestServer, token: &str, pos: Option<&str>, body: &Value) -> Value {
    let (status, res) = ss(s, token, pos, 0, body).await;
    assert_eq!(status, 200, "{res}");
    res
}

async fn create_room(s: &TestServer, token: &str, body: Value) -> String {
    s.create_room(token, body).await
}

async fn join(s: &TestServer, token: &str, room: &str) {
    s.join(token, room).await
}

fn room_list(range_end: u64, timeline_limit: u64) -> Value {
    json!({
        "conn_id": "room-list",
        "lists": { "all": {
            "ranges": [[0, range_end]],
            "timeline_limit": timeline_limit,
            "required_state": [
                ["m.room.name", ""], ["m.room.create", ""],
                ["m.room.member", "$LAZY"], ["m.room.member", "$ME"]
            ]
        }}
    })
}

fn texts(room: &Value) -> Vec<String> {
    room["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

fn ordered(rooms: &Value) -> Vec<String> {
    let mut ids: Vec<(i64, String)> = rooms
        .as_object()
        .unwrap()
        .iter()
        .map(|(id, r)| (r["bump_stamp"].as_i64().unwrap(), id.clone()))
        .collect();
    ids.sort_by(|a, b| b.cmp(a));
    ids.into_iter().map(|(_, id)| id).collect()
}

#[tokio::test]
async fn lists_order_incremental_and_positions() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    // Three rooms; messages so that the oldest room is the most recent.
    let a = create_room(&s, &alice, json!({"name": "Room A"})).await;
    let b = create_room(&s, &alice, json!({"name": "Room B"})).await;
    let c = create_room(&s, &alice, json!({})).await;
    let (st, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{c}/invite"),
            Some(&alice),
            json!({"user_id": "@bob:localhost"}),
        )
        .await;
    assert_eq!(st, 200);
    join(&s, &bob, &c).await;
    s.send_message(&bob, &c, "c1", json!({"msgtype": "m.text", "body": "in c"}))
        .await;
    s.send_message(
        &alice,
        &a,
        "a1",
        json!({"msgtype": "m.text", "body": "a one"}),
    )
    .await;
    s.send_message(
        &alice,
        &a,
        "a2",
        json!({"msgtype": "m.text", "body": "a two"}),
    )
    .await;

    let first = ok(&s, &alice, None, &room_list(1, 1)).await;
    assert_eq!(first["lists"]["all"]["count"], 3, "{first}");
    let rooms = &first["rooms"];
    assert_eq!(
        ordered(rooms),
        vec![a.clone(), c.clone()],
        "the two most recent"
    );
    let ra = &rooms[&a];
    assert_eq!(ra["initial"], true);
    assert_eq!(ra["name"], "Room A");
    assert_eq!(texts(ra), vec!["a two"]);
    assert_eq!(ra["limited"], true);
    assert!(ra["prev_batch"].is_string());
    assert_eq!(ra["joined_count"], 1);
    let state_types: Vec<&str> = ra["required_state"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(state_types.contains(&"m.room.create") && state_types.contains(&"m.room.name"));
    assert!(
        !state_types.contains(&"m.room.power_levels"),
        "only the required state: {state_types:?}"
    );
    // The unnamed room has heroes and both members counted; $LAZY brought bob's member.
    let rc = &rooms[&c];
    assert!(rc.get("name").is_none());
    assert_eq!(rc["heroes"][0]["user_id"], "@bob:localhost", "{rc}");
    assert_eq!(rc["joined_count"], 2);
    assert!(
        rc["required_state"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.member" && e["state_key"] == "@bob:localhost")
    );
    let pos1 = first["pos"].as_str().unwrap().to_owned();

    // A message in B moves it to the top: B comes whole (never sent), nothing else.
    s.send_message(
        &alice,
        &b,
        "b1",
        json!({"msgtype": "m.text", "body": "b one"}),
    )
    .await;
    let second = ok(&s, &alice, Some(&pos1), &room_list(1, 1)).await;
    let keys: Vec<&String> = second["rooms"].as_object().unwrap().keys().collect();
    assert_eq!(keys, vec![&b], "{second}");
    assert_eq!(second["rooms"][&b]["initial"], true);
    assert!(second["rooms"][&b]["bump_stamp"].as_i64() > ra["bump_stamp"].as_i64());
    let pos2 = second["pos"].as_str().unwrap().to_owned();

    // A message in a room the client has: only the new event, live, not initial.
    s.send_message(
        &alice,
        &b,
        "b2",
        json!({"msgtype": "m.text", "body": "b two"}),
    )
    .await;
    let third = ok(&s, &alice, Some(&pos2), &room_list(1, 5)).await;
    // A changed timeline_limit is another room config: the room comes whole again.
    assert_eq!(third["rooms"][&b]["initial"], true);
    assert_eq!(texts(&third["rooms"][&b]), vec!["b one", "b two"]);
    let pos3 = third["pos"].as_str().unwrap().to_owned();
    s.send_message(
        &alice,
        &b,
        "b3",
        json!({"msgtype": "m.text", "body": "b three"}),
    )
    .await;
    let fourth = ok(&s, &alice, Some(&pos3), &room_list(1, 5)).await;
    let rb = &fourth["rooms"][&b];
    assert!(rb.get("initial").is_none(), "{rb}");
    assert_eq!(texts(rb), vec!["b three"]);
    assert_eq!(rb["num_live"], 1);
    assert_eq!(rb["limited"], false);
    let pos4 = fourth["pos"].as_str().unwrap().to_owned();

    // A lost response: retrying pos3 gives the same room data again.
    let retry = ok(&s, &alice, Some(&pos3), &room_list(1, 5)).await;
    assert_eq!(texts(&retry["rooms"][&b]), vec!["b three"]);
    // ... and pos4, never acknowledged, is gone; the retry's new position works.
    assert_error(
        &ss(&s, &alice, Some(&pos4), 0, &room_list(1, 5)).await,
        400,
        "M_UNKNOWN_POS",
    );
    let pos5 = retry["pos"].as_str().unwrap().to_owned();
    // Positions before the one used are gone too.
    assert_error(
        &ss(&s, &alice, Some(&pos1), 0, &room_list(1, 5)).await,
        400,
        "M_UNKNOWN_POS",
    );
    // Unknown, malformed, or another connection's positions.
    assert_error(
        &ss(&s, &alice, Some("999999"), 0, &room_list(1, 5)).await,
        400,
        "M_UNKNOWN_POS",
    );
    assert_error(
        &ss(&s, &alice, Some("abc"), 0, &room_list(1, 5)).await,
        400,
        "M_UNKNOWN_POS",
    );
    let mut other_conn = room_list(1, 5);
    other_conn["conn_id"] = json!("other");
    assert_error(
        &ss(&s, &alice, Some(&pos5), 0, &other_conn).await,
        400,
        "M_UNKNOWN_POS",
    );
    assert_error(
        &ss(&s, &bob, Some(&pos5), 0, &room_list(1, 5)).await,
        400,
        "M_UNKNOWN_POS",
    );
    // An expired connection: the client starts over.
    s.sql("UPDATE sliding_sync_connections SET last_used_ts = 0")
        .await;
    s.hs.storage.prune_sliding_connections(1).await.unwrap();
    assert_error(
        &ss(&s, &alice, Some(&pos5), 0, &room_list(1, 5)).await,
        400,
        "M_UNKNOWN_POS",
    );
    let again = ok(&s, &alice, None, &room_list(1, 5)).await;
    assert_eq!(again["rooms"].as_object().unwrap().len(), 2);
}

#[tokio::test]
async fn long_poll_wakes_on_a_message_and_times_out_empty() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let room = create_room(&s, &alice, json!({})).await;
    let first = ok(&s, &alice, None, &room_list(9, 3)).await;
    let pos = first["pos"].as_str().unwrap().to_owned();

    // Nothing new: waits out the timeout, then answers with nothing.
    let started = Instant::now();
    let (status, empty) = ss(&s, &alice, Some(&pos), 500, &room_list(9, 3)).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() >= Duration::from_millis(450));
    assert!(empty["rooms"].as_object().unwrap().is_empty(), "{empty}");
    let pos = empty["pos"].as_str().unwrap().to_owned();

    // A message sent during the wait ends it.
    let sender = {
        let base = s.base.clone();
        let token = alice.clone();
        let room = room.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            reqwest::Client::new()
                .put(format!(
                    "{base}/_matrix/client/v3/rooms/{room}/send/m.room.message/t1"
                ))
                .bearer_auth(token)
                .json(&json!({"msgtype": "m.text", "body": "wake up"}))
                .send()
                .await
                .unwrap()
        })
    };
    let started = Instant::now();
    let (status, woke) = ss(&s, &alice, Some(&pos), 20_000, &room_list(9, 3)).await;
    assert_eq!(status, 200);
    assert!(started.elapsed() < Duration::from_secs(10));
    assert_eq!(texts(&woke["rooms"][&room]), vec!["wake up"], "{woke}");
    assert_eq!(sender.await.unwrap().status(), 200);
}

#[tokio::test]
async fn filters_invites_and_subscriptions() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let space = create_room(
        &s,
        &alice,
        json!({"name": "Space", "creation_content": {"type": "m.space"}}),
    )
    .await;
    let child = create_room(&s, &alice, json!({"name": "Child"})).await;
    let (st, _) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{space}/state/m.space.child/{child}"),
            Some(&alice),
            json!({"via": ["localhost"]}),
        )
        .await;
    assert_eq!(st, 200);
    let encrypted = create_room(
        &s,
        &alice,
        json!({"initial_state": [{"type": "m.room.encryption", "state_key": "", "content": {"algorithm": "m.megolm.v1.aes-sha2"}}]}),
    )
    .await;
    let dm = create_room(
        &s,
        &bob,
        json!({"is_direct": true, "invite": ["@alice:localhost"]}),
    )
    .await;
    let (st, _) = s
        .put(
            "/_matrix/client/v3/user/@alice:localhost/account_data/m.direct",
            Some(&alice),
            json!({"@bob:localhost": [dm]}),
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .put(
            &format!("/_matrix/client/v3/user/@alice:localhost/rooms/{child}/tags/m.favourite"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(st, 200);

    let list =
        |filters: Value| json!({"ranges": [[0, 20]], "timeline_limit": 0, "filters": filters});
    let body = json!({
        "lists": {
            "all": list(json!({})),
            "invites": list(json!({"is_invite": true})),
            "dms": list(json!({"is_dm": true})),
            "spaces": list(json!({"room_types": ["m.space"]})),
            "not_spaces": list(json!({"not_room_types": ["m.space"]})),
            "in_space": list(json!({"spaces": [space]})),
            "favourites": list(json!({"tags": ["m.favourite"]})),
            "not_favourites": list(json!({"not_tags": ["m.favourite"]})),
            "encrypted": list(json!({"is_encrypted": true})),
        }
    });
    let res = ok(&s, &alice, None, &body).await;
    let count = |name: &str| res["lists"][name]["count"].as_u64().unwrap();
    assert_eq!(count("all"), 4, "{res}");
    assert_eq!(count("invites"), 1);
    assert_eq!(count("dms"), 1);
    assert_eq!(count("spaces"), 1);
    assert_eq!(count("not_spaces"), 3);
    assert_eq!(count("in_space"), 1);
    assert_eq!(count("favourites"), 1);
    assert_eq!(count("not_favourites"), 3);
    assert_eq!(count("encrypted"), 1);
    assert_eq!(res["rooms"][&encrypted]["initial"], true);
    // The invite comes with its stripped state and no timeline.
    let invite = &res["rooms"][&dm];
    assert_eq!(invite["initial"], true);
    assert_eq!(invite["is_dm"], true);
    assert!(
        invite["invite_state"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.member" && e["state_key"] == "@alice:localhost")
    );

    // A subscription to one room, with its own config; rooms not theirs are ignored.
    let (_, bob_room) = ((), create_room(&s, &bob, json!({"name": "Bob only"})).await);
    let body = json!({
        "room_subscriptions": {
            child.clone(): {"timeline_limit": 5, "required_state": [["*", "*"]]},
            bob_room.clone(): {"timeline_limit": 5},
        }
    });
    let res = ok(&s, &alice, None, &body).await;
    let rooms = res["rooms"].as_object().unwrap();
    assert_eq!(rooms.keys().collect::<Vec<_>>(), vec![&child], "{res}");
    assert!(
        rooms[&child]["required_state"].as_array().unwrap().len() >= 5,
        "all state"
    );
}

#[tokio::test]
async fn extensions_to_device_e2ee_account_data_receipts_typing() {
    let s = TestServer::start().await;
    let (alice, alice_dev) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let room = create_room(&s, &alice, json!({"invite": ["@bob:localhost"]})).await;
    join(&s, &bob, &room).await;
    let (bob2, _) = s.login_ok("bob", "password-bob").await;
    let event = s
        .send_message(
            &bob,
            &room,
            "m1",
            json!({"msgtype": "m.text", "body": "hi"}),
        )
        .await;
    let (st, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event}"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .put(
            "/_matrix/client/v3/sendToDevice/m.test/t1",
            Some(&bob),
            json!({"messages": {"@alice:localhost": {alice_dev.clone(): {"n": 1}}}}),
        )
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .put(
            "/_matrix/client/v3/user/@alice:localhost/account_data/m.test",
            Some(&alice),
            json!({"x": 1}),
        )
        .await;
    assert_eq!(st, 200);

    let body = |since: Option<&str>| {
        json!({
            "conn_id": "main",
            "lists": {"all": {"ranges": [[0, 10]], "timeline_limit": 1}},
            "extensions": {
                "to_device": {"enabled": true, "since": since},
                "e2ee": {"enabled": true},
                "account_data": {"enabled": true},
                "receipts": {"enabled": true, "lists": ["all"]},
                "typing": {"enabled": true},
            }
        })
    };
    let first = ok(&s, &alice, None, &body(None)).await;
    let ext = &first["extensions"];
    assert_eq!(ext["to_device"]["events"][0]["content"]["n"], 1, "{ext}");
    assert_eq!(ext["to_device"]["events"][0]["sender"], "@bob:localhost");
    let since = ext["to_device"]["next_batch"].as_str().unwrap().to_owned();
    assert!(ext["e2ee"]["device_one_time_keys_count"].is_object());
    let globals: Vec<&str> = ext["account_data"]["global"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(
        globals.contains(&"m.test") && globals.contains(&"m.push_rules"),
        "{globals:?}"
    );
    let receipt = &ext["receipts"]["rooms"][&room];
    assert_eq!(receipt["type"], "m.receipt");
    assert!(
        receipt["content"][&event]["m.read"]["@bob:localhost"]["ts"].is_i64(),
        "{receipt}"
    );
    let pos = first["pos"].as_str().unwrap().to_owned();

    // The same `since` again (a lost response) gets the message again; a later one not.
    let again = ok(&s, &alice, Some(&pos), &body(None)).await;
    assert_eq!(
        again["extensions"]["to_device"]["events"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let pos = again["pos"].as_str().unwrap().to_owned();

    // Typing, a device list change and new account data arrive incrementally.
    let (st, _) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/typing/@bob:localhost"),
            Some(&bob),
            json!({"typing": true, "timeout": 30000}),
        )
        .await;
    assert_eq!(st, 200);
    // Bob's second device goes away: a device list change.
    let (st, _) = s
        .post("/_matrix/client/v3/logout", Some(&bob2), json!({}))
        .await;
    assert_eq!(st, 200);
    let (st, _) = s
        .put(
            "/_matrix/client/v3/user/@alice:localhost/account_data/m.test",
            Some(&alice),
            json!({"x": 2}),
        )
        .await;
    assert_eq!(st, 200);
    let next = ok(&s, &alice, Some(&pos), &body(Some(&since))).await;
    let ext = &next["extensions"];
    assert!(
        ext["to_device"]["events"].as_array().unwrap().is_empty(),
        "acknowledged: {ext}"
    );
    assert_eq!(
        ext["typing"]["rooms"][&room]["content"]["user_ids"],
        json!(["@bob:localhost"])
    );
    assert_eq!(
        ext["account_data"]["global"],
        json!([{"type": "m.test", "content": {"x": 2}}])
    );
    assert_eq!(
        ext["e2ee"]["device_lists"]["changed"],
        json!(["@bob:localhost"]),
        "a new device of bob: {ext}"
    );
    assert!(
        ext["receipts"]["rooms"].as_object().unwrap().is_empty(),
        "no new receipts"
    );
}

#[tokio::test]
async fn bad_requests() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let res = s
        .http
        .post(format!("{}{SS}", s.base))
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errcode"], "M_MISSING_TOKEN");
    let res = s
        .http
        .post(format!("{}{SS}", s.base))
        .bearer_auth(&alice)
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["errcode"], "M_BAD_JSON");
    assert_error(
        &ss(
            &s,
            &alice,
            None,
            0,
            &json!({"lists": {"x": {"ranges": [[5, 1]]}}}),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &ss(
            &s,
            &alice,
            None,
            0,
            &json!({"lists": {"x": {"ranges": "all"}}}),
        )
        .await,
        400,
        "M_BAD_JSON",
    );
    let (status, res) = s
        .post(&format!("{SS}?timeout=soon"), Some(&alice), json!({}))
        .await;
    assert_error(&(status, res), 400, "M_INVALID_PARAM");
    // /versions advertises it.
    let (_, versions) = s.get("/_matrix/client/versions", None).await;
    assert_eq!(
        versions["unstable_features"]["org.matrix.simplified_msc3575"],
        true
    );
}

#[tokio::test]
async fn unread_counts_follow_messages_and_receipts() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let room = create_room(&s, &alice, json!({"invite": ["@bob:localhost"]})).await;
    join(&s, &bob, &room).await;
    let first = ok(&s, &alice, None, &room_list(9, 1)).await;
    assert_eq!(first["rooms"][&room]["notification_count"], 0);
    let pos = first["pos"].as_str().unwrap().to_owned();

    let event = s
        .send_message(
            &bob,
            &room,
            "m1",
            json!({"msgtype": "m.text", "body": "ping"}),
        )
        .await;
    let res = ok(&s, &alice, Some(&pos), &room_list(9, 1)).await;
    assert_eq!(res["rooms"][&room]["notification_count"], 1, "{res}");
    let pos = res["pos"].as_str().unwrap().to_owned();

    // Read on another device: the room comes again, with no new events and no unread.
    let (st, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event}"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(st, 200);
    let res = ok(&s, &alice, Some(&pos), &room_list(9, 1)).await;
    let r = &res["rooms"][&room];
    assert_eq!(r["notification_count"], 0, "{res}");
    assert_eq!(r["timeline"], json!([]));
}

/// A connection asking only for extensions (as matrix-sdk's encryption sync does) waits
/// for what they carry and returns as soon as there is some; a logout while it waits
/// answers 401, not a server error.
#[tokio::test]
async fn an_extensions_only_connection_wakes_for_to_device_and_ends_with_its_logout() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let body = json!({ "extensions": { "to_device": { "enabled": true },
                                       "e2ee": { "enabled": true } } });
    let first = ok(&s, &alice, None, &body).await;
    let pos = first["pos"].as_str().unwrap().to_owned();

    let send_later = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (status, _) = s
            .put(
                "/_matrix/client/v3/sendToDevice/m.test/t1",
                Some(&bob),
                json!({ "messages": { "@alice:localhost": { "*": { "n": 1 } } } }),
            )
            .await;
        assert_eq!(status, 200);
    };
    let started = Instant::now();
    let ((status, res), ()) = tokio::join!(ss(&s, &alice, Some(&pos), 20_000, &body), send_later);
    assert_eq!(status, 200, "{res}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "woken by the message, not the timeout"
    );
    assert_eq!(
        res["extensions"]["to_device"]["events"][0]["content"]["n"],
        1
    );
    let pos = res["pos"].as_str().unwrap().to_owned();

    let logout_later = async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let (status, _) = s
            .post("/_matrix/client/v3/logout", Some(&alice), json!({}))
            .await;
        assert_eq!(status, 200);
    };
    let next_batch = res["extensions"]["to_device"]["next_batch"].clone();
    let body = json!({ "extensions": { "to_device": { "enabled": true, "since": next_batch },
                                       "e2ee": { "enabled": true } } });
    let (res, ()) = tokio::join!(ss(&s, &alice, Some(&pos), 5_000, &body), logout_later);
    assert_error(&res, 401, "M_UNKNOWN_TOKEN");
}
