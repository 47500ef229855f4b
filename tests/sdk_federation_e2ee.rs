//! End-to-end encryption between two axon servers with real clients: matrix-sdk 0.18
//! (its Olm/Megolm machine, as in Element X), alice on hs1 and bob on hs2. Their
//! servers query and claim each other's keys, carry room keys as to-device messages
//! (`m.direct_to_device`) and device list updates; the conversation decrypts on both
//! sides, bob's second device gets alice's next message, bob's client downloads and
//! thumbnails an image alice's client uploaded, and alice verifies bob by SAS across
//! the servers. Then the same conversation and media both ways with bob on a real
//! Synapse 1.163 (tests/common/synapse.rs).

#[path = "common/cli.rs"]
mod cli;
#[path = "common/client_run.rs"]
mod client_run;
mod common;
#[path = "common/federation.rs"]
mod federation;
#[path = "common/sdk.rs"]
mod sdk;
#[path = "common/synapse.rs"]
mod synapse;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use federation::start_federated;
use matrix_sdk::{
    Client,
    config::SyncSettings,
    encryption::verification::{SasVerification, Verification},
    ruma::{
        OwnedRoomId,
        api::client::room::create_room::v3::Request as CreateRoomRequest,
        events::{
            InitialStateEvent,
            room::{encryption::RoomEncryptionEventContent, message::RoomMessageEventContent},
        },
    },
};
use sdk::{client, collect_bodies, download, register, thumbnail};

const WAIT: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(500);

async fn user(base: &str, name: &str) -> Client {
    let c = client(base).await;
    register(&c, name, &format!("{name}-password")).await;
    c.sync_once(SyncSettings::default().timeout(POLL))
        .await
        .expect("initial sync");
    c
}

async fn sync_all(clients: &[&Client]) {
    let settings = SyncSettings::default().timeout(POLL);
    let results =
        futures_util::future::join_all(clients.iter().map(|c| c.sync_once(settings.clone()))).await;
    for r in results {
        r.expect("sync");
    }
}

/// Syncs every client until `found` (checked after each round) gives something.
async fn sync_until<T, F, Fut>(clients: &[&Client], what: &str, mut found: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    tokio::time::timeout(WAIT, async {
        loop {
            sync_all(clients).await;
            if let Some(t) = found().await {
                return t;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} did not happen within {WAIT:?}"))
}

async fn decrypted(clients: &[&Client], seen: &Arc<Mutex<Vec<String>>>, body: &str) {
    sync_until(clients, &format!("{body:?} decrypting"), || async {
        seen.lock().unwrap().iter().any(|b| b == body).then_some(())
    })
    .await;
}

/// alice's encrypted room on hs1; bob on hs2 invited and joined.
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
    sync_until(&[bob], "bob's invite", || async {
        bob.get_room(&room_id).map(|_| ())
    })
    .await;
    bob.join_room_by_id(&room_id).await.expect("bob joins");
    let bob_id = bob.user_id().unwrap().to_owned();
    sync_until(&[alice, bob], "alice seeing bob join", || async {
        let room = alice.get_room(&room_id)?;
        room.get_member_no_sync(&bob_id)
            .await
            .ok()
            .flatten()
            .filter(|m| {
                *m.membership() == matrix_sdk::ruma::events::room::member::MembershipState::Join
            })
            .map(|_| ())
    })
    .await;
    room_id
}

#[tokio::test]
async fn encrypted_conversation_across_two_servers() {
    let hs1 = start_federated(|_| {}).await;
    let hs2 = start_federated(|_| {}).await;
    let alice = user(&hs1.base, "alice").await;
    let bob = user(&hs2.base, "bob").await;
    let alice_seen = collect_bodies(&alice);
    let bob_seen = collect_bodies(&bob);
    let room_id = encrypted_room(&alice, &bob).await;
    let alice_room = alice.get_room(&room_id).unwrap();
    assert!(
        alice_room
            .latest_encryption_state()
            .await
            .unwrap()
            .is_encrypted()
    );

    alice_room
        .send(RoomMessageEventContent::text_plain(
            "the eagle lands at dawn",
        ))
        .await
        .expect("alice sends");
    decrypted(&[&alice, &bob], &bob_seen, "the eagle lands at dawn").await;
    bob.get_room(&room_id)
        .unwrap()
        .send(RoomMessageEventContent::text_plain("understood"))
        .await
        .expect("bob replies");
    decrypted(&[&alice, &bob], &alice_seen, "understood").await;

    // hs2 holds ciphertext only.
    let (status, stored) = hs2
        .get(
            &format!("/_matrix/client/v3/rooms/{room_id}/messages?dir=b&limit=50"),
            Some(&bob.access_token().unwrap()),
        )
        .await;
    assert_eq!(status, 200, "{stored}");
    assert!(!stored.to_string().contains("eagle"), "{stored}");

    // bob's second device: alice's server hears of it (a device list update), and
    // alice's next message is encrypted for it too.
    let bob2 = client(&hs2.base).await;
    bob2.matrix_auth()
        .login_username("bob", "bob-password")
        .send()
        .await
        .expect("bob's second login");
    let bob2_seen = collect_bodies(&bob2);
    let bob_id = bob.user_id().unwrap().to_owned();
    let second = bob2.device_id().unwrap().to_owned();
    sync_until(
        &[&alice, &bob, &bob2],
        "alice knowing bob's second device",
        || async {
            alice
                .encryption()
                .get_device(&bob_id, &second)
                .await
                .ok()
                .flatten()
        },
    )
    .await;
    alice_room
        .send(RoomMessageEventContent::text_plain(
            "for both of your devices",
        ))
        .await
        .expect("alice sends again");
    decrypted(
        &[&alice, &bob, &bob2],
        &bob2_seen,
        "for both of your devices",
    )
    .await;
    decrypted(
        &[&alice, &bob, &bob2],
        &bob_seen,
        "for both of your devices",
    )
    .await;

    // An image alice's client uploads to hs1, downloaded and thumbnailed by bob's
    // client through hs2.
    let mut photo = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_fn(320, 240, |x, y| {
        image::Rgb([(x % 256) as u8, (y % 256) as u8, 7])
    })
    .write_to(&mut photo, image::ImageFormat::Png)
    .unwrap();
    let photo = photo.into_inner();
    let png: mime::Mime = "image/png".parse().unwrap();
    let uploaded = alice
        .media()
        .upload(&png, photo.clone(), None)
        .await
        .expect("alice uploads");
    assert_eq!(download(&bob, &uploaded.content_uri).await, photo);
    let thumb = thumbnail(&bob, &uploaded.content_uri, 96, 96).await;
    let thumb = image::load_from_memory(&thumb).expect("a decodable thumbnail");
    assert_eq!((thumb.width(), thumb.height()), (96, 96));

    // alice verifies bob's first device by emoji, every message a to-device message
    // between the two servers.
    alice
        .encryption()
        .bootstrap_cross_signing(None)
        .await
        .expect("alice bootstraps cross-signing");
    let alice_id = alice.user_id().unwrap().to_owned();
    let bob_device_id = bob.device_id().unwrap().to_owned();
    let bob_device = alice
        .encryption()
        .get_device(&bob_id, &bob_device_id)
        .await
        .unwrap()
        .expect("alice knows bob's device");
    assert!(!bob_device.is_verified());
    let request = bob_device.request_verification().await.expect("request");
    let flow = request.flow_id().to_owned();
    let clients = [&alice, &bob];
    let bob_request = sync_until(&clients, "bob receiving the request", || async {
        bob.encryption()
            .get_verification_request(&alice_id, &flow)
            .await
    })
    .await;
    bob_request.accept().await.expect("bob accepts");
    sync_until(&clients, "the request being ready", || async {
        request.is_ready().then_some(())
    })
    .await;
    let alice_sas = request.start_sas().await.expect("start").expect("sas");
    let bob_sas = sync_until(&clients, "bob seeing the SAS", || async {
        match bob.encryption().get_verification(&alice_id, &flow).await {
            Some(Verification::SasV1(sas)) => Some(sas),
            _ => None,
        }
    })
    .await;
    bob_sas.accept().await.expect("bob accepts the SAS");
    sync_until(&clients, "emoji on both sides", || async {
        (alice_sas.emoji().is_some() && bob_sas.emoji().is_some()).then_some(())
    })
    .await;
    let symbols = |s: &SasVerification| -> Vec<&'static str> {
        s.emoji().unwrap().iter().map(|e| e.symbol).collect()
    };
    assert_eq!(symbols(&alice_sas), symbols(&bob_sas));
    alice_sas.confirm().await.expect("alice confirms");
    bob_sas.confirm().await.expect("bob confirms");
    sync_until(&clients, "the verification finishing", || async {
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

async fn upload_photo(c: &Client, shade: u8) -> (Vec<u8>, matrix_sdk::ruma::OwnedMxcUri) {
    let mut photo = std::io::Cursor::new(Vec::new());
    image::RgbImage::from_fn(64, 48, |x, y| image::Rgb([x as u8, y as u8, shade]))
        .write_to(&mut photo, image::ImageFormat::Png)
        .unwrap();
    let photo = photo.into_inner();
    let png: mime::Mime = "image/png".parse().unwrap();
    let uploaded = c
        .media()
        .upload(&png, photo.clone(), None)
        .await
        .expect("upload");
    (photo, uploaded.content_uri)
}

#[tokio::test]
async fn encrypted_conversation_and_media_with_synapse() {
    let synapse = synapse::Synapse::start().await;
    let axon = start_federated(|_| {}).await;
    let alice = user(&axon.base, "alice").await;
    let bob = user(&synapse.base, "bob").await;
    let alice_seen = collect_bodies(&alice);
    let bob_seen = collect_bodies(&bob);
    let room_id = encrypted_room(&alice, &bob).await;

    alice
        .get_room(&room_id)
        .unwrap()
        .send(RoomMessageEventContent::text_plain("from axon, encrypted"))
        .await
        .expect("alice sends");
    decrypted(&[&alice, &bob], &bob_seen, "from axon, encrypted").await;
    bob.get_room(&room_id)
        .unwrap()
        .send(RoomMessageEventContent::text_plain(
            "from synapse, encrypted",
        ))
        .await
        .expect("bob replies");
    decrypted(&[&alice, &bob], &alice_seen, "from synapse, encrypted").await;

    // Media both ways: Synapse fetches from axon's federation media API, axon from
    // Synapse's.
    let (photo, uri) = upload_photo(&alice, 1).await;
    assert_eq!(download(&bob, &uri).await, photo);
    let (photo, uri) = upload_photo(&bob, 2).await;
    assert_eq!(download(&alice, &uri).await, photo);
}
