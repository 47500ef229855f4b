//! Federation I's transport against a stand-in server (tests/common/fake_remote.rs) that
//! sends what a real server would not: request signatures (forged, for another server,
//! with an expired key, malformed), transactions (replayed, oversized, with bad hashes),
//! and the outbound queue (a destination that was down, across a restart). Gaps in what
//! it sends are tests/federation_gaps.rs.

mod common;
#[path = "common/fake_remote.rs"]
mod fake_remote;
#[path = "common/federation.rs"]
mod federation;
#[path = "common/shared_room.rs"]
mod shared_room;

use std::time::Duration;

use fake_remote::{Draft, FakeRemote, new_key};
use federation::start_federated;
use ruma::{CanonicalJsonObject, CanonicalJsonValue};
use serde_json::{Value, json};
use shared_room::{bodies, message, rules, send_txn, shared_room};

#[tokio::test]
async fn requests_from_other_servers_must_carry_a_valid_signature() {
    let s = start_federated(|_| {}).await;
    let remote = FakeRemote::start().await;
    let path = "/_matrix/federation/v1/event/$nothing";
    let unauthorized = |(status, body): (reqwest::StatusCode, Value), why: &str| {
        assert_eq!(status, 401, "{why}: {body}");
        assert_eq!(body["errcode"], "M_UNAUTHORIZED", "{why}: {body}");
    };

    // Signed properly: the request is served (the event does not exist).
    let (status, body) = remote.request(&s, "GET", path, None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["errcode"], "M_NOT_FOUND");

    unauthorized(
        remote.request_with(&s, "GET", path, None, None).await,
        "no Authorization",
    );
    // Unreadable headers are the sender's error (400, as Synapse answers them).
    for malformed in [
        "X-Matrix origin=\"",
        "Bearer abc",
        "X-Matrix origin=localhost:http,key=\"ed25519:1\",sig=\"abc\"",
    ] {
        let (status, body) = remote
            .request_with(&s, "GET", path, None, Some(malformed.into()))
            .await;
        assert_eq!(status, 400, "{malformed}: {body}");
        assert_eq!(body["errcode"], "M_UNAUTHORIZED", "{malformed}: {body}");
    }
    // Another key under the same key ID: a forgery.
    let forger = new_key("fake");
    let forged = remote.authorization(&forger, "GET", path, &s.name(), None);
    unauthorized(
        remote
            .request_with(&s, "GET", path, None, Some(forged))
            .await,
        "forged",
    );
    // Signed for another server.
    let elsewhere = remote.authorization(&remote.pair, "GET", path, "localhost:1", None);
    unauthorized(
        remote
            .request_with(&s, "GET", path, None, Some(elsewhere))
            .await,
        "wrong destination",
    );
    // Signed for another path (a replay on a different endpoint).
    let other_path = remote.authorization(
        &remote.pair,
        "GET",
        "/_matrix/federation/v1/event/$x",
        &s.name(),
        None,
    );
    unauthorized(
        remote
            .request_with(&s, "GET", path, None, Some(other_path))
            .await,
        "another path",
    );

    // A server whose key expired is not believed.
    let (listener, _) = FakeRemote::reserve().await;
    let expired =
        FakeRemote::start_on(listener, new_key("old"), axon::server::now_ms() - 60_000).await;
    unauthorized(expired.request(&s, "GET", path, None).await, "expired key");
}

#[tokio::test]
async fn transactions_are_taken_once_bounded_and_checked() {
    let s = start_federated(|_| {}).await;
    let (token, _) = s.register("alice", "correct horse battery").await;
    let remote = FakeRemote::start().await;
    let room = shared_room(&s, &token, &remote).await;
    let (status, members) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{}/joined_members", room.id),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200);
    assert!(members["joined"][&room.bob].is_object(), "{members}");

    // A message, and the same transaction again: one event, the same answer.
    let hello = message(
        &remote,
        &room,
        "hello",
        vec![room.bob_join.clone()],
        room.depth + 1,
    );
    let hello_id = FakeRemote::event_id(&hello, &rules());
    let first = send_txn(&s, &remote, "t1", vec![hello.clone()]).await;
    assert_eq!(first.0, 200, "{}", first.1);
    assert_eq!(first.1["pdus"][&hello_id], json!({}));
    // A retry under the same ID is answered from memory, even if its body differs.
    let other = message(
        &remote,
        &room,
        "not processed",
        vec![hello_id.clone()],
        room.depth + 2,
    );
    let again = send_txn(&s, &remote, "t1", vec![hello.clone(), other]).await;
    assert_eq!(again, first);
    assert_eq!(bodies(&s, &token, &room.id).await, vec!["hello"]);

    // More than 50 PDUs or 100 EDUs: refused whole.
    let many: Vec<CanonicalJsonObject> = (0..51)
        .map(|i| {
            message(
                &remote,
                &room,
                &format!("m{i}"),
                vec![hello_id.clone()],
                room.depth + 2,
            )
        })
        .collect();
    let (status, body) = send_txn(&s, &remote, "t2", many).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errcode"], "M_BAD_JSON");
    let edus: Vec<Value> = (0..101)
        .map(|_| json!({"edu_type": "m.typing", "content": {}}))
        .collect();
    let (status, _) = remote
        .request(
            &s,
            "PUT",
            "/_matrix/federation/v1/send/t3",
            Some(json!({"origin": remote.name, "origin_server_ts": 1, "pdus": [], "edus": edus})),
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(bodies(&s, &token, &room.id).await, vec!["hello"]);

    // Not JSON at all.
    let path = "/_matrix/federation/v1/send/t4";
    let auth = remote.authorization(&remote.pair, "PUT", path, &s.name(), Some(&json!({})));
    let (status, body) = remote.request_raw(&s, "PUT", path, "{not json", auth).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errcode"], "M_NOT_JSON", "{body}");

    // A PDU whose content does not match its hash is kept redacted.
    let mut tampered = message(
        &remote,
        &room,
        "original",
        vec![hello_id.clone()],
        room.depth + 2,
    );
    let tampered_id = FakeRemote::event_id(&tampered, &rules());
    if let Some(CanonicalJsonValue::Object(content)) = tampered.get_mut("content") {
        content.insert("body".into(), CanonicalJsonValue::String("changed".into()));
    }
    let (status, answer) = send_txn(&s, &remote, "t5", vec![tampered]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["pdus"][&tampered_id], json!({}), "{answer}");
    let stored = s.hs.storage.event(&tampered_id).await.unwrap().unwrap();
    assert_eq!(stored.pdu["content"], json!({}), "redacted: {}", stored.pdu);

    // Forged PDU signatures, too many prev events, another server's user: refused (the
    // last by the auth rules, which counts as handled: no error, as Synapse answers).
    let mut forged = message(
        &remote,
        &room,
        "forged",
        vec![hello_id.clone()],
        room.depth + 2,
    );
    let forged_id = FakeRemote::event_id(&forged, &rules());
    ruma::signatures::hash_and_sign_event(
        &remote.name,
        &*new_key("fake"),
        &mut forged,
        &rules().redaction,
    )
    .unwrap();
    let wide_prev: Vec<String> = (0..21).map(|_| hello_id.clone()).collect();
    let wide = message(&remote, &room, "wide", wide_prev, room.depth + 2);
    let wide_id = FakeRemote::event_id(&wide, &rules());
    let impostor = remote.pdu(
        &room.id,
        &rules(),
        Draft {
            sender: "@alice:elsewhere.test",
            kind: "m.room.message",
            state_key: None,
            content: json!({"body": "impostor"}),
            prev: vec![hello_id.clone()],
            auth: vec![room.create.clone(), room.power_levels.clone()],
            depth: room.depth + 2,
        },
    );
    let impostor_id = FakeRemote::event_id(&impostor, &rules());
    let (status, answer) = send_txn(&s, &remote, "t6", vec![forged, wide, impostor]).await;
    assert_eq!(status, 200, "{answer}");
    for id in [&forged_id, &wide_id, &impostor_id] {
        assert!(
            answer["pdus"][id]["error"].is_string() || answer["pdus"][id].is_string(),
            "{id}: {answer}"
        );
    }
    assert_eq!(bodies(&s, &token, &room.id).await, vec!["hello"]);

    // A room this server does not know: nothing taken.
    let unknown = remote.pdu(
        "!unknown:elsewhere.test",
        &rules(),
        Draft {
            sender: &room.bob,
            kind: "m.room.message",
            state_key: None,
            content: json!({"body": "x"}),
            prev: vec![hello_id.clone()],
            auth: vec![],
            depth: 5,
        },
    );
    let (status, answer) = send_txn(&s, &remote, "t7", vec![unknown]).await;
    assert_eq!(status, 200);
    assert_eq!(answer["pdus"], json!({}), "{answer}");
}

/// Waits until the remote has received a transaction holding `event_id`; returns how many
/// times it came.
async fn deliveries_of(remote: &FakeRemote, event_id: &str, wait: Duration) -> usize {
    let count = || {
        remote
            .received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|t| t["pdus"].as_array().cloned().unwrap_or_default())
            .filter(|p| {
                FakeRemote::event_id(&serde_json::from_value(p.clone()).unwrap(), &rules())
                    == event_id
            })
            .count()
    };
    let deadline = tokio::time::Instant::now() + wait;
    while count() == 0 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    count()
}

#[tokio::test]
async fn local_events_reach_the_other_server_once_even_after_it_was_down() {
    let s = start_federated(|_| {}).await;
    let (token, _) = s.register("alice", "correct horse battery").await;
    let mut remote = FakeRemote::start().await;
    let room = shared_room(&s, &token, &remote).await;

    // Up: alice's message arrives, signed by her server (the stand-in checks it).
    let up = s
        .send_message(
            &token,
            &room.id,
            "u1",
            json!({"msgtype": "m.text", "body": "while up"}),
        )
        .await;
    assert_eq!(
        deliveries_of(&remote, &up, Duration::from_secs(10)).await,
        1
    );

    // Down: the message waits in the queue.
    let (pair, port) = (remote.pair.clone(), remote.port);
    remote.stop();
    drop(remote);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let down = s
        .send_message(
            &token,
            &room.id,
            "u2",
            json!({"msgtype": "m.text", "body": "while down"}),
        )
        .await;
    let destination = format!("localhost:{port}");
    for _ in 0..100 {
        if s.hs.storage.outbox_len(&destination).await.unwrap() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Give the sender time to fail once.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(s.hs.storage.outbox_len(&destination).await.unwrap(), 1);

    // Back, on the same port with the same key; it contacts us, which ends the backoff.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let remote = FakeRemote::start_on(listener, pair, axon::server::now_ms() + 3_600_000).await;
    let (status, _) = remote
        .request(&s, "GET", "/_matrix/federation/v1/version", None)
        .await;
    assert_eq!(status, 200);
    let (status, _) = remote
        .request(
            &s,
            "GET",
            &format!("/_matrix/federation/v1/event/{}", room.bob_join),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        deliveries_of(&remote, &down, Duration::from_secs(10)).await,
        1
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        deliveries_of(&remote, &down, Duration::ZERO).await,
        1,
        "exactly once"
    );
    assert_eq!(
        deliveries_of(&remote, &up, Duration::ZERO).await,
        0,
        "the first message is not sent again"
    );
    assert_eq!(s.hs.storage.outbox_len(&destination).await.unwrap(), 0);
}

#[tokio::test]
async fn the_queue_survives_a_restart() {
    let s = start_federated(|_| {}).await;
    let (token, _) = s.register("alice", "correct horse battery").await;
    let mut remote = FakeRemote::start().await;
    let room = shared_room(&s, &token, &remote).await;
    let (pair, port) = (remote.pair.clone(), remote.port);
    remote.stop();
    drop(remote);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let queued = s
        .send_message(
            &token,
            &room.id,
            "r1",
            json!({"msgtype": "m.text", "body": "queued"}),
        )
        .await;
    let s = s.restart().await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let remote = FakeRemote::start_on(listener, pair, axon::server::now_ms() + 3_600_000).await;
    let (status, _) = remote
        .request(
            &s,
            "GET",
            &format!("/_matrix/federation/v1/event/{}", room.bob_join),
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        deliveries_of(&remote, &queued, Duration::from_secs(15)).await,
        1
    );
}

#[tokio::test]
async fn two_processes_on_one_database_send_each_event_once() {
    let s = start_federated(|_| {}).await;
    let (token, _) = s.register("alice", "correct horse battery").await;
    let remote = FakeRemote::start().await;
    let room = shared_room(&s, &token, &remote).await;
    let other = s.another_process().await;
    let mut sent = Vec::new();
    for i in 0..20 {
        // Alternate processes, as a load balancer would.
        let via = if i % 2 == 0 { &s } else { &other };
        sent.push(
            via.send_message(
                &token,
                &room.id,
                &format!("p{i}"),
                json!({"msgtype": "m.text", "body": format!("{i}")}),
            )
            .await,
        );
    }
    for id in &sent {
        assert_eq!(
            deliveries_of(&remote, id, Duration::from_secs(15)).await,
            1,
            "{id}"
        );
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    for id in &sent {
        assert_eq!(
            deliveries_of(&remote, id, Duration::ZERO).await,
            1,
            "{id} exactly once"
        );
    }
}

#[tokio::test]
async fn after_a_long_outage_only_each_rooms_newest_event_is_sent() {
    let s = start_federated(|_| {}).await;
    let (token, _) = s.register("alice", "correct horse battery").await;
    let mut remote = FakeRemote::start().await;
    let room = shared_room(&s, &token, &remote).await;
    let (pair, port) = (remote.pair.clone(), remote.port);
    remote.stop();
    drop(remote);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut sent = Vec::new();
    for i in 0..5 {
        sent.push(
            s.send_message(
                &token,
                &room.id,
                &format!("o{i}"),
                json!({"msgtype": "m.text", "body": format!("during the outage {i}")}),
            )
            .await,
        );
    }
    let destination = format!("localhost:{port}");
    // Wait for a failed attempt, then let the outage have lasted two hours.
    for _ in 0..100 {
        let failing: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM federation_destinations WHERE destination = $1 AND failures > 0",
        )
        .bind(&destination)
        .fetch_one(&mut sqlx::ConnectOptions::connect(&s.db).await.unwrap())
        .await
        .unwrap();
        if failing > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    s.sql(&format!(
        "UPDATE federation_destinations SET failing_since_ts = failing_since_ts - 7200000 \
         WHERE destination = '{destination}'"
    ))
    .await;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
        .await
        .unwrap();
    let remote = FakeRemote::start_on(listener, pair, axon::server::now_ms() + 3_600_000).await;
    let (status, _) = remote
        .request(
            &s,
            "GET",
            &format!("/_matrix/federation/v1/event/{}", room.bob_join),
            None,
        )
        .await;
    assert_eq!(status, 200);
    let newest = sent.last().unwrap();
    assert_eq!(
        deliveries_of(&remote, newest, Duration::from_secs(15)).await,
        1
    );
    for older in &sent[..4] {
        assert_eq!(
            deliveries_of(&remote, older, Duration::ZERO).await,
            0,
            "{older} is not replayed"
        );
    }
    assert_eq!(s.hs.storage.outbox_len(&destination).await.unwrap(), 0);
}
