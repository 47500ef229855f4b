//! `GET /sync`.

use std::{sync::Arc, time::Duration};

use axum::Router;
use ruma::api::client::sync::sync_events::v3;

use crate::{
    error::Result,
    http::{
        Ruma,
        extract::{Patches, route_patched},
    },
    server::Homeserver,
    sync::{self as domain, SyncRequest},
};

pub fn routes(router: Router<Arc<Homeserver>>) -> Router<Arc<Homeserver>> {
    let patches = Patches {
        request: None,
        response: Some(synapse_room_shape),
    };
    route_patched(router, sync, patches)
}

/// Every timeline says whether it is `limited` and every joined or left room has `state`
/// (joined ones `ephemeral` and `account_data` too),
/// as Synapse's do (ruma leaves out `false` and empty state; clients and sytest read them).
fn synapse_room_shape(response: &mut serde_json::Value) {
    for section in ["join", "leave"] {
        let rooms = response
            .get_mut("rooms")
            .and_then(|r| r.get_mut(section))
            .and_then(|r| r.as_object_mut());
        let Some(rooms) = rooms else {
            continue;
        };
        for room in rooms.values_mut() {
            if let Some(room) = room.as_object_mut()
                && !room.contains_key("state")
                && !room.contains_key("state_after")
            {
                room.insert("state".into(), serde_json::json!({ "events": [] }));
            }
            if section == "join"
                && let Some(room) = room.as_object_mut()
            {
                for part in ["ephemeral", "account_data"] {
                    room.entry(part)
                        .or_insert_with(|| serde_json::json!({ "events": [] }));
                }
            }
            if let Some(timeline) = room.get_mut("timeline").and_then(|t| t.as_object_mut()) {
                timeline
                    .entry("limited")
                    .or_insert(serde_json::Value::Bool(false));
            }
        }
    }
}

async fn sync(hs: Arc<Homeserver>, req: Ruma<v3::Request>) -> Result<v3::Response> {
    let requester = req.requester()?;
    let b = &req.body;
    let filter = domain::resolve_filter(&hs, requester, b.filter.as_ref()).await?;
    let request = SyncRequest {
        since: b.since.clone(),
        filter,
        full_state: b.full_state,
        timeout: b.timeout.unwrap_or(Duration::ZERO),
        set_presence: b.set_presence.clone(),
    };
    domain::sync(&hs, requester, request).await
}
