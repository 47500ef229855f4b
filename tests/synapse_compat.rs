//! What Synapse does beyond the letter of the spec that clients and sytest rely on, for
//! reading and writing rooms (issue 17): ignored users, sends without a transaction ID,
//! unset profile fields, custom join content, /context's filter, erased users' events.

mod common;

use common::{TestServer, assert_error};
use serde_json::json;

#[tokio::test]
async fn ignored_users_events_and_invites_stay_out_of_sync_and_messages() {
    let s = TestServer::start().await;
    let (alice, bob, room) = s.alice_and_bob_in_a_room().await;
    let (carol, _) = s.register("carol", "password-carol").await;
    s.send_message(
        &bob,
        &room,
        "b1",
        json!({"msgtype": "m.text", "body": "from bob"}),
    )
    .await;
    s.send_message(
        &alice,
        &room,
        "a1",
        json!({"msgtype": "m.text", "body": "from alice"}),
    )
    .await;
    let (status, _) = s
        .put(
            "/_matrix/client/v3/user/@alice:localhost/account_data/m.ignored_user_list",
            Some(&alice),
            json!({ "ignored_users": { "@bob:localhost": {}, "@carol:localhost": {} } }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, res) = s
        .post("/_matrix/client/v3/createRoom", Some(&carol), json!({}))
        .await;
    let carols_room = res["room_id"].as_str().unwrap().to_owned();
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{carols_room}/invite"),
            Some(&carol),
            json!({ "user_id": "@alice:localhost" }),
        )
        .await;
    assert_eq!(status, 200);

    let (status, res) = s
        .get("/_matrix/client/v3/sync?timeout=0", Some(&alice))
        .await;
    assert_eq!(status, 200, "{res}");
    let events = res["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap();
    let bodies: Vec<&str> = events
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(bodies, ["from alice"], "{events:?}");
    // Bob's membership is state: it stays.
    assert!(
        events
            .iter()
            .any(|e| e["type"] == "m.room.member" && e["state_key"] == "@bob:localhost"),
        "{events:?}"
    );
    assert!(
        res["rooms"]["invite"].get(&carols_room).is_none(),
        "an ignored user's invite: {res}"
    );
    let (status, page) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=20"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert!(
        !page["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["content"]["body"] == "from bob"),
        "{page}"
    );
    // Bob still sees his own message.
    let (_, page) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=20"),
            Some(&bob),
        )
        .await;
    assert!(
        page["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["content"]["body"] == "from bob")
    );
}

#[tokio::test]
async fn a_message_posted_without_a_transaction_id_is_sent() {
    let s = TestServer::start().await;
    let (alice, _bob, room) = s.alice_and_bob_in_a_room().await;
    let (status, res) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message"),
            Some(&alice),
            json!({ "msgtype": "m.text", "body": "posted" }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let event_id = res["event_id"].as_str().unwrap();
    let (status, event) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/event/{event_id}"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["content"]["body"], "posted");
    // Content must be an object.
    let res = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message"),
            Some(&alice),
            json!(["not", "an", "object"]),
        )
        .await;
    assert_error(&res, 400, "M_BAD_JSON");
    let res = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message"),
            None,
            json!({}),
        )
        .await;
    assert_error(&res, 401, "M_MISSING_TOKEN");
    // Someone outside the room may not send.
    let (carol, _) = s.register("carol", "password-carol").await;
    let res = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message"),
            Some(&carol),
            json!({ "msgtype": "m.text", "body": "intruder" }),
        )
        .await;
    assert_error(&res, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn unset_display_name_and_avatar_answer_empty_and_any_avatar_string_is_kept() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (status, res) = s
        .get(
            "/_matrix/client/v3/profile/@alice:localhost/avatar_url",
            Some(&alice),
        )
        .await;
    assert_eq!((status.as_u16(), &res), (200, &json!({})));
    let (status, _) = s
        .put(
            "/_matrix/client/v3/profile/@alice:localhost/avatar_url",
            Some(&alice),
            json!({ "avatar_url": "LemurLover" }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, res) = s
        .get(
            "/_matrix/client/v3/profile/@alice:localhost/avatar_url",
            Some(&alice),
        )
        .await;
    assert_eq!(res["avatar_url"], "LemurLover");
    let res = s
        .put(
            "/_matrix/client/v3/profile/@alice:localhost/avatar_url",
            Some(&alice),
            json!({ "avatar_url": "x".repeat(1001) }),
        )
        .await;
    assert_error(&res, 400, "M_INVALID_PARAM");
    // Other fields that were never set are not found.
    let res = s
        .get(
            "/_matrix/client/v3/profile/@alice:localhost/m.tz",
            Some(&alice),
        )
        .await;
    assert_error(&res, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn custom_content_of_a_join_is_kept_in_the_member_event() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let (_, res) = s
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            json!({ "preset": "public_chat" }),
        )
        .await;
    let room = res["room_id"].as_str().unwrap().to_owned();
    let (status, res) = s
        .post(
            &format!("/_matrix/client/v3/join/{room}"),
            Some(&bob),
            json!({ "foo": "bar", "membership": "leave", "reason": "hello" }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let (_, member) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/@bob:localhost"),
            Some(&bob),
        )
        .await;
    assert_eq!(member["foo"], "bar", "{member}");
    assert_eq!(member["membership"], "join", "{member}");
    assert_eq!(member["reason"], "hello", "{member}");
    assert_eq!(member["displayname"], "bob", "{member}");
}

#[tokio::test]
async fn context_applies_its_filter_and_lazy_loads_members() {
    let s = TestServer::start().await;
    let (alice, bob, room) = s.alice_and_bob_in_a_room().await;
    let (carol, _) = s.register("carol", "password-carol").await;
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/join/{room}"),
            Some(&carol),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    s.send_message(
        &alice,
        &room,
        "c1",
        json!({"msgtype": "m.text", "body": "one"}),
    )
    .await;
    let (status, _) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/org.example.other/c2"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let target = s
        .send_message(
            &alice,
            &room,
            "c3",
            json!({"msgtype": "m.text", "body": "three"}),
        )
        .await;
    let filter = "%7B%22lazy_load_members%22%3Atrue%2C%22types%22%3A%5B%22m.room.message%22%5D%7D";
    let (status, res) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/context/{target}?limit=4&filter={filter}"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let before: Vec<&str> = res["events_before"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(before, ["m.room.message"], "{res}");
    let members: Vec<&str> = res["state"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| e["state_key"].as_str().unwrap())
        .collect();
    assert_eq!(members, ["@alice:localhost"], "{res}");
    assert!(
        res["state"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.room.create"),
        "the rest of the state stays"
    );
}

#[tokio::test]
async fn an_erased_users_messages_reach_only_those_who_were_there() {
    let s = TestServer::start().await;
    let (alice, bob, room) = s.alice_and_bob_in_a_room().await;
    let message = s
        .send_message(
            &alice,
            &room,
            "e1",
            json!({"msgtype": "m.text", "body": "mine"}),
        )
        .await;
    let (status, res) = s
        .post(
            "/_matrix/client/v3/account/deactivate",
            Some(&alice),
            json!({ "erase": true, "auth": { "type": "m.login.password",
                    "identifier": { "type": "m.id.user", "user": "alice" },
                    "password": "password-alice" } }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let (carol, _) = s.register("carol", "password-carol").await;
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/join/{room}"),
            Some(&carol),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let content_for = |token: String| {
        let s = &s;
        let room = room.clone();
        let message = message.clone();
        async move {
            let (status, res) = s
                .get(
                    &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50"),
                    Some(&token),
                )
                .await;
            assert_eq!(status, 200, "{res}");
            res["chunk"]
                .as_array()
                .unwrap()
                .iter()
                .find(|e| e["event_id"] == message.as_str())
                .unwrap_or_else(|| panic!("the message is listed: {res}"))["content"]
                .clone()
        }
    };
    assert_eq!(content_for(bob).await["body"], "mine", "bob was there");
    assert_eq!(content_for(carol).await, json!({}), "carol came after");
}
