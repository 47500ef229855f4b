//! Membership changes by local users: join, leave, invite, kick, ban, unban, forget.

use ruma::{OwnedRoomId, RoomId, UserId};
use serde_json::Value as JsonValue;

use super::{context, create::member_content, pdu::NewEvent, send};
use crate::{
    error::{Error, Result},
    server::Homeserver,
    users::Requester,
};

fn member_event(target: &UserId, content: JsonValue) -> NewEvent {
    NewEvent {
        event_type: "m.room.member".into(),
        content,
        state_key: Some(target.to_string()),
        redacts: None,
        origin_server_ts: None,
    }
}

fn with_reason(mut content: JsonValue, reason: Option<&str>) -> JsonValue {
    if let Some(r) = reason {
        content["reason"] = r.into();
    }
    content
}

/// Sends the requester's own membership event.
async fn send_own(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    content: JsonValue,
) -> Result<()> {
    send::send_state_once(
        hs,
        room_id,
        &requester.user_id,
        member_event(&requester.user_id, content),
    )
    .await?;
    Ok(())
}

/// Resolves `#alias` or `!id` to a room known here.
pub async fn resolve_room(hs: &Homeserver, id_or_alias: &str) -> Result<OwnedRoomId> {
    if id_or_alias.starts_with('#') {
        let alias = ruma::RoomAliasId::parse(id_or_alias)
            .map_err(|e| Error::InvalidParam(format!("invalid room alias: {e}")))?;
        return super::aliases::resolve(hs, &alias).await;
    }
    RoomId::parse(id_or_alias).map_err(|e| Error::InvalidParam(format!("invalid room ID: {e}")))
}

/// Joins the room. `extra`: other fields of the request body, kept in the member event
/// as Synapse keeps them (a display name given here is a per-room one; the membership and
/// the restricted-join authoriser are the server's).
pub async fn join(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    reason: Option<&str>,
    extra: &serde_json::Map<String, JsonValue>,
) -> Result<()> {
    let ctx = context::room_context(hs, room_id)
        .await
        .map_err(|_| Error::NotFound("no known room with that ID or alias".into()))?;
    if requester.is_guest && !guests_may_join(hs, room_id).await? {
        return Err(Error::GuestAccessForbidden);
    }
    let mut content = with_reason(
        member_content(hs, &requester.user_id, "join").await?,
        reason,
    );
    for (key, value) in extra {
        if !matches!(
            key.as_str(),
            "membership" | "reason" | "third_party_signed" | "join_authorised_via_users_server"
        ) {
            content[key.as_str()] = value.clone();
        }
    }
    if let Some(authoriser) = restricted_join_authoriser(hs, &ctx, &requester.user_id).await? {
        content["join_authorised_via_users_server"] = authoriser.into();
    }
    send_own(hs, requester, room_id, content).await?;
    // Joining the successor of a room one was in carries one's tags and direct chats over.
    let create = context::current_state_content(hs, room_id, "m.room.create", "").await?;
    if let Some(old) = create
        .as_ref()
        .and_then(|c| c["predecessor"]["room_id"].as_str())
        .and_then(|r| RoomId::parse(r).ok())
        && hs
            .storage
            .membership(old.as_str(), requester.user_id.as_str())
            .await?
            .as_deref()
            == Some("join")
    {
        // The join has happened; a failure here (say, account data at its quota) must not
        // turn it into an error for the client.
        if let Err(e) = carry_user_state(hs, requester, &old, room_id).await {
            tracing::warn!(room = %room_id, "could not carry tags and direct chats over: {e}");
        }
    }
    Ok(())
}

/// For a restricted room (v8+) that the user is not invited to or already in: a local
/// member who may invite, to vouch for the join, once the user is shown to be in one of the
/// allowed rooms. `None` when the join needs no authoriser.
pub(super) async fn restricted_join_authoriser(
    hs: &Homeserver,
    ctx: &context::RoomContext,
    user_id: &UserId,
) -> Result<Option<String>> {
    if !ctx.rules.authorization.restricted_join_rule {
        return Ok(None);
    }
    let rules = context::current_state_content(hs, &ctx.room_id, "m.room.join_rules", "")
        .await?
        .unwrap_or_default();
    let rule = rules["join_rule"].as_str().unwrap_or("invite");
    if !(rule == "restricted"
        || rule == "knock_restricted" && ctx.rules.authorization.knock_restricted_join_rule)
    {
        return Ok(None);
    }
    let user = user_id.as_str();
    if matches!(
        hs.storage
            .membership(ctx.room_id.as_str(), user)
            .await?
            .as_deref(),
        Some("join" | "invite")
    ) {
        return Ok(None);
    }
    let mut allowed = false;
    for entry in rules["allow"].as_array().into_iter().flatten() {
        if entry["type"] == "m.room_membership"
            && let Some(room) = entry["room_id"].as_str()
            && hs.storage.membership(room, user).await?.as_deref() == Some("join")
        {
            allowed = true;
            break;
        }
    }
    if !allowed {
        return Err(Error::Forbidden(
            "you are not in any of the rooms that allow joining this one".into(),
        ));
    }
    let needed = super::power::required(hs, ctx, "invite", 0).await?;
    for member in hs.storage.joined_members(ctx.room_id.as_str()).await? {
        let Ok(member_id) = UserId::parse(&member) else {
            continue;
        };
        if member_id.server_name() != hs.config.server_name() {
            continue;
        }
        if super::power::at_least(super::power::user_power(hs, ctx, &member_id).await?, needed) {
            return Ok(Some(member));
        }
    }
    Err(Error::Forbidden(
        "no member of this server may authorise the join".into(),
    ))
}

pub async fn leave(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    reason: Option<&str>,
) -> Result<()> {
    let content = with_reason(serde_json::json!({ "membership": "leave" }), reason);
    send_own(hs, requester, room_id, content).await
}

/// invite, kick (leave), ban, unban (leave): a change to another user's membership.
pub async fn change_other(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    target: &UserId,
    membership: &str,
    reason: Option<&str>,
) -> Result<()> {
    context::room_context(hs, room_id).await?;
    let current = hs
        .storage
        .membership(room_id.as_str(), target.as_str())
        .await?;
    // The auth rules would allow a "kick" of someone not in the room (never there, gone,
    // or banned); Synapse refuses.
    if membership == "leave" && matches!(current.as_deref(), None | Some("leave" | "ban")) {
        return Err(Error::Forbidden("the user is not in the room".into()));
    }
    if membership == "unban" && current.as_deref() != Some("ban") {
        return Err(Error::Forbidden("the user is not banned".into()));
    }
    let content = if membership == "invite" {
        member_content(hs, target, "invite").await?
    } else {
        let m = if membership == "unban" {
            "leave"
        } else {
            membership
        };
        serde_json::json!({ "membership": m })
    };
    let content = with_reason(content, reason);
    send::send(
        hs,
        room_id,
        &requester.user_id,
        member_event(target, content),
        None,
    )
    .await?;
    Ok(())
}

/// Invites a user of another server: as `change_other`, with `extra` in the content
/// (reason, is_direct, their name and avatar as their server tells them), the event
/// signed by that server (`countersign`, federation's `/invite`) before it is stored.
pub async fn invite_remote(
    hs: &Homeserver,
    sender: &UserId,
    room_id: &RoomId,
    target: &UserId,
    extra: &serde_json::Map<String, JsonValue>,
    countersign: impl AsyncFnOnce(
        &ruma::RoomVersionId,
        &ruma::CanonicalJsonObject,
    ) -> Result<ruma::CanonicalJsonObject>,
) -> Result<()> {
    context::room_context(hs, room_id).await?;
    let mut content = member_content(hs, target, "invite").await?;
    for (field, value) in extra {
        if field != "membership" {
            content[field.as_str()] = value.clone();
        }
    }
    send::send_countersigned(
        hs,
        room_id,
        sender,
        member_event(target, content),
        countersign,
    )
    .await?;
    Ok(())
}

/// A change to the user's profile; a display name or avatar change also goes into a new
/// membership event in every room they have joined, as Synapse does (other members see
/// names from those events).
pub async fn set_profile_field(
    hs: &Homeserver,
    requester: &Requester,
    user_id: &UserId,
    field: &str,
    value: &JsonValue,
) -> Result<()> {
    crate::users::profile::set_field(hs, requester, user_id, field, value).await?;
    if matches!(field, "displayname" | "avatar_url") {
        refresh_member_events(hs, user_id).await?;
    }
    Ok(())
}

/// As `set_profile_field`, removing the field.
pub async fn delete_profile_field(
    hs: &Homeserver,
    requester: &Requester,
    user_id: &UserId,
    field: &str,
) -> Result<()> {
    crate::users::profile::delete_field(hs, requester, user_id, field).await?;
    if matches!(field, "displayname" | "avatar_url") {
        refresh_member_events(hs, user_id).await?;
    }
    Ok(())
}

/// Sends the user's current display name and avatar into each joined room whose
/// membership event has others. A room that refuses (a ban in the meantime, say) is
/// skipped: the profile change itself stands.
async fn refresh_member_events(hs: &Homeserver, user_id: &UserId) -> Result<()> {
    let profile = super::create::member_content(hs, user_id, "join").await?;
    for room in hs
        .storage
        .rooms_with_membership(user_id.as_str(), "join")
        .await?
    {
        let Ok(room_id) = RoomId::parse(&room) else {
            continue;
        };
        let current =
            context::current_state_content(hs, &room_id, "m.room.member", user_id.as_str()).await?;
        let Some(mut content) = current.filter(|c| c["membership"] == "join") else {
            continue;
        };
        if let Some(fields) = content.as_object_mut() {
            for key in ["displayname", "avatar_url"] {
                match profile.get(key) {
                    Some(v) => fields.insert(key.to_owned(), v.clone()),
                    None => fields.remove(key),
                };
            }
            // Those belonged to the join itself.
            fields.remove("reason");
            fields.remove("join_authorised_via_users_server");
        }
        let sent =
            send::send_state_once(hs, &room_id, user_id, member_event(user_id, content)).await;
        if let Err(e) = sent {
            tracing::info!(%room_id, "profile change not sent into the room: {e}");
        }
    }
    Ok(())
}

/// Whether the room lets guests in (`m.room.guest_access` is `can_join`).
pub async fn guests_may_join(hs: &Homeserver, room_id: &RoomId) -> Result<bool> {
    Ok(
        context::current_state_content(hs, room_id, "m.room.guest_access", "")
            .await?
            .is_some_and(|c| c["guest_access"] == "can_join"),
    )
}

/// After a room stopped letting guests in: its local guests leave, as in Synapse.
pub async fn remove_guests(hs: &Homeserver, room_id: &RoomId) -> Result<()> {
    if guests_may_join(hs, room_id).await? {
        return Ok(());
    }
    for user in hs.storage.joined_local_guests(room_id.as_str()).await? {
        let Ok(user_id) = ruma::OwnedUserId::try_from(user) else {
            continue;
        };
        let guest = Requester {
            user_id,
            device_id: "".into(),
            is_admin: false,
            is_guest: true,
            is_suspended: false,
            is_locked: false,
            appservice: None,
        };
        if let Err(e) = leave(hs, &guest, room_id, Some("guest access was revoked")).await {
            tracing::warn!(%room_id, user = %guest.user_id, "guest not removed: {e}");
        }
    }
    Ok(())
}

pub async fn joined_rooms(hs: &Homeserver, requester: &Requester) -> Result<Vec<OwnedRoomId>> {
    hs.storage
        .rooms_with_membership(requester.user_id.as_str(), "join")
        .await?
        .into_iter()
        .map(|r| RoomId::parse(r).map_err(|e| Error::Internal(e.to_string())))
        .collect()
}

/// `POST /rooms/{roomId}/forget`: only for rooms the user is no longer in.
pub async fn forget(hs: &Homeserver, requester: &Requester, room_id: &RoomId) -> Result<()> {
    match hs
        .storage
        .membership(room_id.as_str(), requester.user_id.as_str())
        .await?
        .as_deref()
    {
        None => Err(Error::NotFound("you have never been in this room".into())),
        Some("join") | Some("invite") | Some("knock") => Err(Error::BadState(
            "leave the room before forgetting it".into(),
        )),
        Some(_) => Ok(hs
            .storage
            .forget_room(room_id.as_str(), requester.user_id.as_str())
            .await?),
    }
}

/// `POST /knock/{roomIdOrAlias}`: asks to join a room whose join rule allows knocking.
pub async fn knock(
    hs: &Homeserver,
    requester: &Requester,
    room_id: &RoomId,
    reason: Option<&str>,
) -> Result<()> {
    let ctx = context::room_context(hs, room_id).await?;
    if !ctx.rules.authorization.knocking {
        return Err(Error::Forbidden(format!(
            "room version {} does not support knocking",
            ctx.version
        )));
    }
    let content = with_reason(
        member_content(hs, &requester.user_id, "knock").await?,
        reason,
    );
    send_own(hs, requester, room_id, content).await
}

pub async fn mutual_rooms(
    hs: &Homeserver,
    requester: &Requester,
    other: &UserId,
) -> Result<Vec<OwnedRoomId>> {
    hs.storage
        .mutual_rooms(requester.user_id.as_str(), other.as_str())
        .await?
        .into_iter()
        .map(|r| RoomId::parse(r).map_err(|e| Error::Internal(e.to_string())))
        .collect()
}

/// What a user keeps of an upgraded room in the new one, as Synapse carries it: its tags,
/// and its place in their direct chats (`m.direct`).
pub(super) async fn carry_user_state(
    hs: &Homeserver,
    requester: &Requester,
    old: &RoomId,
    new: &RoomId,
) -> Result<()> {
    use crate::users::account_data;
    let user = &requester.user_id;
    let tags = account_data::tags(hs, requester, user, old).await?;
    if let Some(tags) = tags.as_object() {
        for (tag, info) in tags {
            account_data::set_tag(hs, requester, user, new, tag, info.clone()).await?;
        }
    }
    let direct = match account_data::get(hs, requester, user, None, "m.direct").await {
        Ok(direct) => direct,
        Err(Error::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut updated = direct.clone();
    if let Some(by_user) = updated.as_object_mut() {
        for rooms in by_user.values_mut() {
            if let Some(list) = rooms.as_array_mut()
                && list.iter().any(|r| r == old.as_str())
                && !list.iter().any(|r| r == new.as_str())
            {
                list.push(serde_json::json!(new));
            }
        }
    }
    if updated != direct {
        account_data::set(hs, requester, user, None, "m.direct", &updated).await?;
    }
    Ok(())
}
