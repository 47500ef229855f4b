//! Shared-secret registration, compatible with Synapse's `/_synapse/admin/v1/register`
//! and its `register_new_matrix_user` tool: an operator holding `registration.shared_secret`
//! creates accounts (admins included) whatever the registration mode.

use hmac::{Hmac, Mac};
use ruma::{OwnedDeviceId, OwnedUserId};
use sha1::Sha1;

use super::{ClientInfo, IssuedTokens, register, start_session};
use crate::secrets;
use crate::{
    error::{Error, Result},
    ratelimit::Action,
    server::{Homeserver, now_ms},
};

const NONCE_LIFETIME_MS: i64 = 60_000;

pub struct SharedSecretRequest<'a> {
    pub nonce: &'a str,
    pub username: &'a str,
    pub password: &'a str,
    pub admin: bool,
    pub user_type: Option<&'a str>,
    pub displayname: Option<&'a str>,
    /// Hex HMAC-SHA1 over nonce, username, password, admin flag (and user type).
    pub mac: &'a str,
}

fn secret(hs: &Homeserver) -> Result<&str> {
    hs.config
        .registration
        .shared_secret
        .as_deref()
        .ok_or_else(|| Error::Forbidden("shared-secret registration is not enabled".into()))
}

pub async fn new_nonce(hs: &Homeserver) -> Result<String> {
    secret(hs)?;
    let nonce = secrets::new_token("");
    let now = now_ms();
    hs.storage
        .insert_register_nonce(&nonce, now + NONCE_LIFETIME_MS, now)
        .await?;
    Ok(nonce)
}

fn expected_mac(secret: &str, req: &SharedSecretRequest<'_>) -> Hmac<Sha1> {
    let mut mac =
        Hmac::<Sha1>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(req.nonce.as_bytes());
    mac.update(b"\0");
    mac.update(req.username.as_bytes());
    mac.update(b"\0");
    mac.update(req.password.as_bytes());
    mac.update(b"\0");
    mac.update(if req.admin {
        b"admin".as_slice()
    } else {
        b"notadmin".as_slice()
    });
    if let Some(user_type) = req.user_type {
        mac.update(b"\0");
        mac.update(user_type.as_bytes());
    }
    mac
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

pub async fn register(
    hs: &Homeserver,
    req: SharedSecretRequest<'_>,
    client: &ClientInfo,
) -> Result<(OwnedUserId, OwnedDeviceId, IssuedTokens)> {
    let secret = secret(hs)?;
    hs.rate_limiter
        .check(Action::Registration, client.rate_key())?;
    if !hs.storage.take_register_nonce(req.nonce, now_ms()).await? {
        return Err(Error::InvalidParam("unrecognised or expired nonce".into()));
    }
    let given = decode_hex(req.mac).ok_or_else(|| Error::Forbidden("HMAC incorrect".into()))?;
    // verify_slice compares in constant time
    expected_mac(secret, &req)
        .verify_slice(&given)
        .map_err(|_| Error::Forbidden("HMAC incorrect".into()))?;

    let user_id = register::check_localpart(hs, &req.username.to_lowercase())?;
    let hash = secrets::hash_password(req.password).await?;
    let user_id =
        register::create_account(hs, Some(user_id), Some(&hash), req.admin, false).await?;
    if let Some(name) = req.displayname {
        hs.storage
            .set_profile_field(user_id.as_str(), "displayname", &name.into())
            .await?;
    }
    let (device_id, tokens) = start_session(hs, &user_id, None, None, false, client).await?;
    Ok((user_id, device_id, tokens))
}

/// The MAC a client computes; exposed for tests and tools.
pub fn compute_mac(
    secret: &str,
    nonce: &str,
    username: &str,
    password: &str,
    admin: bool,
) -> String {
    let req = SharedSecretRequest {
        nonce,
        username,
        password,
        admin,
        user_type: None,
        displayname: None,
        mac: "",
    };
    expected_mac(secret, &req)
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}
