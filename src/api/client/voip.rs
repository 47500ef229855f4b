//! `GET /voip/turnServer`. A plain handler: with no TURN configured the answer is `{}`,
//! which ruma's response type cannot express.

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    response::{IntoResponse, Response},
    routing::get,
};

use crate::{
    http::{error::ApiError, extract::Authed},
    server::{Homeserver, now_ms},
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    router
        .route("/_matrix/client/v3/voip/turnServer", get(turn_server))
        .route("/_matrix/client/r0/voip/turnServer", get(turn_server))
}

async fn turn_server(
    State(hs): State<Arc<Homeserver>>,
    Authed(requester): Authed,
) -> std::result::Result<Response, ApiError> {
    let now_secs = u64::try_from(now_ms() / 1000).unwrap_or(0);
    let answer = crate::voip::turn_server(&hs.config.voip, &requester, now_secs)?;
    Ok(Json(answer).into_response())
}
