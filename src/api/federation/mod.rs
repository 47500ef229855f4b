//! Server-Server API handlers.

use std::sync::Arc;

use axum::Router;
use ruma::{api::federation::discovery::get_server_keys, serde::Raw};

use crate::{
    error::{Error, Result},
    http::{Ruma, route},
    server::Homeserver,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    route(router, server_keys)
}

/// `GET /_matrix/key/v2/server`: our verify keys, signed, with valid_until_ts.
async fn server_keys(
    hs: Arc<Homeserver>,
    _req: Ruma<get_server_keys::v2::Request>,
) -> Result<get_server_keys::v2::Response> {
    let doc = hs.keys.server_key_document(hs.config.server_name())?;
    let raw = serde_json::value::to_raw_value(&doc).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(get_server_keys::v2::Response::new(Raw::from_json(raw)))
}
