//! History across servers: a server joining a room late pages back through /messages
//! past its join, backfilling from the room's other server, and sees the whole history in
//! order, without gaps or repeats, down to the room's creation; before that, its
//! `timestamp_to_event` into history it does not hold asks the other server. An erased
//! user's events reach other servers redacted.

mod common;
#[path = "common/fake_remote.rs"]
mod fake_remote;
#[path = "common/federation.rs"]
mod federation;
#[path = "common/shared_room.rs"]
mod shared_room;

use fake_remote::FakeRemote;
use federation::start_federated;
use serde_json::json;

async fn late_joiner_backfills(version: &str) {
    let hs1 = start_federated(|_| {}).await;
    let hs2 = start_federated(|_| {}).await;
    let (alice, _) = hs1.register("alice", "correct horse battery").await;
    let (bob, _) = hs2.register("bob", "correct horse battery").await;
    let room = hs1
        .create_room(
            &alice,
            json!({"preset": "public_chat", "room_version": version, "name": "Archive"}),
        )
        .await;
    const MESSAGES: usize = 500;
    let mut midway = 0;
    for i in 0..MESSAGES {
        if i == MESSAGES / 2 {
            midway = axon::server::now_ms();
        }
        hs1.send_message(
            &alice,
            &room,
            &format!("m{i}"),
            json!({"msgtype": "m.text", "body": format!("message {i}")}),
        )
        .await;
    }
    let (status, body) = hs2.join_via(&bob, &room, &hs1.name()).await;
    assert_eq!(status, 200, "v{version}: {body}");

    // Nothing here before the join: hs2 asks hs1, whose answer it passes on.
    let path = format!("/_matrix/client/v1/rooms/{room}/timestamp_to_event?ts={midway}&dir=b");
    let (status, theirs) = hs1.get(&path, Some(&alice)).await;
    assert_eq!(status, 200, "v{version}: {theirs}");
    let (status, ours) = hs2.get(&path, Some(&bob)).await;
    assert_eq!(status, 200, "v{version}: {ours}");
    assert_eq!(ours["event_id"], theirs["event_id"], "v{version}");

    let events = hs2.history(&bob, &room).await;
    let bodies: Vec<&str> = events
        .iter()
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    let expected: Vec<String> = (0..MESSAGES)
        .rev()
        .map(|i| format!("message {i}"))
        .collect();
    assert_eq!(bodies, expected, "v{version}: history in order, complete");
    let ids: std::collections::HashSet<&str> = events
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert_eq!(ids.len(), events.len(), "v{version}: no event twice");
    assert_eq!(
        events.last().map(|e| e["type"].clone()),
        Some(json!("m.room.create")),
        "v{version}: paging ends at the room's creation"
    );
    // The same history on the server that made it.
    let theirs = hs1.history(&alice, &room).await;
    let their_ids: Vec<&str> = theirs
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    let our_ids: Vec<&str> = events
        .iter()
        .filter_map(|e| e["event_id"].as_str())
        .collect();
    assert_eq!(our_ids, their_ids, "v{version}");

    // A sync after the join shows no backfilled history as new.
    let (status, synced) = hs2
        .get("/_matrix/client/v3/sync?timeout=0", Some(&bob))
        .await;
    assert_eq!(status, 200);
    let timeline = synced["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(timeline.len() <= 20, "v{version}: {}", timeline.len());
}

#[tokio::test]
async fn late_joiner_backfills_history_v11() {
    late_joiner_backfills("11").await;
}

#[tokio::test]
async fn late_joiner_backfills_history_v12() {
    late_joiner_backfills("12").await;
}

/// After its sender deactivates with erasure, an event reaches other servers redacted
/// (`/event`, as Synapse serves it): its content is gone, its signatures stay.
#[tokio::test]
async fn an_erased_users_events_reach_other_servers_redacted() {
    let s = start_federated(|_| {}).await;
    let (token, _) = s.register("alice", "correct horse battery").await;
    let remote = FakeRemote::start().await;
    let room = shared_room::shared_room(&s, &token, &remote).await;
    let message = s
        .send_message(
            &token,
            &room.id,
            "e1",
            json!({"msgtype": "m.text", "body": "soon forgotten"}),
        )
        .await;
    let path = format!("/_matrix/federation/v1/event/{message}");
    let (status, before) = remote.request(&s, "GET", &path, None).await;
    assert_eq!(status, 200, "{before}");
    assert_eq!(before["pdus"][0]["content"]["body"], "soon forgotten");

    let deactivate = "/_matrix/client/v3/account/deactivate";
    let (status, body) = s
        .post(deactivate, Some(&token), json!({"erase": true}))
        .await;
    assert_eq!(status, 401, "{body}");
    let auth = json!({"type": "m.login.password", "session": body["session"],
                      "identifier": {"type": "m.id.user", "user": "alice"},
                      "password": "correct horse battery"});
    let (status, body) = s
        .post(
            deactivate,
            Some(&token),
            json!({"erase": true, "auth": auth}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let (status, after) = remote.request(&s, "GET", &path, None).await;
    assert_eq!(status, 200, "{after}");
    let event = &after["pdus"][0];
    assert!(event["content"].get("body").is_none(), "{after}");
    assert_eq!(event["type"], "m.room.message");
    assert!(event["signatures"][s.name()].is_object(), "{after}");
}
