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
            room::{encryption::RoomEncryptionEventContent, message::RoomMessageEventContent},
        },
    },
};
use sdk::{client, collect_bodies, register};
use serde_json::Value;

/// How long a step may take: generous, as six tests with their own clients and servers share
/// two cores while the rest of the suite runs.
const WAIT: Duration = Duration::from_secs(45);
const POLL: Duration = Duration::from_secs(1);

async fn user(server: &TestServer, name: &str) -> Client {
    let c = client(&server.base).await;
    register(&c, name, &format!("{name}-password")).await;
    c.sync_once(SyncSettings::default().timeout(POLL))
        .await
        .expect("initial sync");
    c
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

/// A client with settings suited to a fresh device that restores from backup.
async fn client_with_backups(base: &str) -> Client {
    use matrix_sdk::encryption::{BackupDownloadStrategy, EncryptionSettings};
    Client::builder()
        .homeserver_url(base)
        .with_encryption_settings(EncryptionSettings {
            auto_enable_cross_signing: true,
            backup_download_strategy: BackupDownloadStrategy::OneShot,
            auto_enable_backups: true,
        })
        .build()
        .await
        .expect("client")
}

/// Plain text of the room's messages as a client decrypts them from /messages.
async fn decrypted_history(c: &Client, room_id: &OwnedRoomId) -> Vec<String> {
    use matrix_sdk::{room::MessagesOptions, ruma::events::AnySyncMessageLikeEvent};
    let room = c.get_room(room_id).expect("room known");
    let messages = room
        .messages(MessagesOptions::backward())
        .await
        .expect("/messages");
    messages
        .chunk
        .iter()
        .filter_map(|e| match e.raw().deserialize() {
            Ok(matrix_sdk::ruma::events::AnySyncTimelineEvent::MessageLike(
                AnySyncMessageLikeEvent::RoomMessage(m),
            )) => m.as_original().map(|o| o.content.body().to_owned()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn recovery_restores_history_on_a_new_device() {
    let server = TestServer::start().await;
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    let bob_seen = collect_bodies(&bob);
    let room_id = encrypted_room(&alice, &bob).await;

    // Bob sets up recovery: cross-signing, secret storage and a key backup.
    let recovery_key = bob
        .encryption()
        .recovery()
        .enable()
        .wait_for_backups_to_upload()
        .await
        .expect("recovery enabled");
    let room = alice.get_room(&room_id).unwrap();
    room.send(RoomMessageEventContent::text_plain("remember this"))
        .await
        .expect("alice sends");
    sync_until_seen(&bob, &bob_seen, "remember this").await;
    tokio::time::timeout(WAIT, bob.encryption().backups().wait_for_steady_state())
        .await
        .expect("backup settles in time")
        .expect("room keys backed up");
    let (status, backup) = server
        .get(
            "/_matrix/client/v3/room_keys/version",
            Some(&bob.access_token().unwrap()),
        )
        .await;
    assert_eq!(status, 200, "{backup}");
    assert!(backup["count"].as_u64().unwrap() >= 1, "{backup}");

    // A fresh device: nothing to decrypt with until it recovers.
    let bob2 = client_with_backups(&server.base).await;
    bob2.matrix_auth()
        .login_username("bob", "bob-password")
        .send()
        .await
        .expect("second login");
    bob2.sync_once(SyncSettings::default().timeout(POLL))
        .await
        .expect("sync");
    bob2.encryption()
        .recovery()
        .recover(&recovery_key)
        .await
        .expect("recover with the key");
    let restored = tokio::time::timeout(WAIT, async {
        loop {
            let history = decrypted_history(&bob2, &room_id).await;
            if history.iter().any(|b| b == "remember this") {
                return history;
            }
            bob2.sync_once(SyncSettings::default().timeout(POLL))
                .await
                .expect("sync");
        }
    })
    .await
    .expect("history decrypts on the new device");
    assert!(restored.contains(&"remember this".to_owned()));
}

/// One sync of each client, concurrently, with a short poll.
async fn sync_both(a: &Client, b: &Client) {
    let settings = SyncSettings::default().timeout(Duration::from_millis(200));
    let (ra, rb) = tokio::join!(a.sync_once(settings.clone()), b.sync_once(settings));
    ra.expect("first client syncs");
    rb.expect("second client syncs");
}

/// Syncs both clients until `found` (checked after each round) gives something.
async fn sync_both_until<T, F, Fut>(a: &Client, b: &Client, what: &str, mut found: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    tokio::time::timeout(WAIT, async {
        loop {
            sync_both(a, b).await;
            if let Some(t) = found().await {
                return t;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} did not happen within {WAIT:?}"))
}

#[tokio::test]
async fn cross_signing_and_emoji_verification_over_to_device() {
    use matrix_sdk::encryption::verification::{SasVerification, Verification};

    let server = TestServer::start().await;
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    // A shared room so each tracks the other's devices.
    encrypted_room(&alice, &bob).await;
    alice
        .encryption()
        .bootstrap_cross_signing(None)
        .await
        .expect("alice bootstraps cross-signing (first upload: no password asked)");
    let status = alice.encryption().cross_signing_status().await.unwrap();
    assert!(status.is_complete(), "{status:?}");
    let (alice_id, bob_id) = (
        alice.user_id().unwrap().to_owned(),
        bob.user_id().unwrap().to_owned(),
    );
    let bob_device_id = bob.device_id().unwrap().to_owned();

    // Alice asks to verify bob's device; the request travels as a to-device message.
    sync_both(&alice, &bob).await;
    let bob_device = alice
        .encryption()
        .get_device(&bob_id, &bob_device_id)
        .await
        .unwrap()
        .expect("alice knows bob's device from /keys/query");
    assert!(!bob_device.is_verified());
    let request = bob_device.request_verification().await.expect("request");
    let flow = request.flow_id().to_owned();
    let bob_request = sync_both_until(&alice, &bob, "bob receiving the request", || async {
        bob.encryption()
            .get_verification_request(&alice_id, &flow)
            .await
    })
    .await;
    bob_request.accept().await.expect("bob accepts");
    sync_both_until(&alice, &bob, "the request being ready", || async {
        request.is_ready().then_some(())
    })
    .await;
    let alice_sas = request.start_sas().await.expect("start").expect("sas");
    let bob_sas = sync_both_until(&alice, &bob, "bob seeing the SAS", || async {
        match bob.encryption().get_verification(&alice_id, &flow).await {
            Some(Verification::SasV1(sas)) => Some(sas),
            _ => None,
        }
    })
    .await;
    bob_sas.accept().await.expect("bob accepts the SAS");
    sync_both_until(&alice, &bob, "emoji on both sides", || async {
        (alice_sas.emoji().is_some() && bob_sas.emoji().is_some()).then_some(())
    })
    .await;
    let symbols = |s: &SasVerification| -> Vec<&'static str> {
        s.emoji().unwrap().iter().map(|e| e.symbol).collect()
    };
    assert_eq!(
        symbols(&alice_sas),
        symbols(&bob_sas),
        "both users see the same emoji"
    );
    alice_sas.confirm().await.expect("alice confirms");
    bob_sas.confirm().await.expect("bob confirms");
    sync_both_until(&alice, &bob, "the verification finishing", || async {
        (alice_sas.is_done() && bob_sas.is_done()).then_some(())
    })
    .await;
    let bob_device = alice
        .encryption()
        .get_device(&bob_id, &bob_device_id)
        .await
        .unwrap()
        .unwrap();
    assert!(bob_device.is_verified(), "alice now trusts bob's device");
}

#[tokio::test]
async fn exhausted_one_time_keys_fall_back_to_the_fallback_key() {
    let server = TestServer::start().await;
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    let bob_seen = collect_bodies(&bob);
    let room_id = encrypted_room(&alice, &bob).await;
    let (bob_id, bob_device) = (
        bob.user_id().unwrap().to_string(),
        bob.device_id().unwrap().to_string(),
    );
    // Someone else claims all of bob's one-time keys (bob does not sync meanwhile, so he
    // cannot top them up), until only the fallback key comes back.
    let (carol, _) = server.register("carol", "password-carol").await;
    let mut last = String::new();
    for round in 0.. {
        assert!(round < 200, "the one-time keys never ran out");
        let (status, res) = server
            .post(
                "/_matrix/client/v3/keys/claim",
                Some(&carol),
                serde_json::json!({ "one_time_keys": { &bob_id: { &bob_device: "signed_curve25519" } } }),
            )
            .await;
        assert_eq!(status, 200, "{res}");
        let keys = res["one_time_keys"][&bob_id][&bob_device]
            .as_object()
            .expect("bob has a key to give")
            .clone();
        let (id, key) = keys.into_iter().next().unwrap();
        if key["fallback"] == true {
            assert_ne!(id, last, "a one-time key was given out twice");
            break;
        }
        last = id;
    }
    // Alice's client now gets bob's fallback key, builds its Olm session on it, and bob
    // still decrypts.
    alice
        .get_room(&room_id)
        .unwrap()
        .send(RoomMessageEventContent::text_plain("via the fallback key"))
        .await
        .expect("alice sends");
    let (status, res) = server
        .get(
            "/_matrix/client/v3/sync?timeout=0&set_presence=offline",
            Some(&bob.access_token().unwrap()),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        res["device_unused_fallback_key_types"],
        serde_json::json!([]),
        "used"
    );
    assert_eq!(res["device_one_time_keys_count"]["signed_curve25519"], 0);
    sync_until_seen(&bob, &bob_seen, "via the fallback key").await;
}

#[tokio::test]
async fn a_new_device_gets_history_keys_shared_by_a_verified_own_device() {
    use matrix_sdk::encryption::verification::Verification;

    let server = TestServer::start().await;
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    let bob_seen = collect_bodies(&bob);
    let room_id = encrypted_room(&alice, &bob).await;
    bob.encryption()
        .bootstrap_cross_signing(None)
        .await
        .expect("bob bootstraps cross-signing");
    alice
        .get_room(&room_id)
        .unwrap()
        .send(RoomMessageEventContent::text_plain("before the new device"))
        .await
        .expect("alice sends");
    sync_until_seen(&bob, &bob_seen, "before the new device").await;

    // Bob's second device (no key backup anywhere) verifies itself with the first.
    let bob2 = client(&server.base).await;
    bob2.matrix_auth()
        .login_username("bob", "bob-password")
        .send()
        .await
        .expect("second login");
    sync_both(&bob, &bob2).await;
    let bob_id = bob.user_id().unwrap().to_owned();
    // The first device must know the second's keys before a request from it can reach it
    // (the SDK drops requests from devices it does not know). The login itself already
    // changes bob's device list, before the second device has uploaded keys, so this may
    // take another round.
    let second_id = bob2.device_id().unwrap().to_owned();
    sync_both_until(
        &bob,
        &bob2,
        "the first device knowing the second",
        || async {
            bob.encryption()
                .get_device(&bob_id, &second_id)
                .await
                .ok()
                .flatten()
        },
    )
    .await;
    let first = bob2
        .encryption()
        .get_device(&bob_id, bob.device_id().unwrap())
        .await
        .unwrap()
        .expect("the second device knows the first");
    let request = first.request_verification().await.expect("request");
    let flow = request.flow_id().to_owned();
    let incoming = sync_both_until(
        &bob,
        &bob2,
        "the request reaching the first device",
        || async {
            bob.encryption()
                .get_verification_request(&bob_id, &flow)
                .await
        },
    )
    .await;
    incoming.accept().await.expect("accept");
    sync_both_until(&bob, &bob2, "the request being ready", || async {
        request.is_ready().then_some(())
    })
    .await;
    let sas2 = request.start_sas().await.expect("start").expect("sas");
    let sas1 = sync_both_until(&bob, &bob2, "the SAS reaching the first device", || async {
        match bob.encryption().get_verification(&bob_id, &flow).await {
            Some(Verification::SasV1(sas)) => Some(sas),
            _ => None,
        }
    })
    .await;
    sas1.accept().await.expect("accept sas");
    sync_both_until(&bob, &bob2, "emoji", || async {
        (sas1.emoji().is_some() && sas2.emoji().is_some()).then_some(())
    })
    .await;
    sas1.confirm().await.unwrap();
    sas2.confirm().await.unwrap();
    sync_both_until(&bob, &bob2, "the self-verification finishing", || async {
        (sas1.is_done() && sas2.is_done()).then_some(())
    })
    .await;

    // The new device asks for the missing room key; the first device, trusting it now,
    // forwards it over to-device; the history decrypts.
    let history = sync_both_until(&bob, &bob2, "the forwarded room key", || async {
        let history = decrypted_history(&bob2, &room_id).await;
        history
            .iter()
            .any(|b| b == "before the new device")
            .then_some(history)
    })
    .await;
    assert!(history.contains(&"before the new device".to_owned()));
    // The first device's verification of the second is published as a signature.
    let (_, keys) = server
        .post(
            "/_matrix/client/v3/keys/query",
            Some(&alice.access_token().unwrap()),
            serde_json::json!({ "device_keys": { bob_id.as_str(): [] } }),
        )
        .await;
    let sigs = &keys["device_keys"][bob_id.as_str()][bob2.device_id().unwrap().as_str()]["signatures"]
        [bob_id.as_str()];
    assert!(
        sigs.as_object().unwrap().len() >= 2,
        "bob's second device is signed by itself and by bob's self-signing key: {sigs}"
    );
}

#[tokio::test]
async fn a_dehydrated_device_receives_keys_while_the_user_is_away() {
    use matrix_sdk::ruma::api::client::dehydrated_device::{get_dehydrated_device, get_events};
    use matrix_sdk_crypto::{
        DecryptionSettings, TrustRequirement, store::types::DehydratedDeviceKey,
    };

    let server = TestServer::start().await;
    let alice = user(&server, "alice").await;
    let bob = user(&server, "bob").await;
    let room_id = encrypted_room(&alice, &bob).await;
    // The dehydrated device is signed by bob's self-signing key, as the sdk requires.
    bob.encryption()
        .bootstrap_cross_signing(None)
        .await
        .expect("cross-signing");
    let pickle_key = DehydratedDeviceKey::new();
    let upload = {
        let machine = bob.olm_machine_for_testing().await;
        let machine = machine.as_ref().expect("olm machine");
        let device = machine
            .dehydrated_devices()
            .create()
            .await
            .expect("dehydrated device");
        device
            .keys_for_upload("dehydrated".to_owned(), &pickle_key)
            .await
            .expect("keys for upload")
    };
    let dehydrated_id = upload.device_id.clone();
    bob.send(upload).await.expect("PUT dehydrated_device");
    // Bob is away (no device of his syncs); alice writes to all his devices.
    alice
        .sync_once(SyncSettings::default().timeout(POLL))
        .await
        .unwrap();
    alice
        .get_room(&room_id)
        .unwrap()
        .send(RoomMessageEventContent::text_plain("while you were away"))
        .await
        .expect("alice sends");

    // Bob comes back on a new device, rehydrates, and reads what the parked device got.
    let bob2 = client(&server.base).await;
    bob2.matrix_auth()
        .login_username("bob", "bob-password")
        .send()
        .await
        .expect("login");
    bob2.sync_once(SyncSettings::default().timeout(POLL))
        .await
        .unwrap();
    let parked = bob2
        .send(get_dehydrated_device::unstable::Request::new())
        .await
        .expect("GET dehydrated_device");
    assert_eq!(parked.device_id, dehydrated_id);
    let rehydrated = {
        let machine = bob2.olm_machine_for_testing().await;
        machine
            .as_ref()
            .unwrap()
            .dehydrated_devices()
            .rehydrate(&pickle_key, &parked.device_id, parked.device_data)
            .await
            .expect("rehydrate")
    };
    let settings = DecryptionSettings {
        sender_device_trust_requirement: TrustRequirement::Untrusted,
    };
    let mut next_batch = None;
    let mut room_keys = 0;
    loop {
        let mut request = get_events::unstable::Request::new(dehydrated_id.clone());
        request.next_batch = next_batch.clone();
        let page = bob2.send(request).await.expect("dehydrated device events");
        if page.events.is_empty() {
            break;
        }
        room_keys += rehydrated
            .receive_events(page.events, &settings)
            .await
            .expect("receive")
            .len();
        next_batch = page.next_batch;
    }
    assert!(
        room_keys >= 1,
        "the parked device received alice's room key"
    );
    let history = decrypted_history(&bob2, &room_id).await;
    assert!(
        history.contains(&"while you were away".to_owned()),
        "{history:?}"
    );
}
