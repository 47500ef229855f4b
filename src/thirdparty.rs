//! Third-party networks (`/thirdparty/*`): the protocols application services bridge to,
//! and lookups of their users and locations, asked of the appservices that declare those
//! protocols in their registrations (`/_matrix/app/v1/thirdparty/*`). An appservice that
//! does not answer, or answers badly, is left out (and logged).

use std::collections::BTreeMap;

use ruma::thirdparty::{Location, Protocol, User};
use serde_json::Value as JsonValue;

use crate::{
    appservice,
    config::Registration,
    error::{Error, Result},
    server::Homeserver,
};

fn encode(value: &str) -> String {
    url::form_urlencoded::byte_serialize(value.as_bytes()).collect()
}

fn query_string(fields: &BTreeMap<String, String>) -> String {
    let mut query = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in fields {
        query.append_pair(k, v);
    }
    query.finish()
}

/// The appservices that bridge `protocol`.
fn bridging<'a>(hs: &'a Homeserver, protocol: &'a str) -> impl Iterator<Item = &'a Registration> {
    hs.config
        .appservice_registrations
        .iter()
        .filter(move |r| r.protocols.iter().any(|p| p == protocol))
}

/// One protocol as its appservice describes it, each instance named for clients.
async fn ask_protocol(
    hs: &Homeserver,
    registration: &Registration,
    name: &str,
) -> Option<Protocol> {
    let mut answer = appservice::get_json(
        hs,
        registration,
        &format!("thirdparty/protocol/{}", encode(name)),
    )
    .await
    .ok()?;
    if let Some(instances) = answer
        .get_mut("instances")
        .and_then(JsonValue::as_array_mut)
    {
        for instance in instances {
            // The instance ID clients pass back to /publicRooms: unique on this server.
            if instance.get("instance_id").is_none()
                && let Some(network) = instance.get("network_id").cloned()
            {
                instance["instance_id"] = network;
            }
        }
    } else {
        answer["instances"] = JsonValue::Array(Vec::new());
    }
    match serde_json::from_value(answer) {
        Ok(protocol) => Some(protocol),
        Err(e) => {
            tracing::info!(appservice = %registration.id, protocol = name, "bad protocol answer: {e}");
            None
        }
    }
}

/// Every protocol some application service declares (and describes when asked).
pub async fn protocols(hs: &Homeserver) -> BTreeMap<String, Protocol> {
    let mut out = BTreeMap::new();
    for registration in &hs.config.appservice_registrations {
        for name in &registration.protocols {
            if out.contains_key(name) {
                continue;
            }
            if let Some(protocol) = ask_protocol(hs, registration, name).await {
                out.insert(name.clone(), protocol);
            }
        }
    }
    out
}

/// One protocol by name.
pub async fn protocol(hs: &Homeserver, name: &str) -> Result<Protocol> {
    for registration in bridging(hs, name) {
        if let Some(protocol) = ask_protocol(hs, registration, name).await {
            return Ok(protocol);
        }
    }
    Err(Error::NotFound(format!(
        "no application service bridges {name}"
    )))
}

/// Asks every appservice bridging `protocol` (or, with None, every appservice with
/// protocols) at `path` and joins their lists.
async fn gather<T: serde::de::DeserializeOwned>(
    hs: &Homeserver,
    protocol: Option<&str>,
    path: &str,
) -> Result<Vec<T>> {
    let registrations: Vec<&Registration> = match protocol {
        Some(name) => bridging(hs, name).collect(),
        None => hs
            .config
            .appservice_registrations
            .iter()
            .filter(|r| !r.protocols.is_empty())
            .collect(),
    };
    if let Some(name) = protocol
        && registrations.is_empty()
    {
        return Err(Error::NotFound(format!(
            "no application service bridges {name}"
        )));
    }
    let mut out = Vec::new();
    for registration in registrations {
        match appservice::get_json(hs, registration, path).await {
            Ok(JsonValue::Array(items)) => {
                out.extend(
                    items
                        .into_iter()
                        .filter_map(|i| serde_json::from_value(i).ok()),
                );
            }
            Ok(_) => {
                tracing::info!(appservice = %registration.id, "{path}: not a list");
            }
            Err(e) => {
                tracing::info!(appservice = %registration.id, "{path}: {e}");
            }
        }
    }
    Ok(out)
}

/// Locations (portal rooms) of `protocol` matching `fields`.
pub async fn locations(
    hs: &Homeserver,
    name: &str,
    fields: &BTreeMap<String, String>,
) -> Result<Vec<Location>> {
    let path = format!(
        "thirdparty/location/{}?{}",
        encode(name),
        query_string(fields)
    );
    gather(hs, Some(name), &path).await
}

/// Users of `protocol` matching `fields`.
pub async fn users(
    hs: &Homeserver,
    name: &str,
    fields: &BTreeMap<String, String>,
) -> Result<Vec<User>> {
    let path = format!("thirdparty/user/{}?{}", encode(name), query_string(fields));
    gather(hs, Some(name), &path).await
}

/// Third-party locations a Matrix room alias stands for.
pub async fn locations_for_alias(hs: &Homeserver, alias: &str) -> Result<Vec<Location>> {
    gather(
        hs,
        None,
        &format!("thirdparty/location?alias={}", encode(alias)),
    )
    .await
}

/// Third-party users a Matrix user ID stands for.
pub async fn users_for_user_id(hs: &Homeserver, user_id: &str) -> Result<Vec<User>> {
    gather(
        hs,
        None,
        &format!("thirdparty/user?userid={}", encode(user_id)),
    )
    .await
}
