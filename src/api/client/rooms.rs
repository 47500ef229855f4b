//! Room creation and membership: createRoom, join, leave, invite, kick, ban, unban,
//! joined_rooms.

use std::sync::Arc;

use axum::Router;
use ruma::api::client::{
    membership::{
        Invite3pid, ban_user, forget_room, invite_user, join_room_by_id, join_room_by_id_or_alias,
        joined_rooms, kick_user, leave_room, unban_user,
    },
    room::{Visibility, create_room, upgrade_room},
};
use serde_json::Value as JsonValue;

use crate::{
    error::{Error, Result},
    http::{
        Ruma,
        extract::{Patches, route_patched},
        route,
    },
    rooms::{
        create::{CreateRoom, Preset},
        membership,
        third_party_invite::ThirdPartyTarget,
        upgrade,
    },
    server::Homeserver,
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let router = route_patched(
        router,
        create_room,
        Patches {
            request: Some(|body| room_version_syntax(body, "room_version")),
            response: None,
        },
    );
    let router = route(router, joined_rooms);
    let router = route(router, join_by_id);
    let router = route(router, join_by_id_or_alias);
    let router = route(router, leave);
    let router = route(router, invite);
    let router = route(router, kick);
    let router = route(router, ban);
    let router = route(router, forget);
    let router = route_patched(
        router,
        upgrade_room,
        Patches {
            request: Some(|body| room_version_syntax(body, "new_version")),
            response: None,
        },
    );
    route(router, unban)
}

async fn forget(
    hs: Arc<Homeserver>,
    req: Ruma<forget_room::v3::Request>,
) -> Result<forget_room::v3::Response> {
    membership::forget(&hs, req.requester()?, &req.body.room_id).await?;
    Ok(forget_room::v3::Response::new())
}

/// A room version that is not even well-formed is unsupported (400
/// `M_UNSUPPORTED_ROOM_VERSION`, as Synapse answers), not a body that fails to decode.
fn room_version_syntax(body: &mut JsonValue, field: &str) -> Result<()> {
    if let Some(version) = body.get(field).and_then(JsonValue::as_str)
        && ruma::RoomVersionId::try_from(version).is_err()
    {
        return Err(Error::UnsupportedRoomVersion(format!(
            "room version {version:?} is not supported"
        )));
    }
    Ok(())
}

fn raw_json<T>(raw: &ruma::serde::Raw<T>) -> Result<JsonValue> {
    serde_json::from_str(raw.json().get()).map_err(|e| Error::BadJson(e.to_string()))
}

async fn create_room(
    hs: Arc<Homeserver>,
    req: Ruma<create_room::v3::Request>,
) -> Result<create_room::v3::Response> {
    let b = &req.body;
    // Third-party invites are sent once the room exists; what can be checked before is.
    for by_3pid in &b.invite_3pid {
        crate::identity::check_name(&by_3pid.id_server)?;
        if by_3pid.medium.as_str() != "email" {
            return Err(Error::ThreepidMediumNotSupported(
                "third-party invites are by email only".into(),
            ));
        }
    }
    let preset = match &b.preset {
        None => None,
        Some(create_room::v3::RoomPreset::PrivateChat) => Some(Preset::PrivateChat),
        Some(create_room::v3::RoomPreset::TrustedPrivateChat) => Some(Preset::TrustedPrivateChat),
        Some(create_room::v3::RoomPreset::PublicChat) => Some(Preset::PublicChat),
        Some(other) => {
            return Err(Error::InvalidParam(format!(
                "unknown preset {}",
                other.as_str()
            )));
        }
    };
    let room_id = crate::federation::invite::create_room(
        &hs,
        req.requester()?,
        CreateRoom {
            room_version: b.room_version.clone(),
            preset,
            public: b.visibility == Visibility::Public,
            name: b.name.clone(),
            topic: b.topic.clone(),
            room_alias_name: b.room_alias_name.clone(),
            invite: b.invite.clone(),
            is_direct: b.is_direct,
            creation_content: b.creation_content.as_ref().map(raw_json).transpose()?,
            initial_state: b
                .initial_state
                .iter()
                .map(raw_json)
                .collect::<Result<_>>()?,
            power_level_content_override: b
                .power_level_content_override
                .as_ref()
                .map(raw_json)
                .transpose()?,
            room_id: None,
            invite_later: Vec::new(),
        },
    )
    .await?;
    // As remote invitees: one that fails does not undo the room; it is logged.
    for by_3pid in &b.invite_3pid {
        if let Err(e) = crate::federation::third_party_invite::invite(
            &hs,
            req.requester()?,
            &room_id,
            &third_party_target(by_3pid),
        )
        .await
        {
            tracing::warn!(%room_id, "createRoom's third-party invite failed: {e}");
        }
    }
    Ok(create_room::v3::Response::new(room_id))
}

fn third_party_target(invite: &Invite3pid) -> ThirdPartyTarget<'_> {
    ThirdPartyTarget {
        id_server: &invite.id_server,
        id_access_token: &invite.id_access_token,
        medium: invite.medium.as_str(),
        address: &invite.address,
    }
}

async fn joined_rooms(
    hs: Arc<Homeserver>,
    req: Ruma<joined_rooms::v3::Request>,
) -> Result<joined_rooms::v3::Response> {
    Ok(joined_rooms::v3::Response::new(
        membership::joined_rooms(&hs, req.requester()?).await?,
    ))
}

/// The fields of a join body (an object; ruma's type keeps only the spec's).
fn extra_fields(raw: &[u8]) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::from_slice(raw) {
        Ok(serde_json::Value::Object(fields)) => fields,
        _ => serde_json::Map::new(),
    }
}

async fn join_by_id(
    hs: Arc<Homeserver>,
    req: Ruma<join_room_by_id::v3::Request>,
) -> Result<join_room_by_id::v3::Response> {
    let room_id = crate::federation::join::join_room(
        &hs,
        req.requester()?,
        req.body.room_id.as_str(),
        &[],
        req.body.reason.as_deref(),
        &extra_fields(&req.raw_body),
    )
    .await?;
    Ok(join_room_by_id::v3::Response::new(room_id))
}

async fn join_by_id_or_alias(
    hs: Arc<Homeserver>,
    req: Ruma<join_room_by_id_or_alias::v3::Request>,
) -> Result<join_room_by_id_or_alias::v3::Response> {
    let b = &req.body;
    let room_id = crate::federation::join::join_room(
        &hs,
        req.requester()?,
        b.room_id_or_alias.as_str(),
        &b.via,
        b.reason.as_deref(),
        &extra_fields(&req.raw_body),
    )
    .await?;
    Ok(join_room_by_id_or_alias::v3::Response::new(room_id))
}

async fn leave(
    hs: Arc<Homeserver>,
    req: Ruma<leave_room::v3::Request>,
) -> Result<leave_room::v3::Response> {
    crate::federation::leave::leave_room(
        &hs,
        req.requester()?,
        &req.body.room_id,
        req.body.reason.as_deref(),
    )
    .await?;
    Ok(leave_room::v3::Response::new())
}

async fn invite(
    hs: Arc<Homeserver>,
    req: Ruma<invite_user::v3::Request>,
) -> Result<invite_user::v3::Response> {
    let requester = req.requester()?;
    let recipient = match &req.body.recipient {
        invite_user::v3::InvitationRecipient::UserId(recipient) => recipient,
        invite_user::v3::InvitationRecipient::ThirdPartyId(by_3pid) => {
            crate::federation::third_party_invite::invite(
                &hs,
                requester,
                &req.body.room_id,
                &third_party_target(by_3pid),
            )
            .await?;
            return Ok(invite_user::v3::Response::new());
        }
        _ => return Err(Error::InvalidParam("unknown invite recipient".into())),
    };
    crate::federation::invite::invite_user(
        &hs,
        requester,
        &req.body.room_id,
        &recipient.user_id,
        recipient.reason.as_deref(),
    )
    .await?;
    Ok(invite_user::v3::Response::new())
}

async fn kick(
    hs: Arc<Homeserver>,
    req: Ruma<kick_user::v3::Request>,
) -> Result<kick_user::v3::Response> {
    let b = &req.body;
    membership::change_other(
        &hs,
        req.requester()?,
        &b.room_id,
        &b.user_id,
        "leave",
        b.reason.as_deref(),
    )
    .await?;
    Ok(kick_user::v3::Response::new())
}

async fn ban(
    hs: Arc<Homeserver>,
    req: Ruma<ban_user::v3::Request>,
) -> Result<ban_user::v3::Response> {
    let b = &req.body;
    membership::change_other(
        &hs,
        req.requester()?,
        &b.room_id,
        &b.user_id,
        "ban",
        b.reason.as_deref(),
    )
    .await?;
    Ok(ban_user::v3::Response::new())
}

async fn unban(
    hs: Arc<Homeserver>,
    req: Ruma<unban_user::v3::Request>,
) -> Result<unban_user::v3::Response> {
    let b = &req.body;
    membership::change_other(
        &hs,
        req.requester()?,
        &b.room_id,
        &b.user_id,
        "unban",
        b.reason.as_deref(),
    )
    .await?;
    Ok(unban_user::v3::Response::new())
}

async fn upgrade_room(
    hs: Arc<Homeserver>,
    req: Ruma<upgrade_room::v3::Request>,
) -> Result<upgrade_room::v3::Response> {
    let b = &req.body;
    let new_room = upgrade::upgrade(
        &hs,
        req.requester()?,
        &b.room_id,
        &b.new_version,
        &b.additional_creators,
    )
    .await?;
    Ok(upgrade_room::v3::Response::new(new_room))
}
