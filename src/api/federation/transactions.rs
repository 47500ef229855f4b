//! `PUT /_matrix/federation/v1/send/{txnId}`: transactions of PDUs and EDUs.

use std::sync::Arc;

use ruma::api::federation::transactions::send_transaction_message;

use super::events::origin;
use crate::{error::Result, federation::inbound, http::Ruma, server::Homeserver};

pub async fn send(
    hs: Arc<Homeserver>,
    req: Ruma<send_transaction_message::v1::Request>,
) -> Result<send_transaction_message::v1::Response> {
    let b = &req.body;
    let origin = origin(&req)?;
    if b.origin != origin {
        return Err(crate::error::Error::Unauthorized(
            "the transaction's origin is not the signing server".into(),
        ));
    }
    let results =
        inbound::receive_transaction(&hs, origin, b.transaction_id.as_str(), &b.pdus, &b.edus)
            .await?;
    Ok(send_transaction_message::v1::Response::new(results))
}
