//! Account: registration, availability, whoami, password, deactivation.

use std::{sync::Arc, time::Duration};

use axum::Router;
use ruma::api::client::account::{
    ThirdPartyIdRemovalStatus, change_password, check_registration_token_validity, deactivate,
    get_username_availability, register, request_openid_token, whoami,
};

use crate::{
    error::Result,
    http::{
        Ruma, compat,
        extract::{Patches, route_patched},
        route,
    },
    server::Homeserver,
    users::{account, openid, register as reg, uia},
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let patches = Patches {
        request: None,
        response: Some(no_null_device),
    };
    let router = route_patched(router, register, patches);
    let router = route(router, username_available);
    let router = route(router, registration_token_validity);
    let router = route(router, whoami);
    let router = route_patched(router, change_password, compat::LEGACY_AUTH);
    let router = route(router, openid_token);
    route_patched(router, deactivate, compat::LEGACY_AUTH)
}

async fn openid_token(
    hs: Arc<Homeserver>,
    req: Ruma<request_openid_token::v3::Request>,
) -> Result<request_openid_token::v3::Response> {
    let token = openid::request_token(&hs, req.requester()?, &req.body.user_id).await?;
    Ok(request_openid_token::v3::Response::new(
        token,
        ruma::authentication::TokenType::Bearer,
        hs.config.server_name().to_owned(),
        Duration::from_secs(openid::LIFETIME_SECS),
    ))
}

/// With `inhibit_login` there is no device: Synapse leaves `device_id` out, where ruma
/// writes `null` (and clients test for the key).
fn no_null_device(response: &mut serde_json::Value) {
    if let Some(fields) = response.as_object_mut()
        && fields
            .get("device_id")
            .is_some_and(serde_json::Value::is_null)
    {
        fields.remove("device_id");
    }
}

async fn register(
    hs: Arc<Homeserver>,
    req: Ruma<register::v3::Request>,
) -> Result<register::v3::Response> {
    let body = &req.body;
    let registered = reg::register(
        &hs,
        reg::RegisterRequest {
            username: body.username.as_deref(),
            password: body.password.as_deref(),
            auth: body.auth.as_ref(),
            guest: body.kind == register::RegistrationKind::Guest,
            device_id: body.device_id.as_deref().map(|d| d.as_str()),
            initial_device_display_name: body.initial_device_display_name.as_deref(),
            inhibit_login: body.inhibit_login,
            refresh_token: body.refresh_token,
            guest_access_token: body.guest_access_token.as_deref(),
            appservice_type: body.login_type == Some(register::LoginType::ApplicationService),
            appservice: req.requester.as_ref().filter(|r| r.appservice.is_some()),
        },
        &req.client,
    )
    .await?;
    let mut response = register::v3::Response::new(registered.user_id);
    if let Some((device_id, tokens)) = registered.session {
        response.device_id = Some(device_id);
        response.access_token = Some(tokens.access_token);
        response.refresh_token = tokens.refresh_token;
        response.expires_in = tokens.expires_in_ms.map(Duration::from_millis);
    }
    Ok(response)
}

async fn username_available(
    hs: Arc<Homeserver>,
    req: Ruma<get_username_availability::v3::Request>,
) -> Result<get_username_availability::v3::Response> {
    let available = reg::username_available(&hs, &req.body.username, &req.client).await?;
    Ok(get_username_availability::v3::Response::new(available))
}

async fn registration_token_validity(
    hs: Arc<Homeserver>,
    req: Ruma<check_registration_token_validity::v1::Request>,
) -> Result<check_registration_token_validity::v1::Response> {
    Ok(check_registration_token_validity::v1::Response::new(
        uia::registration_token_valid(&hs, &req.body.token),
    ))
}

async fn whoami(
    _hs: Arc<Homeserver>,
    req: Ruma<whoami::v3::Request>,
) -> Result<whoami::v3::Response> {
    let requester = req.requester()?;
    let mut response = whoami::v3::Response::new(requester.user_id.clone(), requester.is_guest);
    response.device_id = Some(requester.device_id.clone());
    Ok(response)
}

async fn change_password(
    hs: Arc<Homeserver>,
    req: Ruma<change_password::v3::Request>,
) -> Result<change_password::v3::Response> {
    let body = &req.body;
    match req.requester.as_ref() {
        Some(requester) => {
            account::change_password(
                &hs,
                requester,
                &body.new_password,
                body.logout_devices,
                body.auth.as_ref(),
            )
            .await?
        }
        // Without a login: a reset proven by email, where mail can be sent.
        None if hs.config.email.enabled() => {
            account::reset_password(
                &hs,
                &body.new_password,
                body.logout_devices,
                body.auth.as_ref(),
            )
            .await?
        }
        None => return Err(crate::error::Error::MissingToken),
    }
    Ok(change_password::v3::Response::new())
}

async fn deactivate(
    hs: Arc<Homeserver>,
    req: Ruma<deactivate::v3::Request>,
) -> Result<deactivate::v3::Response> {
    let requester = req.requester()?;
    let unbound = account::deactivate(
        &hs,
        requester,
        req.body.erase,
        req.body.id_server.as_deref(),
        req.body.auth.as_ref(),
    )
    .await?;
    Ok(deactivate::v3::Response::new(if unbound {
        ThirdPartyIdRemovalStatus::Success
    } else {
        ThirdPartyIdRemovalStatus::NoSupport
    }))
}
