//! Finding people (`POST /user_directory/search`): users in public rooms and users
//! sharing a room are found by a prefix of a word of their display name or user ID;
//! users only in private rooms are not (unless `search_all_users`); the directory follows
//! display name changes and leaves; `limited`; bad terms. And TURN credentials
//! (`GET /voip/turnServer`) and support contacts (`/.well-known/matrix/support`) as
//! configured.

mod common;

use common::{TestServer, assert_error};
use serde_json::{Value, json};

async fn search(s: &TestServer, token: &str, term: &str) -> Value {
    let (status, body) = s
        .post(
            "/_matrix/client/v3/user_directory/search",
            Some(token),
            json!({"search_term": term}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn ids(body: &Value) -> Vec<String> {
    body["results"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| r["user_id"].as_str().map(str::to_owned))
        .collect()
}

async fn set_name(s: &TestServer, token: &str, user: &str, name: &str) {
    let (status, body) = s
        .put(
            &format!("/_matrix/client/v3/profile/{user}/displayname"),
            Some(token),
            json!({"displayname": name}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn who_can_be_found_and_when() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "correct horse battery").await;
    let (bob, _) = s.register("bob", "correct horse battery").await;
    let (carol, _) = s.register("carol", "correct horse battery").await;
    let (dave, _) = s.register("dave", "correct horse battery").await;
    let bob_id = "@bob:localhost";
    let carol_id = "@carol:localhost";
    set_name(&s, &bob, bob_id, "Robert Plant").await;
    set_name(&s, &carol, carol_id, "Carol Kaye").await;

    // bob is in a public room: anyone finds him, by any word's prefix or his ID.
    let public = s.create_room(&bob, json!({"preset": "public_chat"})).await;
    for term in ["robert", "PLA", "Robert Pl", "bob"] {
        assert_eq!(ids(&search(&s, &alice, term).await), vec![bob_id], "{term}");
    }
    let first = &search(&s, &alice, "plant").await["results"][0];
    assert_eq!(first["display_name"], "Robert Plant");
    assert!(
        search(&s, &alice, "lant").await["results"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    // Regex characters are only characters.
    assert!(ids(&search(&s, &alice, "r.*").await).is_empty());

    // carol is only in a private room with dave: dave finds her, alice does not.
    let private = s
        .create_room(
            &carol,
            json!({"preset": "private_chat", "invite": ["@dave:localhost"]}),
        )
        .await;
    s.join(&dave, &private).await;
    assert!(ids(&search(&s, &alice, "carol").await).is_empty());
    assert_eq!(ids(&search(&s, &dave, "carol").await), vec![carol_id]);
    // Nobody finds themselves through a private room.
    assert!(ids(&search(&s, &carol, "carol").await).is_empty());

    // A new display name is found at once; the old one no longer.
    set_name(&s, &carol, carol_id, "Carol Bass").await;
    assert_eq!(ids(&search(&s, &dave, "bass").await), vec![carol_id]);
    assert!(ids(&search(&s, &dave, "kaye").await).is_empty());

    // Once dave leaves, carol is out of his reach.
    let (status, body) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{private}/leave"),
            Some(&dave),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(ids(&search(&s, &dave, "carol").await).is_empty());

    // limited: more matches than asked for.
    for name in ["zed1", "zed2", "zed3"] {
        let (token, _) = s.register(name, "correct horse battery").await;
        s.join(&token, &public).await;
    }
    let (status, body) = s
        .post(
            "/_matrix/client/v3/user_directory/search",
            Some(&alice),
            json!({"search_term": "zed", "limit": 2}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(ids(&body).len(), 2);
    assert_eq!(body["limited"], true);
    assert_eq!(search(&s, &alice, "zed").await["limited"], false);

    // Bad requests.
    let result = s
        .post(
            "/_matrix/client/v3/user_directory/search",
            Some(&alice),
            json!({"search_term": "x".repeat(300)}),
        )
        .await;
    assert_error(&result, 400, "M_INVALID_PARAM");
    let result = s
        .post(
            "/_matrix/client/v3/user_directory/search",
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(result.0, 400, "{}", result.1);
    let result = s
        .post(
            "/_matrix/client/v3/user_directory/search",
            None,
            json!({"search_term": "bob"}),
        )
        .await;
    assert_error(&result, 401, "M_MISSING_TOKEN");
}

#[tokio::test]
async fn search_all_users_finds_everyone() {
    let s = TestServer::start_with(|env| {
        env.insert(
            "AXON_USER_DIRECTORY__SEARCH_ALL_USERS".into(),
            "true".into(),
        );
    })
    .await;
    let (alice, _) = s.register("alice", "correct horse battery").await;
    let (loner, _) = s.register("loner", "correct horse battery").await;
    set_name(&s, &loner, "@loner:localhost", "Lonely Heart").await;
    assert_eq!(
        ids(&search(&s, &alice, "lonely").await),
        vec!["@loner:localhost"]
    );
}

#[tokio::test]
async fn turn_credentials() {
    let s = TestServer::start_with(|env| {
        env.insert(
            "AXON_VOIP__TURN_URIS".into(),
            r#"["turn:turn.example.org:3478?transport=udp"]"#.into(),
        );
        env.insert("AXON_VOIP__TURN_SHARED_SECRET".into(), "s3cret".into());
        env.insert("AXON_VOIP__TURN_USER_LIFETIME_SECS".into(), "600".into());
    })
    .await;
    let (alice, _) = s.register("alice", "correct horse battery").await;
    let (status, body) = s
        .get("/_matrix/client/v3/voip/turnServer", Some(&alice))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["uris"],
        json!(["turn:turn.example.org:3478?transport=udp"])
    );
    assert_eq!(body["ttl"], 600);
    let username = body["username"].as_str().unwrap();
    let (expiry, user) = username.split_once(':').unwrap();
    assert_eq!(user, "@alice:localhost");
    assert!(expiry.parse::<u64>().unwrap() > 1_700_000_000);
    assert!(!body["password"].as_str().unwrap().is_empty());
    let result = s.get("/_matrix/client/v3/voip/turnServer", None).await;
    assert_error(&result, 401, "M_MISSING_TOKEN");

    // Nothing configured: an empty object.
    let plain = TestServer::start().await;
    let (bob, _) = plain.register("bob", "correct horse battery").await;
    let (status, body) = plain
        .get("/_matrix/client/v3/voip/turnServer", Some(&bob))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({}));
}

#[tokio::test]
async fn support_information() {
    let s = TestServer::start_with(|env| {
        env.insert(
            "AXON_WELL_KNOWN__SUPPORT_PAGE".into(),
            "https://example.org/help".into(),
        );
        env.insert(
            "AXON_WELL_KNOWN__SUPPORT_CONTACTS".into(),
            r#"[{ role = "m.role.admin", email_address = "admin@example.org" }]"#.into(),
        );
    })
    .await;
    let (status, body) = s.get("/.well-known/matrix/support", None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["support_page"], "https://example.org/help");
    assert_eq!(
        body["contacts"],
        json!([{"role": "m.role.admin", "email_address": "admin@example.org"}])
    );
    let plain = TestServer::start().await;
    let result = plain.get("/.well-known/matrix/support", None).await;
    assert_error(&result, 404, "M_NOT_FOUND");
    // Not a policy server: said so (not an unknown endpoint).
    let result = plain.get("/.well-known/matrix/policy_server", None).await;
    assert_error(&result, 404, "M_NOT_FOUND");
}
