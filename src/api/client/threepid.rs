//! Third-party identifiers: the account's list, email validation (requestToken and the
//! mailed link), add, delete, bind and unbind. Phone numbers are not supported: this
//! server has no SMS sender.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    response::{Html, IntoResponse, Redirect, Response},
    routing::get,
};
use ruma::{
    MilliSecondsSinceUnixEpoch, UInt,
    api::client::account::{
        ThirdPartyIdRemovalStatus, add_3pid, bind_3pid, delete_3pid, get_3pids,
        request_3pid_management_token_via_email, request_3pid_management_token_via_msisdn,
        request_password_change_token_via_email, request_password_change_token_via_msisdn,
        request_registration_token_via_email, request_registration_token_via_msisdn, unbind_3pid,
    },
    thirdparty::{Medium, ThirdPartyIdentifier, ThirdPartyIdentifierInit},
};
use serde::Deserialize;
use serde_json::json;

use crate::{
    error::{Error, Result},
    http::{
        Ruma,
        error::ApiError,
        extract::{
            Authed, AuthedBody, MatrixQuery, Patches, route_patched, route_patched_with_unstable,
        },
        route,
    },
    server::Homeserver,
    users::threepid::{self, Purpose, SUBMIT_TOKEN_PATH, TokenRequest},
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = route_patched(
        router,
        list,
        Patches {
            request: None,
            response: Some(empty_list),
        },
    );
    let secret_checked = Patches {
        request: Some(client_secret_syntax),
        response: None,
    };
    let router = route_patched(router, request_add_token, secret_checked);
    let router = route_patched(router, request_registration_token, secret_checked);
    let router = route_patched(router, request_password_reset_token, secret_checked);
    let router = route_patched(router, add, secret_checked);
    let router = route_patched_with_unstable(router, bind, secret_checked);
    let router = route(router, delete);
    let router = route_patched_with_unstable(router, unbind, Patches::default());
    let router = route(
        router,
        |_: Arc<Homeserver>, _: Ruma<request_3pid_management_token_via_msisdn::v3::Request>| {
            no_phones()
        },
    );
    let router = route(
        router,
        |_: Arc<Homeserver>, _: Ruma<request_registration_token_via_msisdn::v3::Request>| {
            phones_denied()
        },
    );
    let router = route(
        router,
        |_: Arc<Homeserver>, _: Ruma<request_password_change_token_via_msisdn::v3::Request>| {
            phones_denied()
        },
    );
    router
        .route(
            SUBMIT_TOKEN_PATH,
            get(submit_token_link).post(submit_token_json),
        )
        .route(
            "/_matrix/client/r0/account/3pid",
            axum::routing::post(add_deprecated),
        )
        .route(
            "/_matrix/client/v3/account/3pid",
            axum::routing::post(add_deprecated),
        )
}

/// A malformed client secret is a bad parameter (400 `M_INVALID_PARAM`, as Synapse
/// answers), not a body that fails to decode.
fn client_secret_syntax(body: &mut serde_json::Value) -> Result<()> {
    if let Some(secret) = body
        .get("client_secret")
        .and_then(serde_json::Value::as_str)
    {
        threepid::check_client_secret(secret)?;
    }
    Ok(())
}

/// ruma leaves an empty `threepids` out; clients (and Synapse) expect `[]`.
fn empty_list(response: &mut serde_json::Value) {
    if let Some(fields) = response.as_object_mut() {
        fields.entry("threepids").or_insert_with(|| json!([]));
    }
}

/// For registration and password reset, where the spec lists M_THREEPID_DENIED.
async fn phones_denied<T>() -> Result<T> {
    Err(Error::ThreepidDenied(
        "this server cannot send text messages: phone numbers are not supported".into(),
    ))
}

async fn no_phones<T>() -> Result<T> {
    Err(Error::ThreepidMediumNotSupported(
        "this server cannot send text messages: phone numbers are not supported".into(),
    ))
}

async fn list(
    hs: Arc<Homeserver>,
    req: Ruma<get_3pids::v3::Request>,
) -> Result<get_3pids::v3::Response> {
    let rows = threepid::list(&hs, req.requester()?).await?;
    let threepids = rows
        .into_iter()
        .map(|row| {
            let ts = |ms: i64| {
                MilliSecondsSinceUnixEpoch(UInt::new(ms.max(0) as u64).unwrap_or_default())
            };
            let init = ThirdPartyIdentifierInit {
                address: row.address,
                medium: Medium::from(row.medium.as_str()),
                validated_at: ts(row.validated_ts),
                added_at: ts(row.added_ts),
            };
            ThirdPartyIdentifier::from(init)
        })
        .collect();
    Ok(get_3pids::v3::Response::new(threepids))
}

async fn request_add_token(
    hs: Arc<Homeserver>,
    req: Ruma<request_3pid_management_token_via_email::v3::Request>,
) -> Result<request_3pid_management_token_via_email::v3::Response> {
    let b = &req.body;
    let sid = request_token(
        &hs,
        Purpose::Add,
        &b.client_secret,
        &b.email,
        b.send_attempt,
        b.next_link.as_deref(),
    )
    .await?;
    Ok(request_3pid_management_token_via_email::v3::Response::new(
        sid,
    ))
}

async fn request_registration_token(
    hs: Arc<Homeserver>,
    req: Ruma<request_registration_token_via_email::v3::Request>,
) -> Result<request_registration_token_via_email::v3::Response> {
    let b = &req.body;
    let sid = request_token(
        &hs,
        Purpose::Register,
        &b.client_secret,
        &b.email,
        b.send_attempt,
        b.next_link.as_deref(),
    )
    .await?;
    Ok(request_registration_token_via_email::v3::Response::new(sid))
}

async fn request_password_reset_token(
    hs: Arc<Homeserver>,
    req: Ruma<request_password_change_token_via_email::v3::Request>,
) -> Result<request_password_change_token_via_email::v3::Response> {
    let b = &req.body;
    let sid = request_token(
        &hs,
        Purpose::PasswordReset,
        &b.client_secret,
        &b.email,
        b.send_attempt,
        b.next_link.as_deref(),
    )
    .await?;
    Ok(request_password_change_token_via_email::v3::Response::new(
        sid,
    ))
}

/// The three email requestToken endpoints: the same request for different purposes.
async fn request_token(
    hs: &Homeserver,
    purpose: Purpose,
    client_secret: &ruma::ClientSecret,
    email: &str,
    send_attempt: UInt,
    next_link: Option<&str>,
) -> Result<ruma::OwnedSessionId> {
    let sid = threepid::request_email_token(
        hs,
        purpose,
        TokenRequest {
            client_secret: client_secret.as_str(),
            email,
            send_attempt: send_attempt.into(),
            next_link,
        },
    )
    .await?;
    sid.try_into()
        .map_err(|e| Error::Internal(format!("session ID: {e}")))
}

async fn add(
    hs: Arc<Homeserver>,
    req: Ruma<add_3pid::v3::Request>,
) -> Result<add_3pid::v3::Response> {
    let b = &req.body;
    threepid::add(
        &hs,
        req.requester()?,
        b.sid.as_str(),
        b.client_secret.as_str(),
        b.auth.as_ref(),
    )
    .await?;
    Ok(add_3pid::v3::Response::new())
}

async fn bind(
    hs: Arc<Homeserver>,
    req: Ruma<bind_3pid::v3::Request>,
) -> Result<bind_3pid::v3::Response> {
    let b = &req.body;
    threepid::bind(
        &hs,
        req.requester()?,
        &b.identity_server_info.id_server,
        &b.identity_server_info.id_access_token,
        b.sid.as_str(),
        b.client_secret.as_str(),
    )
    .await?;
    Ok(bind_3pid::v3::Response::new())
}

fn removal_status(unbound: bool) -> ThirdPartyIdRemovalStatus {
    if unbound {
        ThirdPartyIdRemovalStatus::Success
    } else {
        ThirdPartyIdRemovalStatus::NoSupport
    }
}

async fn delete(
    hs: Arc<Homeserver>,
    req: Ruma<delete_3pid::v3::Request>,
) -> Result<delete_3pid::v3::Response> {
    let b = &req.body;
    let unbound = threepid::delete(
        &hs,
        req.requester()?,
        b.medium.as_str(),
        &b.address,
        b.id_server.as_deref(),
    )
    .await?;
    Ok(delete_3pid::v3::Response::new(removal_status(unbound)))
}

async fn unbind(
    hs: Arc<Homeserver>,
    req: Ruma<unbind_3pid::v3::Request>,
) -> Result<unbind_3pid::v3::Response> {
    let b = &req.body;
    let requester = req.requester()?;
    let unbound = threepid::unbind(
        &hs,
        &requester.user_id,
        b.medium.as_str(),
        &b.address,
        b.id_server.as_deref(),
    )
    .await?;
    Ok(unbind_3pid::v3::Response::new(removal_status(unbound)))
}

#[derive(Deserialize)]
struct SubmitToken {
    sid: String,
    client_secret: String,
    token: String,
}

/// The link of a validation mail, opened in a browser: a page saying how it went, or the
/// client's `next_link`.
async fn submit_token_link(
    State(hs): State<Arc<Homeserver>>,
    MatrixQuery(q): MatrixQuery<SubmitToken>,
) -> Response {
    match threepid::submit_token(&hs, &q.sid, &q.client_secret, &q.token).await {
        Ok(Some(next_link)) => Redirect::to(&next_link).into_response(),
        Ok(None) => Html(page(
            "Email address confirmed",
            "Your email address is confirmed. You can go back to your Matrix client.",
        ))
        .into_response(),
        Err(Error::ThreepidAuthFailed(_)) => (
            http::StatusCode::BAD_REQUEST,
            Html(page(
                "Link not valid",
                "This link is wrong or has expired. Ask your Matrix client for a new mail.",
            )),
        )
            .into_response(),
        Err(e) => ApiError(e).into_response(),
    }
}

/// The same, for clients that submit the token themselves (as to an identity server's
/// `submitToken`).
async fn submit_token_json(
    State(hs): State<Arc<Homeserver>>,
    AuthedBody(body): AuthedBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    let q: SubmitToken =
        serde_json::from_slice(&body).map_err(|e| Error::BadJson(format!("request body: {e}")))?;
    threepid::submit_token(&hs, &q.sid, &q.client_secret, &q.token).await?;
    Ok(Json(json!({ "success": true })))
}

fn page(title: &str, text: &str) -> String {
    format!(
        "<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{title}</title></head>\
         <body><h1>{title}</h1><p>{text}</p></body></html>\n"
    )
}

/// The deprecated `POST /account/3pid`: adds the address a validated session proved (and
/// binds it at the identity server named, when `bind` is set).
#[derive(Deserialize)]
struct AddDeprecated {
    #[serde(alias = "threePidCreds")]
    three_pid_creds: Creds,
    #[serde(default)]
    bind: bool,
}

#[derive(Deserialize)]
struct Creds {
    client_secret: String,
    sid: String,
    #[serde(default)]
    id_server: Option<String>,
    #[serde(default)]
    id_access_token: Option<String>,
}

async fn add_deprecated(
    State(hs): State<Arc<Homeserver>>,
    Authed(requester): Authed,
    AuthedBody(body): AuthedBody,
) -> Result<Json<serde_json::Value>, ApiError> {
    let b: AddDeprecated =
        serde_json::from_slice(&body).map_err(|e| Error::BadJson(format!("request body: {e}")))?;
    let c = &b.three_pid_creds;
    threepid::add_validated(&hs, &requester, &c.sid, &c.client_secret).await?;
    if b.bind
        && let (Some(server), Some(token)) = (&c.id_server, &c.id_access_token)
    {
        threepid::bind(&hs, &requester, server, token, &c.sid, &c.client_secret).await?;
    }
    Ok(Json(json!({})))
}
