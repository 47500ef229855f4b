//! Profiles: whole profile, single fields (displayname, avatar_url, m.tz, custom), delete.

use std::sync::Arc;

use axum::Router;
use ruma::api::client::profile::{
    delete_profile_field, get_profile, get_profile_field, set_profile_field,
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
    route(router, delete_field)
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
