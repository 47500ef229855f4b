//! Room upgrades as clients follow them: to a version whose room IDs are random (1 to 11),
//! the new room's `predecessor` names the old room's tombstone, as Synapse does.

mod common;

use common::TestServer;
use serde_json::json;

#[tokio::test]
async fn an_upgrade_to_v11_links_the_new_room_to_the_tombstone() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (status, res) = s
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            json!({ "room_version": "10", "preset": "public_chat" }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let old = res["room_id"].as_str().unwrap().to_owned();
    let (status, res) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{old}/upgrade"),
            Some(&alice),
            json!({ "new_version": "11" }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let new = res["replacement_room"].as_str().unwrap().to_owned();

    let (_, tombstone) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{old}/state/m.room.tombstone?format=event"),
            Some(&alice),
        )
        .await;
    assert_eq!(tombstone["content"]["replacement_room"], new.as_str());
    let (_, create) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{new}/state/m.room.create"),
            Some(&alice),
        )
        .await;
    assert_eq!(create["room_version"], "11", "{create}");
    assert_eq!(
        create["predecessor"],
        json!({ "room_id": old, "event_id": tombstone["event_id"] }),
        "{create}"
    );
    // The new room works.
    let event = s
        .send_message(
            &alice,
            &new,
            "t1",
            json!({ "msgtype": "m.text", "body": "moved" }),
        )
        .await;
    assert!(event.starts_with('$'));
}

#[tokio::test]
async fn an_upgrade_carries_bans_aliases_direct_chats_and_tags() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let (status, res) = s
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            json!({ "preset": "public_chat", "room_alias_name": "lounge" }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let old = res["room_id"].as_str().unwrap().to_owned();
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{old}/ban"),
            Some(&alice),
            json!({ "user_id": "@mallory:localhost", "reason": "spam" }),
        )
        .await;
    assert_eq!(status, 200);
    // Bob is in the room, has it as a direct chat and tagged.
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/join/{old}"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .put(
            "/_matrix/client/v3/user/@bob:localhost/account_data/m.direct",
            Some(&bob),
            json!({ "@alice:localhost": [old] }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .put(
            &format!("/_matrix/client/v3/user/@bob:localhost/rooms/{old}/tags/m.favourite"),
            Some(&bob),
            json!({ "order": 0.5 }),
        )
        .await;
    assert_eq!(status, 200);

    let (status, res) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{old}/upgrade"),
            Some(&alice),
            json!({ "new_version": "11" }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let new = res["replacement_room"].as_str().unwrap().to_owned();
    let state = |room: String, path: &'static str| {
        let s = &s;
        let alice = alice.clone();
        async move {
            s.get(
                &format!("/_matrix/client/v3/rooms/{room}/state/{path}"),
                Some(&alice),
            )
            .await
        }
    };
    let (_, ban) = state(new.clone(), "m.room.member/@mallory:localhost").await;
    assert_eq!(ban, json!({ "membership": "ban", "reason": "spam" }));
    let (_, alias) = state(new.clone(), "m.room.canonical_alias").await;
    assert_eq!(alias["alias"], "#lounge:localhost");
    let (_, cleared) = state(old.clone(), "m.room.canonical_alias").await;
    assert_eq!(cleared, json!({}), "the old room lets the alias go");
    let (status, _) = state(new.clone(), "m.room.guest_access").await;
    assert_eq!(
        status, 200,
        "the private preset under the copied state adds guest access"
    );
    let (_, resolved) = s
        .get(
            "/_matrix/client/v3/directory/room/%23lounge:localhost",
            None,
        )
        .await;
    assert_eq!(resolved["room_id"], new.as_str());

    // Bob follows the tombstone: his direct chat and tag come along.
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/join/{new}"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let (_, direct) = s
        .get(
            "/_matrix/client/v3/user/@bob:localhost/account_data/m.direct",
            Some(&bob),
        )
        .await;
    assert_eq!(direct, json!({ "@alice:localhost": [old, new] }));
    let (_, tags) = s
        .get(
            &format!("/_matrix/client/v3/user/@bob:localhost/rooms/{new}/tags"),
            Some(&bob),
        )
        .await;
    assert_eq!(tags["tags"]["m.favourite"]["order"], 0.5, "{tags}");
}

#[tokio::test]
async fn a_malformed_room_version_is_an_unsupported_one() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let res = s
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            json!({ "room_version": "my_bad_version" }),
        )
        .await;
    common::assert_error(&res, 400, "M_UNSUPPORTED_ROOM_VERSION");
    let (_, created) = s
        .post("/_matrix/client/v3/createRoom", Some(&alice), json!({}))
        .await;
    let room = created["room_id"].as_str().unwrap();
    for version in ["my_bad_version", "99"] {
        let res = s
            .post(
                &format!("/_matrix/client/v3/rooms/{room}/upgrade"),
                Some(&alice),
                json!({ "new_version": version }),
            )
            .await;
        common::assert_error(&res, 400, "M_UNSUPPORTED_ROOM_VERSION");
    }
}
