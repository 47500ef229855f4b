//! Joining rooms, local or on other servers (`POST /join`): a room this server holds is
//! joined locally; another is joined through one of the servers that may know it (the
//! request's `via`/`server_name`, the alias's servers, the room ID's server): `make_join`,
//! the event signed here, `send_join`, then `rooms::remote_join` makes the room ours.

use ruma::{
    CanonicalJsonObject, OwnedRoomId, OwnedServerName, RoomAliasId, RoomId, RoomVersionId,
    ServerName,
    api::federation::membership::{create_join_event, prepare_join_event},
    room_version_rules::EventIdFormatVersion,
    signatures::PublicKeyMap,
};
use serde_json::{Value as JsonValue, json};

use super::legacy::SendJoinV1;

use crate::{
    error::{Error, Result},
    rooms::{context::RoomContext, create::member_content, membership, remote_join},
    server::{Homeserver, now_ms},
    users::Requester,
};

/// Every room version axon supports, for `make_join`'s `ver`.
pub(super) fn supported_versions() -> Vec<RoomVersionId> {
    (1..=12)
        .filter_map(|v| RoomVersionId::try_from(v.to_string().as_str()).ok())
        .collect()
}

/// `POST /join/{roomIdOrAlias}` and `POST /rooms/{roomId}/join`.
pub async fn join_room(
    hs: &Homeserver,
    requester: &Requester,
    id_or_alias: &str,
    via: &[OwnedServerName],
    reason: Option<&str>,
    extra: &serde_json::Map<String, JsonValue>,
) -> Result<OwnedRoomId> {
    let (room_id, servers) = resolve(hs, requester, id_or_alias, via).await?;
    let Some(servers) = servers else {
        membership::join(hs, requester, &room_id, reason, extra).await?;
        return Ok(room_id);
    };
    let mut last_error = None;
    for server in &servers {
        match join_through(hs, requester, &room_id, server, reason, extra).await {
            Ok(()) => return Ok(room_id),
            Err(e) if is_final(&e) => return Err(e),
            Err(e) => {
                tracing::info!(%room_id, %server, "remote join failed, trying the next server: {e}");
                last_error = Some(e);
            }
        }
    }
    Err(last_error.unwrap_or_else(|| Error::NotFound("the room could not be joined".into())))
}

/// The room an ID or alias names, with the servers to reach it through when it is not
/// held here (None when it is, or federation is off): the request's `via`, the alias's
/// servers, the inviting server, the room ID's server.
pub(super) async fn resolve(
    hs: &Homeserver,
    requester: &Requester,
    id_or_alias: &str,
    via: &[OwnedServerName],
) -> Result<(OwnedRoomId, Option<Vec<OwnedServerName>>)> {
    let mut servers: Vec<OwnedServerName> = via.to_vec();
    let room_id = if id_or_alias.starts_with('#') {
        let alias = RoomAliasId::parse(id_or_alias)
            .map_err(|e| Error::InvalidParam(format!("invalid room alias: {e}")))?;
        if alias.server_name() == hs.config.server_name() || !hs.config.federation_enabled() {
            membership::resolve_room(hs, id_or_alias).await?
        } else {
            let (room_id, alias_servers) = super::query::room_alias(hs, &alias).await?;
            servers.extend(alias_servers);
            room_id
        }
    } else {
        membership::resolve_room(hs, id_or_alias).await?
    };
    let ours = hs.config.server_name();
    let known = hs.storage.room(room_id.as_str()).await?.is_some();
    // A room held here with a member of this server in it is joined in its DAG here; one
    // this server has left is joined again through the servers still in it.
    if !hs.config.federation_enabled()
        || known
            && hs
                .storage
                .server_joined(room_id.as_str(), ours.as_str())
                .await?
    {
        return Ok((room_id, None));
    }
    if known {
        for server in hs.storage.room_servers(room_id.as_str()).await? {
            if let Ok(server) = OwnedServerName::try_from(server) {
                servers.push(server);
            }
        }
    }
    // Invited from another server: that server is in the room.
    servers.extend(crate::rooms::invites::inviting_server(hs, &room_id, &requester.user_id).await?);
    if let Some(server) = room_id.server_name() {
        servers.push(server.to_owned());
    }
    servers.retain(|s| s != ours);
    let mut unique = Vec::new();
    for server in servers {
        if !unique.contains(&server) {
            unique.push(server);
        }
    }
    if unique.is_empty() {
        // A room of this server's own that everyone left is still joined here.
        if known {
            return Ok((room_id, None));
        }
        return Err(Error::NotFound(
            "no known room with that ID, and no server to ask for it".into(),
        ));
    }
    Ok((room_id, Some(unique)))
}

/// Whether a failure through one server is the room's own answer (not allowed), which
/// ends the attempt, rather than a reason to try the next server.
pub(super) fn is_final(e: &Error) -> bool {
    matches!(
        e,
        Error::Forbidden(_) | Error::Rejected(_) | Error::RemoteRefused { .. }
    )
}

/// A resident server's refusal of a membership request, for the client: 403 as
/// forbidden, 404 as a room it does not know (the next server may), other 4xx passed
/// through as they came (errcode and fields, `M_INCOMPATIBLE_ROOM_VERSION` say).
pub(super) fn refusal(e: super::client::SendError) -> Error {
    match e {
        super::client::SendError::Refused { status: 403, body } => {
            Error::Forbidden(remote_reason(&body))
        }
        super::client::SendError::Refused { status: 404, .. } => {
            Error::NotFound("the server does not know the room".into())
        }
        super::client::SendError::Refused { status, body } if (400..500).contains(&status) => {
            Error::RemoteRefused {
                status,
                body: serde_json::from_str(&body).unwrap_or_else(|_| json!({ "error": body })),
            }
        }
        other => other.into(),
    }
}

/// The `error` of another server's Matrix error body, else the body.
pub(super) fn remote_reason(body: &str) -> String {
    serde_json::from_str::<JsonValue>(body)
        .ok()
        .and_then(|v| v["error"].as_str().map(str::to_owned))
        .unwrap_or_else(|| body.to_owned())
}

/// A `make_join`/`make_leave` template made this server's event: our content, sender and
/// time, an event ID for room versions 1 and 2, hashed and signed. With its event ID.
pub(super) fn sign_template(
    hs: &Homeserver,
    rules: &ruma::room_version_rules::RoomVersionRules,
    mut event: JsonValue,
    content: JsonValue,
    user: &ruma::UserId,
) -> Result<(CanonicalJsonObject, ruma::OwnedEventId)> {
    event["content"] = content;
    event["sender"] = json!(user);
    event["origin_server_ts"] = json!(now_ms());
    if let Some(fields) = event.as_object_mut() {
        fields.remove("signatures");
        fields.remove("hashes");
        fields.remove("unsigned");
    }
    if rules.event_id_format == EventIdFormatVersion::V1 {
        event["event_id"] = json!(format!(
            "${}:{}",
            crate::secrets::random_id(18),
            hs.config.server_name()
        ));
    }
    let mut object: CanonicalJsonObject = serde_json::from_value(event)
        .map_err(|e| Error::RemoteUnavailable(format!("the membership template: {e}")))?;
    ruma::signatures::hash_and_sign_event(
        hs.config.server_name().as_str(),
        hs.keys.pair(),
        &mut object,
        &rules.redaction,
    )
    .map_err(|e| Error::Internal(format!("signing a membership event: {e}")))?;
    let event_id = crate::rooms::receive::event_id_of(&object, rules)
        .map_err(|e| Error::Internal(format!("membership event ID: {e}")))?;
    Ok((object, event_id))
}

async fn join_through(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    server: &ServerName,
    reason: Option<&str>,
    extra: &serde_json::Map<String, JsonValue>,
) -> Result<()> {
    let federation = super::state(hs)?;
    let user = &requester.user_id;
    let mut ask = prepare_join_event::v1::Request::new(room_id.to_owned(), user.clone());
    ask.ver = supported_versions();
    let template = federation
        .client
        .send(hs.keys.pair(), server, ask)
        .await
        .map_err(refusal)?;
    let version = template.room_version.unwrap_or(RoomVersionId::V1);
    let rules = version
        .rules()
        .ok_or_else(|| Error::UnsupportedRoomVersion(format!("room version {version}")))?;
    let event: JsonValue = serde_json::from_str(template.event.get())
        .map_err(|e| Error::RemoteUnavailable(format!("make_join answer: {e}")))?;
    if event["type"] != "m.room.member"
        || event["state_key"] != user.as_str()
        || event["room_id"] != room_id.as_str()
        || event["content"]["membership"] != "join"
    {
        return Err(Error::RemoteUnavailable(
            "make_join answered another event".into(),
        ));
    }
    // Our own membership content (display name, avatar, reason, extra fields), keeping
    // what the resident server put there for a restricted join.
    let mut content = member_content(hs, user, "join").await?;
    if let Some(r) = reason {
        content["reason"] = json!(r);
    }
    for (key, value) in extra {
        if !matches!(
            key.as_str(),
            "membership" | "join_authorised_via_users_server"
        ) {
            content[key.as_str()] = value.clone();
        }
    }
    if let Some(authoriser) = event["content"].get("join_authorised_via_users_server") {
        content["join_authorised_via_users_server"] = authoriser.clone();
    }
    let (object, event_id) = sign_template(hs, &rules, event, content, user)?;
    let raw =
        serde_json::value::to_raw_value(&object).map_err(|e| Error::Internal(e.to_string()))?;
    let sent = federation
        .client
        .send(
            hs.keys.pair(),
            server,
            create_join_event::v2::Request::new(room_id.to_owned(), event_id.clone(), raw.clone()),
        )
        .await;
    let parse = |list: &[Box<serde_json::value::RawValue>]| -> Vec<CanonicalJsonObject> {
        list.iter()
            .filter_map(|raw| serde_json::from_str(raw.get()).ok())
            .collect()
    };
    let (countersigned, state, auth_chain) = match sent {
        Ok(joined) => {
            let room_state = joined.room_state;
            let countersigned = match &room_state.event {
                Some(signed) => Some(
                    serde_json::from_str::<CanonicalJsonObject>(signed.get())
                        .map_err(|e| Error::RemoteUnavailable(format!("send_join event: {e}")))?,
                ),
                None => None,
            };
            (
                countersigned,
                parse(&room_state.state),
                parse(&room_state.auth_chain),
            )
        }
        // A server that only knows the v1 form.
        Err(super::client::SendError::Refused { status: 404, .. }) => {
            let joined = federation
                .client
                .send(
                    hs.keys.pair(),
                    server,
                    SendJoinV1::new(room_id.to_owned(), event_id, raw),
                )
                .await
                .map_err(refusal)?;
            let answer = joined.object().ok_or_else(|| {
                Error::RemoteUnavailable(format!("{server} answered the v1 send_join oddly"))
            })?;
            let list = |field: &str| -> Vec<CanonicalJsonObject> {
                answer[field]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|e| serde_json::from_value(e.clone()).ok())
                    .collect()
            };
            (None, list("state"), list("auth_chain"))
        }
        Err(e) => return Err(refusal(e)),
    };
    // A restricted join comes back countersigned by the authorising server.
    let join = countersigned.unwrap_or(object);
    let ctx = RoomContext {
        room_id: room_id.to_owned(),
        version: version.clone(),
        rules: rules.clone(),
    };
    let mut keys = PublicKeyMap::new();
    for event in state
        .iter()
        .chain(&auth_chain)
        .chain(std::iter::once(&join))
    {
        match super::keys::pdu_keys(hs, &ctx, event).await {
            Ok(found) => {
                for (name, set) in found {
                    keys.entry(name).or_default().extend(set);
                }
            }
            Err(e) => tracing::debug!(%room_id, "an event of the join's state without keys: {e}"),
        }
    }
    remote_join::adopt_joined_room(hs, room_id, &version, join, state, auth_chain, &keys).await?;
    Ok(())
}
