//! Badge updates: when a user's read receipt moves, each of their HTTP pushers is sent a
//! notification with only their new unread count (as Synapse sends it), so the app's
//! badge follows the reading done on another device. Best effort and in process: the
//! delivery worker sends what is pending on its next round (within a second).

use std::{collections::BTreeMap, convert::Infallible, sync::Mutex};

use serde_json::json;

use crate::{
    error::Result,
    server::{Homeserver, now_ms},
};

/// Users whose badge is to be sent, with when their unread count last changed: only the
/// pushers they had then are told (as Synapse tells the pushers there are at the time).
#[derive(Default)]
struct Pending(Mutex<BTreeMap<String, i64>>);

/// Notes that the user's unread count may have changed.
pub fn unread_changed(hs: &Homeserver, user_id: &str) {
    pending(hs)
        .0
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .insert(user_id.to_owned(), now_ms());
}

fn pending(hs: &Homeserver) -> std::sync::Arc<Pending> {
    match hs
        .extensions
        .get_or_try_init(|| Ok::<_, Infallible>(Pending::default()))
    {
        Ok(pending) => pending,
        Err(never) => match never {},
    }
}

/// Sends the pending badges (called by the delivery worker).
pub(super) async fn send_pending(hs: &Homeserver, client: &reqwest::Client) -> Result<()> {
    let taken = std::mem::take(&mut *pending(hs).0.lock().unwrap_or_else(|e| e.into_inner()));
    for (user, changed_at) in taken {
        let pushers: Vec<_> = hs
            .storage
            .pushers_with_ts(&user)
            .await?
            .into_iter()
            .filter(|(_, set_at)| *set_at <= changed_at)
            .collect();
        if pushers.is_empty() {
            continue;
        }
        let unread = hs.storage.total_unread(&user).await?;
        for (pusher, set_at) in pushers {
            let Some(url) = pusher["data"]["url"]
                .as_str()
                .and_then(|u| reqwest::Url::parse(u).ok())
            else {
                continue;
            };
            if pusher["kind"] != "http" || hs.outbound.check_url_resolved(&url).await.is_err() {
                continue;
            }
            let mut data = pusher["data"].clone();
            if let Some(d) = data.as_object_mut() {
                d.remove("url");
            }
            let body = json!({ "notification": {
                "id": "",
                "type": null,
                "sender": "",
                "counts": { "unread": unread },
                "devices": [{
                    "app_id": pusher["app_id"],
                    "pushkey": pusher["pushkey"],
                    "pushkey_ts": set_at / 1000,
                    "data": data,
                }],
            }});
            if let Err(e) = client.post(url.clone()).json(&body).send().await {
                tracing::info!(%url, "badge update not delivered: {e}");
            }
        }
    }
    Ok(())
}
