//! Third-party invites across servers: inviting by email (the identity server's lookup
//! picks an ordinary invite, else `rooms::third_party_invite` stores one), the identity
//! server's `/3pid/onbind` callback when the address is bound to one of our users, and
//! `/exchange_third_party_invite` both ways, for invites whose inviter is on another
//! server than the invitee.

use ruma::{
    RoomId, ServerName, UserId,
    api::federation::thirdparty::{bind_callback, exchange_invite},
};
use serde_json::Value as JsonValue;

use crate::{
    error::{Error, Result},
    identity::IdentityClient,
    ratelimit::Action,
    rooms::third_party_invite::{self as rooms_invite, ThirdPartyTarget},
    server::Homeserver,
    users::Requester,
};

/// `POST /rooms/{roomId}/invite` with an identity server and an address (and createRoom's
/// `invite_3pid`): the account bound to it is invited, else the address is.
pub async fn invite(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    target: &ThirdPartyTarget<'_>,
) -> Result<()> {
    if target.medium != "email" {
        return Err(Error::ThreepidMediumNotSupported(format!(
            "third-party invites by {} are not supported",
            target.medium
        )));
    }
    // Each invite costs the identity server a lookup and maybe a mail.
    hs.rate_limiter
        .check(Action::ThreepidMail, requester.user_id.as_str())?;
    let bound = IdentityClient::of(hs)?
        .lookup(
            target.id_server,
            target.id_access_token,
            target.medium,
            target.address,
        )
        .await?;
    match bound {
        Some(user_id) => super::invite::invite_user(hs, requester, room_id, &user_id, None).await,
        None => rooms_invite::invite_unbound(hs, requester, room_id, target).await,
    }
}

/// `POST /_matrix/federation/v1/3pid/onbind` (from an identity server): the invites of the
/// newly bound address become invites of our user. Each invite is tried on its own; when
/// one fails (a bad signature, a revoked key, a room gone) the others still go, and the
/// answer is the last failure (as Synapse answers), so the identity server learns of it.
pub async fn on_bind(hs: &Homeserver, request: &bind_callback::v1::Request) -> Result<()> {
    let ours = hs.config.server_name();
    if request.mxid.server_name() != ours {
        return Err(Error::InvalidParam(
            "that user is not on this server".into(),
        ));
    }
    let mut last_failure = None;
    for invite in &request.invites {
        if invite.mxid != request.mxid {
            continue;
        }
        let result = match serde_json::from_str::<JsonValue>(invite.signed.json().get()) {
            Ok(signed) => {
                exchange_for(hs, &invite.room_id, &invite.sender, &invite.mxid, &signed).await
            }
            Err(e) => Err(Error::BadJson(format!("signed: {e}"))),
        };
        if let Err(e) = result {
            tracing::info!(room_id = %invite.room_id, "3PID invite not exchanged: {e}");
            last_failure = Some(e);
        }
    }
    match last_failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Makes the member invite: here when the inviter is ours, else by asking the inviter's
/// server.
async fn exchange_for(
    hs: &Homeserver,
    room_id: &RoomId,
    sender: &UserId,
    invitee: &UserId,
    signed: &JsonValue,
) -> Result<()> {
    if sender.server_name() == hs.config.server_name() {
        return exchange_here(hs, room_id, sender, invitee, signed).await;
    }
    if !hs.config.federation_enabled() {
        return Err(Error::Forbidden("the inviter is on another server".into()));
    }
    let content = serde_json::json!({
        "membership": "invite",
        "third_party_invite": {
            "display_name": signed["display_name"].as_str().unwrap_or_default(),
            "signed": signed,
        },
    });
    let request = exchange_invite::v1::Request::new(
        room_id.to_owned(),
        sender.to_owned(),
        invitee.to_owned(),
        ruma::serde::Raw::from_json(
            serde_json::value::to_raw_value(&content)
                .map_err(|e| Error::Internal(e.to_string()))?,
        ),
    );
    super::state(hs)?
        .client
        .send(hs.keys.pair(), sender.server_name(), request)
        .await?;
    Ok(())
}

/// `PUT /_matrix/federation/v1/exchange_third_party_invite/{roomId}`: another server's
/// user was bound to an address one of our users invited; we make the member invite.
pub async fn on_exchange(
    hs: &Homeserver,
    origin: &ServerName,
    request: &exchange_invite::v1::Request,
) -> Result<()> {
    if request.kind != ruma::events::StateEventType::RoomMember {
        return Err(Error::InvalidParam(
            "only m.room.member can be exchanged".into(),
        ));
    }
    if request.sender.server_name() != hs.config.server_name() {
        return Err(Error::Forbidden("the inviter is not on this server".into()));
    }
    if request.state_key.server_name() != origin {
        return Err(Error::Forbidden(
            "a server may only exchange invites for its own users".into(),
        ));
    }
    let content: JsonValue = serde_json::from_str(request.content.json().get())
        .map_err(|e| Error::BadJson(format!("content: {e}")))?;
    let signed = &content["third_party_invite"]["signed"];
    exchange_here(
        hs,
        &request.room_id,
        &request.sender,
        &request.state_key,
        signed,
    )
    .await
}

/// The exchange by this server (the inviter's): checked in the room; an invitee of another
/// server is invited through their server.
async fn exchange_here(
    hs: &Homeserver,
    room_id: &RoomId,
    sender: &UserId,
    invitee: &UserId,
    signed: &JsonValue,
) -> Result<()> {
    if let Some(third_party_invite) =
        rooms_invite::exchange(hs, room_id, sender, invitee, signed).await?
    {
        let extra =
            serde_json::Map::from_iter([("third_party_invite".to_owned(), third_party_invite)]);
        super::invite::invite_remote_as(hs, sender, room_id, invitee, &extra).await?;
    }
    Ok(())
}
