//! Account data (global and per room) and stored filters.

use ruma::{RoomId, UserId};
use serde_json::Value as JsonValue;

use super::Requester;
use crate::{
    error::{Error, Result},
    server::Homeserver,
};

/// Types the server maintains itself; clients set them through their own endpoints.
const SERVER_CONTROLLED: &[&str] = &["m.fully_read", "m.push_rules"];
const MAX_TYPE_BYTES: usize = 255;
/// A filter names event types, rooms and senders; 64 KiB holds thousands.
const MAX_FILTER_BYTES: usize = 64 * 1024;

pub(crate) fn check_self(requester: &Requester, user_id: &UserId, what: &str) -> Result<()> {
    if requester.user_id != user_id {
        return Err(Error::Forbidden(format!(
            "cannot access another user's {what}"
        )));
    }
    Ok(())
}

fn room_key(room_id: Option<&RoomId>) -> &str {
    room_id.map(|r| r.as_str()).unwrap_or("")
}

/// Stored account data (`m.push_rules` is push's: `push::rules::global_account_data`).
pub async fn get(
    hs: &Homeserver,
    requester: &Requester,
    user_id: &UserId,
    room_id: Option<&RoomId>,
    data_type: &str,
) -> Result<JsonValue> {
    check_self(requester, user_id, "account data")?;
    hs.storage
        .account_data(user_id.as_str(), room_key(room_id), data_type)
        .await?
        .ok_or_else(|| Error::NotFound("account data not found".into()))
}

pub async fn set(
    hs: &Homeserver,
    requester: &Requester,
    user_id: &UserId,
    room_id: Option<&RoomId>,
    data_type: &str,
    content: &JsonValue,
) -> Result<()> {
    check_self(requester, user_id, "account data")?;
    if SERVER_CONTROLLED.contains(&data_type) {
        return Err(Error::ServerControlledAccountData);
    }
    if data_type.is_empty() || data_type.len() > MAX_TYPE_BYTES {
        return Err(Error::InvalidParam(
            "account data type must be 1 to 255 bytes".into(),
        ));
    }
    if !content.is_object() {
        return Err(Error::BadJson(
            "account data content must be a JSON object".into(),
        ));
    }
    store(hs, user_id, room_key(room_id), data_type, content).await
}

/// Writes a client's account data entry within the per-user limits (`[limits]`).
async fn store(
    hs: &Homeserver,
    user_id: &UserId,
    room: &str,
    data_type: &str,
    content: &JsonValue,
) -> Result<()> {
    let limits = &hs.config.limits;
    let size = serde_json::to_vec(content).map_or(usize::MAX, |v| v.len());
    if size > limits.max_account_data_size {
        return Err(Error::EventTooLarge(format!(
            "account data entries are at most {} bytes",
            limits.max_account_data_size
        )));
    }
    let stored = hs
        .storage
        .set_account_data(
            user_id.as_str(),
            room,
            data_type,
            content,
            Some(limits.max_account_data_bytes),
        )
        .await?;
    if !stored {
        return Err(Error::QuotaExceeded(format!(
            "at most {} bytes of account data per user",
            limits.max_account_data_bytes
        )));
    }
    Ok(())
}

pub async fn create_filter(
    hs: &Homeserver,
    requester: &Requester,
    user_id: &UserId,
    filter: &JsonValue,
) -> Result<String> {
    check_self(requester, user_id, "filters")?;
    let size = serde_json::to_vec(filter).map_or(usize::MAX, |v| v.len());
    if size > MAX_FILTER_BYTES {
        return Err(Error::EventTooLarge(format!(
            "filters are at most {MAX_FILTER_BYTES} bytes"
        )));
    }
    Ok(hs
        .storage
        .create_filter(user_id.as_str(), filter, hs.config.limits.max_filters)
        .await?
        .to_string())
}

pub async fn get_filter(
    hs: &Homeserver,
    requester: &Requester,
    user_id: &UserId,
    filter_id: &str,
) -> Result<JsonValue> {
    check_self(requester, user_id, "filters")?;
    let not_found = || Error::NotFound("filter not found".into());
    let id: i64 = filter_id.parse().map_err(|_| not_found())?;
    hs.storage
        .filter(user_id.as_str(), id)
        .await?
        .ok_or_else(not_found)
}

const MAX_TAG_BYTES: usize = 255;

/// Room tags live in the room's `m.tag` account data, as the spec lays it out.
pub async fn tags(
    hs: &Homeserver,
    requester: &Requester,
    user_id: &UserId,
    room_id: &RoomId,
) -> Result<JsonValue> {
    check_self(requester, user_id, "tags")?;
    let data = hs
        .storage
        .account_data(user_id.as_str(), room_id.as_str(), "m.tag")
        .await?;
    Ok(data
        .and_then(|d| d.get("tags").cloned())
        .unwrap_or_else(|| serde_json::json!({})))
}

pub async fn set_tag(
    hs: &Homeserver,
    requester: &Requester,
    user_id: &UserId,
    room_id: &RoomId,
    tag: &str,
    info: JsonValue,
) -> Result<()> {
    if tag.is_empty() || tag.len() > MAX_TAG_BYTES {
        return Err(Error::InvalidParam("tags are 1 to 255 bytes".into()));
    }
    let mut all = tags(hs, requester, user_id, room_id).await?;
    all[tag] = info;
    let content = serde_json::json!({ "tags": all });
    store(hs, user_id, room_id.as_str(), "m.tag", &content).await?;
    Ok(())
}

pub async fn delete_tag(
    hs: &Homeserver,
    requester: &Requester,
    user_id: &UserId,
    room_id: &RoomId,
    tag: &str,
) -> Result<()> {
    let mut all = tags(hs, requester, user_id, room_id).await?;
    if let Some(map) = all.as_object_mut() {
        map.remove(tag);
    }
    let content = serde_json::json!({ "tags": all });
    store(hs, user_id, room_id.as_str(), "m.tag", &content).await?;
    Ok(())
}
