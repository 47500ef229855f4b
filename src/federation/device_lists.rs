//! Device lists across servers. Outbound: the device list EDUs queued when a local user's
//! devices change are filled in as they are sent, with the device as it is then.
//! Inbound: `m.device_list_update` and `m.signing_key_update` from a user's own server
//! keep the cached copy of their devices current; a gap in `prev_id` (or no copy yet)
//! resyncs it through `/user/devices`. Local users sharing a room with them see them in
//! `device_lists.changed`.

use ruma::{
    DeviceId, OwnedDeviceId, ServerName, UserId,
    api::federation::device::get_devices,
    api::federation::transactions::edu::{DeviceListUpdateContent, SigningKeyUpdateContent},
};
use serde_json::{Value as JsonValue, json};
use sqlx::types::Json;

use crate::{
    error::{Error, Result},
    server::{Homeserver, now_ms},
    storage::device_lists::{RemoteDevice, RemoteDeviceList},
};

/// The most devices kept for one remote user.
const MAX_REMOTE_DEVICES: usize = 1_000;

/// Fills in a queued device list EDU (which names only the user, the device and the
/// stream IDs) with the device's keys and name now, or `deleted`. Other EDUs pass as
/// they are.
pub async fn fill_edu(hs: &Homeserver, edu: &mut JsonValue) -> Result<()> {
    let kind = edu["edu_type"].as_str().unwrap_or_default().to_owned();
    if kind != "m.device_list_update" && kind != "m.signing_key_update" {
        return Ok(());
    }
    let content = &mut edu["content"];
    let user = UserId::parse(content["user_id"].as_str().unwrap_or_default())
        .map_err(|_| Error::Internal("a device list EDU without a user".into()))?;
    let list = crate::e2ee::keys::device_list(hs, &user).await?;
    if kind == "m.signing_key_update" {
        content["master_key"] = json!(list.master_key);
        content["self_signing_key"] = json!(list.self_signing_key);
        return Ok(());
    }
    let device = content["device_id"].as_str().unwrap_or_default().to_owned();
    match list
        .devices
        .into_iter()
        .find(|(id, _, _)| id.as_str() == device)
    {
        Some((_, name, keys)) => {
            content["keys"] = keys;
            if let Some(name) = name {
                content["device_display_name"] = json!(name);
            }
        }
        None => match hs.storage.device(user.as_str(), &device).await? {
            // A device without keys yet: its name only.
            Some(row) => {
                if let Some(name) = row.display_name {
                    content["device_display_name"] = json!(name);
                }
            }
            None => content["deleted"] = json!(true),
        },
    }
    Ok(())
}

/// Whether `origin` may tell us about `user`'s devices: its own user, sharing a room
/// with a local user (we keep no list of anyone else).
async fn check_sender(hs: &Homeserver, origin: &ServerName, user: &UserId) -> Result<()> {
    if user.server_name() != origin {
        return Err(Error::Forbidden(format!(
            "{origin} cannot speak for {user}"
        )));
    }
    if !hs
        .storage
        .shares_room_with_server(user.as_str(), hs.config.server_name().as_str())
        .await?
    {
        return Err(Error::Forbidden(format!("{user} shares no room with us")));
    }
    Ok(())
}

/// An `m.device_list_update` EDU.
pub async fn receive_update(
    hs: &Homeserver,
    origin: &ServerName,
    update: &DeviceListUpdateContent,
) -> Result<()> {
    check_sender(hs, origin, &update.user_id).await?;
    let keys = match &update.keys {
        Some(raw) => {
            let keys: JsonValue = serde_json::from_str(raw.json().get())
                .map_err(|e| Error::BadJson(format!("device keys: {e}")))?;
            check_device_keys(&keys, &update.user_id, &update.device_id)?;
            Some(keys)
        }
        None => None,
    };
    let device = RemoteDevice {
        device_id: update.device_id.to_string(),
        display_name: update.device_display_name.clone(),
        keys: keys.map(Json),
    };
    let prev: Vec<i64> = update.prev_id.iter().map(|p| i64::from(*p)).collect();
    let applied = hs
        .storage
        .apply_remote_device_update(
            update.user_id.as_str(),
            i64::from(update.stream_id),
            &prev,
            &device,
            update.deleted == Some(true),
        )
        .await?;
    if !applied {
        // A gap, or no copy yet: the cached copy goes, so nobody is served a stale one,
        // and the whole list is fetched now (briefly: else the next query does it).
        hs.storage
            .drop_remote_device_list(update.user_id.as_str())
            .await?;
        match tokio::time::timeout(RESYNC_WAIT, resync(hs, &update.user_id)).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => tracing::debug!(user = %update.user_id, "device list resync: {e}"),
            Err(_) => tracing::debug!(user = %update.user_id, "device list resync timed out"),
        }
    }
    Ok(())
}

/// How long an EDU's resync may hold up the rest of its transaction.
const RESYNC_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// An `m.signing_key_update` EDU: new master or self-signing keys.
pub async fn receive_signing_keys(
    hs: &Homeserver,
    origin: &ServerName,
    update: &SigningKeyUpdateContent,
) -> Result<()> {
    check_sender(hs, origin, &update.user_id).await?;
    let parse = |raw: &Option<ruma::serde::Raw<_>>| -> Result<Option<JsonValue>> {
        raw.as_ref()
            .map(|r: &ruma::serde::Raw<ruma::encryption::CrossSigningKey>| {
                let key: JsonValue = serde_json::from_str(r.json().get())
                    .map_err(|e| Error::BadJson(format!("signing key: {e}")))?;
                if key["user_id"] != update.user_id.as_str() {
                    return Err(Error::InvalidParam("a signing key of another user".into()));
                }
                Ok(key)
            })
            .transpose()
    };
    let master = parse(&update.master_key)?;
    let self_signing = parse(&update.self_signing_key)?;
    hs.storage
        .set_remote_signing_keys(
            update.user_id.as_str(),
            master.as_ref(),
            self_signing.as_ref(),
        )
        .await?;
    Ok(())
}

/// Device keys must not claim another user or device (what they do not say, clients
/// check: they verify the keys' signatures themselves).
pub(super) fn check_device_keys(keys: &JsonValue, user: &UserId, device: &DeviceId) -> Result<()> {
    let claims = |field: &str, wanted: &str| keys.get(field).is_some_and(|v| v != wanted);
    if !keys.is_object() || claims("user_id", user.as_str()) || claims("device_id", device.as_str())
    {
        return Err(Error::InvalidParam(format!(
            "device keys that are not {user}'s {device}"
        )));
    }
    Ok(())
}

/// Fetches another server's user's whole device list (`/user/devices`) and caches it.
pub async fn resync(hs: &Homeserver, user: &UserId) -> Result<RemoteDeviceList> {
    let federation = super::state(hs)?;
    let answer = federation
        .client
        .send(
            hs.keys.pair(),
            user.server_name(),
            get_devices::v1::Request::new(user.to_owned()),
        )
        .await
        .map_err(|e| Error::RemoteUnavailable(format!("{}: {e}", user.server_name())))?;
    if answer.user_id != user {
        return Err(Error::RemoteUnavailable(format!(
            "{} answered for another user",
            user.server_name()
        )));
    }
    let mut devices = Vec::new();
    for device in answer.devices.iter().take(MAX_REMOTE_DEVICES) {
        let Ok(keys) = serde_json::from_str::<JsonValue>(device.keys.json().get()) else {
            continue;
        };
        if check_device_keys(&keys, user, &device.device_id).is_err() {
            continue;
        }
        devices.push(RemoteDevice {
            device_id: device.device_id.to_string(),
            display_name: device.device_display_name.clone(),
            keys: Some(Json(keys)),
        });
    }
    let key_of = |raw: &Option<ruma::serde::Raw<ruma::encryption::CrossSigningKey>>| {
        raw.as_ref()
            .and_then(|r| serde_json::from_str::<JsonValue>(r.json().get()).ok())
            .filter(|k| k["user_id"] == user.as_str())
    };
    let list = RemoteDeviceList {
        stream_id: i64::from(answer.stream_id),
        master_key: key_of(&answer.master_key),
        self_signing_key: key_of(&answer.self_signing_key),
        devices,
    };
    // Only users sharing a room are kept: updates about anyone else never arrive.
    if hs
        .storage
        .shares_room_with_server(user.as_str(), hs.config.server_name().as_str())
        .await?
    {
        hs.storage
            .replace_remote_device_list(user.as_str(), &list, now_ms())
            .await?;
    }
    Ok(list)
}

/// The device IDs of a cached list, for the answer of a query.
pub fn device_ids(list: &RemoteDeviceList) -> Vec<OwnedDeviceId> {
    list.devices
        .iter()
        .map(|d| OwnedDeviceId::from(d.device_id.as_str()))
        .collect()
}
