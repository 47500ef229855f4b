//! A user's devices: list, look up, rename, delete (behind UIA).

use ruma::api::client::uiaa::AuthData;

use super::{
    Requester,
    uia::{self, UiaAction},
};
use crate::{
    error::{Error, Result},
    server::Homeserver,
    storage::devices::DeviceRow,
};

const MAX_DEVICE_ID_LEN: usize = 255;
const MAX_DISPLAY_NAME_LEN: usize = 256;

pub fn check_device_id(device_id: &str) -> Result<()> {
    if device_id.is_empty() || device_id.len() > MAX_DEVICE_ID_LEN {
        return Err(Error::InvalidParam(
            "device_id must be 1 to 255 bytes".into(),
        ));
    }
    Ok(())
}

pub async fn list(hs: &Homeserver, requester: &Requester) -> Result<Vec<DeviceRow>> {
    Ok(hs.storage.devices(requester.user_id.as_str()).await?)
}

pub async fn get(hs: &Homeserver, requester: &Requester, device_id: &str) -> Result<DeviceRow> {
    hs.storage
        .device(requester.user_id.as_str(), device_id)
        .await?
        .ok_or_else(|| Error::NotFound("device not found".into()))
}

pub async fn rename(
    hs: &Homeserver,
    requester: &Requester,
    device_id: &str,
    display_name: Option<&str>,
) -> Result<()> {
    if display_name.is_some_and(|n| n.chars().count() > MAX_DISPLAY_NAME_LEN) {
        return Err(Error::InvalidParam(
            "display_name is longer than 256 characters".into(),
        ));
    }
    if !hs
        .storage
        .rename_device(requester.user_id.as_str(), device_id, display_name)
        .await?
    {
        return Err(Error::NotFound("device not found".into()));
    }
    Ok(())
}

/// Deletes devices (and so their tokens) once the user has re-authenticated.
pub async fn delete(
    hs: &Homeserver,
    requester: &Requester,
    device_ids: &[String],
    auth: Option<&AuthData>,
) -> Result<()> {
    let mut sorted = device_ids.to_vec();
    sorted.sort();
    uia::check_operation(
        hs,
        UiaAction::DeleteDevices,
        Some(&requester.user_id),
        uia::password_flows(),
        auth,
        &serde_json::json!({ "delete_devices": sorted }),
    )
    .await?;
    hs.storage
        .delete_devices(requester.user_id.as_str(), device_ids)
        .await?;
    Ok(())
}

/// `DELETE /devices/{id}`: 404 for a device that does not exist, before asking for auth.
pub async fn delete_one(
    hs: &Homeserver,
    requester: &Requester,
    device_id: &str,
    auth: Option<&AuthData>,
) -> Result<()> {
    get(hs, requester, device_id).await?;
    delete(hs, requester, &[device_id.to_owned()], auth).await
}
