//! The server's ed25519 signing key: generated at first start, persisted, rotatable, with
//! old verify keys kept so that events signed before a rotation still verify.

use std::collections::BTreeMap;

use base64::Engine as _;
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, ServerName,
    signatures::{Ed25519KeyPair, PublicKeyMap, PublicKeySet},
};

use crate::{
    error::{Error, Result},
    server::now_ms,
    storage::Storage,
};

/// How long other servers may cache our keys.
pub const KEY_VALIDITY_MS: i64 = 7 * 24 * 3600 * 1000;

pub struct ServerKeys {
    current: Ed25519KeyPair,
    /// key ID ("ed25519:<version>") -> (unpadded base64 public key, expired_ts)
    verify_keys: BTreeMap<String, (String, Option<i64>)>,
}

impl std::fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKeys")
            .field("key_id", &self.key_id())
            .finish_non_exhaustive()
    }
}

fn unpadded(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD_NO_PAD.encode(bytes)
}

/// Makes and stores a new key, which becomes the current one. Returns its key ID.
pub async fn rotate(storage: &Storage) -> Result<String> {
    let document = Ed25519KeyPair::generate();
    let version = format!("a_{}", crate::secrets::random_id(4).to_lowercase());
    let pair = Ed25519KeyPair::from_der(&document, version.clone())
        .map_err(|e| Error::Internal(format!("generated key does not parse: {e}")))?;
    let key_id = format!("ed25519:{version}");
    storage
        .add_signing_key(&key_id, &document, &pair.public_key(), now_ms())
        .await?;
    Ok(key_id)
}

impl ServerKeys {
    /// Loads the keys, generating the first one if there is none.
    pub async fn load(storage: &Storage) -> Result<Self> {
        let mut rows = storage.signing_keys().await?;
        if rows.first().is_none_or(|r| r.expired_ts.is_some()) {
            rotate(storage).await?;
            rows = storage.signing_keys().await?;
        }
        let current_row = rows
            .first()
            .ok_or_else(|| Error::Internal("no signing key".into()))?;
        let version = current_row.key_id.trim_start_matches("ed25519:").to_owned();
        let current = Ed25519KeyPair::from_der(&current_row.pkcs8, version)
            .map_err(|e| Error::Internal(format!("stored signing key: {e}")))?;
        let verify_keys = rows
            .iter()
            .map(|r| (r.key_id.clone(), (unpadded(&r.public_key), r.expired_ts)))
            .collect();
        Ok(Self {
            current,
            verify_keys,
        })
    }

    pub fn key_id(&self) -> String {
        format!("ed25519:{}", self.current.version())
    }

    pub fn pair(&self) -> &Ed25519KeyPair {
        &self.current
    }

    /// Signs a JSON object in place as this server.
    pub fn sign_json(
        &self,
        server_name: &ServerName,
        object: &mut CanonicalJsonObject,
    ) -> Result<()> {
        ruma::signatures::sign_json(server_name.as_str(), &self.current, object)
            .map_err(|e| Error::Internal(format!("signing: {e}")))
    }

    /// Every key this server has signed with, for verifying our own events.
    pub fn public_key_map(&self, server_name: &ServerName) -> PublicKeyMap {
        let set: PublicKeySet = self
            .verify_keys
            .iter()
            .filter_map(|(id, (key, _))| Some((id.clone(), ruma::serde::Base64::parse(key).ok()?)))
            .collect();
        BTreeMap::from([(server_name.to_string(), set)])
    }

    /// The signed key document served at /_matrix/key/v2/server.
    pub fn server_key_document(&self, server_name: &ServerName) -> Result<CanonicalJsonObject> {
        let mut verify = CanonicalJsonObject::new();
        let mut old = CanonicalJsonObject::new();
        for (id, (key, expired)) in &self.verify_keys {
            let mut entry = CanonicalJsonObject::new();
            entry.insert("key".into(), CanonicalJsonValue::String(key.clone()));
            match expired {
                None => {
                    verify.insert(id.clone(), CanonicalJsonValue::Object(entry));
                }
                Some(ts) => {
                    entry.insert(
                        "expired_ts".into(),
                        CanonicalJsonValue::Integer(ruma::Int::new_saturating(*ts)),
                    );
                    old.insert(id.clone(), CanonicalJsonValue::Object(entry));
                }
            }
        }
        let mut doc = CanonicalJsonObject::new();
        doc.insert(
            "server_name".into(),
            CanonicalJsonValue::String(server_name.to_string()),
        );
        doc.insert("verify_keys".into(), CanonicalJsonValue::Object(verify));
        doc.insert("old_verify_keys".into(), CanonicalJsonValue::Object(old));
        doc.insert(
            "valid_until_ts".into(),
            CanonicalJsonValue::Integer(ruma::Int::new_saturating(now_ms() + KEY_VALIDITY_MS)),
        );
        self.sign_json(server_name, &mut doc)?;
        Ok(doc)
    }
}
