//! Application service endpoints of the Client-Server API: the ping.

use std::sync::Arc;

use axum::Router;
use ruma::api::client::appservice::request_ping;

use crate::{
    error::Result,
    http::{Ruma, route},
    server::Homeserver,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    route(router, ping)
}

async fn ping(
    hs: Arc<Homeserver>,
    req: Ruma<request_ping::v1::Request>,
) -> Result<request_ping::v1::Response> {
    let b = &req.body;
    let duration = crate::appservice::ping(
        &hs,
        req.requester()?,
        &b.appservice_id,
        b.transaction_id.as_deref().map(|t| t.as_str()),
    )
    .await?;
    Ok(request_ping::v1::Response::new(duration))
}
