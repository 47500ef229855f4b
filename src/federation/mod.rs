//! Federation: the Server-Server API's logic. `discovery` finds where a server is,
//! `client` sends it signed requests, `keys` fetches, checks and caches other servers'
//! signing keys (and answers as a notary), `auth` verifies the X-Matrix signature of
//! requests from other servers. Handlers are in `api::federation`; tables in
//! `storage::server_keys`.

use std::sync::Arc;

use crate::{
    error::{Error, Result},
    server::Homeserver,
};

pub mod auth;
pub mod client;
pub mod discovery;
pub mod keys;

/// What federation keeps for the life of the server.
pub struct Federation {
    pub client: client::FederationClient,
    pub key_fetches: keys::KeyFetches,
}

/// Federation's state, made the first time it is needed (`start` makes it at start-up,
/// so a bad TLS file stops the server there).
pub fn state(hs: &Homeserver) -> Result<Arc<Federation>> {
    hs.extensions
        .get_or_try_init(|| {
            Ok::<_, String>(Federation {
                client: client::FederationClient::new(
                    &hs.config.federation,
                    hs.config.server_name(),
                    hs.outbound.clone(),
                )?,
                key_fetches: Default::default(),
            })
        })
        .map_err(|e| Error::Internal(format!("federation: {e}")))
}

/// Prepares federation when it is enabled: its HTTP client, TLS roots and resolver.
pub fn start(hs: &Homeserver) -> Result<()> {
    if hs.config.federation_enabled() {
        state(hs)?;
    }
    Ok(())
}
