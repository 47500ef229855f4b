//! Other servers' users joining rooms through this server (the resident side of
//! `make_join` / `send_join`): the join template, built and checked as a local event
//! would be but not stored, and the state a joining server needs afterwards.

use ruma::{RoomVersionId, ServerName, UserId, events::TimelineEventType};
use serde_json::{Value as JsonValue, json};

use super::{
    context::room_context,
    pdu::NewEvent,
    persist::build_checked,
    remote_reads::{auth_chain, check_server_acl},
};
use crate::{
    error::{Error, Result},
    server::Homeserver,
    storage::events::StoredEvent,
};

/// A join event for `user_id` to sign and send back: prev and auth events from this
/// server's view of the room, checked against its current state. Restricted rooms get a
/// local authoriser when the user qualifies.
pub async fn join_template(
    hs: &Homeserver,
    origin: &ServerName,
    room_id: &ruma::RoomId,
    user_id: &UserId,
    supported: &[RoomVersionId],
) -> Result<(RoomVersionId, JsonValue)> {
    membership_template(hs, origin, room_id, user_id, "join", Some(supported)).await
}

/// A knock event for `user_id`, as `join_template`.
pub async fn knock_template(
    hs: &Homeserver,
    origin: &ServerName,
    room_id: &ruma::RoomId,
    user_id: &UserId,
    supported: &[RoomVersionId],
) -> Result<(RoomVersionId, JsonValue)> {
    membership_template(hs, origin, room_id, user_id, "knock", Some(supported)).await
}

/// A leave event for `user_id` (declining an invite, or leaving), as `join_template`.
pub async fn leave_template(
    hs: &Homeserver,
    origin: &ServerName,
    room_id: &ruma::RoomId,
    user_id: &UserId,
) -> Result<(RoomVersionId, JsonValue)> {
    membership_template(hs, origin, room_id, user_id, "leave", None).await
}

/// The template of a membership event of another server's user about themselves;
/// `supported`: the room versions a joining or knocking server speaks.
async fn membership_template(
    hs: &Homeserver,
    origin: &ServerName,
    room_id: &ruma::RoomId,
    user_id: &UserId,
    membership: &str,
    supported: Option<&[RoomVersionId]>,
) -> Result<(RoomVersionId, JsonValue)> {
    if user_id.server_name() != origin {
        return Err(Error::Forbidden(format!(
            "{origin} cannot ask to join for a user of another server"
        )));
    }
    let ctx = room_context(hs, room_id).await?;
    check_server_acl(hs, room_id, origin).await?;
    // A room every user of this server has left is not this server's to let others into
    // (its view of the room may be stale).
    if !hs
        .storage
        .server_joined(room_id.as_str(), hs.config.server_name().as_str())
        .await?
    {
        return Err(Error::NotFound(
            "no user of this server is in the room".into(),
        ));
    }
    let mut content = json!({ "membership": membership });
    if let Some(supported) = supported {
        // Servers that send no `ver` speak only room version 1.
        let speaks = if supported.is_empty() {
            ctx.version == RoomVersionId::V1
        } else {
            supported.contains(&ctx.version)
        };
        if !speaks {
            return Err(Error::IncompatibleRoomVersion(ctx.version.to_string()));
        }
        if membership == "join"
            && let Some(authoriser) =
                super::membership::restricted_join_authoriser(hs, &ctx, user_id).await?
        {
            content["join_authorised_via_users_server"] = authoriser.into();
        }
    }
    let new = NewEvent {
        event_type: TimelineEventType::RoomMember.to_string(),
        content,
        state_key: Some(user_id.to_string()),
        redacts: None,
        origin_server_ts: None,
    };
    let template = {
        let _slot = hs.room_locks.lock(room_id.as_str()).await?;
        let mut w = hs.storage.begin_room_write(room_id.as_str()).await?;
        // Built and checked exactly as a local membership change would be; the write is
        // dropped (rolled back): the member's server signs and sends the event.
        build_checked(hs, &mut w, &ctx, user_id, &new)
            .await?
            .pdu
            .json
    };
    let mut template =
        serde_json::to_value(template).map_err(|e| Error::Internal(e.to_string()))?;
    if let Some(fields) = template.as_object_mut() {
        for field in ["signatures", "hashes", "unsigned", "event_id"] {
            fields.remove(field);
        }
    }
    Ok((ctx.version, template))
}

/// What a server that has just joined needs: the room's state before its join (member
/// events left out when `omit_members`, except those the join's auth needs), the auth
/// chain of that state and of the join, and the servers in the room before it.
pub struct JoinedState {
    pub state: Vec<StoredEvent>,
    pub auth_chain: Vec<StoredEvent>,
    pub servers_in_room: Vec<String>,
}

pub async fn state_for_new_member(
    hs: &Homeserver,
    join: &StoredEvent,
    omit_members: bool,
) -> Result<JoinedState> {
    let state = match join.state_before {
        Some(group) => hs.storage.state_at_group(group).await?,
        None => Default::default(),
    };
    let nids: Vec<i64> = state.values().copied().collect();
    let mut events = hs.storage.events_by_nid(&nids).await?;
    let mut servers: Vec<String> = events
        .iter()
        .filter(|e| e.pdu["type"] == "m.room.member" && e.pdu["content"]["membership"] == "join")
        .filter_map(|e| e.pdu["state_key"].as_str())
        .filter_map(|u| u.split_once(':').map(|(_, s)| s.to_owned()))
        .collect();
    servers.sort();
    servers.dedup();
    let join_chain = auth_chain(hs, std::slice::from_ref(join)).await?;
    if omit_members {
        let needed: std::collections::HashSet<&str> =
            join_chain.iter().map(|e| e.event_id.as_str()).collect();
        events.retain(|e| e.pdu["type"] != "m.room.member" || needed.contains(e.event_id.as_str()));
    }
    let mut chain = auth_chain(hs, &events).await?;
    let mut seen: std::collections::HashSet<String> =
        chain.iter().map(|e| e.event_id.clone()).collect();
    for event in join_chain {
        if seen.insert(event.event_id.clone()) {
            chain.push(event);
        }
    }
    Ok(JoinedState {
        state: events,
        auth_chain: chain,
        servers_in_room: servers,
    })
}
