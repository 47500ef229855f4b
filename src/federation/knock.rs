//! Knocking on rooms (`POST /knock/{roomIdOrAlias}`): a room held here is knocked on in
//! its DAG; another through one of the servers that may know it (as joins find them):
//! `make_knock`, the event signed here, `send_knock`; the knock is then kept out of band
//! with the room state the server answered (`rooms::invites`), until an invite, a leave
//! or a join follows.

use ruma::{
    OwnedRoomId, OwnedServerName, RoomId, RoomVersionId, ServerName,
    api::federation::membership::{create_knock_event, prepare_knock_event},
};
use serde_json::{Value as JsonValue, json};

use super::join::{is_final, refusal, resolve, sign_template, supported_versions};
use crate::{
    error::{Error, Result},
    rooms::{context::rules_for, create::member_content, invites, membership},
    server::Homeserver,
    users::Requester,
};

pub async fn knock_room(
    hs: &Homeserver,
    requester: &Requester,
    id_or_alias: &str,
    via: &[OwnedServerName],
    reason: Option<&str>,
) -> Result<OwnedRoomId> {
    let (room_id, servers) = resolve(hs, requester, id_or_alias, via).await?;
    let Some(servers) = servers else {
        membership::knock(hs, requester, &room_id, reason).await?;
        return Ok(room_id);
    };
    let mut last_error = None;
    for server in &servers {
        match knock_through(hs, requester, &room_id, server, reason).await {
            Ok(()) => return Ok(room_id),
            Err(e) if is_final(&e) => return Err(e),
            Err(e) => {
                tracing::info!(%room_id, %server, "remote knock failed, trying the next server: {e}");
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| Error::NotFound("could not knock on the room".into())))
}

async fn knock_through(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    server: &ServerName,
    reason: Option<&str>,
) -> Result<()> {
    let federation = super::state(hs)?;
    let user = &requester.user_id;
    let mut ask = prepare_knock_event::v1::Request::new(room_id.to_owned(), user.clone());
    ask.ver = supported_versions();
    let template = federation
        .client
        .send(hs.keys.pair(), server, ask)
        .await
        .map_err(refusal)?;
    let version: RoomVersionId = template.room_version;
    let rules = rules_for(&version)?;
    let event: JsonValue = serde_json::from_str(template.event.get())
        .map_err(|e| Error::RemoteUnavailable(format!("make_knock answer: {e}")))?;
    if event["type"] != "m.room.member"
        || event["state_key"] != user.as_str()
        || event["room_id"] != room_id.as_str()
        || event["content"]["membership"] != "knock"
    {
        return Err(Error::RemoteUnavailable(
            "make_knock answered another event".into(),
        ));
    }
    let mut content = member_content(hs, user, "knock").await?;
    if let Some(r) = reason {
        content["reason"] = json!(r);
    }
    let (object, event_id) = sign_template(hs, &rules, event, content, user)?;
    let raw =
        serde_json::value::to_raw_value(&object).map_err(|e| Error::Internal(e.to_string()))?;
    let answer = federation
        .client
        .send(
            hs.keys.pair(),
            server,
            create_knock_event::v1::Request::new(room_id.to_owned(), event_id, raw),
        )
        .await
        .map_err(refusal)?;
    let sent = super::invite::sent_room_state(&answer.knock_room_state);
    let stripped = invites::checked_stripped_state(room_id, &sent);
    invites::store_own_out_of_band(hs, room_id, &version, object, Some(stripped)).await
}
