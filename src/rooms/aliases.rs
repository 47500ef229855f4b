//! Room aliases: local alias names and their lookup.

use ruma::{OwnedRoomAliasId, RoomAliasId};

use crate::{
    error::{Error, Result},
    server::Homeserver,
};

/// `#<name>:<server_name>` for a local alias name, checked.
pub fn local_alias(hs: &Homeserver, name: &str) -> Result<OwnedRoomAliasId> {
    if name.is_empty()
        || name.contains(':')
        || name.contains('#')
        || name.chars().any(char::is_whitespace)
    {
        return Err(Error::InvalidParam(
            "room_alias_name must be a bare local name".into(),
        ));
    }
    RoomAliasId::parse(format!("#{name}:{}", hs.config.server_name))
        .map_err(|e| Error::InvalidParam(format!("invalid room alias: {e}")))
}
