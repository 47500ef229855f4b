//! What one user (or anyone on the network) must not be able to do to the server or to
//! other users: poison events, panics, idle and half-sent connections, oversize and
//! malformed input, racing retries, unbounded per-user stores.

mod common;

use std::time::Duration;

use common::{TestServer, assert_error};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

/// Sends raw bytes on a new connection and reads the answer until the server closes the
/// connection or `wait` passes. Returns what was read, and whether the server closed it.
async fn raw(s: &TestServer, bytes: &[u8], wait: Duration) -> (String, bool) {
    let mut tcp = TcpStream::connect(s.addr).await.unwrap();
    tcp.write_all(bytes).await.unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = tokio::time::timeout(wait, async {
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (String::from_utf8_lossy(&out).into_owned(), closed)
}

fn status_of(response: &str) -> u16 {
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

fn body_of(response: &str) -> Value {
    response
        .split("\r\n\r\n")
        .nth(1)
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null)
}

fn nested(levels: usize) -> Value {
    let mut v = json!("deep");
    for _ in 0..levels {
        v = json!({ "a": v });
    }
    v
}

#[tokio::test]
async fn deeply_nested_content_is_refused_at_the_door_and_cannot_poison_sync() {
    let s = TestServer::start().await;
    let (alice, bob, room) = s.alice_and_bob_in_a_room().await;
    let (victim, _) = s.register("victim", "password-victim").await;

    // The attack of the report: a name nested 127 levels deep, then an invite.
    let r = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/"),
            Some(&alice),
            json!({ "name": nested(126) }),
        )
        .await;
    assert_error(&r, 400, "M_BAD_JSON");
    let r = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/deep"),
            Some(&alice),
            json!({ "msgtype": "m.text", "body": "x", "extra": nested(100) }),
        )
        .await;
    assert_error(&r, 400, "M_BAD_JSON");
    // Nesting within the limit is still an ordinary event, readable by everyone.
    s.send_message(
        &alice,
        &room,
        "ok",
        json!({ "msgtype": "m.text", "body": "x", "extra": nested(50) }),
    )
    .await;
    let r = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            Some(&alice),
            json!({ "user_id": "@victim:localhost" }),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    for token in [&victim, &bob, &alice] {
        let r = s.get("/_matrix/client/v3/sync", Some(token)).await;
        assert_eq!(r.0, 200, "{}", r.1);
    }
    // Any body, authenticated or not.
    let r = s.post("/_matrix/client/v3/login", None, nested(200)).await;
    assert_error(&r, 400, "M_BAD_JSON");
}

#[tokio::test]
async fn nul_characters_get_400_not_500() {
    let s = TestServer::start().await;
    let (alice, _bob, room) = s.alice_and_bob_in_a_room().await;
    let r = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/nul"),
            Some(&alice),
            json!({ "msgtype": "m.text", "body": "a\u{0}b" }),
        )
        .await;
    assert_error(&r, 400, "M_BAD_JSON");
    let r = s
        .put(
            "/_matrix/client/v3/user/@alice:localhost/account_data/x",
            Some(&alice),
            json!({ "k\u{0}": 1 }),
        )
        .await;
    assert_error(&r, 400, "M_BAD_JSON");
    for path in [
        format!("/_matrix/client/v3/rooms/{room}/state/m.room.name/%00"),
        "/_matrix/client/v3/user/@alice:localhost/account_data/a%00b".to_owned(),
        "/_matrix/client/v3/directory/room/%23a%00b:localhost".to_owned(),
        "/_matrix/client/v3/profile/@alice%00:localhost".to_owned(),
    ] {
        let r = s.call(Method::GET, &path, Some(&alice), None).await;
        assert_error(&r, 400, "M_INVALID_PARAM");
    }
    let r = s
        .get("/_matrix/client/v3/publicRooms?server=a%00b", Some(&alice))
        .await;
    assert_error(&r, 400, "M_INVALID_PARAM");
    // Sliding sync reads its body itself; the same guard applies.
    let r = s
        .post(
            "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync",
            Some(&alice),
            json!({ "conn_id": "a\u{0}b", "lists": {} }),
        )
        .await;
    assert_error(&r, 400, "M_BAD_JSON");
}

#[tokio::test]
async fn oversize_events_identifiers_and_thread_ids() {
    let s = TestServer::start().await;
    let (alice, _bob, room) = s.alice_and_bob_in_a_room().await;
    let big = "x".repeat(70_000);
    let r = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/big"),
            Some(&alice),
            json!({ "msgtype": "m.text", "body": big }),
        )
        .await;
    assert_error(&r, 413, "M_TOO_LARGE");
    let long = "k".repeat(300);
    let r = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.custom/{long}"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_error(&r, 413, "M_TOO_LARGE");
    let r = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/{long}/t1"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_error(&r, 413, "M_TOO_LARGE");
    let r = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{long}"),
            Some(&alice),
            json!({ "msgtype": "m.text", "body": "x" }),
        )
        .await;
    assert_error(&r, 400, "M_INVALID_PARAM");
    let event = s
        .send_message(
            &alice,
            &room,
            "t2",
            json!({ "msgtype": "m.text", "body": "x" }),
        )
        .await;
    let r = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{event}"),
            Some(&alice),
            json!({ "thread_id": "t".repeat(100_000) }),
        )
        .await;
    assert_error(&r, 400, "M_INVALID_PARAM");
}

#[tokio::test]
async fn concurrent_retries_of_one_transaction_answer_the_first_event() {
    let s = TestServer::start().await;
    let (alice, _bob, room) = s.alice_and_bob_in_a_room().await;
    let send_path = format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/same-txn");
    let sends = (0..8).map(|_| {
        s.put(
            &send_path,
            Some(&alice),
            json!({ "msgtype": "m.text", "body": "once" }),
        )
    });
    let results = futures_util::future::join_all(sends).await;
    let first = results[0].1["event_id"].clone();
    for r in &results {
        assert_eq!(r.0, 200, "{}", r.1);
        assert_eq!(r.1["event_id"], first);
    }
    let redact_path = format!(
        "/_matrix/client/v3/rooms/{room}/redact/{}/same-redact",
        first.as_str().unwrap()
    );
    let redacts = (0..8).map(|_| s.put(&redact_path, Some(&alice), json!({})));
    let results = futures_util::future::join_all(redacts).await;
    let first_redaction = results[0].1["event_id"].clone();
    for r in &results {
        assert_eq!(r.0, 200, "{}", r.1);
        assert_eq!(r.1["event_id"], first_redaction);
    }
}

#[tokio::test]
async fn unauthenticated_panics_and_odd_encodings_get_matrix_errors() {
    let s = TestServer::start().await;
    // ruma's login decoder panicked on a body without `type`.
    let r = s.post("/_matrix/client/v3/login", None, json!({})).await;
    assert_eq!(r.0.as_u16() / 100, 4, "{}", r.1);
    assert!(r.1["errcode"].is_string(), "{}", r.1);
    // Raw UTF-8 after % in the query string.
    let (response, _) = raw(
        &s,
        "GET /_matrix/client/v3/account/whoami?access_token=%é HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            .as_bytes(),
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status_of(&response), 401, "{response}");
    assert_eq!(body_of(&response)["errcode"], "M_UNKNOWN_TOKEN");
    // An undecodable media path answers JSON.
    let (alice, _) = s.register("alice", "password-alice").await;
    let r = s
        .get(
            "/_matrix/client/v1/media/download/localhost/%FF",
            Some(&alice),
        )
        .await;
    assert_error(&r, 400, "M_INVALID_PARAM");
    // The scheme of the Authorization header is case-insensitive.
    let res = s
        .http
        .get(format!("{}/_matrix/client/v3/account/whoami", s.base))
        .header("Authorization", format!("bearer {alice}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // A filter that starts like JSON but is not is a bad filter, not an unknown ID.
    let r = s
        .get("/_matrix/client/v3/sync?filter=%7Bnot%20json", Some(&alice))
        .await;
    assert_error(&r, 400, "M_NOT_JSON");
}

#[tokio::test]
async fn unauthenticated_bodies_are_small_and_share_a_budget() {
    let s = TestServer::start_with(|env| {
        env.insert(
            "AXON_LIMITS__MAX_UNAUTHENTICATED_BYTES_IN_FLIGHT".into(),
            "65536".into(),
        );
    })
    .await;
    let r = s
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({ "type": "m.login.password", "password": "x".repeat(100_000) }),
        )
        .await;
    assert_error(&r, 413, "M_TOO_LARGE");
    // A body that is announced but never sent holds the whole budget...
    let mut held = TcpStream::connect(s.addr).await.unwrap();
    held.write_all(
        b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nContent-Length: 65536\r\n\r\n{",
    )
    .await
    .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // ...so another anonymous request is turned away at once, not buffered.
    let r = s
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({ "type": "m.login.password", "password": "x" }),
        )
        .await;
    assert_error(&r, 429, "M_LIMIT_EXCEEDED");
    // Requests without a body need none of it.
    let r = s.get("/_matrix/client/versions", None).await;
    assert_eq!(r.0, 200, "{}", r.1);
    // Authenticated requests are not held to it.
    drop(held);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let r = s
        .get("/_matrix/client/v3/account/whoami", Some(&alice))
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
}

#[tokio::test]
async fn stalled_headers_bodies_and_idle_connections_are_closed() {
    let s = TestServer::start_with(|env| {
        env.insert("AXON_LIMITS__HEADER_READ_TIMEOUT_SECS".into(), "1".into());
        env.insert("AXON_LIMITS__BODY_READ_TIMEOUT_SECS".into(), "1".into());
        env.insert("AXON_LIMITS__MAX_CONNECTIONS".into(), "20".into());
    })
    .await;
    // Half-sent headers: closed by the server.
    let (_, closed) = raw(
        &s,
        b"GET /_matrix/client/versions HTTP/1.1\r\nHost:",
        Duration::from_secs(10),
    )
    .await;
    assert!(closed, "a connection with half-sent headers stays open");
    // A body shorter than its Content-Length: 408.
    let (response, _) = raw(
        &s,
        b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"a\"",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(status_of(&response), 408, "{response}");
    // More idle connections than the cap: they are closed in time, and the server stays
    // reachable.
    let mut idle = Vec::new();
    for _ in 0..60 {
        idle.push(TcpStream::connect(s.addr).await.unwrap());
    }
    let res = tokio::time::timeout(
        Duration::from_secs(20),
        s.http
            .get(format!("{}/_matrix/client/versions", s.base))
            .send(),
    )
    .await
    .expect("the server is reachable again once idle connections are closed")
    .unwrap();
    assert_eq!(res.status(), 200);
}

#[tokio::test]
async fn shutdown_answers_long_polls_and_does_not_wait_for_stalled_clients() {
    let mut s = TestServer::start_with(|env| {
        env.insert("AXON_LIMITS__SHUTDOWN_GRACE_SECS".into(), "2".into());
    })
    .await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let r = s.get("/_matrix/client/v3/sync", Some(&alice)).await;
    let since = r.1["next_batch"].as_str().unwrap().to_owned();
    // A long poll, a connection with half-sent headers, and one with half a body.
    let poll = {
        let http = s.http.clone();
        let url = format!(
            "{}/_matrix/client/v3/sync?since={since}&timeout=60000",
            s.base
        );
        let token = alice.clone();
        tokio::spawn(async move {
            let res = http.get(url).bearer_auth(token).send().await.unwrap();
            res.status()
        })
    };
    let mut half_headers = TcpStream::connect(s.addr).await.unwrap();
    half_headers
        .write_all(b"GET /_matrix/client/versions HTTP/1.1\r\nHost:")
        .await
        .unwrap();
    let mut half_body = TcpStream::connect(s.addr).await.unwrap();
    half_body
        .write_all(
            b"POST /_matrix/client/v3/login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{",
        )
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    tokio::time::timeout(Duration::from_secs(15), s.shut_down())
        .await
        .expect("shutdown is bounded");
    let status = tokio::time::timeout(Duration::from_secs(5), poll)
        .await
        .expect("the long poll was answered")
        .unwrap();
    assert_eq!(status, 200);
}

#[tokio::test]
async fn database_down_answers_503_with_retry_after() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    s.hs.storage.health().set_down(true);
    let r = s
        .get("/_matrix/client/v3/account/whoami", Some(&alice))
        .await;
    assert_error(&r, 503, "M_UNKNOWN");
    assert!(r.1["retry_after_ms"].as_u64().unwrap() > 0);
    let r = s.get("/_matrix/client/versions", None).await;
    assert_eq!(r.0, 200);
    s.hs.storage.health().set_down(false);
    let r = s
        .get("/_matrix/client/v3/account/whoami", Some(&alice))
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
}

#[tokio::test]
async fn to_device_messages_are_bounded_in_size_and_number() {
    let s = TestServer::start_with(|env| {
        env.insert("AXON_LIMITS__MAX_PENDING_TO_DEVICE".into(), "3".into());
    })
    .await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (bob, bob_device) = s.register("bob", "password-bob").await;
    let r = s
        .put(
            "/_matrix/client/v3/sendToDevice/m.test/big",
            Some(&alice),
            json!({ "messages": { "@bob:localhost": { &bob_device: { "x": "y".repeat(70_000) } } } }),
        )
        .await;
    assert_error(&r, 413, "M_TOO_LARGE");
    for i in 0..5 {
        let r = s
            .put(
                &format!("/_matrix/client/v3/sendToDevice/m.test/t{i}"),
                Some(&alice),
                json!({ "messages": { "@bob:localhost": { &bob_device: { "n": i } } } }),
            )
            .await;
        assert_eq!(r.0, 200, "{}", r.1);
    }
    // Another sender's message still arrives: one sender cannot fill the inbox for all.
    let (carol, _) = s.register("carol", "password-carol").await;
    let r = s
        .put(
            "/_matrix/client/v3/sendToDevice/m.test/c1",
            Some(&carol),
            json!({ "messages": { "@bob:localhost": { &bob_device: { "n": 100 } } } }),
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let r = s.get("/_matrix/client/v3/sync", Some(&bob)).await;
    let events = r.1["to_device"]["events"].as_array().unwrap();
    let numbers: Vec<i64> = events
        .iter()
        .map(|e| e["content"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(
        numbers,
        [0, 1, 2, 100],
        "alice's share is full; carol's is not"
    );
}

#[tokio::test]
async fn per_user_stores_are_bounded() {
    let s = TestServer::start_with(|env| {
        env.insert("AXON_LIMITS__MAX_ACCOUNT_DATA_SIZE".into(), "1024".into());
        env.insert("AXON_LIMITS__MAX_ACCOUNT_DATA_BYTES".into(), "3000".into());
        env.insert("AXON_LIMITS__MAX_PUSHERS".into(), "2".into());
        env.insert("AXON_LIMITS__MAX_FILTERS".into(), "2".into());
    })
    .await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let data = |t: &str| format!("/_matrix/client/v3/user/@alice:localhost/account_data/{t}");
    let r = s
        .put(
            &data("big"),
            Some(&alice),
            json!({ "x": "y".repeat(2_000) }),
        )
        .await;
    assert_error(&r, 413, "M_TOO_LARGE");
    let entry = json!({ "v": "y".repeat(900) });
    for t in ["a", "b", "c"] {
        let r = s.put(&data(t), Some(&alice), entry.clone()).await;
        assert_eq!(r.0, 200, "{}", r.1);
    }
    // Replacing an entry is fine; more than the user's bytes is not.
    let r = s.put(&data("a"), Some(&alice), entry.clone()).await;
    assert_eq!(r.0, 200, "{}", r.1);
    let r = s.put(&data("d"), Some(&alice), entry.clone()).await;
    assert_error(&r, 403, "M_FORBIDDEN");
    // Making room lets the new entry in.
    let r = s.put(&data("a"), Some(&alice), json!({})).await;
    assert_eq!(r.0, 200, "{}", r.1);
    let r = s.put(&data("d"), Some(&alice), entry).await;
    assert_eq!(r.0, 200, "{}", r.1);

    let pusher = |key: &str| {
        json!({ "kind": "http", "app_id": "app", "pushkey": key, "app_display_name": "A",
                "device_display_name": "D", "lang": "en",
                "data": { "url": "https://push.example.org/_matrix/push/v1/notify" } })
    };
    for key in ["k1", "k2"] {
        let r = s
            .post("/_matrix/client/v3/pushers/set", Some(&alice), pusher(key))
            .await;
        assert_eq!(r.0, 200, "{}", r.1);
    }
    let r = s
        .post("/_matrix/client/v3/pushers/set", Some(&alice), pusher("k3"))
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");

    // Filters: the same filter is stored once; beyond the bound the oldest goes.
    let filter = |n: u32| json!({ "room": { "timeline": { "limit": n } } });
    let path = "/_matrix/client/v3/user/@alice:localhost/filter";
    let first = s.post(path, Some(&alice), filter(1)).await.1["filter_id"].clone();
    let again = s.post(path, Some(&alice), filter(1)).await.1["filter_id"].clone();
    assert_eq!(first, again);
    s.post(path, Some(&alice), filter(2)).await;
    s.post(path, Some(&alice), filter(3)).await;
    let r = s
        .get(&format!("{path}/{}", first.as_str().unwrap()), Some(&alice))
        .await;
    assert_error(&r, 404, "M_NOT_FOUND");
}

#[tokio::test]
async fn a_refresh_token_lives_until_its_successor_is_used() {
    let s = TestServer::start().await;
    s.register("alice", "password-alice").await;
    let (status, body) = s
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
                   "password": "password-alice", "refresh_token": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let old = body["refresh_token"].as_str().unwrap().to_owned();
    let refresh = |token: String| {
        let s = &s;
        async move {
            s.post(
                "/_matrix/client/v3/refresh",
                None,
                json!({ "refresh_token": token }),
            )
            .await
        }
    };
    // The first answer is lost: the client retries with the same token.
    let lost = refresh(old.clone()).await;
    assert_eq!(lost.0, 200, "{}", lost.1);
    let second = refresh(old.clone()).await;
    assert_eq!(second.0, 200, "{}", second.1);
    // The tokens of the lost answer are gone; the new ones work and retire the old.
    let lost_access = lost.1["access_token"].as_str().unwrap();
    let r = s
        .get("/_matrix/client/v3/account/whoami", Some(lost_access))
        .await;
    assert_error(&r, 401, "M_UNKNOWN_TOKEN");
    let access = second.1["access_token"].as_str().unwrap();
    let r = s
        .get("/_matrix/client/v3/account/whoami", Some(access))
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    let r = refresh(old).await;
    assert_error(&r, 401, "M_UNKNOWN_TOKEN");
    let r = refresh(second.1["refresh_token"].as_str().unwrap().to_owned()).await;
    assert_eq!(r.0, 200, "{}", r.1);
}

#[tokio::test]
async fn metrics_count_requests_events_and_the_database() {
    use tower::ServiceExt as _;
    let s = TestServer::start().await;
    let (alice, _bob, room) = s.alice_and_bob_in_a_room().await;
    s.send_message(
        &alice,
        &room,
        "m1",
        json!({ "msgtype": "m.text", "body": "x" }),
    )
    .await;
    let r = s
        .get("/_matrix/client/v3/account/whoami", Some(&alice))
        .await;
    assert_eq!(r.0, 200);
    let odd = s
        .http
        .request(
            reqwest::Method::from_bytes(b"FOO").unwrap(),
            format!("{}/_matrix/client/versions", s.base),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(odd.status(), 405);
    let response = axon::api::metrics_app(s.hs.clone())
        .oneshot(
            http::Request::get("/metrics")
                .body(axum::body::Body::empty())
                .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let bytes = http_body_util::BodyExt::collect(response.into_body())
        .await
        .unwrap()
        .to_bytes();
    let text = String::from_utf8(bytes.to_vec()).unwrap();
    assert!(
        text.contains(
            "axon_http_requests_total{method=\"GET\",route=\"/_matrix/client/v3/account/whoami\",status=\"200\"} 1"
        ),
        "{text}"
    );
    let persisted = text
        .lines()
        .find_map(|l| l.strip_prefix("axon_event_persist_duration_seconds_count "))
        .and_then(|n| n.parse::<u64>().ok())
        .unwrap();
    assert!(persisted >= 2, "a join and a message at least: {persisted}");
    assert!(text.contains("axon_db_up 1"), "{text}");
    // Methods outside the standard set share one series.
    assert!(!text.contains("method=\"FOO\""), "{text}");
    assert!(text.contains("method=\"OTHER\""), "{text}");
    assert!(text.contains("axon_push_queue_depth "), "{text}");
    assert!(text.contains("axon_db_pool_max_connections "), "{text}");
}

#[tokio::test]
async fn racing_refreshes_of_a_session_never_fail_with_500() {
    let s = TestServer::start().await;
    s.register("alice", "password-alice").await;
    let (status, body) = s
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
                   "password": "password-alice", "refresh_token": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let old = body["refresh_token"].as_str().unwrap().to_owned();
    let (status, next) = s
        .post(
            "/_matrix/client/v3/refresh",
            None,
            json!({ "refresh_token": old }),
        )
        .await;
    assert_eq!(status, 200, "{next}");
    let new = next["refresh_token"].as_str().unwrap().to_owned();
    // Two processes of one app refresh with the old token and its successor at once.
    let refreshes = (0..8).map(|i| {
        let token = if i % 2 == 0 { old.clone() } else { new.clone() };
        let s = &s;
        async move {
            s.post(
                "/_matrix/client/v3/refresh",
                None,
                json!({ "refresh_token": token }),
            )
            .await
        }
    });
    let results = futures_util::future::join_all(refreshes).await;
    assert!(
        results.iter().any(|r| r.0 == 200),
        "none succeeded: {results:?}"
    );
    for r in &results {
        assert!(
            r.0 == 200 || (r.0 == 401 && r.1["errcode"] == "M_UNKNOWN_TOKEN"),
            "{r:?}"
        );
    }
}
