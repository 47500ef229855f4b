//! Queries: `/query/profile`, `/query/directory`, the public room list
//! (`/publicRooms`), spaces (`/hierarchy`) and OpenID tokens (`/openid/userinfo`).

use std::{collections::HashMap, sync::Arc};

use axum::response::IntoResponse;

use ruma::{
    api::federation::{
        directory::{get_public_rooms, get_public_rooms_filtered},
        query::{get_profile_information, get_room_information},
        space::{SpaceHierarchyParentSummary, get_hierarchy},
    },
    profile::UserProfile,
};

use super::events::origin;
use crate::{
    error::{Error, Result},
    http::{Ruma, error::ApiError, extract::MatrixQuery},
    server::Homeserver,
};

pub async fn profile(
    hs: Arc<Homeserver>,
    req: Ruma<get_profile_information::v1::Request>,
) -> Result<get_profile_information::v1::Response> {
    origin(&req)?;
    let b = &req.body;
    if b.user_id.server_name() != hs.config.server_name() {
        return Err(Error::InvalidParam(
            "the user is not one of this server's".into(),
        ));
    }
    let fields: serde_json::Map<String, serde_json::Value> = match &b.field {
        Some(field) => crate::users::profile::field(&hs, &b.user_id, field.as_str())
            .await?
            .map(|v| (field.as_str().to_owned(), v))
            .into_iter()
            .collect(),
        None => crate::users::profile::profile(&hs, &b.user_id)
            .await?
            .into_iter()
            .collect(),
    };
    let data: UserProfile = serde_json::from_value(serde_json::Value::Object(fields))
        .map_err(|e| Error::Internal(format!("profile: {e}")))?;
    let mut response = get_profile_information::v1::Response::new();
    response.data = data;
    Ok(response)
}

pub async fn directory(
    hs: Arc<Homeserver>,
    req: Ruma<get_room_information::v1::Request>,
) -> Result<get_room_information::v1::Response> {
    origin(&req)?;
    let alias = &req.body.room_alias;
    if alias.server_name() != hs.config.server_name() {
        return Err(Error::InvalidParam(
            "the alias is not one of this server's".into(),
        ));
    }
    let (room_id, servers) = crate::federation::query::room_alias(&hs, alias).await?;
    Ok(get_room_information::v1::Response::new(room_id, servers))
}

pub async fn public_rooms(
    hs: Arc<Homeserver>,
    req: Ruma<get_public_rooms::v1::Request>,
) -> Result<get_public_rooms::v1::Response> {
    origin(&req)?;
    let b = &req.body;
    let limit = b
        .limit
        .map(|l| usize::try_from(u64::from(l)).unwrap_or(usize::MAX));
    let listing =
        crate::federation::directory::public_rooms_for_server(&hs, limit, b.since.as_deref(), None)
            .await?;
    let mut response = get_public_rooms::v1::Response::new();
    response.chunk = listing.typed_chunk()?;
    response.next_batch = listing.next_batch;
    response.prev_batch = listing.prev_batch;
    response.total_room_count_estimate = u32::try_from(listing.total).ok().map(Into::into);
    Ok(response)
}

pub async fn public_rooms_filtered(
    hs: Arc<Homeserver>,
    req: Ruma<get_public_rooms_filtered::v1::Request>,
) -> Result<get_public_rooms_filtered::v1::Response> {
    origin(&req)?;
    let b = &req.body;
    let limit = b
        .limit
        .map(|l| usize::try_from(u64::from(l)).unwrap_or(usize::MAX));
    let listing = crate::federation::directory::public_rooms_for_server(
        &hs,
        limit,
        b.since.as_deref(),
        b.filter.generic_search_term.as_deref(),
    )
    .await?;
    let mut response = get_public_rooms_filtered::v1::Response::new();
    response.chunk = listing.typed_chunk()?;
    response.next_batch = listing.next_batch;
    response.prev_batch = listing.prev_batch;
    response.total_room_count_estimate = u32::try_from(listing.total).ok().map(Into::into);
    Ok(response)
}

pub async fn hierarchy(
    hs: Arc<Homeserver>,
    req: Ruma<get_hierarchy::v1::Request>,
) -> Result<get_hierarchy::v1::Response> {
    let b = &req.body;
    let (room, children, inaccessible) = crate::rooms::spaces::hierarchy_for_server(
        &hs,
        origin(&req)?,
        &b.room_id,
        b.suggested_only,
    )
    .await?;
    let mut parent = room.summary;
    parent["children_state"] = serde_json::Value::Array(room.children_state);
    let parent: SpaceHierarchyParentSummary = serde_json::from_value(parent)
        .map_err(|e| Error::Internal(format!("room summary: {e}")))?;
    let mut response = get_hierarchy::v1::Response::new(parent);
    response.children = children
        .into_iter()
        .filter_map(|c| serde_json::from_value(c).ok())
        .collect();
    response.inaccessible_children = inaccessible
        .iter()
        .filter_map(|r| ruma::OwnedRoomId::try_from(r.as_str()).ok())
        .collect();
    Ok(response)
}

/// `/openid/userinfo`: whose an OpenID token is. Asked by third parties with the token
/// alone (no X-Matrix signature), on either listener; without a token, 401
/// `M_MISSING_TOKEN` (ruma would answer 400 for the missing parameter).
pub async fn openid_userinfo(
    axum::extract::State(hs): axum::extract::State<Arc<Homeserver>>,
    MatrixQuery(query): MatrixQuery<HashMap<String, String>>,
) -> std::result::Result<axum::response::Response, ApiError> {
    let token = query.get("access_token").ok_or(Error::MissingToken)?;
    let user = crate::users::openid::userinfo(&hs, token).await?;
    Ok(axum::Json(serde_json::json!({ "sub": user })).into_response())
}
