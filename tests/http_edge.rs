//! The HTTP edge: Matrix errors for unknown endpoints, wrong methods, bad bodies, tokens,
//! size and rate limits; CORS; discovery endpoints.

mod common;

use common::{TestServer, assert_error};
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn unknown_endpoint_and_wrong_method() {
    let s = TestServer::start().await;
    let r = s.get("/_matrix/client/v3/no_such_thing", None).await;
    assert_error(&r, 404, "M_UNRECOGNIZED");
    let r = s
        .call(
            Method::PUT,
            "/_matrix/client/versions",
            None,
            Some(json!({})),
        )
        .await;
    assert_error(&r, 405, "M_UNRECOGNIZED");
    let r = s
        .call(Method::DELETE, "/_matrix/client/v3/login", None, None)
        .await;
    assert_error(&r, 405, "M_UNRECOGNIZED");
}

#[tokio::test]
async fn not_json_and_bad_json() {
    let s = TestServer::start().await;
    let res = s
        .http
        .post(format!("{}/_matrix/client/v3/login", s.base))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(body["errcode"], "M_NOT_JSON");

    // valid JSON, wrong shape
    let r = s
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "password": 5}),
        )
        .await;
    assert_error(&r, 400, "M_BAD_JSON");
    let r = s
        .post("/_matrix/client/v3/refresh", None, json!({"token": "x"}))
        .await;
    assert_error(&r, 400, "M_BAD_JSON");
}

#[tokio::test]
async fn missing_unknown_and_expired_tokens() {
    let s = TestServer::start().await;
    let r = s.get("/_matrix/client/v3/account/whoami", None).await;
    assert_error(&r, 401, "M_MISSING_TOKEN");
    let r = s
        .get("/_matrix/client/v3/account/whoami", Some("axa_nonsense"))
        .await;
    assert_error(&r, 401, "M_UNKNOWN_TOKEN");
    assert_eq!(r.1["soft_logout"], false);

    // access_token in the query string works too
    let (token, _) = s.register("alice", "secret-password").await;
    let r = s
        .get(
            &format!("/_matrix/client/v3/account/whoami?access_token={token}"),
            None,
        )
        .await;
    assert_eq!(r.0, 200, "{}", r.1);
    assert_eq!(r.1["user_id"], "@alice:localhost");

    // an expired access token is a soft logout
    let (status, body) = s
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "alice"},
                   "password": "secret-password", "refresh_token": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    // time passes
    s.sql("UPDATE access_tokens SET expires_ts = 1 WHERE expires_ts IS NOT NULL")
        .await;
    let r = s
        .get("/_matrix/client/v3/account/whoami", Some(token))
        .await;
    assert_error(&r, 401, "M_UNKNOWN_TOKEN");
    assert_eq!(r.1["soft_logout"], true);
}

#[tokio::test]
async fn request_too_large() {
    let s = TestServer::start_with(|env| {
        env.insert("AXON_LIMITS__MAX_REQUEST_SIZE".into(), "2048".into());
    })
    .await;
    let big = "x".repeat(4096);
    let r = s
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "password": big}),
        )
        .await;
    assert_error(&r, 413, "M_TOO_LARGE");
    // chunked body without a Content-Length is cut off too
    let stream = futures_util::stream::iter(
        (0..10).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 1024]))),
    );
    let res = s
        .http
        .post(format!("{}/_matrix/client/v3/login", s.base))
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
}

#[tokio::test]
async fn rate_limited_login() {
    let s = TestServer::start_with(|env| {
        env.insert("AXON_RATE_LIMITS__ENABLED".into(), "true".into());
        env.insert("AXON_RATE_LIMITS__LOGIN__PER_SECOND".into(), "0.01".into());
        env.insert("AXON_RATE_LIMITS__LOGIN__BURST".into(), "2".into());
    })
    .await;
    for _ in 0..2 {
        let r = s.login("nobody", "wrong").await;
        assert_error(&r, 403, "M_FORBIDDEN");
    }
    let r = s.login("nobody", "wrong").await;
    assert_error(&r, 429, "M_LIMIT_EXCEEDED");
    assert!(r.1["retry_after_ms"].as_u64().unwrap() > 0, "{}", r.1);
}

#[tokio::test]
async fn failed_logins_are_limited_per_user() {
    let s = TestServer::start_with(|env| {
        env.insert("AXON_RATE_LIMITS__ENABLED".into(), "true".into());
        env.insert("AXON_RATE_LIMITS__LOGIN__BURST".into(), "100".into());
        env.insert("AXON_RATE_LIMITS__REGISTRATION__BURST".into(), "100".into());
        env.insert(
            "AXON_RATE_LIMITS__FAILED_LOGIN__PER_SECOND".into(),
            "0.01".into(),
        );
        env.insert("AXON_RATE_LIMITS__FAILED_LOGIN__BURST".into(), "2".into());
    })
    .await;
    s.register("carol", "right-password").await;
    for _ in 0..2 {
        assert_error(&s.login("carol", "wrong").await, 403, "M_FORBIDDEN");
    }
    // even the right password waits now: the account is being guessed at
    assert_error(
        &s.login("carol", "right-password").await,
        429,
        "M_LIMIT_EXCEEDED",
    );
}

#[tokio::test]
async fn cors_on_every_response_and_options() {
    let s = TestServer::start().await;
    let res = s
        .http
        .request(
            Method::OPTIONS,
            format!("{}/_matrix/client/v3/login", s.base),
        )
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "POST")
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    let h = res.headers();
    assert_eq!(h["access-control-allow-origin"], "*");
    assert!(
        h["access-control-allow-methods"]
            .to_str()
            .unwrap()
            .contains("PUT")
    );
    assert!(
        h["access-control-allow-headers"]
            .to_str()
            .unwrap()
            .contains("Authorization")
    );

    for path in ["/_matrix/client/versions", "/_matrix/client/v3/nothing"] {
        let res = s
            .http
            .get(format!("{}{path}", s.base))
            .send()
            .await
            .unwrap();
        assert_eq!(res.headers()["access-control-allow-origin"], "*", "{path}");
    }
}

#[tokio::test]
async fn discovery() {
    let s = TestServer::start().await;
    let (status, body) = s.get("/_matrix/client/versions", None).await;
    assert_eq!(status, 200);
    assert!(
        body["versions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|v| v == "v1.19")
    );

    let (status, body) = s.get("/.well-known/matrix/client", None).await;
    assert_eq!(status, 200);
    assert!(
        body["m.homeserver"]["base_url"]
            .as_str()
            .unwrap()
            .starts_with("http")
    );

    let (status, body) = s.get("/.well-known/matrix/server", None).await;
    assert_eq!(status, 200);
    assert_eq!(body["m.server"], "localhost:443");

    let r = s.get("/_matrix/client/v3/capabilities", None).await;
    assert_error(&r, 401, "M_MISSING_TOKEN");
    let (token, _) = s.register("dave", "password-1").await;
    let (status, body) = s.get("/_matrix/client/v3/capabilities", Some(&token)).await;
    assert_eq!(status, 200, "{body}");
    let caps = &body["capabilities"];
    // absent means enabled for m.change_password (ruma leaves out the default)
    assert_ne!(caps["m.change_password"]["enabled"], false);
    assert_eq!(caps["m.room_versions"]["default"], "12");
    for v in 1..=12 {
        assert_eq!(
            caps["m.room_versions"]["available"][v.to_string()],
            "stable",
            "{caps}"
        );
    }
    // Email addresses can be bound at identity servers even without a mail server.
    assert_eq!(caps["m.3pid_changes"]["enabled"], true);
    assert_eq!(caps["m.get_login_token"]["enabled"], true);
    assert_eq!(caps["m.profile_fields"]["enabled"], true);
}

#[tokio::test]
async fn rate_limited_endpoints_per_user() {
    let s = TestServer::start_with(|env| {
        env.insert("AXON_RATE_LIMITS__ENABLED".into(), "true".into());
        env.insert("AXON_RATE_LIMITS__REGISTRATION__BURST".into(), "10".into());
        env.insert(
            "AXON_RATE_LIMITS__REQUESTS__PER_SECOND".into(),
            "0.01".into(),
        );
        env.insert("AXON_RATE_LIMITS__REQUESTS__BURST".into(), "3".into());
    })
    .await;
    let (alice, _) = s.register("alice", "pw").await;
    let (bob, _) = s.register("bob", "pw").await;
    // whoami is rate-limited in the spec; /devices is not
    for _ in 0..3 {
        assert_eq!(
            s.get("/_matrix/client/v3/account/whoami", Some(&alice))
                .await
                .0,
            200
        );
    }
    let r = s
        .get("/_matrix/client/v3/account/whoami", Some(&alice))
        .await;
    assert_error(&r, 429, "M_LIMIT_EXCEEDED");
    assert_eq!(
        s.get("/_matrix/client/v3/devices", Some(&alice)).await.0,
        200
    );
    // other users have their own budget
    assert_eq!(
        s.get("/_matrix/client/v3/account/whoami", Some(&bob))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn overloaded_rooms_refuse_writes_with_429_and_lose_nothing() {
    let s = TestServer::start_with(|env| {
        env.insert(
            "AXON_LIMITS__MAX_PENDING_WRITES_PER_ROOM".into(),
            "1".into(),
        );
    })
    .await;
    let (token, _) = s.register("busy", "password-busy").await;
    let (status, res) = s
        .post("/_matrix/client/v3/createRoom", Some(&token), json!({}))
        .await;
    assert_eq!(status, 200, "{res}");
    let room = res["room_id"].as_str().unwrap().to_owned();
    let send = |txn: &'static str| {
        let (s, token, room) = (&s, token.clone(), room.clone());
        async move {
            s.put(
                &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
                Some(&token),
                json!({"msgtype": "m.text", "body": txn}),
            )
            .await
        }
    };
    // A write holds the room: the next one is refused at once, not queued.
    let held = s.hs.room_locks.lock(&room).await.expect("the room's lock");
    let r = tokio::time::timeout(std::time::Duration::from_secs(5), send("t1"))
        .await
        .expect("answered without waiting for the lock");
    assert_error(&r, 429, "M_LIMIT_EXCEEDED");
    assert!(r.1["retry_after_ms"].as_u64().unwrap() > 0, "{}", r.1);
    drop(held);
    // The client's retry with the same transaction ID goes through, once.
    let first = send("t1").await;
    assert_eq!(first.0, 200, "{}", first.1);
    let again = send("t1").await;
    assert_eq!(again.1["event_id"], first.1["event_id"]);
    let (status, msgs) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50"),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200);
    let bodies: Vec<&str> = msgs["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "m.room.message")
        .filter_map(|e| e["content"]["body"].as_str())
        .collect();
    assert_eq!(bodies, ["t1"]);
}
