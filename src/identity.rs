//! Identity servers (the Identity Service API, v2), as a client: binding and unbinding
//! 3PIDs, looking one up, storing a third-party invite, checking an invite key's
//! validity. The identity server is named by the client, so requests pass the outbound
//! address policy, and TLS is checked as for other homeservers (`federation.tls_ca_file`,
//! `federation.verify_certificates`).

use std::{sync::Arc, time::Duration};

use base64::Engine as _;
use ruma::{CanonicalJsonObject, CanonicalJsonValue, OwnedUserId, ServerName};
use serde::Deserialize;
use serde_json::{Value as JsonValue, json};
use sha2::{Digest, Sha256};

use crate::{
    error::{Error, Result},
    server::Homeserver,
};

const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Identity server answers are small JSON; anything larger is refused.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

pub struct IdentityClient {
    http: reqwest::Client,
}

/// The 3PID an identity server bound.
#[derive(Debug, Clone, Deserialize)]
pub struct Bound {
    pub medium: String,
    pub address: String,
}

/// An invite an identity server stored for a 3PID with no account yet.
#[derive(Debug, Clone)]
pub struct StoredInvite {
    pub token: String,
    pub display_name: String,
    /// (public key, key validity URL), the first being the one a client shows.
    pub public_keys: Vec<(String, String)>,
}

/// What a third-party invite stored with the identity server says about the room.
pub struct InviteDetails<'a> {
    pub medium: &'a str,
    pub address: &'a str,
    pub room_id: &'a str,
    pub sender: &'a str,
    pub room_alias: Option<&'a str>,
    pub room_name: Option<&'a str>,
    pub room_join_rules: Option<&'a str>,
    pub room_avatar_url: Option<&'a str>,
    pub sender_display_name: Option<&'a str>,
    pub sender_avatar_url: Option<&'a str>,
    pub room_type: Option<&'a str>,
}

impl IdentityClient {
    pub fn of(hs: &Homeserver) -> Result<Arc<Self>> {
        hs.extensions.get_or_try_init(|| {
            let tls = crate::outbound::tls_client_config(
                hs.config.federation.verify_certificates,
                hs.config.federation.tls_ca_file.as_deref(),
            )
            .map_err(Error::Internal)?;
            let http = hs
                .outbound
                .client_with_tls(REQUEST_TIMEOUT, &tls)
                .map_err(|e| Error::Internal(format!("identity server client: {e}")))?;
            Ok(Self { http })
        })
    }

    /// Binds the 3PID the identity server validated in session `sid` to `mxid`.
    pub async fn bind(
        &self,
        id_server: &str,
        id_access_token: &str,
        sid: &str,
        client_secret: &str,
        mxid: &str,
    ) -> Result<Bound> {
        decode(
            self.post(
                id_server,
                "/_matrix/identity/v2/3pid/bind",
                Some(id_access_token),
                None,
                &json!({ "sid": sid, "client_secret": client_secret, "mxid": mxid }),
            )
            .await?,
        )
    }

    /// Asks the identity server to forget `mxid`'s binding of a 3PID, as this server (the
    /// request is X-Matrix signed). `Ok(false)`: the server does not support it (or had
    /// no such binding).
    pub async fn unbind(
        &self,
        hs: &Homeserver,
        id_server: &str,
        mxid: &str,
        medium: &str,
        address: &str,
    ) -> Result<bool> {
        let path = "/_matrix/identity/v2/3pid/unbind";
        let content = json!({
            "mxid": mxid,
            "threepid": { "medium": medium, "address": address },
        });
        let authorization = x_matrix(hs, id_server, "POST", path, &content)?;
        match self
            .post(id_server, path, None, Some(&authorization), &content)
            .await
        {
            Ok(_) => Ok(true),
            Err(Error::IdentityServer {
                status: 400 | 404 | 405,
                ..
            }) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The user a 3PID is bound to, by the v2 hashed lookup (sha256 when offered, else
    /// the plain `none` algorithm).
    pub async fn lookup(
        &self,
        id_server: &str,
        id_access_token: &str,
        medium: &str,
        address: &str,
    ) -> Result<Option<OwnedUserId>> {
        #[derive(Deserialize)]
        struct HashDetails {
            algorithms: Vec<String>,
            lookup_pepper: String,
        }
        #[derive(Deserialize)]
        struct Lookup {
            #[serde(default)]
            mappings: serde_json::Map<String, JsonValue>,
        }
        let details: HashDetails = decode(
            self.get(
                id_server,
                "/_matrix/identity/v2/hash_details",
                id_access_token,
            )
            .await?,
        )?;
        let (algorithm, key) = if details.algorithms.iter().any(|a| a == "sha256") {
            let digest = Sha256::digest(format!("{address} {medium} {}", details.lookup_pepper));
            (
                "sha256",
                base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest),
            )
        } else if details.algorithms.iter().any(|a| a == "none") {
            ("none", format!("{address} {medium}"))
        } else {
            return Err(Error::IdentityServer {
                status: 502,
                message: "the identity server offers no lookup algorithm this server knows".into(),
            });
        };
        let found: Lookup = decode(
            self.post(
                id_server,
                "/_matrix/identity/v2/lookup",
                Some(id_access_token),
                None,
                &json!({
                    "addresses": [key],
                    "algorithm": algorithm,
                    "pepper": details.lookup_pepper,
                }),
            )
            .await?,
        )?;
        Ok(found
            .mappings
            .get(&key)
            .and_then(JsonValue::as_str)
            .and_then(|id| ruma::UserId::parse(id).ok()))
    }

    /// Stores a third-party invite; the identity server mails the invitee.
    pub async fn store_invite(
        &self,
        id_server: &str,
        id_access_token: &str,
        invite: &InviteDetails<'_>,
    ) -> Result<StoredInvite> {
        #[derive(Deserialize)]
        struct Key {
            public_key: String,
            #[serde(default)]
            key_validity_url: Option<String>,
        }
        #[derive(Deserialize)]
        struct Stored {
            token: String,
            #[serde(default)]
            display_name: String,
            #[serde(default)]
            public_keys: Vec<Key>,
            #[serde(default)]
            public_key: Option<String>,
        }
        let mut body = json!({
            "medium": invite.medium,
            "address": invite.address,
            "room_id": invite.room_id,
            "sender": invite.sender,
        });
        for (key, value) in [
            ("room_alias", invite.room_alias),
            ("room_name", invite.room_name),
            ("room_join_rules", invite.room_join_rules),
            ("room_avatar_url", invite.room_avatar_url),
            ("sender_display_name", invite.sender_display_name),
            ("sender_avatar_url", invite.sender_avatar_url),
            ("room_type", invite.room_type),
        ] {
            if let Some(value) = value {
                body[key] = value.into();
            }
        }
        let stored: Stored = decode(
            self.post(
                id_server,
                "/_matrix/identity/v2/store-invite",
                Some(id_access_token),
                None,
                &body,
            )
            .await?,
        )?;
        let default_url = format!("https://{id_server}/_matrix/identity/v2/pubkey/isvalid");
        let mut public_keys: Vec<(String, String)> = stored
            .public_keys
            .into_iter()
            .map(|k| {
                let url = k.key_validity_url.unwrap_or_else(|| default_url.clone());
                (k.public_key, url)
            })
            .collect();
        if public_keys.is_empty()
            && let Some(key) = stored.public_key
        {
            public_keys.push((key, default_url));
        }
        if public_keys.is_empty() || stored.token.is_empty() {
            return Err(Error::IdentityServer {
                status: 502,
                message: "the identity server stored the invite but gave no key or token".into(),
            });
        }
        Ok(StoredInvite {
            token: stored.token,
            display_name: stored.display_name,
            public_keys,
        })
    }

    /// Whether the identity server still vouches for an invite key (its key validity URL).
    /// An unreachable server or a strange answer counts as no.
    pub async fn key_is_valid(
        &self,
        hs: &Homeserver,
        validity_url: &str,
        public_key: &str,
    ) -> bool {
        let Ok(mut url) = reqwest::Url::parse(validity_url) else {
            return false;
        };
        if url.scheme() != "https" || hs.outbound.check_url(&url).is_err() {
            return false;
        }
        url.query_pairs_mut().append_pair("public_key", public_key);
        let Ok(response) = self.http.get(url).send().await else {
            return false;
        };
        if !response.status().is_success() {
            return false;
        }
        match read_limited(response).await {
            Ok(body) => serde_json::from_slice::<JsonValue>(&body)
                .ok()
                .and_then(|v| v.get("valid").and_then(JsonValue::as_bool))
                .unwrap_or(false),
            Err(_) => false,
        }
    }

    async fn get(&self, id_server: &str, path: &str, token: &str) -> Result<Vec<u8>> {
        let url = base_url(id_server)?.join(path).map_err(bad_name)?;
        let request = self.http.get(url).bearer_auth(token);
        finish(id_server, request).await
    }

    async fn post(
        &self,
        id_server: &str,
        path: &str,
        token: Option<&str>,
        authorization: Option<&str>,
        body: &JsonValue,
    ) -> Result<Vec<u8>> {
        let url = base_url(id_server)?.join(path).map_err(bad_name)?;
        let mut request = self.http.post(url).json(body);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(authorization) = authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        finish(id_server, request).await
    }
}

/// Refuses an identity server name that is not a server name (host and optional port).
pub fn check_name(id_server: &str) -> Result<()> {
    base_url(id_server).map(drop)
}

/// `https://<id_server>`; the name must be a server name (host and optional port), so a
/// client cannot slip a path or another scheme in.
fn base_url(id_server: &str) -> Result<reqwest::Url> {
    let name = ServerName::parse(id_server).map_err(|_| {
        Error::InvalidParam(format!("{id_server:?} is not an identity server name"))
    })?;
    reqwest::Url::parse(&format!("https://{name}")).map_err(bad_name)
}

fn bad_name(e: url::ParseError) -> Error {
    Error::InvalidParam(format!("identity server name: {e}"))
}

async fn finish(id_server: &str, request: reqwest::RequestBuilder) -> Result<Vec<u8>> {
    let response = request.send().await.map_err(|e| {
        tracing::info!("identity server {id_server}: {e}");
        Error::IdentityServer {
            status: 502,
            message: format!("the identity server {id_server} could not be reached"),
        }
    })?;
    let status = response.status();
    let body = read_limited(response).await?;
    if !status.is_success() {
        let detail = serde_json::from_slice::<JsonValue>(&body)
            .ok()
            .and_then(|v| {
                v.get("error")
                    .and_then(JsonValue::as_str)
                    .map(str::to_owned)
            })
            .unwrap_or_else(|| status.to_string());
        return Err(Error::IdentityServer {
            status: status.as_u16(),
            message: format!("the identity server {id_server} refused: {detail}"),
        });
    }
    Ok(body)
}

async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await.map_err(|e| Error::IdentityServer {
        status: 502,
        message: format!("reading the identity server's answer: {e}"),
    })? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(Error::IdentityServer {
                status: 502,
                message: "the identity server's answer is too large".into(),
            });
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn decode<T: serde::de::DeserializeOwned>(body: Vec<u8>) -> Result<T> {
    serde_json::from_slice(&body).map_err(|e| Error::IdentityServer {
        status: 502,
        message: format!("the identity server's answer is not understood: {e}"),
    })
}

/// The X-Matrix Authorization header of a request from this server to `destination`.
fn x_matrix(
    hs: &Homeserver,
    destination: &str,
    method: &str,
    uri: &str,
    content: &JsonValue,
) -> Result<String> {
    let origin = hs.config.server_name();
    let mut object = CanonicalJsonObject::new();
    object.insert("method".into(), CanonicalJsonValue::String(method.into()));
    object.insert("uri".into(), CanonicalJsonValue::String(uri.into()));
    object.insert(
        "origin".into(),
        CanonicalJsonValue::String(origin.to_string()),
    );
    object.insert(
        "destination".into(),
        CanonicalJsonValue::String(destination.into()),
    );
    let content: CanonicalJsonValue = content
        .clone()
        .try_into()
        .map_err(|e| Error::Internal(format!("canonical JSON: {e}")))?;
    object.insert("content".into(), content);
    hs.keys.sign_json(origin, &mut object)?;
    let key_id = hs.keys.key_id();
    let signature = object
        .get("signatures")
        .and_then(|s| match s {
            CanonicalJsonValue::Object(by_server) => by_server.get(origin.as_str()),
            _ => None,
        })
        .and_then(|s| match s {
            CanonicalJsonValue::Object(by_key) => by_key.get(&key_id),
            _ => None,
        })
        .and_then(|s| match s {
            CanonicalJsonValue::String(sig) => Some(sig.clone()),
            _ => None,
        })
        .ok_or_else(|| Error::Internal("signing the request".into()))?;
    Ok(format!(
        "X-Matrix origin=\"{origin}\",destination=\"{destination}\",key=\"{key_id}\",sig=\"{signature}\""
    ))
}
