//! Third-party invites: the identity server's `/3pid/onbind` callback, and
//! `/exchange_third_party_invite` from the invitee's server.

use std::sync::Arc;

use ruma::api::federation::thirdparty::{bind_callback, exchange_invite};

use super::events::origin;
use crate::{error::Result, federation::third_party_invite, http::Ruma, server::Homeserver};

/// Called by identity servers, which have no X-Matrix key: unauthenticated, as the spec
/// says. It can only turn invites into memberships whose signatures the room's invite
/// keys verify.
pub async fn on_bind(
    hs: Arc<Homeserver>,
    req: Ruma<bind_callback::v1::Request>,
) -> Result<bind_callback::v1::Response> {
    third_party_invite::on_bind(&hs, &req.body).await?;
    Ok(bind_callback::v1::Response::new())
}

pub async fn exchange(
    hs: Arc<Homeserver>,
    req: Ruma<exchange_invite::v1::Request>,
) -> Result<exchange_invite::v1::Response> {
    third_party_invite::on_exchange(&hs, origin(&req)?, &req.body).await?;
    Ok(exchange_invite::v1::Response::new())
}
