//! Server keys: our own (`/_matrix/key/v2/server`) and, as a notary, other servers'
//! (`/_matrix/key/v2/query`).

use std::sync::Arc;

use ruma::{
    CanonicalJsonObject,
    api::federation::discovery::{
        ServerSigningKeys, get_remote_server_keys, get_remote_server_keys_batch, get_server_keys,
    },
    serde::Raw,
};

use crate::{
    error::{Error, Result},
    federation::keys,
    http::Ruma,
    server::Homeserver,
};

/// Servers one notary request may ask about (each may cost a fetch).
const MAX_SERVERS_PER_QUERY: usize = 50;

fn raw(object: &CanonicalJsonObject) -> Result<Raw<ServerSigningKeys>> {
    let json =
        serde_json::value::to_raw_value(object).map_err(|e| Error::Internal(e.to_string()))?;
    Ok(Raw::from_json(json))
}

/// `GET /_matrix/key/v2/server`: our verify keys, signed, with valid_until_ts.
pub async fn server_keys(
    hs: Arc<Homeserver>,
    _req: Ruma<get_server_keys::v2::Request>,
) -> Result<get_server_keys::v2::Response> {
    let doc = hs.keys.server_key_document(hs.config.server_name())?;
    Ok(get_server_keys::v2::Response::new(raw(&doc)?))
}

/// `GET /_matrix/key/v2/query/{serverName}`.
pub async fn query_one(
    hs: Arc<Homeserver>,
    req: Ruma<get_remote_server_keys::v2::Request>,
) -> Result<get_remote_server_keys::v2::Response> {
    let b = &req.body;
    let minimum = i64::from(b.minimum_valid_until_ts.0);
    let documents = keys::notary_documents(&hs, &b.server_name, Some(minimum)).await?;
    Ok(get_remote_server_keys::v2::Response::new(
        documents.iter().map(raw).collect::<Result<_>>()?,
    ))
}

/// `POST /_matrix/key/v2/query`.
pub async fn query_batch(
    hs: Arc<Homeserver>,
    req: Ruma<get_remote_server_keys_batch::v2::Request>,
) -> Result<get_remote_server_keys_batch::v2::Response> {
    let servers = &req.body.server_keys;
    if servers.len() > MAX_SERVERS_PER_QUERY {
        return Err(Error::InvalidParam(format!(
            "at most {MAX_SERVERS_PER_QUERY} servers per query"
        )));
    }
    let mut out = Vec::new();
    for (server, criteria) in servers {
        let minimum = criteria
            .values()
            .filter_map(|c| c.minimum_valid_until_ts)
            .map(|ts| i64::from(ts.0))
            .max();
        for document in keys::notary_documents(&hs, server, minimum).await? {
            out.push(raw(&document)?);
        }
    }
    Ok(get_remote_server_keys_batch::v2::Response::new(out))
}
