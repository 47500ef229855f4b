//! Registration, login, sessions, devices, password, deactivation: success and error paths.

mod common;

use common::{TestServer, assert_error};
use serde_json::json;

const REGISTER: &str = "/_matrix/client/v3/register";
const WHOAMI: &str = "/_matrix/client/v3/account/whoami";

#[tokio::test]
async fn register_through_uia() {
    let s = TestServer::start().await;
    let (status, body) = s
        .post(
            REGISTER,
            None,
            json!({"username": "alice", "password": "pw-alice"}),
        )
        .await;
    assert_eq!(status, 401);
    assert_eq!(body["flows"], json!([{"stages": ["m.login.dummy"]}]));
    let session = body["session"].as_str().unwrap();
    assert!(body["params"].is_object());

    let (status, body) = s
        .post(
            REGISTER,
            None,
            json!({"username": "alice", "password": "pw-alice", "initial_device_display_name": "laptop",
                   "auth": {"type": "m.login.dummy", "session": session}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "@alice:localhost");
    let token = body["access_token"].as_str().unwrap();
    assert!(token.len() >= 43, "256-bit tokens");
    assert!(body.get("refresh_token").is_none());

    let (status, who) = s.get(WHOAMI, Some(token)).await;
    assert_eq!(status, 200);
    assert_eq!(who["user_id"], "@alice:localhost");
    assert_eq!(who["device_id"], body["device_id"]);

    // Repeating the completed registration is idempotent: the same account (the session
    // keeps its parameters), logged in again.
    let (status, again) = s
        .post(
            REGISTER,
            None,
            json!({"username": "alice2", "password": "pw", "auth": {"type": "m.login.dummy", "session": session}}),
        )
        .await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["user_id"], "@alice:localhost");
    assert_ne!(again["access_token"], body["access_token"]);

    // tokens are stored hashed, never in clear
    let mut conn: sqlx::PgConnection = sqlx::ConnectOptions::connect(&s.db).await.unwrap();
    let stored: Vec<Vec<u8>> = sqlx::query_scalar("SELECT token_hash FROM access_tokens")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    assert_eq!(stored.len(), 2, "two logins");
    assert!(stored.iter().all(|h| h != token.as_bytes()));
    let hash: String =
        sqlx::query_scalar("SELECT password_hash FROM users WHERE localpart = 'alice'")
            .fetch_one(&mut conn)
            .await
            .unwrap();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    // What the UIA session remembers holds no password in clear either.
    let params: Vec<serde_json::Value> = sqlx::query_scalar("SELECT params FROM uia_sessions")
        .fetch_all(&mut conn)
        .await
        .unwrap();
    for p in params {
        assert!(!p.to_string().contains("pw-alice"), "{p}");
    }
}

#[tokio::test]
async fn register_without_session_auth_in_first_request() {
    let s = TestServer::start().await;
    let (status, body) = s
        .post(
            REGISTER,
            None,
            json!({"username": "bob", "password": "pw", "auth": {"type": "m.login.dummy"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "@bob:localhost");
}

#[tokio::test]
async fn register_options() {
    let s = TestServer::start().await;
    let dummy = json!({"type": "m.login.dummy"});
    // inhibit_login: an account, no session
    let (status, body) = s
        .post(
            REGISTER,
            None,
            json!({"username": "quiet", "password": "pw", "inhibit_login": true, "auth": dummy}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body["access_token"].is_null() && body["device_id"].is_null(),
        "{body}"
    );

    // refresh_token: expiring access token plus refresh token
    let (status, body) = s
        .post(
            REGISTER,
            None,
            json!({"username": "fresh", "password": "pw", "refresh_token": true, "auth": dummy}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["refresh_token"].is_string());
    assert!(body["expires_in_ms"].as_u64().unwrap() > 0);

    // no username: a numeric one is chosen
    let (status, body) = s
        .post(REGISTER, None, json!({"password": "pw", "auth": dummy}))
        .await;
    assert_eq!(status, 200, "{body}");
    let user = body["user_id"].as_str().unwrap();
    assert!(
        user[1..user.find(':').unwrap()]
            .chars()
            .all(|c| c.is_ascii_digit()),
        "{user}"
    );

    // chosen device ID is kept
    let (status, body) = s
        .post(
            REGISTER,
            None,
            json!({"username": "dev", "password": "pw", "device_id": "MYDEVICE", "auth": dummy}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["device_id"], "MYDEVICE");
}

#[tokio::test]
async fn register_errors() {
    let s = TestServer::start().await;
    s.register("taken", "pw").await;
    let r = s
        .post(
            REGISTER,
            None,
            json!({"username": "taken", "password": "pw"}),
        )
        .await;
    assert_error(&r, 400, "M_USER_IN_USE");
    // (Capitals are lowercased, as Synapse does: "Capital" registers @capital.)
    for bad in ["has space", "_reserved", "é", ""] {
        let r = s
            .post(REGISTER, None, json!({"username": bad, "password": "pw"}))
            .await;
        assert_error(&r, 400, "M_INVALID_USERNAME");
    }
    let long = "a".repeat(260);
    let r = s
        .post(REGISTER, None, json!({"username": long, "password": "pw"}))
        .await;
    assert_error(&r, 400, "M_INVALID_USERNAME");
    // The password is asked for once authentication is done (a first `{}`-like request
    // only learns the flows).
    let r = s.post(REGISTER, None, json!({"username": "nopass"})).await;
    assert_eq!(r.0, 401, "{}", r.1);
    let r = s
        .post(
            REGISTER,
            None,
            json!({"username": "nopass", "auth": {"type": "m.login.dummy"}}),
        )
        .await;
    assert_error(&r, 400, "M_MISSING_PARAM");
    let r = s
        .post(
            REGISTER,
            None,
            json!({"username": "x", "password": "pw", "auth": {"type": "m.login.password"}}),
        )
        .await;
    assert_eq!(r.0, 400, "{}", r.1);
    let r = s
        .post(REGISTER, None, json!({"username": "y", "password": "pw", "auth": {"type": "m.login.recaptcha", "response": "x"}}))
        .await;
    assert_error(&r, 401, "M_UNRECOGNIZED");
    assert!(r.1["flows"].is_array());
    // guests are refused unless enabled
    let r = s
        .post(&format!("{REGISTER}?kind=guest"), None, json!({}))
        .await;
    assert_error(&r, 403, "M_GUEST_ACCESS_FORBIDDEN");
}

#[tokio::test]
async fn guest_registration_when_enabled() {
    let s = TestServer::start_with(|env| {
        env.insert("AXON_REGISTRATION__ALLOW_GUESTS".into(), "true".into());
    })
    .await;
    let (status, body) = s
        .post(&format!("{REGISTER}?kind=guest"), None, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, who) = s.get(WHOAMI, body["access_token"].as_str()).await;
    assert_eq!(status, 200);
    assert_eq!(who["is_guest"], true);
}

#[tokio::test]
async fn closed_registration() {
    let s = TestServer::start_with(|env| {
        env.insert("AXON_REGISTRATION__MODE".into(), "closed".into());
    })
    .await;
    let r = s
        .post(
            REGISTER,
            None,
            json!({"username": "alice", "password": "pw"}),
        )
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn token_registration() {
    let s = TestServer::start_with(|env| {
        env.insert("AXON_REGISTRATION__MODE".into(), "token".into());
        env.insert("AXON_REGISTRATION__TOKENS".into(), "[\"let-me-in\"]".into());
    })
    .await;
    let validity = "/_matrix/client/v1/register/m.login.registration_token/validity";
    let (status, body) = s.get(&format!("{validity}?token=let-me-in"), None).await;
    assert_eq!(
        (status.as_u16(), body["valid"].as_bool()),
        (200, Some(true))
    );
    let (status, body) = s.get(&format!("{validity}?token=nope"), None).await;
    assert_eq!(
        (status.as_u16(), body["valid"].as_bool()),
        (200, Some(false))
    );
    let r = s.get(validity, None).await;
    assert_error(&r, 400, "M_MISSING_PARAM");

    let (status, body) = s
        .post(REGISTER, None, json!({"username": "tok", "password": "pw"}))
        .await;
    assert_eq!(status, 401);
    assert_eq!(
        body["flows"],
        json!([{"stages": ["m.login.registration_token"]}])
    );
    let session = body["session"].as_str().unwrap();
    // dummy is not offered in token mode
    let r = s
        .post(REGISTER, None, json!({"username": "tok", "password": "pw", "auth": {"type": "m.login.dummy", "session": session}}))
        .await;
    assert_error(&r, 401, "M_UNRECOGNIZED");
    let r = s
        .post(
            REGISTER,
            None,
            json!({"username": "tok", "password": "pw",
                   "auth": {"type": "m.login.registration_token", "token": "wrong", "session": session}}),
        )
        .await;
    assert_error(&r, 401, "M_FORBIDDEN");
    let (status, body) = s
        .post(
            REGISTER,
            None,
            json!({"username": "tok", "password": "pw",
                   "auth": {"type": "m.login.registration_token", "token": "let-me-in", "session": session}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

#[tokio::test]
async fn username_availability() {
    let s = TestServer::start().await;
    s.register("here", "pw").await;
    let (status, body) = s
        .get("/_matrix/client/v3/register/available?username=free", None)
        .await;
    assert_eq!(status, 200);
    assert_eq!(body["available"], true);
    let r = s
        .get("/_matrix/client/v3/register/available?username=here", None)
        .await;
    assert_error(&r, 400, "M_USER_IN_USE");
    let r = s
        .get(
            "/_matrix/client/v3/register/available?username=NOT%20OK",
            None,
        )
        .await;
    assert_error(&r, 400, "M_INVALID_USERNAME");
}

#[tokio::test]
async fn login_flows_and_errors() {
    let s = TestServer::start().await;
    let (status, body) = s.get("/_matrix/client/v3/login", None).await;
    assert_eq!(status, 200);
    let types: Vec<&str> = body["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["type"].as_str().unwrap())
        .collect();
    assert!(
        types.contains(&"m.login.password") && types.contains(&"m.login.token"),
        "{body}"
    );

    s.register("erin", "pw-erin").await;
    // localpart and full user ID both work
    s.login_ok("erin", "pw-erin").await;
    s.login_ok("@erin:localhost", "pw-erin").await;
    assert_error(&s.login("erin", "wrong").await, 403, "M_FORBIDDEN");
    assert_error(&s.login("nobody", "pw").await, 403, "M_FORBIDDEN");
    assert_error(
        &s.login("@erin:elsewhere.org", "pw-erin").await,
        403,
        "M_FORBIDDEN",
    );
    let r = s
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "a@b.c"}, "password": "x"}),
        )
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");
    let r = s
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.magic"}),
        )
        .await;
    assert_error(&r, 400, "M_UNRECOGNIZED");
    let r = s
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.token", "token": "axl_bogus"}),
        )
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn login_with_existing_device_id_replaces_its_token() {
    let s = TestServer::start().await;
    s.register("fred", "pw").await;
    let login = |device: &'static str| {
        s.post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "fred"},
                   "password": "pw", "device_id": device}),
        )
    };
    let (_, first) = login("PHONE").await;
    let (_, second) = login("PHONE").await;
    assert_eq!(second["device_id"], "PHONE");
    assert_error(
        &s.get(WHOAMI, first["access_token"].as_str()).await,
        401,
        "M_UNKNOWN_TOKEN",
    );
    assert_eq!(s.get(WHOAMI, second["access_token"].as_str()).await.0, 200);
}

#[tokio::test]
async fn login_token_flow() {
    let s = TestServer::start().await;
    let (token, _) = s.register("gina", "pw-gina").await;
    let path = "/_matrix/client/v1/login/get_token";
    let (status, body) = s.post(path, Some(&token), json!({})).await;
    assert_eq!(status, 401, "{body}");
    let session = body["session"].as_str().unwrap();
    let (status, body) = s
        .post(
            path,
            Some(&token),
            json!({"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "gina"},
                            "password": "pw-gina", "session": session}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["expires_in_ms"].as_u64().unwrap() > 0);
    let login_token = body["login_token"].as_str().unwrap();

    let (status, body) = s
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.token", "token": login_token}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "@gina:localhost");
    // single use
    let r = s
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.token", "token": login_token}),
        )
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");
}

#[tokio::test]
async fn refresh_rotates_tokens() {
    let s = TestServer::start().await;
    s.register("hank", "pw").await;
    let (status, body) = s
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "hank"},
                   "password": "pw", "refresh_token": true}),
        )
        .await;
    assert_eq!(status, 200);
    let (access1, refresh1) = (
        body["access_token"].as_str().unwrap(),
        body["refresh_token"].as_str().unwrap(),
    );
    assert!(body["expires_in_ms"].as_u64().unwrap() > 0);

    let (status, body) = s
        .post(
            "/_matrix/client/v3/refresh",
            None,
            json!({"refresh_token": refresh1}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let access2 = body["access_token"].as_str().unwrap();
    let refresh2 = body["refresh_token"].as_str().unwrap();
    assert_ne!(access1, access2);
    assert_ne!(refresh1, refresh2);
    assert!(body["expires_in_ms"].as_u64().unwrap() > 0);
    assert_eq!(s.get(WHOAMI, Some(access2)).await.0, 200);
    assert_error(&s.get(WHOAMI, Some(access1)).await, 401, "M_UNKNOWN_TOKEN");
    // a used refresh token is spent
    let r = s
        .post(
            "/_matrix/client/v3/refresh",
            None,
            json!({"refresh_token": refresh1}),
        )
        .await;
    assert_error(&r, 401, "M_UNKNOWN_TOKEN");
    let r = s
        .post(
            "/_matrix/client/v3/refresh",
            None,
            json!({"refresh_token": "axr_unknown"}),
        )
        .await;
    assert_error(&r, 401, "M_UNKNOWN_TOKEN");
    // the unstable path from MSC2918 works too
    let (status, _) = s
        .post(
            "/_matrix/client/unstable/org.matrix.msc2918/refresh",
            None,
            json!({"refresh_token": refresh2}),
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test]
async fn logout_and_logout_all() {
    let s = TestServer::start().await;
    let (t1, _) = s.register("ivy", "pw").await;
    let (t2, _) = s.login_ok("ivy", "pw").await;
    let (t3, _) = s.login_ok("ivy", "pw").await;

    let (status, _) = s
        .post("/_matrix/client/v3/logout", Some(&t1), json!({}))
        .await;
    assert_eq!(status, 200);
    assert_error(&s.get(WHOAMI, Some(&t1)).await, 401, "M_UNKNOWN_TOKEN");
    assert_eq!(s.get(WHOAMI, Some(&t2)).await.0, 200);

    let (status, _) = s
        .post("/_matrix/client/v3/logout/all", Some(&t2), json!({}))
        .await;
    assert_eq!(status, 200);
    assert_error(&s.get(WHOAMI, Some(&t2)).await, 401, "M_UNKNOWN_TOKEN");
    assert_error(&s.get(WHOAMI, Some(&t3)).await, 401, "M_UNKNOWN_TOKEN");
    assert_error(
        &s.post("/_matrix/client/v3/logout", None, json!({})).await,
        401,
        "M_MISSING_TOKEN",
    );
}

#[tokio::test]
async fn devices() {
    let s = TestServer::start().await;
    let (t1, d1) = s.register("jack", "pw-jack").await;
    let (t2, d2) = s.login_ok("jack", "pw-jack").await;

    let (status, body) = s.get("/_matrix/client/v3/devices", Some(&t1)).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 2);
    assert!(ids.contains(&d1.as_str()) && ids.contains(&d2.as_str()));

    let path = format!("/_matrix/client/v3/devices/{d2}");
    let (status, _) = s
        .put(&path, Some(&t1), json!({"display_name": "work phone"}))
        .await;
    assert_eq!(status, 200);
    let (status, body) = s.get(&path, Some(&t1)).await;
    assert_eq!(status, 200);
    assert_eq!(body["display_name"], "work phone");
    assert_error(
        &s.get("/_matrix/client/v3/devices/NOPE", Some(&t1)).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(
        &s.put(
            "/_matrix/client/v3/devices/NOPE",
            Some(&t1),
            json!({"display_name": "x"}),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
    let long = "n".repeat(300);
    assert_error(
        &s.put(&path, Some(&t1), json!({"display_name": long})).await,
        400,
        "M_INVALID_PARAM",
    );

    // another user's device is not visible
    let (other, _) = s.register("kate", "pw").await;
    assert_error(&s.get(&path, Some(&other)).await, 404, "M_NOT_FOUND");

    // delete behind UIA: challenge, wrong password, right password
    let (status, body) = s.delete(&path, Some(&t1), Some(json!({}))).await;
    assert_eq!(status, 401);
    assert_eq!(body["flows"], json!([{"stages": ["m.login.password"]}]));
    let session = body["session"].as_str().unwrap();
    let auth = |pw: &str| {
        json!({"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "jack"},
                        "password": pw, "session": session}})
    };
    let r = s.delete(&path, Some(&t1), Some(auth("wrong"))).await;
    assert_error(&r, 401, "M_FORBIDDEN");
    assert_eq!(r.1["flows"], json!([{"stages": ["m.login.password"]}]));
    assert_eq!(r.1["session"], session);
    // the password of another user does not do
    let r = s
        .delete(
            &path,
            Some(&t1),
            Some(json!({"auth": {"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "kate"},
                                 "password": "pw", "session": session}})),
        )
        .await;
    // Refused outright, as Synapse does (a stolen token plus one's own password).
    assert_error(&r, 403, "M_FORBIDDEN");
    // The session is bound to the device it was started for: completing it for another
    // device is refused, and that device stays.
    let own = format!("/_matrix/client/v3/devices/{d1}");
    let r = s.delete(&own, Some(&t1), Some(auth("pw-jack"))).await;
    assert_error(&r, 403, "M_FORBIDDEN");
    assert_eq!(s.get(WHOAMI, Some(&t1)).await.0, 200);
    let (status, body) = s.delete(&path, Some(&t1), Some(auth("pw-jack"))).await;
    assert_eq!(status, 200, "{body}");
    assert_error(&s.get(WHOAMI, Some(&t2)).await, 401, "M_UNKNOWN_TOKEN");
    assert_error(
        &s.delete(&path, Some(&t1), Some(json!({}))).await,
        404,
        "M_NOT_FOUND",
    );

    // delete_devices, authenticating on the first request
    let (t3, d3) = s.login_ok("jack", "pw-jack").await;
    let (status, body) = s
        .post(
            "/_matrix/client/v3/delete_devices",
            Some(&t1),
            json!({"devices": [d3], "auth": {"type": "m.login.password",
                   "identifier": {"type": "m.id.user", "user": "@jack:localhost"}, "password": "pw-jack"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_error(&s.get(WHOAMI, Some(&t3)).await, 401, "M_UNKNOWN_TOKEN");
    assert_eq!(s.get(WHOAMI, Some(&t1)).await.0, 200);
}

#[tokio::test]
async fn change_password() {
    let s = TestServer::start().await;
    let (t1, _) = s.register("leo", "old-pw").await;
    let (t2, _) = s.login_ok("leo", "old-pw").await;
    let path = "/_matrix/client/v3/account/password";
    assert_error(
        &s.post(path, None, json!({"new_password": "x"})).await,
        401,
        "M_MISSING_TOKEN",
    );
    let (status, body) = s
        .post(path, Some(&t1), json!({"new_password": "new-pw"}))
        .await;
    assert_eq!(status, 401);
    let auth = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "leo"},
                      "password": "old-pw", "session": body["session"]});
    let (status, body) = s
        .post(
            path,
            Some(&t1),
            json!({"new_password": "new-pw", "auth": auth}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_error(&s.login("leo", "old-pw").await, 403, "M_FORBIDDEN");
    s.login_ok("leo", "new-pw").await;
    // logout_devices defaults to true: other sessions end, this one stays
    assert_eq!(s.get(WHOAMI, Some(&t1)).await.0, 200);
    assert_error(&s.get(WHOAMI, Some(&t2)).await, 401, "M_UNKNOWN_TOKEN");

    // logout_devices: false keeps them
    let (t3, _) = s.login_ok("leo", "new-pw").await;
    let auth = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "leo"}, "password": "new-pw"});
    let (status, _) = s
        .post(
            path,
            Some(&t1),
            json!({"new_password": "newer-pw", "logout_devices": false, "auth": auth}),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(s.get(WHOAMI, Some(&t3)).await.0, 200);
    let huge = "p".repeat(600);
    assert_error(
        &s.post(path, Some(&t1), json!({"new_password": huge})).await,
        400,
        "M_INVALID_PARAM",
    );
}

#[tokio::test]
async fn deactivate_account() {
    let s = TestServer::start().await;
    let (t1, _) = s.register("mia", "pw-mia").await;
    s.put(
        "/_matrix/client/v3/profile/@mia:localhost/displayname",
        Some(&t1),
        json!({"displayname": "Mia"}),
    )
    .await;
    let path = "/_matrix/client/v3/account/deactivate";
    let (status, body) = s.post(path, Some(&t1), json!({"erase": true})).await;
    assert_eq!(status, 401);
    let auth = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "mia"},
                      "password": "wrong", "session": body["session"]});
    assert_error(
        &s.post(path, Some(&t1), json!({"erase": true, "auth": auth}))
            .await,
        401,
        "M_FORBIDDEN",
    );
    let auth = json!({"type": "m.login.password", "identifier": {"type": "m.id.user", "user": "mia"},
                      "password": "pw-mia", "session": body["session"]});
    let (status, body) = s
        .post(path, Some(&t1), json!({"erase": true, "auth": auth}))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id_server_unbind_result"], "no-support");
    assert_error(&s.get(WHOAMI, Some(&t1)).await, 401, "M_UNKNOWN_TOKEN");
    assert_error(&s.login("mia", "pw-mia").await, 403, "M_FORBIDDEN");
    assert_error(
        &s.get("/_matrix/client/v3/profile/@mia:localhost", None)
            .await,
        404,
        "M_NOT_FOUND",
    );
    // the user ID is not free again
    assert_error(
        &s.get("/_matrix/client/v3/register/available?username=mia", None)
            .await,
        400,
        "M_USER_IN_USE",
    );
}

#[tokio::test]
async fn threepids_and_whois() {
    let s = TestServer::start().await;
    let (token, device) = s.register("nia", "pw").await;
    let (status, body) = s.get("/_matrix/client/v3/account/3pid", Some(&token)).await;
    assert_eq!(status, 200);
    assert!(
        body["threepids"].as_array().is_none_or(|a| a.is_empty()),
        "{body}"
    );
    assert_error(
        &s.get("/_matrix/client/v3/account/3pid", None).await,
        401,
        "M_MISSING_TOKEN",
    );

    let email = json!({"client_secret": "secret123", "email": "a@example.org", "send_attempt": 1});
    let r = s
        .post(
            "/_matrix/client/v3/account/3pid/email/requestToken",
            None,
            email.clone(),
        )
        .await;
    assert_error(&r, 400, "M_THREEPID_MEDIUM_NOT_SUPPORTED");
    let r = s
        .post(
            "/_matrix/client/v3/register/email/requestToken",
            None,
            email.clone(),
        )
        .await;
    assert_error(&r, 403, "M_THREEPID_DENIED");
    let r = s
        .post(
            "/_matrix/client/v3/account/password/email/requestToken",
            None,
            email,
        )
        .await;
    assert_error(&r, 403, "M_THREEPID_DENIED");
    let sms = json!({"client_secret": "secret123", "country": "GB", "phone_number": "07700900000", "send_attempt": 1});
    let r = s
        .post("/_matrix/client/v3/register/msisdn/requestToken", None, sms)
        .await;
    assert_error(&r, 403, "M_THREEPID_DENIED");

    // whois: self yes, others only for admins
    let (status, body) = s
        .get(
            "/_matrix/client/v3/admin/whois/@nia:localhost",
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["devices"][&device].is_object(), "{body}");
    let (other, _) = s.register("olaf", "pw").await;
    let path = "/_matrix/client/v3/admin/whois/@nia:localhost";
    assert_error(&s.get(path, Some(&other)).await, 403, "M_FORBIDDEN");
    s.sql("UPDATE users SET is_admin = TRUE WHERE localpart = 'olaf'")
        .await;
    let (status, body) = s.get(path, Some(&other)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "@nia:localhost");
    assert_error(
        &s.get(
            "/_matrix/client/v3/admin/whois/@ghost:localhost",
            Some(&other),
        )
        .await,
        404,
        "M_NOT_FOUND",
    );
}

#[tokio::test]
async fn shared_secret_registration() {
    let path = "/_synapse/admin/v1/register";
    // not configured: refused
    let s = TestServer::start().await;
    assert_error(&s.get(path, None).await, 403, "M_FORBIDDEN");

    let s = TestServer::start_with(|env| {
        env.insert("AXON_REGISTRATION__MODE".into(), "closed".into());
        env.insert("AXON_REGISTRATION__SHARED_SECRET".into(), "s3cret".into());
    })
    .await;
    async fn nonce(s: &TestServer) -> String {
        let (status, body) = s.get("/_synapse/admin/v1/register", None).await;
        assert_eq!(status, 200, "{body}");
        body["nonce"].as_str().unwrap().to_owned()
    }
    let mac = |n: &str, user: &str, admin: bool| {
        axon::users::shared_secret::compute_mac("s3cret", n, user, "admin-pw", admin)
    };

    // wrong MAC
    let n = nonce(&s).await;
    let r = s
        .post(path, None, json!({"nonce": n, "username": "boss", "password": "admin-pw", "admin": true,
                                  "mac": axon::users::shared_secret::compute_mac("wrong", &n, "boss", "admin-pw", true)}))
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");
    // the MAC covers the admin flag
    let n = nonce(&s).await;
    let r = s
        .post(
            path,
            None,
            json!({"nonce": n, "username": "boss", "password": "admin-pw", "admin": true,
                                  "mac": mac(&n, "boss", false)}),
        )
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");
    // unknown nonce
    let r = s
        .post(
            path,
            None,
            json!({"nonce": "made-up", "username": "boss", "password": "admin-pw", "mac": "00"}),
        )
        .await;
    assert_error(&r, 400, "M_INVALID_PARAM");
    assert_error(
        &s.post(path, None, json!({"nonce": 1})).await,
        400,
        "M_BAD_JSON",
    );

    // right MAC: an admin account even though registration is closed
    let n = nonce(&s).await;
    let (status, body) = s
        .post(
            path,
            None,
            json!({"nonce": n, "username": "boss", "password": "admin-pw", "admin": true,
                                  "displayname": "The Boss", "mac": mac(&n, "boss", true)}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "@boss:localhost");
    let token = body["access_token"].as_str().unwrap();
    assert_eq!(s.get(WHOAMI, Some(token)).await.0, 200);
    assert_eq!(
        s.get(
            "/_matrix/client/v3/admin/whois/@boss:localhost",
            Some(token)
        )
        .await
        .0,
        200
    );
    assert_eq!(
        s.get(
            "/_matrix/client/v3/profile/@boss:localhost/displayname",
            None
        )
        .await
        .1["displayname"],
        "The Boss"
    );
    // a nonce is single use
    let r = s
        .post(path, None, json!({"nonce": n, "username": "boss2", "password": "admin-pw", "mac": mac(&n, "boss2", false)}))
        .await;
    assert_error(&r, 400, "M_INVALID_PARAM");
    // the name is taken now
    let n = nonce(&s).await;
    let r = s
        .post(path, None, json!({"nonce": n, "username": "boss", "password": "admin-pw", "mac": mac(&n, "boss", false)}))
        .await;
    assert_error(&r, 400, "M_USER_IN_USE");
}

#[tokio::test]
async fn device_activity_is_recorded() {
    let s = TestServer::start().await;
    let (token, device) = s.register("pat", "pw").await;
    let res = s
        .http
        .get(format!("{}{WHOAMI}", s.base))
        .bearer_auth(&token)
        .header("User-Agent", "axon-test/1.0")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // The write happens off the request path, and the device already has an address from
    // its login, so wait for the user agent, which only the recorded request carries.
    let mut whois = serde_json::Value::Null;
    for _ in 0..50 {
        (_, whois) = s
            .get(
                "/_matrix/client/v3/admin/whois/@pat:localhost",
                Some(&token),
            )
            .await;
        if whois["devices"][&device]["sessions"][0]["connections"][0]["user_agent"].is_string() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let connection = &whois["devices"][&device]["sessions"][0]["connections"][0];
    assert_eq!(connection["user_agent"], "axon-test/1.0", "{whois}");
    assert_eq!(connection["ip"], "127.0.0.1", "{whois}");
    let (_, seen) = s
        .get(
            &format!("/_matrix/client/v3/devices/{device}"),
            Some(&token),
        )
        .await;
    assert_eq!(seen["last_seen_ip"], "127.0.0.1", "{seen}");
    assert!(seen["last_seen_ts"].as_u64().unwrap() > 0);
}
