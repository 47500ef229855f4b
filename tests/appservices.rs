//! Application services: a bridge registered by a registration file acts as its sender and
//! as its puppets (`user_id=`, with a device by `device_id=`), registers puppets without
//! user-interactive auth, logs them in, and has its namespaces to itself (`M_EXCLUSIVE`);
//! events of its rooms reach it in transactions, in order, each once, also after it was
//! down while 100 events came and the homeserver restarted meanwhile; the ping both ways.

#[path = "common/appservice.rs"]
mod appservice;
mod common;

use std::sync::atomic::Ordering;

use appservice::{AS_TOKEN, FakeAppservice};
use common::{TestServer, assert_error};
use serde_json::json;

async fn start() -> (TestServer, FakeAppservice, tempfile::TempDir) {
    let bridge = FakeAppservice::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = bridge.registration(dir.path());
    let s = TestServer::start_with(|env| env.extend(appservice::env_with(&[file]))).await;
    (s, bridge, dir)
}

fn as_user(path: &str, user: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!(
        "{path}{sep}user_id={}",
        user.replace('@', "%40").replace(':', "%3A")
    )
}

#[tokio::test]
async fn a_bridge_registers_and_acts_as_its_puppets() {
    let (s, bridge, _dir) = start().await;
    let whoami = "/_matrix/client/v3/account/whoami";
    let (status, me) = s.get(whoami, Some(AS_TOKEN)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["user_id"], "@bridgebot:localhost");

    // Puppets are registered without UIA, only in the namespace.
    let (status, body) = s
        .post(
            "/_matrix/client/v3/register",
            Some(AS_TOKEN),
            json!({"type": "m.login.application_service", "username": "bridge_alice", "inhibit_login": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "@bridge_alice:localhost");
    let r = s
        .post(
            "/_matrix/client/v3/register",
            Some(AS_TOKEN),
            json!({"type": "m.login.application_service", "username": "someone_else"}),
        )
        .await;
    assert_error(&r, 400, "M_EXCLUSIVE");
    let r = s
        .post(
            "/_matrix/client/v3/register",
            None,
            json!({"type": "m.login.application_service", "username": "bridge_bob"}),
        )
        .await;
    assert_error(&r, 401, "M_MISSING_TOKEN");
    // Nobody else may take a name in the namespace.
    let r = s
        .post(
            "/_matrix/client/v3/register",
            None,
            json!({"username": "bridge_mallory", "password": "pw", "auth": {"type": "m.login.dummy"}}),
        )
        .await;
    assert_error(&r, 400, "M_EXCLUSIVE");
    let r = s
        .get(
            "/_matrix/client/v3/register/available?username=bridge_x",
            None,
        )
        .await;
    assert_error(&r, 400, "M_EXCLUSIVE");

    // Acting as a puppet; not as a user outside the namespace, nor an unregistered one.
    let (human, _) = s.register("human", "pw").await;
    let (_, me) = s
        .get(&as_user(whoami, "@bridge_alice:localhost"), Some(AS_TOKEN))
        .await;
    assert_eq!(me["user_id"], "@bridge_alice:localhost");
    let r = s
        .get(&as_user(whoami, "@human:localhost"), Some(AS_TOKEN))
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");
    let r = s
        .get(&as_user(whoami, "@bridge_ghost:localhost"), Some(AS_TOKEN))
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");
    // A user's own token ignores user_id.
    let (_, me) = s
        .get(&as_user(whoami, "@bridge_alice:localhost"), Some(&human))
        .await;
    assert_eq!(me["user_id"], "@human:localhost");

    // The human invites the puppet: the bridge hears of it, and the puppet joins and talks.
    let room = s.create_room(&human, json!({})).await;
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            Some(&human),
            json!({"user_id": "@bridge_alice:localhost"}),
        )
        .await;
    assert_eq!(status, 200);
    let invite = bridge
        .wait_for(|e| e["type"] == "m.room.member" && e["content"]["membership"] == "invite")
        .await;
    assert_eq!(invite["state_key"], "@bridge_alice:localhost");
    assert_eq!(invite["room_id"], room.as_str());
    let (status, body) = s
        .post(
            &as_user(
                &format!("/_matrix/client/v3/rooms/{room}/join"),
                "@bridge_alice:localhost",
            ),
            Some(AS_TOKEN),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s
        .put(
            &as_user(
                &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/b1?ts=1500000000000"),
                "@bridge_alice:localhost",
            ),
            Some(AS_TOKEN),
            json!({"msgtype": "m.text", "body": "from the other network"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    s.send_message(
        &human,
        &room,
        "h1",
        json!({"msgtype": "m.text", "body": "hello bridge"}),
    )
    .await;
    bridge
        .wait_for(|e| e["content"]["body"] == "hello bridge")
        .await;
    let bodies: Vec<String> = bridge
        .events()
        .iter()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(bodies, vec!["from the other network", "hello bridge"]);
    // The bridge's `ts` dates its message (timestamp massaging); a user's is ignored.
    let bridged = bridge
        .wait_for(|e| e["content"]["body"] == "from the other network")
        .await;
    assert_eq!(bridged["origin_server_ts"], 1_500_000_000_000u64);
    let (_, sent) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/h0?ts=1500000000000"),
            Some(&human),
            json!({"msgtype": "m.text", "body": "no massaging"}),
        )
        .await;
    let (_, event) = s
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{room}/event/{}",
                sent["event_id"].as_str().unwrap()
            ),
            Some(&human),
        )
        .await;
    assert!(
        event["origin_server_ts"].as_u64().unwrap() > 1_700_000_000_000,
        "{event}"
    );
    // Rooms without its users are none of its business.
    let (other, _) = s.register("other", "pw").await;
    let private = s.create_room(&other, json!({})).await;
    s.send_message(
        &other,
        &private,
        "o1",
        json!({"msgtype": "m.text", "body": "not for bridges"}),
    )
    .await;
    s.send_message(
        &human,
        &room,
        "h2",
        json!({"msgtype": "m.text", "body": "marker"}),
    )
    .await;
    bridge.wait_for(|e| e["content"]["body"] == "marker").await;
    assert!(
        bridge
            .events()
            .iter()
            .all(|e| e["room_id"] != private.as_str())
    );

    // Aliases in the namespace are the bridge's.
    let r = s
        .put(
            "/_matrix/client/v3/directory/room/%23bridge_room:localhost",
            Some(&human),
            json!({"room_id": room}),
        )
        .await;
    assert_error(&r, 400, "M_EXCLUSIVE");
    let (status, body) = s
        .put(
            &as_user(
                "/_matrix/client/v3/directory/room/%23bridge_room:localhost",
                "@bridge_alice:localhost",
            ),
            Some(AS_TOKEN),
            json!({"room_id": room}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // An unknown alias of its namespace: the bridge is asked first (it says no here).
    let r = s
        .get(
            "/_matrix/client/v3/directory/room/%23bridge_unknown:localhost",
            Some(&human),
        )
        .await;
    assert_error(&r, 404, "M_NOT_FOUND");
    assert_eq!(
        bridge.seen.lock().unwrap().alias_queries,
        vec!["#bridge_unknown:localhost".to_owned()]
    );

    // An unknown user of its namespace: the bridge is asked (and says no here).
    let r = s
        .get(
            "/_matrix/client/v3/profile/@bridge_nobody:localhost",
            Some(&human),
        )
        .await;
    assert_error(&r, 404, "M_NOT_FOUND");
    assert_eq!(
        bridge.seen.lock().unwrap().user_queries,
        vec!["@bridge_nobody:localhost".to_owned()]
    );

    // A login for the puppet gives it a device the bridge can then act as.
    let (status, login) = s
        .post(
            "/_matrix/client/v3/login",
            Some(AS_TOKEN),
            json!({"type": "m.login.application_service",
                   "identifier": {"type": "m.id.user", "user": "bridge_alice"}}),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    let device = login["device_id"].as_str().unwrap();
    let (status, me) = s
        .get(
            &format!(
                "{}&device_id={device}",
                as_user(whoami, "@bridge_alice:localhost")
            ),
            Some(AS_TOKEN),
        )
        .await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me["device_id"], device);
    let r = s
        .get(
            &format!(
                "{}&device_id=NOSUCHDEVICE",
                as_user(whoami, "@bridge_alice:localhost")
            ),
            Some(AS_TOKEN),
        )
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");
    let r = s
        .post(
            "/_matrix/client/v3/login",
            Some(AS_TOKEN),
            json!({"type": "m.login.application_service",
                   "identifier": {"type": "m.id.user", "user": "human"}}),
        )
        .await;
    assert_error(&r, 400, "M_EXCLUSIVE");

    // The ping: the bridge asks, we ping it with its transaction ID.
    let (status, body) = s
        .post(
            "/_matrix/client/v1/appservice/bridge/ping",
            Some(AS_TOKEN),
            json!({"transaction_id": "ping-1"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["duration_ms"].is_u64(), "{body}");
    assert_eq!(
        bridge.seen.lock().unwrap().pings,
        vec![json!({"transaction_id": "ping-1"})]
    );
    let r = s
        .post(
            "/_matrix/client/v1/appservice/bridge/ping",
            Some(&human),
            json!({}),
        )
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");
    bridge.down.store(true, Ordering::SeqCst);
    let r = s
        .post(
            "/_matrix/client/v1/appservice/bridge/ping",
            Some(AS_TOKEN),
            json!({}),
        )
        .await;
    assert_error(&r, 502, "M_BAD_STATUS");
    assert_eq!(bridge.seen.lock().unwrap().bad_tokens, 0);
    // It did not ask for ephemeral data, so a typing notice in its room is not sent.
    bridge.down.store(false, Ordering::SeqCst);
    s.put(
        &format!("/_matrix/client/v3/rooms/{room}/typing/@human:localhost"),
        Some(&human),
        json!({"typing": true, "timeout": 30000}),
    )
    .await;
    s.send_message(
        &human,
        &room,
        "h3",
        json!({"msgtype": "m.text", "body": "after typing"}),
    )
    .await;
    bridge
        .wait_for(|e| e["content"]["body"] == "after typing")
        .await;
    assert!(bridge.ephemeral().is_empty());
}

#[tokio::test]
async fn transactions_wait_out_an_outage_and_a_restart_in_order() {
    let (s, bridge, _dir) = start().await;
    let (human, _) = s.register("human", "pw").await;
    s.post(
        "/_matrix/client/v3/register",
        Some(AS_TOKEN),
        json!({"type": "m.login.application_service", "username": "bridge_bob", "inhibit_login": true}),
    )
    .await;
    let room = s
        .create_room(&human, json!({"invite": ["@bridge_bob:localhost"]}))
        .await;
    bridge.wait_for(|e| e["type"] == "m.room.member").await;

    bridge.down.store(true, Ordering::SeqCst);
    for n in 0..100 {
        s.send_message(
            &human,
            &room,
            &format!("t{n}"),
            json!({"msgtype": "m.text", "body": format!("m{n}")}),
        )
        .await;
    }
    // Retried while down; then the homeserver restarts with the transactions kept.
    for _ in 0..100 {
        if bridge.seen.lock().unwrap().attempts >= 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(bridge.seen.lock().unwrap().attempts >= 2);
    let s = s.restart().await;
    bridge.down.store(false, Ordering::SeqCst);
    // (Should the old process not have let go of its lease, the new one takes over
    // when the lease runs out, within a minute.)
    for _ in 0..1200 {
        if bridge
            .events()
            .iter()
            .any(|e| e["content"]["body"] == "m99")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let bodies: Vec<String> = bridge
        .events()
        .iter()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect();
    let expected: Vec<String> = (0..100).map(|n| format!("m{n}")).collect();
    assert_eq!(bodies, expected);
    // Admins see the queue drained.
    s.sql("UPDATE users SET is_admin = TRUE WHERE localpart = 'human'")
        .await;
    let (status, body) = s.get("/_axon/admin/v1/appservices", Some(&human)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["appservices"][0]["id"], "bridge");
    assert_eq!(body["appservices"][0]["transactions_waiting"], 0);
}

#[tokio::test]
async fn ephemeral_data_and_to_device_messages_reach_a_bridge_that_asks() {
    let bridge = FakeAppservice::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = bridge.registration_with(dir.path(), "receive_ephemeral: true");
    let s = TestServer::start_with(|env| env.extend(appservice::env_with(&[file]))).await;
    let (human, _) = s.register("human", "pw").await;
    s.post(
        "/_matrix/client/v3/register",
        Some(AS_TOKEN),
        json!({"type": "m.login.application_service", "username": "bridge_carol", "inhibit_login": true}),
    )
    .await;
    let (_, login) = s
        .post(
            "/_matrix/client/v3/login",
            Some(AS_TOKEN),
            json!({"type": "m.login.application_service",
                   "identifier": {"type": "m.id.user", "user": "bridge_carol"}}),
        )
        .await;
    let carol_device = login["device_id"].as_str().unwrap().to_owned();
    let room = s
        .create_room(&human, json!({"invite": ["@bridge_carol:localhost"]}))
        .await;
    let event_id = s
        .send_message(
            &human,
            &room,
            "e1",
            json!({"msgtype": "m.text", "body": "read me"}),
        )
        .await;

    s.put(
        &format!("/_matrix/client/v3/rooms/{room}/typing/@human:localhost"),
        Some(&human),
        json!({"typing": true, "timeout": 30000}),
    )
    .await;
    s.post(
        &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event_id}"),
        Some(&human),
        json!({}),
    )
    .await;
    let (status, _) = s
        .put(
            "/_matrix/client/v3/sendToDevice/m.room_key_request/td1",
            Some(&human),
            json!({"messages": {"@bridge_carol:localhost": {&carol_device: {"hello": "carol"}}}}),
        )
        .await;
    assert_eq!(status, 200);

    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..200 {
        for e in bridge.ephemeral() {
            match e["type"].as_str().unwrap_or_default() {
                "m.typing" => {
                    assert_eq!(e["room_id"], room.as_str());
                    assert_eq!(e["content"]["user_ids"], json!(["@human:localhost"]));
                    seen.insert("typing");
                }
                "m.receipt" => {
                    assert_eq!(e["room_id"], room.as_str());
                    assert!(e["content"][&event_id]["m.read"]["@human:localhost"].is_object());
                    seen.insert("receipt");
                }
                "m.room_key_request" => {
                    assert_eq!(e["to_user_id"], "@bridge_carol:localhost");
                    assert_eq!(e["to_device_id"], carol_device.as_str());
                    assert_eq!(e["sender"], "@human:localhost");
                    assert_eq!(e["content"]["hello"], "carol");
                    seen.insert("to-device");
                }
                _ => {}
            }
        }
        if seen.len() == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(seen.len(), 3, "{seen:?}: {:?}", bridge.ephemeral());
}

#[tokio::test]
async fn third_party_lookups_are_asked_of_the_bridge() {
    let bridge = FakeAppservice::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = bridge.registration_with(dir.path(), "protocols: [chat]");
    let s = TestServer::start_with(|env| env.extend(appservice::env_with(&[file]))).await;
    let (human, _) = s.register("human", "pw").await;

    let (status, protocols) = s
        .get("/_matrix/client/v3/thirdparty/protocols", Some(&human))
        .await;
    assert_eq!(status, 200, "{protocols}");
    assert_eq!(protocols["chat"]["user_fields"], json!(["nick"]));
    assert_eq!(protocols["chat"]["instances"][0]["network_id"], "chatnet");
    assert_eq!(protocols["chat"]["instances"][0]["instance_id"], "chatnet");
    let (status, chat) = s
        .get("/_matrix/client/v3/thirdparty/protocol/chat", Some(&human))
        .await;
    assert_eq!(status, 200, "{chat}");
    assert_eq!(chat["location_fields"], json!(["room"]));
    let r = s
        .get(
            "/_matrix/client/v3/thirdparty/protocol/carrier-pigeon",
            Some(&human),
        )
        .await;
    assert_error(&r, 404, "M_NOT_FOUND");

    let (status, found) = s
        .get(
            "/_matrix/client/v3/thirdparty/location/chat?room=lobby",
            Some(&human),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(found[0]["alias"], "#bridge_lobby:localhost");
    let (_, found) = s
        .get(
            "/_matrix/client/v3/thirdparty/user/chat?nick=bob",
            Some(&human),
        )
        .await;
    assert_eq!(found[0]["userid"], "@bridge_bob:localhost");
    let (_, found) = s
        .get(
            "/_matrix/client/v3/thirdparty/location?alias=%23bridge_lobby:localhost",
            Some(&human),
        )
        .await;
    assert_eq!(found[0]["fields"]["room"], "lobby", "{found}");
    let (_, found) = s
        .get(
            "/_matrix/client/v3/thirdparty/user?userid=%40bridge_bob:localhost",
            Some(&human),
        )
        .await;
    assert_eq!(found[0]["fields"]["nick"], "bob", "{found}");

    // The bridge lists a (private) portal room under its network.
    let room = s.create_room(&human, json!({"name": "Lobby"})).await;
    let list = format!("/_matrix/client/v3/directory/list/appservice/chatnet/{room}");
    let r = s
        .put(&list, Some(&human), json!({"visibility": "public"}))
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");
    let (status, body) = s
        .put(&list, Some(AS_TOKEN), json!({"visibility": "public"}))
        .await;
    assert_eq!(status, 200, "{body}");
    let names = |body: &serde_json::Value| -> Vec<String> {
        body["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|r| r["name"].as_str().map(str::to_owned))
            .collect()
    };
    let (_, matrix) = s
        .post("/_matrix/client/v3/publicRooms", Some(&human), json!({}))
        .await;
    assert!(names(&matrix).is_empty(), "{matrix}");
    let (_, network) = s
        .post(
            "/_matrix/client/v3/publicRooms",
            Some(&human),
            json!({"third_party_instance_id": "chatnet"}),
        )
        .await;
    assert_eq!(names(&network), vec!["Lobby"]);
    let (_, all) = s
        .post(
            "/_matrix/client/v3/publicRooms",
            Some(&human),
            json!({"include_all_networks": true}),
        )
        .await;
    assert_eq!(names(&all), vec!["Lobby"]);
    s.put(&list, Some(AS_TOKEN), json!({"visibility": "private"}))
        .await;
    let (_, network) = s
        .post(
            "/_matrix/client/v3/publicRooms",
            Some(&human),
            json!({"third_party_instance_id": "chatnet"}),
        )
        .await;
    assert!(names(&network).is_empty(), "{network}");
}

#[tokio::test]
async fn one_appservice_down_or_hanging_does_not_hold_up_another() {
    let hanging = FakeAppservice::start_named("hangs", "as-hangs", "hs-hangs", "hang_").await;
    let failing = FakeAppservice::start_named("fails", "as-fails", "hs-fails", "fail_").await;
    let healthy = FakeAppservice::start_named("works", "as-works", "hs-works", "work_").await;
    let dir = tempfile::tempdir().unwrap();
    let files = [
        hanging.registration(dir.path()),
        failing.registration(dir.path()),
        healthy.registration(dir.path()),
    ];
    let s = TestServer::start_with(|env| env.extend(appservice::env_with(&files))).await;
    let (human, _) = s.register("human", "pw").await;
    for (bridge, user) in [
        (&hanging, "hang_u"),
        (&failing, "fail_u"),
        (&healthy, "work_u"),
    ] {
        let (status, body) = s
            .post(
                "/_matrix/client/v3/register",
                Some(&bridge.as_token),
                json!({"type": "m.login.application_service", "username": user, "inhibit_login": true}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    // One bridge's token does not reach into another's namespace.
    let r = s
        .get(
            "/_matrix/client/v3/account/whoami?user_id=%40work_u:localhost",
            Some("as-fails"),
        )
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");

    hanging.hang.store(true, Ordering::SeqCst);
    failing.down.store(true, Ordering::SeqCst);
    let room = s
        .create_room(
            &human,
            json!({"invite": ["@hang_u:localhost", "@fail_u:localhost", "@work_u:localhost"]}),
        )
        .await;
    for n in 0..5 {
        s.send_message(
            &human,
            &room,
            &format!("t{n}"),
            json!({"msgtype": "m.text", "body": format!("m{n}")}),
        )
        .await;
    }
    healthy.wait_for(|e| e["content"]["body"] == "m4").await;
    assert!(failing.events().is_empty() && hanging.events().is_empty());

    // The failing one recovers and gets everything, once, in order.
    failing.down.store(false, Ordering::SeqCst);
    for _ in 0..150 {
        if failing
            .events()
            .iter()
            .any(|e| e["content"]["body"] == "m4")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let bodies = |b: &FakeAppservice| -> Vec<String> {
        b.events()
            .iter()
            .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
            .collect()
    };
    let expected: Vec<String> = (0..5).map(|n| format!("m{n}")).collect();
    assert_eq!(bodies(&failing), expected);
    assert_eq!(bodies(&healthy), expected);
}
