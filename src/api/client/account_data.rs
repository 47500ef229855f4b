//! Account data (global and per room) and filters.

use std::sync::Arc;

use axum::Router;
use ruma::{
    api::client::{
        config::{
            get_global_account_data, get_room_account_data, set_global_account_data,
            set_room_account_data,
        },
        filter::{FilterDefinition, create_filter, get_filter},
        tag::{create_tag, delete_tag, get_tags},
    },
    serde::Raw,
};
use serde_json::Value as JsonValue;

use crate::{
    error::{Error, Result},
    http::{Ruma, route},
    server::Homeserver,
    users::account_data as domain,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = route(router, get_global);
    let router = route(router, set_global);
    let router = route(router, get_room);
    let router = route(router, set_room);
    let router = route(router, new_filter);
    let router = route(router, tags);
    let router = route(router, set_tag);
    let router = route(router, remove_tag);
    route(router, filter)
}

async fn tags(
    hs: Arc<Homeserver>,
    req: Ruma<get_tags::v3::Request>,
) -> Result<get_tags::v3::Response> {
    let b = &req.body;
    let tags = domain::tags(&hs, req.requester()?, &b.user_id, &b.room_id).await?;
    let tags =
        serde_json::from_value(tags).map_err(|e| Error::Internal(format!("stored tags: {e}")))?;
    Ok(get_tags::v3::Response::new(tags))
}

async fn set_tag(
    hs: Arc<Homeserver>,
    req: Ruma<create_tag::v3::Request>,
) -> Result<create_tag::v3::Response> {
    let b = &req.body;
    let info = serde_json::to_value(&b.tag_info).map_err(|e| Error::BadJson(e.to_string()))?;
    domain::set_tag(&hs, req.requester()?, &b.user_id, &b.room_id, &b.tag, info).await?;
    Ok(create_tag::v3::Response::new())
}

async fn remove_tag(
    hs: Arc<Homeserver>,
    req: Ruma<delete_tag::v3::Request>,
) -> Result<delete_tag::v3::Response> {
    let b = &req.body;
    domain::delete_tag(&hs, req.requester()?, &b.user_id, &b.room_id, &b.tag).await?;
    Ok(delete_tag::v3::Response::new())
}

fn to_json<T>(raw: &Raw<T>) -> Result<JsonValue> {
    serde_json::from_str(raw.json().get()).map_err(|e| Error::BadJson(e.to_string()))
}

fn to_raw<T>(value: &JsonValue) -> Result<Raw<T>> {
    serde_json::value::to_raw_value(value)
        .map(Raw::from_json)
        .map_err(|e| Error::Internal(e.to_string()))
}

async fn get_global(
    hs: Arc<Homeserver>,
    req: Ruma<get_global_account_data::v3::Request>,
) -> Result<get_global_account_data::v3::Response> {
    let b = &req.body;
    let content = crate::push::rules::global_account_data(
        &hs,
        req.requester()?,
        &b.user_id,
        &b.event_type.to_string(),
    )
    .await?;
    Ok(get_global_account_data::v3::Response::new(to_raw(
        &content,
    )?))
}

async fn set_global(
    hs: Arc<Homeserver>,
    req: Ruma<set_global_account_data::v3::Request>,
) -> Result<set_global_account_data::v3::Response> {
    let b = &req.body;
    let content = to_json(&b.data)?;
    domain::set(
        &hs,
        req.requester()?,
        &b.user_id,
        None,
        &b.event_type.to_string(),
        &content,
    )
    .await?;
    Ok(set_global_account_data::v3::Response::new())
}

async fn get_room(
    hs: Arc<Homeserver>,
    req: Ruma<get_room_account_data::v3::Request>,
) -> Result<get_room_account_data::v3::Response> {
    let b = &req.body;
    let content = domain::get(
        &hs,
        req.requester()?,
        &b.user_id,
        Some(&b.room_id),
        &b.event_type.to_string(),
    )
    .await?;
    Ok(get_room_account_data::v3::Response::new(to_raw(&content)?))
}

async fn set_room(
    hs: Arc<Homeserver>,
    req: Ruma<set_room_account_data::v3::Request>,
) -> Result<set_room_account_data::v3::Response> {
    let b = &req.body;
    let content = to_json(&b.data)?;
    domain::set(
        &hs,
        req.requester()?,
        &b.user_id,
        Some(&b.room_id),
        &b.event_type.to_string(),
        &content,
    )
    .await?;
    Ok(set_room_account_data::v3::Response::new())
}

async fn new_filter(
    hs: Arc<Homeserver>,
    req: Ruma<create_filter::v3::Request>,
) -> Result<create_filter::v3::Response> {
    let filter =
        serde_json::to_value(&req.body.filter).map_err(|e| Error::BadJson(e.to_string()))?;
    let id = domain::create_filter(&hs, req.requester()?, &req.body.user_id, &filter).await?;
    Ok(create_filter::v3::Response::new(id))
}

async fn filter(
    hs: Arc<Homeserver>,
    req: Ruma<get_filter::v3::Request>,
) -> Result<get_filter::v3::Response> {
    let stored = domain::get_filter(
        &hs,
        req.requester()?,
        &req.body.user_id,
        &req.body.filter_id,
    )
    .await?;
    let filter: FilterDefinition = serde_json::from_value(stored)
        .map_err(|e| Error::Internal(format!("stored filter: {e}")))?;
    Ok(get_filter::v3::Response::new(filter))
}
