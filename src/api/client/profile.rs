//! Profiles: whole profile, single fields (displayname, avatar_url, m.tz, custom), delete;
//! the user directory (finding people by name).

use std::sync::Arc;

use axum::Router;
use ruma::api::client::{
    profile::{delete_profile_field, get_profile, get_profile_field, set_profile_field},
    user_directory::search_users,
};
use ruma::profile::ProfileFieldValue;

use crate::{
    error::{Error, Result},
    http::{Ruma, route},
    rooms::membership,
    server::Homeserver,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = route(router, profile);
    let router = route(router, field);
    let router = route(router, set_field);
    let router = route(router, user_directory);
    route(router, delete_field)
}

async fn user_directory(
    hs: Arc<Homeserver>,
    req: Ruma<search_users::v3::Request>,
) -> Result<search_users::v3::Response> {
    let b = &req.body;
    let found = crate::users::directory::search(
        &hs,
        req.requester()?,
        &b.search_term,
        Some(u64::from(b.limit)),
    )
    .await?;
    let results = found
        .results
        .into_iter()
        .filter_map(|u| {
            let mut user = search_users::v3::User::new(u.user_id.try_into().ok()?);
            user.display_name = u.display_name;
            user.avatar_url = u.avatar_url.map(Into::into);
            Some(user)
        })
        .collect();
    Ok(search_users::v3::Response::new(results, found.limited))
}

async fn profile(
    hs: Arc<Homeserver>,
    req: Ruma<get_profile::v3::Request>,
) -> Result<get_profile::v3::Response> {
    let fields = crate::federation::query::profile(&hs, &req.body.user_id).await?;
    let mut response = get_profile::v3::Response::new();
    for (field, value) in fields {
        response.set(field, value);
    }
    Ok(response)
}

async fn field(
    hs: Arc<Homeserver>,
    req: Ruma<get_profile_field::v3::Request>,
) -> Result<get_profile_field::v3::Response> {
    let name = req.body.field.as_str();
    let Some(value) = crate::federation::query::field(&hs, &req.body.user_id, name).await? else {
        let mut unset =
            get_profile_field::v3::Response::new(ProfileFieldValue::DisplayName(String::new()));
        unset.value = None;
        return Ok(unset);
    };
    let value = ProfileFieldValue::new(name, value)
        .map_err(|e| Error::Internal(format!("stored profile field {name}: {e}")))?;
    Ok(get_profile_field::v3::Response::new(value))
}

async fn set_field(
    hs: Arc<Homeserver>,
    req: Ruma<set_profile_field::v3::Request>,
) -> Result<set_profile_field::v3::Response> {
    let requester = req.requester()?;
    let value = &req.body.value;
    membership::set_profile_field(
        &hs,
        requester,
        &req.body.user_id,
        value.field_name().as_str(),
        &value.value(),
    )
    .await?;
    Ok(set_profile_field::v3::Response::new())
}

async fn delete_field(
    hs: Arc<Homeserver>,
    req: Ruma<delete_profile_field::v3::Request>,
) -> Result<delete_profile_field::v3::Response> {
    membership::delete_profile_field(
        &hs,
        req.requester()?,
        &req.body.user_id,
        req.body.field.as_str(),
    )
    .await?;
    Ok(delete_profile_field::v3::Response::new())
}
