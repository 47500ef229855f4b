//! Element X's way of syncing, against axon: matrix-sdk-ui's SyncService (the room list
//! service on simplified sliding sync, plus the encryption sync with the to_device and
//! e2ee extensions). A user with 50 rooms sees them in recency order; a new message moves
//! its room to the top; an invite appears; an encrypted room's messages decrypt.

mod common;
#[path = "common/sdk.rs"]
mod sdk;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use common::TestServer;
use eyeball_im::{Vector, VectorDiff};
use futures_util::StreamExt;
use matrix_sdk::{
    Client,
    config::SyncSettings,
    ruma::{
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
use matrix_sdk_ui::{
    room_list_service::{RoomListItem, filters::new_filter_non_left},
    sync_service::SyncService,
};
use sdk::{client, register};
use serde_json::json;

const WAIT: Duration = Duration::from_secs(30);

async fn user(server: &TestServer, name: &str) -> (Client, String) {
    let c = client(&server.base).await;
    register(&c, name, &format!("{name}-password")).await;
    let token = c.access_token().expect("logged in");
    (c, token)
}

async fn create_named_room(s: &TestServer, token: &str, name: &str) -> String {
    let (status, res) = s
        .post(
            "/_matrix/client/v3/createRoom",
            Some(token),
            json!({ "name": name }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    res["room_id"].as_str().unwrap().to_owned()
}

/// Room names of the list, in its order.
fn names(rooms: &Vector<RoomListItem>) -> Vec<String> {
    rooms
        .iter()
        .map(|r| r.name().unwrap_or_else(|| r.room_id().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn room_list_order_new_messages_and_invites() {
    let s = TestServer::start().await;
    let (alice, token) = user(&s, "alice").await;
    let (bob_token, _) = s.register("bob", "password-bob").await;
    // 50 rooms, one message each, in order: room 49 is the most recent.
    let mut rooms = Vec::new();
    for i in 0..50 {
        let room = create_named_room(&s, &token, &format!("room {i:02}")).await;
        s.send_message(
            &token,
            &room,
            &format!("t{i}"),
            json!({"msgtype": "m.text", "body": format!("hello {i}")}),
        )
        .await;
        rooms.push(room);
    }

    let sync_service = SyncService::builder(alice.clone())
        .build()
        .await
        .expect("sync service");
    sync_service.start().await;
    let room_list = sync_service.room_list_service();
    let all_rooms = room_list.all_rooms().await.expect("all rooms list");
    let (stream, controller) = all_rooms.entries_with_dynamic_adapters(100);
    controller.set_filter(Box::new(new_filter_non_left()));
    let mut stream = Box::pin(stream);
    let mut shown: Vector<RoomListItem> = Vector::new();

    // Applies list updates until `done` holds of the names.
    async fn until(
        stream: &mut (impl futures_util::Stream<Item = Vec<VectorDiff<RoomListItem>>> + Unpin),
        shown: &mut Vector<RoomListItem>,
        what: &str,
        done: impl Fn(&[String]) -> bool,
    ) {
        let result = tokio::time::timeout(WAIT, async {
            while !done(&names(shown)) {
                let diffs = stream.next().await.expect("the room list stream ended");
                for diff in diffs {
                    diff.apply(shown);
                }
            }
        })
        .await;
        assert!(result.is_ok(), "{what}: the list shows {:?}", names(shown));
    }

    let expected: Vec<String> = (0..50).rev().map(|i| format!("room {i:02}")).collect();
    until(
        &mut stream,
        &mut shown,
        "50 rooms, most recent first",
        |n| n == expected.as_slice(),
    )
    .await;

    // A message in room 10 (sent by another client of alice's) moves it to the top.
    s.send_message(
        &token,
        &rooms[10],
        "again",
        json!({"msgtype": "m.text", "body": "bump"}),
    )
    .await;
    until(&mut stream, &mut shown, "room 10 on top", |n| {
        n.first().map(String::as_str) == Some("room 10") && n.len() == 50
    })
    .await;

    // An invite from bob appears.
    let (status, res) = s
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&bob_token),
            json!({"name": "bob's room", "invite": ["@alice:localhost"]}),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    until(&mut stream, &mut shown, "the invite", |n| {
        n.iter().any(|name| name == "bob's room") && n.len() == 51
    })
    .await;
    let invited = shown
        .iter()
        .find(|r| r.name().as_deref() == Some("bob's room"))
        .unwrap();
    assert_eq!(invited.state(), matrix_sdk::RoomState::Invited);
    sync_service.stop().await;

    // It was sliding sync: the room list and encryption connections are axon's.
    let conns: Vec<String> = {
        use sqlx::ConnectOptions;
        let mut conn = s.db.connect().await.unwrap();
        sqlx::query_scalar(
            "SELECT conn_id FROM sliding_sync_connections WHERE user_id = '@alice:localhost'
             ORDER BY conn_id",
        )
        .fetch_all(&mut conn)
        .await
        .unwrap()
    };
    assert_eq!(conns, vec!["encryption", "room-list"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn encrypted_messages_decrypt_through_sliding_sync() {
    let s = TestServer::start().await;
    let (alice, _) = user(&s, "alice").await;
    let (bob, _) = user(&s, "bob").await;
    let seen = Arc::new(Mutex::new(Vec::<String>::new()));
    let sink = seen.clone();
    alice.add_event_handler(move |ev: OriginalSyncRoomMessageEvent| {
        let sink = sink.clone();
        async move {
            sink.lock().unwrap().push(ev.content.body().to_owned());
        }
    });
    // Alice syncs the Element X way; her device keys are uploaded by the SDK.
    let sync_service = SyncService::builder(alice.clone())
        .build()
        .await
        .expect("sync service");
    sync_service.start().await;

    // Bob (classic sync) makes an encrypted room and invites alice.
    bob.sync_once(SyncSettings::default().timeout(Duration::from_secs(1)))
        .await
        .unwrap();
    let mut request = CreateRoomRequest::new();
    request.invite = vec![alice.user_id().unwrap().to_owned()];
    request.initial_state = vec![
        InitialStateEvent::with_empty_state_key(
            RoomEncryptionEventContent::with_recommended_defaults(),
        )
        .to_raw_any(),
    ];
    let room = bob.create_room(request).await.expect("create room");
    let room_id = room.room_id().to_owned();

    // Alice sees the invite through sliding sync and joins.
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(r) = alice.get_room(&room_id)
                && r.state() == matrix_sdk::RoomState::Invited
            {
                r.join().await.expect("join");
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .expect("alice never saw the invite");

    // Bob learns of the join, then sends: the room key goes to alice's device by
    // to-device, which she gets through the sliding sync to_device extension.
    tokio::time::timeout(WAIT, async {
        loop {
            bob.sync_once(SyncSettings::default().timeout(Duration::from_secs(1)))
                .await
                .unwrap();
            let joined = room
                .members(matrix_sdk::RoomMemberships::JOIN)
                .await
                .unwrap()
                .len();
            if joined == 2 {
                break;
            }
        }
    })
    .await
    .expect("bob never saw alice join");
    assert!(room.latest_encryption_state().await.unwrap().is_encrypted());
    room.send(RoomMessageEventContent::text_plain(
        "secret over sliding sync",
    ))
    .await
    .expect("send");

    tokio::time::timeout(WAIT, async {
        while !seen
            .lock()
            .unwrap()
            .iter()
            .any(|b| b == "secret over sliding sync")
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("alice never decrypted it; saw {:?}", seen.lock().unwrap()));

    // The server only ever held ciphertext.
    let rows: Vec<String> = {
        use sqlx::ConnectOptions;
        let mut conn = s.db.connect().await.unwrap();
        sqlx::query_scalar("SELECT event_type FROM events WHERE room_id = $1 AND state_key IS NULL")
            .bind(room_id.as_str())
            .fetch_all(&mut conn)
            .await
            .unwrap()
    };
    assert!(rows.iter().all(|t| t == "m.room.encrypted"), "{rows:?}");
    sync_service.stop().await;
}
