//! axon federating with a real Synapse (1.163.2 from PyPI, tests/common/synapse.rs) on
//! loopback, both trusting the test CA: joins both ways (by alias, through
//! `/query/directory`), messages both ways, invites both ways (accepted and declined),
//! leaves, history backfilled through /messages, and profile queries. If Synapse cannot be
//! installed (PyPI) or started, the test fails and says so.

#[path = "common/cli.rs"]
mod cli;
#[path = "common/client_run.rs"]
mod client_run;
mod common;
#[path = "common/federation.rs"]
mod federation;
#[path = "common/synapse.rs"]
mod synapse;

use std::time::Duration;

use common::TestServer;
use federation::start_federated;
use reqwest::StatusCode;
use serde_json::{Value, json};
use synapse::Synapse;

/// A client of one server or the other: (GET, POST, PUT) through either.
enum Client<'a> {
    Axon(&'a TestServer, &'a str),
    Synapse(&'a Synapse, &'a str),
}

impl Client<'_> {
    async fn get(&self, path: &str) -> (StatusCode, Value) {
        match self {
            Client::Axon(s, t) => s.get(path, Some(t)).await,
            Client::Synapse(s, t) => s.get(path, Some(t)).await,
        }
    }

    async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        match self {
            Client::Axon(s, t) => s.post(path, Some(t), body).await,
            Client::Synapse(s, t) => s.post(path, Some(t), body).await,
        }
    }

    async fn put(&self, path: &str, body: Value) -> (StatusCode, Value) {
        match self {
            Client::Axon(s, t) => s.put(path, Some(t), body).await,
            Client::Synapse(s, t) => s.put(path, Some(t), body).await,
        }
    }

    fn which(&self) -> &'static str {
        match self {
            Client::Axon(..) => "axon",
            Client::Synapse(..) => "synapse",
        }
    }

    async fn send(&self, room: &str, body: &str) {
        let txn = format!("t{}", rand_suffix());
        let (status, answer) = self
            .put(
                &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
                json!({"msgtype": "m.text", "body": body}),
            )
            .await;
        assert_eq!(status, 200, "{} send: {answer}", self.which());
    }

    /// The room's message bodies, newest first, paging back through everything.
    async fn bodies(&self, room: &str) -> Vec<String> {
        let mut bodies = Vec::new();
        let mut from: Option<String> = None;
        for _ in 0..50 {
            let path = match &from {
                Some(f) => {
                    format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100&from={f}")
                }
                None => format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100"),
            };
            let (status, page) = self.get(&path).await;
            assert_eq!(status, 200, "{} /messages: {page}", self.which());
            let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
            bodies.extend(
                chunk
                    .iter()
                    .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned)),
            );
            match page["end"].as_str() {
                Some(end) if !chunk.is_empty() => from = Some(end.to_owned()),
                _ => break,
            }
        }
        bodies
    }

    /// Waits until `body` is among the room's messages.
    async fn sees(&self, room: &str, body: &str) {
        for _ in 0..200 {
            if self.bodies(room).await.iter().any(|b| b == body) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        panic!("{} never saw {body:?} in {room}", self.which());
    }

    async fn membership(&self, room: &str, user: &str) -> Option<String> {
        let (status, body) = self
            .get(&format!(
                "/_matrix/client/v3/rooms/{room}/state/m.room.member/{user}"
            ))
            .await;
        (status == 200).then(|| body["membership"].as_str().unwrap_or_default().to_owned())
    }

    async fn waits_for_membership(&self, room: &str, user: &str, wanted: &str) {
        for _ in 0..200 {
            if self.membership(room, user).await.as_deref() == Some(wanted) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        panic!(
            "{}: {user} never became {wanted} in {room} ({:?})",
            self.which(),
            self.membership(room, user).await
        );
    }

    /// Syncs until `room` shows under `section`.
    async fn waits_for_sync(&self, section: &str, room: &str) -> Value {
        for _ in 0..200 {
            let (status, body) = self.get("/_matrix/client/v3/sync?timeout=0").await;
            assert_eq!(status, 200, "{body}");
            if body["rooms"][section][room].is_object() {
                return body["rooms"][section][room].clone();
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        panic!("{}: {room} never showed under {section}", self.which());
    }

    async fn join(&self, room: &str, via: &str) {
        let (status, body) = self
            .post(
                &format!(
                    "/_matrix/client/v3/join/{}?server_name={via}&via={via}",
                    room.replace('#', "%23")
                ),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{} join {room}: {body}", self.which());
    }

    async fn create_room(&self, body: Value) -> String {
        let (status, answer) = self.post("/_matrix/client/v3/createRoom", body).await;
        assert_eq!(status, 200, "{} createRoom: {answer}", self.which());
        answer["room_id"].as_str().unwrap().to_owned()
    }
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

#[tokio::test]
async fn axon_and_synapse_share_rooms() {
    let synapse = Synapse::start().await;
    let axon = start_federated(|_| {}).await;
    let (alice_token, _) = axon.register("alice", "correct horse battery").await;
    let (bob_token, bob) = synapse.register("bob").await;
    let alice = format!("@alice:{}", axon.name());
    let on_axon = Client::Axon(&axon, &alice_token);
    let on_synapse = Client::Synapse(&synapse, &bob_token);
    let outcome = tokio::time::timeout(Duration::from_secs(240), async {
        // 1. bob (Synapse) joins alice's room on axon by alias; they talk.
        let room = on_axon
            .create_room(json!({"preset": "public_chat", "room_alias_name": "lobby",
                                "name": "Lobby"}))
            .await;
        let alias = format!("#lobby:{}", axon.name());
        on_synapse.join(&alias, &axon.name()).await;
        on_axon.waits_for_membership(&room, &bob, "join").await;
        on_axon.send(&room, "hello from axon").await;
        on_synapse.sees(&room, "hello from axon").await;
        on_synapse.send(&room, "hello from synapse").await;
        on_axon.sees(&room, "hello from synapse").await;

        // 2. alice (axon) joins bob's room on Synapse by alias, after history was made;
        //    she pages back through it; they talk; she leaves.
        let theirs = on_synapse
            .create_room(json!({"preset": "public_chat", "room_alias_name": "garden",
                                "name": "Garden"}))
            .await;
        for i in 0..30 {
            on_synapse.send(&theirs, &format!("old news {i}")).await;
        }
        on_axon
            .join(&format!("#garden:{}", synapse.name), &synapse.name)
            .await;
        on_synapse
            .waits_for_membership(&theirs, &alice, "join")
            .await;
        let history = on_axon.bodies(&theirs).await;
        let expected: Vec<String> = (0..30).rev().map(|i| format!("old news {i}")).collect();
        assert_eq!(history, expected, "history backfilled from Synapse");
        on_synapse.send(&theirs, "welcome alice").await;
        on_axon.sees(&theirs, "welcome alice").await;
        on_axon.send(&theirs, "thanks bob").await;
        on_synapse.sees(&theirs, "thanks bob").await;
        let (status, body) = on_axon
            .post(
                &format!("/_matrix/client/v3/rooms/{theirs}/leave"),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        on_synapse
            .waits_for_membership(&theirs, &alice, "leave")
            .await;

        // 3. Invites from axon to Synapse: accepted.
        let private = on_axon
            .create_room(json!({"preset": "private_chat", "name": "Axon's den"}))
            .await;
        let (status, body) = on_axon
            .post(
                &format!("/_matrix/client/v3/rooms/{private}/invite"),
                json!({"user_id": bob}),
            )
            .await;
        assert_eq!(status, 200, "invite to Synapse: {body}");
        on_synapse.waits_for_sync("invite", &private).await;
        on_synapse.join(&private, &axon.name()).await;
        on_axon.waits_for_membership(&private, &bob, "join").await;

        // 4. Invites from Synapse to axon: one accepted, one declined.
        let dm = on_synapse
            .create_room(json!({"preset": "private_chat", "name": "Synapse's den",
                                "invite": [alice]}))
            .await;
        let invite = on_axon.waits_for_sync("invite", &dm).await;
        let shown = invite["invite_state"]["events"].to_string();
        assert!(shown.contains("Synapse's den"), "{invite}");
        let (status, body) = on_axon
            .post(&format!("/_matrix/client/v3/rooms/{dm}/join"), json!({}))
            .await;
        assert_eq!(status, 200, "joining Synapse's room by invite: {body}");
        on_synapse.waits_for_membership(&dm, &alice, "join").await;
        let declined = on_synapse
            .create_room(json!({"preset": "private_chat", "invite": [alice]}))
            .await;
        on_axon.waits_for_sync("invite", &declined).await;
        let (status, body) = on_axon
            .post(
                &format!("/_matrix/client/v3/rooms/{declined}/leave"),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "declining Synapse's invite: {body}");
        on_synapse
            .waits_for_membership(&declined, &alice, "leave")
            .await;

        // 5. Profiles, asked of the other server.
        let (status, body) = on_synapse
            .put(
                &format!("/_matrix/client/v3/profile/{bob}/displayname"),
                json!({"displayname": "Bob of Synapse"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = on_axon
            .get(&format!("/_matrix/client/v3/profile/{bob}"))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["displayname"], "Bob of Synapse");
        let (status, body) = on_axon
            .put(
                &format!("/_matrix/client/v3/profile/{alice}/displayname"),
                json!({"displayname": "Alice of axon"}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = on_synapse
            .get(&format!("/_matrix/client/v3/profile/{alice}"))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["displayname"], "Alice of axon");
    });
    use futures_util::FutureExt as _;
    match std::panic::AssertUnwindSafe(outcome).catch_unwind().await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => panic!(
            "timed out\n--- Synapse's log (last lines) ---\n{}",
            synapse.log_tail()
        ),
        Err(panic) => {
            eprintln!("--- Synapse's log (last lines) ---\n{}", synapse.log_tail());
            std::panic::resume_unwind(panic);
        }
    }
}
