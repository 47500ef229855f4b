//! The deprecated sync endpoints older clients and tools still call: `/initialSync`,
//! `/events` (waiting for what comes next), `/rooms/{roomId}/initialSync` (for members,
//! and peeking into a world-readable room) and `/events/{eventId}`, with their refusals.

mod common;

use common::{TestServer, assert_error};
use serde_json::{Value, json};

fn bodies(events: &Value) -> Vec<String> {
    events
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}

#[tokio::test]
async fn initial_sync_events_and_room_initial_sync() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "correct horse battery").await;
    let (bob, _) = s.register("bob", "correct horse battery").await;
    let room = s
        .create_room(&alice, json!({"preset": "private_chat", "name": "Den"}))
        .await;
    let first = s
        .send_message(
            &alice,
            &room,
            "t1",
            json!({"msgtype": "m.text", "body": "one"}),
        )
        .await;

    let (status, initial) = s
        .get("/_matrix/client/v3/initialSync?limit=5", Some(&alice))
        .await;
    assert_eq!(status, 200, "{initial}");
    let entry = initial["rooms"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["room_id"] == room.as_str())
        .cloned()
        .unwrap_or_else(|| panic!("no room in {initial}"));
    assert_eq!(entry["membership"], "join");
    // The version 1 event format: the sender also as `user_id`.
    let own = entry["state"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == "@alice:localhost")
        .cloned()
        .unwrap();
    assert_eq!(own["user_id"], "@alice:localhost");
    assert!(initial["receipts"].is_array(), "{initial}");
    assert!(
        !initial["account_data"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "m.push_rules"),
        "{initial}"
    );
    assert_eq!(entry["visibility"], "private");
    assert!(bodies(&entry["messages"]["chunk"]).contains(&"one".to_owned()));
    let state = entry["state"].as_array().unwrap();
    assert!(
        state.iter().any(|e| e["type"] == "m.room.create"),
        "{entry}"
    );
    assert!(
        state
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Den")
    );
    let end = initial["end"].as_str().unwrap().to_owned();

    // /events from there waits for the next message.
    let waiter = {
        let http = s.http.clone();
        let url = format!(
            "{}/_matrix/client/v3/events?from={end}&timeout=10000",
            s.base
        );
        let token = alice.clone();
        tokio::spawn(async move {
            let r = http.get(url).bearer_auth(token).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        })
    };
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    s.send_message(
        &alice,
        &room,
        "t2",
        json!({"msgtype": "m.text", "body": "two"}),
    )
    .await;
    let (status, page) = waiter.await.unwrap();
    assert_eq!(status, 200, "{page}");
    assert_eq!(bodies(&page["chunk"]), vec!["two".to_owned()], "{page}");
    assert_eq!(page["chunk"][0]["room_id"], room.as_str());
    assert_eq!(page["start"], end.as_str());
    assert_ne!(page["end"], end.as_str());

    // Nothing new: an empty chunk at once with timeout=0.
    let (status, quiet) = s
        .get(
            &format!(
                "/_matrix/client/v3/events?from={}&timeout=0",
                page["end"].as_str().unwrap()
            ),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200, "{quiet}");
    assert_eq!(quiet["chunk"], json!([]));
    let result = s
        .get(
            "/_matrix/client/v3/events?from=garbage&timeout=0",
            Some(&alice),
        )
        .await;
    assert_error(&result, 400, "M_INVALID_PARAM");

    // One room's initial sync.
    let (status, one) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/initialSync?limit=10"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200, "{one}");
    assert_eq!(one["room_id"], room.as_str());
    assert_eq!(one["membership"], "join");
    assert_eq!(bodies(&one["messages"]["chunk"]), vec!["one", "two"]);
    assert!(one["receipts"].is_array(), "{one}");
    // Every member's presence, offline for one never set (as Synapse answers).
    let alice_presence = one["presence"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["content"]["user_id"] == "@alice:localhost")
        .cloned()
        .unwrap_or_else(|| panic!("no presence of alice in {one}"));
    assert_eq!(alice_presence["type"], "m.presence");
    assert!(alice_presence["content"]["presence"].is_string());

    // An event by ID alone: for those who may see it.
    let (status, event) = s
        .get(&format!("/_matrix/client/v3/events/{first}"), Some(&alice))
        .await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["content"]["body"], "one");
    let result = s
        .get(&format!("/_matrix/client/v3/events/{first}"), Some(&bob))
        .await;
    assert_error(&result, 404, "M_NOT_FOUND");

    // An event or a room that does not exist.
    let result = s
        .get("/_matrix/client/v3/events/$nosuchevent", Some(&alice))
        .await;
    assert_error(&result, 404, "M_NOT_FOUND");
    let result = s
        .get(
            "/_matrix/client/v3/rooms/!nosuchroom:localhost/initialSync",
            Some(&alice),
        )
        .await;
    assert!(matches!(result.0.as_u16(), 403 | 404), "{}", result.1);
    let result = s.get("/_matrix/client/v3/initialSync", None).await;
    assert_error(&result, 401, "M_MISSING_TOKEN");

    // bob may not look into the private room, but into a world-readable one.
    let result = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/initialSync"),
            Some(&bob),
        )
        .await;
    assert_error(&result, 403, "M_FORBIDDEN");
    let open = s
        .create_room(
            &alice,
            json!({"preset": "public_chat", "initial_state": [{
                "type": "m.room.history_visibility", "state_key": "",
                "content": {"history_visibility": "world_readable"}}]}),
        )
        .await;
    s.send_message(
        &alice,
        &open,
        "t3",
        json!({"msgtype": "m.text", "body": "for all"}),
    )
    .await;
    let (status, peek) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{open}/initialSync"),
            Some(&bob),
        )
        .await;
    assert_eq!(status, 200, "{peek}");
    assert!(
        bodies(&peek["messages"]["chunk"]).contains(&"for all".to_owned()),
        "{peek}"
    );
    assert_eq!(peek["visibility"], "public");

    // /events on one room: refused for a room bob may not see; a world-readable one's
    // new events for a peek.
    let result = s
        .get(
            &format!("/_matrix/client/v3/events?room_id={room}&timeout=0"),
            Some(&bob),
        )
        .await;
    assert_error(&result, 403, "M_FORBIDDEN");
    let (_, now) = s
        .get("/_matrix/client/v3/events?timeout=0", Some(&bob))
        .await;
    let from = now["end"].as_str().unwrap().to_owned();
    s.send_message(
        &alice,
        &open,
        "t4",
        json!({"msgtype": "m.text", "body": "peek at this"}),
    )
    .await;
    let (status, peeked) = s
        .get(
            &format!("/_matrix/client/v3/events?room_id={open}&from={from}&timeout=5000"),
            Some(&bob),
        )
        .await;
    assert_eq!(status, 200, "{peeked}");
    assert_eq!(bodies(&peeked["chunk"]), vec!["peek at this"]);
    let event_id = peeked["chunk"][0]["event_id"].as_str().unwrap().to_owned();

    // The peek also sees receipts, typing and the members' presence, each once.
    let mut from = peeked["end"].as_str().unwrap().to_owned();
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{open}/receipt/m.read/{event_id}"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    s.put(
        &format!("/_matrix/client/v3/rooms/{open}/typing/@alice:localhost"),
        Some(&alice),
        json!({"typing": true, "timeout": 30000}),
    )
    .await;
    s.put(
        "/_matrix/client/v3/presence/@alice:localhost/status",
        Some(&alice),
        json!({"presence": "online", "status_msg": "peeking allowed"}),
    )
    .await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..10 {
        let (status, page) = s
            .get(
                &format!("/_matrix/client/v3/events?room_id={open}&from={from}&timeout=2000"),
                Some(&bob),
            )
            .await;
        assert_eq!(status, 200, "{page}");
        for event in page["chunk"].as_array().unwrap() {
            match event["type"].as_str().unwrap() {
                "m.receipt" => {
                    assert!(event["content"][&event_id]["m.read"]["@alice:localhost"].is_object());
                    assert_eq!(event["room_id"], open.as_str());
                }
                "m.typing" => assert_eq!(event["content"]["user_ids"], json!(["@alice:localhost"])),
                "m.presence" => assert_eq!(event["content"]["user_id"], "@alice:localhost"),
                _ => continue,
            }
            assert!(
                seen.insert(event["type"].as_str().unwrap().to_owned()),
                "twice: {event}"
            );
        }
        from = page["end"].as_str().unwrap().to_owned();
        if seen.len() == 3 {
            break;
        }
    }
    assert_eq!(seen.len(), 3, "{seen:?}");
    let result = s
        .get("/_matrix/client/v3/events?timeout=0&limit=-1", Some(&bob))
        .await;
    assert_error(&result, 400, "M_INVALID_PARAM");
}
