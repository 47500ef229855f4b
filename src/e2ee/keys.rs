//! Device keys: `/keys/upload`, `/keys/query`, `/keys/claim`, `/keys/changes`, and the key
//! counts /sync reports.

use std::collections::{BTreeMap, HashMap};

use ruma::{OwnedDeviceId, OwnedUserId, UserId};
use serde_json::{Value as JsonValue, json};

use crate::{
    error::{Error, Result},
    server::Homeserver,
    storage::e2ee::UploadedKey,
    sync_token::SyncToken,
    users::Requester,
};

/// Keys uploaded by a device, as JSON (ruma's `Raw` values parsed once).
pub struct KeyUpload {
    pub device_keys: Option<JsonValue>,
    /// `<algorithm>:<key ID>` -> key.
    pub one_time_keys: Vec<(String, JsonValue)>,
    pub fallback_keys: Vec<(String, JsonValue)>,
}

fn split_key_id(full: &str) -> Result<(String, String)> {
    match full.split_once(':') {
        Some((alg, id)) if !alg.is_empty() && !id.is_empty() => Ok((alg.to_owned(), id.to_owned())),
        _ => Err(Error::InvalidParam(format!(
            "key ID {full} is not <algorithm>:<key ID>"
        ))),
    }
}

fn uploaded(keys: &[(String, JsonValue)]) -> Result<Vec<UploadedKey>> {
    keys.iter()
        .map(|(full, json)| {
            if !(json.is_object() || json.is_string()) {
                return Err(Error::BadJson(format!("key {full} must be an object")));
            }
            let (alg, id) = split_key_id(full)?;
            Ok((alg, id, json.clone()))
        })
        .collect()
}

/// Checks that uploaded device keys are this device's, and that they do not replace
/// identity keys the device already published (a device's identity is fixed; a new one
/// needs a new device).
async fn check_device_keys(
    hs: &Homeserver,
    user: &str,
    device: &str,
    keys: &JsonValue,
) -> Result<()> {
    if keys["user_id"] != user || keys["device_id"] != device {
        return Err(Error::InvalidParam(
            "device_keys must be for the user and device of the access token".into(),
        ));
    }
    if !keys["keys"].is_object() || !keys["algorithms"].is_array() {
        return Err(Error::BadJson(
            "device_keys needs `keys` and `algorithms`".into(),
        ));
    }
    if let Some((_, old)) = hs
        .storage
        .device_keys(user, &[device.to_owned()])
        .await?
        .into_iter()
        .next()
        && old["keys"] != keys["keys"]
    {
        return Err(Error::InvalidParam(
            "this device already has different identity keys".into(),
        ));
    }
    Ok(())
}

/// `POST /keys/upload` (and the keys of a dehydrated device): stores the keys of
/// `device` and returns its one-time key counts.
pub async fn upload_keys(
    hs: &Homeserver,
    user: &UserId,
    device: &str,
    upload: &KeyUpload,
) -> Result<BTreeMap<String, i64>> {
    let user = user.as_str();
    if let Some(keys) = &upload.device_keys {
        check_device_keys(hs, user, device, keys).await?;
    }
    let one_time = uploaded(&upload.one_time_keys)?;
    let fallback = uploaded(&upload.fallback_keys)?;
    if fallback
        .iter()
        .map(|k| &k.0)
        .collect::<std::collections::HashSet<_>>()
        .len()
        < fallback.len()
    {
        return Err(Error::InvalidParam(
            "at most one fallback key per algorithm".into(),
        ));
    }
    // A one-time key ID is used once: the same ID with different contents is refused.
    let ids: Vec<String> = upload.one_time_keys.iter().map(|k| k.0.clone()).collect();
    let stored: HashMap<String, JsonValue> = hs
        .storage
        .existing_one_time_keys(user, device, &ids)
        .await?
        .into_iter()
        .collect();
    for (full, json) in &upload.one_time_keys {
        if stored.get(full).is_some_and(|old| old != json) {
            return Err(Error::InvalidParam(format!(
                "one-time key {full} already exists with other contents"
            )));
        }
    }
    if let Some(keys) = &upload.device_keys {
        hs.storage.set_device_keys(user, device, keys).await?;
    }
    hs.storage
        .add_one_time_keys(user, device, &one_time)
        .await?;
    hs.storage
        .set_fallback_keys(user, device, &fallback)
        .await?;
    one_time_key_counts(hs, user, device).await
}

/// Unclaimed one-time keys per algorithm; `signed_curve25519` is always listed (clients
/// read its absence as "unknown", as Synapse found).
pub async fn one_time_key_counts(
    hs: &Homeserver,
    user: &str,
    device: &str,
) -> Result<BTreeMap<String, i64>> {
    let mut counts: BTreeMap<String, i64> = hs
        .storage
        .one_time_key_counts(user, device)
        .await?
        .into_iter()
        .collect();
    counts.entry("signed_curve25519".into()).or_insert(0);
    Ok(counts)
}

/// What `/keys/query` answers.
#[derive(Default)]
pub struct QueriedKeys {
    pub device_keys: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, JsonValue>>,
    pub master_keys: BTreeMap<OwnedUserId, JsonValue>,
    pub self_signing_keys: BTreeMap<OwnedUserId, JsonValue>,
    pub user_signing_keys: BTreeMap<OwnedUserId, JsonValue>,
    pub failures: BTreeMap<String, JsonValue>,
}

/// Adds stored signatures of `key` (`target` = device ID or public key) into its JSON:
/// the owner's, and the reader's own. Another user's signature (made with their
/// user-signing key) is that user's business: only they see it, as in Synapse.
fn merge_signatures(
    json: &mut JsonValue,
    user: &str,
    target: &str,
    signatures: &[crate::storage::e2ee::KeySignature],
    reader: &str,
) {
    for s in signatures.iter().filter(|s| {
        s.target_user == user
            && s.target_key == target
            && (s.signer_user == user || s.signer_user == reader)
    }) {
        if !json["signatures"].is_object() {
            json["signatures"] = json!({});
        }
        let by = &mut json["signatures"][&s.signer_user];
        if !by.is_object() {
            *by = json!({});
        }
        by[&s.signer_key_id] = json!(s.signature);
    }
}

/// `POST /keys/query` (and `/user/keys/query` for other servers, `reader` None): devices
/// and cross-signing keys of this server's users in `wanted` (others are the federation
/// layer's). A user's user-signing key is only shown to that user.
pub async fn query_local_keys(
    hs: &Homeserver,
    reader: Option<&UserId>,
    wanted: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
) -> Result<QueriedKeys> {
    let mut out = QueriedKeys::default();
    let mut local: Vec<String> = Vec::new();
    for user in wanted.keys() {
        if user.server_name() == hs.config.server_name() {
            local.push(user.to_string());
            out.device_keys.insert(user.clone(), BTreeMap::new());
        }
    }
    let reader = reader.map_or("", |r| r.as_str());
    let signatures = hs.storage.key_signatures(&local).await?;
    let (devices, cross) = hs.storage.keys_of_users(&local).await?;
    for (user, device_id, name, mut json) in devices {
        let Ok(user) = OwnedUserId::try_from(user) else {
            continue;
        };
        let asked = &wanted[&user];
        if !asked.is_empty() && !asked.iter().any(|d| d.as_str() == device_id) {
            continue;
        }
        merge_signatures(&mut json, user.as_str(), &device_id, &signatures, reader);
        // Always there, as Synapse serves it; the display name when the device has one.
        json["unsigned"] = match name {
            Some(name) => json!({ "device_display_name": name }),
            None => json!({}),
        };
        if let Some(found) = out.device_keys.get_mut(&user) {
            found.insert(OwnedDeviceId::from(device_id), json);
        }
    }
    for (user, usage, public_key, mut json) in cross {
        let Ok(user) = OwnedUserId::try_from(user) else {
            continue;
        };
        merge_signatures(&mut json, user.as_str(), &public_key, &signatures, reader);
        let into = match usage.as_str() {
            "master" => &mut out.master_keys,
            "self_signing" => &mut out.self_signing_keys,
            "user_signing" if user.as_str() == reader => &mut out.user_signing_keys,
            _ => continue,
        };
        into.insert(user, json);
    }
    Ok(out)
}

/// What `/keys/claim` answers: user -> device -> `<algorithm>:<key ID>` -> key.
pub type ClaimedKeys = BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, BTreeMap<String, JsonValue>>>;

/// A key wanted by a claim: (user, device, algorithm).
pub type KeyClaim = (OwnedUserId, OwnedDeviceId, String);

/// The first step of `/keys/claim` (and `/user/keys/claim`) for this server's users in
/// `wanted`: a one-time key per requested device while any is left. Returns what was
/// claimed and the devices that had none (for an appservice, then the fallback key).
pub async fn claim_one_time_keys(
    hs: &Homeserver,
    wanted: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
) -> Result<(ClaimedKeys, Vec<KeyClaim>)> {
    let mut claimed = ClaimedKeys::new();
    let mut missing = Vec::new();
    for (user, devices) in wanted {
        if user.server_name() != hs.config.server_name() {
            continue;
        }
        for (device, algorithm) in devices {
            match hs
                .storage
                .claim_one_time_key(user.as_str(), device.as_str(), algorithm)
                .await?
            {
                Some(key) => add_claimed(&mut claimed, user, device, key),
                None => missing.push((user.clone(), device.clone(), algorithm.clone())),
            }
        }
    }
    Ok((claimed, missing))
}

/// The last step of a claim: the fallback key of each device still without a key.
/// Devices with none are left out of the answer.
pub async fn claim_fallback_keys(
    hs: &Homeserver,
    claimed: &mut ClaimedKeys,
    missing: &[KeyClaim],
) -> Result<()> {
    for (user, device, algorithm) in missing {
        if let Some(key) = hs
            .storage
            .claim_fallback_key(user.as_str(), device.as_str(), algorithm)
            .await?
        {
            add_claimed(claimed, user, device, key);
        }
    }
    Ok(())
}

fn add_claimed(
    claimed: &mut ClaimedKeys,
    user: &OwnedUserId,
    device: &OwnedDeviceId,
    key: crate::storage::e2ee::ClaimedKey,
) {
    claimed
        .entry(user.clone())
        .or_default()
        .entry(device.clone())
        .or_default()
        .insert(format!("{}:{}", key.algorithm, key.key_id), key.key_json);
}

/// A local user's devices as other servers see them (`/user/devices`, and the device
/// list updates they are sent).
pub struct DeviceList {
    /// The stream_id of the last device list update sent about the user.
    pub stream_id: i64,
    /// (device ID, display name, keys)
    pub devices: Vec<(OwnedDeviceId, Option<String>, JsonValue)>,
    pub master_key: Option<JsonValue>,
    pub self_signing_key: Option<JsonValue>,
}

/// The devices with keys, and the master and self-signing keys, of a local user.
pub async fn device_list(hs: &Homeserver, user: &UserId) -> Result<DeviceList> {
    let stream_id = hs.storage.device_list_stream_id(user.as_str()).await?;
    let wanted = [(user.to_owned(), Vec::new())].into();
    let mut keys = query_local_keys(hs, None, &wanted).await?;
    let devices = hs.storage.devices(user.as_str()).await?;
    let name_of = |id: &OwnedDeviceId| {
        devices
            .iter()
            .find(|d| d.device_id == id.as_str())
            .and_then(|d| d.display_name.clone())
    };
    Ok(DeviceList {
        stream_id,
        devices: keys
            .device_keys
            .remove(user)
            .unwrap_or_default()
            .into_iter()
            .map(|(id, mut json)| {
                if let Some(map) = json.as_object_mut() {
                    map.remove("unsigned");
                }
                (id.clone(), name_of(&id), json)
            })
            .collect(),
        master_key: keys.master_keys.remove(user),
        self_signing_key: keys.self_signing_keys.remove(user),
    })
}

/// `GET /keys/changes`: users whose devices changed, or who stopped sharing a room,
/// between two sync tokens.
pub async fn key_changes(
    hs: &Homeserver,
    requester: &Requester,
    from: &str,
    to: &str,
) -> Result<(Vec<OwnedUserId>, Vec<OwnedUserId>)> {
    let from = SyncToken::parse(from)?.0;
    SyncToken::parse(to)?;
    let user = requester.user_id.as_str();
    let parse = |ids: Vec<String>| -> Vec<OwnedUserId> {
        ids.into_iter()
            .filter_map(|u| OwnedUserId::try_from(u).ok())
            .collect()
    };
    let changed = hs
        .storage
        .device_lists_changed(user, from.device_lists, from.events)
        .await?;
    let left = hs.storage.device_lists_left(user, from.events).await?;
    Ok((parse(changed), parse(left)))
}
