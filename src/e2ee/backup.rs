//! Server-side key backup (`/room_keys`): versions of a user's backup, each holding room
//! keys the client encrypted for it. Writes go to the current (newest) version only; a
//! key replaces a stored one only when it is better, by the spec's order: verified over
//! unverified, then the lower first message index, then the fewer forwards.

use std::collections::HashMap;

use serde_json::{Value as JsonValue, json};

use crate::{
    error::{Error, Result},
    server::Homeserver,
    storage::backup::{BackupKeyRow, BackupVersionRow},
    users::Requester,
};

/// A backup version as the endpoints describe it.
pub struct BackupInfo {
    pub version: String,
    pub algorithm: JsonValue,
    pub count: i64,
    pub etag: String,
}

fn info(row: BackupVersionRow) -> BackupInfo {
    BackupInfo {
        version: row.version.to_string(),
        algorithm: json!({ "algorithm": row.algorithm, "auth_data": row.auth_data }),
        count: row.count,
        etag: row.etag.to_string(),
    }
}

fn unknown_version() -> Error {
    Error::NotFound("unknown backup version".into())
}

fn parse_version(version: &str) -> Result<i64> {
    version.parse::<i64>().map_err(|_| unknown_version())
}

/// `{algorithm, auth_data}` of a create or update.
fn algorithm_parts(algorithm: &JsonValue) -> Result<(&str, &JsonValue)> {
    let name = algorithm["algorithm"]
        .as_str()
        .filter(|a| !a.is_empty())
        .ok_or_else(|| Error::BadJson("`algorithm` is required".into()))?;
    let auth_data = &algorithm["auth_data"];
    // An object per the spec; older clients (and sytest) send an opaque string, which
    // Synapse keeps as it is.
    if !(auth_data.is_object() || auth_data.is_string()) {
        return Err(Error::BadJson("`auth_data` must be an object".into()));
    }
    Ok((name, auth_data))
}

async fn version_row(
    hs: &Homeserver,
    requester: &Requester,
    version: &str,
) -> Result<BackupVersionRow> {
    hs.storage
        .backup_version(requester.user_id.as_str(), Some(parse_version(version)?))
        .await?
        .ok_or_else(unknown_version)
}

/// `POST /room_keys/version`.
pub async fn create_version(
    hs: &Homeserver,
    requester: &Requester,
    algorithm: &JsonValue,
) -> Result<String> {
    let (name, auth_data) = algorithm_parts(algorithm)?;
    let v = hs
        .storage
        .create_backup_version(requester.user_id.as_str(), name, auth_data)
        .await?;
    Ok(v.to_string())
}

/// `GET /room_keys/version[/{version}]`.
pub async fn get_version(
    hs: &Homeserver,
    requester: &Requester,
    version: Option<&str>,
) -> Result<BackupInfo> {
    match version {
        Some(v) => version_row(hs, requester, v).await.map(info),
        None => hs
            .storage
            .backup_version(requester.user_id.as_str(), None)
            .await?
            .map(info)
            .ok_or_else(|| Error::NotFound("no backup version".into())),
    }
}

/// `PUT /room_keys/version/{version}`: new auth data; the algorithm cannot change.
pub async fn update_version(
    hs: &Homeserver,
    requester: &Requester,
    version: &str,
    algorithm: &JsonValue,
) -> Result<()> {
    let row = version_row(hs, requester, version).await?;
    if let Some(named) = algorithm.get("version")
        && named.as_str() != Some(version)
    {
        return Err(Error::InvalidParam(
            "the version in the body does not match the path".into(),
        ));
    }
    let (name, auth_data) = algorithm_parts(algorithm)?;
    if name != row.algorithm {
        return Err(Error::InvalidParam(
            "a backup version's algorithm cannot change".into(),
        ));
    }
    hs.storage
        .update_backup_auth_data(requester.user_id.as_str(), row.version, auth_data)
        .await?;
    Ok(())
}

/// `DELETE /room_keys/version/{version}`: the version and its keys.
pub async fn delete_version(hs: &Homeserver, requester: &Requester, version: &str) -> Result<()> {
    if hs
        .storage
        .delete_backup_version(requester.user_id.as_str(), parse_version(version)?)
        .await?
    {
        Ok(())
    } else {
        Err(unknown_version())
    }
}

/// A key to back up: room, session and its KeyBackupData JSON.
pub struct KeyToBackUp {
    pub room_id: String,
    pub session_id: String,
    pub data: JsonValue,
}

fn backup_row(k: &KeyToBackUp) -> Result<BackupKeyRow> {
    let number = |field: &str| {
        k.data[field]
            .as_i64()
            .filter(|n| *n >= 0)
            .ok_or_else(|| Error::BadJson(format!("{field} must be a non-negative integer")))
    };
    let is_verified = k.data["is_verified"]
        .as_bool()
        .ok_or_else(|| Error::BadJson("is_verified must be a boolean".into()))?;
    // An object per the spec; a string in older clients, kept as it is (as in Synapse).
    if !(k.data["session_data"].is_object() || k.data["session_data"].is_string()) {
        return Err(Error::BadJson("session_data must be an object".into()));
    }
    Ok(BackupKeyRow {
        room_id: k.room_id.clone(),
        session_id: k.session_id.clone(),
        first_message_index: number("first_message_index")?,
        forwarded_count: number("forwarded_count")?,
        is_verified,
        session_data: k.data["session_data"].clone(),
    })
}

/// Whether `new` should replace `old` (the spec's order; ties keep the old one).
fn better(new: &BackupKeyRow, old: &BackupKeyRow) -> bool {
    if new.is_verified != old.is_verified {
        return new.is_verified;
    }
    if new.first_message_index != old.first_message_index {
        return new.first_message_index < old.first_message_index;
    }
    new.forwarded_count < old.forwarded_count
}

/// `PUT /room_keys/keys[/{roomId}[/{sessionId}]]`: only into the current version.
/// Returns (count, etag) after.
pub async fn put_keys(
    hs: &Homeserver,
    requester: &Requester,
    version: &str,
    keys: &[KeyToBackUp],
) -> Result<(i64, String)> {
    let user = requester.user_id.as_str();
    let current = hs
        .storage
        .backup_version(user, None)
        .await?
        .ok_or_else(unknown_version)?;
    if version.parse::<i64>().ok() != Some(current.version) {
        return Err(Error::WrongRoomKeysVersion {
            error: "this is not the current backup version".into(),
            current_version: Some(current.version.to_string()),
        });
    }
    let rows: Vec<BackupKeyRow> = keys.iter().map(backup_row).collect::<Result<_>>()?;
    let single_room = match keys {
        [one, rest @ ..] if rest.iter().all(|k| k.room_id == one.room_id) => {
            Some(one.room_id.as_str())
        }
        _ => None,
    };
    let stored: HashMap<(String, String), BackupKeyRow> = hs
        .storage
        .backup_keys(user, current.version, single_room, None)
        .await?
        .into_iter()
        .map(|k| ((k.room_id.clone(), k.session_id.clone()), k))
        .collect();
    let mut chosen: HashMap<(String, String), BackupKeyRow> = HashMap::new();
    for row in rows {
        let key = (row.room_id.clone(), row.session_id.clone());
        let beats = |other: Option<&BackupKeyRow>| other.is_none_or(|o| better(&row, o));
        if beats(stored.get(&key)) && beats(chosen.get(&key)) {
            chosen.insert(key, row);
        }
    }
    let chosen: Vec<BackupKeyRow> = chosen.into_values().collect();
    hs.storage
        .put_backup_keys(user, current.version, &chosen)
        .await?;
    let after = version_row(hs, requester, version).await?;
    Ok((after.count, after.etag.to_string()))
}

/// `GET /room_keys/keys[/{roomId}[/{sessionId}]]` of any existing version. A single
/// session that is not there is 404.
pub async fn get_keys(
    hs: &Homeserver,
    requester: &Requester,
    version: &str,
    room_id: Option<&str>,
    session_id: Option<&str>,
) -> Result<Vec<(String, String, JsonValue)>> {
    let row = version_row(hs, requester, version).await?;
    let keys = hs
        .storage
        .backup_keys(requester.user_id.as_str(), row.version, room_id, session_id)
        .await?;
    if session_id.is_some() && keys.is_empty() {
        return Err(Error::NotFound("no key for this session".into()));
    }
    Ok(keys
        .into_iter()
        .map(|k| {
            let data = json!({
                "first_message_index": k.first_message_index,
                "forwarded_count": k.forwarded_count,
                "is_verified": k.is_verified,
                "session_data": k.session_data,
            });
            (k.room_id, k.session_id, data)
        })
        .collect())
}

/// `DELETE /room_keys/keys[/{roomId}[/{sessionId}]]`. Returns (count, etag) after.
pub async fn delete_keys(
    hs: &Homeserver,
    requester: &Requester,
    version: &str,
    room_id: Option<&str>,
    session_id: Option<&str>,
) -> Result<(i64, String)> {
    let row = version_row(hs, requester, version).await?;
    hs.storage
        .delete_backup_keys(requester.user_id.as_str(), row.version, room_id, session_id)
        .await?;
    let after = version_row(hs, requester, version).await?;
    Ok((after.count, after.etag.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(verified: bool, index: i64, forwards: i64) -> BackupKeyRow {
        BackupKeyRow {
            room_id: "!r".into(),
            session_id: "s".into(),
            first_message_index: index,
            forwarded_count: forwards,
            is_verified: verified,
            session_data: json!({}),
        }
    }

    #[test]
    fn replacement_order() {
        // Verified wins over everything else.
        assert!(better(&key(true, 9, 9), &key(false, 0, 0)));
        assert!(!better(&key(false, 0, 0), &key(true, 9, 9)));
        // Then the lower first message index, then fewer forwards.
        assert!(better(&key(false, 1, 5), &key(false, 2, 0)));
        assert!(!better(&key(false, 3, 0), &key(false, 2, 5)));
        assert!(better(&key(false, 2, 0), &key(false, 2, 1)));
        // A tie keeps what is stored.
        assert!(!better(&key(true, 2, 1), &key(true, 2, 1)));
    }
}
