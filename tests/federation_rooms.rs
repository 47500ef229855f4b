//! Two axon servers on the bench sharing rooms: bob on hs2 joins alice's room on hs1
//! (make_join / send_join, the room's state checked and adopted), messages flow both
//! ways through the queue and `/send`, and a message sent while hs2 was down reaches it
//! once it is back.

mod common;
#[path = "common/federation.rs"]
mod federation;

use std::time::Duration;

use common::{TestServer, assert_error};
use federation::start_federated;
use serde_json::{Value, json};

async fn joined(s: &TestServer, token: &str, room: &str) -> Value {
    let (status, members) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/joined_members"),
            Some(token),
        )
        .await;
    assert_eq!(status, 200, "{members}");
    members["joined"].clone()
}

async fn share_a_room(version: &str) {
    let hs1 = start_federated(|_| {}).await;
    let hs2 = start_federated(|_| {}).await;
    let (alice, _) = hs1.register("alice", "correct horse battery").await;
    let (bob, _) = hs2.register("bob", "correct horse battery").await;
    let room = hs1
        .create_room(
            &alice,
            json!({"preset": "public_chat", "room_version": version, "name": "Lobby"}),
        )
        .await;
    let alice_id = format!("@alice:{}", hs1.name());
    let bob_id = format!("@bob:{}", hs2.name());

    // bob joins through hs1 (room v12 IDs name no server: `via` says where).
    let (status, body) = hs2.join_via(&bob, &room, &hs1.name()).await;
    assert_eq!(status, 200, "v{version}: {body}");
    assert_eq!(body["room_id"], room.as_str());
    let (status, name) = hs2
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"),
            Some(&bob),
        )
        .await;
    assert_eq!(status, 200, "v{version}: {name}");
    assert_eq!(name["name"], "Lobby");
    for (s, token) in [(&hs1, &alice), (&hs2, &bob)] {
        let members = joined(s, token, &room).await;
        assert!(members[&alice_id].is_object(), "v{version}: {members}");
        assert!(members[&bob_id].is_object(), "v{version}: {members}");
    }

    // Messages both ways.
    hs1.send_message(
        &alice,
        &room,
        "a1",
        json!({"msgtype": "m.text", "body": "hello bob"}),
    )
    .await;
    assert_eq!(hs2.arrives(&bob, &room, "hello bob").await, 1, "v{version}");
    hs2.send_message(
        &bob,
        &room,
        "b1",
        json!({"msgtype": "m.text", "body": "hello alice"}),
    )
    .await;
    assert_eq!(
        hs1.arrives(&alice, &room, "hello alice").await,
        1,
        "v{version}"
    );

    // hs2 goes down; alice goes on; hs2 comes back and hears of it, once.
    let mut hs2 = hs2;
    hs2.shut_down().await;
    hs1.send_message(
        &alice,
        &room,
        "a2",
        json!({"msgtype": "m.text", "body": "while you were away"}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let hs2 = hs2.restart().await;
    // bob speaks: hs1 hears from hs2, so its queue for hs2 goes at once.
    hs2.send_message(
        &bob,
        &room,
        "b2",
        json!({"msgtype": "m.text", "body": "back"}),
    )
    .await;
    assert_eq!(hs1.arrives(&alice, &room, "back").await, 1, "v{version}");
    assert_eq!(
        hs2.arrives(&bob, &room, "while you were away").await,
        1,
        "v{version}: the message sent while hs2 was down"
    );
}

#[tokio::test]
async fn a_user_of_another_axon_joins_and_they_talk_room_v11() {
    share_a_room("11").await;
}

#[tokio::test]
async fn a_user_of_another_axon_joins_and_they_talk_room_v12() {
    share_a_room("12").await;
}

/// Every room version axon speaks, joined across servers and talked in both ways.
#[tokio::test]
async fn every_room_version_is_joined_across_servers() {
    let hs1 = start_federated(|_| {}).await;
    let hs2 = start_federated(|_| {}).await;
    let (alice, _) = hs1.register("alice", "correct horse battery").await;
    let (bob, _) = hs2.register("bob", "correct horse battery").await;
    for version in 1..=12 {
        let room = hs1
            .create_room(
                &alice,
                json!({"preset": "public_chat", "room_version": version.to_string()}),
            )
            .await;
        let (status, body) = hs2.join_via(&bob, &room, &hs1.name()).await;
        assert_eq!(status, 200, "v{version}: {body}");
        let hello = format!("hello in v{version}");
        hs1.send_message(
            &alice,
            &room,
            &format!("a{version}"),
            json!({"msgtype": "m.text", "body": hello}),
        )
        .await;
        assert_eq!(hs2.arrives(&bob, &room, &hello).await, 1, "v{version}");
        let reply = format!("reply in v{version}");
        hs2.send_message(
            &bob,
            &room,
            &format!("b{version}"),
            json!({"msgtype": "m.text", "body": reply}),
        )
        .await;
        assert_eq!(hs1.arrives(&alice, &room, &reply).await, 1, "v{version}");
    }
}

#[tokio::test]
async fn a_remote_join_the_room_refuses_leaves_nothing_behind() {
    let hs1 = start_federated(|_| {}).await;
    let hs2 = start_federated(|_| {}).await;
    let (alice, _) = hs1.register("alice", "correct horse battery").await;
    let (bob, _) = hs2.register("bob", "correct horse battery").await;
    let private = hs1
        .create_room(
            &alice,
            json!({"preset": "private_chat", "room_version": "11"}),
        )
        .await;
    let (status, body) = hs2.join_via(&bob, &private, &hs1.name()).await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(body["errcode"], "M_FORBIDDEN");
    assert!(hs2.hs.storage.room(&private).await.unwrap().is_none());

    // A room no server knows, and a room with no server to ask.
    let unknown = format!("!nothing:{}", hs1.name());
    let (status, body) = hs2
        .post(
            &format!("/_matrix/client/v3/join/{unknown}"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = hs2
        .post(
            &format!("/_matrix/client/v3/join/!nothing:{}", hs2.name()),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
    // A remote alias that does not exist.
    let (status, body) = hs2
        .post(
            &format!("/_matrix/client/v3/join/%23nope:{}", hs1.name()),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 404, "{body}");
}

/// The room directory of another server: listed with `server=` when that server shares
/// it (GET, and POST with a search term), refused when it does not.
#[tokio::test]
async fn public_rooms_of_another_server() {
    let hs1 = start_federated(|env| {
        env.insert("AXON_FEDERATION__PUBLIC_ROOMS".into(), "true".into());
    })
    .await;
    let hs2 = start_federated(|_| {}).await;
    let (alice, _) = hs1.register("alice", "correct horse battery").await;
    let (bob, _) = hs2.register("bob", "correct horse battery").await;
    let listed = hs1
        .create_room(
            &alice,
            json!({"preset": "public_chat", "visibility": "public", "name": "Town square",
                   "room_alias_name": "square"}),
        )
        .await;
    hs1.create_room(
        &alice,
        json!({"preset": "public_chat", "visibility": "public", "name": "Back alley"}),
    )
    .await;
    hs1.create_room(
        &alice,
        json!({"preset": "private_chat", "name": "Unlisted"}),
    )
    .await;

    let (status, body) = hs2
        .get(
            &format!("/_matrix/client/v3/publicRooms?server={}", hs1.name()),
            Some(&bob),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut names: Vec<&str> = body["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["name"].as_str())
        .collect();
    names.sort();
    assert_eq!(names, ["Back alley", "Town square"], "{body}");
    let (status, body) = hs2
        .post(
            &format!("/_matrix/client/v3/publicRooms?server={}", hs1.name()),
            Some(&bob),
            json!({"filter": {"generic_search_term": "town"}, "limit": 10}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let found: Vec<&str> = body["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["room_id"].as_str())
        .collect();
    assert_eq!(found, [listed.as_str()], "{body}");

    // The room's alias, resolved through hs1 (`/query/directory`).
    let (status, body) = hs2
        .get(
            &format!("/_matrix/client/v3/directory/room/%23square:{}", hs1.name()),
            Some(&bob),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room_id"], listed.as_str());
    assert_eq!(body["servers"][0], hs1.name().as_str());
    let answer = hs2
        .get(
            &format!(
                "/_matrix/client/v3/directory/room/%23nowhere:{}",
                hs1.name()
            ),
            Some(&bob),
        )
        .await;
    assert_error(&answer, 404, "M_NOT_FOUND");

    // hs2 does not share its list (the default).
    let answer = hs1
        .get(
            &format!("/_matrix/client/v3/publicRooms?server={}", hs2.name()),
            Some(&alice),
        )
        .await;
    assert_error(&answer, 403, "M_FORBIDDEN");
}

/// A server whose users all left a room joins it again through the servers still in it:
/// the state it missed meanwhile (a new name) is current there after, and messages flow.
#[tokio::test]
async fn rejoining_a_room_this_server_left() {
    let hs1 = start_federated(|_| {}).await;
    let hs2 = start_federated(|_| {}).await;
    let (alice, _) = hs1.register("alice", "correct horse battery").await;
    let (bob, _) = hs2.register("bob", "correct horse battery").await;
    let bob_id = format!("@bob:{}", hs2.name());
    let room = hs1
        .create_room(&alice, json!({"preset": "public_chat", "name": "Before"}))
        .await;
    let join = format!("/_matrix/client/v3/join/{room}?via={}", hs1.name());
    let (status, body) = hs2.post(&join, Some(&bob), json!({})).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = hs2
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/leave"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    for _ in 0..100 {
        if joined(&hs1, &alice, &room).await[&bob_id].is_null() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(joined(&hs1, &alice, &room).await[&bob_id].is_null());

    let (status, body) = hs1
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"),
            Some(&alice),
            json!({"name": "After"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    hs1.send_message(
        &alice,
        &room,
        "a1",
        json!({"msgtype": "m.text", "body": "while away"}),
    )
    .await;

    // No `via`: hs2 still knows which servers were in the room.
    let (status, body) = hs2
        .post(
            &format!("/_matrix/client/v3/join/{room}"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, name) = hs2
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"),
            Some(&bob),
        )
        .await;
    assert_eq!(status, 200, "{name}");
    assert_eq!(name["name"], "After");
    hs2.send_message(
        &bob,
        &room,
        "b1",
        json!({"msgtype": "m.text", "body": "back again"}),
    )
    .await;
    assert_eq!(hs1.arrives(&alice, &room, "back again").await, 1);
    hs1.send_message(
        &alice,
        &room,
        "a2",
        json!({"msgtype": "m.text", "body": "welcome back"}),
    )
    .await;
    assert_eq!(hs2.arrives(&bob, &room, "welcome back").await, 1);
}

/// A space on hs1 seen from hs2, which holds none of its rooms: the hierarchy and room
/// summaries come from hs1 (`/hierarchy` over federation); a private child stays hidden.
#[tokio::test]
async fn spaces_of_another_server() {
    let hs1 = start_federated(|_| {}).await;
    let hs2 = start_federated(|_| {}).await;
    let (alice, _) = hs1.register("alice", "correct horse battery").await;
    let (bob, _) = hs2.register("bob", "correct horse battery").await;
    let space = hs1
        .create_room(
            &alice,
            json!({"preset": "public_chat", "room_version": "11", "name": "Club",
                   "creation_content": {"type": "m.space"}}),
        )
        .await;
    let chat = hs1
        .create_room(&alice, json!({"preset": "public_chat", "name": "Chat"}))
        .await;
    let secret = hs1
        .create_room(&alice, json!({"preset": "private_chat", "name": "Secret"}))
        .await;
    for child in [&chat, &secret] {
        let (status, body) = hs1
            .put(
                &format!("/_matrix/client/v3/rooms/{space}/state/m.space.child/{child}"),
                Some(&alice),
                json!({"via": [hs1.name()]}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    let (status, body) = hs2
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
        .filter_map(|r| r["name"].as_str())
        .collect();
    assert_eq!(names, ["Club", "Chat"], "{body}");
    assert_eq!(
        body["rooms"][0]["children_state"].as_array().map(Vec::len),
        Some(2),
        "{body}"
    );

    let (status, body) = hs2
        .get(
            &format!("/_matrix/client/v1/room_summary/{chat}?via={}", hs1.name()),
            Some(&bob),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["name"], "Chat");
    let answer = hs2
        .get(
            &format!(
                "/_matrix/client/v1/room_summary/{secret}?via={}",
                hs1.name()
            ),
            Some(&bob),
        )
        .await;
    assert_error(&answer, 404, "M_NOT_FOUND");
}

/// A room upgraded on hs1 is followed from hs2: the tombstone applies there, and bob
/// joins the new room by its ID alone; his sliding sync lists it with the message alice
/// sends there.
#[tokio::test]
async fn an_upgrade_on_another_server_is_followed() {
    let hs1 = start_federated(|_| {}).await;
    let hs2 = start_federated(|_| {}).await;
    let (alice, _) = hs1.register("alice", "correct horse battery").await;
    let (bob, _) = hs2.register("bob", "correct horse battery").await;
    let old = hs1
        .create_room(
            &alice,
            json!({"preset": "public_chat", "room_version": "10"}),
        )
        .await;
    let (status, body) = hs2.join_via(&bob, &old, &hs1.name()).await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = hs1
        .post(
            &format!("/_matrix/client/v3/rooms/{old}/upgrade"),
            Some(&alice),
            json!({"new_version": "11"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let new = body["replacement_room"].as_str().unwrap().to_owned();
    let mut tombstone = serde_json::Value::Null;
    for _ in 0..100 {
        let (status, body) = hs2
            .get(
                &format!("/_matrix/client/v3/rooms/{old}/state/m.room.tombstone/"),
                Some(&bob),
            )
            .await;
        if status == 200 {
            tombstone = body;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(tombstone["replacement_room"], new.as_str(), "{tombstone}");
    // No `via`: the new room's ID names hs1.
    let (status, body) = hs2
        .post(
            &format!("/_matrix/client/v3/join/{new}"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    hs1.send_message(
        &alice,
        &new,
        "n1",
        json!({"msgtype": "m.text", "body": "new home"}),
    )
    .await;
    assert_eq!(hs2.arrives(&bob, &new, "new home").await, 1);
    let (status, body) = hs2
        .post(
            "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync?timeout=0",
            Some(&bob),
            json!({"lists": {"all": {"ranges": [[0, 10]], "timeline_limit": 5}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let listed = body["rooms"][&new]["timeline"].to_string();
    assert!(listed.contains("new home"), "{body}");
}
