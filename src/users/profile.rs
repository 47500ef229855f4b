//! Profiles: displayname, avatar_url, m.tz and custom fields, one row each.

use ruma::UserId;
use serde_json::Value as JsonValue;

use super::Requester;
use crate::{
    error::{Error, Result},
    server::Homeserver,
};

/// The spec caps a whole profile at 64 KiB.
const MAX_PROFILE_BYTES: i64 = 64 * 1024;
const MAX_FIELD_NAME_BYTES: usize = 255;
const MAX_DISPLAYNAME_CHARS: usize = 256;
const MAX_AVATAR_URL_BYTES: usize = 1000;

async fn existing_user(hs: &Homeserver, user_id: &UserId) -> Result<()> {
    match hs.storage.user(user_id.as_str()).await? {
        Some(u) if !u.deactivated => Ok(()),
        _ => Err(Error::NotFound("profile not found".into())),
    }
}

pub async fn profile(hs: &Homeserver, user_id: &UserId) -> Result<Vec<(String, JsonValue)>> {
    existing_user(hs, user_id).await?;
    Ok(hs.storage.profile(user_id.as_str()).await?)
}

/// One field of a profile. An unset `displayname` or `avatar_url` is `None` (answered as
/// `200 {}`, as Synapse does); any other unset field is not found.
pub async fn field(hs: &Homeserver, user_id: &UserId, field: &str) -> Result<Option<JsonValue>> {
    existing_user(hs, user_id).await?;
    match hs.storage.profile_field(user_id.as_str(), field).await? {
        Some(value) => Ok(Some(value)),
        None if matches!(field, "displayname" | "avatar_url") => Ok(None),
        None => Err(Error::NotFound(format!("profile has no field {field:?}"))),
    }
}

fn check_may_edit(requester: &Requester, user_id: &UserId) -> Result<()> {
    if requester.user_id != user_id {
        return Err(Error::Forbidden(
            "cannot change another user's profile".into(),
        ));
    }
    Ok(())
}

pub async fn set_field(
    hs: &Homeserver,
    requester: &Requester,
    user_id: &UserId,
    field: &str,
    value: &JsonValue,
) -> Result<()> {
    check_may_edit(requester, user_id)?;
    if field.is_empty() || field.len() > MAX_FIELD_NAME_BYTES {
        return Err(Error::BadJson(
            "profile field names are 1 to 255 bytes".into(),
        ));
    }
    match field {
        "displayname" => match value {
            JsonValue::String(s) if s.chars().count() <= MAX_DISPLAYNAME_CHARS => {}
            JsonValue::String(_) => {
                return Err(Error::InvalidParam(
                    "displayname is longer than 256 characters".into(),
                ));
            }
            _ => return Err(Error::BadJson("displayname must be a string".into())),
        },
        // Any string, as Synapse takes it (clients only load mxc:// ones).
        "avatar_url" => match value {
            JsonValue::String(s) if s.len() <= MAX_AVATAR_URL_BYTES => {}
            JsonValue::String(_) => {
                return Err(Error::InvalidParam(format!(
                    "avatar_url is longer than {MAX_AVATAR_URL_BYTES} bytes"
                )));
            }
            _ => return Err(Error::BadJson("avatar_url must be a string".into())),
        },
        "m.tz" if !value.is_string() => return Err(Error::BadJson("m.tz must be a string".into())),
        _ => {}
    }
    let size = serde_json::to_string(value).map(|s| s.len()).unwrap_or(0) as i64;
    if hs
        .storage
        .profile_size_with(user_id.as_str(), field, size)
        .await?
        > MAX_PROFILE_BYTES
    {
        return Err(Error::TooLargeField("profile would exceed 64 KiB".into()));
    }
    hs.storage
        .set_profile_field(user_id.as_str(), field, value)
        .await?;
    Ok(())
}

pub async fn delete_field(
    hs: &Homeserver,
    requester: &Requester,
    user_id: &UserId,
    field: &str,
) -> Result<()> {
    check_may_edit(requester, user_id)?;
    hs.storage
        .delete_profile_field(user_id.as_str(), field)
        .await?;
    Ok(())
}
