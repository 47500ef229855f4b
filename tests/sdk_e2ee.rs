//! End-to-end encryption through a real client: matrix-sdk 0.18 with its crypto (the
//! same Olm/Megolm machine Element X runs) uploads its keys to axon, queries and claims
//! the other side's, shares room keys over to-device messages, and decrypts what the other
//! user sent. axon only ever sees ciphertext.

mod common;
#[path = "common/sdk.rs"]
mod sdk;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::TestServer;
use matrix_sdk::{
    Client,
    config::SyncSettings,
    ruma::{
        OwnedRoomId,
        api::client::room::create_room::v3::Request as CreateRoomRequest,
        events::{
            InitialStateEvent,
            room::{
                encryption::RoomEncryptionEventContent,
                message::{OriginalSyncRoomMessageEvent, RoomMessageEventContent},
            },
        },
    },
};
use sdk::{client, register};
use serde_json::Value;

const WAIT: Duration = Duration::from_secs(20);
const POLL: Duration = Duration::from_secs(1);

async fn user(server: &TestServer, name: &str) -> Client {
    let c = client(&server.base).await;
    register(&c, name, &format!("{name}-password")).await;
    c.sync_once(SyncSettings::default().timeout(POLL))
        .await
        .expect("initial sync");
    c
}

/// Plain-text bodies of the room messages a client's handlers saw (decrypted ones too).
fn collect_bodies(c: &Client) -> Arc<Mutex<Vec<String>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    c.add_event_handler(move |ev: OriginalSyncRoomMessageEvent| {
        let sink = sink.clone();
        async move {
            sink.lock().unwrap().push(ev.content.body().to_owned());
        }
    });
    seen
}

/// Syncs until `seen` holds `body`.
async fn sync_until_seen(c: &Client, seen: &Arc<Mutex<Vec<String>>>, body: &str) {
    let who = c.user_id().unwrap().to_string();
    tokio::time::timeout(WAIT, async {
        while !seen.lock().unwrap().iter().any(|b| b == body) {
            c.sync_once(SyncSettings::default().timeout(POLL))
                .await
                .unwrap_or_else(|e| panic!("{who}: sync failed: {e}"));
        }
    })
    .await
    .unwrap_or_else(|_| {
        panic!(
            "{who} never decrypted {body:?}; saw {:?}",
            seen.lock().unwrap()
        )
    });
}

async fn encrypted_room(alice: &Client, bob: &Client) -> OwnedRoomId {
    let mut request = CreateRoomRequest::new();
    request.invite = vec![bob.user_id().unwrap().to_owned()];
    request.initial_state = vec![
        InitialStateEvent::with_empty_state_key(
            RoomEncryptionEventContent::with_recommended_defaults(),
        )
        .to_raw_any(),
    ];
    let room = alice.create_room(request).await.expect("create room");
    let room_id = room.room_id().to_owned();
    // Bob sees the invite through sync and joins.
    tokio::time::timeout(WAIT, async {
        loop {
            let response = bob
                .sync_once(SyncSettings::default().timeout(POLL))
                .await
                .expect("bob syncs");
            if response.rooms.invited.contains_key(&room_id) {
                break;
            }
        }
    })
    .await
    .expect("bob's invite");
    bob.join_room_by_id(&room_id).await.expect("bob joins");
    alice
        .sync_once(SyncSettings::default().timeout(POLL))
        .await
        .expect("alice syncs");
    room_id
}

/// What the server stored for a room's messages: the event types and contents.
async fn stored_messages(server: &TestServer, c: &Client, room: &OwnedRoomId) -> Vec<Value> {
    let token = c.access_token().unwrap();
    let (status, res) = server
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=50"),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    res["chunk"].as_array().unwrap().clone()
}

#[tokio::test]
async fn encrypted_conversation_decrypts_on_both_sides() {
    let server = TestServer::start().await;
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    let alice_seen = collect_bodies(&alice);
    let bob_seen = collect_bodies(&bob);
    let room_id = encrypted_room(&alice, &bob).await;

    let room = alice.get_room(&room_id).unwrap();
    assert!(
        room.latest_encryption_state().await.unwrap().is_encrypted(),
        "the room is encrypted"
    );
    room.send(RoomMessageEventContent::text_plain(
        "the eagle lands at dawn",
    ))
    .await
    .expect("alice sends");
    sync_until_seen(&bob, &bob_seen, "the eagle lands at dawn").await;

    let bob_room = bob.get_room(&room_id).unwrap();
    bob_room
        .send(RoomMessageEventContent::text_plain("understood"))
        .await
        .expect("bob replies");
    sync_until_seen(&alice, &alice_seen, "understood").await;

    // A second message from alice reuses the shared session.
    room.send(RoomMessageEventContent::text_plain("second"))
        .await
        .expect("alice sends again");
    sync_until_seen(&bob, &bob_seen, "second").await;

    // The server holds ciphertext only.
    let stored = stored_messages(&server, &alice, &room_id).await;
    let encrypted: Vec<&Value> = stored
        .iter()
        .filter(|e| e["type"] == "m.room.encrypted")
        .collect();
    assert_eq!(encrypted.len(), 3, "{stored:?}");
    for e in &stored {
        assert_ne!(e["type"], "m.room.message", "plaintext stored: {e}");
        let text = e.to_string();
        assert!(
            !text.contains("eagle") && !text.contains("understood"),
            "{e}"
        );
    }
}
