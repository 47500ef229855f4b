//! `POST /_matrix/client/unstable/org.matrix.simplified_msc3575/sync` (MSC4186). A plain
//! axum handler: the list filters Synapse accepts (`spaces`, `tags`) are wider than
//! ruma's request type, so the body is read here.

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    Router,
    extract::State,
    response::{IntoResponse, Response},
    routing::post,
};

use crate::{
    error::Error,
    http::{
        error::ApiError,
        extract::{Authed, AuthedBody, MatrixQuery},
    },
    server::Homeserver,
    sync::sliding::{self, SlidingRequest},
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    router.route(
        "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync",
        post(sliding_sync),
    )
}

async fn sliding_sync(
    State(hs): State<Arc<Homeserver>>,
    Authed(requester): Authed,
    MatrixQuery(query): MatrixQuery<HashMap<String, String>>,
    AuthedBody(body): AuthedBody,
) -> Result<Response, ApiError> {
    // An empty body has been read as `{}`.
    let req: SlidingRequest =
        serde_json::from_slice(&body).map_err(|e| Error::BadJson(e.to_string()))?;
    let timeout = match query.get("timeout") {
        Some(t) => Duration::from_millis(
            t.parse()
                .map_err(|_| Error::InvalidParam("timeout must be a number of ms".into()))?,
        ),
        None => Duration::ZERO,
    };
    let set_presence = match query.get("set_presence").map(String::as_str) {
        None | Some("online") => ruma::presence::PresenceState::Online,
        Some("offline") => ruma::presence::PresenceState::Offline,
        Some("unavailable") => ruma::presence::PresenceState::Unavailable,
        Some(other) => {
            return Err(Error::InvalidParam(format!("unknown set_presence {other}")).into());
        }
    };
    let response = sliding::sliding_sync(
        &hs,
        &requester,
        query.get("pos").map(String::as_str),
        timeout,
        &set_presence,
        req,
    )
    .await?;
    Ok(axum::Json(response).into_response())
}
