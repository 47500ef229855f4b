//! Email addresses and identity servers: registering with a proven address (the mail
//! caught by an SMTP server the test runs), logging in with it, resetting the password by
//! mail, adding and deleting addresses, binding them at an identity server and unbinding
//! them (also at deactivation); and the error paths: addresses in use or unknown, bad
//! addresses and secrets, unconfirmed sessions, wrong links, no mail configured.

mod common;
#[path = "common/federation.rs"]
mod federation;
#[path = "common/identity.rs"]
mod identity;

use common::{TestServer, assert_error};
use federation::TestCa;
use identity::{ACCESS_TOKEN, FakeIdentityServer, MailSink};
use serde_json::{Value, json};

async fn with_mail() -> (TestServer, MailSink) {
    let sink = MailSink::start().await;
    let port = sink.port;
    let s = TestServer::start_with(|env| {
        env.insert("AXON_EMAIL__SMTP_HOST".into(), "127.0.0.1".into());
        env.insert("AXON_EMAIL__SMTP_PORT".into(), port.to_string());
        env.insert("AXON_EMAIL__TLS".into(), "none".into());
        env.insert("AXON_EMAIL__FROM".into(), "noreply@localhost".into());
        identity_env(env);
    })
    .await;
    (s, sink)
}

/// Trust in the test CA and loopback, where the fake identity server is.
fn identity_env(env: &mut std::collections::BTreeMap<String, String>) {
    env.insert(
        "AXON_FEDERATION__TLS_CA_FILE".into(),
        TestCa::get().ca_file.display().to_string(),
    );
    env.insert(
        "AXON_OUTBOUND__ALLOW_RANGES".into(),
        "127.0.0.0/8,::1".into(),
    );
}

async fn request_token(
    s: &TestServer,
    kind: &str,
    email: &str,
    secret: &str,
    attempt: u64,
) -> (reqwest::StatusCode, Value) {
    let path = match kind {
        "register" => "/_matrix/client/v3/register/email/requestToken",
        "password" => "/_matrix/client/v3/account/password/email/requestToken",
        _ => "/_matrix/client/v3/account/3pid/email/requestToken",
    };
    s.post(
        path,
        None,
        json!({"client_secret": secret, "email": email, "send_attempt": attempt}),
    )
    .await
}

/// Opens the link of the newest mail (on the test server's own address: the server
/// does not know its ephemeral port) and returns the page's status.
async fn open_link(s: &TestServer, sink: &MailSink, nth: usize) -> reqwest::StatusCode {
    let mails = sink.wait_for(nth).await;
    let link = MailSink::link_in(&mails[nth - 1].1);
    let url = reqwest::Url::parse(&link).unwrap();
    let local = format!("{}{}?{}", s.base, url.path(), url.query().unwrap());
    s.http.get(local).send().await.unwrap().status()
}

fn email_stage(sid: &str, secret: &str, session: Option<&str>) -> Value {
    let mut auth = json!({
        "type": "m.login.email.identity",
        "threepid_creds": {"sid": sid, "client_secret": secret},
    });
    if let Some(session) = session {
        auth["session"] = session.into();
    }
    auth
}

#[tokio::test]
async fn register_with_email_then_log_in_and_reset_the_password() {
    let (s, sink) = with_mail().await;
    let (status, body) = request_token(&s, "register", "Carol@Example.ORG", "secret1", 1).await;
    assert_eq!(status, 200, "{body}");
    let sid = body["sid"].as_str().unwrap().to_owned();
    let mails = sink.wait_for(1).await;
    assert_eq!(mails[0].0, vec!["carol@example.org".to_owned()]);
    // The same attempt again: the same session, no second mail.
    let (_, again) = request_token(&s, "register", "carol@example.org", "secret1", 1).await;
    assert_eq!(again["sid"], sid.as_str());
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert_eq!(sink.mails.lock().unwrap().len(), 1);

    // The flows offer the email stage; before the link is opened it fails.
    let (status, body) = s
        .post(
            "/_matrix/client/v3/register",
            None,
            json!({"username": "carol", "password": "old-password"}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    let flows: Vec<Value> = body["flows"].as_array().unwrap().clone();
    assert!(
        flows
            .iter()
            .any(|f| f["stages"] == json!(["m.login.email.identity"])),
        "{body}"
    );
    let session = body["session"].as_str().unwrap().to_owned();
    let (status, body) = s
        .post(
            "/_matrix/client/v3/register",
            None,
            json!({"auth": email_stage(&sid, "secret1", Some(&session))}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["errcode"], "M_UNAUTHORIZED", "{body}");

    // A wrong token is refused; the mailed link confirms.
    let wrong = format!(
        "{}/_axon/client/email/submit_token?sid={sid}&client_secret=secret1&token=nope",
        s.base
    );
    assert_eq!(s.http.get(wrong).send().await.unwrap().status(), 400);
    assert_eq!(open_link(&s, &sink, 1).await, 200);
    let (status, body) = s
        .post(
            "/_matrix/client/v3/register",
            None,
            json!({"auth": email_stage(&sid, "secret1", Some(&session))}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_owned();
    let (_, listed) = s.get("/_matrix/client/v3/account/3pid", Some(&token)).await;
    assert_eq!(
        listed["threepids"][0]["address"], "carol@example.org",
        "{listed}"
    );
    assert_eq!(listed["threepids"][0]["medium"], "email");

    // The address is taken now.
    let (status, body) = request_token(&s, "register", "carol@example.org", "secret2", 1).await;
    assert_eq!(
        (status.as_u16(), body["errcode"].clone()),
        (400, json!("M_THREEPID_IN_USE"))
    );

    // Log in with the address, by identifier and by the deprecated fields.
    let (status, body) = s
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "password": "old-password",
                   "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "CAROL@example.org"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["user_id"], "@carol:localhost");
    let (status, body) = s
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "password": "old-password",
                   "medium": "email", "address": "carol@example.org"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // An unknown address fails as a wrong password does.
    let r = s
        .post(
            "/_matrix/client/v3/login",
            None,
            json!({"type": "m.login.password", "password": "old-password",
                   "identifier": {"type": "m.id.thirdparty", "medium": "email", "address": "nobody@example.org"}}),
        )
        .await;
    assert_error(&r, 403, "M_FORBIDDEN");

    // Password reset: an unknown address is refused; carol's gets a mail.
    let r = request_token(&s, "password", "nobody@example.org", "secret3", 1).await;
    assert_error(&r, 400, "M_THREEPID_NOT_FOUND");
    let (status, body) = request_token(&s, "password", "carol@example.org", "secret3", 1).await;
    assert_eq!(status, 200, "{body}");
    let reset_sid = body["sid"].as_str().unwrap().to_owned();
    let (status, body) = s
        .post(
            "/_matrix/client/v3/account/password",
            None,
            json!({"new_password": "new-password"}),
        )
        .await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(
        body["flows"][0]["stages"],
        json!(["m.login.email.identity"])
    );
    let session = body["session"].as_str().unwrap().to_owned();
    assert_eq!(open_link(&s, &sink, 2).await, 200);
    let (status, body) = s
        .post(
            "/_matrix/client/v3/account/password",
            None,
            json!({"new_password": "new-password",
                   "auth": email_stage(&reset_sid, "secret3", Some(&session))}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // Logged out everywhere; the new password works, the old one does not.
    let (status, _) = s
        .get("/_matrix/client/v3/account/whoami", Some(&token))
        .await;
    assert_eq!(status, 401);
    assert_eq!(s.login("carol", "new-password").await.0, 200);
    assert_eq!(s.login("carol", "old-password").await.0, 403);
    // The session is spent.
    let (status, _) = s
        .post(
            "/_matrix/client/v3/account/password",
            None,
            json!({"new_password": "third-password",
                   "auth": email_stage(&reset_sid, "secret3", None)}),
        )
        .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn addresses_are_added_and_deleted() {
    let (s, sink) = with_mail().await;
    let (alice, _) = s.register("alice", "pw-alice").await;
    let (bob, _) = s.register("bob", "pw-bob").await;
    let (status, body) = request_token(&s, "add", "alice@example.org", "sec-a", 1).await;
    assert_eq!(status, 200, "{body}");
    let sid = body["sid"].as_str().unwrap().to_owned();
    // Not confirmed yet.
    let add = |sid: &str, user: &str, pw: &str| {
        json!({"sid": sid, "client_secret": "sec-a",
               "auth": {"type": "m.login.password", "password": pw,
                        "identifier": {"type": "m.id.user", "user": user}}})
    };
    let r = s
        .post(
            "/_matrix/client/v3/account/3pid/add",
            Some(&alice),
            add(&sid, "alice", "pw-alice"),
        )
        .await;
    assert_error(&r, 400, "M_THREEPID_AUTH_FAILED");
    assert_eq!(open_link(&s, &sink, 1).await, 200);
    let (status, body) = s
        .post(
            "/_matrix/client/v3/account/3pid/add",
            Some(&alice),
            add(&sid, "alice", "pw-alice"),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, listed) = s.get("/_matrix/client/v3/account/3pid", Some(&alice)).await;
    assert_eq!(listed["threepids"].as_array().unwrap().len(), 1, "{listed}");
    let r = request_token(&s, "add", "alice@example.org", "sec-b", 1).await;
    assert_error(&r, 400, "M_THREEPID_IN_USE");
    let (_, listed) = s.get("/_matrix/client/v3/account/3pid", Some(&bob)).await;
    assert_eq!(listed["threepids"], json!([]));

    // Delete: no identity server knew it, so the unbind result is no-support.
    let (status, body) = s
        .post(
            "/_matrix/client/v3/account/3pid/delete",
            Some(&alice),
            json!({"medium": "email", "address": "alice@example.org"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id_server_unbind_result"], "no-support");
    let (_, listed) = s.get("/_matrix/client/v3/account/3pid", Some(&alice)).await;
    assert_eq!(listed["threepids"], json!([]));

    // A client that submits the token itself (POST, JSON) and the deprecated
    // `POST /account/3pid`: a wrong token and an unconfirmed session are refused, a body
    // that is not JSON too.
    let (status, body) = request_token(&s, "add", "bob@example.org", "sec-d", 1).await;
    assert_eq!(status, 200, "{body}");
    let bob_sid = body["sid"].as_str().unwrap().to_owned();
    let submit = "/_axon/client/email/submit_token";
    let r = s
        .post(
            submit,
            None,
            json!({"sid": bob_sid, "client_secret": "sec-d", "token": "wrong"}),
        )
        .await;
    assert_error(&r, 400, "M_THREEPID_AUTH_FAILED");
    let creds = json!({"three_pid_creds": {"sid": bob_sid, "client_secret": "sec-d"}});
    let r = s
        .post("/_matrix/client/v3/account/3pid", Some(&bob), creds.clone())
        .await;
    assert_error(&r, 400, "M_THREEPID_AUTH_FAILED");
    let not_json = s
        .http
        .post(format!("{}/_matrix/client/v3/account/3pid", s.base))
        .bearer_auth(&bob)
        .body("not json")
        .send()
        .await
        .unwrap();
    assert_eq!(not_json.status(), 400);
    let mails = sink.wait_for(2).await;
    let link = reqwest::Url::parse(&MailSink::link_in(&mails[1].1)).unwrap();
    let token = link
        .query_pairs()
        .find(|(k, _)| k == "token")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    let (status, body) = s
        .post(
            submit,
            None,
            json!({"sid": bob_sid, "client_secret": "sec-d", "token": token}),
        )
        .await;
    assert_eq!((status.as_u16(), body), (200, json!({"success": true})));
    let (status, body) = s
        .post("/_matrix/client/v3/account/3pid", Some(&bob), creds)
        .await;
    assert_eq!(status, 200, "{body}");
    let (_, listed) = s.get("/_matrix/client/v3/account/3pid", Some(&bob)).await;
    assert_eq!(
        listed["threepids"][0]["address"], "bob@example.org",
        "{listed}"
    );

    // Bad input.
    let r = request_token(&s, "add", "not an address", "sec-c", 1).await;
    assert_error(&r, 400, "M_INVALID_PARAM");
    let r = request_token(&s, "add", "c@example.org", "bad secret!", 1).await;
    assert_error(&r, 400, "M_INVALID_PARAM");
    let r = s
        .post(
            "/_matrix/client/v3/account/3pid/msisdn/requestToken",
            None,
            json!({"client_secret": "x", "country": "GB", "phone_number": "07700900000", "send_attempt": 1}),
        )
        .await;
    assert_error(&r, 400, "M_THREEPID_MEDIUM_NOT_SUPPORTED");
}

#[tokio::test]
async fn without_mail_the_email_endpoints_say_so() {
    let s = TestServer::start().await;
    let r = request_token(&s, "register", "a@example.org", "s", 1).await;
    assert_error(&r, 403, "M_THREEPID_DENIED");
    let r = request_token(&s, "password", "a@example.org", "s", 1).await;
    assert_error(&r, 403, "M_THREEPID_DENIED");
    let r = request_token(&s, "add", "a@example.org", "s", 1).await;
    assert_error(&r, 400, "M_THREEPID_MEDIUM_NOT_SUPPORTED");
    // No email stage is offered at registration.
    let (_, body) = s
        .post(
            "/_matrix/client/v3/register",
            None,
            json!({"username": "dave", "password": "pw"}),
        )
        .await;
    assert_eq!(
        body["flows"],
        json!([{"stages": ["m.login.dummy"]}]),
        "{body}"
    );
}

#[tokio::test]
async fn addresses_are_bound_and_unbound_at_an_identity_server() {
    let ids = FakeIdentityServer::start().await;
    let s = TestServer::start_with(identity_env).await;
    let (alice, _) = s.register("alice", "pw").await;
    let sid = ids.validated_session("email", "alice@example.org");
    let bind = json!({"client_secret": "sec", "sid": sid,
                      "id_server": ids.name, "id_access_token": ACCESS_TOKEN});
    let (status, body) = s
        .post(
            "/_matrix/client/v3/account/3pid/bind",
            Some(&alice),
            bind.clone(),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        ids.binding("email", "alice@example.org").as_deref(),
        Some("@alice:localhost")
    );

    // /unbind without naming the server: the one it was bound at, signed by us.
    let (status, body) = s
        .post(
            "/_matrix/client/unstable/account/3pid/unbind",
            Some(&alice),
            json!({"medium": "email", "address": "alice@example.org"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id_server_unbind_result"], "success");
    assert_eq!(ids.binding("email", "alice@example.org"), None);
    let authorization = ids.state.lock().unwrap().unbind_authorizations[0].clone();
    assert!(
        authorization.starts_with("X-Matrix origin=\"localhost\"")
            && authorization.contains(&format!("destination=\"{}\"", ids.name)),
        "{authorization}"
    );

    // Bound out of band, unbound by naming the server on delete.
    ids.bind_directly("email", "alice2@example.org", "@alice:localhost");
    let (status, body) = s
        .post(
            "/_matrix/client/v3/account/3pid/delete",
            Some(&alice),
            json!({"medium": "email", "address": "alice2@example.org", "id_server": ids.name}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id_server_unbind_result"], "success");
    assert_eq!(ids.binding("email", "alice2@example.org"), None);

    // Bad input: an unknown session (the identity server refuses), a bad token, a
    // server name that is not one.
    let r = s
        .post(
            "/_matrix/client/v3/account/3pid/bind",
            Some(&alice),
            json!({"client_secret": "sec", "sid": "nope", "id_server": ids.name, "id_access_token": ACCESS_TOKEN}),
        )
        .await;
    assert_error(&r, 400, "M_UNKNOWN");
    let r = s
        .post(
            "/_matrix/client/v3/account/3pid/bind",
            Some(&alice),
            json!({"client_secret": "sec", "sid": sid, "id_server": ids.name, "id_access_token": "wrong"}),
        )
        .await;
    assert_error(&r, 400, "M_UNKNOWN");
    let r = s
        .post(
            "/_matrix/client/v3/account/3pid/bind",
            Some(&alice),
            json!({"client_secret": "sec", "sid": sid, "id_server": "evil.example/x?", "id_access_token": ACCESS_TOKEN}),
        )
        .await;
    assert_error(&r, 400, "M_INVALID_PARAM");

    // Deactivation unbinds what was bound through us.
    let (status, _) = s
        .post(
            "/_matrix/client/unstable/account/3pid/bind",
            Some(&alice),
            bind,
        )
        .await;
    assert_eq!(status, 200);
    let (status, body) = s
        .post(
            "/_matrix/client/v3/account/deactivate",
            Some(&alice),
            json!({"auth": {"type": "m.login.password", "password": "pw",
                            "identifier": {"type": "m.id.user", "user": "alice"}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id_server_unbind_result"], "success");
    assert_eq!(ids.binding("email", "alice@example.org"), None);
}
