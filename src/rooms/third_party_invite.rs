//! Third-party invites, rooms side: `m.room.third_party_invite` for an address with no
//! account yet (the identity server keeps the invite and mails it), and its exchange for
//! an `m.room.member` invite once the address is bound to a user. The auth rules check the
//! exchanged invite's signature against the room's keys; this side also asks the identity
//! server that the key is still valid (a revoked key invites no one).

use ruma::{
    CanonicalJsonObject, RoomId, UserId,
    serde::Base64,
    signatures::{PublicKeyMap, PublicKeySet},
};
use serde_json::{Value as JsonValue, json};

use super::{
    context::{self, current_state_content, room_context},
    create::member_content,
    pdu::NewEvent,
    power, send,
};
use crate::{
    error::{Error, Result},
    identity::{IdentityClient, InviteDetails},
    server::Homeserver,
    users::Requester,
};

/// Where a third-party invite goes: the identity server the client chose, and the address.
pub struct ThirdPartyTarget<'a> {
    pub id_server: &'a str,
    pub id_access_token: &'a str,
    pub medium: &'a str,
    pub address: &'a str,
}

/// Invites an address with no account: the identity server stores the invite (and tells
/// the invitee), and the room gets `m.room.third_party_invite` with its keys.
pub async fn invite_unbound(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    target: &ThirdPartyTarget<'_>,
) -> Result<()> {
    let ctx = room_context(hs, room_id).await?;
    context::require_joined(hs, requester, room_id).await?;
    // Checked before the identity server is asked, so a refused invite mails no one.
    let needed = power::required(hs, &ctx, "invite", 0).await?;
    if !power::at_least(
        power::user_power(hs, &ctx, &requester.user_id).await?,
        needed,
    ) {
        return Err(Error::Forbidden(
            "you do not have the power to invite to this room".into(),
        ));
    }
    let state = |event_type: &'static str, field: &'static str| async move {
        Ok::<_, Error>(
            current_state_content(hs, room_id, event_type, "")
                .await?
                .and_then(|c| c[field].as_str().map(str::to_owned)),
        )
    };
    let alias = state("m.room.canonical_alias", "alias").await?;
    let name = state("m.room.name", "name").await?;
    let join_rules = state("m.room.join_rules", "join_rule").await?;
    let avatar = state("m.room.avatar", "url").await?;
    let room_type = state("m.room.create", "type").await?;
    let me = current_state_content(hs, room_id, "m.room.member", requester.user_id.as_str())
        .await?
        .unwrap_or_default();
    let stored = IdentityClient::of(hs)?
        .store_invite(
            target.id_server,
            target.id_access_token,
            &InviteDetails {
                medium: target.medium,
                address: target.address,
                room_id: room_id.as_str(),
                sender: requester.user_id.as_str(),
                room_alias: alias.as_deref(),
                room_name: name.as_deref(),
                room_join_rules: join_rules.as_deref(),
                room_avatar_url: avatar.as_deref(),
                sender_display_name: me["displayname"].as_str(),
                sender_avatar_url: me["avatar_url"].as_str(),
                room_type: room_type.as_deref(),
            },
        )
        .await?;
    let (first_key, first_url) = stored.public_keys[0].clone();
    let content = json!({
        "display_name": stored.display_name,
        "key_validity_url": first_url,
        "public_key": first_key,
        "public_keys": stored
            .public_keys
            .iter()
            .map(|(key, url)| json!({ "public_key": key, "key_validity_url": url }))
            .collect::<Vec<_>>(),
    });
    send::send(
        hs,
        room_id,
        &requester.user_id,
        NewEvent {
            event_type: "m.room.third_party_invite".into(),
            content,
            state_key: Some(stored.token),
            redacts: None,
            origin_server_ts: None,
        },
        None,
    )
    .await?;
    Ok(())
}

/// The identity server bound the invited address to `invitee`: the invite of `sender`
/// (a user of this server) becomes their `m.room.member` invite, carrying `signed`. For
/// an invitee of this server it is sent here; for another server's, the checked
/// `third_party_invite` content is the answer, for federation's `/invite`.
pub async fn exchange(
    hs: &Homeserver,
    room_id: &RoomId,
    sender: &UserId,
    invitee: &UserId,
    signed: &JsonValue,
) -> Result<Option<JsonValue>> {
    room_context(hs, room_id).await?;
    let token = signed["token"]
        .as_str()
        .ok_or_else(|| Error::InvalidParam("signed has no token".into()))?;
    if signed["mxid"].as_str() != Some(invitee.as_str()) {
        return Err(Error::InvalidParam("signed is for another user".into()));
    }
    let invite = context::current_state_event(hs, room_id, "m.room.third_party_invite", token)
        .await?
        .ok_or_else(|| Error::NotFound("no third-party invite with that token".into()))?;
    if invite.pdu["sender"].as_str() != Some(sender.as_str()) {
        return Err(Error::Forbidden(
            "the third-party invite was sent by someone else".into(),
        ));
    }
    let invite_content = &invite.pdu["content"];
    verify_signed(hs, invite_content, signed).await?;
    let third_party_invite = json!({
        "display_name": invite_content["display_name"],
        "signed": signed,
    });
    if invitee.server_name() != hs.config.server_name() {
        return Ok(Some(third_party_invite));
    }
    let mut content = member_content(hs, invitee, "invite").await?;
    content["third_party_invite"] = third_party_invite;
    send::send(
        hs,
        room_id,
        sender,
        NewEvent {
            event_type: "m.room.member".into(),
            content,
            state_key: Some(invitee.to_string()),
            redacts: None,
            origin_server_ts: None,
        },
        None,
    )
    .await?;
    Ok(None)
}

/// `signed` must carry a signature by one of the invite's keys, and the identity server
/// must still vouch for that key.
async fn verify_signed(hs: &Homeserver, invite: &JsonValue, signed: &JsonValue) -> Result<()> {
    let mut keys: Vec<(String, Option<String>)> = invite["public_keys"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|k| {
            Some((
                k["public_key"].as_str()?.to_owned(),
                k["key_validity_url"].as_str().map(str::to_owned),
            ))
        })
        .collect();
    if let Some(key) = invite["public_key"].as_str() {
        keys.push((
            key.to_owned(),
            invite["key_validity_url"].as_str().map(str::to_owned),
        ));
    }
    let object: CanonicalJsonObject = match signed.clone().try_into() {
        Ok(ruma::CanonicalJsonValue::Object(o)) => o,
        _ => return Err(Error::InvalidParam("signed is not a JSON object".into())),
    };
    let signatures = signed["signatures"]
        .as_object()
        .ok_or_else(|| Error::InvalidSignature("signed has no signatures".into()))?;
    for (key, validity_url) in &keys {
        let Ok(public) = Base64::parse(key.trim_end_matches('=')) else {
            continue;
        };
        for (server, by_key) in signatures {
            let Some(by_key) = by_key.as_object() else {
                continue;
            };
            for key_id in by_key.keys() {
                let set: PublicKeySet = [(key_id.clone(), public.clone())].into();
                let map: PublicKeyMap = [(server.clone(), set)].into();
                if ruma::signatures::verify_json(&map, &object).is_err() {
                    continue;
                }
                let valid = match validity_url {
                    Some(url) => IdentityClient::of(hs)?.key_is_valid(hs, url, key).await,
                    None => false,
                };
                return if valid {
                    Ok(())
                } else {
                    Err(Error::Forbidden(
                        "the identity server no longer vouches for the invite's key".into(),
                    ))
                };
            }
        }
    }
    Err(Error::InvalidSignature(
        "the invite is not signed by any of the room's invite keys".into(),
    ))
}
