//! Client-Server admin endpoints: whois; account suspension and locking.

use std::sync::Arc;

use axum::Router;
use ruma::api::client::admin::{
    get_user_info::{
        self,
        v3::{ConnectionInfo, DeviceInfo, SessionInfo},
    },
    is_user_locked, is_user_suspended, lock_user, suspend_user,
};

use crate::{
    error::Result,
    http::{Ruma, route},
    server::Homeserver,
    users::{account, moderation},
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = route(router, is_suspended);
    let router = route(router, suspend);
    let router = route(router, is_locked);
    let router = route(router, lock);
    route(router, whois)
}

async fn is_suspended(
    hs: Arc<Homeserver>,
    req: Ruma<is_user_suspended::v1::Request>,
) -> Result<is_user_suspended::v1::Response> {
    let suspended = moderation::is_suspended(&hs, req.requester()?, &req.body.user_id).await?;
    Ok(is_user_suspended::v1::Response::new(suspended))
}

async fn suspend(
    hs: Arc<Homeserver>,
    req: Ruma<suspend_user::v1::Request>,
) -> Result<suspend_user::v1::Response> {
    let b = &req.body;
    moderation::set_suspended(&hs, req.requester()?, &b.user_id, b.suspended).await?;
    Ok(suspend_user::v1::Response::new(b.suspended))
}

async fn is_locked(
    hs: Arc<Homeserver>,
    req: Ruma<is_user_locked::v1::Request>,
) -> Result<is_user_locked::v1::Response> {
    let locked = moderation::is_locked(&hs, req.requester()?, &req.body.user_id).await?;
    Ok(is_user_locked::v1::Response::new(locked))
}

async fn lock(
    hs: Arc<Homeserver>,
    req: Ruma<lock_user::v1::Request>,
) -> Result<lock_user::v1::Response> {
    let b = &req.body;
    moderation::set_locked(&hs, req.requester()?, &b.user_id, b.locked).await?;
    Ok(lock_user::v1::Response::new(b.locked))
}

async fn whois(
    hs: Arc<Homeserver>,
    req: Ruma<get_user_info::v3::Request>,
) -> Result<get_user_info::v3::Response> {
    let devices = account::whois(&hs, req.requester()?, &req.body.user_id).await?;
    let mut response = get_user_info::v3::Response::new();
    response.user_id = Some(req.body.user_id.clone());
    for d in devices {
        let mut connection = ConnectionInfo::new();
        connection.ip = d.last_seen_ip;
        connection.user_agent = d.user_agent;
        connection.last_seen = super::timestamp(d.last_seen_ts);
        let mut session = SessionInfo::new();
        session.connections.push(connection);
        let mut info = DeviceInfo::new();
        info.sessions.push(session);
        response.devices.insert(d.device_id, info);
    }
    Ok(response)
}
