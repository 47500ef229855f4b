//! Dehydrated devices (MSC3814), under `/_matrix/client/unstable/org.matrix.msc3814.v1/`.

use std::sync::Arc;

use axum::Router;
use ruma::api::client::dehydrated_device::{
    delete_dehydrated_device, get_dehydrated_device, get_events, put_dehydrated_device,
};

use super::keys::{json_of, key_upload, raw_of};
use crate::{
    e2ee::dehydrated::{self as domain, NewDehydratedDevice},
    error::{Error, Result},
    http::{Ruma, route},
    server::Homeserver,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = route(router, put);
    let router = route(router, get);
    let router = route(router, delete);
    route(router, events)
}

async fn put(
    hs: Arc<Homeserver>,
    req: Ruma<put_dehydrated_device::unstable::Request>,
) -> Result<put_dehydrated_device::unstable::Response> {
    let b = &req.body;
    let device_data = json_of(&b.device_data)?;
    let new = NewDehydratedDevice {
        device_id: b.device_id.as_str(),
        display_name: b.initial_device_display_name.as_deref(),
        device_data: &device_data,
        keys: key_upload(Some(&b.device_keys), &b.one_time_keys, &b.fallback_keys)?,
    };
    let id = domain::put(&hs, req.requester()?, &new).await?;
    Ok(put_dehydrated_device::unstable::Response::new(id.into()))
}

async fn get(
    hs: Arc<Homeserver>,
    req: Ruma<get_dehydrated_device::unstable::Request>,
) -> Result<get_dehydrated_device::unstable::Response> {
    let (id, data) = domain::get(&hs, req.requester()?).await?;
    Ok(get_dehydrated_device::unstable::Response::new(
        id.into(),
        raw_of(&data)?,
    ))
}

async fn delete(
    hs: Arc<Homeserver>,
    req: Ruma<delete_dehydrated_device::unstable::Request>,
) -> Result<delete_dehydrated_device::unstable::Response> {
    let id = domain::delete(&hs, req.requester()?).await?;
    Ok(delete_dehydrated_device::unstable::Response::new(id.into()))
}

async fn events(
    hs: Arc<Homeserver>,
    req: Ruma<get_events::unstable::Request>,
) -> Result<get_events::unstable::Response> {
    let b = &req.body;
    let (events, next) = domain::events(
        &hs,
        req.requester()?,
        b.device_id.as_str(),
        b.next_batch.as_deref(),
    )
    .await?;
    let events = events
        .iter()
        .map(raw_of)
        .collect::<Result<Vec<_>, Error>>()?;
    let mut response = get_events::unstable::Response::new(events);
    response.next_batch = Some(next);
    Ok(response)
}
