//! `GET /voip/turnServer`: the TURN servers clients use for calls across NAT. With a
//! shared secret (coturn's `use-auth-secret`), time-limited credentials made per user:
//! username `<expiry>:<user ID>`, password base64(HMAC-SHA1(secret, username)); else
//! the configured static username and password. Nothing configured: an empty answer.

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value as JsonValue, json};
use sha1::Sha1;

use crate::{
    config::VoipConfig,
    error::{Error, Result},
    users::Requester,
};

/// The TURN credentials for the requester, as JSON (`{}` when no TURN is configured).
pub fn turn_server(config: &VoipConfig, requester: &Requester, now_secs: u64) -> Result<JsonValue> {
    if config.turn_uris.is_empty() {
        return Ok(json!({}));
    }
    if requester.is_guest && !config.turn_allow_guests {
        return Err(Error::Forbidden("guests may not use TURN here".into()));
    }
    let ttl = config.turn_user_lifetime_secs;
    let (username, password) = match (&config.turn_shared_secret, &config.turn_username) {
        (Some(secret), _) => {
            let username = format!("{}:{}", now_secs + ttl, requester.user_id);
            let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes())
                .map_err(|e| Error::Internal(format!("TURN secret: {e}")))?;
            mac.update(username.as_bytes());
            let password =
                base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
            (username, password)
        }
        (None, Some(username)) => (
            username.clone(),
            config.turn_password.clone().unwrap_or_default(),
        ),
        (None, None) => return Ok(json!({})),
    };
    Ok(json!({
        "username": username,
        "password": password,
        "uris": config.turn_uris,
        "ttl": ttl,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requester(guest: bool) -> Requester {
        Requester {
            user_id: "@alice:example.org".try_into().unwrap(),
            device_id: "DEV".into(),
            is_admin: false,
            is_guest: guest,
            is_suspended: false,
            is_locked: false,
            appservice: None,
        }
    }

    #[test]
    fn coturn_rest_credentials() {
        let config = VoipConfig {
            turn_uris: vec!["turn:turn.example.org:3478?transport=udp".into()],
            turn_shared_secret: Some("s3cret".into()),
            turn_user_lifetime_secs: 3600,
            ..Default::default()
        };
        let answer = turn_server(&config, &requester(false), 1_000_000).unwrap();
        assert_eq!(answer["username"], "1003600:@alice:example.org");
        // base64(HMAC-SHA1("s3cret", "1003600:@alice:example.org")), as coturn checks it.
        let mut mac = Hmac::<Sha1>::new_from_slice(b"s3cret").unwrap();
        mac.update(b"1003600:@alice:example.org");
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(answer["password"], expected);
        assert_eq!(answer["ttl"], 3600);
        assert!(
            turn_server(&config, &requester(true), 0).is_err(),
            "no guests by default"
        );
    }

    #[test]
    fn static_credentials_and_nothing_configured() {
        let config = VoipConfig {
            turn_uris: vec!["turns:turn.example.org".into()],
            turn_username: Some("user".into()),
            turn_password: Some("pass".into()),
            turn_allow_guests: true,
            ..Default::default()
        };
        let answer = turn_server(&config, &requester(true), 0).unwrap();
        assert_eq!(answer["username"], "user");
        assert_eq!(answer["password"], "pass");
        assert_eq!(
            turn_server(&VoipConfig::default(), &requester(false), 0).unwrap(),
            json!({})
        );
    }
}
