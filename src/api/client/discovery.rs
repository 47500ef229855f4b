//! Server discovery and capabilities: /versions, .well-known, /capabilities.

#![allow(deprecated)] // m.set_displayname / m.set_avatar_url: still read by clients

use std::{collections::BTreeMap, sync::Arc};

use axum::{Json, Router, extract::State, routing::get};
use ruma::api::client::discovery::{
    discover_homeserver::{self, HomeserverInfo},
    get_capabilities::{
        self,
        v3::{
            Capabilities, ChangePasswordCapability, GetLoginTokenCapability,
            ProfileFieldsCapability, RoomVersionStability, RoomVersionsCapability,
            SetAvatarUrlCapability, SetDisplayNameCapability, ThirdPartyIdChangesCapability,
        },
    },
    get_supported_versions,
};
use serde_json::{Value as JsonValue, json};

use crate::{
    error::Result,
    http::{
        Ruma,
        extract::{Patches, route_patched},
        route,
    },
    server::Homeserver,
};

/// Spec versions whose account, session and profile APIs axon implements. Rooms and sync
/// arrive with later work; clients probe those endpoints themselves.
const SUPPORTED_VERSIONS: &[&str] = &[
    "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6", "v1.7", "v1.8", "v1.9", "v1.10",
    "v1.11", "v1.12", "v1.13", "v1.14", "v1.15", "v1.16", "v1.17", "v1.18", "v1.19",
];

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = route(router, versions);
    let router = route(router, well_known_client);
    let patches = Patches {
        request: None,
        response: Some(explicit_capabilities),
    };
    let router = route_patched(router, capabilities, patches);
    router
        .route("/.well-known/matrix/server", get(well_known_server))
        .route("/.well-known/matrix/support", get(well_known_support))
        .route(
            "/.well-known/matrix/policy_server",
            get(well_known_policy_server),
        )
}

/// `/.well-known/matrix/policy_server`: axon is not a policy server, so 404 (the spec's
/// answer when no policy server information is available), said plainly.
async fn well_known_policy_server() -> crate::http::error::ApiError {
    crate::error::Error::NotFound("this server is not a policy server".into()).into()
}

/// `/.well-known/matrix/support` from `well_known.support_contacts` and `support_page`;
/// 404 when neither is configured, as the spec asks.
async fn well_known_support(
    State(hs): State<Arc<Homeserver>>,
) -> std::result::Result<Json<JsonValue>, crate::http::error::ApiError> {
    let config = &hs.config.well_known;
    if config.support_contacts.is_empty() && config.support_page.is_none() {
        return Err(crate::error::Error::NotFound("no support information here".into()).into());
    }
    let mut answer = json!({});
    if !config.support_contacts.is_empty() {
        answer["contacts"] = json!(config.support_contacts);
    }
    if let Some(page) = &config.support_page {
        answer["support_page"] = json!(page);
    }
    Ok(Json(answer))
}

/// Unstable features implemented here, advertised in /versions as clients probe for them.
const UNSTABLE_FEATURES: &[&str] = &["org.matrix.msc3814", "org.matrix.simplified_msc3575"];

async fn versions(
    _hs: Arc<Homeserver>,
    _req: Ruma<get_supported_versions::Request>,
) -> Result<get_supported_versions::Response> {
    let mut response = get_supported_versions::Response::new(
        SUPPORTED_VERSIONS.iter().map(|v| (*v).to_owned()).collect(),
    );
    for feature in UNSTABLE_FEATURES {
        response
            .unstable_features
            .insert((*feature).to_owned(), true);
    }
    Ok(response)
}

async fn well_known_client(
    hs: Arc<Homeserver>,
    _req: Ruma<discover_homeserver::Request>,
) -> Result<discover_homeserver::Response> {
    Ok(discover_homeserver::Response::new(HomeserverInfo::new(
        hs.config.public_baseurl(),
    )))
}

/// Federation delegation. Not a client endpoint, so no ruma client type: the answer is
/// `m.server` from config; else the federation listener's port when axon has one (so the
/// name on 443 behind a proxy sends other servers to it), else port 443 behind a proxy.
async fn well_known_server(State(hs): State<Arc<Homeserver>>) -> Json<JsonValue> {
    let config = &hs.config;
    let server = config.well_known.server.clone().unwrap_or_else(|| {
        match (config.server_name.port(), config.listen.federation) {
            (Some(_), _) => config.server_name.to_string(),
            (None, Some(federation)) => {
                format!("{}:{}", config.server_name, federation.port())
            }
            (None, None) => format!("{}:443", config.server_name),
        }
    });
    Json(json!({ "m.server": server }))
}

/// ruma leaves out capabilities that hold their default (enabled); clients and sytest
/// expect each to be listed, as Synapse lists them.
fn explicit_capabilities(response: &mut serde_json::Value) {
    let Some(caps) = response
        .get_mut("capabilities")
        .and_then(|c| c.as_object_mut())
    else {
        return;
    };
    // (capability, the value ruma omits)
    for (name, omitted) in [
        ("m.change_password", true),
        ("m.set_displayname", true),
        ("m.set_avatar_url", true),
        ("m.3pid_changes", true),
        ("m.get_login_token", false),
    ] {
        caps.entry(name)
            .or_insert_with(|| serde_json::json!({ "enabled": omitted }));
    }
}

async fn capabilities(
    hs: Arc<Homeserver>,
    req: Ruma<get_capabilities::v3::Request>,
) -> Result<get_capabilities::v3::Response> {
    let mut caps = Capabilities::new();
    // Admins may suspend and lock accounts (users::moderation).
    let admin = req.requester.as_ref().is_some_and(|r| r.is_admin);
    caps.account_moderation = get_capabilities::v3::AccountModerationCapability::new(admin, admin);
    caps.change_password = ChangePasswordCapability::new(true);
    caps.room_versions = RoomVersionsCapability::new(
        hs.config.rooms.default_version.clone(),
        crate::rooms::create::supported_versions()
            .into_iter()
            .map(|v| (v, RoomVersionStability::Stable))
            .collect::<BTreeMap<_, _>>(),
    );
    caps.set_displayname = SetDisplayNameCapability::new(true);
    caps.set_avatar_url = SetAvatarUrlCapability::new(true);
    caps.thirdparty_id_changes = ThirdPartyIdChangesCapability::new(true);
    caps.get_login_token = GetLoginTokenCapability::new(true);
    caps.profile_fields = Some(ProfileFieldsCapability::new(true));
    Ok(get_capabilities::v3::Response::new(caps))
}
