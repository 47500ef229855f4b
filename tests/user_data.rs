//! Profiles, account data and filters.

mod common;

use common::{TestServer, assert_error};
use serde_json::json;

#[tokio::test]
async fn profile_fields() {
    let s = TestServer::start().await;
    let (t, _) = s.register("alice", "pw").await;
    let base = "/_matrix/client/v3/profile/@alice:localhost";

    // a new account's display name is its localpart
    let (status, body) = s.get(base, None).await;
    assert_eq!(status, 200);
    assert_eq!(body, json!({"displayname": "alice"}));

    let (status, _) = s
        .put(
            &format!("{base}/displayname"),
            Some(&t),
            json!({"displayname": "Alice"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .put(
            &format!("{base}/avatar_url"),
            Some(&t),
            json!({"avatar_url": "mxc://localhost/abc"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .put(
            &format!("{base}/m.tz"),
            Some(&t),
            json!({"m.tz": "Europe/London"}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, _) = s
        .put(
            &format!("{base}/org.example.pronouns"),
            Some(&t),
            json!({"org.example.pronouns": ["she"]}),
        )
        .await;
    assert_eq!(status, 200);

    let (_, body) = s.get(base, None).await;
    assert_eq!(
        body,
        json!({"displayname": "Alice", "avatar_url": "mxc://localhost/abc", "m.tz": "Europe/London",
               "org.example.pronouns": ["she"]})
    );
    let (status, body) = s.get(&format!("{base}/displayname"), None).await;
    assert_eq!(
        (status.as_u16(), body),
        (200, json!({"displayname": "Alice"}))
    );

    let (status, _) = s.delete(&format!("{base}/m.tz"), Some(&t), None).await;
    assert_eq!(status, 200);
    assert_error(
        &s.get(&format!("{base}/m.tz"), None).await,
        404,
        "M_NOT_FOUND",
    );

    // errors
    assert_error(
        &s.get("/_matrix/client/v3/profile/@ghost:localhost", None)
            .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.get("/_matrix/client/v3/profile/not-a-user-id", None)
            .await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.put(
            &format!("{base}/displayname"),
            None,
            json!({"displayname": "x"}),
        )
        .await,
        401,
        "M_MISSING_TOKEN",
    );
    let (bob, _) = s.register("bob", "pw").await;
    assert_error(
        &s.put(
            &format!("{base}/displayname"),
            Some(&bob),
            json!({"displayname": "x"}),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.delete(&format!("{base}/displayname"), Some(&bob), None)
            .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.put(
            &format!("{base}/avatar_url"),
            Some(&t),
            // Any string is kept (as Synapse); not a string is bad JSON.
            json!({"avatar_url": 5}),
        )
        .await,
        400,
        "M_BAD_JSON",
    );
    assert_error(
        &s.put(
            &format!("{base}/displayname"),
            Some(&t),
            json!({"displayname": 5}),
        )
        .await,
        400,
        "M_BAD_JSON",
    );
    let long = "d".repeat(300);
    assert_error(
        &s.put(
            &format!("{base}/displayname"),
            Some(&t),
            json!({"displayname": long}),
        )
        .await,
        400,
        "M_INVALID_PARAM",
    );
    // the body must carry the field the path names
    assert_eq!(
        s.put(
            &format!("{base}/displayname"),
            Some(&t),
            json!({"other": "x"})
        )
        .await
        .0,
        400
    );
    // 64 KiB cap on the whole profile
    let chunk = "z".repeat(40_000);
    assert_eq!(
        s.put(
            &format!("{base}/org.example.a"),
            Some(&t),
            json!({"org.example.a": chunk})
        )
        .await
        .0,
        200
    );
    let r = s
        .put(
            &format!("{base}/org.example.b"),
            Some(&t),
            json!({"org.example.b": chunk}),
        )
        .await;
    assert_error(&r, 400, "M_PROFILE_TOO_LARGE");
}

#[tokio::test]
async fn account_data() {
    let s = TestServer::start().await;
    let (t, _) = s.register("carl", "pw").await;
    let global = "/_matrix/client/v3/user/@carl:localhost/account_data/org.example.settings";
    assert_error(&s.get(global, Some(&t)).await, 404, "M_NOT_FOUND");
    let (status, _) = s.put(global, Some(&t), json!({"theme": "dark"})).await;
    assert_eq!(status, 200);
    let (status, body) = s.get(global, Some(&t)).await;
    assert_eq!((status.as_u16(), body), (200, json!({"theme": "dark"})));
    s.put(global, Some(&t), json!({"theme": "light"})).await;
    assert_eq!(s.get(global, Some(&t)).await.1, json!({"theme": "light"}));

    let room = "/_matrix/client/v3/user/@carl:localhost/rooms/!room:localhost/account_data/org.example.tag";
    assert_error(&s.get(room, Some(&t)).await, 404, "M_NOT_FOUND");
    assert_eq!(s.put(room, Some(&t), json!({"x": 1})).await.0, 200);
    assert_eq!(s.get(room, Some(&t)).await.1, json!({"x": 1}));
    // global and room data do not mix
    let global_same_type = "/_matrix/client/v3/user/@carl:localhost/account_data/org.example.tag";
    assert_error(&s.get(global_same_type, Some(&t)).await, 404, "M_NOT_FOUND");

    let (other, _) = s.register("dina", "pw").await;
    assert_error(&s.get(global, Some(&other)).await, 403, "M_FORBIDDEN");
    assert_error(
        &s.put(global, Some(&other), json!({})).await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(&s.get(global, None).await, 401, "M_MISSING_TOKEN");
    let fully_read =
        "/_matrix/client/v3/user/@carl:localhost/rooms/!room:localhost/account_data/m.fully_read";
    assert_error(
        &s.put(fully_read, Some(&t), json!({"event_id": "$x"})).await,
        405,
        "M_BAD_JSON",
    );
    let bad_room =
        "/_matrix/client/v3/user/@carl:localhost/rooms/not-a-room/account_data/org.example.tag";
    assert_error(
        &s.put(bad_room, Some(&t), json!({})).await,
        400,
        "M_INVALID_PARAM",
    );
    assert_error(
        &s.put(global, Some(&t), json!([1, 2])).await,
        400,
        "M_BAD_JSON",
    );
}

#[tokio::test]
async fn filters() {
    let s = TestServer::start().await;
    let (t, _) = s.register("eve", "pw").await;
    let filter =
        json!({"room": {"timeline": {"limit": 10}}, "presence": {"types": ["m.presence"]}});
    let (status, body) = s
        .post(
            "/_matrix/client/v3/user/@eve:localhost/filter",
            Some(&t),
            filter.clone(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let id = body["filter_id"].as_str().unwrap().to_owned();
    let (status, body) = s
        .get(
            &format!("/_matrix/client/v3/user/@eve:localhost/filter/{id}"),
            Some(&t),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["room"]["timeline"]["limit"], 10);
    assert_eq!(body["presence"]["types"], json!(["m.presence"]));

    assert_error(
        &s.get(
            "/_matrix/client/v3/user/@eve:localhost/filter/999",
            Some(&t),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.get(
            "/_matrix/client/v3/user/@eve:localhost/filter/abc",
            Some(&t),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    let (other, _) = s.register("finn", "pw").await;
    assert_error(
        &s.get(
            &format!("/_matrix/client/v3/user/@eve:localhost/filter/{id}"),
            Some(&other),
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    assert_error(
        &s.post(
            "/_matrix/client/v3/user/@eve:localhost/filter",
            Some(&other),
            filter,
        )
        .await,
        403,
        "M_FORBIDDEN",
    );
    let r = s
        .post(
            "/_matrix/client/v3/user/@eve:localhost/filter",
            Some(&t),
            json!({"room": {"timeline": {"limit": "ten"}}}),
        )
        .await;
    assert_error(&r, 400, "M_BAD_JSON");
}
