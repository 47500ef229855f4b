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
