//! The deprecated sync endpoints (spec: "old sync" and room initial sync), still used by
//! older clients, bots and test suites: `/events`, `/initialSync`,
//! `/rooms/{roomId}/initialSync` and `/events/{eventId}`. Plain axum handlers: ruma has
//! no types for most of them.

use std::{collections::HashMap, sync::Arc, time::Duration};

use axum::{
    Json, Router,
    extract::State,
    response::{IntoResponse, Response},
    routing::get,
};
use ruma::RoomId;
use serde_json::json;

use crate::{
    error::{Error, Result},
    http::{
        error::ApiError,
        extract::{Authed, MatrixPath, MatrixQuery},
    },
    server::Homeserver,
    sync::legacy,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let mut router = router;
    for version in ["r0", "v3"] {
        router = router
            .route(&format!("/_matrix/client/{version}/events"), get(events))
            .route(
                &format!("/_matrix/client/{version}/initialSync"),
                get(initial_sync),
            )
            .route(
                &format!("/_matrix/client/{version}/rooms/{{room_id}}/initialSync"),
                get(room_initial_sync),
            )
            .route(
                &format!("/_matrix/client/{version}/events/{{event_id}}"),
                get(event),
            );
    }
    router
}

fn number(query: &HashMap<String, String>, key: &str) -> Result<Option<u64>> {
    query
        .get(key)
        .map(|v| {
            v.parse::<u64>()
                .map_err(|_| Error::InvalidParam(format!("{key} must be a non-negative integer")))
        })
        .transpose()
}

fn limit(query: &HashMap<String, String>) -> Result<Option<u32>> {
    Ok(number(query, "limit")?.map(|l| u32::try_from(l).unwrap_or(u32::MAX)))
}

async fn events(
    State(hs): State<Arc<Homeserver>>,
    Authed(requester): Authed,
    MatrixQuery(query): MatrixQuery<HashMap<String, String>>,
) -> std::result::Result<Response, ApiError> {
    let timeout = Duration::from_millis(number(&query, "timeout")?.unwrap_or(30_000));
    // Accepted for the spec's sake (a page holds what is new); checked all the same.
    limit(&query)?;
    let room_id = query
        .get("room_id")
        .map(|r| RoomId::parse(r.as_str()))
        .transpose()
        .map_err(|_| Error::InvalidParam("room_id is not a room ID".into()))?;
    let page = legacy::events(
        &hs,
        &requester,
        query.get("from").map(String::as_str),
        timeout,
        room_id.as_deref(),
    )
    .await?;
    Ok(Json(json!({ "chunk": page.chunk, "start": page.start, "end": page.end })).into_response())
}

async fn initial_sync(
    State(hs): State<Arc<Homeserver>>,
    Authed(requester): Authed,
    MatrixQuery(query): MatrixQuery<HashMap<String, String>>,
) -> std::result::Result<Response, ApiError> {
    let archived = query.get("archived").is_some_and(|a| a == "true");
    let answer = legacy::initial_sync(&hs, &requester, limit(&query)?, archived).await?;
    Ok(Json(answer).into_response())
}

async fn room_initial_sync(
    State(hs): State<Arc<Homeserver>>,
    Authed(requester): Authed,
    MatrixPath(room_id): MatrixPath<String>,
    MatrixQuery(query): MatrixQuery<HashMap<String, String>>,
) -> std::result::Result<Response, ApiError> {
    let room_id =
        RoomId::parse(room_id.as_str()).map_err(|_| Error::InvalidParam("not a room ID".into()))?;
    let answer = legacy::room_initial_sync(&hs, &requester, &room_id, limit(&query)?).await?;
    Ok(Json(answer).into_response())
}

async fn event(
    State(hs): State<Arc<Homeserver>>,
    Authed(requester): Authed,
    MatrixPath(event_id): MatrixPath<String>,
) -> std::result::Result<Response, ApiError> {
    let answer = crate::rooms::timeline::event_by_id(&hs, &requester, &event_id).await?;
    Ok(Json(answer).into_response())
}
