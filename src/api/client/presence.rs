//! `GET/PUT /presence/{userId}/status`.

use std::sync::Arc;

use axum::Router;
use ruma::api::client::presence::{get_presence, set_presence};

use crate::{
    error::Result,
    http::{Ruma, route},
    server::Homeserver,
    users::presence as domain,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = route(router, get_status);
    route(router, set_status)
}

async fn get_status(
    hs: Arc<Homeserver>,
    req: Ruma<get_presence::v3::Request>,
) -> Result<get_presence::v3::Response> {
    let view = domain::get_presence(&hs, req.requester()?, &req.body.user_id).await?;
    let mut response = get_presence::v3::Response::new(view.state);
    response.status_msg = view.status_msg;
    response.last_active_ago = view.last_active_ago;
    response.currently_active = view.currently_active;
    Ok(response)
}

async fn set_status(
    hs: Arc<Homeserver>,
    req: Ruma<set_presence::v3::Request>,
) -> Result<set_presence::v3::Response> {
    let b = &req.body;
    domain::set_presence_status(
        &hs,
        req.requester()?,
        &b.user_id,
        &b.presence,
        b.status_msg.as_deref(),
    )
    .await?;
    Ok(set_presence::v3::Response::new())
}
