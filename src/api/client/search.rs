//! `POST /search`. A plain handler decoding its own body (read under the same limits and
//! JSON guard as every body): the answer is built as JSON.

use std::{collections::HashMap, sync::Arc};

use axum::{
    Json, Router,
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
    rooms::search::{self, SearchBody},
    server::Homeserver,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    router
        .route("/_matrix/client/v3/search", post(search_events))
        .route("/_matrix/client/r0/search", post(search_events))
}

async fn search_events(
    State(hs): State<Arc<Homeserver>>,
    Authed(requester): Authed,
    MatrixQuery(query): MatrixQuery<HashMap<String, String>>,
    AuthedBody(body): AuthedBody,
) -> std::result::Result<Response, ApiError> {
    let body: SearchBody =
        serde_json::from_slice(&body).map_err(|e| Error::BadJson(e.to_string()))?;
    let answer = search::search(
        &hs,
        &requester,
        &body,
        query.get("next_batch").map(String::as_str),
    )
    .await?;
    Ok(Json(answer).into_response())
}
