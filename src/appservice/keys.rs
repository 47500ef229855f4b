//! Keys of this server's users for `/keys/query` and `/keys/claim` (the client's and
//! other servers'), with the appservice asked for its users' keys when the admin turns
//! it on: bridges that keep their users' keys themselves answer one-time key claims the
//! homeserver has no key for (MSC3983, `[appservices] forward_key_claims`) and key
//! queries, their answer taking precedence device by device (MSC3984,
//! `forward_key_queries`). Only users of an exclusive namespace are asked about: exactly
//! one appservice answers for them. An appservice that fails or times out counts as
//! having nothing; one that does not know the endpoint is left alone for a while.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::{Duration, Instant},
};

use futures_util::future::join_all;
use ruma::{OwnedDeviceId, OwnedUserId, UserId};
use serde_json::{Value as JsonValue, json};

use super::{client, read_json_capped};
use crate::{
    config::Registration,
    e2ee::keys::{self as stored, ClaimedKeys, KeyClaim, QueriedKeys},
    error::{Error, Result},
    server::Homeserver,
    users::appservice as registry,
};

/// Longest wait for an appservice's keys: the client's request waits on it.
const KEY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long an appservice that does not know a key endpoint is not asked again.
const UNKNOWN_ROUTE_PAUSE: Duration = Duration::from_secs(300);

const CLAIM_PATH: &str = "/_matrix/app/unstable/org.matrix.msc3983/keys/claim";
const QUERY_PATH: &str = "/_matrix/app/unstable/org.matrix.msc3984/keys/query";

/// (appservice ID, path) -> when the appservice answered that it does not know it.
#[derive(Default)]
struct UnknownRoutes(Mutex<HashMap<(String, &'static str), Instant>>);

/// `/keys/query` for this server's users: what is stored, with the appservices' answers
/// for their users over it.
pub async fn query_local_keys(
    hs: &Homeserver,
    reader: Option<&UserId>,
    wanted: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
) -> Result<QueriedKeys> {
    let mut out = stored::query_local_keys(hs, reader, wanted).await?;
    if !hs.config.appservices.forward_key_queries {
        return Ok(out);
    }
    let groups = by_appservice(hs, wanted.iter().map(|(u, d)| (u, d.clone())));
    let asked = groups.into_iter().map(|(registration, users)| async move {
        let body = json!(users);
        let answer = ask(hs, registration, QUERY_PATH, &body).await;
        (users, answer)
    });
    for (users, answer) in join_all(asked).await {
        if let Some(answer) = answer {
            merge_queried(&mut out, &users, reader, &answer);
        }
    }
    Ok(out)
}

/// The appservice's answer over the stored keys, for the users (and devices) it was
/// asked about only.
fn merge_queried(
    out: &mut QueriedKeys,
    users: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    reader: Option<&UserId>,
    answer: &JsonValue,
) {
    for (user, devices) in users {
        if let Some(found) = answer["device_keys"][user.as_str()].as_object() {
            for (device, keys) in found {
                let asked = devices.is_empty() || devices.iter().any(|d| d.as_str() == device);
                let consistent = keys["user_id"] == user.as_str() && keys["device_id"] == *device;
                if asked && consistent {
                    out.device_keys
                        .entry(user.clone())
                        .or_default()
                        .insert(OwnedDeviceId::from(device.as_str()), keys.clone());
                }
            }
        }
        let kinds = [
            ("master_keys", &mut out.master_keys),
            ("self_signing_keys", &mut out.self_signing_keys),
        ];
        for (field, into) in kinds {
            let key = &answer[field][user.as_str()];
            if key.is_object() && key["user_id"] == user.as_str() {
                into.insert(user.clone(), key.clone());
            }
        }
        // A user-signing key is only ever shown to its owner.
        let key = &answer["user_signing_keys"][user.as_str()];
        if reader == Some(user.as_ref()) && key.is_object() && key["user_id"] == user.as_str() {
            out.user_signing_keys.insert(user.clone(), key.clone());
        }
    }
}

/// `/keys/claim` for this server's users: a stored one-time key; else, for an
/// appservice's users, one from the appservice; else the fallback key.
pub async fn claim_local_keys(
    hs: &Homeserver,
    wanted: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
) -> Result<ClaimedKeys> {
    let (mut claimed, mut missing) = stored::claim_one_time_keys(hs, wanted).await?;
    if hs.config.appservices.forward_key_claims && !missing.is_empty() {
        missing = claim_from_appservices(hs, &mut claimed, missing).await;
    }
    stored::claim_fallback_keys(hs, &mut claimed, &missing).await?;
    Ok(claimed)
}

/// Asks the appservices for the missing keys of their users; returns those still missing.
async fn claim_from_appservices(
    hs: &Homeserver,
    claimed: &mut ClaimedKeys,
    missing: Vec<KeyClaim>,
) -> Vec<KeyClaim> {
    let mut groups: HashMap<&str, (&Registration, Vec<KeyClaim>)> = HashMap::new();
    let mut still_missing = Vec::new();
    for claim in missing {
        match claiming_appservice(hs, &claim.0) {
            Some(registration) => groups
                .entry(registration.id.as_str())
                .or_insert_with(|| (registration, Vec::new()))
                .1
                .push(claim),
            None => still_missing.push(claim),
        }
    }
    let asked = groups
        .into_values()
        .map(|(registration, claims)| async move {
            let mut body: BTreeMap<&str, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
            for (user, device, algorithm) in &claims {
                body.entry(user.as_str())
                    .or_default()
                    .entry(device.as_str())
                    .or_default()
                    .push(algorithm.as_str());
            }
            let answer = ask(hs, registration, CLAIM_PATH, &json!(body)).await;
            (claims, answer)
        });
    for (claims, answer) in join_all(asked).await {
        for (user, device, algorithm) in claims {
            let key = answer.as_ref().and_then(|a| {
                a[user.as_str()][device.as_str()]
                    .as_object()?
                    .iter()
                    .find(|(id, key)| {
                        id.strip_prefix(algorithm.as_str())
                            .is_some_and(|rest| rest.len() > 1 && rest.starts_with(':'))
                            && (key.is_object() || key.is_string())
                    })
                    .map(|(id, key)| (id.clone(), key.clone()))
            });
            match key {
                Some((id, key)) => {
                    claimed
                        .entry(user)
                        .or_default()
                        .entry(device)
                        .or_default()
                        .insert(id, key);
                }
                None => still_missing.push((user, device, algorithm)),
            }
        }
    }
    still_missing
}

/// The appservice with a URL that claims this local user alone.
fn claiming_appservice<'a>(hs: &'a Homeserver, user: &UserId) -> Option<&'a Registration> {
    if user.server_name() != hs.config.server_name() {
        return None;
    }
    registry::claimed_user(hs, user.as_str()).filter(|r| r.url.is_some())
}

/// The wanted users, grouped by the appservice that claims them.
fn by_appservice<'a, T>(
    hs: &'a Homeserver,
    wanted: impl Iterator<Item = (&'a OwnedUserId, T)>,
) -> Vec<(&'a Registration, BTreeMap<OwnedUserId, T>)> {
    let mut groups: HashMap<&str, (&Registration, BTreeMap<OwnedUserId, T>)> = HashMap::new();
    for (user, value) in wanted {
        if let Some(registration) = claiming_appservice(hs, user) {
            groups
                .entry(registration.id.as_str())
                .or_insert_with(|| (registration, BTreeMap::new()))
                .1
                .insert(user.clone(), value);
        }
    }
    groups.into_values().collect()
}

/// POSTs `body` to the appservice; its JSON answer, or None when it failed, timed out or
/// does not know the endpoint (then it is not asked again for a while).
async fn ask(
    hs: &Homeserver,
    registration: &Registration,
    path: &'static str,
    body: &JsonValue,
) -> Option<JsonValue> {
    let unknown = hs
        .extensions
        .get_or_try_init(|| Ok::<_, Error>(UnknownRoutes::default()))
        .ok()?;
    let key = (registration.id.clone(), path);
    if let Some(since) = unknown
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key)
        && since.elapsed() < UNKNOWN_ROUTE_PAUSE
    {
        return None;
    }
    let url = registration.url.as_deref()?;
    let sent = client(hs)
        .ok()?
        .0
        .post(format!("{url}{path}"))
        .bearer_auth(&registration.hs_token)
        .timeout(KEY_TIMEOUT)
        .json(body)
        .send()
        .await;
    let response = match sent {
        Ok(response) => response,
        Err(e) => {
            tracing::info!(appservice = %registration.id, "{path}: {e}");
            return None;
        }
    };
    let status = response.status().as_u16();
    if status == 404 || status == 405 {
        // The spec's answer to an unknown route (M_UNRECOGNIZED), or a plain 404.
        unknown
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(key, Instant::now());
        return None;
    }
    if !(200..300).contains(&status) {
        tracing::info!(appservice = %registration.id, "{path}: answered {status}");
        return None;
    }
    match read_json_capped(registration, response).await {
        Ok(answer) if answer.is_object() => Some(answer),
        Ok(_) => None,
        Err(e) => {
            tracing::info!(appservice = %registration.id, "{path}: {e}");
            None
        }
    }
}
