//! Other servers asking about local users' end-to-end encryption: `/user/devices`,
//! `/user/keys/query` and `/user/keys/claim`.

use std::sync::Arc;

use ruma::{
    UInt,
    api::federation::{
        device::get_devices,
        keys::{claim_keys, get_keys},
    },
};

use super::events::origin;
use crate::{
    api::client::keys::{claims_of, one_time_keys_of, raw_device_keys, raw_keys, raw_of},
    appservice::keys::{claim_local_keys, query_local_keys},
    e2ee::keys::device_list,
    error::{Error, Result},
    http::Ruma,
    server::Homeserver,
};

pub async fn devices(
    hs: Arc<Homeserver>,
    req: Ruma<get_devices::v1::Request>,
) -> Result<get_devices::v1::Response> {
    origin(&req)?;
    let user = &req.body.user_id;
    if user.server_name() != hs.config.server_name() {
        return Err(Error::InvalidParam(
            "the user is not one of this server's".into(),
        ));
    }
    if !hs.storage.localpart_exists(user.localpart()).await? {
        return Err(Error::NotFound("no such user".into()));
    }
    let list = device_list(&hs, user).await?;
    let stream_id = UInt::try_from(list.stream_id.max(0)).unwrap_or_default();
    let mut response = get_devices::v1::Response::new(user.clone(), stream_id);
    for (device_id, name, keys) in list.devices {
        let mut device = get_devices::v1::UserDevice::new(device_id, raw_of(&keys)?);
        device.device_display_name = name;
        response.devices.push(device);
    }
    response.master_key = list.master_key.as_ref().map(raw_of).transpose()?;
    response.self_signing_key = list.self_signing_key.as_ref().map(raw_of).transpose()?;
    Ok(response)
}

pub async fn query(
    hs: Arc<Homeserver>,
    req: Ruma<get_keys::v1::Request>,
) -> Result<get_keys::v1::Response> {
    origin(&req)?;
    let found = query_local_keys(&hs, None, &req.body.device_keys).await?;
    let mut response = get_keys::v1::Response::new(raw_device_keys(found.device_keys)?);
    response.master_keys = raw_keys(found.master_keys)?;
    response.self_signing_keys = raw_keys(found.self_signing_keys)?;
    Ok(response)
}

pub async fn claim(
    hs: Arc<Homeserver>,
    req: Ruma<claim_keys::v1::Request>,
) -> Result<claim_keys::v1::Response> {
    origin(&req)?;
    let claimed = claim_local_keys(&hs, &claims_of(&req.body.one_time_keys)).await?;
    Ok(claim_keys::v1::Response::new(one_time_keys_of(claimed)?))
}
