//! End-to-end encryption keys: upload, query, claim, changes, cross-signing keys and
//! signatures; to-device messages.

use std::{collections::BTreeMap, sync::Arc};

use axum::Router;
use ruma::{
    OneTimeKeyAlgorithm, OwnedDeviceId, OwnedUserId, UInt,
    api::client::{
        keys::{
            claim_keys, get_key_changes, get_keys, upload_keys, upload_signatures,
            upload_signing_keys,
        },
        to_device::send_event_to_device,
    },
    serde::Raw,
    to_device::DeviceIdOrAllDevices,
};
use serde_json::Value as JsonValue;

use crate::{
    e2ee::{
        cross_signing::{self, SigningKeysUpload},
        keys::{self, ClaimedKeys, KeyUpload},
        to_device,
    },
    error::{Error, Result},
    http::{
        Ruma, compat,
        extract::{Patches, route_patched},
        route,
    },
    server::Homeserver,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = route(router, upload);
    let router = route_patched(router, query, ALWAYS_FAILURES);
    let router = route_patched(router, claim, ALWAYS_FAILURES);
    let router = route(router, changes);
    let router = route_patched(router, signing_keys, compat::LEGACY_AUTH);
    let router = route(router, signatures);
    route(router, send_to_device)
}

/// `failures` is always there, `{}` when every server answered, as Synapse sends it
/// (ruma leaves an empty map out; sytest reads the key).
const ALWAYS_FAILURES: Patches = Patches {
    request: None,
    response: Some(|response| {
        if let Some(fields) = response.as_object_mut() {
            fields
                .entry("failures")
                .or_insert_with(|| serde_json::json!({}));
        }
    }),
};

pub(crate) fn json_of<T>(raw: &Raw<T>) -> Result<JsonValue> {
    serde_json::from_str(raw.json().get()).map_err(|e| Error::BadJson(e.to_string()))
}

pub(crate) fn raw_of<T>(value: &JsonValue) -> Result<Raw<T>> {
    serde_json::value::to_raw_value(value)
        .map(Raw::from_json)
        .map_err(|e| Error::Internal(e.to_string()))
}

pub(crate) fn counts(counts: BTreeMap<String, i64>) -> BTreeMap<OneTimeKeyAlgorithm, UInt> {
    counts
        .into_iter()
        .map(|(a, n)| (a.into(), UInt::try_from(n.max(0)).unwrap_or_default()))
        .collect()
}

pub(crate) fn key_upload<A: ToString, B: ToString>(
    device_keys: Option<&Raw<ruma::encryption::DeviceKeys>>,
    one_time: &BTreeMap<A, Raw<ruma::encryption::OneTimeKey>>,
    fallback: &BTreeMap<B, Raw<ruma::encryption::OneTimeKey>>,
) -> Result<KeyUpload> {
    Ok(KeyUpload {
        device_keys: device_keys.map(json_of).transpose()?,
        one_time_keys: one_time
            .iter()
            .map(|(id, k)| Ok((id.to_string(), json_of(k)?)))
            .collect::<Result<_>>()?,
        fallback_keys: fallback
            .iter()
            .map(|(id, k)| Ok((id.to_string(), json_of(k)?)))
            .collect::<Result<_>>()?,
    })
}

async fn upload(
    hs: Arc<Homeserver>,
    req: Ruma<upload_keys::v3::Request>,
) -> Result<upload_keys::v3::Response> {
    let requester = req.requester()?;
    let b = &req.body;
    let upload = key_upload(b.device_keys.as_ref(), &b.one_time_keys, &b.fallback_keys)?;
    let n = keys::upload_keys(
        &hs,
        &requester.user_id,
        requester.device_id.as_str(),
        &upload,
    )
    .await?;
    Ok(upload_keys::v3::Response::new(counts(n)))
}

async fn query(
    hs: Arc<Homeserver>,
    req: Ruma<get_keys::v3::Request>,
) -> Result<get_keys::v3::Response> {
    let found = crate::federation::e2ee::query_keys(
        &hs,
        req.requester()?,
        &req.body.device_keys,
        req.body.timeout,
    )
    .await?;
    let mut response = get_keys::v3::Response::new();
    response.device_keys = raw_device_keys(found.device_keys)?;
    response.master_keys = raw_keys(found.master_keys)?;
    response.self_signing_keys = raw_keys(found.self_signing_keys)?;
    response.user_signing_keys = raw_keys(found.user_signing_keys)?;
    response.failures = found.failures;
    Ok(response)
}

/// Queried device keys as a query's answer carries them.
#[allow(clippy::type_complexity)]
pub(crate) fn raw_device_keys(
    found: BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, JsonValue>>,
) -> Result<BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, Raw<ruma::encryption::DeviceKeys>>>> {
    found
        .into_iter()
        .map(|(user, devices)| {
            let devices = devices
                .into_iter()
                .map(|(d, json)| Ok((d, raw_of(&json)?)))
                .collect::<Result<_>>()?;
            Ok((user, devices))
        })
        .collect()
}

/// Queried cross-signing keys as a query's answer carries them.
pub(crate) fn raw_keys<T>(
    found: BTreeMap<OwnedUserId, JsonValue>,
) -> Result<BTreeMap<OwnedUserId, Raw<T>>> {
    found
        .into_iter()
        .map(|(user, json)| Ok((user, raw_of(&json)?)))
        .collect()
}

async fn claim(
    hs: Arc<Homeserver>,
    req: Ruma<claim_keys::v3::Request>,
) -> Result<claim_keys::v3::Response> {
    req.requester()?;
    let wanted = claims_of(&req.body.one_time_keys);
    let (claimed, failures) =
        crate::federation::e2ee::claim_keys(&hs, &wanted, req.body.timeout).await?;
    let mut response = claim_keys::v3::Response::new(one_time_keys_of(claimed)?);
    response.failures = failures;
    Ok(response)
}

/// A claim request's devices and algorithms, as the domain takes them.
pub(crate) fn claims_of(
    asked: &BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, OneTimeKeyAlgorithm>>,
) -> BTreeMap<OwnedUserId, BTreeMap<OwnedDeviceId, String>> {
    asked
        .iter()
        .map(|(u, ds)| {
            let ds = ds.iter().map(|(d, a)| (d.clone(), a.to_string())).collect();
            (u.clone(), ds)
        })
        .collect()
}

/// Claimed keys as a claim's answer carries them.
#[allow(clippy::type_complexity)]
pub(crate) fn one_time_keys_of(
    claimed: ClaimedKeys,
) -> Result<
    BTreeMap<
        OwnedUserId,
        BTreeMap<
            OwnedDeviceId,
            BTreeMap<ruma::OwnedOneTimeKeyId, Raw<ruma::encryption::OneTimeKey>>,
        >,
    >,
> {
    let mut one_time_keys = BTreeMap::new();
    for (user, devices) in claimed {
        let mut out = BTreeMap::new();
        for (device, keys) in devices {
            let mut ks = BTreeMap::new();
            for (id, json) in keys {
                let id = ruma::OwnedOneTimeKeyId::try_from(id.as_str())
                    .map_err(|e| Error::Internal(format!("stored key ID {id}: {e}")))?;
                ks.insert(id, raw_of(&json)?);
            }
            out.insert(device, ks);
        }
        one_time_keys.insert(user, out);
    }
    Ok(one_time_keys)
}

async fn changes(
    hs: Arc<Homeserver>,
    req: Ruma<get_key_changes::v3::Request>,
) -> Result<get_key_changes::v3::Response> {
    let b = &req.body;
    let (changed, left) = keys::key_changes(&hs, req.requester()?, &b.from, &b.to).await?;
    Ok(get_key_changes::v3::Response::new(changed, left))
}

async fn signing_keys(
    hs: Arc<Homeserver>,
    req: Ruma<upload_signing_keys::v3::Request>,
) -> Result<upload_signing_keys::v3::Response> {
    let b = &req.body;
    let upload = SigningKeysUpload {
        master: b.master_key.as_ref().map(json_of).transpose()?,
        self_signing: b.self_signing_key.as_ref().map(json_of).transpose()?,
        user_signing: b.user_signing_key.as_ref().map(json_of).transpose()?,
    };
    cross_signing::upload_signing_keys(&hs, req.requester()?, &upload, b.auth.as_ref()).await?;
    Ok(upload_signing_keys::v3::Response::new())
}

async fn signatures(
    hs: Arc<Homeserver>,
    req: Ruma<upload_signatures::v3::Request>,
) -> Result<upload_signatures::v3::Response> {
    let mut signed = BTreeMap::new();
    for (user, keys) in &req.body.signed_keys {
        let mut objects = BTreeMap::new();
        for (key_id, raw) in keys.iter() {
            let json: JsonValue =
                serde_json::from_str(raw.get()).map_err(|e| Error::BadJson(e.to_string()))?;
            objects.insert(key_id.to_owned(), json);
        }
        signed.insert(user.to_string(), objects);
    }
    let failures = cross_signing::upload_signatures(&hs, req.requester()?, &signed).await?;
    let mut response = upload_signatures::v3::Response::new();
    for (user, keys) in failures {
        let Ok(user) = ruma::OwnedUserId::try_from(user) else {
            continue;
        };
        let mut out = BTreeMap::new();
        for (key, failure) in keys {
            let failure = serde_json::from_value(failure)
                .map_err(|e| Error::Internal(format!("signature failure: {e}")))?;
            out.insert(key, failure);
        }
        response.failures.insert(user, out);
    }
    Ok(response)
}

async fn send_to_device(
    hs: Arc<Homeserver>,
    req: Ruma<send_event_to_device::v3::Request>,
) -> Result<send_event_to_device::v3::Response> {
    let b = &req.body;
    let mut messages = BTreeMap::new();
    for (user, devices) in &b.messages {
        let mut out = BTreeMap::new();
        for (device, content) in devices {
            let device = match device {
                DeviceIdOrAllDevices::DeviceId(d) => d.to_string(),
                DeviceIdOrAllDevices::AllDevices => "*".to_owned(),
            };
            out.insert(device, json_of(content)?);
        }
        messages.insert(user.to_string(), out);
    }
    to_device::send_to_device(
        &hs,
        req.requester()?,
        &b.event_type.to_string(),
        b.txn_id.as_str(),
        &messages,
    )
    .await?;
    Ok(send_event_to_device::v3::Response::new())
}
