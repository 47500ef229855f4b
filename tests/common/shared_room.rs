//! A room of axon's that a user of the stand-in server (tests/common/fake_remote.rs)
//! has joined, and helpers to push that user's events to axon in transactions.
//! Include beside `common`, `fake_remote` and `federation`:
//! `#[path = "common/shared_room.rs"] mod shared_room;`.
#![allow(dead_code)]

use ruma::{CanonicalJsonObject, RoomVersionId, room_version_rules::RoomVersionRules};
use serde_json::{Value, json};

use super::{
    common::TestServer,
    fake_remote::{Draft, FakeRemote},
};

pub fn rules() -> RoomVersionRules {
    RoomVersionId::V11.rules().unwrap()
}

pub async fn state_id(s: &TestServer, token: &str, room: &str, kind: &str, key: &str) -> String {
    let (status, state) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state"),
            Some(token),
        )
        .await;
    assert_eq!(status, 200, "{state}");
    state
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == kind && e["state_key"] == key)
        .unwrap_or_else(|| panic!("no {kind}/{key}"))["event_id"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// The room's newest event and its depth.
pub async fn newest(s: &TestServer, token: &str, room: &str) -> (String, i64) {
    let (_, page) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=1"),
            Some(token),
        )
        .await;
    let id = page["chunk"][0]["event_id"].as_str().unwrap().to_owned();
    let stored = s.hs.storage.event(&id).await.unwrap().unwrap();
    (id, stored.pdu["depth"].as_i64().unwrap())
}

/// A public room of alice's that `remote`'s bob has joined by a transaction.
pub struct SharedRoom {
    pub id: String,
    pub bob: String,
    pub create: String,
    pub power_levels: String,
    pub bob_join: String,
    pub depth: i64,
}

pub async fn shared_room(s: &TestServer, token: &str, remote: &FakeRemote) -> SharedRoom {
    let (status, res) = s
        .post(
            "/_matrix/client/v3/createRoom",
            Some(token),
            json!({"preset": "public_chat", "room_version": "11"}),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let room = res["room_id"].as_str().unwrap().to_owned();
    let bob = format!("@bob:{}", remote.name);
    let create = state_id(s, token, &room, "m.room.create", "").await;
    let power_levels = state_id(s, token, &room, "m.room.power_levels", "").await;
    let join_rules = state_id(s, token, &room, "m.room.join_rules", "").await;
    let (tip, depth) = newest(s, token, &room).await;
    let join = remote.pdu(
        &room,
        &rules(),
        Draft {
            sender: &bob,
            kind: "m.room.member",
            state_key: Some(&bob),
            content: json!({"membership": "join"}),
            prev: vec![tip],
            auth: vec![create.clone(), power_levels.clone(), join_rules],
            depth: depth + 1,
        },
    );
    let bob_join = FakeRemote::event_id(&join, &rules());
    let (status, answer) = send_txn(s, remote, &format!("join-{bob_join}"), vec![join]).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["pdus"][&bob_join], json!({}), "{answer}");
    SharedRoom {
        id: room,
        bob,
        create,
        power_levels,
        bob_join,
        depth: depth + 1,
    }
}

pub async fn send_txn(
    s: &TestServer,
    remote: &FakeRemote,
    txn: &str,
    pdus: Vec<CanonicalJsonObject>,
) -> (reqwest::StatusCode, Value) {
    let body = json!({
        "origin": remote.name,
        "origin_server_ts": axon::server::now_ms(),
        "pdus": pdus,
    });
    remote
        .request(
            s,
            "PUT",
            &format!("/_matrix/federation/v1/send/{txn}"),
            Some(body),
        )
        .await
}

pub fn message(
    remote: &FakeRemote,
    room: &SharedRoom,
    body: &str,
    prev: Vec<String>,
    depth: i64,
) -> CanonicalJsonObject {
    remote.pdu(
        &room.id,
        &rules(),
        Draft {
            sender: &room.bob,
            kind: "m.room.message",
            state_key: None,
            content: json!({"msgtype": "m.text", "body": body}),
            prev,
            auth: vec![
                room.create.clone(),
                room.power_levels.clone(),
                room.bob_join.clone(),
            ],
            depth,
        },
    )
}

pub async fn bodies(s: &TestServer, token: &str, room: &str) -> Vec<String> {
    let (_, page) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=100"),
            Some(token),
        )
        .await;
    page["chunk"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
        .collect()
}
