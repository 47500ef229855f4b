//! Logging in and out: password and token login, refresh, logout, login tokens.

use ruma::{OwnedDeviceId, OwnedUserId, UserId, api::client::uiaa::UserIdentifier};

use super::{
    ACCESS_TOKEN_PREFIX, ClientInfo, IssuedTokens, REFRESH_TOKEN_PREFIX, Requester, start_session,
    uia::{self, UiaAction},
};
use crate::secrets;
use crate::{
    error::{Error, Result},
    ratelimit::Action,
    server::{Homeserver, now_ms},
};

/// How the client proves who it is at `POST /login`.
pub enum Credentials<'a> {
    Password {
        identifier: Option<&'a UserIdentifier>,
        password: &'a str,
    },
    Token(&'a str),
    /// `m.login.application_service`: an appservice logs one of its users in (a device
    /// for it), with its own token.
    Appservice {
        identifier: Option<&'a UserIdentifier>,
        appservice: Option<&'a Requester>,
    },
}

pub struct LoginRequest<'a> {
    pub credentials: Credentials<'a>,
    pub device_id: Option<&'a str>,
    pub initial_device_display_name: Option<&'a str>,
    pub refresh_token: bool,
}

pub struct LoginOutcome {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub tokens: IssuedTokens,
}

/// A localpart or full user ID given by a client, as a user ID of this server.
pub fn qualify_user_id(hs: &Homeserver, user: &str) -> Result<OwnedUserId> {
    let user_id = if user.starts_with('@') {
        UserId::parse(user.to_lowercase())
    } else {
        UserId::parse_with_server_name(user.to_lowercase(), hs.config.server_name())
    }
    .map_err(|_| Error::InvalidUsername(format!("{user:?} is not a valid user ID")))?;
    if user_id.server_name() != hs.config.server_name() {
        return Err(Error::Forbidden("user is not on this server".into()));
    }
    Ok(user_id)
}

pub async fn login(
    hs: &Homeserver,
    req: LoginRequest<'_>,
    client: &ClientInfo,
) -> Result<LoginOutcome> {
    hs.rate_limiter.check(Action::Login, client.rate_key())?;
    let user_id = match req.credentials {
        Credentials::Password {
            identifier,
            password,
        } => {
            let invalid = || Error::Forbidden("invalid username or password".into());
            let user = match identifier {
                Some(UserIdentifier::Matrix(id)) => id.user.clone(),
                // An unknown address fails as a wrong password does (after the same work
                // below), so addresses cannot be probed.
                Some(UserIdentifier::Email(email)) => {
                    super::threepid::owner_of(hs, super::threepid::EMAIL, &email.address)
                        .await?
                        .unwrap_or_else(|| "@unknown-3pid:invalid".to_owned())
                }
                Some(UserIdentifier::Msisdn(_) | UserIdentifier::PhoneNumber(_)) => {
                    return Err(Error::Forbidden(
                        "this server has no phone numbers: log in with a user ID or email".into(),
                    ));
                }
                Some(_) => return Err(Error::Unrecognized("unknown identifier type".into())),
                None => return Err(Error::MissingParam("missing identifier".into())),
            };
            let user_id = match qualify_user_id(hs, &user) {
                Ok(id) => id,
                Err(_) => {
                    secrets::verify_against_nothing(password).await;
                    return Err(invalid());
                }
            };
            hs.rate_limiter.check(Action::Login, user_id.as_str())?;
            hs.rate_limiter
                .peek(Action::FailedLogin, user_id.as_str())?;
            let row = hs.storage.user(user_id.as_str()).await?;
            let ok = match row.as_ref().and_then(|u| u.password_hash.as_deref()) {
                Some(hash) => secrets::verify_password(password, hash).await,
                None => {
                    secrets::verify_against_nothing(password).await;
                    false
                }
            };
            if !ok {
                hs.rate_limiter
                    .record(Action::FailedLogin, user_id.as_str());
                return Err(invalid());
            }
            // Deactivation clears the password, so this only fires for accounts
            // deactivated by other means; reported after the password so it leaks nothing.
            if row.is_some_and(|u| u.deactivated) {
                return Err(Error::UserDeactivated);
            }
            user_id
        }
        Credentials::Appservice {
            identifier,
            appservice,
        } => {
            let Some(appservice) = appservice else {
                return Err(Error::MissingToken);
            };
            let Some(UserIdentifier::Matrix(id)) = identifier else {
                return Err(Error::MissingParam("a user identifier is required".into()));
            };
            let user_id = qualify_user_id(hs, &id.user)?;
            let registration = appservice
                .appservice
                .as_deref()
                .and_then(|id| super::appservice::by_id(hs, id))
                .ok_or_else(|| Error::Internal("the appservice's registration is gone".into()))?;
            if !super::appservice::owns_user(hs, registration, &user_id) {
                return Err(Error::Exclusive(
                    "that user is not in the application service's namespaces".into(),
                ));
            }
            if hs
                .storage
                .user(user_id.as_str())
                .await?
                .is_none_or(|u| u.deactivated)
            {
                return Err(Error::Forbidden("no such user".into()));
            }
            user_id
        }
        Credentials::Token(token) => {
            let user = hs
                .storage
                .take_login_token(&secrets::token_hash(token), now_ms())
                .await?
                .ok_or_else(|| Error::Forbidden("invalid or expired login token".into()))?;
            let row = hs.storage.user(&user).await?;
            if row.is_none_or(|u| u.deactivated) {
                return Err(Error::UserDeactivated);
            }
            super::parse_user_id(&user)?
        }
    };
    let (device_id, tokens) = start_session(
        hs,
        &user_id,
        req.device_id,
        req.initial_device_display_name,
        req.refresh_token,
        client,
    )
    .await?;
    Ok(LoginOutcome {
        user_id,
        device_id,
        tokens,
    })
}

/// Exchanges a refresh token for a new access token and refresh token. The used refresh
/// token and the access token issued with it stop working.
pub async fn refresh(hs: &Homeserver, refresh_token: &str) -> Result<IssuedTokens> {
    let unknown = Error::UnknownToken { soft_logout: false };
    if !refresh_token.starts_with(REFRESH_TOKEN_PREFIX) {
        return Err(unknown);
    }
    let access_token = secrets::new_token(ACCESS_TOKEN_PREFIX);
    let new_refresh = secrets::new_token(REFRESH_TOKEN_PREFIX);
    let lifetime_ms = hs.config.auth.access_token_lifetime_secs * 1000;
    let now = now_ms();
    hs.storage
        .rotate_refresh_token(
            &secrets::token_hash(refresh_token),
            &secrets::token_hash(&access_token),
            now + lifetime_ms as i64,
            &secrets::token_hash(&new_refresh),
            now,
        )
        .await?
        .ok_or(unknown)?;
    Ok(IssuedTokens {
        access_token,
        refresh_token: Some(new_refresh),
        expires_in_ms: Some(lifetime_ms),
    })
}

/// Ends this session: the device goes, and its tokens with it.
pub async fn logout(hs: &Homeserver, requester: &Requester) -> Result<()> {
    hs.storage
        .delete_devices(
            requester.user_id.as_str(),
            &[requester.device_id.to_string()],
        )
        .await?;
    Ok(())
}

/// Ends every session of the user.
pub async fn logout_all(hs: &Homeserver, requester: &Requester) -> Result<()> {
    hs.storage
        .delete_other_devices(requester.user_id.as_str(), None)
        .await?;
    Ok(())
}

/// Issues a single-use `m.login.token` for signing in another device, behind UIA.
pub async fn get_login_token(
    hs: &Homeserver,
    requester: &Requester,
    auth: Option<&ruma::api::client::uiaa::AuthData>,
) -> Result<(String, u64)> {
    uia::check(
        hs,
        UiaAction::GetLoginToken,
        Some(&requester.user_id),
        uia::password_flows(),
        auth,
    )
    .await?;
    let token = secrets::new_token("axl_");
    let lifetime_ms = hs.config.auth.login_token_lifetime_secs * 1000;
    hs.storage
        .insert_login_token(
            &secrets::token_hash(&token),
            requester.user_id.as_str(),
            now_ms() + lifetime_ms as i64,
        )
        .await?;
    Ok((token, lifetime_ms))
}
