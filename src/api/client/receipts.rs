//! Receipts, read markers, typing.

use std::sync::Arc;

use axum::Router;
use ruma::{
    api::client::{
        read_marker::set_read_marker,
        receipt::create_receipt::{self, v3::ReceiptType},
        typing::create_typing_event::{self, v3::Typing},
    },
    events::receipt::ReceiptThread,
};

use crate::{
    error::{Error, Result},
    http::{
        Ruma,
        extract::{Patches, route_patched},
        route,
    },
    rooms::receipts::{self as domain, ReceiptKind},
    server::Homeserver,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = route(router, receipt);
    let router = route(router, read_markers);
    let patches = Patches {
        request: Some(typing_timeout_default),
        response: None,
    };
    route_patched(router, typing, patches)
}

/// `{"typing": true}` without a `timeout` is 30 seconds, as in Synapse (ruma requires it).
fn typing_timeout_default(body: &mut serde_json::Value) -> Result<()> {
    if body["typing"] == true
        && let Some(fields) = body.as_object_mut()
    {
        fields
            .entry("timeout")
            .or_insert(serde_json::Value::from(30_000));
    }
    Ok(())
}

async fn receipt(
    hs: Arc<Homeserver>,
    req: Ruma<create_receipt::v3::Request>,
) -> Result<create_receipt::v3::Response> {
    let b = &req.body;
    let kind = match &b.receipt_type {
        ReceiptType::Read => ReceiptKind::Read,
        ReceiptType::ReadPrivate => ReceiptKind::ReadPrivate,
        ReceiptType::FullyRead => ReceiptKind::FullyRead,
        other => {
            return Err(Error::InvalidParam(format!(
                "unknown receipt type {}",
                other.as_str()
            )));
        }
    };
    let thread = match &b.thread {
        ReceiptThread::Unthreaded => None,
        other => Some(
            other
                .as_str()
                .ok_or_else(|| Error::InvalidParam("invalid thread_id".into()))?,
        ),
    };
    domain::send_receipt(&hs, req.requester()?, &b.room_id, kind, &b.event_id, thread).await?;
    Ok(create_receipt::v3::Response::new())
}

async fn read_markers(
    hs: Arc<Homeserver>,
    req: Ruma<set_read_marker::v3::Request>,
) -> Result<set_read_marker::v3::Response> {
    let b = &req.body;
    domain::set_read_markers(
        &hs,
        req.requester()?,
        &b.room_id,
        b.fully_read.as_deref(),
        b.read_receipt.as_deref(),
        b.private_read_receipt.as_deref(),
    )
    .await?;
    Ok(set_read_marker::v3::Response::new())
}

async fn typing(
    hs: Arc<Homeserver>,
    req: Ruma<create_typing_event::v3::Request>,
) -> Result<create_typing_event::v3::Response> {
    let b = &req.body;
    let timeout = match &b.state {
        Typing::Yes(info) => Some(info.timeout),
        Typing::No => None,
    };
    domain::set_typing(&hs, req.requester()?, &b.room_id, &b.user_id, timeout).await?;
    Ok(create_typing_event::v3::Response::new())
}
