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
    let documents = keys::notary_documents(&hs, &b.server_name, &[], Some(minimum)).await?;
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
        let key_ids: Vec<String> = criteria.keys().map(|k| k.to_string()).collect();
        for document in keys::notary_documents(&hs, server, &key_ids, minimum).await? {
            out.push(raw(&document)?);
        }
    }
    Ok(get_remote_server_keys_batch::v2::Response::new(out))
}

/// `GET /_matrix/key/v2/server/{keyId}`: the deprecated form with a key ID (the whole
/// document, as Synapse answers it).
pub async fn server_keys_by_id(
    axum::extract::State(hs): axum::extract::State<Arc<Homeserver>>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    match hs.keys.server_key_document(hs.config.server_name()) {
        Ok(doc) => axum::Json(doc).into_response(),
        Err(e) => crate::http::error::ApiError(e).into_response(),
    }
}

/// `GET /_matrix/key/v2/query/{serverName}/{keyId}`: the deprecated form naming one key.
pub async fn query_one_by_id(
    axum::extract::State(hs): axum::extract::State<Arc<Homeserver>>,
    axum::extract::Path((server, key_id)): axum::extract::Path<(String, String)>,
    axum::extract::Query(query): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let answer = async {
        let server = ruma::ServerName::parse(&server)
            .map_err(|e| Error::InvalidParam(format!("server name: {e}")))?;
        let minimum = query
            .get("minimum_valid_until_ts")
            .and_then(|t| t.parse::<i64>().ok());
        let documents = keys::notary_documents(&hs, &server, &[key_id], minimum).await?;
        Ok::<_, Error>(serde_json::json!({ "server_keys": documents }))
    };
    match answer.await {
        Ok(body) => axum::Json(body).into_response(),
        Err(e) => crate::http::error::ApiError(e).into_response(),
    }
}
