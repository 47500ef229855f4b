//! Leaving rooms (`POST /rooms/{roomId}/leave`): a room held here is left in its DAG; an
//! invite from another server to a room not held here is declined (a knock on one
//! rescinded) through the servers of the room (`make_leave`, the event signed here,
//! `send_leave`), or here only when none can be reached, so a user is never stuck with
//! an invite.

use ruma::{RoomId, RoomVersionId, ServerName, api::federation::membership};
use serde_json::{Value as JsonValue, json};

use crate::{
    error::{Error, Result},
    rooms::{context::rules_for, invites, membership as local},
    server::Homeserver,
    users::Requester,
};

pub async fn leave_room(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    reason: Option<&str>,
) -> Result<()> {
    let user = &requester.user_id;
    let out_of_band = if hs.config.federation_enabled() {
        invites::out_of_band_pending(hs, room_id, user).await?
    } else {
        None
    };
    let Some(version) = out_of_band else {
        return local::leave(hs, requester, room_id, reason).await;
    };
    let mut servers = invites::servers_to_leave_through(hs, room_id, user).await?;
    servers.extend(room_id.server_name().map(ToOwned::to_owned));
    servers.retain(|s| s != hs.config.server_name());
    servers.dedup();
    for server in &servers {
        match decline_through(hs, requester, room_id, server, &version, reason).await {
            Ok(()) => return Ok(()),
            Err(e) => tracing::info!(%room_id, %server, "declining through the server failed: {e}"),
        }
    }
    invites::decline_locally(hs, room_id, user, &version, reason).await
}

async fn decline_through(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    server: &ServerName,
    version: &RoomVersionId,
    reason: Option<&str>,
) -> Result<()> {
    let federation = super::state(hs)?;
    let user = &requester.user_id;
    let template = federation
        .client
        .send(
            hs.keys.pair(),
            server,
            membership::prepare_leave_event::v1::Request::new(room_id.to_owned(), user.clone()),
        )
        .await?;
    let version = template.room_version.unwrap_or_else(|| version.clone());
    let rules = rules_for(&version)?;
    let event: JsonValue = serde_json::from_str(template.event.get())
        .map_err(|e| Error::RemoteUnavailable(format!("make_leave answer: {e}")))?;
    if event["type"] != "m.room.member"
        || event["state_key"] != user.as_str()
        || event["room_id"] != room_id.as_str()
    {
        return Err(Error::RemoteUnavailable(
            "make_leave answered another event".into(),
        ));
    }
    let mut content = json!({ "membership": "leave" });
    if let Some(r) = reason {
        content["reason"] = json!(r);
    }
    let (object, event_id) = super::join::sign_template(hs, &rules, event, content, user)?;
    let raw =
        serde_json::value::to_raw_value(&object).map_err(|e| Error::Internal(e.to_string()))?;
    federation
        .client
        .send(
            hs.keys.pair(),
            server,
            membership::create_leave_event::v2::Request::new(room_id.to_owned(), event_id, raw),
        )
        .await?;
    invites::store_own_out_of_band(hs, room_id, &version, object, None).await
}
