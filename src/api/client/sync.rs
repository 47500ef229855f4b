//! `GET /sync`.

use std::{sync::Arc, time::Duration};

use axum::Router;
use ruma::api::client::sync::sync_events::v3;

use crate::{
    error::Result,
    http::{Ruma, route},
    server::Homeserver,
    sync::{self as domain, SyncRequest},
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    route(router, sync)
}

async fn sync(hs: Arc<Homeserver>, req: Ruma<v3::Request>) -> Result<v3::Response> {
    let requester = req.requester()?;
    let b = &req.body;
    let filter = domain::resolve_filter(&hs, requester, b.filter.as_ref()).await?;
    let request = SyncRequest {
        since: b.since.clone(),
        filter,
        full_state: b.full_state,
        timeout: b.timeout.unwrap_or(Duration::ZERO),
        set_presence: b.set_presence.clone(),
    };
    domain::sync(&hs, requester, request).await
}
