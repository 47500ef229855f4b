//! Registration: open, by token, or closed; guests when enabled; admin creation from the CLI.

use ruma::{
    OwnedDeviceId, OwnedUserId, UserId,
    api::client::uiaa::{AuthData, AuthType},
};

use super::{
    ClientInfo, IssuedTokens, Requester, start_session,
    uia::{self, UiaAction},
};
use crate::secrets;
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
    /// A guest's access token: the registration upgrades that guest to a full account,
    /// keeping its user ID.
    pub guest_access_token: Option<&'a str>,
    /// `type: m.login.application_service`: an appservice registers one of its users.
    pub appservice_type: bool,
    /// The appservice behind the request's token, if it is one's.
    pub appservice: Option<&'a Requester>,
}

pub struct Registered {
    pub user_id: OwnedUserId,
    /// None when login was inhibited.
    pub session: Option<(OwnedDeviceId, IssuedTokens)>,
}

/// Checks a requested localpart against the spec's grammar for new user IDs.
pub fn check_localpart(hs: &Homeserver, localpart: &str) -> Result<OwnedUserId> {
    if localpart.starts_with('_') {
        return Err(Error::InvalidUsername(
            "usernames starting with _ are reserved".into(),
        ));
    }
    check_localpart_grammar(hs, localpart)
}

/// The grammar alone (appservices may register `_`-prefixed names, as Synapse allows).
fn check_localpart_grammar(hs: &Homeserver, localpart: &str) -> Result<OwnedUserId> {
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
    // Lowercased, as registration lowercases it.
    let user_id = check_localpart(hs, &username.to_lowercase())?;
    if hs.storage.localpart_exists(user_id.localpart()).await? {
        return Err(Error::UserInUse);
    }
    super::appservice::check_not_claimed(hs, &user_id, None)?;
    Ok(true)
}

/// `POST /register` with `type: m.login.application_service` and the appservice's token:
/// one of its users, made without user-interactive auth or a password.
async fn register_for_appservice(
    hs: &Homeserver,
    req: &RegisterRequest<'_>,
    client: &ClientInfo,
) -> Result<Registered> {
    let Some(appservice) = req.appservice else {
        return Err(Error::MissingToken);
    };
    if !req.appservice_type {
        return Err(Error::InvalidParam(
            "an application service registers with type m.login.application_service".into(),
        ));
    }
    let registration = appservice
        .appservice
        .as_deref()
        .and_then(|id| super::appservice::by_id(hs, id))
        .ok_or_else(|| Error::Internal("the appservice's registration is gone".into()))?;
    let username = req
        .username
        .ok_or_else(|| Error::MissingParam("username is required".into()))?;
    let user_id = check_localpart_grammar(hs, &username.to_lowercase())?;
    if !super::appservice::owns_user(hs, registration, &user_id) {
        return Err(Error::Exclusive(
            "that user ID is not in the application service's namespaces".into(),
        ));
    }
    if hs.storage.localpart_exists(user_id.localpart()).await? {
        return Err(Error::UserInUse);
    }
    let user_id = create_account(hs, Some(user_id), None, false, false).await?;
    let session = login_unless_inhibited(hs, &user_id, req, client).await?;
    Ok(Registered { user_id, session })
}

/// The registration flows: a token when the mode asks for one; with mail configured,
/// a proven email address too (only that, when the config requires it).
fn flows(hs: &Homeserver) -> Vec<Vec<AuthType>> {
    let base = match hs.config.registration.mode {
        RegistrationMode::Token => vec![AuthType::RegistrationToken],
        _ => vec![AuthType::Dummy],
    };
    let email = &hs.config.email;
    if !email.enabled() {
        return vec![base];
    }
    let with_email = match hs.config.registration.mode {
        RegistrationMode::Token => vec![AuthType::RegistrationToken, AuthType::EmailIdentity],
        _ => vec![AuthType::EmailIdentity],
    };
    if email.require_for_registration {
        vec![with_email]
    } else {
        vec![base, with_email]
    }
}

/// What a registration session remembers of its first request (the password only as
/// its hash), and the account once made.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct Remembered {
    username: Option<String>,
    password_hash: Option<String>,
    device_id: Option<String>,
    initial_device_display_name: Option<String>,
    inhibit_login: bool,
    registered_user_id: Option<String>,
    /// The guest being upgraded.
    upgrading: Option<String>,
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
        return register_now(hs, &req, None, None, client).await;
    }
    if req.appservice_type || req.appservice.is_some() {
        return register_for_appservice(hs, &req, client).await;
    }
    if hs.config.registration.mode == RegistrationMode::Closed {
        return Err(Error::Forbidden(
            "registration is disabled on this server".into(),
        ));
    }
    // A session keeps the parameters of its first request: later rounds may carry only
    // `auth` (as sytest and Synapse's clients do).
    let session_id = req.auth.and_then(|a| a.session()).map(str::to_owned);
    let remembered: Option<Remembered> = match &session_id {
        Some(id) => uia::remembered(hs, UiaAction::Register, id)
            .await?
            .and_then(|p| serde_json::from_value(p).ok()),
        None => None,
    };
    let remembered = remembered.unwrap_or_default();
    let username = remembered.username.as_deref().or(req.username);
    let device_id = remembered.device_id.as_deref().or(req.device_id);
    let display_name = remembered
        .initial_device_display_name
        .as_deref()
        .or(req.initial_device_display_name);
    let inhibit_login = remembered.inhibit_login || req.inhibit_login;

    // Upgrading a guest: its own token names it; the account keeps its user ID (a name
    // asked for must be that ID's localpart).
    let upgrading: Option<OwnedUserId> = match (&remembered.upgrading, req.guest_access_token) {
        (Some(id), _) => Some(super::parse_user_id(id)?),
        (None, Some(token)) => {
            let guest = super::authenticate(hs, token, client).await?;
            if !guest.is_guest {
                return Err(Error::Forbidden(
                    "guest_access_token is not a guest's token".into(),
                ));
            }
            if username.is_some_and(|n| n.to_lowercase() != guest.user_id.localpart()) {
                return Err(Error::UserInUse);
            }
            Some(guest.user_id)
        }
        (None, None) => None,
    };
    // Username problems are reported before any UIA round, as Synapse does, so the client
    // can fix them without starting over; a repeated request of a completed registration
    // is not a problem.
    let requested = match username {
        _ if upgrading.is_some() => upgrading.clone(),
        Some(name) if remembered.registered_user_id.is_none() => {
            // User IDs are lower case; Synapse lowercases the requested name.
            let user_id = check_localpart(hs, &name.to_lowercase())?;
            if hs.storage.localpart_exists(user_id.localpart()).await? {
                return Err(Error::UserInUse);
            }
            super::appservice::check_not_claimed(hs, &user_id, None)?;
            Some(user_id)
        }
        _ => None,
    };
    if let Some(password) = req.password {
        secrets::check_password_length(password)?;
    }
    // The password is needed only once authentication is complete: clients first send
    // `{}` to learn the flows.
    let proven = uia::check_proving(
        hs,
        UiaAction::Register,
        None,
        flows(hs),
        req.auth,
        &serde_json::Value::Null,
    )
    .await;
    if let Err(Error::Uia { info, .. }) = &proven
        && let Some(session) = &info.session
        && session_id.as_deref() != Some(session.as_str())
    {
        // A new session: remember this request for the rounds to come.
        let password_hash = match req.password {
            Some(p) => {
                hs.rate_limiter
                    .check(Action::Registration, client.rate_key())?;
                Some(secrets::hash_password(p).await?)
            }
            None => None,
        };
        let first = Remembered {
            username: req.username.map(str::to_owned),
            password_hash,
            device_id: req.device_id.map(str::to_owned),
            initial_device_display_name: req.initial_device_display_name.map(str::to_owned),
            inhibit_login: req.inhibit_login,
            registered_user_id: None,
            upgrading: upgrading.as_ref().map(ToString::to_string),
        };
        let params = serde_json::to_value(&first).map_err(|e| Error::Internal(e.to_string()))?;
        uia::remember(hs, session, &params).await?;
    }
    let proven = proven?;
    // Done before: the same account again, with a new login unless inhibited.
    if let Some(user_id) = &remembered.registered_user_id {
        let user_id = super::parse_user_id(user_id)?;
        let request = RegisterRequest {
            device_id,
            initial_device_display_name: display_name,
            inhibit_login,
            ..req
        };
        let session = login_unless_inhibited(hs, &user_id, &request, client).await?;
        return Ok(Registered { user_id, session });
    }
    let password_hash = match (req.password, remembered.password_hash) {
        (Some(p), _) => {
            hs.rate_limiter
                .check(Action::Registration, client.rate_key())?;
            Some(secrets::hash_password(p).await?)
        }
        (None, Some(hash)) => Some(hash),
        (None, None) => return Err(Error::MissingParam("password is required".into())),
    };
    let request = RegisterRequest {
        device_id,
        initial_device_display_name: display_name,
        inhibit_login,
        ..req
    };
    let remembered_upgrade = upgrading.as_ref().map(ToString::to_string);
    let registered = match upgrading {
        Some(user_id) => {
            hs.storage
                .upgrade_guest(user_id.as_str(), password_hash.as_deref())
                .await?;
            let session = login_unless_inhibited(hs, &user_id, &request, client).await?;
            Registered { user_id, session }
        }
        None => register_now(hs, &request, requested, password_hash, client).await?,
    };
    if let Some(proven) = &proven {
        super::threepid::attach_proven(hs, &registered.user_id, proven).await?;
    }
    if let Some(id) = &session_id {
        let done = Remembered {
            registered_user_id: Some(registered.user_id.to_string()),
            upgrading: remembered_upgrade,
            device_id: device_id.map(str::to_owned),
            initial_device_display_name: display_name.map(str::to_owned),
            inhibit_login,
            ..Default::default()
        };
        let params = serde_json::to_value(&done).map_err(|e| Error::Internal(e.to_string()))?;
        uia::remember(hs, id, &params).await?;
    }
    Ok(registered)
}

/// Creates the account (a guest's, or one whose authentication is done) and logs it in
/// unless asked not to.
async fn register_now(
    hs: &Homeserver,
    req: &RegisterRequest<'_>,
    requested: Option<OwnedUserId>,
    password_hash: Option<String>,
    client: &ClientInfo,
) -> Result<Registered> {
    if req.guest {
        hs.rate_limiter
            .check(Action::Registration, client.rate_key())?;
    }
    let user_id = create_account(hs, requested, password_hash.as_deref(), false, req.guest).await?;
    let session = login_unless_inhibited(hs, &user_id, req, client).await?;
    Ok(Registered { user_id, session })
}

/// The new account's first login, unless the request inhibits it.
async fn login_unless_inhibited(
    hs: &Homeserver,
    user_id: &UserId,
    req: &RegisterRequest<'_>,
    client: &ClientInfo,
) -> Result<Option<(OwnedDeviceId, IssuedTokens)>> {
    if req.inhibit_login {
        return Ok(None);
    }
    let session = start_session(
        hs,
        user_id,
        req.device_id,
        req.initial_device_display_name,
        req.refresh_token,
        client,
    )
    .await?;
    Ok(Some(session))
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
