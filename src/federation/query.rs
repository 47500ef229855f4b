//! Asking other servers about their users and aliases: profiles (`/query/profile`) for
//! the client `/profile` endpoints, aliases (`/query/directory`) for joins and the client
//! `/directory/room`.

use ruma::{
    OwnedRoomId, OwnedServerName, RoomAliasId, UserId,
    api::federation::query::{get_profile_information, get_room_information},
    profile::ProfileFieldName,
};
use serde_json::Value as JsonValue;

use crate::{
    error::{Error, Result},
    server::Homeserver,
};

/// A user's whole profile: ours from storage, another server's by asking it.
pub async fn profile(hs: &Homeserver, user_id: &UserId) -> Result<Vec<(String, JsonValue)>> {
    if is_ours(hs, user_id) {
        return match crate::users::profile::profile(hs, user_id).await {
            // A user an appservice claims may exist once it is asked (it registers it).
            Err(Error::NotFound(_)) if crate::appservice::query_user(hs, user_id).await => {
                crate::users::profile::profile(hs, user_id).await
            }
            other => other,
        };
    }
    remote_profile(hs, user_id, None).await
}

/// One field of a user's profile (as `users::profile::field` for another server's user).
pub async fn field(hs: &Homeserver, user_id: &UserId, name: &str) -> Result<Option<JsonValue>> {
    if is_ours(hs, user_id) {
        return match crate::users::profile::field(hs, user_id, name).await {
            Err(Error::NotFound(_)) if crate::appservice::query_user(hs, user_id).await => {
                crate::users::profile::field(hs, user_id, name).await
            }
            other => other,
        };
    }
    let value = remote_profile(hs, user_id, Some(name))
        .await?
        .into_iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v);
    match value {
        Some(value) => Ok(Some(value)),
        None if matches!(name, "displayname" | "avatar_url") => Ok(None),
        None => Err(Error::NotFound(format!("profile has no field {name:?}"))),
    }
}

fn is_ours(hs: &Homeserver, user_id: &UserId) -> bool {
    user_id.server_name() == hs.config.server_name() || !hs.config.federation_enabled()
}

async fn remote_profile(
    hs: &Homeserver,
    user_id: &UserId,
    field: Option<&str>,
) -> Result<Vec<(String, JsonValue)>> {
    let federation = super::state(hs)?;
    let mut request = get_profile_information::v1::Request::new(user_id.to_owned());
    request.field = field.map(ProfileFieldName::from);
    let answer = federation
        .client
        .send(hs.keys.pair(), user_id.server_name(), request)
        .await
        .map_err(|e| match e {
            super::client::SendError::Refused { status: 404, .. } => {
                Error::NotFound("profile not found".into())
            }
            other => other.into(),
        })?;
    Ok(answer
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .filter(|(_, v)| !v.is_null())
        .filter(|(k, _)| field.is_none_or(|f| f == k))
        .collect())
}

/// The room an alias names and servers that can help join it: for ours, this server
/// first, then the others in the room; for another server's, its answer.
pub async fn room_alias(
    hs: &Homeserver,
    alias: &RoomAliasId,
) -> Result<(OwnedRoomId, Vec<OwnedServerName>)> {
    let ours = hs.config.server_name();
    if alias.server_name() == ours || !hs.config.federation_enabled() {
        let room_id = match crate::rooms::aliases::resolve(hs, alias).await {
            // An appservice may make an alias of its namespace on demand: asked, then
            // looked up again.
            Err(Error::NotFound(_)) if crate::appservice::query_alias(hs, alias).await => {
                crate::rooms::aliases::resolve(hs, alias).await?
            }
            other => other?,
        };
        let mut servers = vec![ours.to_owned()];
        if hs.config.federation_enabled() {
            for server in hs.storage.room_servers(room_id.as_str()).await? {
                if let Ok(name) = OwnedServerName::try_from(server)
                    && name != ours
                {
                    servers.push(name);
                }
            }
        }
        return Ok((room_id, servers));
    }
    let federation = super::state(hs)?;
    let answer = federation
        .client
        .send(
            hs.keys.pair(),
            alias.server_name(),
            get_room_information::v1::Request::new(alias.to_owned()),
        )
        .await
        .map_err(|e| match e {
            super::client::SendError::Refused { status: 404, .. } => {
                Error::NotFound("no room has that alias".into())
            }
            other => other.into(),
        })?;
    Ok((answer.room_id, answer.servers))
}
