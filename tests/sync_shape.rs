//! /sync as clients and sytest expect it from Synapse (issue 17): what a room newly joined
//! since the token brings, lazy-loaded members across incremental and gappy syncs, rooms
//! joined and left within one batch, presence of new room-mates, the state a rejoining
//! member must see, `prev_content`, the federation event format, and the room shape.

mod common;

use common::TestServer;
use serde_json::{Value, json};

async fn sync(s: &TestServer, token: &str, query: &str) -> Value {
    let (status, res) = s
        .get(&format!("/_matrix/client/v3/sync?{query}"), Some(token))
        .await;
    assert_eq!(status, 200, "{res}");
    res
}

fn filter(f: Value) -> String {
    format!("filter={}", urlencode(&f.to_string()))
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn public_room(s: &TestServer, token: &str) -> String {
    s.create_room(token, json!({ "preset": "public_chat" }))
        .await
}

async fn join(s: &TestServer, token: &str, room: &str) {
    s.join(token, room).await
}

async fn say(s: &TestServer, token: &str, room: &str, n: usize, prefix: &str) {
    for i in 0..n {
        s.send_message(
            token,
            room,
            &format!("{prefix}{i}"),
            json!({ "msgtype": "m.text", "body": format!("{prefix}{i}") }),
        )
        .await;
    }
}

/// The state_keys of the member events in a room's `state`.
fn state_members(room: &Value) -> Vec<String> {
    let mut members: Vec<String> = room["state"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no state in {room}"))
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| e["state_key"].as_str().unwrap().to_owned())
        .collect();
    members.sort();
    members
}

#[tokio::test]
async fn a_room_joined_since_the_token_brings_its_recent_history_and_is_limited() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let room = public_room(&s, &alice).await;
    say(&s, &alice, &room, 4, "before-").await;
    let first = sync(&s, &bob, "timeout=0").await;
    let since = first["next_batch"].as_str().unwrap();
    join(&s, &bob, &room).await;

    let res = sync(&s, &bob, &format!("since={since}&timeout=0")).await;
    let timeline = &res["rooms"]["join"][&room]["timeline"];
    let bodies: Vec<&str> = timeline["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(
        bodies,
        ["before-0", "before-1", "before-2", "before-3"],
        "{timeline}"
    );
    // Always limited, so that clients page back instead of taking this for the room.
    assert_eq!(timeline["limited"], true, "{timeline}");
    assert!(timeline["prev_batch"].is_string(), "{timeline}");
}

#[tokio::test]
async fn a_fresh_room_has_every_section_and_no_empty_typing() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let room = public_room(&s, &alice).await;
    let res = sync(&s, &alice, "timeout=0").await;
    let joined = &res["rooms"]["join"][&room];
    // The whole room is in the timeline: nothing is left for `state`, but it is there.
    assert_eq!(joined["state"]["events"], json!([]), "{joined}");
    assert_eq!(joined["ephemeral"]["events"], json!([]), "{joined}");
    assert_eq!(joined["account_data"]["events"], json!([]), "{joined}");
    assert_eq!(joined["timeline"]["limited"], false, "{joined}");
}

#[tokio::test]
async fn lazy_loading_sends_each_member_once_unless_redundant_members_are_asked_for() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let (carol, _) = s.register("carol", "password-carol").await;
    let room = public_room(&s, &alice).await;
    join(&s, &bob, &room).await;
    join(&s, &carol, &room).await;
    say(&s, &bob, &room, 3, "bob-").await;
    let lazy = filter(json!({
        "room": { "timeline": { "limit": 2 }, "state": { "lazy_load_members": true } }
    }));
    let redundant = filter(json!({
        "room": { "timeline": { "limit": 2 },
                  "state": { "lazy_load_members": true, "include_redundant_members": true } }
    }));

    // Initial: the timeline's sender and the user.
    let res = sync(&s, &alice, &format!("{lazy}&timeout=0")).await;
    assert_eq!(
        state_members(&res["rooms"]["join"][&room]),
        ["@alice:localhost", "@bob:localhost"],
    );
    let mut since = res["next_batch"].as_str().unwrap().to_owned();

    // Carol speaks: her member only (not the user's own again).
    say(&s, &carol, &room, 1, "carol-").await;
    let res = sync(&s, &alice, &format!("{lazy}&since={since}&timeout=0")).await;
    assert_eq!(
        state_members(&res["rooms"]["join"][&room]),
        ["@carol:localhost"]
    );
    // A response the client never acknowledged does not count: retried from the same
    // token (as after a lost response), carol's member comes again.
    let retried = sync(&s, &alice, &format!("{lazy}&since={since}&timeout=0")).await;
    assert_eq!(
        state_members(&retried["rooms"]["join"][&room]),
        ["@carol:localhost"]
    );
    since = res["next_batch"].as_str().unwrap().to_owned();

    // Bob and carol speak again: alice's device has both members already.
    say(&s, &bob, &room, 1, "bob-again-").await;
    say(&s, &carol, &room, 1, "carol-again-").await;
    let res = sync(&s, &alice, &format!("{lazy}&since={since}&timeout=0")).await;
    let joined = &res["rooms"]["join"][&room];
    assert_eq!(state_members(joined), Vec::<String>::new(), "{joined}");

    // Asking for redundant members gets them again.
    let res = sync(&s, &alice, &format!("{redundant}&since={since}&timeout=0")).await;
    assert_eq!(
        state_members(&res["rooms"]["join"][&room]),
        ["@bob:localhost", "@carol:localhost"],
    );

    let other_device = s.login_ok("alice", "password-alice").await.0;
    let res = sync(
        &s,
        &other_device,
        &format!("{lazy}&since={since}&timeout=0"),
    )
    .await;
    assert_eq!(
        state_members(&res["rooms"]["join"][&room]),
        ["@bob:localhost", "@carol:localhost"],
        "another device has been sent nothing"
    );
}

#[tokio::test]
async fn a_gappy_lazy_sync_includes_members_who_changed_in_the_gap() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let (dave, _) = s.register("dave", "password-dave").await;
    let room = public_room(&s, &alice).await;
    join(&s, &bob, &room).await;
    let lazy = filter(json!({
        "room": { "timeline": { "limit": 3 }, "state": { "lazy_load_members": true } }
    }));
    let res = sync(&s, &alice, &format!("{lazy}&timeout=0")).await;
    let since = res["next_batch"].as_str().unwrap().to_owned();
    join(&s, &dave, &room).await;
    s.post(
        &format!("/_matrix/client/v3/rooms/{room}/leave"),
        Some(&dave),
        json!({}),
    )
    .await;
    say(&s, &bob, &room, 6, "filler-").await;
    let res = sync(&s, &alice, &format!("{lazy}&since={since}&timeout=0")).await;
    let joined = &res["rooms"]["join"][&room];
    assert_eq!(joined["timeline"]["limited"], true, "{joined}");
    // Dave left in the gap; bob (the sender) was sent with the first sync already.
    assert_eq!(state_members(joined), ["@dave:localhost"], "{joined}");
    let dave_event = joined["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["state_key"] == "@dave:localhost")
        .unwrap();
    assert_eq!(dave_event["content"]["membership"], "leave");
}

#[tokio::test]
async fn a_room_joined_and_left_within_one_batch_comes_with_its_state() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let room = public_room(&s, &alice).await;
    let (status, _) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/a.madeup.test.state"),
            Some(&alice),
            json!({ "my_key": 1 }),
        )
        .await;
    assert_eq!(status, 200);
    let only_that_state = filter(json!({
        "room": { "timeline": { "types": [] }, "state": { "types": ["a.madeup.test.state"] },
                  "include_leave": true },
    }));
    let res = sync(&s, &bob, &format!("{only_that_state}&timeout=0")).await;
    let since = res["next_batch"].as_str().unwrap().to_owned();
    join(&s, &bob, &room).await;
    s.post(
        &format!("/_matrix/client/v3/rooms/{room}/leave"),
        Some(&bob),
        json!({}),
    )
    .await;
    let res = sync(
        &s,
        &bob,
        &format!("{only_that_state}&since={since}&timeout=0"),
    )
    .await;
    let left = &res["rooms"]["leave"][&room];
    let state = left["state"]["events"].as_array().unwrap();
    assert_eq!(state.len(), 1, "{left}");
    assert_eq!(state[0]["content"]["my_key"], 1, "{left}");
}

#[tokio::test]
async fn new_room_mates_presence_arrives_even_when_they_never_set_any() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let room = public_room(&s, &alice).await;
    // Bob's syncs do not make him online; alice never syncs at all.
    let res = sync(&s, &bob, "set_presence=offline&timeout=0").await;
    let since = res["next_batch"].as_str().unwrap().to_owned();
    join(&s, &bob, &room).await;
    let res = sync(
        &s,
        &bob,
        &format!("set_presence=offline&since={since}&timeout=0"),
    )
    .await;
    let alice_presence: Vec<&Value> = res["presence"]["events"]
        .as_array()
        .unwrap_or_else(|| panic!("no presence in {res}"))
        .iter()
        .filter(|e| e["sender"] == "@alice:localhost")
        .collect();
    assert_eq!(alice_presence.len(), 1, "{res}");
    assert_eq!(alice_presence[0]["content"]["presence"], "offline");
    // Once told, not again.
    let since = res["next_batch"].as_str().unwrap().to_owned();
    let res = sync(
        &s,
        &bob,
        &format!("set_presence=offline&since={since}&timeout=0"),
    )
    .await;
    assert!(
        res["presence"]["events"]
            .as_array()
            .is_none_or(|events| events.is_empty()),
        "{res}"
    );
}

#[tokio::test]
async fn a_rejoining_member_sees_the_current_state_they_missed() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let (carol, _) = s.register("carol", "password-carol").await;
    let room = public_room(&s, &alice).await;
    join(&s, &bob, &room).await;
    let (status, _) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.history_visibility"),
            Some(&alice),
            json!({ "history_visibility": "joined" }),
        )
        .await;
    assert_eq!(status, 200);
    let res = sync(&s, &bob, "timeout=0").await;
    let since = res["next_batch"].as_str().unwrap().to_owned();
    s.post(
        &format!("/_matrix/client/v3/rooms/{room}/leave"),
        Some(&bob),
        json!({}),
    )
    .await;
    join(&s, &carol, &room).await;
    say(&s, &alice, &room, 1, "unseen-").await;
    join(&s, &bob, &room).await;
    let res = sync(&s, &bob, &format!("since={since}&timeout=0")).await;
    let events = res["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap()
        .clone();
    assert!(
        events.iter().any(|e| e["type"] == "m.room.member"
            && e["state_key"] == "@carol:localhost"
            && e["content"]["membership"] == "join"),
        "carol's join is current state: {events:?}"
    );
    assert!(
        !events.iter().any(|e| e["content"]["body"] == "unseen-0"),
        "a message sent while bob was away stays hidden: {events:?}"
    );
}

#[tokio::test]
async fn a_rename_carries_the_previous_content() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let room = public_room(&s, &alice).await;
    let res = sync(&s, &alice, "timeout=0").await;
    let since = res["next_batch"].as_str().unwrap().to_owned();
    let (status, _) = s
        .put(
            "/_matrix/client/v3/profile/@alice:localhost/displayname",
            Some(&alice),
            json!({ "displayname": "Alice L" }),
        )
        .await;
    assert_eq!(status, 200);
    let res = sync(&s, &alice, &format!("since={since}&timeout=0")).await;
    let member = res["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.room.member")
        .unwrap_or_else(|| panic!("no member event in {res}"))
        .clone();
    assert_eq!(member["content"]["displayname"], "Alice L", "{member}");
    assert_eq!(
        member["unsigned"]["prev_content"],
        json!({ "membership": "join", "displayname": "alice" }),
        "{member}"
    );
    assert!(member["unsigned"]["replaces_state"].is_string(), "{member}");
    assert_eq!(member["unsigned"]["prev_sender"], "@alice:localhost");
}

#[tokio::test]
async fn the_federation_event_format_gives_pdus() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let room = public_room(&s, &alice).await;
    let event_id = s
        .send_message(
            &alice,
            &room,
            "t1",
            json!({ "msgtype": "m.text", "body": "pdu" }),
        )
        .await;
    let f = filter(json!({ "event_format": "federation", "room": { "timeline": { "limit": 1 } } }));
    let res = sync(&s, &alice, &format!("{f}&timeout=0")).await;
    let event = &res["rooms"]["join"][&room]["timeline"]["events"][0];
    assert_eq!(event["event_id"], event_id.as_str(), "{event}");
    assert_eq!(event["room_id"], room.as_str(), "{event}");
    for key in [
        "prev_events",
        "auth_events",
        "depth",
        "hashes",
        "signatures",
    ] {
        assert!(event.get(key).is_some(), "{key} missing from {event}");
    }
}

#[tokio::test]
async fn a_small_filtered_timeline_looks_past_other_events_and_next_batch_pages_forward() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let room = public_room(&s, &alice).await;
    let event_id = s
        .send_message(
            &alice,
            &room,
            "m",
            json!({ "msgtype": "m.text", "body": "the message" }),
        )
        .await;
    for i in 0..12 {
        let (status, _) = s
            .put(
                &format!("/_matrix/client/v3/rooms/{room}/send/a.made.up.filler.type/f{i}"),
                Some(&alice),
                json!({ "filler": i }),
            )
            .await;
        assert_eq!(status, 200);
    }
    let f = filter(json!({ "room": { "timeline": { "limit": 1, "types": ["m.room.message"] } } }));
    let res = sync(&s, &alice, &format!("{f}&timeout=0")).await;
    let events = res["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(events[0]["event_id"], event_id.as_str());

    // next_batch as a /messages token: forward from it comes what was sent after.
    let next = res["next_batch"].as_str().unwrap();
    let later = s
        .send_message(
            &alice,
            &room,
            "later",
            json!({ "msgtype": "m.text", "body": "later" }),
        )
        .await;
    let (status, page) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=f&from={next}"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["chunk"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["chunk"][0]["event_id"], later.as_str(), "{page}");
    assert!(page["end"].is_string(), "{page}");
}
