//! End-to-end encryption support: the server stores and hands out public keys, relays
//! to-device messages and keeps encrypted key backups. It never holds a private key or
//! sees plaintext; what it checks is who may publish what, and signatures.

pub mod backup;
pub mod cross_signing;
pub mod dehydrated;
pub mod keys;
pub mod to_device;

use ruma::{CanonicalJsonObject, serde::Base64};
use serde_json::{Value as JsonValue, json};

/// Whether `object` carries a valid ed25519 signature by `signer`'s key `key_id`
/// (`ed25519:<id>`) whose public half is `public_key` (unpadded base64).
pub(crate) fn signed_by(object: &JsonValue, signer: &str, key_id: &str, public_key: &str) -> bool {
    let Some(signature) = object
        .get("signatures")
        .and_then(|s| s.get(signer))
        .and_then(|s| s.get(key_id))
        .cloned()
    else {
        return false;
    };
    let mut only = object.clone();
    if let Some(map) = only.as_object_mut() {
        map.remove("unsigned");
        map.insert(
            "signatures".into(),
            json!({ signer: { key_id: signature } }),
        );
    }
    let Ok(canonical) = serde_json::from_value::<CanonicalJsonObject>(only) else {
        return false;
    };
    let Ok(key) = Base64::parse(public_key) else {
        return false;
    };
    let map = [(signer.to_owned(), [(key_id.to_owned(), key)].into())].into();
    ruma::signatures::verify_json(&map, &canonical).is_ok()
}

/// An object without its `signatures` and `unsigned`: what a signature covers.
pub(crate) fn signed_part(object: &JsonValue) -> JsonValue {
    let mut v = object.clone();
    if let Some(map) = v.as_object_mut() {
        map.remove("signatures");
        map.remove("unsigned");
    }
    v
}
