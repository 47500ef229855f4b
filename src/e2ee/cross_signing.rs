//! Cross-signing: `POST /keys/device_signing/upload` (master, self-signing and
//! user-signing keys) and `POST /keys/signatures/upload` (signatures of devices and of
//! master keys, each verified before it is stored).

use std::collections::BTreeMap;

use ruma::api::client::uiaa::AuthData;
use serde_json::{Value as JsonValue, json};

use super::{signed_by, signed_part};
use crate::{
    error::{Error, Result},
    server::Homeserver,
    storage::e2ee::KeySignature,
    users::{
        Requester,
        uia::{self, UiaAction},
    },
};

/// The uploaded cross-signing keys (any may be absent).
pub struct SigningKeysUpload {
    pub master: Option<JsonValue>,
    pub self_signing: Option<JsonValue>,
    pub user_signing: Option<JsonValue>,
}

/// A cross-signing key's single ed25519 key: (key ID `ed25519:<pub>`, public key).
fn ed25519_key(key: &JsonValue, user: &str, usage: &str) -> Result<(String, String)> {
    let bad = |why: &str| Error::InvalidParam(format!("{usage} key: {why}"));
    if key["user_id"] != user {
        return Err(bad("user_id must be the uploading user"));
    }
    if !key["usage"]
        .as_array()
        .is_some_and(|u| u.iter().any(|x| x == usage))
    {
        return Err(bad("usage must include its purpose"));
    }
    let keys = key["keys"].as_object().ok_or_else(|| bad("no keys"))?;
    match keys.iter().next() {
        Some((id, public)) if keys.len() == 1 && id.starts_with("ed25519:") => {
            let public = public.as_str().ok_or_else(|| bad("key is not a string"))?;
            if id.strip_prefix("ed25519:") != Some(public) {
                return Err(bad("key ID must be ed25519:<public key>"));
            }
            Ok((id.clone(), public.to_owned()))
        }
        _ => Err(bad("exactly one ed25519 key is needed")),
    }
}

/// `POST /keys/device_signing/upload`. The first upload needs no re-authentication (the
/// spec allows it: a new account sets up cross-signing); replacing existing keys does,
/// unless the upload is identical (a client retrying).
pub async fn upload_signing_keys(
    hs: &Homeserver,
    requester: &Requester,
    upload: &SigningKeysUpload,
    auth: Option<&AuthData>,
) -> Result<()> {
    let user = requester.user_id.as_str();
    let existing = hs.storage.cross_signing_keys(user).await?;
    let current = |usage: &str| {
        existing
            .iter()
            .find(|(u, _, _)| u == usage)
            .map(|(_, p, j)| (p.clone(), j.clone()))
    };
    let mut new: Vec<(&str, String, JsonValue)> = Vec::new();
    let master = match &upload.master {
        Some(key) => {
            let (id, public) = ed25519_key(key, user, "master")?;
            new.push(("master", public.clone(), key.clone()));
            Some((id, public))
        }
        None => current("master").map(|(p, _)| (format!("ed25519:{p}"), p)),
    };
    for (usage, key) in [
        ("self_signing", &upload.self_signing),
        ("user_signing", &upload.user_signing),
    ] {
        let Some(key) = key else { continue };
        let (_, public) = ed25519_key(key, user, usage)?;
        let Some((master_id, master_public)) = &master else {
            return Err(Error::InvalidParam(format!(
                "{usage} key needs a master key to sign it"
            )));
        };
        if !signed_by(key, user, master_id, master_public) {
            return Err(Error::InvalidSignature(format!(
                "{usage} key is not signed by the master key"
            )));
        }
        new.push((usage, public, key.clone()));
    }
    if new.is_empty() {
        return Ok(());
    }
    let unchanged = new
        .iter()
        .all(|(usage, _, json)| current(usage).is_some_and(|(_, old)| &old == json));
    if unchanged {
        return Ok(());
    }
    if current("master").is_some() {
        uia::check(
            hs,
            UiaAction::SigningKeys,
            Some(&requester.user_id),
            uia::password_flows(),
            auth,
        )
        .await?;
    }
    hs.storage.set_cross_signing_keys(user, &new).await?;
    Ok(())
}

/// Per user, per key: why a signature was not stored.
pub type SignatureFailures = BTreeMap<String, BTreeMap<String, JsonValue>>;

fn failure(errcode: &str, error: impl Into<String>) -> JsonValue {
    json!({ "errcode": errcode, "error": error.into() })
}

/// `POST /keys/signatures/upload`: `signed` is user -> key ID (device ID or master public
/// key) -> the signed object. Accepted: the uploader's self-signing key over their own
/// devices; their devices over their own master key; their user-signing key over another
/// user's master key. Each signature is verified; failures are reported per key.
pub async fn upload_signatures(
    hs: &Homeserver,
    requester: &Requester,
    signed: &BTreeMap<String, BTreeMap<String, JsonValue>>,
) -> Result<SignatureFailures> {
    let me = requester.user_id.as_str();
    let mine = hs.storage.cross_signing_keys(me).await?;
    let my_key = |usage: &str| {
        mine.iter()
            .find(|(u, _, _)| u == usage)
            .map(|(_, p, _)| p.clone())
    };
    let mut accepted: Vec<KeySignature> = Vec::new();
    let mut failures = SignatureFailures::new();
    for (user, keys) in signed {
        for (key_id, object) in keys {
            match check_one(hs, me, &my_key, user, key_id, object).await? {
                Ok(mut sigs) => accepted.append(&mut sigs),
                Err(f) => {
                    failures
                        .entry(user.clone())
                        .or_default()
                        .insert(key_id.clone(), f);
                }
            }
        }
    }
    hs.storage.add_key_signatures(&accepted).await?;
    Ok(failures)
}

/// Checks one signed object; the inner error is the failure to report for it.
async fn check_one(
    hs: &Homeserver,
    me: &str,
    my_key: &impl Fn(&str) -> Option<String>,
    user: &str,
    key_id: &str,
    object: &JsonValue,
) -> Result<Result<Vec<KeySignature>, JsonValue>> {
    // The object must be the key as published: a signature of anything else is useless.
    let (published, signer): (JsonValue, Vec<(String, String, String)>) = if user == me {
        let devices = hs.storage.device_keys(me, &[key_id.to_owned()]).await?;
        if let Some((_, device_keys)) = devices.into_iter().next() {
            // A device of mine, signed by my self-signing key.
            let Some(ssk) = my_key("self_signing") else {
                return Ok(Err(failure(
                    "M_MISSING_SIGNATURE",
                    "no self-signing key to sign devices with",
                )));
            };
            (
                device_keys,
                vec![(me.to_owned(), format!("ed25519:{ssk}"), ssk)],
            )
        } else if my_key("master").as_deref() == Some(key_id) {
            // My master key, signed by my devices.
            let mut signers = Vec::new();
            for (device_id, keys) in hs.storage.device_keys(me, &[]).await? {
                let id = format!("ed25519:{device_id}");
                if let Some(public) = keys["keys"][&id].as_str() {
                    signers.push((me.to_owned(), id, public.to_owned()));
                }
            }
            let master = hs.storage.cross_signing_keys(me).await?;
            let json = master
                .into_iter()
                .find(|(u, _, _)| u == "master")
                .map(|(_, _, j)| j)
                .unwrap_or_default();
            (json, signers)
        } else {
            return Ok(Err(failure("M_NOT_FOUND", "unknown key")));
        }
    } else {
        // Another user's master key, signed by my user-signing key.
        let theirs = hs.storage.cross_signing_keys(user).await?;
        let Some((_, _, master)) = theirs
            .into_iter()
            .find(|(u, p, _)| u == "master" && p == key_id)
        else {
            return Ok(Err(failure("M_NOT_FOUND", "unknown master key")));
        };
        let Some(usk) = my_key("user_signing") else {
            return Ok(Err(failure(
                "M_MISSING_SIGNATURE",
                "no user-signing key to sign other users with",
            )));
        };
        (master, vec![(me.to_owned(), format!("ed25519:{usk}"), usk)])
    };
    if signed_part(&published) != signed_part(object) {
        return Ok(Err(failure(
            "M_INVALID_SIGNATURE",
            "the signed object is not the published key",
        )));
    }
    let mut sigs = Vec::new();
    for (signer_user, signer_key_id, public) in &signer {
        let Some(signature) = object["signatures"][signer_user][signer_key_id].as_str() else {
            continue;
        };
        if !signed_by(object, signer_user, signer_key_id, public) {
            return Ok(Err(failure("M_INVALID_SIGNATURE", "invalid signature")));
        }
        sigs.push(KeySignature {
            target_user: user.to_owned(),
            target_key: key_id.to_owned(),
            signer_user: signer_user.clone(),
            signer_key_id: signer_key_id.clone(),
            signature: signature.to_owned(),
        });
    }
    if sigs.is_empty() {
        return Ok(Err(failure(
            "M_MISSING_SIGNATURE",
            "no signature by a key that may sign this",
        )));
    }
    Ok(Ok(sigs))
}
