//! Registration: open, by token, or closed; guests when enabled; admin creation from the CLI.

use ruma::{
    OwnedDeviceId, OwnedUserId, UserId,
    api::client::uiaa::{AuthData, AuthType},
};

use super::{
    ClientInfo, IssuedTokens, secrets, start_session,
    uia::{self, UiaAction},
};
use crate::{
    config::RegistrationMode,
    error::{Error, Result},
    ratelimit::Action,
    server::{Homeserver, now_ms},
    storage::users::NewUser,
};

pub struct RegisterRequest<'a> {
    pub username: Option<&'a str>,
    pub password: Option<&'a str>,
    pub auth: Option<&'a AuthData>,
    pub guest: bool,
    pub device_id: Option<&'a str>,
    pub initial_device_display_name: Option<&'a str>,
    pub inhibit_login: bool,
    pub refresh_token: bool,
}

pub struct Registered {
    pub user_id: OwnedUserId,
    /// None when login was inhibited.
    pub session: Option<(OwnedDeviceId, IssuedTokens)>,
}

/// Checks a requested localpart against the spec's grammar for new user IDs.
pub fn check_localpart(hs: &Homeserver, localpart: &str) -> Result<OwnedUserId> {
    if localpart.is_empty() {
        return Err(Error::InvalidUsername("username must not be empty".into()));
    }
    if !localpart
        .bytes()
        .all(|b| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'=' | b'-' | b'/' | b'+'))
    {
        return Err(Error::InvalidUsername(
            "username may contain only a-z, 0-9, and . _ = - / +".into(),
        ));
    }
    if localpart.starts_with('_') {
        return Err(Error::InvalidUsername(
            "usernames starting with _ are reserved".into(),
        ));
    }
    let user_id = UserId::parse_with_server_name(localpart, hs.config.server_name())
        .map_err(|e| Error::InvalidUsername(e.to_string()))?;
    if user_id.as_str().len() > 255 {
        return Err(Error::InvalidUsername(
            "user ID is longer than 255 bytes".into(),
        ));
    }
    Ok(user_id)
}

/// `GET /register/available`.
pub async fn username_available(
    hs: &Homeserver,
    username: &str,
    client: &ClientInfo,
) -> Result<bool> {
    hs.rate_limiter
        .check(Action::Registration, client.rate_key())?;
    let user_id = check_localpart(hs, username)?;
    if hs.storage.localpart_exists(user_id.localpart()).await? {
        return Err(Error::UserInUse);
    }
    Ok(true)
}

fn flows(hs: &Homeserver) -> Vec<Vec<AuthType>> {
    match hs.config.registration.mode {
        RegistrationMode::Token => vec![vec![AuthType::RegistrationToken]],
        _ => vec![vec![AuthType::Dummy]],
    }
}

pub async fn register(
    hs: &Homeserver,
    req: RegisterRequest<'_>,
    client: &ClientInfo,
) -> Result<Registered> {
    if req.guest {
        if !hs.config.registration.allow_guests {
            return Err(Error::GuestAccessForbidden);
        }
    } else if hs.config.registration.mode == RegistrationMode::Closed {
        return Err(Error::Forbidden(
            "registration is disabled on this server".into(),
        ));
    }
    // Username problems are reported before any UIA round, as Synapse does, so the client
    // can fix them without starting over.
    let requested = match (req.guest, req.username) {
        (false, Some(name)) => {
            let user_id = check_localpart(hs, name)?;
            if hs.storage.localpart_exists(user_id.localpart()).await? {
                return Err(Error::UserInUse);
            }
            Some(user_id)
        }
        _ => None,
    };
    if !req.guest {
        if let Some(password) = req.password {
            secrets::check_password_length(password)?;
        }
        // The password is needed only once authentication is complete: clients first
        // send `{}` to learn the flows.
        uia::check(hs, UiaAction::Register, None, flows(hs), req.auth).await?;
        if req.password.is_none() {
            return Err(Error::MissingParam("password is required".into()));
        }
    }
    hs.rate_limiter
        .check(Action::Registration, client.rate_key())?;

    let password_hash = match req.password.filter(|_| !req.guest) {
        Some(p) => Some(secrets::hash_password(p).await?),
        None => None,
    };
    let user_id = create_account(hs, requested, password_hash.as_deref(), false, req.guest).await?;
    let session = if req.inhibit_login {
        None
    } else {
        Some(
            start_session(
                hs,
                &user_id,
                req.device_id,
                req.initial_device_display_name,
                req.refresh_token,
                client,
            )
            .await?,
        )
    };
    Ok(Registered { user_id, session })
}

/// Creates the account row and its default display name (the localpart, as Synapse does).
/// With no requested ID, takes the next numeric localpart.
pub async fn create_account(
    hs: &Homeserver,
    requested: Option<OwnedUserId>,
    password_hash: Option<&str>,
    is_admin: bool,
    is_guest: bool,
) -> Result<OwnedUserId> {
    for _attempt in 0..5 {
        let user_id = match &requested {
            Some(id) => id.clone(),
            None => {
                let n = hs.storage.next_numeric_localpart().await?;
                UserId::parse_with_server_name(n.to_string(), hs.config.server_name())
                    .map_err(|e| Error::Internal(e.to_string()))?
            }
        };
        let created = hs
            .storage
            .create_user(&NewUser {
                user_id: user_id.as_str(),
                localpart: user_id.localpart(),
                password_hash,
                is_admin,
                is_guest,
                now_ms: now_ms(),
            })
            .await?;
        if created {
            hs.storage
                .set_profile_field(user_id.as_str(), "displayname", &user_id.localpart().into())
                .await?;
            return Ok(user_id);
        }
        if requested.is_some() {
            return Err(Error::UserInUse);
        }
        // Another registration took the same number; try the next.
    }
    Err(Error::Internal("could not allocate a user ID".into()))
}

/// `axon create-user`: an account made by the operator, bypassing registration mode.
pub async fn create_user_cli(
    hs: &Homeserver,
    localpart: &str,
    password: Option<&str>,
    admin: bool,
) -> Result<OwnedUserId> {
    let user_id = check_localpart(hs, localpart)?;
    let hash = match password {
        Some(p) => Some(secrets::hash_password(p).await?),
        None => None,
    };
    create_account(hs, Some(user_id), hash.as_deref(), admin, false).await
}
