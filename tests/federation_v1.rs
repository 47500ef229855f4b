//! The v1 forms of `/invite` and `/send_join` (deprecated, still spoken by older servers
//! and served by Synapse), against the stand-in server: an invite whose body is the event
//! itself is countersigned and answered `[200, {"event"}]`, a forged one or one that is
//! not an event refused; a join
//! through v1 `send_join` is answered `[200, {"origin", "state", "auth_chain"}]`, a leave
//! through v1 `send_leave` `[200, {}]`; and a
//! server that answers the v2 invite 404 is sent the v1 form, with the room's state in
//! the event's `unsigned`; the invitee's server gets the kick that follows in a
//! transaction, but not the invite.

mod common;
#[path = "common/fake_remote.rs"]
mod fake_remote;
#[path = "common/federation.rs"]
mod federation;

use common::assert_error;
use fake_remote::{Draft, FakeRemote};
use federation::start_federated;
use ruma::{CanonicalJsonObject, CanonicalJsonValue, RoomVersionId};
use serde_json::json;

#[tokio::test]
async fn v1_invites_and_joins_are_served() {
    let s = start_federated(|_| {}).await;
    let (bob, _) = s.register("bob", "correct horse battery").await;
    let remote = FakeRemote::start().await;

    // An invite to bob in a v1 room of the stand-in, the room state in `unsigned`.
    let rules = RoomVersionId::V1.rules().unwrap();
    let room = format!("!old:{}", remote.name);
    let alice = format!("@alice:{}", remote.name);
    let bob_id = format!("@bob:{}", s.name());
    let invite = remote.pdu(
        &room,
        &rules,
        Draft {
            sender: &alice,
            kind: "m.room.member",
            state_key: Some(&bob_id),
            content: json!({"membership": "invite"}),
            prev: vec![format!("$prev:{}", remote.name)],
            auth: vec![format!("$create:{}", remote.name)],
            depth: 5,
        },
    );
    let id = FakeRemote::event_id(&invite, &rules);
    let body_of = |event: &CanonicalJsonObject| {
        let mut body = serde_json::to_value(event).unwrap();
        body["unsigned"] = json!({"invite_room_state": [
            {"type": "m.room.name", "state_key": "", "sender": alice, "content": {"name": "Old"}}
        ]});
        body
    };
    let path = format!("/_matrix/federation/v1/invite/{room}/{id}");
    let mut forged = invite.clone();
    forged.insert(
        "origin_server_ts".into(),
        CanonicalJsonValue::Integer(7u32.into()),
    );
    let result = remote
        .request(&s, "PUT", &path, Some(body_of(&forged)))
        .await;
    assert_error(&result, 403, "M_FORBIDDEN");
    // A body that is not an event at all.
    let result = remote
        .request(&s, "PUT", &path, Some(json!("not an event")))
        .await;
    assert_error(&result, 400, "M_BAD_JSON");
    let (status, answer) = remote
        .request(&s, "PUT", &path, Some(body_of(&invite)))
        .await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer[0], 200, "{answer}");
    let signed = &answer[1]["event"];
    assert_eq!(signed["state_key"], bob_id.as_str(), "{answer}");
    assert!(signed["signatures"][s.name()].is_object(), "{answer}");
    assert!(signed["signatures"][&remote.name].is_object(), "{answer}");
    let shown = s.synced_room(&bob, "invite", &room, None).await;
    let name = shown["invite_state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.room.name")
        .map(|e| e["content"]["name"].clone());
    assert_eq!(name, Some(json!("Old")), "{shown}");

    // A user of the stand-in joins a room here through v1 send_join.
    let local_room = s
        .create_room(
            &bob,
            json!({"preset": "public_chat", "room_version": "11", "name": "Here"}),
        )
        .await;
    let carol = format!("@carol:{}", remote.name);
    let (status, made) = remote
        .request(
            &s,
            "GET",
            &format!("/_matrix/federation/v1/make_join/{local_room}/{carol}?ver=11"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{made}");
    let rules = RoomVersionId::V11.rules().unwrap();
    let mut join = made["event"].clone();
    join["origin_server_ts"] = json!(axon::server::now_ms());
    let mut join: CanonicalJsonObject = serde_json::from_value(join).unwrap();
    ruma::signatures::hash_and_sign_event(&remote.name, &*remote.pair, &mut join, &rules.redaction)
        .unwrap();
    let join_id = FakeRemote::event_id(&join, &rules);
    let (status, joined) = remote
        .request(
            &s,
            "PUT",
            &format!("/_matrix/federation/v1/send_join/{local_room}/{join_id}"),
            Some(serde_json::to_value(&join).unwrap()),
        )
        .await;
    assert_eq!(status, 200, "{joined}");
    assert_eq!(joined[0], 200, "{joined}");
    assert_eq!(joined[1]["origin"], s.name().as_str());
    let state = joined[1]["state"].as_array().unwrap();
    for needed in ["m.room.create", "m.room.join_rules", "m.room.name"] {
        assert!(
            state.iter().any(|e| e["type"] == needed),
            "{needed}: {joined}"
        );
    }
    assert!(!joined[1]["auth_chain"].as_array().unwrap().is_empty());
    let (status, members) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{local_room}/joined_members"),
            Some(&bob),
        )
        .await;
    assert_eq!(status, 200);
    assert!(members["joined"][&carol].is_object(), "{members}");

    // And leaves through v1 send_leave, answered `[200, {}]`.
    let (status, made) = remote
        .request(
            &s,
            "GET",
            &format!("/_matrix/federation/v1/make_leave/{local_room}/{carol}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{made}");
    let mut leave = made["event"].clone();
    leave["origin_server_ts"] = json!(axon::server::now_ms());
    let mut leave: CanonicalJsonObject = serde_json::from_value(leave).unwrap();
    ruma::signatures::hash_and_sign_event(
        &remote.name,
        &*remote.pair,
        &mut leave,
        &rules.redaction,
    )
    .unwrap();
    let leave_id = FakeRemote::event_id(&leave, &rules);
    let (status, left) = remote
        .request(
            &s,
            "PUT",
            &format!("/_matrix/federation/v1/send_leave/{local_room}/{leave_id}"),
            Some(serde_json::to_value(&leave).unwrap()),
        )
        .await;
    assert_eq!(status, 200, "{left}");
    assert_eq!(left, json!([200, {}]));
    let (_, members) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{local_room}/joined_members"),
            Some(&bob),
        )
        .await;
    assert!(members["joined"].get(&carol).is_none(), "{members}");
}

#[tokio::test]
async fn a_server_that_only_knows_v1_is_sent_v1_invites() {
    let s = start_federated(|_| {}).await;
    let (alice, _) = s.register("alice", "correct horse battery").await;
    let remote = FakeRemote::start().await;
    let room = s
        .create_room(
            &alice,
            json!({"preset": "private_chat", "room_version": "11", "name": "Invitation"}),
        )
        .await;
    let bob = format!("@bob:{}", remote.name);
    let (status, body) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            Some(&alice),
            json!({"user_id": bob}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let sent = remote.invites_v1.lock().unwrap().clone();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["type"], "m.room.member");
    assert_eq!(sent[0]["state_key"], bob.as_str());
    assert_eq!(sent[0]["content"]["membership"], "invite");
    let state = sent[0]["unsigned"]["invite_room_state"].as_array().unwrap();
    assert!(
        state
            .iter()
            .any(|e| e["type"] == "m.room.name" && e["content"]["name"] == "Invitation"),
        "{state:?}"
    );
    let (status, member) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{bob}"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200, "{member}");
    assert_eq!(member["membership"], "invite");

    // The invite reached bob's server through /invite only: its server is not in the
    // room, so room events are not sent there; but a kick is, bob's server must hear of
    // it. Transactions to a server go in order, so once the kick is there, any invite
    // sent before it would be too.
    let (status, body) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/kick"),
            Some(&alice),
            json!({"user_id": bob}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let room_pdus = || -> Vec<serde_json::Value> {
        remote
            .received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|t| t["pdus"].as_array().cloned().unwrap_or_default())
            .filter(|p| p["room_id"] == room.as_str())
            .collect()
    };
    for _ in 0..200 {
        if !room_pdus().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let pdus = room_pdus();
    let memberships: Vec<&str> = pdus
        .iter()
        .filter_map(|p| p["content"]["membership"].as_str())
        .collect();
    assert_eq!(memberships, ["leave"], "{pdus:?}");
}
