//! Application services as callers: an `as_token` acts as the appservice's sender, or,
//! with `user_id=`, as a user in its namespaces (with `device_id=`, as one of that user's
//! devices: MSC4190 / spec v1.17); registration and login of its users; the namespaces
//! it claims alone (`M_EXCLUSIVE` for everyone else).

use ruma::{OwnedUserId, UserId};

use super::Requester;
use crate::{
    config::Registration,
    error::{Error, Result},
    secrets,
    server::Homeserver,
};

/// Whom an appservice's request acts as (`user_id=`, `device_id=` in its query).
#[derive(Debug, Clone, Default)]
pub struct Masquerade {
    pub user_id: Option<String>,
    pub device_id: Option<String>,
}

/// The registration whose `as_token` this is.
pub fn by_token<'a>(hs: &'a Homeserver, token: &str) -> Option<&'a Registration> {
    hs.config
        .appservice_registrations
        .iter()
        .find(|r| secrets::constant_time_eq(r.as_token.as_bytes(), token.as_bytes()))
}

pub fn by_id<'a>(hs: &'a Homeserver, id: &str) -> Option<&'a Registration> {
    hs.config
        .appservice_registrations
        .iter()
        .find(|r| r.id == id)
}

/// The appservice's own user.
pub fn sender(hs: &Homeserver, registration: &Registration) -> Result<OwnedUserId> {
    UserId::parse_with_server_name(
        registration.sender_localpart.as_str(),
        hs.config.server_name(),
    )
    .map_err(|e| Error::Internal(format!("appservice sender: {e}")))
}

/// Whether the user ID is the appservice's: its sender or in its user namespaces.
pub fn owns_user(hs: &Homeserver, registration: &Registration, user_id: &UserId) -> bool {
    user_id.server_name() == hs.config.server_name()
        && registration.is_interested_in_user(user_id.as_str(), hs.config.server_name().as_str())
}

/// The appservice that claims this user ID alone, if any.
pub fn claimed_user<'a>(hs: &'a Homeserver, user_id: &str) -> Option<&'a Registration> {
    hs.config
        .appservice_registrations
        .iter()
        .find(|r| r.claims_user(user_id))
}

/// The appservice that claims this alias alone, if any.
pub fn claimed_alias<'a>(hs: &'a Homeserver, alias: &str) -> Option<&'a Registration> {
    hs.config
        .appservice_registrations
        .iter()
        .find(|r| r.claims_alias(alias))
}

/// Refuses a user ID another party's appservice claims (registration, not by that
/// appservice).
pub fn check_not_claimed(hs: &Homeserver, user_id: &UserId, by: Option<&str>) -> Result<()> {
    match claimed_user(hs, user_id.as_str()) {
        Some(r) if Some(r.id.as_str()) != by => Err(Error::Exclusive(
            "this user ID is reserved by an application service".into(),
        )),
        _ => Ok(()),
    }
}

/// The requester an appservice's request acts as.
pub async fn requester(
    hs: &Homeserver,
    registration: &Registration,
    masquerade: Masquerade,
) -> Result<Requester> {
    let user_id = match masquerade.user_id.as_deref() {
        Some(raw) => UserId::parse(raw)
            .map_err(|_| Error::InvalidParam(format!("user_id {raw:?} is not a user ID")))?,
        None => sender(hs, registration)?,
    };
    if !owns_user(hs, registration, &user_id) {
        return Err(Error::Forbidden(
            "the application service may not act as this user (not in its namespaces)".into(),
        ));
    }
    let row = hs
        .storage
        .user(user_id.as_str())
        .await?
        .filter(|u| !u.deactivated)
        .ok_or_else(|| {
            Error::Forbidden("the application service has not registered this user".into())
        })?;
    let device_id = match masquerade.device_id.as_deref() {
        Some(device) => {
            let known = hs
                .storage
                .devices(user_id.as_str())
                .await?
                .into_iter()
                .any(|d| d.device_id == device);
            if !known {
                return Err(Error::Forbidden(
                    "the application service tried to act as a device that does not exist".into(),
                ));
            }
            device.into()
        }
        // Without a device the request is the user's, from no device of theirs.
        None => "".into(),
    };
    Ok(Requester {
        user_id,
        device_id,
        is_admin: false,
        is_guest: false,
        is_suspended: row.suspended,
        is_locked: row.locked,
        appservice: Some(registration.id.clone()),
    })
}

/// At start: every appservice's sender account exists (it acts as it from its first
/// request).
pub async fn ensure_senders(hs: &Homeserver) -> Result<()> {
    for registration in &hs.config.appservice_registrations {
        let user_id = sender(hs, registration)?;
        if hs.storage.user(user_id.as_str()).await?.is_none() {
            super::register::create_account(hs, Some(user_id.clone()), None, false, false).await?;
            tracing::info!(appservice = %registration.id, %user_id, "created the appservice's sender");
        }
    }
    Ok(())
}
