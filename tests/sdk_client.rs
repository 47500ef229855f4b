//! A real client: matrix-sdk (what Element X is built on) drives axon as a user would.

mod common;
#[path = "common/sdk.rs"]
mod sdk;

use common::TestServer;
use matrix_sdk::{
    Error as SdkError,
    authentication::matrix::MatrixSession,
    ruma::{
        OwnedDeviceId,
        api::client::uiaa::{self, AuthData, UserIdentifier},
        events::{AnyGlobalAccountDataEventContent, GlobalAccountDataEventType},
        mxc_uri,
        serde::Raw,
    },
    store::RoomLoadSettings,
};
use sdk::{client, register};
use serde_json::json;

#[tokio::test]
async fn register_login_profile_account_data_logout() {
    let server = TestServer::start().await;
    let alice = client(&server.base).await;
    register(&alice, "alice", "alice-password").await;
    assert_eq!(alice.whoami().await.unwrap().user_id, "@alice:localhost");

    // a second client logs in with a refresh token
    let phone = client(&server.base).await;
    phone
        .matrix_auth()
        .login_username("alice", "alice-password")
        .initial_device_display_name("phone")
        .request_refresh_token()
        .send()
        .await
        .expect("login");
    let first_token = phone.access_token().unwrap();
    phone.refresh_access_token().await.expect("refresh");
    let second_token = phone.access_token().unwrap();
    assert_ne!(first_token, second_token);
    assert_eq!(phone.whoami().await.unwrap().user_id, "@alice:localhost");

    // profile
    alice
        .account()
        .set_display_name(Some("Alice A."))
        .await
        .unwrap();
    assert_eq!(
        phone.account().get_display_name().await.unwrap().as_deref(),
        Some("Alice A.")
    );
    let avatar = mxc_uri!("mxc://localhost/avatar123");
    alice.account().set_avatar_url(Some(avatar)).await.unwrap();
    assert_eq!(
        phone.account().get_avatar_url().await.unwrap().as_deref(),
        Some(avatar)
    );

    // account data round trip between the two devices
    let kind = GlobalAccountDataEventType::from("org.example.settings");
    let content: Raw<AnyGlobalAccountDataEventContent> =
        Raw::from_json(serde_json::value::to_raw_value(&json!({"theme": "dark"})).unwrap());
    alice
        .account()
        .set_account_data_raw(kind.clone(), content)
        .await
        .unwrap();
    let fetched = phone
        .account()
        .fetch_account_data(kind)
        .await
        .unwrap()
        .expect("stored");
    assert_eq!(
        fetched
            .deserialize_as_unchecked::<serde_json::Value>()
            .unwrap(),
        json!({"theme": "dark"})
    );

    // delete the phone's device from the first client, through UIA with the password
    let phone_device: OwnedDeviceId = phone.device_id().unwrap().to_owned();
    let err = alice
        .delete_devices(std::slice::from_ref(&phone_device), None)
        .await
        .expect_err("UIA");
    let info = err.as_uiaa_response().expect("a UIA challenge");
    let mut password = uiaa::Password::new(
        UserIdentifier::Matrix(uiaa::MatrixUserIdentifier::new("alice".to_owned())),
        "alice-password".to_owned(),
    );
    password.session = info.session.clone();
    alice
        .delete_devices(&[phone_device], Some(AuthData::Password(password)))
        .await
        .expect("delete");
    let err = phone
        .whoami()
        .await
        .expect_err("deleted device's token is dead");
    assert!(
        matches!(
            err.client_api_error_kind(),
            Some(matrix_sdk::ruma::api::error::ErrorKind::UnknownToken(_))
        ),
        "{err}"
    );

    // log out and see the token refused
    let session = alice.matrix_auth().session().unwrap();
    alice.matrix_auth().logout().await.expect("logout");
    let stale = client(&server.base).await;
    stale
        .matrix_auth()
        .restore_session(session, RoomLoadSettings::default())
        .await
        .unwrap();
    let err = stale.whoami().await.expect_err("logged-out token");
    assert!(err.client_api_error_kind().is_some(), "{err}");
}

#[tokio::test]
async fn session_survives_client_and_server_restart() {
    let server = TestServer::start().await;
    let c = client(&server.base).await;
    register(&c, "bob", "bob-password").await;
    // what an app writes to disk
    let saved = serde_json::to_string(&c.matrix_auth().session().unwrap()).unwrap();
    drop(c);

    let server = server.restart().await;
    let session: MatrixSession = serde_json::from_str(&saved).unwrap();
    let restored = client(&server.base).await;
    restored
        .matrix_auth()
        .restore_session(session, RoomLoadSettings::default())
        .await
        .unwrap();
    let who = restored
        .whoami()
        .await
        .expect("token still valid after restart");
    assert_eq!(who.user_id, "@bob:localhost");
    assert_eq!(who.device_id.as_deref(), restored.device_id());
}

#[tokio::test]
async fn wrong_password_is_refused() {
    let server = TestServer::start().await;
    register(&client(&server.base).await, "carol", "carol-password").await;
    let c = client(&server.base).await;
    let err = c
        .matrix_auth()
        .login_username("carol", "nope")
        .send()
        .await
        .expect_err("refused");
    let SdkError::Http(http) = &err else {
        panic!("{err}")
    };
    assert_eq!(
        http.client_api_error_kind(),
        Some(&matrix_sdk::ruma::api::error::ErrorKind::Forbidden)
    );
}

/// Finding messages and people, and TURN for calls, as matrix-sdk asks for them: the
/// user directory through its own call; search and the TURN servers through ruma
/// requests the client sends with its session.
#[tokio::test]
async fn search_user_directory_and_turn_servers() {
    use matrix_sdk::ruma::api::client::{search::search_events, voip::get_turn_server_info};
    let server = TestServer::start_with(|env| {
        env.insert(
            "AXON_VOIP__TURN_URIS".into(),
            r#"["turn:turn.example.org:3478?transport=udp"]"#.into(),
        );
        env.insert(
            "AXON_VOIP__TURN_SHARED_SECRET".into(),
            "coturn-secret".into(),
        );
    })
    .await;
    let alice = client(&server.base).await;
    register(&alice, "alice", "alice-password").await;
    let bob = client(&server.base).await;
    register(&bob, "bob", "bob-password").await;
    bob.account()
        .set_display_name(Some("Bobby Tables"))
        .await
        .unwrap();
    let room = alice
        .create_room(matrix_sdk::ruma::api::client::room::create_room::v3::Request::new())
        .await
        .unwrap();
    room.invite_user_by_id(bob.user_id().unwrap())
        .await
        .unwrap();
    bob.join_room_by_id(room.room_id()).await.unwrap();
    room.send(
        matrix_sdk::ruma::events::room::message::RoomMessageEventContent::text_plain(
            "the quarterly llama report is ready",
        ),
    )
    .await
    .unwrap();

    // alice finds bob, who shares a room with her, by a word of his name.
    let found = alice.search_users("tabl", 10).await.unwrap();
    let ids: Vec<String> = found
        .results
        .iter()
        .map(|u| u.user_id.to_string())
        .collect();
    assert_eq!(ids, vec!["@bob:localhost".to_owned()]);
    assert_eq!(
        found.results[0].display_name.as_deref(),
        Some("Bobby Tables")
    );

    // bob finds the message by a stemmed word.
    let criteria = search_events::v3::Criteria::new("llamas".to_owned());
    let mut categories = search_events::v3::Categories::new();
    categories.room_events = Some(criteria);
    let answer = bob
        .send(search_events::v3::Request::new(categories))
        .await
        .unwrap();
    let events = answer.search_categories.room_events;
    assert_eq!(events.count, Some(1u32.into()));
    let hit = events.results[0]
        .result
        .as_ref()
        .unwrap()
        .deserialize()
        .unwrap();
    assert_eq!(hit.room_id(), room.room_id());

    // TURN credentials made from the shared secret, for this user.
    let turn = alice
        .send(get_turn_server_info::v3::Request::new())
        .await
        .unwrap();
    assert_eq!(
        turn.uris,
        vec!["turn:turn.example.org:3478?transport=udp".to_owned()]
    );
    assert!(
        turn.username.ends_with(":@alice:localhost"),
        "{}",
        turn.username
    );
    assert!(!turn.password.is_empty());
}
