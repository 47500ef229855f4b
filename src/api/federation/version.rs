//! `GET /_matrix/federation/v1/version`.

use std::sync::Arc;

use ruma::api::federation::discovery::get_server_version;

use crate::{error::Result, http::Ruma, server::Homeserver};

pub async fn version(
    _hs: Arc<Homeserver>,
    _req: Ruma<get_server_version::v1::Request>,
) -> Result<get_server_version::v1::Response> {
    let mut server = get_server_version::v1::Server::new();
    server.name = Some("axon".to_owned());
    server.version = Some(env!("CARGO_PKG_VERSION").to_owned());
    let mut response = get_server_version::v1::Response::new();
    response.server = Some(server);
    Ok(response)
}
