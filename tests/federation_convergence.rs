//! Three axon servers in one room: concurrent changes on all of them fork the DAG, and
//! every server ends with the same current state; a server that was down catches up
//! with every message in order and no gap in /messages; a user leaves a room whose other
//! servers are all down.

mod common;
#[path = "common/federation.rs"]
mod federation;

use std::time::Duration;

use common::TestServer;
use federation::start_federated;
use serde_json::{Value, json};

/// The room's current state as `(type, state_key) -> content`, sorted.
async fn state(s: &TestServer, token: &str, room: &str) -> Vec<(String, String, Value)> {
    let (status, body) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state"),
            Some(token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut all: Vec<(String, String, Value)> = body
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["state_key"].as_str().unwrap().to_owned(),
                e["content"].clone(),
            )
        })
        .collect();
    all.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    all
}

async fn join(s: &TestServer, token: &str, room: &str, via: &str) {
    let (status, body) = s.join_via(token, room, via).await;
    assert_eq!(status, 200, "{body}");
}

async fn set_state(s: &TestServer, token: &str, room: &str, kind: &str, content: Value) {
    let (status, body) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/{kind}/"),
            Some(token),
            content,
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn three_servers_converge_and_catch_up() {
    let hs1 = start_federated(|_| {}).await;
    let mut hs2 = start_federated(|_| {}).await;
    let hs3 = start_federated(|_| {}).await;
    let (alice, _) = hs1.register("alice", "correct horse battery").await;
    let (bob, _) = hs2.register("bob", "correct horse battery").await;
    let (charlie, _) = hs3.register("charlie", "correct horse battery").await;
    let room = hs1
        .create_room(
            &alice,
            json!({"preset": "public_chat", "room_version": "11",
                   "power_level_content_override": {"state_default": 0, "events_default": 0,
                       "events": {"m.room.name": 0, "m.room.topic": 0}}}),
        )
        .await;
    join(&hs2, &bob, &room, &hs1.name()).await;
    join(&hs3, &charlie, &room, &hs1.name()).await;
    // Everyone sees everyone joined before the race.
    for _ in 0..100 {
        let mut all = true;
        for (s, token) in [(&hs1, &alice), (&hs2, &bob), (&hs3, &charlie)] {
            let (_, members) = s
                .get(
                    &format!("/_matrix/client/v3/rooms/{room}/joined_members"),
                    Some(token),
                )
                .await;
            all &= members["joined"].as_object().map(|m| m.len()) == Some(3);
        }
        if all {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // All three change the room at once: the same keys on each side.
    let race = [
        (&hs1, &alice, "one"),
        (&hs2, &bob, "two"),
        (&hs3, &charlie, "three"),
    ];
    let mut sends = Vec::new();
    for (s, token, word) in race {
        let room = room.clone();
        sends.push(async move {
            set_state(
                s,
                token,
                &room,
                "m.room.name",
                json!({"name": format!("name {word}")}),
            )
            .await;
            set_state(
                s,
                token,
                &room,
                "m.room.topic",
                json!({"topic": format!("topic {word}")}),
            )
            .await;
            s.send_message(
                token,
                &room,
                &format!("race-{word}"),
                json!({"msgtype": "m.text", "body": format!("from {word}")}),
            )
            .await;
        });
    }
    futures_util::future::join_all(sends).await;

    // Every server ends with every message and the same state.
    let mut converged = false;
    for _ in 0..150 {
        let s1 = state(&hs1, &alice, &room).await;
        let s2 = state(&hs2, &bob, &room).await;
        let s3 = state(&hs3, &charlie, &room).await;
        let all_messages = [(&hs1, &alice), (&hs2, &bob), (&hs3, &charlie)];
        let mut complete = true;
        for (s, token) in all_messages {
            let seen = s.bodies(token, &room).await;
            complete &= ["from one", "from two", "from three"]
                .iter()
                .all(|b| seen.iter().any(|x| x == b));
        }
        if complete && s1 == s2 && s2 == s3 {
            converged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        converged,
        "the servers disagree:\nhs1 {:?}\nhs2 {:?}\nhs3 {:?}",
        state(&hs1, &alice, &room).await,
        state(&hs2, &bob, &room).await,
        state(&hs3, &charlie, &room).await
    );

    // hs2 is down while alice and charlie talk; back up, it has it all, in order.
    hs2.shut_down().await;
    let mut sent = Vec::new();
    for i in 0..10 {
        let (s, token, who) = if i % 2 == 0 {
            (&hs1, &alice, "alice")
        } else {
            (&hs3, &charlie, "charlie")
        };
        let body = format!("{who} {i}");
        s.send_message(
            token,
            &room,
            &format!("away-{i}"),
            json!({"msgtype": "m.text", "body": body}),
        )
        .await;
        sent.push(body);
        // Each waits for the last to reach the other, so the order is one order.
        let other = if i % 2 == 0 {
            (&hs3, &charlie)
        } else {
            (&hs1, &alice)
        };
        for _ in 0..100 {
            if other
                .0
                .bodies(other.1, &room)
                .await
                .contains(sent.last().unwrap())
            {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    let hs2 = hs2.restart().await;
    let mut caught_up = Vec::new();
    for _ in 0..200 {
        caught_up = hs2.bodies(&bob, &room).await;
        caught_up.reverse();
        if sent.iter().all(|b| caught_up.contains(b)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let away: Vec<&String> = caught_up.iter().filter(|b| sent.contains(b)).collect();
    assert_eq!(
        away,
        sent.iter().collect::<Vec<_>>(),
        "hs2 has every message, in order"
    );

    // With hs1 and hs3 down, bob still leaves.
    drop(hs1);
    drop(hs3);
    let (status, body) = hs2
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/leave"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = hs2.get("/_matrix/client/v3/joined_rooms", Some(&bob)).await;
    assert_eq!(status, 200);
    assert_eq!(body["joined_rooms"], json!([]), "{body}");
}
