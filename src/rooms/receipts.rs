//! Read receipts, read markers and typing notifications: from local users, and from
//! other servers' users (their `m.receipt` and `m.typing` EDUs).

use std::time::Duration;

use ruma::{EventId, RoomId, ServerName, UserId};
use serde_json::json;

use crate::{
    error::{Error, Result},
    server::{Homeserver, now_ms},
    users::Requester,
};

/// Typing notices last at most this long, whatever the client asks.
const MAX_TYPING: Duration = Duration::from_secs(120);

async fn require_event(hs: &Homeserver, room_id: &RoomId, event_id: &EventId) -> Result<()> {
    match hs.storage.event(event_id.as_str()).await? {
        Some(e) if e.room_id == room_id.as_str() => Ok(()),
        _ => Err(Error::NotFound("event not found in this room".into())),
    }
}

/// Which receipt: its type as the spec names it, and its thread.
pub enum ReceiptKind {
    Read,
    ReadPrivate,
    FullyRead,
}

/// `thread`: None unthreaded, "main", or a thread root event ID.
pub async fn send_receipt(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    kind: ReceiptKind,
    event_id: &EventId,
    thread: Option<&str>,
) -> Result<()> {
    let valid_thread =
        |t: &str| (t == "main" || t.starts_with('$')) && t.len() <= crate::limits::MAX_ID_BYTES;
    if thread.is_some_and(|t| !valid_thread(t)) {
        return Err(Error::InvalidParam(
            "thread_id must be \"main\" or an event ID".into(),
        ));
    }
    super::context::require_joined(hs, requester, room_id).await?;
    require_event(hs, room_id, event_id).await?;
    let user = requester.user_id.as_str();
    match kind {
        ReceiptKind::FullyRead => {
            if thread.is_some() {
                return Err(Error::InvalidParam(
                    "m.fully_read cannot be threaded".into(),
                ));
            }
            hs.storage
                .set_account_data(
                    user,
                    room_id.as_str(),
                    "m.fully_read",
                    &json!({ "event_id": event_id }),
                    None,
                )
                .await?;
        }
        ReceiptKind::Read | ReceiptKind::ReadPrivate => {
            let receipt_type = if matches!(kind, ReceiptKind::Read) {
                "m.read"
            } else {
                "m.read.private"
            };
            let ts = now_ms();
            let moved = hs
                .storage
                .set_receipt(
                    room_id.as_str(),
                    user,
                    receipt_type,
                    thread.unwrap_or(""),
                    event_id.as_str(),
                    ts,
                )
                .await?;
            if moved {
                crate::push::badges::unread_changed(hs, user);
            }
            // Private receipts never leave this server; one for an earlier event than the
            // last is not taken, nor sent.
            if moved && matches!(kind, ReceiptKind::Read) {
                let mut data = json!({ "ts": ts });
                if let Some(thread) = thread {
                    data["thread_id"] = json!(thread);
                }
                let edu = json!({ "edu_type": "m.receipt", "content": { room_id.as_str(): {
                    "m.read": { user: { "event_ids": [event_id], "data": data } } } } });
                queue_room_edu(hs, room_id, &edu).await;
            }
        }
    }
    crate::users::presence::note_activity(hs, &requester.user_id).await;
    Ok(())
}

/// `POST /rooms/{roomId}/read_markers`.
pub async fn set_read_markers(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    fully_read: Option<&EventId>,
    read: Option<&EventId>,
    read_private: Option<&EventId>,
) -> Result<()> {
    for (kind, event) in [
        (ReceiptKind::FullyRead, fully_read),
        (ReceiptKind::Read, read),
        (ReceiptKind::ReadPrivate, read_private),
    ] {
        if let Some(event) = event {
            send_receipt(hs, requester, room_id, kind, event, None).await?;
        }
    }
    Ok(())
}

/// `PUT /rooms/{roomId}/typing/{userId}`: only for oneself, only in joined rooms.
pub async fn set_typing(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    user_id: &UserId,
    timeout: Option<Duration>,
) -> Result<()> {
    if requester.user_id != user_id {
        return Err(Error::Forbidden(
            "you may only set your own typing state".into(),
        ));
    }
    super::context::require_joined(hs, requester, room_id).await?;
    let expires = timeout.map(|t| now_ms() + t.min(MAX_TYPING).as_millis() as i64);
    hs.storage
        .set_typing(room_id.as_str(), user_id.as_str(), expires)
        .await?;
    let edu = json!({ "edu_type": "m.typing", "content": {
        "room_id": room_id, "user_id": user_id, "typing": expires.is_some() } });
    queue_room_edu(hs, room_id, &edu).await;
    Ok(())
}

/// Ends the typing notices that ran out; the room's other servers are told that local
/// users stopped (as if they had said so), so theirs end now too.
pub async fn expire_typing(hs: &Homeserver) -> Result<()> {
    let expired = hs.storage.expire_typing(now_ms()).await?;
    for (room, user) in expired {
        let local =
            UserId::parse(user.as_str()).is_ok_and(|u| u.server_name() == hs.config.server_name());
        if let (true, Ok(room_id)) = (local, RoomId::parse(room.as_str())) {
            let edu = json!({ "edu_type": "m.typing", "content": {
                "room_id": room, "user_id": user, "typing": false } });
            queue_room_edu(hs, &room_id, &edu).await;
        }
    }
    Ok(())
}

/// Sends a typing notice or receipt to the room's other servers. Failing to queue it
/// is logged, not returned: the local change already happened.
async fn queue_room_edu(hs: &Homeserver, room_id: &RoomId, edu: &serde_json::Value) {
    // A server that does not federate has no other servers to tell: no query per typing
    // notice or receipt.
    if !hs.config.federation_enabled() {
        return;
    }
    if let Err(e) = hs
        .storage
        .queue_room_edu(room_id.as_str(), hs.config.server_name().as_str(), edu)
        .await
    {
        tracing::warn!(%room_id, "EDU not queued: {e}");
    }
}

/// How long a typing notice from another server lasts without a renewal (its server
/// sends one while the user keeps typing, and a stop when they stop).
const REMOTE_TYPING: Duration = Duration::from_secs(30);

/// Whether `origin` may speak for `user` in the room: the user is of that server and
/// joined, and the room's server ACL lets the server in.
async fn remote_member(
    hs: &Homeserver,
    origin: &ServerName,
    room_id: &RoomId,
    user_id: &UserId,
) -> Result<()> {
    if user_id.server_name() != origin {
        return Err(Error::Forbidden(format!(
            "{origin} cannot speak for {user_id}"
        )));
    }
    if hs
        .storage
        .membership(room_id.as_str(), user_id.as_str())
        .await?
        .as_deref()
        != Some("join")
    {
        return Err(Error::Forbidden(format!("{user_id} is not in {room_id}")));
    }
    super::remote_reads::check_server_acl(hs, room_id, origin).await
}

/// An `m.typing` EDU: the user's typing notice, which expires after `REMOTE_TYPING`.
pub async fn remote_typing(
    hs: &Homeserver,
    origin: &ServerName,
    room_id: &RoomId,
    user_id: &UserId,
    typing: bool,
) -> Result<()> {
    remote_member(hs, origin, room_id, user_id).await?;
    let expires = typing.then(|| now_ms() + REMOTE_TYPING.as_millis() as i64);
    hs.storage
        .set_typing(room_id.as_str(), user_id.as_str(), expires)
        .await?;
    Ok(())
}

/// One read receipt of an `m.receipt` EDU (`thread` as for local receipts: None
/// unthreaded, "main", or a thread root), for an event held here.
pub async fn remote_receipt(
    hs: &Homeserver,
    origin: &ServerName,
    room_id: &RoomId,
    user_id: &UserId,
    event_id: &EventId,
    thread: Option<&str>,
    ts: i64,
) -> Result<()> {
    remote_member(hs, origin, room_id, user_id).await?;
    require_event(hs, room_id, event_id).await?;
    hs.storage
        .set_receipt(
            room_id.as_str(),
            user_id.as_str(),
            "m.read",
            thread.unwrap_or(""),
            event_id.as_str(),
            ts,
        )
        .await?;
    Ok(())
}
