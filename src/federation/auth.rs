//! Requests from other servers: the X-Matrix `Authorization` header checked against the
//! origin's signing keys (fetched when unknown) and our own name as destination.

use ruma::{
    OwnedServerName,
    api::federation::authentication::{XMatrix, XMatrixVerificationError},
};

use crate::{
    error::{Error, Result},
    server::{Homeserver, now_ms},
};

/// Verifies a request's X-Matrix signature; returns the origin server.
pub async fn verify_request(
    hs: &Homeserver,
    xmatrix: &XMatrix,
    request: &http::Request<&[u8]>,
) -> Result<OwnedServerName> {
    let ours = hs.config.server_name();
    if xmatrix.destination.as_deref().is_some_and(|d| d != ours) {
        return Err(Error::Unauthorized(format!(
            "the request is for {}, not this server",
            xmatrix
                .destination
                .as_deref()
                .map(|d| d.as_str())
                .unwrap_or("")
        )));
    }
    if xmatrix.origin == ours {
        return Err(Error::Unauthorized(
            "a request cannot come from this server's own name".into(),
        ));
    }
    let keys =
        super::keys::key_map(hs, &xmatrix.origin, &[xmatrix.key.to_string()], now_ms()).await?;
    let has_key = keys
        .get(xmatrix.origin.as_str())
        .is_some_and(|set| set.contains_key(xmatrix.key.as_str()));
    if !has_key {
        return Err(Error::Unauthorized(format!(
            "no valid key {} of {} could be found",
            xmatrix.key, xmatrix.origin
        )));
    }
    xmatrix
        .verify_http_request(request, ours, &keys)
        .map_err(|e| match e {
            XMatrixVerificationError::DestinationMismatch => {
                Error::Unauthorized("the request is for another server".into())
            }
            other => Error::Unauthorized(format!("bad request signature: {other}")),
        })?;
    // It is reachable again: anything queued for it goes now.
    hs.storage
        .destination_is_back(xmatrix.origin.as_str())
        .await?;
    Ok(xmatrix.origin.clone())
}
