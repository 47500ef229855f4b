//! What real clients read that the spec leaves to the server (issue 17): fields Synapse
//! fills that matrix-js-sdk and Element rely on, and endpoints Element asks for first.

mod common;

use common::{TestServer, assert_error};
use serde_json::{Value, json};

#[tokio::test]
async fn redactions_carry_redacts_at_the_top_level_in_every_room_version() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    for version in ["10", "11", "12"] {
        let (status, res) = s
            .post(
                "/_matrix/client/v3/createRoom",
                Some(&alice),
                json!({ "room_version": version }),
            )
            .await;
        assert_eq!(status, 200, "{res}");
        let room = res["room_id"].as_str().unwrap().to_owned();
        let target = s
            .send_message(
                &alice,
                &room,
                &format!("m{version}"),
                json!({"msgtype": "m.text", "body": "oops"}),
            )
            .await;
        let (status, res) = s
            .put(
                &format!("/_matrix/client/v3/rooms/{room}/redact/{target}/r{version}"),
                Some(&alice),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "v{version} {room} {target}: {res}");
        let (status, res) = s
            .get(
                &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=5"),
                Some(&alice),
            )
            .await;
        assert_eq!(status, 200, "{res}");
        let redaction: &Value = res["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "m.room.redaction")
            .unwrap_or_else(|| panic!("v{version}: no redaction in {res}"));
        assert_eq!(
            redaction["redacts"],
            target.as_str(),
            "v{version}: {redaction}"
        );
    }
}

#[tokio::test]
async fn third_party_protocols_without_bridges() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (status, res) = s
        .get("/_matrix/client/v3/thirdparty/protocols", Some(&alice))
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res, json!({}));
    let r = s
        .get("/_matrix/client/v3/thirdparty/protocol/irc", Some(&alice))
        .await;
    assert_error(&r, 404, "M_NOT_FOUND");
    let r = s
        .get(
            "/_matrix/client/v3/thirdparty/user/irc?nick=x",
            Some(&alice),
        )
        .await;
    assert_error(&r, 404, "M_NOT_FOUND");
    let (status, res) = s
        .get(
            "/_matrix/client/v3/thirdparty/location?alias=%23a:localhost",
            Some(&alice),
        )
        .await;
    assert_eq!((status.as_u16(), res), (200, json!([])));
    let (status, res) = s
        .get(
            "/_matrix/client/v3/thirdparty/user?userid=@alice:localhost",
            Some(&alice),
        )
        .await;
    assert_eq!((status.as_u16(), res), (200, json!([])));
    let r = s.get("/_matrix/client/v3/thirdparty/protocols", None).await;
    assert_error(&r, 401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn sync_timelines_always_say_whether_they_are_limited() {
    let s = TestServer::start().await;
    let (alice, _bob, room) = s.alice_and_bob_in_a_room().await;
    let (status, res) = s
        .get(
            "/_matrix/client/v3/sync?filter=%7B%22room%22%3A%7B%22timeline%22%3A%7B%22limit%22%3A50%7D%7D%7D",
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(
        res["rooms"]["join"][&room]["timeline"]["limited"], false,
        "{res}"
    );
}

#[tokio::test]
async fn capabilities_are_listed_even_when_they_hold_their_default() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (status, res) = s.get("/_matrix/client/v3/capabilities", Some(&alice)).await;
    assert_eq!(status, 200, "{res}");
    let caps = &res["capabilities"];
    for name in ["m.change_password", "m.set_displayname", "m.set_avatar_url"] {
        assert_eq!(caps[name]["enabled"], true, "{name}: {res}");
    }
    assert!(caps["m.3pid_changes"]["enabled"].is_boolean(), "{res}");
    assert!(caps["m.get_login_token"]["enabled"].is_boolean(), "{res}");
    assert!(caps["m.room_versions"]["default"].is_string(), "{res}");
}

#[tokio::test]
async fn typing_without_a_timeout_and_idempotent_state() {
    let s = TestServer::start().await;
    let (alice, bob, room) = s.alice_and_bob_in_a_room().await;
    let (status, res) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/typing/@alice:localhost"),
            Some(&alice),
            json!({ "typing": true }),
        )
        .await;
    assert_eq!(status, 200, "{res}");

    // The same state from the same sender twice: one event.
    let topic = |text: &str| json!({ "topic": text });
    let path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/");
    let first = s.put(&path, Some(&alice), topic("hello")).await;
    let again = s.put(&path, Some(&alice), topic("hello")).await;
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(first.1["event_id"], again.1["event_id"]);
    let changed = s.put(&path, Some(&alice), topic("changed")).await;
    assert_ne!(first.1["event_id"], changed.1["event_id"]);
    // Joining twice makes no second join event.
    let before = member_events(&s, &room, &alice).await;
    let r = s
        .post(
            &format!("/_matrix/client/v3/join/{room}"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(
        member_events(&s, &room, &alice).await,
        before,
        "a second join made an event"
    );

    // A user who has left cannot be kicked.
    let r = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/leave"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let r = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/kick"),
            Some(&alice),
            json!({ "user_id": "@bob:localhost" }),
        )
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn key_backup_keeps_opaque_string_auth_data() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (status, res) = s
        .post(
            "/_matrix/client/v3/room_keys/version",
            Some(&alice),
            json!({ "algorithm": "m.megolm_backup.v1", "auth_data": "anopaquestring" }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let (status, res) = s
        .get("/_matrix/client/v3/room_keys/version", Some(&alice))
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["auth_data"], "anopaquestring");
}

async fn member_events(s: &TestServer, room: &str, token: &str) -> usize {
    let (_, res) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50"),
            Some(token),
        )
        .await;
    res["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .count()
}

#[tokio::test]
async fn fields_synapse_always_sends() {
    let s = TestServer::start().await;
    let (alice, _bob, room) = s.alice_and_bob_in_a_room().await;
    let (_, whoami) = s
        .get("/_matrix/client/v3/account/whoami", Some(&alice))
        .await;
    let device = whoami["device_id"].as_str().unwrap().to_owned();
    let (status, res) = s
        .post(
            "/_matrix/client/v3/keys/upload",
            Some(&alice),
            json!({ "device_keys": {
                "user_id": "@alice:localhost", "device_id": device,
                "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
                "keys": { format!("curve25519:{device}"): "c", format!("ed25519:{device}"): "e" },
                "signatures": {} } }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    // ?format=event gives the whole state event.
    let (status, res) = s
        .get(
            &format!(
                "/_matrix/client/v3/rooms/{room}/state/m.room.member/@alice:localhost?format=event"
            ),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["sender"], "@alice:localhost", "{res}");
    assert_eq!(res["content"]["membership"], "join", "{res}");
    // joined_members lists avatar_url even when unset.
    let (status, res) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/joined_members"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let me = &res["joined"]["@alice:localhost"];
    assert!(me.get("avatar_url").is_some_and(Value::is_null), "{res}");
    // A page of /messages with events has `end`, even the last one.
    s.send_message(
        &alice,
        &room,
        "e1",
        json!({"msgtype": "m.text", "body": "x"}),
    )
    .await;
    let (status, res) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let end = res["end"].as_str().expect("end").to_owned();
    let (_, res) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100&from={end}"),
            Some(&alice),
        )
        .await;
    assert_eq!(res["chunk"], json!([]), "{res}");
    assert!(res.get("end").is_none(), "{res}");
    // A failed password stage lists what is completed (nothing).
    let (status, res) = s
        .post(
            "/_matrix/client/v3/account/deactivate",
            Some(&alice),
            json!({ "auth": { "type": "m.login.password", "user": "@alice:localhost", "password": "wrong" } }),
        )
        .await;
    assert_eq!(status, 401, "{res}");
    assert_eq!(res["completed"], json!([]), "{res}");
    assert_eq!(
        res["errcode"], "M_FORBIDDEN",
        "a legacy `user` reached the password check: {res}"
    );
    // Device keys in /keys/query carry `unsigned`.
    let (_, res) = s
        .post(
            "/_matrix/client/v3/keys/query",
            Some(&alice),
            json!({ "device_keys": { "@alice:localhost": [] } }),
        )
        .await;
    assert!(
        res["device_keys"]["@alice:localhost"][&device]["unsigned"].is_object(),
        "{res}"
    );
}

#[tokio::test]
async fn registration_lowercases_the_user_name() {
    let s = TestServer::start().await;
    let (status, body) = s
        .post(
            "/_matrix/client/v3/register",
            None,
            json!({ "username": "MixedCase", "password": "password-x", "auth": { "type": "m.login.dummy" } }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "@mixedcase:localhost");
}

#[tokio::test]
async fn a_registration_session_remembers_its_first_request() {
    let s = TestServer::start().await;
    // Everything in the first request; the second carries only the session.
    let (status, first) = s
        .post(
            "/_matrix/client/v3/register",
            None,
            json!({ "username": "rémi", "password": "pässwörd-ünïcode", "device_id": "MYDEVICE",
                    "inhibit_login": true }),
        )
        .await;
    // "rémi" is not a valid localpart: a clear error before any session.
    assert_eq!(status, 400, "{first}");
    let (status, first) = s
        .post(
            "/_matrix/client/v3/register",
            None,
            json!({ "username": "remi", "password": "pässwörd-ünïcode", "device_id": "MYDEVICE",
                    "inhibit_login": true }),
        )
        .await;
    assert_eq!(status, 401, "{first}");
    let session = first["session"].as_str().unwrap();
    let (status, done) = s
        .post(
            "/_matrix/client/v3/register",
            None,
            json!({ "auth": { "type": "m.login.dummy", "session": session } }),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["user_id"], "@remi:localhost");
    assert!(
        done.get("access_token").is_none(),
        "inhibit_login was remembered: {done}"
    );
    // The non-ASCII password was kept (as its hash) and works.
    let (status, login) = s.login("remi", "pässwörd-ünïcode").await;
    assert_eq!(status, 200, "{login}");
}

#[tokio::test]
async fn moderators_delete_aliases_and_the_canonical_alias_follows() {
    let s = TestServer::start().await;
    let (alice, bob, room) = s.alice_and_bob_in_a_room().await;
    // Bob makes an alias; alice (100) may delete it, as may anyone with the power to set
    // the canonical alias.
    let r = s
        .put(
            "/_matrix/client/v3/directory/room/%23bobs:localhost",
            Some(&bob),
            json!({ "room_id": room }),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let r = s
        .put(
            "/_matrix/client/v3/directory/room/%23main:localhost",
            Some(&alice),
            json!({ "room_id": room }),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let r = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.canonical_alias/"),
            Some(&alice),
            json!({ "alias": "#main:localhost", "alt_aliases": ["#bobs:localhost"] }),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    // Bob (power 0) may not delete alice's alias.
    let r = s
        .delete(
            "/_matrix/client/v3/directory/room/%23main:localhost",
            Some(&bob),
            None,
        )
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");
    let r = s
        .delete(
            "/_matrix/client/v3/directory/room/%23bobs:localhost",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let r = s
        .delete(
            "/_matrix/client/v3/directory/room/%23main:localhost",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let (_, content) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.canonical_alias/"),
            Some(&alice),
        )
        .await;
    assert!(content.get("alias").is_none(), "{content}");
    assert_eq!(content["alt_aliases"], json!([]), "{content}");

    // A canonical alias event with no alternatives loses its alias too.
    let r = s
        .put(
            "/_matrix/client/v3/directory/room/%23solo:localhost",
            Some(&alice),
            json!({ "room_id": room }),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let r = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.canonical_alias/"),
            Some(&alice),
            json!({ "alias": "#solo:localhost" }),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let r = s
        .delete(
            "/_matrix/client/v3/directory/room/%23solo:localhost",
            Some(&alice),
            None,
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let (_, content) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.canonical_alias/"),
            Some(&alice),
        )
        .await;
    assert_eq!(content, json!({}), "{content}");
}

#[tokio::test]
async fn redacting_an_event_of_another_room_is_a_bad_request() {
    let s = TestServer::start().await;
    let (alice, _bob, room) = s.alice_and_bob_in_a_room().await;
    let (_, other) = s
        .post("/_matrix/client/v3/createRoom", Some(&alice), json!({}))
        .await;
    let other = other["room_id"].as_str().unwrap();
    let event = s
        .send_message(
            &alice,
            &room,
            "x1",
            json!({"msgtype": "m.text", "body": "x"}),
        )
        .await;
    let r = s
        .put(
            &format!("/_matrix/client/v3/rooms/{other}/redact/{event}/r1"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_error(&r, 400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn deleting_a_device_with_no_body_asks_for_authentication() {
    let s = TestServer::start().await;
    let (alice, device) = s.register("alice", "password-alice").await;
    let res = s
        .http
        .delete(format!("{}/_matrix/client/v3/devices/{device}", s.base))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
    let body: Value = res.json().await.unwrap();
    assert!(body["flows"].is_array(), "{body}");
}

#[tokio::test]
async fn a_new_display_name_reaches_the_rooms() {
    let s = TestServer::start().await;
    let (alice, bob, room) = s.alice_and_bob_in_a_room().await;
    let r = s
        .put(
            "/_matrix/client/v3/profile/@bob:localhost/displayname",
            Some(&bob),
            json!({ "displayname": "Robert" }),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let (status, member) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/@bob:localhost"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200, "{member}");
    assert_eq!(member["displayname"], "Robert");
    assert_eq!(member["membership"], "join");
    // Setting the same name again changes nothing in the room.
    let before = member_events(&s, &room, &alice).await;
    s.put(
        "/_matrix/client/v3/profile/@bob:localhost/displayname",
        Some(&bob),
        json!({ "displayname": "Robert" }),
    )
    .await;
    assert_eq!(member_events(&s, &room, &alice).await, before);
}

#[tokio::test]
async fn events_say_the_readers_membership_at_them() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let (_, res) = s
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            json!({ "preset": "public_chat", "initial_state": [{
                "type": "m.room.history_visibility", "state_key": "",
                "content": { "history_visibility": "world_readable" } }] }),
        )
        .await;
    let room = res["room_id"].as_str().unwrap().to_owned();
    let before = s
        .send_message(
            &alice,
            &room,
            "b1",
            json!({"msgtype": "m.text", "body": "before"}),
        )
        .await;
    let r = s
        .post(
            &format!("/_matrix/client/v3/join/{room}"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let after = s
        .send_message(
            &alice,
            &room,
            "a1",
            json!({"msgtype": "m.text", "body": "after"}),
        )
        .await;
    let (_, page) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50"),
            Some(&bob),
        )
        .await;
    let membership_at = |id: &str| {
        page["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["event_id"] == id)
            .map(|e| e["unsigned"]["membership"].clone())
            .unwrap_or_else(|| panic!("{id} not in {page}"))
    };
    assert_eq!(membership_at(&before), "leave");
    assert_eq!(membership_at(&after), "join");
}

#[tokio::test]
async fn a_json_filter_with_timeline_limit_zero() {
    let s = TestServer::start().await;
    let (alice, _bob, room) = s.alice_and_bob_in_a_room().await;
    let filter =
        json!({ "room": { "state": { "types": ["m.room.member"] }, "timeline": { "limit": 0 } } });
    let url = format!(
        "/_matrix/client/v3/sync?filter={}",
        url_escape(&filter.to_string())
    );
    let (status, res) = s.get(&url, Some(&alice)).await;
    assert_eq!(status, 200, "{res}");
    let joined = &res["rooms"]["join"][&room];
    assert_eq!(joined["timeline"]["events"], json!([]), "{res}");
    let state = joined["state"]["events"].as_array().unwrap();
    assert!(
        !state.is_empty() && state.iter().all(|e| e["type"] == "m.room.member"),
        "{res}"
    );
}

fn url_escape(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[tokio::test]
async fn availability_agrees_with_registration_and_sliding_sync_takes_no_body() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    // Registration lowercases names, so "Alice" is taken and "Newname" is free.
    let r = s
        .get("/_matrix/client/v3/register/available?username=Alice", None)
        .await;
    assert_error(&r, 400, "M_USER_IN_USE");
    let (status, res) = s
        .get(
            "/_matrix/client/v3/register/available?username=Newname",
            None,
        )
        .await;
    assert_eq!((status.as_u16(), &res["available"]), (200, &json!(true)));
    // Sliding sync with no body at all: an empty request, not M_NOT_JSON.
    let res = s
        .http
        .post(format!(
            "{}/_matrix/client/unstable/org.matrix.simplified_msc3575/sync",
            s.base
        ))
        .bearer_auth(&alice)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
}

#[tokio::test]
async fn inhibit_login_from_the_first_request_alone() {
    let s = TestServer::start().await;
    let (status, first) = s
        .post(
            "/_matrix/client/v3/register",
            None,
            json!({ "username": "ina", "password": "sUp3rs3kr1t", "inhibit_login": true }),
        )
        .await;
    assert_eq!(status, 401, "{first}");
    let (status, done) = s
        .post(
            "/_matrix/client/v3/register",
            None,
            json!({ "auth": { "type": "m.login.dummy", "session": first["session"] } }),
        )
        .await;
    assert_eq!(status, 200, "{done}");
    assert!(
        done.get("device_id").is_none() && done.get("access_token").is_none(),
        "{done}"
    );
}
