//! Third-party identifiers. axon has no email or SMS sender, so accounts have no 3PIDs:
//! listing answers empty, and every token request answers with the spec's error.

use std::sync::Arc;

use axum::Router;
use ruma::api::client::account::{
    get_3pids, request_3pid_management_token_via_email, request_3pid_management_token_via_msisdn,
    request_password_change_token_via_email, request_password_change_token_via_msisdn,
    request_registration_token_via_email, request_registration_token_via_msisdn,
};

use crate::{
    error::{Error, Result},
    http::{Ruma, route},
    server::Homeserver,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = route(router, list);
    let router = route(
        router,
        |_: Arc<Homeserver>, _: Ruma<request_3pid_management_token_via_email::v3::Request>| {
            not_supported("email")
        },
    );
    let router = route(
        router,
        |_: Arc<Homeserver>, _: Ruma<request_3pid_management_token_via_msisdn::v3::Request>| {
            not_supported("phone numbers")
        },
    );
    let router = route(
        router,
        |_: Arc<Homeserver>, _: Ruma<request_registration_token_via_email::v3::Request>| {
            denied("email")
        },
    );
    let router = route(
        router,
        |_: Arc<Homeserver>, _: Ruma<request_registration_token_via_msisdn::v3::Request>| {
            denied("phone numbers")
        },
    );
    let router = route(
        router,
        |_: Arc<Homeserver>, _: Ruma<request_password_change_token_via_email::v3::Request>| {
            denied("email")
        },
    );
    route(
        router,
        |_: Arc<Homeserver>, _: Ruma<request_password_change_token_via_msisdn::v3::Request>| {
            denied("phone numbers")
        },
    )
}

async fn list(
    _hs: Arc<Homeserver>,
    req: Ruma<get_3pids::v3::Request>,
) -> Result<get_3pids::v3::Response> {
    req.requester()?;
    Ok(get_3pids::v3::Response::new(Vec::new()))
}

/// For `/account/3pid/*/requestToken`, where the spec lists M_THREEPID_MEDIUM_NOT_SUPPORTED.
async fn not_supported<T>(medium: &str) -> Result<T> {
    Err(Error::ThreepidMediumNotSupported(format!(
        "this server cannot send messages to {medium}: no sender is configured"
    )))
}

/// For registration and password reset, where the spec lists M_THREEPID_DENIED.
async fn denied<T>(medium: &str) -> Result<T> {
    Err(Error::ThreepidDenied(format!(
        "this server cannot send messages to {medium}: no sender is configured"
    )))
}
