//! Other servers' signing keys: fetched from the server itself, else from the configured
//! notaries; each document checked (its server's name, its own signatures, a notary's
//! signature) and cached in PostgreSQL with how long its keys may be used (a week at most
//! after fetching; old keys until they expired). axon is a notary too: it serves the
//! documents it holds, countersigned.

use std::{
    collections::{BTreeMap, HashMap},
    sync::Mutex,
    time::{Duration, Instant},
};

use super::Federation;
use crate::rooms::context::RoomContext;
use crate::{
    error::{Error, Result},
    server::{Homeserver, now_ms},
    storage::server_keys::NewServerKey,
};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, OwnedServerName, OwnedServerSigningKeyId, ServerName,
    api::federation::discovery::{
        ServerSigningKeys, get_remote_server_keys_batch, get_server_keys,
    },
    serde::{Base64, Raw},
    signatures::{PublicKeyMap, PublicKeySet},
};

/// Longest another server's keys are trusted after fetching them, whatever they claim.
pub const MAX_REMOTE_VALIDITY_MS: i64 = 7 * 24 * 3600 * 1000;
/// A server whose keys were just looked for is not asked again this soon for a key it
/// did not have (a request naming a made-up key ID must not make us fetch each time).
const REFETCH_AFTER: Duration = Duration::from_secs(30);

/// Per-process memory of key fetches.
#[derive(Default)]
pub struct KeyFetches {
    last_attempt: Mutex<HashMap<OwnedServerName, Instant>>,
    /// One fetch per server at a time; others wait and read what it stored.
    in_flight: tokio::sync::Mutex<HashMap<OwnedServerName, std::sync::Arc<tokio::sync::Mutex<()>>>>,
}

/// A key document whose signatures checked out.
#[derive(Debug, Clone)]
pub struct VerifiedKeys {
    pub server: OwnedServerName,
    pub keys: Vec<NewServerKey>,
    pub valid_until_ts: i64,
    pub document: CanonicalJsonObject,
}

/// Checks that `object` carries at least one signature of `entity` made with a key of
/// `keys`, and that every such signature verifies. Other entities' signatures are ignored.
pub fn verify_signed_by(
    object: &CanonicalJsonObject,
    entity: &str,
    keys: &PublicKeySet,
) -> std::result::Result<(), String> {
    let mut only = object.clone();
    let Some(CanonicalJsonValue::Object(signatures)) = object.get("signatures") else {
        return Err("not signed".into());
    };
    let Some(theirs) = signatures.get(entity) else {
        return Err(format!("not signed by {entity}"));
    };
    only.insert(
        "signatures".into(),
        CanonicalJsonValue::Object(BTreeMap::from([(entity.to_owned(), theirs.clone())])),
    );
    let map: PublicKeyMap = BTreeMap::from([(entity.to_owned(), keys.clone())]);
    ruma::signatures::verify_json(&map, &only).map_err(|e| e.to_string())
}

fn int_field(object: &CanonicalJsonObject, name: &str) -> Option<i64> {
    match object.get(name) {
        Some(CanonicalJsonValue::Integer(i)) => Some(i64::from(*i)),
        _ => None,
    }
}

/// Checks a key document as the spec says: it names the expected server, it is signed by
/// its current keys, and `valid_until_ts` is there. Its keys' validity is capped at a
/// week from `now`.
pub fn verify_document(
    raw: &Raw<ServerSigningKeys>,
    expected: &ServerName,
    now: i64,
) -> std::result::Result<VerifiedKeys, String> {
    let object: CanonicalJsonObject =
        serde_json::from_str(raw.json().get()).map_err(|e| format!("not canonical JSON: {e}"))?;
    match object.get("server_name") {
        Some(CanonicalJsonValue::String(name)) if name == expected.as_str() => {}
        _ => return Err(format!("the document is not {expected}'s")),
    }
    let valid_until_ts = int_field(&object, "valid_until_ts").ok_or("no valid_until_ts")?;
    let mut current = PublicKeySet::new();
    let mut keys = Vec::new();
    let capped = valid_until_ts.min(now + MAX_REMOTE_VALIDITY_MS);
    if let Some(CanonicalJsonValue::Object(verify)) = object.get("verify_keys") {
        for (key_id, entry) in verify {
            let Some(CanonicalJsonValue::String(key)) =
                entry.as_object().and_then(|e| e.get("key"))
            else {
                return Err(format!("verify key {key_id} has no key"));
            };
            let parsed = Base64::parse(key).map_err(|e| format!("verify key {key_id}: {e}"))?;
            OwnedServerSigningKeyId::try_from(key_id.as_str())
                .map_err(|e| format!("key ID {key_id}: {e}"))?;
            current.insert(key_id.clone(), parsed);
            keys.push(NewServerKey {
                key_id: key_id.clone(),
                public_key: key.clone(),
                valid_until_ts: capped,
                expired: false,
            });
        }
    }
    if current.is_empty() {
        return Err("no verify_keys".into());
    }
    verify_signed_by(&object, expected.as_str(), &current)?;
    if let Some(CanonicalJsonValue::Object(old)) = object.get("old_verify_keys") {
        for (key_id, entry) in old {
            let entry = entry.as_object();
            let key = entry.and_then(|e| e.get("key"));
            let expired_ts = entry.and_then(|e| int_field(e, "expired_ts"));
            if let (Some(CanonicalJsonValue::String(key)), Some(expired_ts)) = (key, expired_ts)
                && Base64::<ruma::serde::base64::Standard>::parse(key).is_ok()
                && !current.contains_key(key_id)
            {
                keys.push(NewServerKey {
                    key_id: key_id.clone(),
                    public_key: key.clone(),
                    valid_until_ts: expired_ts,
                    expired: true,
                });
            }
        }
    }
    Ok(VerifiedKeys {
        server: expected.to_owned(),
        keys,
        valid_until_ts,
        document: object,
    })
}

async fn store(hs: &Homeserver, verified: &VerifiedKeys) -> Result<()> {
    let document = serde_json::to_value(&verified.document)
        .map_err(|e| Error::Internal(format!("key document: {e}")))?;
    hs.storage
        .store_server_keys(
            verified.server.as_str(),
            &verified.keys,
            &document,
            verified.valid_until_ts,
            now_ms(),
        )
        .await?;
    Ok(())
}

/// The keys of `server` among `key_ids` that may verify a signature made at `valid_at`,
/// fetched when missing. Keys that cannot be found are left out (the caller's check then
/// fails).
pub async fn verify_keys_for(
    hs: &Homeserver,
    server: &ServerName,
    key_ids: &[String],
    valid_at: i64,
) -> Result<PublicKeySet> {
    if server == hs.config.server_name() {
        return Ok(hs
            .keys
            .public_key_map(server)
            .remove(server.as_str())
            .unwrap_or_default());
    }
    let usable = |rows: Vec<crate::storage::server_keys::ServerKeyRow>| -> PublicKeySet {
        rows.into_iter()
            .filter(|r| r.valid_until_ts >= valid_at)
            .filter_map(|r| Some((r.key_id, Base64::parse(&r.public_key).ok()?)))
            .collect()
    };
    let found = usable(hs.storage.server_keys(server.as_str(), key_ids).await?);
    if key_ids.iter().all(|k| found.contains_key(k)) {
        return Ok(found);
    }
    let federation = super::state(hs)?;
    let fetches = &federation.key_fetches;
    let lock = {
        let mut in_flight = fetches.in_flight.lock().await;
        if in_flight.len() > 1000 {
            in_flight.retain(|_, l| std::sync::Arc::strong_count(l) > 1);
        }
        in_flight.entry(server.to_owned()).or_default().clone()
    };
    let _fetching = lock.lock().await;
    // A fetch that finished while this one waited may have brought the keys.
    let found = usable(hs.storage.server_keys(server.as_str(), key_ids).await?);
    if key_ids.iter().all(|k| found.contains_key(k)) {
        return Ok(found);
    }
    {
        let mut last = fetches
            .last_attempt
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last
            .get(server)
            .is_some_and(|at| at.elapsed() < REFETCH_AFTER)
        {
            return Ok(found);
        }
        if last.len() > 10_000 {
            last.retain(|_, at| at.elapsed() < REFETCH_AFTER);
        }
        last.insert(server.to_owned(), Instant::now());
    }
    match fetch_direct(hs, &federation, server).await {
        Ok(verified) => store(hs, &verified).await?,
        Err(e) => tracing::debug!(%server, "keys not fetched from the server: {e}"),
    }
    let found = usable(hs.storage.server_keys(server.as_str(), key_ids).await?);
    if key_ids.iter().all(|k| found.contains_key(k)) {
        return Ok(found);
    }
    for notary in &hs.config.federation.trusted_key_servers {
        match fetch_from_notary(hs, &federation, &notary.server_name, server, key_ids).await {
            Ok(documents) => {
                for verified in &documents {
                    store(hs, verified).await?;
                }
            }
            Err(e) => {
                tracing::debug!(%server, notary = %notary.server_name, "keys not fetched: {e}")
            }
        }
        let found = usable(hs.storage.server_keys(server.as_str(), key_ids).await?);
        if key_ids.iter().all(|k| found.contains_key(k)) {
            return Ok(found);
        }
    }
    Ok(usable(
        hs.storage.server_keys(server.as_str(), key_ids).await?,
    ))
}

/// `GET /_matrix/key/v2/server` of the server itself.
pub async fn fetch_direct(
    hs: &Homeserver,
    federation: &Federation,
    server: &ServerName,
) -> std::result::Result<VerifiedKeys, String> {
    let response = federation
        .client
        .send(hs.keys.pair(), server, get_server_keys::v2::Request::new())
        .await
        .map_err(|e| e.to_string())?;
    verify_document(&response.server_key, server, now_ms())
}

/// Asks a notary for `server`'s keys. Each document must be `server`'s own, signed by it,
/// and countersigned by the notary (with the keys configured for it, else its own
/// published keys).
async fn fetch_from_notary(
    hs: &Homeserver,
    federation: &Federation,
    notary: &ServerName,
    server: &ServerName,
    key_ids: &[String],
) -> std::result::Result<Vec<VerifiedKeys>, String> {
    let notary_keys = notary_keys(hs, federation, notary).await?;
    let criteria: BTreeMap<OwnedServerSigningKeyId, _> = key_ids
        .iter()
        .filter_map(|k| OwnedServerSigningKeyId::try_from(k.as_str()).ok())
        .map(|k| (k, get_remote_server_keys_batch::v2::QueryCriteria::new()))
        .collect();
    let request = get_remote_server_keys_batch::v2::Request::new(BTreeMap::from([(
        server.to_owned(),
        criteria,
    )]));
    let response = federation
        .client
        .send(hs.keys.pair(), notary, request)
        .await
        .map_err(|e| e.to_string())?;
    let now = now_ms();
    let mut verified = Vec::new();
    for raw in &response.server_keys {
        let document = verify_document(raw, server, now)?;
        verify_signed_by(&document.document, notary.as_str(), &notary_keys)
            .map_err(|e| format!("notary signature: {e}"))?;
        verified.push(document);
    }
    Ok(verified)
}

/// The keys a notary's answers must be signed with: those configured for it, else the
/// ones it publishes.
async fn notary_keys(
    hs: &Homeserver,
    federation: &Federation,
    notary: &ServerName,
) -> std::result::Result<PublicKeySet, String> {
    let configured = hs
        .config
        .federation
        .trusted_key_servers
        .iter()
        .find(|t| t.server_name == notary)
        .map(|t| &t.verify_keys);
    if let Some(keys) = configured
        && !keys.is_empty()
    {
        return keys
            .iter()
            .map(|(id, key)| Ok((id.clone(), Base64::parse(key).map_err(|e| e.to_string())?)))
            .collect();
    }
    let verified = fetch_direct(hs, federation, notary).await?;
    store(hs, &verified).await.map_err(|e| e.to_string())?;
    Ok(verified
        .keys
        .iter()
        .filter(|k| !k.expired)
        .filter_map(|k| Some((k.key_id.clone(), Base64::parse(&k.public_key).ok()?)))
        .collect())
}

/// What axon answers as a notary for one server: the documents it holds for the keys
/// asked (all of them when none are named), fetched again from the server when a key is
/// unknown or no document is valid until `minimum_valid_until_ts`; countersigned. When
/// the server cannot be reached, what is held is the answer (an expired key is better
/// than none). Its own document for its own name.
pub async fn notary_documents(
    hs: &Homeserver,
    server: &ServerName,
    key_ids: &[String],
    minimum_valid_until_ts: Option<i64>,
) -> Result<Vec<CanonicalJsonObject>> {
    let our_name = hs.config.server_name();
    if server == our_name {
        return Ok(vec![hs.keys.server_key_document(our_name)?]);
    }
    let wanted = minimum_valid_until_ts.unwrap_or_else(now_ms);
    let mut held = hs
        .storage
        .server_key_documents(server.as_str(), key_ids)
        .await?;
    let stale = held.is_empty()
        || key_ids
            .iter()
            .any(|k| !held.iter().any(|(id, _, _)| id == k))
        || held.iter().any(|(_, _, valid_until)| *valid_until < wanted);
    if stale {
        let federation = super::state(hs)?;
        match fetch_direct(hs, &federation, server).await {
            Ok(verified) => {
                store(hs, &verified).await?;
                held = hs
                    .storage
                    .server_key_documents(server.as_str(), key_ids)
                    .await?;
            }
            Err(e) => tracing::debug!(%server, "notary fetch failed: {e}"),
        }
    }
    let mut documents: Vec<CanonicalJsonObject> = Vec::new();
    for (_, document, _) in held {
        let object: CanonicalJsonObject = serde_json::from_value(document)
            .map_err(|e| Error::Internal(format!("stored key document: {e}")))?;
        if documents.contains(&object) {
            continue;
        }
        documents.push(object);
    }
    for object in &mut documents {
        hs.keys.sign_json(our_name, object)?;
    }
    Ok(documents)
}

/// The PublicKeyMap for verifying a signature of `server` made at `valid_at`.
pub async fn key_map(
    hs: &Homeserver,
    server: &ServerName,
    key_ids: &[String],
    valid_at: i64,
) -> Result<PublicKeyMap> {
    let keys = verify_keys_for(hs, server, key_ids, valid_at).await?;
    Ok(BTreeMap::from([(server.to_string(), keys)]))
}

/// The verify keys of every server whose signature the PDU needs, valid when it was sent
/// (room v5+) or at all (earlier versions).
pub async fn pdu_keys(
    hs: &Homeserver,
    ctx: &RoomContext,
    object: &CanonicalJsonObject,
) -> Result<PublicKeyMap> {
    let servers =
        ruma::signatures::required_server_signatures_to_verify_event(object, &ctx.rules.signatures)
            .map_err(|e| Error::BadJson(format!("PDU: {e}")))?;
    let valid_at = match object.get("origin_server_ts") {
        Some(CanonicalJsonValue::Integer(ts)) if ctx.rules.enforce_key_validity => i64::from(*ts),
        _ => 0,
    };
    let signatures = match object.get("signatures") {
        Some(CanonicalJsonValue::Object(s)) => s,
        _ => return Err(Error::BadJson("PDU is not signed".into())),
    };
    let mut map = PublicKeyMap::new();
    for server in servers {
        let key_ids: Vec<String> = match signatures.get(server.as_str()) {
            Some(CanonicalJsonValue::Object(keys)) => keys.keys().cloned().collect(),
            _ => return Err(Error::Forbidden(format!("PDU is not signed by {server}"))),
        };
        let keys = verify_keys_for(hs, &server, &key_ids, valid_at).await?;
        map.insert(server.to_string(), keys);
    }
    Ok(map)
}
