//! Fuzzing with a fixed budget (proptest, deterministic seed per run of CI): arbitrary
//! requests through the whole HTTP edge, arbitrary JSON through PDU parsing and the
//! federation structure check, arbitrary bytes through the JSON guard. Nothing may panic,
//! and no request may get a 500.

mod common;

use axon::json_guard;
use axum::body::Body;
use common::TestServer;
use proptest::{prelude::*, strategy::ValueTree as _, test_runner::TestRunner};
use serde_json::Value;
use tower::ServiceExt as _;

/// Arbitrary JSON, nested up to a few levels, with odd strings.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        ".{0,12}".prop_map(Value::String),
        prop_oneof![
            Just("$event:localhost"),
            Just("@alice:localhost"),
            Just("!room:localhost"),
            Just("m.room.message"),
            Just("\u{0}"),
        ]
        .prop_map(|s| Value::String(s.to_owned())),
    ];
    leaf.prop_recursive(6, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(
                prop_oneof![
                    Just("type".to_owned()),
                    Just("content".to_owned()),
                    Just("room_id".to_owned()),
                    Just("sender".to_owned()),
                    Just("state_key".to_owned()),
                    Just("prev_events".to_owned()),
                    Just("auth_events".to_owned()),
                    Just("depth".to_owned()),
                    ".{0,6}",
                ],
                inner,
                0..8
            )
            .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

#[test]
fn the_json_guard_agrees_with_the_parser_and_never_panics() {
    let mut runner = TestRunner::default();
    runner
        .run(&prop::collection::vec(any::<u8>(), 0..512), |bytes| {
            let _ = json_guard::check(&bytes, 8);
            Ok(())
        })
        .unwrap();
    runner
        .run(&json_value(), |value| {
            let text = serde_json::to_string(&value).unwrap();
            let verdict = json_guard::check(text.as_bytes(), 4);
            let too_deep = json_guard::depth(&value) > 4;
            let nul = json_guard::contains_nul(&value);
            prop_assert_eq!(verdict.is_ok(), !too_deep && !nul, "{}", text);
            Ok(())
        })
        .unwrap();
}

#[test]
fn pdu_parsing_never_panics() {
    let mut runner = TestRunner::default();
    runner
        .run(&json_value(), |value| {
            let Ok(ruma::CanonicalJsonValue::Object(obj)) =
                ruma::CanonicalJsonValue::try_from(value)
            else {
                return Ok(());
            };
            let _ = axon::rooms::receive::check_structure(&obj);
            let id = ruma::OwnedEventId::try_from("$fuzz:localhost").unwrap();
            let _ = axon::rooms::pdu::Pdu::from_json(id, obj);
            Ok(())
        })
        .unwrap();
}

/// A path segment: plain, percent-escaped, raw UTF-8, or the room and user of the test.
fn segment() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z0-9._]{1,8}",
        "(%[0-9A-Fa-f]{2}){1,3}",
        Just("%".to_owned()),
        Just("%FF".to_owned()),
        Just("%00".to_owned()),
        Just("é".to_owned()),
        Just("@alice:localhost".to_owned()),
        Just("!room:localhost".to_owned()),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn arbitrary_requests_never_get_a_500() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let app = axon::api::app(s.hs.clone());
    // Real endpoint prefixes, so requests get past routing into the extractor.
    let endpoints: Vec<String> = axon::http::extract::routed_endpoints()
        .into_iter()
        .map(|(_, pattern)| {
            pattern
                .split('/')
                .take_while(|seg| !seg.starts_with('{'))
                .collect::<Vec<_>>()
                .join("/")
        })
        .collect();
    let request = (
        prop::sample::select(vec!["GET", "POST", "PUT", "DELETE"]),
        prop::sample::select(endpoints),
        prop::collection::vec(segment(), 0..4),
        prop::option::of("[a-z_=&%0-9é]{0,24}"),
        prop_oneof![
            json_value().prop_map(|v| v.to_string().into_bytes()),
            prop::collection::vec(any::<u8>(), 0..64),
        ],
        any::<bool>(),
    );
    let cases: Vec<_> = {
        let mut runner = TestRunner::default();
        (0..300)
            .map(|_| request.new_tree(&mut runner).unwrap().current())
            .collect()
    };
    for (method, prefix, segments, query, body, authed) in cases {
        let mut uri = prefix.clone();
        for seg in &segments {
            uri.push('/');
            uri.push_str(seg);
        }
        if let Some(q) = &query {
            uri.push('?');
            uri.push_str(q);
        }
        let Ok(mut req) = http::Request::builder()
            .method(method)
            .uri(&uri)
            .body(Body::from(body.clone()))
        else {
            continue; // not a request a client could send
        };
        if authed {
            req.headers_mut().insert(
                http::header::AUTHORIZATION,
                format!("Bearer {alice}").parse().unwrap(),
            );
        }
        let response = app.clone().oneshot(req).await.unwrap();
        assert!(
            !response.status().is_server_error(),
            "{method} {uri} with {:?}: {}",
            String::from_utf8_lossy(&body),
            response.status()
        );
    }
}
