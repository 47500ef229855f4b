//! Guest accounts: registered when allowed; they may read and talk in rooms that let
//! guests in and nothing else (403 M_GUEST_ACCESS_FORBIDDEN); they leave a room that
//! stops letting guests in; and a guest can become a full account keeping its user ID.

mod common;

use common::{TestServer, assert_error};
use serde_json::{Value, json};

async fn guest(s: &TestServer) -> (String, String) {
    let (status, body) = s
        .post("/_matrix/client/v3/register?kind=guest", None, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    (
        body["access_token"].as_str().unwrap().to_owned(),
        body["user_id"].as_str().unwrap().to_owned(),
    )
}

async fn set_guest_access(s: &TestServer, token: &str, room: &str, access: &str) {
    let (status, body) = s
        .put(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.guest_access/"),
            Some(token),
            json!({"guest_access": access}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn membership(s: &TestServer, token: &str, room: &str, user: &str) -> Value {
    let (_, body) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{user}"),
            Some(token),
        )
        .await;
    body["membership"].clone()
}

#[tokio::test]
async fn guests_join_guest_rooms_only_and_can_upgrade() {
    let s = TestServer::start_with(|env| {
        env.insert("AXON_REGISTRATION__ALLOW_GUESTS".into(), "true".into());
    })
    .await;
    let (alice, _) = s.register("alice", "correct horse battery").await;
    let (token, guest_id) = guest(&s).await;
    let (status, who) = s
        .get("/_matrix/client/v3/account/whoami", Some(&token))
        .await;
    assert_eq!(status, 200, "{who}");
    assert_eq!(who["is_guest"], true);

    // Guests do not make rooms, invite, upload, or read the whole event stream.
    let result = s
        .get("/_matrix/client/v3/events?timeout=0", Some(&token))
        .await;
    assert_error(&result, 403, "M_GUEST_ACCESS_FORBIDDEN");
    let result = s
        .post("/_matrix/client/v3/createRoom", Some(&token), json!({}))
        .await;
    assert_error(&result, 403, "M_GUEST_ACCESS_FORBIDDEN");
    let upload = s
        .http
        .post(format!("{}/_matrix/media/v3/upload", s.base))
        .bearer_auth(&token)
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(upload.status(), 403);

    // Only rooms that let guests in.
    let open = s
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    set_guest_access(&s, &alice, &open, "can_join").await;
    let closed = s
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    set_guest_access(&s, &alice, &closed, "forbidden").await;
    let result = s
        .post(
            &format!("/_matrix/client/v3/join/{closed}"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_error(&result, 403, "M_GUEST_ACCESS_FORBIDDEN");
    let (status, body) = s
        .post(
            &format!("/_matrix/client/v3/join/{open}"),
            Some(&token),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    s.send_message(
        &token,
        &open,
        "g1",
        json!({"msgtype": "m.text", "body": "hi from a guest"}),
    )
    .await;
    let result = s
        .post(
            &format!("/_matrix/client/v3/rooms/{open}/invite"),
            Some(&token),
            json!({"user_id": "@alice:localhost"}),
        )
        .await;
    assert_error(&result, 403, "M_GUEST_ACCESS_FORBIDDEN");
    let (status, synced) = s
        .get("/_matrix/client/v3/sync?timeout=0", Some(&token))
        .await;
    assert_eq!(status, 200, "{synced}");
    assert!(synced["rooms"]["join"][&open].is_object());

    // The room stops letting guests in: the guest is out.
    set_guest_access(&s, &alice, &open, "forbidden").await;
    assert_eq!(membership(&s, &alice, &open, &guest_id).await, "leave");

    // Upgrading another user's name is refused; the guest's own becomes a full account.
    let localpart = guest_id
        .trim_start_matches('@')
        .split(':')
        .next()
        .unwrap()
        .to_owned();
    let register = |username: &str, session: Option<&str>| {
        let mut body = json!({"username": username, "password": "a much better password",
                              "guest_access_token": token});
        if let Some(session) = session {
            body["auth"] = json!({"type": "m.login.dummy", "session": session});
        }
        body
    };
    let result = s
        .post("/_matrix/client/v3/register", None, register("alice", None))
        .await;
    assert_error(&result, 400, "M_USER_IN_USE");
    let (status, challenge) = s
        .post(
            "/_matrix/client/v3/register",
            None,
            register(&localpart, None),
        )
        .await;
    assert_eq!(status, 401, "{challenge}");
    let session = challenge["session"].as_str().unwrap().to_owned();
    let (status, upgraded) = s
        .post(
            "/_matrix/client/v3/register",
            None,
            register(&localpart, Some(&session)),
        )
        .await;
    assert_eq!(status, 200, "{upgraded}");
    assert_eq!(upgraded["user_id"], guest_id.as_str());
    let full = upgraded["access_token"].as_str().unwrap();
    let (_, who) = s.get("/_matrix/client/v3/account/whoami", Some(full)).await;
    assert_eq!(who["user_id"], guest_id.as_str(), "{who}");
    assert_ne!(who["is_guest"], true, "{who}");
    let (status, body) = s
        .post("/_matrix/client/v3/createRoom", Some(full), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = s.login(&localpart, "a much better password").await;
    assert_eq!(status, 200, "{body}");
}
