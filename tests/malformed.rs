//! Every routed endpoint that takes a body, sent malformed variants of it: nested too
//! deep, with a NUL character, over the size limit, and of the wrong JSON type. Each must
//! get a Matrix error (4xx with an errcode), never a 500 or a dropped connection.

mod common;

use common::TestServer;
use reqwest::Method;
use serde_json::{Value, json};

fn nested(levels: usize) -> Value {
    let mut v = json!(1);
    for _ in 0..levels {
        v = json!({ "a": v });
    }
    v
}

/// A path pattern with its `{parameters}` filled with values that name real things where
/// it matters (the room, the user, an event), so requests reach the body check of most
/// handlers rather than stopping at a 404.
fn fill(pattern: &str, room: &str, event: &str, n: usize) -> String {
    pattern
        .split('/')
        .map(|segment| {
            let Some(name) = segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) else {
                return segment.to_owned();
            };
            match name.trim_start_matches('*') {
                "roomId" | "roomIdOrAlias" => room.to_owned(),
                "userId" => "@alice:localhost".to_owned(),
                "eventId" => event.to_owned(),
                "txnId" => format!("t{n}"),
                "eventType" | "type" => "m.room.message".to_owned(),
                "roomAlias" => "%23alias:localhost".to_owned(),
                "serverName" => "localhost".to_owned(),
                "filterId" => "1".to_owned(),
                _ => "x".to_owned(),
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[tokio::test]
async fn malformed_bodies_on_every_endpoint_get_matrix_errors() {
    let s = TestServer::start_with(|env| {
        env.insert("AXON_LIMITS__MAX_REQUEST_SIZE".into(), "65536".into());
    })
    .await;
    let (alice, _bob, room) = s.alice_and_bob_in_a_room().await;
    let event = s
        .send_message(
            &alice,
            &room,
            "seed",
            json!({"msgtype": "m.text", "body": "x"}),
        )
        .await;
    let endpoints: Vec<(String, String)> = axon::http::extract::routed_endpoints()
        .into_iter()
        .filter(|(method, _)| method == "POST" || method == "PUT")
        .collect();
    assert!(endpoints.len() > 50, "only {} endpoints", endpoints.len());

    let oversize = json!({ "pad": "x".repeat(70_000) });
    let must_refuse = [
        ("nested 100 deep", nested(100)),
        (
            "a NUL character",
            json!({ "body": "a\u{0}b", "type": "m.login.password" }),
        ),
        ("over the size limit", oversize),
    ];
    let mut token = alice.clone();
    let mut n = 0;
    let mut failures = Vec::new();
    for (method, pattern) in &endpoints {
        let method: Method = method.parse().unwrap();
        for (what, body) in &must_refuse {
            n += 1;
            let path = fill(pattern, &room, &event, n);
            let (status, res) = s
                .call(method.clone(), &path, Some(&token), Some(body.clone()))
                .await;
            if !(status.is_client_error() && res["errcode"].is_string()) {
                failures.push(format!("{method} {path} ({what}): {status} {res}"));
            }
        }
    }
    // Wrong JSON types: an endpoint without body parameters may accept them; none may
    // fail with a server error or answer a 4xx that is not a Matrix error.
    for (method, pattern) in &endpoints {
        let method: Method = method.parse().unwrap();
        for body in [
            json!([1, "x"]),
            json!("text"),
            json!({ "room_id": 5, "user_id": [] }),
        ] {
            n += 1;
            let path = fill(pattern, &room, &event, n);
            let (status, res) = s
                .call(method.clone(), &path, Some(&token), Some(body.clone()))
                .await;
            // A 401 with flows is user-interactive auth asking for its first stage.
            let matrix_error =
                res["errcode"].is_string() || (status == 401 && res["flows"].is_array());
            if status.is_server_error() || (status.is_client_error() && !matrix_error) {
                failures.push(format!(
                    "{method} {path} (wrong types {body}): {status} {res}"
                ));
            }
            // Some endpoints act without a body (logout): log in again when one did.
            if status == 401 && res["errcode"] == "M_UNKNOWN_TOKEN" {
                token = s.login_ok("alice", "password-alice").await.0;
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Request bodies the spec marks optional may be left out (matrix-nio's `POST /join` sends
/// none): an empty body reads as `{}`, so no endpoint answers `M_NOT_JSON` to it.
#[tokio::test]
async fn empty_bodies_read_as_empty_objects() {
    let s = TestServer::start().await;
    let (alice, bob, room) = s.alice_and_bob_in_a_room().await;
    let event = s
        .send_message(
            &alice,
            &room,
            "seed",
            json!({"msgtype": "m.text", "body": "x"}),
        )
        .await;
    // nio's join, with no body at all.
    let (bob_leaves, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/leave"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(bob_leaves, 200);
    let res = s
        .http
        .post(format!("{}/_matrix/client/v3/join/{room}", s.base))
        .bearer_auth(&bob)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{}", res.text().await.unwrap());
    // Registration with `{}` asks for authentication first (matrix-sdk's harness).
    let (status, body) = s.post("/_matrix/client/v3/register", None, json!({})).await;
    assert_eq!(status, 401, "{body}");
    assert!(
        body["flows"].is_array() && body["session"].is_string(),
        "{body}"
    );

    let mut token = alice.clone();
    let mut not_json = Vec::new();
    for (n, (method, pattern)) in axon::http::extract::routed_endpoints()
        .into_iter()
        .filter(|(method, _)| method == "POST" || method == "PUT")
        .enumerate()
    {
        let path = fill(&pattern, &room, &event, n);
        let res = s
            .http
            .request(method.parse().unwrap(), format!("{}{path}", s.base))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        let status = res.status();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        if body["errcode"] == "M_NOT_JSON" || status.is_server_error() {
            not_json.push(format!("{method} {path}: {status} {body}"));
        }
        if status == 401 && body["errcode"] == "M_UNKNOWN_TOKEN" {
            token = s.login_ok("alice", "password-alice").await.0;
        }
    }
    assert!(not_json.is_empty(), "{}", not_json.join("\n"));
}
