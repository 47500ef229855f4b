//! Delivery to a push gateway served by the test itself (it records what it receives):
//! one notify per notifying event with counts and tweaks, a badge update when the user
//! reads, nothing for a muted room, the
//! queue surviving a gateway outage and a restart, rejected pushkeys removed, each
//! notification sent once with two axon processes, and private addresses refused unless
//! allowed. Also the pusher endpoints themselves (set, list, replace, removal).

mod common;

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Json, Router, extract::State, http::StatusCode, routing::post};
use common::{TestServer, assert_error};
use serde_json::{Value, json};

#[derive(Clone, Default)]
struct Gateway {
    received: Arc<Mutex<Vec<Value>>>,
    down: Arc<AtomicBool>,
    reject: Arc<Mutex<HashSet<String>>>,
}

async fn notify(State(g): State<Gateway>, Json(body): Json<Value>) -> (StatusCode, Json<Value>) {
    if g.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({})));
    }
    let key = body["notification"]["devices"][0]["pushkey"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    g.received.lock().unwrap().push(body);
    let rejected: Vec<String> = g
        .reject
        .lock()
        .unwrap()
        .iter()
        .filter(|k| **k == key)
        .cloned()
        .collect();
    (StatusCode::OK, Json(json!({ "rejected": rejected })))
}

/// Starts the gateway on loopback; returns it and its notify URL.
async fn gateway() -> (Gateway, String) {
    let g = Gateway::default();
    let app = Router::new()
        .route("/_matrix/push/v1/notify", post(notify))
        .with_state(g.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (g, format!("http://{addr}/_matrix/push/v1/notify"))
}

async fn server(allow_loopback: bool) -> TestServer {
    TestServer::start_with(|env| {
        if allow_loopback {
            env.insert(
                "AXON_OUTBOUND__ALLOW_RANGES".into(),
                "127.0.0.0/8,::1".into(),
            );
        }
    })
    .await
}

/// Alice and bob in a room; bob has a pusher to `url`. Returns (alice, bob, room).
async fn setup(s: &TestServer, url: &str, pushkey: &str) -> (String, String, String) {
    let (alice, _) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let (_, res) = s
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            json!({"preset": "public_chat", "name": "Lobby"}),
        )
        .await;
    let room = res["room_id"].as_str().unwrap().to_owned();
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/join/{room}"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, res) = s
        .post(
            "/_matrix/client/v3/pushers/set",
            Some(&bob),
            json!({
                "kind": "http", "app_id": "org.example.app", "pushkey": pushkey,
                "app_display_name": "Example", "device_display_name": "Phone", "lang": "en",
                "data": { "url": url, "extra": "kept" },
            }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    (alice, bob, room)
}

/// Waits until the gateway holds `n` notifications (or fails after `within`).
async fn wait_for(g: &Gateway, n: usize, within: Duration) -> Vec<Value> {
    let start = std::time::Instant::now();
    loop {
        let got = g.received.lock().unwrap().clone();
        if got.len() >= n {
            return got;
        }
        assert!(
            start.elapsed() < within,
            "only {} of {n} notifications arrived: {got:?}",
            got.len()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_message_sends_one_notification_with_counts_and_tweaks() {
    let (g, url) = gateway().await;
    let s = server(true).await;
    let (alice, bob, room) = setup(&s, &url, "key-1").await;
    let event_id = s
        .send_message(
            &alice,
            &room,
            "m1",
            json!({"msgtype": "m.text", "body": "hello"}),
        )
        .await;
    let got = wait_for(&g, 1, Duration::from_secs(10)).await;
    let n = &got[0]["notification"];
    assert_eq!(n["event_id"], event_id.as_str(), "{n}");
    // The older name of the event ID, which Synapse still sends and gateways may read.
    assert_eq!(n["id"], event_id.as_str(), "{n}");
    assert_eq!(n["room_id"], room.as_str());
    assert_eq!(n["type"], "m.room.message");
    assert_eq!(n["sender"], "@alice:localhost");
    assert_eq!(n["content"]["body"], "hello");
    assert_eq!(n["room_name"], "Lobby");
    assert_eq!(n["counts"]["unread"], 1);
    assert_eq!(n["prio"], "high");
    let device = &n["devices"][0];
    assert_eq!(
        (device["app_id"].as_str(), device["pushkey"].as_str()),
        (Some("org.example.app"), Some("key-1"))
    );
    assert_eq!(device["data"]["extra"], "kept");
    // When the pusher was set, in seconds (as Synapse sends it): within the last hour.
    let now_s = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let set_at = device["pushkey_ts"].as_i64().unwrap_or_default();
    assert!(now_s - 3600 < set_at && set_at <= now_s, "{device}");
    assert!(
        device["data"].get("url").is_none(),
        "the URL is not sent on: {device}"
    );
    assert_eq!(device["tweaks"]["sound"], "default", "{device}");
    // Exactly one.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(g.received.lock().unwrap().len(), 1);

    // A mention highlights; the badge counts both.
    s.send_message(&alice, &room, "m2", json!({"msgtype": "m.text", "body": "bob!", "m.mentions": {"user_ids": ["@bob:localhost"]}})).await;
    let got = wait_for(&g, 2, Duration::from_secs(10)).await;
    let n = &got[1]["notification"];
    assert_eq!(n["devices"][0]["tweaks"]["highlight"], true, "{n}");
    assert_eq!(n["counts"]["unread"], 2);

    // Bob reads up to the mention (on any device): the badge goes to 0 at once, in a
    // notification with counts only, as Synapse sends it.
    let mention = n["event_id"].as_str().unwrap().to_owned();
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{mention}"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let got = wait_for(&g, 3, Duration::from_secs(10)).await;
    let n = &got[2]["notification"];
    assert_eq!(n["counts"]["unread"], 0, "{n}");
    assert_eq!(n["id"], "", "{n}");
    assert!(n.get("event_id").is_none() && n["type"].is_null(), "{n}");
    assert_eq!(n["devices"][0]["pushkey"], "key-1", "{n}");

    // Only the pushers there were when the count changed are told: alice reads, then sets
    // a pusher, which gets no badge for that read.
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{mention}"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = s
        .post(
            "/_matrix/client/v3/pushers/set",
            Some(&alice),
            json!({
                "kind": "http", "app_id": "org.example.app", "pushkey": "key-alice",
                "app_display_name": "Example", "device_display_name": "Phone", "lang": "en",
                "data": { "url": url },
            }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let late: Vec<Value> = g
        .received
        .lock()
        .unwrap()
        .iter()
        .filter(|b| b["notification"]["devices"][0]["pushkey"] == "key-alice")
        .cloned()
        .collect();
    assert!(late.is_empty(), "{late:?}");
}

#[tokio::test]
async fn muted_rooms_send_nothing_and_rejected_pushkeys_go() {
    let (g, url) = gateway().await;
    let s = server(true).await;
    let (alice, bob, room) = setup(&s, &url, "key-2").await;
    let (status, _) = s
        .put(
            "/_matrix/client/v3/pushrules/global/override/mute",
            Some(&bob),
            json!({"conditions": [{"kind": "event_match", "key": "room_id", "pattern": room}], "actions": []}),
        )
        .await;
    assert_eq!(status, 200);
    s.send_message(
        &alice,
        &room,
        "m1",
        json!({"msgtype": "m.text", "body": "shh"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    assert!(
        g.received.lock().unwrap().is_empty(),
        "a muted room sends nothing"
    );

    // Unmuted; the gateway rejects the pushkey: the pusher is removed.
    let (status, _) = s
        .delete(
            "/_matrix/client/v3/pushrules/global/override/mute",
            Some(&bob),
            None,
        )
        .await;
    assert_eq!(status, 200);
    g.reject.lock().unwrap().insert("key-2".into());
    s.send_message(
        &alice,
        &room,
        "m2",
        json!({"msgtype": "m.text", "body": "now"}),
    )
    .await;
    wait_for(&g, 1, Duration::from_secs(10)).await;
    let start = std::time::Instant::now();
    loop {
        let (_, res) = s.get("/_matrix/client/v3/pushers", Some(&bob)).await;
        if res["pushers"] == json!([]) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "pusher not removed: {res}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn the_queue_outlives_an_outage_and_a_restart() {
    let (g, url) = gateway().await;
    let s = server(true).await;
    let (alice, _bob, room) = setup(&s, &url, "key-3").await;
    g.down.store(true, Ordering::SeqCst);
    s.send_message(
        &alice,
        &room,
        "m1",
        json!({"msgtype": "m.text", "body": "one"}),
    )
    .await;
    s.send_message(
        &alice,
        &room,
        "m2",
        json!({"msgtype": "m.text", "body": "two"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(g.received.lock().unwrap().is_empty());
    // The server restarts while the gateway is still down; then the gateway comes back.
    let s = s.restart().await;
    g.down.store(false, Ordering::SeqCst);
    let got = wait_for(&g, 2, Duration::from_secs(20)).await;
    let bodies: HashSet<&str> = got
        .iter()
        .map(|n| n["notification"]["content"]["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, HashSet::from(["one", "two"]));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(g.received.lock().unwrap().len(), 2, "each once");
    drop(s);
}

#[tokio::test]
async fn two_processes_send_each_notification_once() {
    let (g, url) = gateway().await;
    let s = server(true).await;
    let other = s.another_process().await;
    let (alice, _bob, room) = setup(&s, &url, "key-4").await;
    for i in 0..20 {
        let via = if i % 2 == 0 { &s } else { &other };
        via.send_message(
            &alice,
            &room,
            &format!("m{i}"),
            json!({"msgtype": "m.text", "body": format!("n{i}")}),
        )
        .await;
    }
    wait_for(&g, 20, Duration::from_secs(20)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let got = g.received.lock().unwrap().clone();
    let ids: HashSet<&str> = got
        .iter()
        .map(|n| n["notification"]["event_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        (got.len(), ids.len()),
        (20, 20),
        "each notification exactly once"
    );
}

#[tokio::test]
async fn private_gateways_are_refused_by_default() {
    let (g, url) = gateway().await;
    let s = server(false).await;
    let (alice, _bob, room) = setup(&s, &url, "key-5").await;
    s.send_message(
        &alice,
        &room,
        "m1",
        json!({"msgtype": "m.text", "body": "hello"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        g.received.lock().unwrap().is_empty(),
        "loopback must not be contacted"
    );
    // A name that resolves to loopback is refused too.
    let by_name = url.replace("127.0.0.1", "localhost");
    let (bob, _) = s.login_ok("bob", "password-bob").await;
    let (status, _) = s
        .post(
            "/_matrix/client/v3/pushers/set",
            Some(&bob),
            json!({
                "kind": "http", "app_id": "org.example.app", "pushkey": "key-6",
                "app_display_name": "Example", "device_display_name": "Phone", "lang": "en",
                "data": { "url": by_name },
            }),
        )
        .await;
    assert_eq!(status, 200);
    s.send_message(
        &alice,
        &room,
        "m2",
        json!({"msgtype": "m.text", "body": "again"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert!(
        g.received.lock().unwrap().is_empty(),
        "localhost must not be contacted"
    );
}

#[tokio::test]
async fn pushers_set_list_replace_and_removal() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (phone, _) = s.login_ok("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let set = "/_matrix/client/v3/pushers/set";
    let list = "/_matrix/client/v3/pushers";
    let pusher = |key: &str, url: &str| {
        json!({
            "kind": "http", "app_id": "org.example.app", "pushkey": key,
            "app_display_name": "Example", "device_display_name": "Phone",
            "lang": "en", "data": { "url": url, "format": "event_id_only" },
        })
    };
    let url = "https://push.example.org/_matrix/push/v1/notify";
    let (status, res) = s.post(set, Some(&phone), pusher("key-1", url)).await;
    assert_eq!(status, 200, "{res}");
    let (_, res) = s.get(list, Some(&alice)).await;
    let got = &res["pushers"];
    assert_eq!(got.as_array().unwrap().len(), 1, "{res}");
    assert_eq!(got[0]["pushkey"], "key-1");
    assert_eq!(got[0]["data"]["url"], url);
    assert_eq!(got[0]["data"]["format"], "event_id_only");

    // The same app and pushkey for another user moves it there (append false) ...
    let (status, _) = s.post(set, Some(&bob), pusher("key-1", url)).await;
    assert_eq!(status, 200);
    let (_, res) = s.get(list, Some(&alice)).await;
    assert_eq!(res["pushers"], json!([]), "{res}");
    // ... unless appended.
    let mut appended = pusher("key-1", url);
    appended["append"] = json!(true);
    let (status, _) = s.post(set, Some(&phone), appended).await;
    assert_eq!(status, 200);
    let (_, res) = s.get(list, Some(&bob)).await;
    assert_eq!(res["pushers"].as_array().unwrap().len(), 1, "{res}");

    // Deleting with kind null.
    let (status, _) = s
        .post(
            set,
            Some(&bob),
            json!({ "kind": null, "app_id": "org.example.app", "pushkey": "key-1" }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, res) = s.get(list, Some(&bob)).await;
    assert_eq!(res["pushers"], json!([]));

    // Refusals.
    for (body, why) in [
        (
            pusher("k", "https://push.example.org/elsewhere"),
            "wrong path",
        ),
        (
            pusher("k", "gopher://push.example.org/_matrix/push/v1/notify"),
            "scheme",
        ),
        (pusher("", url), "empty pushkey"),
        (
            json!({ "kind": "email", "app_id": "m.email", "pushkey": "a@b.c", "app_display_name": "E", "device_display_name": "E", "lang": "en", "data": {} }),
            "email",
        ),
    ] {
        let res = s.post(set, Some(&alice), body).await;
        assert_eq!(res.0, 400, "{why}: {}", res.1);
    }
    let mut no_url = pusher("k", url);
    no_url["data"] = json!({});
    assert_error(&s.post(set, Some(&alice), no_url).await, 400, "M_BAD_JSON");
    assert_error(&s.get(list, None).await, 401, "M_MISSING_TOKEN");

    // A pusher goes with the device that set it...
    let (status, _) = s.post(set, Some(&phone), pusher("key-2", url)).await;
    assert_eq!(status, 200);
    let (status, _) = s
        .post("/_matrix/client/v3/logout", Some(&phone), json!({}))
        .await;
    assert_eq!(status, 200);
    let (_, res) = s.get(list, Some(&alice)).await;
    assert_eq!(res["pushers"], json!([]), "logout removes it: {res}");
    // ... and with a password change, for the other devices.
    let (tablet, _) = s.login_ok("alice", "password-alice").await;
    let (status, _) = s.post(set, Some(&tablet), pusher("key-3", url)).await;
    assert_eq!(status, 200);
    let (status, res) = s
        .post(
            "/_matrix/client/v3/account/password",
            Some(&alice),
            json!({
                "new_password": "another-password",
                "logout_devices": false,
                "auth": { "type": "m.login.password", "password": "password-alice",
                          "identifier": { "type": "m.id.user", "user": "alice" } },
            }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let (_, res) = s.get(list, Some(&alice)).await;
    assert_eq!(
        res["pushers"],
        json!([]),
        "the password change removes it: {res}"
    );
}

#[tokio::test]
async fn an_invite_notification_names_the_membership_and_an_unnamed_room_by_its_alias() {
    let (g, url) = gateway().await;
    let s = server(true).await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (carol, _) = s.register("carol", "password-carol").await;
    let (status, res) = s
        .post(
            "/_matrix/client/v3/pushers/set",
            Some(&carol),
            json!({
                "kind": "http", "app_id": "org.example.app", "pushkey": "carol-key",
                "app_display_name": "Example", "device_display_name": "Phone", "lang": "en",
                // Not a format the spec names: taken as the full format, as Synapse does.
                "data": { "url": url, "format": "id_event_only" },
            }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let (status, res) = s
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            json!({ "room_alias_name": "hideout" }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let room = res["room_id"].as_str().unwrap().to_owned();
    let (status, res) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            Some(&alice),
            json!({ "user_id": "@carol:localhost" }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let got = wait_for(&g, 1, Duration::from_secs(10)).await;
    let n = &got[0]["notification"];
    assert_eq!(n["type"], "m.room.member", "{n}");
    assert_eq!(n["membership"], "invite", "{n}");
    assert_eq!(n["user_is_target"], true, "{n}");
    assert_eq!(n["room_alias"], "#hideout:localhost", "{n}");
    assert_eq!(n["room_name"], "#hideout:localhost", "{n}");
    assert!(n["id"].is_string(), "{n}");
}
