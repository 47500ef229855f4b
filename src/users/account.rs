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
    secrets::check_password_length(new_password)?;
    if new_password.is_empty() {
        return Err(Error::InvalidParam("new_password must not be empty".into()));
    }
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

pub async fn deactivate(
    hs: &Homeserver,
    requester: &Requester,
    erase: bool,
    auth: Option<&AuthData>,
) -> Result<()> {
    uia::check(
        hs,
        UiaAction::Deactivate,
        Some(&requester.user_id),
        uia::password_flows(),
        auth,
    )
    .await?;
    hs.storage
        .deactivate_user(requester.user_id.as_str(), erase)
        .await?;
    Ok(())
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
