//! Accounts, devices and sessions: registration, login, tokens, user-interactive auth,
//! profiles, account data and filters.

use ruma::{OwnedDeviceId, OwnedUserId, UserId};

use crate::secrets;
use crate::{
    error::{Error, Result},
    server::{Homeserver, now_ms},
    storage::tokens::NewSession,
};

pub mod account;
pub mod account_data;
pub mod appservice;
pub mod devices;
pub mod directory;
pub mod guests;
pub mod login;
pub mod moderation;
pub mod openid;
pub mod presence;
pub mod profile;
pub mod register;
pub mod shared_secret;
pub mod threepid;
pub mod uia;

/// The authenticated user and device behind a request.
#[derive(Debug, Clone)]
pub struct Requester {
    pub user_id: OwnedUserId,
    pub device_id: OwnedDeviceId,
    pub is_admin: bool,
    pub is_guest: bool,
    /// Suspended by an admin: may read and leave, not take part (`users::moderation`).
    pub is_suspended: bool,
    /// Locked by an admin: may only log out.
    pub is_locked: bool,
    /// The application service acting (its registration's ID), by its `as_token`.
    pub appservice: Option<String>,
}

/// Facts about the client connection that domain code records or rate-limits by.
#[derive(Debug, Clone, Default)]
pub struct ClientInfo {
    pub ip: Option<String>,
    pub user_agent: Option<String>,
}

impl ClientInfo {
    pub fn rate_key(&self) -> &str {
        self.ip.as_deref().unwrap_or("unknown")
    }
}

/// Resolves an access token to its user and device. An expired token is a soft logout:
/// the client may refresh and carry on.
pub async fn authenticate(hs: &Homeserver, token: &str, client: &ClientInfo) -> Result<Requester> {
    authenticate_masquerading(hs, token, client, appservice::Masquerade::default()).await
}

/// `authenticate`, where an application service's token may act as one of its users
/// (and devices).
pub async fn authenticate_masquerading(
    hs: &Homeserver,
    token: &str,
    client: &ClientInfo,
    masquerade: appservice::Masquerade,
) -> Result<Requester> {
    if let Some(registration) = appservice::by_token(hs, token) {
        return appservice::requester(hs, registration, masquerade).await;
    }
    let row = hs
        .storage
        .access_token(&secrets::token_hash(token))
        .await?
        .ok_or(Error::UnknownToken { soft_logout: false })?;
    if row.expires_ts.is_some_and(|exp| exp <= now_ms()) {
        return Err(Error::UnknownToken { soft_logout: true });
    }
    if let Some(refresh_id) = row.retires_refresh {
        hs.storage.retire_refreshed_predecessor(refresh_id).await?;
    }
    if hs.last_seen.due(&row.user_id, &row.device_id) {
        // Off the request path: a slow write must not delay the request.
        let storage = hs.storage.clone();
        let (user, device, ip, agent) = (
            row.user_id.clone(),
            row.device_id.clone(),
            client.ip.clone(),
            client.user_agent.clone(),
        );
        tokio::spawn(async move {
            if let Err(e) = storage
                .touch_device(&user, &device, ip.as_deref(), agent.as_deref(), now_ms())
                .await
            {
                tracing::warn!("recording device activity: {e}");
            }
        });
    }
    Ok(Requester {
        user_id: parse_user_id(&row.user_id)?,
        device_id: row.device_id.into(),
        is_admin: row.is_admin,
        is_guest: row.is_guest,
        is_suspended: row.suspended,
        is_locked: row.locked,
        appservice: None,
    })
}

pub(crate) fn parse_user_id(raw: &str) -> Result<OwnedUserId> {
    UserId::parse(raw).map_err(|e| Error::Internal(format!("stored user ID {raw:?}: {e}")))
}

/// Tokens handed to a client at login, registration or refresh.
#[derive(Debug, Clone)]
pub struct IssuedTokens {
    pub access_token: String,
    pub refresh_token: Option<String>,
    pub expires_in_ms: Option<u64>,
}

pub(crate) const ACCESS_TOKEN_PREFIX: &str = "axa_";
pub(crate) const REFRESH_TOKEN_PREFIX: &str = "axr_";

/// Creates (or takes over) a device and issues its tokens. With `want_refresh`, the
/// access token expires after the configured lifetime and a refresh token comes with it.
pub(crate) async fn start_session(
    hs: &Homeserver,
    user_id: &UserId,
    device_id: Option<&str>,
    initial_display_name: Option<&str>,
    want_refresh: bool,
    client: &ClientInfo,
) -> Result<(OwnedDeviceId, IssuedTokens)> {
    let device_id: OwnedDeviceId = match device_id {
        Some(id) => {
            devices::check_device_id(id)?;
            id.into()
        }
        None => secrets::random_id(10).into(),
    };
    let access_token = secrets::new_token(ACCESS_TOKEN_PREFIX);
    let refresh_token = want_refresh.then(|| secrets::new_token(REFRESH_TOKEN_PREFIX));
    let lifetime_ms = hs.config.auth.access_token_lifetime_secs * 1000;
    let now = now_ms();
    let access_hash = secrets::token_hash(&access_token);
    let refresh_hash = refresh_token.as_deref().map(secrets::token_hash);
    hs.storage
        .create_session(&NewSession {
            user_id: user_id.as_str(),
            device_id: device_id.as_str(),
            initial_display_name,
            access_hash: &access_hash,
            access_expires_ts: want_refresh.then_some(now + lifetime_ms as i64),
            refresh_hash: refresh_hash.as_deref(),
            ip: client.ip.as_deref(),
            now_ms: now,
        })
        .await?;
    Ok((
        device_id,
        IssuedTokens {
            access_token,
            refresh_token,
            expires_in_ms: want_refresh.then_some(lifetime_ms),
        },
    ))
}
