//! Third-party networks (`/thirdparty/*`): the protocols application services bridge to,
//! and lookups of their users and locations. Protocols come from appservice registrations,
//! which axon does not load yet, so there are none: the list is empty, a named protocol is
//! unknown, and the reverse lookups find nothing.

use std::collections::BTreeMap;

use ruma::thirdparty::{Location, Protocol, User};

use crate::{
    error::{Error, Result},
    server::Homeserver,
};

/// Every protocol some application service declares.
pub fn protocols(_hs: &Homeserver) -> BTreeMap<String, Protocol> {
    BTreeMap::new()
}

/// One protocol by name.
pub fn protocol(hs: &Homeserver, name: &str) -> Result<Protocol> {
    protocols(hs)
        .remove(name)
        .ok_or_else(|| Error::NotFound(format!("no application service bridges {name}")))
}

/// Locations (portal rooms) of `protocol` matching `fields`.
pub fn locations(hs: &Homeserver, name: &str) -> Result<Vec<Location>> {
    protocol(hs, name).map(|_| Vec::new())
}

/// Users of `protocol` matching `fields`.
pub fn users(hs: &Homeserver, name: &str) -> Result<Vec<User>> {
    protocol(hs, name).map(|_| Vec::new())
}

/// Third-party locations a Matrix room alias stands for: none without bridges.
pub fn locations_for_alias(_hs: &Homeserver) -> Vec<Location> {
    Vec::new()
}

/// Third-party users a Matrix user ID stands for: none without bridges.
pub fn users_for_user_id(_hs: &Homeserver) -> Vec<User> {
    Vec::new()
}
