//! Account moderation by server admins (spec v1.18, `/admin/suspend` and `/admin/lock`):
//! a suspended account may read, leave, redact its own events and manage its session,
//! keys and settings, but not take part (send, join, invite, create rooms, change its
//! profile, upload: 403 `M_USER_SUSPENDED`); a locked account may only log out (every
//! other request: 401 `M_USER_LOCKED`, `soft_logout`).

use ruma::UserId;

use super::{Requester, guests::listed};
use crate::{
    error::{Error, Result},
    server::Homeserver,
};

/// The writes a suspended account may still make (all reads are allowed), as
/// `users::guests` names endpoints.
const SUSPENDED_MAY_WRITE: &[(&str, &str)] = &[
    ("POST", "/logout"),
    ("POST", "/logout/all"),
    ("POST", "/account/deactivate"),
    ("POST", "/account/password"),
    ("POST", "/account/3pid/delete"),
    ("POST", "/account/3pid/unbind"),
    ("POST", "/rooms/{}/leave"),
    ("POST", "/rooms/{}/forget"),
    ("PUT", "/rooms/{}/redact/{}/{}"),
    ("POST", "/rooms/{}/receipt/{}/{}"),
    ("POST", "/rooms/{}/read_markers"),
    ("PUT", "/rooms/{}/typing/{}"),
    ("POST", "/rooms/{}/report"),
    ("POST", "/rooms/{}/report/{}"),
    ("POST", "/users/{}/report"),
    ("POST", "/user/{}/filter"),
    ("PUT", "/user/{}/account_data/{}"),
    ("PUT", "/user/{}/rooms/{}/account_data/{}"),
    ("PUT", "/user/{}/rooms/{}/tags/{}"),
    ("DELETE", "/user/{}/rooms/{}/tags/{}"),
    ("POST", "/user/{}/openid/request_token"),
    ("PUT", "/pushrules/*"),
    ("DELETE", "/pushrules/*"),
    ("POST", "/pushers/set"),
    ("PUT", "/presence/{}/status"),
    ("POST", "/keys/upload"),
    ("POST", "/keys/query"),
    ("POST", "/keys/claim"),
    ("POST", "/keys/device_signing/upload"),
    ("POST", "/keys/signatures/upload"),
    ("PUT", "/sendToDevice/{}/{}"),
    ("POST", "/room_keys/version"),
    ("PUT", "/room_keys/*"),
    ("DELETE", "/room_keys/*"),
    ("PUT", "/devices/{}"),
    ("DELETE", "/devices/{}"),
    ("POST", "/delete_devices"),
    ("POST", "/search"),
    ("POST", "/user_directory/search"),
    ("POST", "/publicRooms"),
];

/// What the edge checks for a suspended or locked requester calling `route` (the
/// router's template) with `method`.
pub fn check_request(requester: &Requester, method: &str, route: &str) -> Result<()> {
    let logout =
        matches!(method, "POST") && (route.ends_with("/logout") || route.ends_with("/logout/all"));
    if requester.is_locked && !logout {
        return Err(Error::UserLocked);
    }
    let read = matches!(method, "GET" | "HEAD" | "OPTIONS");
    // Sliding sync reads with POST, under unstable prefixes.
    let sync = route.ends_with("/sync");
    if requester.is_suspended && !read && !sync && !listed(SUSPENDED_MAY_WRITE, method, route) {
        return Err(Error::UserSuspended);
    }
    Ok(())
}

/// The target of a moderation action: a local, active account, and not an admin or the
/// requester themselves (for changes). Only admins may ask, and they are checked before
/// the account is looked up, so the endpoints reveal nothing to others.
async fn target(
    hs: &Homeserver,
    requester: &Requester,
    user_id: &UserId,
    change: bool,
) -> Result<()> {
    if !requester.is_admin {
        return Err(Error::Forbidden("you are not a server admin".into()));
    }
    if user_id.server_name() != hs.config.server_name() {
        return Err(Error::InvalidParam(
            "the user does not belong to this server".into(),
        ));
    }
    let row = hs
        .storage
        .user(user_id.as_str())
        .await?
        .filter(|u| !u.deactivated)
        .ok_or_else(|| Error::NotFound("user not found".into()))?;
    if change && (row.is_admin || user_id == requester.user_id) {
        return Err(Error::Forbidden(
            "admins cannot be suspended or locked, nor can you change yourself".into(),
        ));
    }
    Ok(())
}

pub async fn is_suspended(
    hs: &Homeserver,
    requester: &Requester,
    user_id: &UserId,
) -> Result<bool> {
    target(hs, requester, user_id, false).await?;
    Ok(hs
        .storage
        .user(user_id.as_str())
        .await?
        .is_some_and(|u| u.suspended))
}

pub async fn set_suspended(
    hs: &Homeserver,
    requester: &Requester,
    user_id: &UserId,
    suspended: bool,
) -> Result<()> {
    target(hs, requester, user_id, true).await?;
    hs.storage
        .set_suspended(user_id.as_str(), suspended)
        .await?;
    Ok(())
}

pub async fn is_locked(hs: &Homeserver, requester: &Requester, user_id: &UserId) -> Result<bool> {
    target(hs, requester, user_id, false).await?;
    Ok(hs
        .storage
        .user(user_id.as_str())
        .await?
        .is_some_and(|u| u.locked))
}

pub async fn set_locked(
    hs: &Homeserver,
    requester: &Requester,
    user_id: &UserId,
    locked: bool,
) -> Result<()> {
    target(hs, requester, user_id, true).await?;
    hs.storage.set_locked(user_id.as_str(), locked).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn requester(suspended: bool, locked: bool) -> Requester {
        Requester {
            user_id: "@u:example.org".try_into().unwrap(),
            device_id: "D".into(),
            is_admin: false,
            is_guest: false,
            is_suspended: suspended,
            is_locked: locked,
            appservice: None,
        }
    }

    #[test]
    fn suspended_accounts_read_and_leave_but_do_not_take_part() {
        let r = requester(true, false);
        let ok = |m, p| check_request(&r, m, p).is_ok();
        assert!(ok("GET", "/_matrix/client/v3/sync"));
        assert!(ok("POST", "/_matrix/client/v3/rooms/{room_id}/leave"));
        assert!(ok(
            "PUT",
            "/_matrix/client/v3/rooms/{room_id}/redact/{event_id}/{txn_id}"
        ));
        assert!(ok(
            "POST",
            "/_matrix/client/unstable/org.matrix.simplified_msc3575/sync"
        ));
        assert!(ok("POST", "/_matrix/client/v3/logout"));
        assert!(!ok(
            "PUT",
            "/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}"
        ));
        assert!(!ok("POST", "/_matrix/client/v3/createRoom"));
        assert!(!ok("POST", "/_matrix/client/v3/join/{room_id_or_alias}"));
        assert!(!ok("PUT", "/_matrix/client/v3/profile/{user_id}/{field}"));
        assert!(!ok("POST", "/_matrix/media/v3/upload"));
        let free = requester(false, false);
        assert!(check_request(&free, "POST", "/_matrix/client/v3/createRoom").is_ok());
    }

    #[test]
    fn locked_accounts_only_log_out() {
        let r = requester(false, true);
        assert!(check_request(&r, "POST", "/_matrix/client/v3/logout").is_ok());
        assert!(check_request(&r, "POST", "/_matrix/client/v3/logout/all").is_ok());
        assert!(matches!(
            check_request(&r, "GET", "/_matrix/client/v3/sync"),
            Err(Error::UserLocked)
        ));
    }
}
