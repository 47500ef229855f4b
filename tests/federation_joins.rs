//! The resident side of remote joins (`make_join`, `send_join` v2) against the stand-in
//! server: a template checked against the room, the signed join taken through the remote
//! PDU path, the state and auth chain in the answer (also with `omit_members`), and the
//! refusals: another server's user, an unsupported room version, a mismatched event ID,
//! a room the user may not join. Then the joined user's typing notices and read receipts
//! (EDUs), and those the origin may not send.

mod common;
#[path = "common/fake_remote.rs"]
mod fake_remote;
#[path = "common/federation.rs"]
mod federation;

use common::TestServer;
use fake_remote::FakeRemote;
use federation::start_federated;
use ruma::{CanonicalJsonObject, RoomVersionId};
use serde_json::{Value, json};

async fn make_join(
    s: &TestServer,
    remote: &FakeRemote,
    room: &str,
    user: &str,
    versions: &str,
) -> (reqwest::StatusCode, Value) {
    remote
        .request(
            s,
            "GET",
            &format!("/_matrix/federation/v1/make_join/{room}/{user}?{versions}"),
            None,
        )
        .await
}

/// `PUT /v2/{send_join,send_leave}/{room}/{id_and_query}` with `event`, from `remote`.
async fn put_member_event(
    s: &TestServer,
    remote: &FakeRemote,
    endpoint: &str,
    room: &str,
    id_and_query: &str,
    event: &CanonicalJsonObject,
) -> (reqwest::StatusCode, Value) {
    remote
        .request(
            s,
            "PUT",
            &format!("/_matrix/federation/v2/{endpoint}/{room}/{id_and_query}"),
            Some(serde_json::to_value(event).unwrap()),
        )
        .await
}

fn sign(
    remote: &FakeRemote,
    template: &Value,
    version: &RoomVersionId,
) -> (CanonicalJsonObject, String) {
    let rules = version.rules().unwrap();
    let mut event = template.clone();
    event["origin_server_ts"] = json!(axon::server::now_ms());
    let mut object: CanonicalJsonObject = serde_json::from_value(event).unwrap();
    ruma::signatures::hash_and_sign_event(
        &remote.name,
        &*remote.pair,
        &mut object,
        &rules.redaction,
    )
    .unwrap();
    let id = FakeRemote::event_id(&object, &rules);
    (object, id)
}

#[tokio::test]
async fn a_user_of_another_server_joins_through_make_join_and_send_join() {
    let s = start_federated(|_| {}).await;
    let (token, _) = s.register("alice", "correct horse battery").await;
    let remote = FakeRemote::start().await;
    let room = s
        .create_room(
            &token,
            json!({"preset": "public_chat", "room_version": "11", "name": "Lobby"}),
        )
        .await;
    let bob = format!("@bob:{}", remote.name);

    let (status, answer) = make_join(&s, &remote, &room, &bob, "ver=10&ver=11").await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["room_version"], "11");
    let template = &answer["event"];
    assert_eq!(template["type"], "m.room.member");
    assert_eq!(template["state_key"], bob.as_str());
    assert_eq!(template["content"]["membership"], "join");
    assert!(template.get("signatures").is_none() && template.get("hashes").is_none());

    let (join, join_id) = sign(&remote, template, &RoomVersionId::V11);
    let (status, joined) = put_member_event(&s, &remote, "send_join", &room, &join_id, &join).await;
    assert_eq!(status, 200, "{joined}");
    let types: Vec<&str> = joined["state"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["type"].as_str())
        .collect();
    for needed in [
        "m.room.create",
        "m.room.power_levels",
        "m.room.join_rules",
        "m.room.name",
    ] {
        assert!(types.contains(&needed), "{needed} in {types:?}");
    }
    assert!(
        !joined["state"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["state_key"] == bob.as_str()),
        "the state is the one before the join"
    );
    assert!(!joined["auth_chain"].as_array().unwrap().is_empty());
    assert_eq!(joined["event"]["state_key"], bob.as_str());
    let (status, members) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/joined_members"),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200);
    assert!(members["joined"][&bob].is_object(), "{members}");

    // Sending the same join again is answered the same way (a retried request).
    let (status, _) = put_member_event(&s, &remote, "send_join", &room, &join_id, &join).await;
    assert_eq!(status, 200);

    // omit_members: member events left out, except those the join's auth needs; the
    // servers in the room listed.
    let carol = format!("@carol:{}", remote.name);
    let (_, answer) = make_join(&s, &remote, &room, &carol, "ver=11").await;
    let (join, join_id) = sign(&remote, &answer["event"], &RoomVersionId::V11);
    let (status, joined) = put_member_event(
        &s,
        &remote,
        "send_join",
        &room,
        &format!("{join_id}?omit_members=true"),
        &join,
    )
    .await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined["members_omitted"], true);
    assert!(
        !joined["state"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["state_key"] == bob.as_str()),
        "bob's membership is omitted"
    );
    let servers = joined["servers_in_room"].as_array().unwrap();
    assert!(
        servers.contains(&json!(s.name())) && servers.contains(&json!(remote.name)),
        "{servers:?}"
    );
}

#[tokio::test]
async fn joins_this_server_must_refuse() {
    let s = start_federated(|_| {}).await;
    let (token, _) = s.register("alice", "correct horse battery").await;
    let remote = FakeRemote::start().await;
    let public = s
        .create_room(
            &token,
            json!({"preset": "public_chat", "room_version": "11"}),
        )
        .await;
    let private = s
        .create_room(
            &token,
            json!({"preset": "private_chat", "room_version": "11"}),
        )
        .await;
    let bob = format!("@bob:{}", remote.name);

    // A user of another server.
    let (status, body) = make_join(&s, &remote, &public, "@alice:elsewhere.test", "ver=11").await;
    assert_eq!(status, 403, "{body}");
    // A room version the joining server does not speak.
    let (status, body) = make_join(&s, &remote, &public, &bob, "ver=1&ver=2").await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["errcode"], "M_INCOMPATIBLE_ROOM_VERSION");
    assert_eq!(body["room_version"], "11");
    // An unknown room.
    let (status, body) = make_join(&s, &remote, "!nope:localhost", &bob, "ver=11").await;
    assert_eq!(status, 404, "{body}");
    // An invite-only room.
    let (status, body) = make_join(&s, &remote, &private, &bob, "ver=11").await;
    assert_eq!(status, 403, "{body}");

    // send_join: a mismatched event ID, and a join that is not the sender's own.
    let (_, answer) = make_join(&s, &remote, &public, &bob, "ver=11").await;
    let (join, _) = sign(&remote, &answer["event"], &RoomVersionId::V11);
    let (status, body) = put_member_event(&s, &remote, "send_join", &public, "$wrong", &join).await;
    assert_eq!(status, 400, "{body}");
    let mut kick = answer["event"].clone();
    kick["content"]["membership"] = json!("leave");
    let (kick, kick_id) = sign(&remote, &kick, &RoomVersionId::V11);
    let (status, body) = put_member_event(&s, &remote, "send_join", &public, &kick_id, &kick).await;
    assert_eq!(status, 400, "{body}");
    let (status, members) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{public}/joined_members"),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200);
    assert!(members["joined"].get(&bob).is_none(), "{members}");
}

/// alice's public v11 room on a federated server, which bob of the stand-in server has
/// joined through make_join/send_join: (server, alice's token, stand-in, room, bob).
async fn remote_user_joined() -> (TestServer, String, FakeRemote, String, String) {
    let s = start_federated(|_| {}).await;
    let (token, _) = s.register("alice", "correct horse battery").await;
    let remote = FakeRemote::start().await;
    let room = s
        .create_room(
            &token,
            json!({"preset": "public_chat", "room_version": "11"}),
        )
        .await;
    let bob = format!("@bob:{}", remote.name);
    let (_, answer) = make_join(&s, &remote, &room, &bob, "ver=11").await;
    let (join, join_id) = sign(&remote, &answer["event"], &RoomVersionId::V11);
    let (status, body) = put_member_event(&s, &remote, "send_join", &room, &join_id, &join).await;
    assert_eq!(status, 200, "{body}");
    (s, token, remote, room, bob)
}

#[tokio::test]
async fn a_user_of_another_server_leaves_through_make_leave_and_send_leave() {
    let (s, token, remote, room, bob) = remote_user_joined().await;

    let (status, answer) = remote
        .request(
            &s,
            "GET",
            &format!("/_matrix/federation/v1/make_leave/{room}/{bob}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["room_version"], "11");
    assert_eq!(answer["event"]["content"]["membership"], "leave");
    // A leave sent as another membership, or for another server's user: refused.
    let mut as_join = answer["event"].clone();
    as_join["content"]["membership"] = json!("join");
    let (as_join, as_join_id) = sign(&remote, &as_join, &RoomVersionId::V11);
    let (status, _) =
        put_member_event(&s, &remote, "send_leave", &room, &as_join_id, &as_join).await;
    assert_eq!(status, 400);
    let (status, body) = remote
        .request(
            &s,
            "GET",
            &format!(
                "/_matrix/federation/v1/make_leave/{room}/@alice:{}",
                s.name()
            ),
            None,
        )
        .await;
    assert_eq!(status, 403, "{body}");

    let (leave, leave_id) = sign(&remote, &answer["event"], &RoomVersionId::V11);
    let (status, body) =
        put_member_event(&s, &remote, "send_leave", &room, &leave_id, &leave).await;
    assert_eq!(status, 200, "{body}");
    let (status, members) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/joined_members"),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200);
    assert!(members["joined"].get(&bob).is_none(), "{members}");
}

/// Typing notices and read receipts of a joined remote user reach local clients through
/// /sync; those for a user of another server, or not in the room, are dropped.
#[tokio::test]
async fn typing_and_receipts_of_remote_users() {
    let (s, token, remote, room, bob) = remote_user_joined().await;
    let message = s
        .send_message(
            &token,
            &room,
            "m1",
            json!({"msgtype": "m.text", "body": "hi bob"}),
        )
        .await;
    let since = s.next_batch(&token).await;

    let edus = json!([
        {"edu_type": "m.typing", "content": {"room_id": room, "user_id": "@eve:elsewhere.example", "typing": true}},
        {"edu_type": "m.typing", "content": {"room_id": room, "user_id": format!("@carol:{}", remote.name), "typing": true}},
        {"edu_type": "m.typing", "content": {"room_id": room, "user_id": bob, "typing": true}},
        {"edu_type": "m.receipt", "content": {room.clone(): {"m.read": {
            bob.clone(): {"data": {"ts": 1}, "event_ids": [message]},
            "@eve:elsewhere.example": {"data": {"ts": 1}, "event_ids": [message]}
        }}}},
    ]);
    let (status, body) = remote
        .request(
            &s,
            "PUT",
            "/_matrix/federation/v1/send/edus1",
            Some(json!({"origin": remote.name, "origin_server_ts": 1, "pdus": [], "edus": edus})),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    let synced = s.synced_room(&token, "join", &room, Some(&since)).await;
    let ephemeral = synced["ephemeral"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let typing = ephemeral
        .iter()
        .find(|e| e["type"] == "m.typing")
        .unwrap_or_else(|| panic!("no typing in {synced}"));
    assert_eq!(typing["content"]["user_ids"], json!([bob]), "{typing}");
    let receipt = ephemeral
        .iter()
        .find(|e| e["type"] == "m.receipt")
        .unwrap_or_else(|| panic!("no receipt in {synced}"));
    let readers = &receipt["content"][&message]["m.read"];
    assert!(readers[&bob].is_object(), "{receipt}");
    assert!(readers["@eve:elsewhere.example"].is_null(), "{receipt}");
}

/// Presence, device list updates and to-device messages: taken for the origin's own
/// users (to-device once per message ID); those about or from another server's users,
/// or with another user's keys, are dropped. Too many EDUs in one transaction are refused.
#[tokio::test]
async fn presence_device_lists_and_to_device_from_another_server() {
    let (s, token, remote, _room, bob) = remote_user_joined().await;
    let alice = format!("@alice:{}", s.name());
    let (_, who) = s
        .get("/_matrix/client/v3/account/whoami", Some(&token))
        .await;
    let device = who["device_id"].as_str().unwrap().to_owned();
    let since = s.next_batch(&token).await;
    let eve = "@eve:elsewhere.example";
    let to_device = |sender: &str, n: i64| {
        json!({"edu_type": "m.direct_to_device", "content": {
            "sender": sender, "type": "m.test", "message_id": format!("msg{n}"),
            "messages": {&alice: {&device: {"n": n}, "NOSUCHDEVICE": {"n": n}}}}})
    };
    let edus = json!([
        {"edu_type": "m.presence", "content": {"push": [
            {"user_id": eve, "presence": "online", "last_active_ago": 0, "status_msg": "eve"},
            {"user_id": bob, "presence": "online", "last_active_ago": 5, "status_msg": "here"},
        ]}},
        {"edu_type": "m.device_list_update", "content": {
            "user_id": eve, "device_id": "E", "stream_id": 1, "prev_id": []}},
        {"edu_type": "m.device_list_update", "content": {
            "user_id": bob, "device_id": "B", "stream_id": 1, "prev_id": [],
            "keys": {"user_id": alice, "device_id": "B", "algorithms": [], "keys": {}}}},
        to_device(eve, 1),
        to_device(&bob, 2),
    ]);
    for txn in ["edus2", "edus3"] {
        // The second transaction repeats the to-device message: delivered once.
        let (status, body) = remote
            .request(
                &s,
                "PUT",
                &format!("/_matrix/federation/v1/send/{txn}"),
                Some(
                    json!({"origin": remote.name, "origin_server_ts": 1, "pdus": [], "edus": edus}),
                ),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }

    let (status, synced) = s
        .get(
            &format!("/_matrix/client/v3/sync?timeout=0&since={since}"),
            Some(&token),
        )
        .await;
    assert_eq!(status, 200, "{synced}");
    let presence: Vec<&Value> = synced["presence"]["events"]
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    assert!(
        presence
            .iter()
            .any(|e| e["sender"] == bob.as_str() && e["content"]["status_msg"] == "here"),
        "{synced}"
    );
    assert!(!presence.iter().any(|e| e["sender"] == eve), "{synced}");
    let changed = synced["device_lists"]["changed"].clone();
    assert!(
        !changed.as_array().into_iter().flatten().any(|u| u == eve),
        "{synced}"
    );
    let messages: Vec<Value> = synced["to_device"]["events"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(messages.len(), 1, "{synced}");
    assert_eq!(messages[0]["sender"], bob.as_str());
    assert_eq!(messages[0]["content"]["n"], 2);
    // Nothing of another user's keys was kept for bob.
    let (status, keys) = s
        .post(
            "/_matrix/client/v3/keys/query",
            Some(&token),
            json!({"device_keys": {&bob: []}, "timeout": 2000}),
        )
        .await;
    assert_eq!(status, 200, "{keys}");
    assert!(keys["device_keys"][&bob]["B"].is_null(), "{keys}");

    // More EDUs than a transaction may carry: refused whole.
    let many: Vec<Value> = (0..101).map(|n| to_device(&bob, 100 + n)).collect();
    let (status, body) = remote
        .request(
            &s,
            "PUT",
            "/_matrix/federation/v1/send/edus4",
            Some(json!({"origin": remote.name, "origin_server_ts": 1, "pdus": [], "edus": many})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
}
