//! `GET /sync` over HTTP: initial and incremental syncs, room sections, ephemeral events,
//! account data, filters, long-poll wake-ups (also across two processes), and exactly-once
//! delivery under concurrent senders.

mod common;

use std::collections::HashSet;

use common::{TestServer, assert_error};
use serde_json::{Value, json};

async fn create_room(s: &TestServer, token: &str, body: Value) -> String {
    let (status, res) = s
        .post("/_matrix/client/v3/createRoom", Some(token), body)
        .await;
    assert_eq!(status, 200, "{res}");
    res["room_id"].as_str().unwrap().to_owned()
}

async fn send(s: &TestServer, token: &str, room: &str, txn: &str, body: &str) -> String {
    let (status, res) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
            Some(token),
            json!({"msgtype": "m.text", "body": body}),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    res["event_id"].as_str().unwrap().to_owned()
}

async fn sync(s: &TestServer, token: &str, query: &str) -> Value {
    let (status, res) = s
        .get(&format!("/_matrix/client/v3/sync?{query}"), Some(token))
        .await;
    assert_eq!(status, 200, "{res}");
    assert!(res["next_batch"].is_string(), "{res}");
    res
}

fn bodies(timeline: &Value) -> Vec<String> {
    timeline["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

fn state_types(room: &Value) -> Vec<String> {
    room["state"]["events"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|e| {
                    format!(
                        "{}|{}",
                        e["type"].as_str().unwrap(),
                        e["state_key"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A limited timeline's gap: pages /messages backwards from its prev_batch down to the
/// previous sync token, and returns the bodies of the gap followed by `timeline_bodies`.
async fn fill_gap(
    s: &TestServer,
    token: &str,
    room: &str,
    timeline: &Value,
    since: &str,
    page_size: u32,
    timeline_bodies: Vec<String>,
) -> Vec<String> {
    let mut bodies_so_far = timeline_bodies;
    let mut from = timeline["prev_batch"].as_str().unwrap().to_owned();
    loop {
        let (status, page) = s
            .get(
                &format!(
                    "/_matrix/client/v3/rooms/{room}/messages?dir=b&from={from}&to={since}&limit={page_size}"
                ),
                Some(token),
            )
            .await;
        assert_eq!(status, 200, "{page}");
        let chunk = page["chunk"].as_array().unwrap();
        let mut older: Vec<String> = chunk
            .iter()
            .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
            .collect();
        older.reverse();
        older.extend(bodies_so_far);
        bodies_so_far = older;
        match page["end"].as_str() {
            Some(end) if !chunk.is_empty() => from = end.to_owned(),
            _ => return bodies_so_far,
        }
    }
}

fn next(res: &Value) -> String {
    res["next_batch"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn initial_and_incremental_sync_of_a_joined_room() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "correct horse battery").await;
    let room = create_room(
        &s,
        &alice,
        json!({"name": "Lobby", "preset": "public_chat"}),
    )
    .await;
    for i in 0..3 {
        send(&s, &alice, &room, &format!("t{i}"), &format!("m{i}")).await;
    }
    let first = sync(&s, &alice, "").await;
    let joined = &first["rooms"]["join"][&room];
    assert_eq!(bodies(&joined["timeline"]), ["m0", "m1", "m2"]);
    // The whole state: at the start of the timeline, or in the timeline itself.
    let mut all_types = state_types(joined);
    for e in joined["timeline"]["events"].as_array().unwrap() {
        if let Some(k) = e["state_key"].as_str() {
            all_types.push(format!("{}|{k}", e["type"].as_str().unwrap()));
        }
    }
    for t in [
        "m.room.create|",
        "m.room.power_levels|",
        "m.room.name|",
        "m.room.member|@alice:localhost",
    ] {
        assert!(
            all_types.contains(&t.to_owned()),
            "{t} missing from {all_types:?}"
        );
    }
    assert_eq!(joined["summary"]["m.joined_member_count"], 1, "{joined}");
    // Events in the sync format: no room_id; the sender's own device gets its txn ID.
    let last = joined["timeline"]["events"]
        .as_array()
        .unwrap()
        .last()
        .unwrap();
    assert!(last.get("room_id").is_none());
    assert_eq!(last["unsigned"]["transaction_id"], "t2");
    // The whole room fits: prev_batch points back from the end, as Synapse's does, so
    // paging back from it gives the room from the start, with `end`; from there, nothing
    // and no `end`.
    assert_eq!(joined["timeline"]["limited"], false, "{joined}");
    let prev_batch = joined["timeline"]["prev_batch"].as_str().unwrap();
    let (status, page) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&from={prev_batch}"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    let chunk = page["chunk"].as_array().unwrap();
    assert_eq!(chunk.first().unwrap()["content"]["body"], "m2", "{page}");
    assert_eq!(chunk.last().unwrap()["type"], "m.room.create", "{page}");
    let end = page["end"].as_str().expect("a page with events has an end");
    let (status, page) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&from={end}"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(page["chunk"], json!([]), "{page}");
    assert!(page.get("end").is_none(), "{page}");

    // Nothing new: an incremental sync answers with no rooms at all.
    let since = next(&first);
    let idle = sync(&s, &alice, &format!("since={since}&timeout=0")).await;
    assert!(idle["rooms"]["join"].get(&room).is_none(), "{idle}");
    // One new message: only it.
    send(&s, &alice, &room, "t3", "m3").await;
    let inc = sync(&s, &alice, &format!("since={since}&timeout=0")).await;
    let joined = &inc["rooms"]["join"][&room];
    assert_eq!(bodies(&joined["timeline"]), ["m3"]);
    assert_ne!(
        joined["timeline"]["limited"], true,
        "not limited (false is left out)"
    );
    assert!(state_types(joined).is_empty(), "{joined}");

    // Tokens survive a restart: the old token still gives exactly what came after it.
    let s = s.restart().await;
    let again = sync(&s, &alice, &format!("since={since}&timeout=0")).await;
    assert_eq!(bodies(&again["rooms"]["join"][&room]["timeline"]), ["m3"]);
}

#[tokio::test]
async fn invite_join_and_leave_sections() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "correct horse battery").await;
    let (bob, _) = s.register("bob", "correct horse battery").await;
    let bob_since = next(&sync(&s, &bob, "").await);
    let room = create_room(
        &s,
        &alice,
        json!({"name": "Private", "invite": ["@bob:localhost"]}),
    )
    .await;

    let res = sync(&s, &bob, &format!("since={bob_since}&timeout=0")).await;
    let invite = &res["rooms"]["invite"][&room]["invite_state"]["events"];
    let types: Vec<&str> = invite
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert!(types.contains(&"m.room.create"), "{invite}");
    assert!(types.contains(&"m.room.name"), "{invite}");
    let own = invite
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == "@bob:localhost")
        .expect("the invite itself");
    assert_eq!(own["content"]["membership"], "invite");
    assert_eq!(own["sender"], "@alice:localhost");
    // The inviter's membership too (matrix-sdk reads the inviter from it).
    let inviter = invite
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == "@alice:localhost")
        .expect("the inviter's membership");
    assert_eq!(inviter["content"]["membership"], "join");
    assert!(res["rooms"]["join"].get(&room).is_none());
    let bob_since = next(&res);

    send(&s, &alice, &room, "a1", "before bob joined").await;
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let res = sync(&s, &bob, &format!("since={bob_since}&timeout=0")).await;
    let joined = &res["rooms"]["join"][&room];
    assert!(res["rooms"]["invite"].get(&room).is_none());
    // Newly joined: the full state, with the timeline since the last sync.
    let mut types = state_types(joined);
    for e in joined["timeline"]["events"].as_array().unwrap() {
        if let Some(k) = e["state_key"].as_str() {
            types.push(format!("{}|{k}", e["type"].as_str().unwrap()));
        }
    }
    assert!(types.contains(&"m.room.create|".to_owned()), "{types:?}");
    assert!(
        types.contains(&"m.room.member|@bob:localhost".to_owned()),
        "{types:?}"
    );
    assert_eq!(joined["summary"]["m.joined_member_count"], 2, "{joined}");
    let bob_since = next(&res);

    send(&s, &alice, &room, "a2", "while bob is here").await;
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/leave"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    send(&s, &alice, &room, "a3", "after bob left").await;
    let res = sync(&s, &bob, &format!("since={bob_since}&timeout=0")).await;
    let left = &res["rooms"]["leave"][&room];
    let timeline = left["timeline"]["events"].as_array().unwrap();
    assert_eq!(bodies(&left["timeline"]), ["while bob is here"], "{left}");
    let last = timeline.last().unwrap();
    assert_eq!(last["type"], "m.room.member");
    assert_eq!(last["content"]["membership"], "leave");
    assert!(res["rooms"]["join"].get(&room).is_none());

    // An initial sync lists left rooms only when the filter asks for them.
    let fresh = sync(&s, &bob, "").await;
    assert!(fresh["rooms"]["leave"].get(&room).is_none());
    let with_leave = sync(&s, &bob, "filter={\"room\":{\"include_leave\":true}}").await;
    assert!(
        with_leave["rooms"]["leave"].get(&room).is_some(),
        "{with_leave}"
    );
}

#[tokio::test]
async fn limited_timeline_gaps_fill_from_prev_batch() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "correct horse battery").await;
    let room = create_room(&s, &alice, json!({})).await;
    let since = next(&sync(&s, &alice, "").await);
    // A state change inside the gap must come back in `state`.
    let (status, _) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.topic/"),
            Some(&alice),
            json!({"topic": "in the gap"}),
        )
        .await;
    assert_eq!(status, 200);
    for i in 0..25 {
        send(&s, &alice, &room, &format!("g{i}"), &format!("g{i}")).await;
    }
    let res = sync(&s, &alice, &format!("since={since}&timeout=0")).await;
    let joined = &res["rooms"]["join"][&room];
    assert_eq!(joined["timeline"]["limited"], true);
    let mut seen = bodies(&joined["timeline"]);
    assert_eq!(seen.len(), 10);
    let state = &joined["state"]["events"];
    assert!(
        state
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["content"]["topic"] == "in the gap"),
        "{state}"
    );
    // Backwards from prev_batch down to the old token: the rest, each once.
    seen = fill_gap(&s, &alice, &room, &joined["timeline"], &since, 7, seen).await;
    let expected: Vec<String> = (0..25).map(|i| format!("g{i}")).collect();
    assert_eq!(seen, expected);
}

#[tokio::test]
async fn typing_receipts_and_account_data() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "correct horse battery").await;
    let (bob, _) = s.register("bob", "correct horse battery").await;
    let room = create_room(&s, &alice, json!({"preset": "public_chat"})).await;
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/join/{room}"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let msg = send(&s, &alice, &room, "m", "hello").await;
    let bob_since = next(&sync(&s, &bob, "").await);

    let (status, _) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/typing/@alice:localhost"),
            Some(&alice),
            json!({"typing": true, "timeout": 30000}),
        )
        .await;
    assert_eq!(status, 200);
    let res = sync(&s, &bob, &format!("since={bob_since}&timeout=0")).await;
    let ephemeral = &res["rooms"]["join"][&room]["ephemeral"]["events"];
    let typing = ephemeral
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.typing")
        .expect("typing");
    assert_eq!(typing["content"]["user_ids"], json!(["@alice:localhost"]));
    let bob_since = next(&res);

    // Typing stops: the next sync says so with an empty list.
    let (status, _) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/typing/@alice:localhost"),
            Some(&alice),
            json!({"typing": false}),
        )
        .await;
    assert_eq!(status, 200);
    // A receipt from alice, a private one that bob must not see, and bob's own tag.
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{msg}"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read.private/{msg}"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .put(
            &format!("/_matrix/client/v3/user/@bob:localhost/rooms/{room}/tags/u.work"),
            Some(&bob),
            json!({"order": 0.5}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .put(
            "/_matrix/client/v3/user/@bob:localhost/account_data/org.example.settings",
            Some(&bob),
            json!({"theme": "dark"}),
        )
        .await;
    assert_eq!(status, 200);

    let res = sync(&s, &bob, &format!("since={bob_since}&timeout=0")).await;
    let joined = &res["rooms"]["join"][&room];
    let ephemeral = joined["ephemeral"]["events"].as_array().unwrap();
    let typing = ephemeral
        .iter()
        .find(|e| e["type"] == "m.typing")
        .expect("typing");
    assert_eq!(typing["content"]["user_ids"], json!([]));
    let receipt = ephemeral
        .iter()
        .find(|e| e["type"] == "m.receipt")
        .expect("receipt");
    assert!(
        receipt["content"][&msg]["m.read"]["@alice:localhost"]["ts"].is_i64(),
        "{receipt}"
    );
    assert!(
        receipt["content"][&msg].get("m.read.private").is_none(),
        "{receipt}"
    );
    let room_data = joined["account_data"]["events"].as_array().unwrap();
    assert!(
        room_data
            .iter()
            .any(|e| e["type"] == "m.tag" && e["content"]["tags"]["u.work"]["order"] == 0.5)
    );
    let global = res["account_data"]["events"].as_array().unwrap();
    assert!(
        global
            .iter()
            .any(|e| e["type"] == "org.example.settings" && e["content"]["theme"] == "dark")
    );

    // alice sees her own private receipt.
    let mine = sync(&s, &alice, "").await;
    let ephemeral = mine["rooms"]["join"][&room]["ephemeral"]["events"]
        .as_array()
        .unwrap()
        .clone();
    let receipt = ephemeral
        .iter()
        .find(|e| e["type"] == "m.receipt")
        .expect("receipt");
    assert!(
        receipt["content"][&msg]["m.read.private"]["@alice:localhost"].is_object(),
        "{receipt}"
    );
}

#[tokio::test]
async fn filters_shape_the_response() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "correct horse battery").await;
    let (bob, _) = s.register("bob", "correct horse battery").await;
    let (carol, _) = s.register("carol", "correct horse battery").await;
    let room = create_room(&s, &alice, json!({"preset": "public_chat"})).await;
    let other = create_room(&s, &alice, json!({"preset": "public_chat"})).await;
    for t in [&bob, &carol] {
        let (status, _) = s
            .post(
                &format!("/_matrix/client/v3/join/{room}"),
                Some(t),
                json!({}),
            )
            .await;
        assert_eq!(status, 200);
    }
    send(&s, &bob, &room, "b1", "from bob").await;
    let (status, _) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/org.example.ping/p1"),
            Some(&alice),
            json!({"n": 1}),
        )
        .await;
    assert_eq!(status, 200);

    // types, and a limit
    let res = sync(
        &s,
        &alice,
        "filter={\"room\":{\"timeline\":{\"types\":[\"m.room.message\"],\"limit\":5}}}",
    )
    .await;
    let events = res["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap();
    assert!(
        !events.is_empty() && events.iter().all(|e| e["type"] == "m.room.message"),
        "{events:?}"
    );
    // not_types with a wildcard
    let res = sync(
        &s,
        &alice,
        "filter={\"room\":{\"timeline\":{\"not_types\":[\"m.room.*\"]}}}",
    )
    .await;
    let events = res["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["type"], "org.example.ping");
    // senders
    let res = sync(
        &s,
        &alice,
        "filter={\"room\":{\"timeline\":{\"senders\":[\"@bob:localhost\"]}}}",
    )
    .await;
    let events = res["rooms"]["join"][&room]["timeline"]["events"]
        .as_array()
        .unwrap();
    assert!(!events.is_empty() && events.iter().all(|e| e["sender"] == "@bob:localhost"));
    // rooms / not_rooms
    let res = sync(
        &s,
        &alice,
        &format!("filter={{\"room\":{{\"not_rooms\":[\"{room}\"]}}}}"),
    )
    .await;
    assert!(res["rooms"]["join"].get(&room).is_none());
    assert!(res["rooms"]["join"].get(&other).is_some());
    // lazy-loaded members: only the senders in the timeline (and the user)
    let res = sync(
        &s,
        &alice,
        "filter={\"room\":{\"timeline\":{\"limit\":1,\"types\":[\"m.room.message\"]},\"state\":{\"lazy_load_members\":true}}}",
    )
    .await;
    let members: Vec<String> = res["rooms"]["join"][&room]["state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.member")
        .map(|e| e["state_key"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        members.contains(&"@bob:localhost".to_owned()),
        "{members:?}"
    );
    assert!(
        !members.contains(&"@carol:localhost".to_owned()),
        "{members:?}"
    );
    // A stored filter by ID.
    let (status, created) = s
        .post(
            "/_matrix/client/v3/user/@alice:localhost/filter",
            Some(&alice),
            json!({"room": {"rooms": [other]}}),
        )
        .await;
    assert_eq!(status, 200, "{created}");
    let id = created["filter_id"].as_str().unwrap();
    let res = sync(&s, &alice, &format!("filter={id}")).await;
    assert!(res["rooms"]["join"].get(&room).is_none());
    assert!(res["rooms"]["join"].get(&other).is_some());

    // Errors: an unknown filter, a token that is not one.
    let r = s
        .get("/_matrix/client/v3/sync?filter=999999", Some(&alice))
        .await;
    assert_error(&r, 404, "M_NOT_FOUND");
    let r = s
        .get(
            "/_matrix/client/v3/sync?filter=%7B%22room%22%3A",
            Some(&alice),
        )
        .await;
    assert!(
        r.0.is_client_error() && r.1["errcode"].is_string(),
        "a malformed inline filter is a Matrix error: {r:?}"
    );
    let r = s
        .get("/_matrix/client/v3/sync?since=nonsense", Some(&alice))
        .await;
    assert_error(&r, 400, "M_INVALID_PARAM");
    let r = s.get("/_matrix/client/v3/sync", None).await;
    assert_error(&r, 401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn a_long_poll_wakes_for_a_new_event_also_from_another_process() {
    let s = TestServer::start().await;
    let other = s.another_process().await;
    let (alice, _) = s.register("alice", "correct horse battery").await;
    let (bob, _) = s.register("bob", "correct horse battery").await;
    let room = create_room(&s, &alice, json!({"preset": "public_chat"})).await;
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/join/{room}"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let mut since = next(&sync(&s, &bob, "").await);

    // bob waits on the second process; alice sends through the first. The sync must come
    // back with the message: had it not been woken, it would end empty at its timeout.
    for (round, server) in [(0, &other), (1, &s)] {
        let base = server.base.clone();
        let http = server.http.clone();
        let token = bob.clone();
        let since_now = since.clone();
        let waiter = tokio::spawn(async move {
            http.get(format!(
                "{base}/_matrix/client/v3/sync?since={since_now}&timeout=30000"
            ))
            .bearer_auth(token)
            .send()
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap()
        });
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        send(
            &s,
            &alice,
            &room,
            &format!("w{round}"),
            &format!("wake {round}"),
        )
        .await;
        let res = waiter.await.unwrap();
        let got = bodies(&res["rooms"]["join"][&room]["timeline"]);
        assert_eq!(got, [format!("wake {round}")], "round {round}: {res}");
        since = next(&res);
    }
}

#[tokio::test]
async fn concurrent_senders_reach_a_syncing_client_exactly_once() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "correct horse battery").await;
    let (bob, _) = s.register("bob", "correct horse battery").await;
    let room = create_room(&s, &alice, json!({"preset": "public_chat"})).await;
    let mut senders = vec![alice.clone()];
    for i in 0..7 {
        let (t, _) = s
            .register(&format!("sender{i}"), "correct horse battery")
            .await;
        let (status, _) = s
            .post(
                &format!("/_matrix/client/v3/join/{room}"),
                Some(&t),
                json!({}),
            )
            .await;
        assert_eq!(status, 200);
        senders.push(t);
    }
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/join/{room}"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let mut since = next(&sync(&s, &bob, "").await);

    const PER_SENDER: usize = 125;
    let mut tasks = Vec::new();
    for (n, token) in senders.into_iter().enumerate() {
        let base = s.base.clone();
        let http = s.http.clone();
        let room = room.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..PER_SENDER {
                let res = http
                    .put(format!(
                        "{base}/_matrix/client/v3/rooms/{room}/send/m.room.message/c{n}-{i}"
                    ))
                    .bearer_auth(&token)
                    .json(&json!({"msgtype": "m.text", "body": format!("{n}-{i}")}))
                    .send()
                    .await
                    .unwrap();
                assert_eq!(res.status(), 200);
            }
        }));
    }
    // bob syncs with a small timeline the whole time, filling each gap from prev_batch.
    let total = 8 * PER_SENDER;
    let mut seen: Vec<String> = Vec::new();
    let filter = "filter={\"room\":{\"timeline\":{\"limit\":7}}}";
    while seen.len() < total {
        // Once every send has returned, the next sync must bring all that is left.
        let all_sent = tasks.iter().all(|t| t.is_finished());
        let res = sync(&s, &bob, &format!("since={since}&timeout=2000&{filter}")).await;
        let joined = &res["rooms"]["join"][&room];
        let mut batch = bodies(&joined["timeline"]);
        if joined["timeline"]["limited"] == true {
            batch = fill_gap(&s, &bob, &room, &joined["timeline"], &since, 50, batch).await;
        }
        assert!(
            !(batch.is_empty() && all_sent),
            "sync went quiet with {} of {total} messages seen",
            seen.len()
        );
        seen.extend(batch);
        since = next(&res);
    }
    for t in tasks {
        t.await.unwrap();
    }
    let unique: HashSet<&String> = seen.iter().collect();
    assert_eq!(unique.len(), total, "every message exactly once");
    assert_eq!(seen.len(), total, "no message twice");
    // Each sender's messages arrive in the order they were sent.
    for n in 0..8 {
        let order: Vec<usize> = seen
            .iter()
            .filter_map(|b| {
                b.strip_prefix(&format!("{n}-"))
                    .and_then(|i| i.parse().ok())
            })
            .collect();
        assert_eq!(order, (0..PER_SENDER).collect::<Vec<_>>(), "sender {n}");
    }
}

#[tokio::test]
async fn requests_cut_mid_flight_and_old_tokens_lose_nothing() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let room = create_room(&s, &alice, json!({})).await;
    let first = sync(&s, &alice, "timeout=0").await;
    let old = next(&first);
    let mut since = old.clone();
    let mut seen = Vec::new();
    let impatient = reqwest::Client::builder()
        .timeout(std::time::Duration::from_millis(30))
        .build()
        .unwrap();
    for round in 0..5 {
        // A long poll is cut by the client while messages arrive (or its answer is lost
        // on the way: the client never reads it either way).
        let cut = impatient
            .get(format!(
                "{}/_matrix/client/v3/sync?since={since}&timeout=10000",
                s.base
            ))
            .bearer_auth(&alice)
            .send();
        let sends = async {
            for i in 0..4 {
                send(
                    &s,
                    &alice,
                    &room,
                    &format!("c{round}-{i}"),
                    &format!("m{round}-{i}"),
                )
                .await;
            }
        };
        let (_lost, ()) = tokio::join!(cut, sends);
        // The retry with the same token has everything, once.
        let res = sync(&s, &alice, &format!("since={since}&timeout=0")).await;
        let got = bodies(&res["rooms"]["join"][&room]["timeline"]);
        let want: Vec<String> = (0..4).map(|i| format!("m{round}-{i}")).collect();
        assert_eq!(got, want, "round {round}");
        seen.extend(got);
        since = next(&res);
    }
    // A client back with its oldest token gets all it missed (through prev_batch).
    let res = sync(
        &s,
        &alice,
        &format!(
            "since={old}&timeout=0&filter={}",
            r#"{"room":{"timeline":{"limit":50}}}"#
                .replace('{', "%7B")
                .replace('}', "%7D")
                .replace('"', "%22")
                .replace(':', "%3A")
        ),
    )
    .await;
    assert_eq!(bodies(&res["rooms"]["join"][&room]["timeline"]), seen);
}
