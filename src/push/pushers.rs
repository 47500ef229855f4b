//! Pushers (`GET /pushers`, `POST /pushers/set`): where a user's notifications are sent.
//! Only `http` pushers (a push gateway); a pusher goes away with the device that set it
//! and, for other devices, with a password change.

use serde_json::Value as JsonValue;

use crate::{
    error::{Error, Result},
    server::{Homeserver, now_ms},
    storage::pushers::NewPusher,
    users::Requester,
};

/// The path the Push Gateway API puts its one endpoint at; the spec requires it in URLs.
const NOTIFY_PATH: &str = "/_matrix/push/v1/notify";
const MAX_APP_ID: usize = 64;
const MAX_PUSHKEY: usize = 512;

fn bad(why: impl Into<String>) -> Error {
    Error::InvalidParam(why.into())
}

/// Checks an http pusher's `data`: its URL (http or https, the notify path) and format.
fn check_http_data(data: &JsonValue) -> Result<String> {
    let url = data["url"]
        .as_str()
        .ok_or_else(|| Error::MissingParam("an http pusher needs data.url".into()))?;
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .ok_or_else(|| bad("data.url must be an http or https URL"))?;
    let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("");
    let path = path.split(['?', '#']).next().unwrap_or("");
    if rest.starts_with('/') || path != NOTIFY_PATH {
        return Err(bad(format!(
            "data.url must be a host with the path {NOTIFY_PATH}"
        )));
    }
    // `event_id_only` is the one format the spec names; any other string means the full
    // notification (as Synapse, which keeps what the client sent).
    match data.get("format") {
        None | Some(JsonValue::Null) | Some(JsonValue::String(_)) => {}
        Some(_) => return Err(bad("data.format must be a string")),
    }
    Ok(url.to_owned())
}

/// `POST /pushers/set` with a pusher: adds or replaces it (see `append`).
pub async fn set_pusher(
    hs: &Homeserver,
    requester: &Requester,
    pusher: &JsonValue,
    append: bool,
) -> Result<()> {
    let app_id = pusher["app_id"].as_str().unwrap_or_default();
    let pushkey = pusher["pushkey"].as_str().unwrap_or_default();
    if app_id.is_empty() || app_id.len() > MAX_APP_ID {
        return Err(bad(format!("app_id must be 1 to {MAX_APP_ID} bytes")));
    }
    if pushkey.is_empty() || pushkey.len() > MAX_PUSHKEY {
        return Err(bad(format!("pushkey must be 1 to {MAX_PUSHKEY} bytes")));
    }
    let url = match pusher["kind"].as_str() {
        Some("http") => check_http_data(&pusher["data"])?,
        Some("email") => return Err(bad("email pushers are not supported by this server")),
        _ => return Err(bad("unknown pusher kind")),
    };
    let max = hs.config.limits.max_pushers;
    let added = hs
        .storage
        .set_pusher(
            &NewPusher {
                user_id: requester.user_id.as_str(),
                device_id: requester.device_id.as_str(),
                app_id,
                pushkey,
                kind: "http",
                url: Some(&url),
                pusher,
                now_ms: now_ms(),
            },
            append,
            max,
        )
        .await?;
    if !added {
        return Err(Error::QuotaExceeded(format!(
            "at most {max} pushers per user"
        )));
    }
    Ok(())
}

/// `POST /pushers/set` with `kind: null`: removes the pusher (if there was one).
pub async fn delete_pusher(
    hs: &Homeserver,
    requester: &Requester,
    app_id: &str,
    pushkey: &str,
) -> Result<()> {
    hs.storage
        .delete_pusher(requester.user_id.as_str(), app_id, pushkey)
        .await?;
    Ok(())
}

/// `GET /pushers`.
pub async fn pushers(hs: &Homeserver, requester: &Requester) -> Result<Vec<JsonValue>> {
    Ok(hs.storage.pushers(requester.user_id.as_str()).await?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn http_pusher_urls() {
        for ok in [
            "https://push.example.org/_matrix/push/v1/notify",
            "http://127.0.0.1:5000/_matrix/push/v1/notify",
        ] {
            assert!(check_http_data(&json!({ "url": ok })).is_ok(), "{ok}");
        }
        for bad in [
            "ftp://push.example.org/_matrix/push/v1/notify",
            "https://push.example.org/notify",
            "https://push.example.org",
            "https:///_matrix/push/v1/notify",
            "push.example.org/_matrix/push/v1/notify",
        ] {
            assert!(check_http_data(&json!({ "url": bad })).is_err(), "{bad}");
        }
        assert!(check_http_data(&json!({})).is_err());
        let url = "https://p.example/_matrix/push/v1/notify";
        assert!(check_http_data(&json!({ "url": url, "format": "event_id_only" })).is_ok());
        assert!(check_http_data(&json!({ "url": url, "format": "full" })).is_ok());
        assert!(check_http_data(&json!({ "url": url, "format": 1 })).is_err());
    }
}
