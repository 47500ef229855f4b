//! Client-Server admin endpoints: whois.

use std::sync::Arc;

use axum::Router;
use ruma::api::client::admin::get_user_info::{
    self,
    v3::{ConnectionInfo, DeviceInfo, SessionInfo},
};

use crate::{
    error::Result,
    http::{Ruma, route},
    server::Homeserver,
    users::account,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    route(router, whois)
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
