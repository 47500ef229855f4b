//! What guest accounts may do. A guest (registered with `kind=guest`, when
//! `registration.allow_guests`) may read and take part in rooms that let guests in, and
//! manage its own session and keys; everything else answers 403
//! `M_GUEST_ACCESS_FORBIDDEN` (the spec's guest access module, as Synapse allows it).

/// The endpoints a guest may call: (method, path after the API version), `{}` for any
/// one path segment and a trailing `*` for anything further.
const GUEST_ENDPOINTS: &[(&str, &str)] = &[
    ("GET", "/sync"),
    ("GET", "/events"),
    ("GET", "/events/{}"),
    ("GET", "/initialSync"),
    ("GET", "/rooms/{}/initialSync"),
    ("GET", "/rooms/{}/state"),
    ("GET", "/rooms/{}/state/*"),
    ("GET", "/rooms/{}/event/{}"),
    ("GET", "/rooms/{}/context/{}"),
    ("GET", "/rooms/{}/messages"),
    ("GET", "/rooms/{}/members"),
    ("GET", "/rooms/{}/joined_members"),
    ("GET", "/rooms/{}/relations/*"),
    ("PUT", "/rooms/{}/send/{}/{}"),
    ("PUT", "/rooms/{}/typing/{}"),
    ("POST", "/rooms/{}/receipt/{}/{}"),
    ("POST", "/rooms/{}/read_markers"),
    ("POST", "/rooms/{}/join"),
    ("POST", "/join/{}"),
    ("POST", "/rooms/{}/leave"),
    ("GET", "/profile/{}"),
    ("GET", "/profile/{}/{}"),
    ("PUT", "/profile/{}/{}"),
    ("GET", "/presence/{}/status"),
    ("PUT", "/presence/{}/status"),
    ("GET", "/account/whoami"),
    ("POST", "/logout"),
    ("GET", "/capabilities"),
    ("GET", "/pushrules/*"),
    ("GET", "/devices"),
    ("GET", "/devices/{}"),
    ("PUT", "/devices/{}"),
    ("POST", "/keys/upload"),
    ("POST", "/keys/query"),
    ("POST", "/keys/claim"),
    ("GET", "/keys/changes"),
    ("PUT", "/sendToDevice/{}/{}"),
    ("POST", "/user/{}/filter"),
    ("GET", "/user/{}/filter/{}"),
    ("GET", "/user/{}/account_data/{}"),
    ("PUT", "/user/{}/account_data/{}"),
    ("GET", "/user/{}/rooms/{}/account_data/{}"),
    ("PUT", "/user/{}/rooms/{}/account_data/{}"),
    ("GET", "/voip/turnServer"),
    ("GET", "/publicRooms"),
    ("POST", "/publicRooms"),
    ("GET", "/directory/room/{}"),
    ("GET", "/media/download/*"),
    ("GET", "/media/thumbnail/*"),
    ("GET", "/media/config"),
];

/// The path of a route after its API prefix and version, as `GUEST_ENDPOINTS` names it:
/// `/_matrix/client/v3/sync` is `/sync`; the media API, whether under the client prefix
/// (`/_matrix/client/v1/media/download/..`) or its own (`/_matrix/media/v3/download/..`),
/// is `/media/download/..`.
fn api_path(route: &str) -> Option<String> {
    let (media, rest) = match route.strip_prefix("/_matrix/client/") {
        Some(rest) => (false, rest),
        None => (true, route.strip_prefix("/_matrix/media/")?),
    };
    let (version, path) = rest.split_once('/')?;
    if !matches!(version, "r0" | "v1" | "v3") {
        return None;
    }
    Some(if media {
        format!("/media/{path}")
    } else {
        format!("/{path}")
    })
}

fn matches(pattern: &str, path: &str) -> bool {
    let mut pattern = pattern.split('/');
    let mut path = path.split('/');
    loop {
        match (pattern.next(), path.next()) {
            (Some("*"), Some(_)) => return true,
            (Some("{}"), Some(p)) if !p.is_empty() => {}
            (Some(a), Some(b)) if a == b => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

/// Whether a guest may call the route `route` (the router's template, e.g.
/// `/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}`) with `method`.
pub fn guest_may(method: &str, route: &str) -> bool {
    listed(GUEST_ENDPOINTS, method, route)
}

/// Whether `endpoints` (method, path after the API version) lists the route.
pub(super) fn listed(endpoints: &[(&str, &str)], method: &str, route: &str) -> bool {
    let Some(path) = api_path(route) else {
        return false;
    };
    endpoints
        .iter()
        .any(|(m, pattern)| *m == method && matches(pattern, &path))
}

#[cfg(test)]
mod tests {
    use super::guest_may;

    #[test]
    fn guests_may_talk_but_not_build() {
        let may = |m, r| guest_may(m, r);
        assert!(may("GET", "/_matrix/client/v3/sync"));
        assert!(may(
            "PUT",
            "/_matrix/client/v3/rooms/{room_id}/send/{event_type}/{txn_id}"
        ));
        assert!(may("POST", "/_matrix/client/r0/join/{room_id_or_alias}"));
        assert!(may(
            "GET",
            "/_matrix/client/v3/rooms/{room_id}/state/{event_type}/{state_key}"
        ));
        assert!(may(
            "GET",
            "/_matrix/client/v1/media/download/{server}/{media_id}"
        ));
        assert!(may("GET", "/_matrix/media/v3/download/{server}/{media_id}"));
        assert!(!may("POST", "/_matrix/client/v3/createRoom"));
        assert!(!may("POST", "/_matrix/client/v3/rooms/{room_id}/invite"));
        assert!(!may(
            "PUT",
            "/_matrix/client/v3/rooms/{room_id}/state/{event_type}/{state_key}"
        ));
        assert!(!may("POST", "/_matrix/media/v3/upload"));
        assert!(!may("POST", "/_matrix/client/v3/pushers/set"));
        assert!(!may(
            "PUT",
            "/_matrix/client/v3/directory/room/{room_alias}"
        ));
    }
}
