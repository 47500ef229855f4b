//! Session: login (password, token), refresh, logout, login tokens.

use std::{sync::Arc, time::Duration};

use axum::Router;
use ruma::api::client::session::{
    get_login_token, get_login_types,
    login::{self, v3::LoginInfo},
    logout, logout_all, refresh_token,
};
use ruma::api::client::uiaa::{EmailUserIdentifier, MatrixUserIdentifier, UserIdentifier};

use crate::{
    error::{Error, Result},
    http::{Ruma, route},
    server::Homeserver,
    users::login as domain,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = route(router, login_types);
    let router = route(router, login);
    let router = route(router, refresh);
    let router = route(router, logout);
    let router = route(router, logout_all);
    route(router, get_login_token)
}

async fn login_types(
    _hs: Arc<Homeserver>,
    _req: Ruma<get_login_types::v3::Request>,
) -> Result<get_login_types::v3::Response> {
    use get_login_types::v3::{LoginType, PasswordLoginType, TokenLoginType};
    let mut token = TokenLoginType::new();
    token.get_login_token = true;
    Ok(get_login_types::v3::Response::new(vec![
        LoginType::Password(PasswordLoginType::new()),
        LoginType::Token(token),
    ]))
}

async fn login(hs: Arc<Homeserver>, req: Ruma<login::v3::Request>) -> Result<login::v3::Response> {
    let body = &req.body;
    // The deprecated top-level `user`, or `medium` and `address`, stand for an identifier.
    #[allow(deprecated)]
    let legacy_identifier = match &body.login_info {
        LoginInfo::Password(p) if p.identifier.is_none() => {
            match (&p.user, &p.medium, &p.address) {
                (Some(user), _, _) => Some(UserIdentifier::Matrix(MatrixUserIdentifier::new(
                    user.clone(),
                ))),
                (None, Some(medium), Some(address)) if medium == "email" => Some(
                    UserIdentifier::Email(EmailUserIdentifier::new(address.clone())),
                ),
                _ => None,
            }
        }
        _ => None,
    };
    let credentials = match &body.login_info {
        LoginInfo::Password(p) => domain::Credentials::Password {
            identifier: p.identifier.as_ref().or(legacy_identifier.as_ref()),
            password: &p.password,
        },
        LoginInfo::Token(t) => domain::Credentials::Token(&t.token),
        LoginInfo::ApplicationService(a) => domain::Credentials::Appservice {
            identifier: a.identifier.as_ref(),
            appservice: req.requester.as_ref().filter(|r| r.appservice.is_some()),
        },
        other => {
            return Err(Error::Unrecognized(format!(
                "unknown login type {:?}",
                other.login_type()
            )));
        }
    };
    let outcome = domain::login(
        &hs,
        domain::LoginRequest {
            credentials,
            device_id: body.device_id.as_deref().map(|d| d.as_str()),
            initial_device_display_name: body.initial_device_display_name.as_deref(),
            refresh_token: body.refresh_token,
        },
        &req.client,
    )
    .await?;
    let mut response = login::v3::Response::new(
        outcome.user_id,
        outcome.tokens.access_token,
        outcome.device_id,
    );
    response.refresh_token = outcome.tokens.refresh_token;
    response.expires_in = outcome.tokens.expires_in_ms.map(Duration::from_millis);
    Ok(response)
}

async fn refresh(
    hs: Arc<Homeserver>,
    req: Ruma<refresh_token::v3::Request>,
) -> Result<refresh_token::v3::Response> {
    let tokens = domain::refresh(&hs, &req.body.refresh_token).await?;
    let mut response = refresh_token::v3::Response::new(tokens.access_token);
    response.refresh_token = tokens.refresh_token;
    response.expires_in_ms = tokens.expires_in_ms.map(Duration::from_millis);
    Ok(response)
}

async fn logout(
    hs: Arc<Homeserver>,
    req: Ruma<logout::v3::Request>,
) -> Result<logout::v3::Response> {
    domain::logout(&hs, req.requester()?).await?;
    Ok(logout::v3::Response::new())
}

async fn logout_all(
    hs: Arc<Homeserver>,
    req: Ruma<logout_all::v3::Request>,
) -> Result<logout_all::v3::Response> {
    domain::logout_all(&hs, req.requester()?).await?;
    Ok(logout_all::v3::Response::new())
}

async fn get_login_token(
    hs: Arc<Homeserver>,
    req: Ruma<get_login_token::v1::Request>,
) -> Result<get_login_token::v1::Response> {
    let (token, lifetime_ms) =
        domain::get_login_token(&hs, req.requester()?, req.body.auth.as_ref()).await?;
    Ok(get_login_token::v1::Response::new(
        Duration::from_millis(lifetime_ms),
        token,
    ))
}
