//! Devices: list, get, rename, delete one or many (behind UIA).

use std::sync::Arc;

use axum::Router;
use ruma::api::client::device::{
    self, delete_device, delete_devices, get_device, get_devices, update_device,
};

use crate::{
    error::Result,
    http::{Ruma, compat, extract::route_patched, route},
    server::Homeserver,
    storage::devices::DeviceRow,
    users::devices as domain,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = route(router, list);
    let router = route(router, get);
    let router = route(router, rename);
    let router = route_patched(router, delete_one, compat::LEGACY_AUTH);
    route_patched(router, delete_many, compat::LEGACY_AUTH)
}

fn to_device(row: DeviceRow) -> device::Device {
    let mut d = device::Device::new(row.device_id.into());
    d.display_name = row.display_name;
    d.last_seen_ip = row.last_seen_ip;
    d.last_seen_ts = super::timestamp(row.last_seen_ts);
    d
}

async fn list(
    hs: Arc<Homeserver>,
    req: Ruma<get_devices::v3::Request>,
) -> Result<get_devices::v3::Response> {
    let rows = domain::list(&hs, req.requester()?).await?;
    Ok(get_devices::v3::Response::new(
        rows.into_iter().map(to_device).collect(),
    ))
}

async fn get(
    hs: Arc<Homeserver>,
    req: Ruma<get_device::v3::Request>,
) -> Result<get_device::v3::Response> {
    let row = domain::get(&hs, req.requester()?, req.body.device_id.as_str()).await?;
    Ok(get_device::v3::Response::new(to_device(row)))
}

async fn rename(
    hs: Arc<Homeserver>,
    req: Ruma<update_device::v3::Request>,
) -> Result<update_device::v3::Response> {
    domain::rename(
        &hs,
        req.requester()?,
        req.body.device_id.as_str(),
        req.body.display_name.as_deref(),
    )
    .await?;
    Ok(update_device::v3::Response::new())
}

async fn delete_one(
    hs: Arc<Homeserver>,
    req: Ruma<delete_device::v3::Request>,
) -> Result<delete_device::v3::Response> {
    domain::delete_one(
        &hs,
        req.requester()?,
        req.body.device_id.as_str(),
        req.body.auth.as_ref(),
    )
    .await?;
    Ok(delete_device::v3::Response::new())
}

async fn delete_many(
    hs: Arc<Homeserver>,
    req: Ruma<delete_devices::v3::Request>,
) -> Result<delete_devices::v3::Response> {
    let ids: Vec<String> = req.body.devices.iter().map(|d| d.to_string()).collect();
    domain::delete(&hs, req.requester()?, &ids, req.body.auth.as_ref()).await?;
    Ok(delete_devices::v3::Response::new())
}
