//! Dehydrated devices (MSC3814, `org.matrix.msc3814.v1`): a device a client parks on the
//! server, with its keys and an encrypted pickle, so that messages sent while the user
//! has no device online can still be decrypted later. It has no access token; to-device
//! messages for it queue as for any device and are fetched, page by page, by the client
//! that rehydrates it.

use serde_json::Value as JsonValue;

use super::keys::{self, KeyUpload};
use crate::{
    error::{Error, Result},
    server::{Homeserver, now_ms},
    users::{Requester, devices::check_device_id},
};

/// Messages per page of `/dehydrated_device/{id}/events`.
const EVENTS_LIMIT: i64 = 100;

pub struct NewDehydratedDevice<'a> {
    pub device_id: &'a str,
    pub display_name: Option<&'a str>,
    pub device_data: &'a JsonValue,
    pub keys: KeyUpload,
}

/// `PUT /dehydrated_device`: replaces any previous dehydrated device of the user.
pub async fn put(
    hs: &Homeserver,
    requester: &Requester,
    new: &NewDehydratedDevice<'_>,
) -> Result<String> {
    check_device_id(new.device_id)?;
    if !new.device_data.is_object() {
        return Err(Error::BadJson("device_data must be an object".into()));
    }
    if new.keys.device_keys.is_none() {
        return Err(Error::MissingParam("device_keys is required".into()));
    }
    let user = &requester.user_id;
    if !hs
        .storage
        .replace_dehydrated_device(
            user.as_str(),
            new.device_id,
            new.display_name,
            new.device_data,
            now_ms(),
        )
        .await?
    {
        return Err(Error::InvalidParam(
            "device_id is one of the user's devices".into(),
        ));
    }
    if let Err(e) = keys::upload_keys(hs, user, new.device_id, &new.keys).await {
        // Bad keys: no half-made device stays behind.
        hs.storage.delete_dehydrated_device(user.as_str()).await?;
        return Err(e);
    }
    Ok(new.device_id.to_owned())
}

fn none() -> Error {
    Error::NotFound("no dehydrated device".into())
}

/// `GET /dehydrated_device`: (device ID, device data).
pub async fn get(hs: &Homeserver, requester: &Requester) -> Result<(String, JsonValue)> {
    hs.storage
        .dehydrated_device(requester.user_id.as_str())
        .await?
        .ok_or_else(none)
}

/// `DELETE /dehydrated_device`: the device ID that was deleted.
pub async fn delete(hs: &Homeserver, requester: &Requester) -> Result<String> {
    hs.storage
        .delete_dehydrated_device(requester.user_id.as_str())
        .await?
        .ok_or_else(none)
}

/// `POST /dehydrated_device/{id}/events`: the device's to-device messages after
/// `next_batch` (which acknowledges everything before it). Returns the events and the
/// token for the next page.
pub async fn events(
    hs: &Homeserver,
    requester: &Requester,
    device_id: &str,
    next_batch: Option<&str>,
) -> Result<(Vec<JsonValue>, String)> {
    let user = requester.user_id.as_str();
    match hs.storage.dehydrated_device(user).await? {
        Some((id, _)) if id == device_id => {}
        _ => {
            return Err(Error::Forbidden(
                "this is not the user's dehydrated device".into(),
            ));
        }
    }
    let after = match next_batch {
        None => 0,
        Some(t) => t
            .parse::<i64>()
            .ok()
            .filter(|n| *n >= 0)
            .ok_or_else(|| Error::InvalidParam("invalid next_batch".into()))?,
    };
    hs.storage.ack_to_device(user, device_id, after).await?;
    let rows = hs
        .storage
        .to_device_messages(user, device_id, after, i64::MAX, EVENTS_LIMIT)
        .await?;
    let next = rows.last().map_or(after, |r| r.stream_pos);
    let events = rows
        .into_iter()
        .map(|r| serde_json::json!({ "type": r.event_type, "sender": r.sender, "content": r.content }))
        .collect();
    Ok((events, next.to_string()))
}
