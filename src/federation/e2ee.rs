//! The client's `/keys/query` and `/keys/claim` for users of other servers: each server
//! asked in parallel within the request's timeout, a server that fails listed in
//! `failures`. Queried device lists of users sharing a room come from the cached copy
//! (fetched through `/user/devices` when there is none); anyone else's are asked with
//! `/user/keys/query`.

use std::{collections::BTreeMap, time::Duration};

use futures_util::future::join_all;
use ruma::{
    OneTimeKeyAlgorithm, OwnedDeviceId, OwnedServerName, OwnedUserId, UserId,
    api::federation::keys::{claim_keys, get_keys},
};
use serde_json::{Value as JsonValue, json};

use crate::{
    e2ee::keys::{ClaimedKeys, QueriedKeys},
    error::{Error, Result},
    server::Homeserver,
    users::Requester,
};

/// The longest a client's query waits for other servers, whatever it asks.
const MAX_TIMEOUT: Duration = Duration::from_secs(30);
/// Servers asked at once by one query.
const MAX_SERVERS: usize = 100;

fn by_server<T: Clone>(
    hs: &Homeserver,
    wanted: &BTreeMap<OwnedUserId, T>,
) -> BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, T>> {
    let mut out: BTreeMap<OwnedServerName, BTreeMap<OwnedUserId, T>> = BTreeMap::new();
    for (user, v) in wanted {
        if user.server_name() != hs.config.server_name() {
            out.entry(user.server_name().to_owned())
                .or_default()
                .insert(user.clone(), v.clone());
        }
    }
    out
}

fn failure(message: impl std::fmt::Display) -> JsonValue {
    json!({ "status": 503, "message": message.to_string() })
}

/// Asks each server of `wanted`'s other-server users (at most `MAX_SERVERS`), all at
/// once, each within the timeout; what each answered.
async fn ask_each_server<T, R, F, Fut>(
    hs: &Homeserver,
    wanted: &BTreeMap<OwnedUserId, T>,
    timeout: Option<Duration>,
    ask: F,
) -> Vec<(OwnedServerName, Result<R>)>
where
    T: Clone,
    F: Fn(OwnedServerName, BTreeMap<OwnedUserId, T>) -> Fut,
    Fut: std::future::Future<Output = Result<R>>,
{
    let timeout = timeout.unwrap_or(Duration::from_secs(10)).min(MAX_TIMEOUT);
    let asked = by_server(hs, wanted)
        .into_iter()
        .take(MAX_SERVERS)
        .map(|(server, users)| {
            let answer = tokio::time::timeout(timeout, ask(server.clone(), users));
            async move {
                let answer = answer
                    .await
                    .unwrap_or_else(|_| Err(Error::RemoteUnavailable("timed out".into())));
                (server, answer)
            }
        });
    join_all(asked).await
}

/// `POST /keys/query`: local users from storage, others from their servers.
pub async fn query_keys(
    hs: &Homeserver,
    requester: &Requester,
    wanted: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
    timeout: Option<Duration>,
) -> Result<QueriedKeys> {
    let mut out =
        crate::appservice::keys::query_local_keys(hs, Some(&requester.user_id), wanted).await?;
    let answers = ask_each_server(hs, wanted, timeout, |_, users| async move {
        remote_keys(hs, &users).await
    })
    .await;
    for (server, answer) in answers {
        match answer {
            Ok(found) => {
                out.device_keys.extend(found.device_keys);
                out.master_keys.extend(found.master_keys);
                out.self_signing_keys.extend(found.self_signing_keys);
            }
            Err(e) => {
                out.failures.insert(server.to_string(), failure(e));
            }
        }
    }
    Ok(out)
}

/// The keys of one server's users.
async fn remote_keys(
    hs: &Homeserver,
    users: &BTreeMap<OwnedUserId, Vec<OwnedDeviceId>>,
) -> Result<QueriedKeys> {
    let mut out = QueriedKeys::default();
    let mut ask: BTreeMap<OwnedUserId, Vec<OwnedDeviceId>> = BTreeMap::new();
    let local_server = hs.config.server_name().as_str();
    for (user, devices) in users {
        if !hs
            .storage
            .shares_room_with_server(user.as_str(), local_server)
            .await?
        {
            ask.insert(user.clone(), devices.clone());
            continue;
        }
        let list = match hs.storage.remote_device_list(user.as_str()).await? {
            Some(list) => list,
            None => super::device_lists::resync(hs, user).await?,
        };
        add_cached(&mut out, user, devices, &list);
    }
    if ask.is_empty() {
        return Ok(out);
    }
    let server = ask.keys().next().map(|u| u.server_name().to_owned());
    let Some(server) = server else {
        return Ok(out);
    };
    let federation = super::state(hs)?;
    let answer = federation
        .client
        .send(
            hs.keys.pair(),
            &server,
            get_keys::v1::Request::new(ask.clone()),
        )
        .await
        .map_err(|e| Error::RemoteUnavailable(e.to_string()))?;
    // Only what was asked about, and no keys that claim another user or device.
    for (user, devices) in answer.device_keys {
        if !ask.contains_key(&user) {
            continue;
        }
        let mut kept = BTreeMap::new();
        for (device, raw) in devices {
            if let Ok(keys) = serde_json::from_str::<JsonValue>(raw.json().get())
                && super::device_lists::check_device_keys(&keys, &user, &device).is_ok()
            {
                kept.insert(device, keys);
            }
        }
        out.device_keys.insert(user, kept);
    }
    for (answered, into) in [
        (answer.master_keys, &mut out.master_keys),
        (answer.self_signing_keys, &mut out.self_signing_keys),
    ] {
        for (user, raw) in answered {
            if let Ok(key) = serde_json::from_str::<JsonValue>(raw.json().get())
                && ask.contains_key(&user)
                && key["user_id"] == user.as_str()
            {
                into.insert(user, key);
            }
        }
    }
    Ok(out)
}

/// Adds a cached device list to a query's answer (the asked devices, or all).
fn add_cached(
    out: &mut QueriedKeys,
    user: &UserId,
    asked: &[OwnedDeviceId],
    list: &crate::storage::device_lists::RemoteDeviceList,
) {
    let mut devices = BTreeMap::new();
    for d in &list.devices {
        let Some(keys) = &d.keys else { continue };
        if !asked.is_empty() && !asked.iter().any(|a| a.as_str() == d.device_id) {
            continue;
        }
        let mut keys = keys.0.clone();
        keys["unsigned"] = match &d.display_name {
            Some(name) => json!({ "device_display_name": name }),
            None => json!({}),
        };
        devices.insert(OwnedDeviceId::from(d.device_id.as_str()), keys);
    }
    out.device_keys.insert(user.to_owned(), devices);
    if let Some(key) = &list.master_key {
        out.master_keys.insert(user.to_owned(), key.clone());
    }
    if let Some(key) = &list.self_signing_key {
        out.self_signing_keys.insert(user.to_owned(), key.clone());
    }
}

/// `POST /keys/claim`: local users' keys from storage, others' claimed from their servers.
pub async fn claim_keys(
    hs: &Homeserver,
    wanted: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
    timeout: Option<Duration>,
) -> Result<(ClaimedKeys, BTreeMap<String, JsonValue>)> {
    let mut claimed = crate::appservice::keys::claim_local_keys(hs, wanted).await?;
    let mut failures = BTreeMap::new();
    let answers = ask_each_server(hs, wanted, timeout, |server, users| async move {
        remote_claim(hs, &server, &users).await
    })
    .await;
    for (server, answer) in answers {
        match answer {
            Ok(found) => claimed.extend(found),
            Err(e) => {
                failures.insert(server.to_string(), failure(e));
            }
        }
    }
    Ok((claimed, failures))
}

async fn remote_claim(
    hs: &Homeserver,
    server: &ruma::ServerName,
    users: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>>,
) -> Result<ClaimedKeys> {
    let federation = super::state(hs)?;
    let claims = users
        .iter()
        .map(|(user, devices)| {
            let devices = devices
                .iter()
                .map(|(d, alg)| (d.clone(), OneTimeKeyAlgorithm::from(alg.as_str())))
                .collect();
            (user.clone(), devices)
        })
        .collect();
    let answer = federation
        .client
        .send(hs.keys.pair(), server, claim_keys::v1::Request::new(claims))
        .await
        .map_err(|e| Error::RemoteUnavailable(e.to_string()))?;
    let mut out = ClaimedKeys::new();
    for (user, devices) in answer.one_time_keys {
        let Some(asked) = users.get(&user) else {
            continue;
        };
        for (device, keys) in devices {
            if !asked.contains_key(&device) {
                continue;
            }
            // One key per device, as asked.
            if let Some((id, raw)) = keys.into_iter().next()
                && let Ok(key) = serde_json::from_str::<JsonValue>(raw.json().get())
            {
                out.entry(user.clone())
                    .or_default()
                    .entry(device)
                    .or_default()
                    .insert(id.to_string(), key);
            }
        }
    }
    Ok(out)
}
