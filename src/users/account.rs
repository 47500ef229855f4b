//! The account itself: who am I, password change, deactivation, admin whois.

use ruma::{UserId, api::client::uiaa::AuthData};

use super::{
    Requester,
    uia::{self, UiaAction},
};
use crate::secrets;
use crate::{
    error::{Error, Result},
    server::Homeserver,
    storage::devices::DeviceRow,
};

pub async fn change_password(
    hs: &Homeserver,
    requester: &Requester,
    new_password: &str,
    logout_devices: bool,
    auth: Option<&AuthData>,
) -> Result<()> {
    check_new_password(new_password)?;
    uia::check(
        hs,
        UiaAction::ChangePassword,
        Some(&requester.user_id),
        uia::password_flows(),
        auth,
    )
    .await?;
    let hash = secrets::hash_password(new_password).await?;
    hs.storage
        .set_password_hash(requester.user_id.as_str(), &hash)
        .await?;
    // Other sessions' pushers go with the old password (as in Synapse), logged out or not.
    hs.storage
        .delete_pushers_of_other_devices(requester.user_id.as_str(), requester.device_id.as_str())
        .await?;
    if logout_devices {
        hs.storage
            .delete_other_devices(
                requester.user_id.as_str(),
                Some(requester.device_id.as_str()),
            )
            .await?;
    }
    Ok(())
}

fn check_new_password(new_password: &str) -> Result<()> {
    secrets::check_password_length(new_password)?;
    if new_password.is_empty() {
        return Err(Error::InvalidParam("new_password must not be empty".into()));
    }
    Ok(())
}

/// Password reset without a login: the email stage proves an address, whose account
/// gets the new password. Its sessions end unless `logout_devices` is false.
pub async fn reset_password(
    hs: &Homeserver,
    new_password: &str,
    logout_devices: bool,
    auth: Option<&AuthData>,
) -> Result<()> {
    check_new_password(new_password)?;
    let flows = vec![vec![ruma::api::client::uiaa::AuthType::EmailIdentity]];
    let proven = uia::check_proving(
        hs,
        UiaAction::ResetPassword,
        None,
        flows,
        auth,
        &serde_json::Value::Null,
    )
    .await?
    .ok_or_else(|| Error::ThreepidAuthFailed("no email address was confirmed".into()))?;
    let owner = hs
        .storage
        .threepid_owner(&proven.medium, &proven.address)
        .await?
        .ok_or_else(|| {
            Error::ThreepidNotFound("no account on this server has that email address".into())
        })?;
    let hash = secrets::hash_password(new_password).await?;
    hs.storage.set_password_hash(&owner, &hash).await?;
    hs.storage
        .delete_threepid_session(&proven.session_id)
        .await?;
    // Pushers go with the old password, as for a change.
    hs.storage
        .delete_pushers_of_other_devices(&owner, "")
        .await?;
    if logout_devices {
        hs.storage.delete_other_devices(&owner, None).await?;
    }
    Ok(())
}

/// Deactivates the requester's account, first unbinding its 3PIDs from identity servers.
/// Returns whether that unbinding succeeded.
pub async fn deactivate(
    hs: &Homeserver,
    requester: &Requester,
    erase: bool,
    id_server: Option<&str>,
    auth: Option<&AuthData>,
) -> Result<bool> {
    uia::check(
        hs,
        UiaAction::Deactivate,
        Some(&requester.user_id),
        uia::password_flows(),
        auth,
    )
    .await?;
    let unbound = super::threepid::unbind_all(hs, &requester.user_id, id_server).await?;
    hs.storage
        .deactivate_user(requester.user_id.as_str(), erase)
        .await?;
    Ok(unbound)
}

/// Admin whois: the user's devices with where they were last seen. Users may ask about
/// themselves; asking about others takes a server admin.
pub async fn whois(
    hs: &Homeserver,
    requester: &Requester,
    user_id: &UserId,
) -> Result<Vec<DeviceRow>> {
    if !requester.is_admin && requester.user_id != user_id {
        return Err(Error::Forbidden("you are not a server admin".into()));
    }
    if hs.storage.user(user_id.as_str()).await?.is_none() {
        return Err(Error::NotFound("user not found".into()));
    }
    Ok(hs.storage.devices(user_id.as_str()).await?)
}
