//! Admin APIs outside the Client-Server spec. Paths follow Synapse's, so its tools work.

use std::sync::Arc;

use axum::{Json, Router, extract::State, routing::get};
use serde::Deserialize;
use serde_json::{Value as JsonValue, json};

use crate::{
    http::{error::ApiError, extract::JsonBody},
    server::Homeserver,
    users::shared_secret,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    router
        .route(
            "/_synapse/admin/v1/register",
            get(register_nonce).post(register),
        )
        .route("/_axon/admin/v1/appservices", get(appservices))
}

/// The loaded application services and their queues (server admins only).
async fn appservices(
    State(hs): State<Arc<Homeserver>>,
    crate::http::extract::Authed(requester): crate::http::extract::Authed,
) -> Result<Json<JsonValue>, ApiError> {
    let list = crate::appservice::status(&hs, &requester).await?;
    Ok(Json(json!({ "appservices": list })))
}

async fn register_nonce(State(hs): State<Arc<Homeserver>>) -> Result<Json<JsonValue>, ApiError> {
    let nonce = shared_secret::new_nonce(&hs).await?;
    Ok(Json(json!({ "nonce": nonce })))
}

#[derive(Deserialize)]
struct RegisterBody {
    nonce: String,
    username: String,
    password: String,
    #[serde(default)]
    admin: bool,
    #[serde(default)]
    user_type: Option<String>,
    #[serde(default)]
    displayname: Option<String>,
    mac: String,
}

async fn register(
    State(hs): State<Arc<Homeserver>>,
    req: JsonBody<RegisterBody>,
) -> Result<Json<JsonValue>, ApiError> {
    let b = &req.body;
    let (user_id, device_id, tokens) = shared_secret::register(
        &hs,
        shared_secret::SharedSecretRequest {
            nonce: &b.nonce,
            username: &b.username,
            password: &b.password,
            admin: b.admin,
            user_type: b.user_type.as_deref(),
            displayname: b.displayname.as_deref(),
            mac: &b.mac,
        },
        &req.client,
    )
    .await?;
    Ok(Json(json!({
        "user_id": user_id,
        "device_id": device_id,
        "access_token": tokens.access_token,
        "home_server": hs.config.server_name,
    })))
}
