//! Invites across two axon servers: alice on hs1 invites bob on hs2 (hs2 countersigns
//! through `/invite`), bob's /sync shows the invite with the room's stripped state, and
//! bob joins through the inviting server or declines through it; createRoom's `invite`
//! names a remote user; an invite declined while the inviting server is down is declined
//! on hs2 alone. Knocks across servers: accepted by an invite, rescinded. Also: profiles
//! of the other server's users, asked of it.

mod common;
#[path = "common/fake_remote.rs"]
mod fake_remote;
#[path = "common/federation.rs"]
mod federation;

use common::assert_error;
use fake_remote::{Draft, FakeRemote};
use federation::start_federated;
use ruma::{CanonicalJsonObject, CanonicalJsonValue, RoomVersionId};
use serde_json::{Value, json};

fn stripped_of<'a>(invite: &'a Value, event_type: &str) -> Option<&'a Value> {
    invite["invite_state"]["events"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == event_type)
}

async fn invite_join_and_decline(version: &str) {
    let hs1 = start_federated(|_| {}).await;
    let hs2 = start_federated(|_| {}).await;
    let (alice, _) = hs1.register("alice", "correct horse battery").await;
    let (bob, _) = hs2.register("bob", "correct horse battery").await;
    let (carol, _) = hs2.register("carol", "correct horse battery").await;
    let alice_id = format!("@alice:{}", hs1.name());
    let bob_id = format!("@bob:{}", hs2.name());
    let carol_id = format!("@carol:{}", hs2.name());
    let room = hs1
        .create_room(
            &alice,
            json!({"preset": "private_chat", "room_version": version, "name": "Secret"}),
        )
        .await;

    // An invite of a user hs2 does not have is refused there, and not stored here.
    let (status, body) = hs1
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            Some(&alice),
            json!({"user_id": format!("@nobody:{}", hs2.name())}),
        )
        .await;
    assert!(
        status.is_client_error() || status.is_server_error(),
        "v{version}: {body}"
    );
    assert_eq!(
        hs1.membership_of(&alice, &room, &format!("@nobody:{}", hs2.name()))
            .await,
        None
    );

    let (status, body) = hs2
        .put(
            &format!("/_matrix/client/v3/profile/{bob_id}/displayname"),
            Some(&bob),
            json!({"displayname": "Bob of hs2"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");

    // bob is invited: hs2 signed the invite, bob's /sync shows it with the room's name.
    let (status, body) = hs1
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            Some(&alice),
            json!({"user_id": bob_id}),
        )
        .await;
    assert_eq!(status, 200, "v{version}: {body}");
    assert_eq!(
        hs1.membership_of(&alice, &room, &bob_id).await.as_deref(),
        Some("invite")
    );
    // The invite carries bob's name as hs2 tells it.
    let (status, member) = hs1
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{bob_id}"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200);
    assert_eq!(member["displayname"], "Bob of hs2", "v{version}: {member}");
    let invite = hs2.synced_room(&bob, "invite", &room, None).await;
    assert_eq!(
        stripped_of(&invite, "m.room.name").map(|e| e["content"]["name"].clone()),
        Some(json!("Secret")),
        "v{version}: {invite}"
    );
    let own = invite["invite_state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == bob_id.as_str())
        .unwrap_or_else(|| panic!("v{version}: no invite event in {invite}"));
    assert_eq!(own["sender"], alice_id.as_str());
    assert_eq!(own["content"]["membership"], "invite");

    // bob joins by room ID alone: hs2 asks the inviting server.
    let (status, body) = hs2
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "v{version}: {body}");
    hs1.waits_for_membership(&alice, &room, &bob_id, "join")
        .await;
    hs2.synced_room(&bob, "join", &room, None).await;

    // carol is invited and declines: the leave goes through hs1, whose room shows it.
    let (status, body) = hs1
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            Some(&alice),
            json!({"user_id": carol_id}),
        )
        .await;
    assert_eq!(status, 200, "v{version}: {body}");
    hs2.synced_room(&carol, "invite", &room, None).await;
    let since = hs2.next_batch(&carol).await;
    let (status, body) = hs2
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/leave"),
            Some(&carol),
            json!({"reason": "not now"}),
        )
        .await;
    assert_eq!(status, 200, "v{version}: {body}");
    hs1.waits_for_membership(&alice, &room, &carol_id, "leave")
        .await;
    let left = hs2.synced_room(&carol, "leave", &room, Some(&since)).await;
    assert!(left["timeline"].is_object(), "{left}");
}

#[tokio::test]
async fn invites_across_servers_v11() {
    invite_join_and_decline("11").await;
}

#[tokio::test]
async fn invites_across_servers_v12() {
    invite_join_and_decline("12").await;
}

#[tokio::test]
async fn invites_across_servers_v1() {
    invite_join_and_decline("1").await;
}

/// createRoom's `invite` may name users of other servers; a decline while the inviting
/// server is down happens on the invitee's server alone, and the invite is gone.
#[tokio::test]
async fn create_room_invites_remote_users_and_declines_survive_an_outage() {
    let mut hs1 = start_federated(|_| {}).await;
    let hs2 = start_federated(|_| {}).await;
    let (alice, _) = hs1.register("alice", "correct horse battery").await;
    let (bob, _) = hs2.register("bob", "correct horse battery").await;
    let bob_id = format!("@bob:{}", hs2.name());
    let room = hs1
        .create_room(
            &alice,
            json!({"preset": "trusted_private_chat", "is_direct": true, "invite": [bob_id]}),
        )
        .await;
    let invite = hs2.synced_room(&bob, "invite", &room, None).await;
    let own = invite["invite_state"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["type"] == "m.room.member" && e["state_key"] == bob_id.as_str())
        .cloned()
        .unwrap();
    assert_eq!(own["content"]["is_direct"], true, "{invite}");

    hs1.shut_down().await;
    let since = hs2.next_batch(&bob).await;
    let (status, body) = hs2
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/leave"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    hs2.synced_room(&bob, "leave", &room, Some(&since)).await;
    let (status, body) = hs2
        .get("/_matrix/client/v3/sync?timeout=0", Some(&bob))
        .await;
    assert_eq!(status, 200);
    assert!(body["rooms"]["invite"][&room].is_null(), "{body}");
}

/// The invited server's checks: an invite must be what its path says, an invite of a
/// local user by a user of the sending server, signed by it, in a room version spoken
/// here; a good one is countersigned and shown to the invitee with the state it came with.
#[tokio::test]
async fn inbound_invites_are_checked() {
    let s = start_federated(|_| {}).await;
    let (bob, _) = s.register("bob", "correct horse battery").await;
    let remote = FakeRemote::start().await;
    let rules = RoomVersionId::V11.rules().unwrap();
    let room = format!("!elsewhere:{}", remote.name);
    let alice = format!("@alice:{}", remote.name);
    let bob_id = format!("@bob:{}", s.name());
    let invite_of = |target: &str, sender: &str, membership: &str| {
        remote.pdu(
            &room,
            &rules,
            Draft {
                sender,
                kind: "m.room.member",
                state_key: Some(target),
                content: json!({"membership": membership}),
                prev: vec!["$prev".into()],
                auth: vec!["$create".into()],
                depth: 5,
            },
        )
    };
    let name_event = json!({"type": "m.room.name", "state_key": "", "sender": alice,
                            "content": {"name": "Far away"}});
    let (s, remote) = (&s, &remote);
    let put = |event: &CanonicalJsonObject, id: &str, version: &str| {
        let body = json!({"room_version": version, "event": event,
                          "invite_room_state": [name_event.clone()]});
        let path = format!("/_matrix/federation/v2/invite/{room}/{id}");
        async move { remote.request(s, "PUT", &path, Some(body)).await }
    };

    // An event that is not a JSON object.
    let (status, body) = remote
        .request(
            s,
            "PUT",
            &format!("/_matrix/federation/v2/invite/{room}/$x"),
            Some(json!({"room_version": "11", "event": "not an event", "invite_room_state": []})),
        )
        .await;
    assert_error(&(status, body), 400, "M_BAD_JSON");
    let stranger = invite_of(&bob_id, &format!("@eve:{}", "elsewhere.example"), "invite");
    let id = FakeRemote::event_id(&stranger, &rules);
    assert_error(&put(&stranger, &id, "11").await, 403, "M_FORBIDDEN");
    let not_ours = invite_of("@bob:elsewhere.example", &alice, "invite");
    let id = FakeRemote::event_id(&not_ours, &rules);
    assert_error(&put(&not_ours, &id, "11").await, 403, "M_FORBIDDEN");
    let join = invite_of(&bob_id, &alice, "join");
    let id = FakeRemote::event_id(&join, &rules);
    assert_error(&put(&join, &id, "11").await, 400, "M_BAD_JSON");
    let nobody = invite_of(&format!("@nobody:{}", s.name()), &alice, "invite");
    let id = FakeRemote::event_id(&nobody, &rules);
    assert_error(&put(&nobody, &id, "11").await, 404, "M_NOT_FOUND");
    let invite = invite_of(&bob_id, &alice, "invite");
    let id = FakeRemote::event_id(&invite, &rules);
    assert_error(&put(&invite, "$another", "11").await, 400, "M_BAD_JSON");
    assert_error(
        &put(&invite, &id, "99").await,
        400,
        "M_INCOMPATIBLE_ROOM_VERSION",
    );
    let mut forged = invite.clone();
    forged.insert(
        "origin_server_ts".into(),
        CanonicalJsonValue::Integer(7u32.into()),
    );
    let forged_id = FakeRemote::event_id(&forged, &rules);
    assert_error(&put(&forged, &forged_id, "11").await, 403, "M_FORBIDDEN");
    let (status, body) = s.get("/_matrix/client/v3/sync?timeout=0", Some(&bob)).await;
    assert_eq!(status, 200);
    assert!(
        body["rooms"]["invite"]
            .as_object()
            .is_none_or(|r| r.is_empty()),
        "{body}"
    );

    let (status, answer) = put(&invite, &id, "11").await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        answer["event"]["signatures"][s.name()].is_object(),
        "{answer}"
    );
    assert!(
        answer["event"]["signatures"][&remote.name].is_object(),
        "{answer}"
    );
    let shown = s.synced_room(&bob, "invite", &room, None).await;
    assert_eq!(
        stripped_of(&shown, "m.room.name").map(|e| e["content"]["name"].clone()),
        Some(json!("Far away")),
        "{shown}"
    );
    // The inviting server has no make_leave: bob declines here alone.
    let since = s.next_batch(&bob).await;
    let (status, body) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/leave"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    s.synced_room(&bob, "leave", &room, Some(&since)).await;
}

/// `/profile` of a user of another server asks that server (`/query/profile`).
#[tokio::test]
async fn remote_profiles_are_asked_of_their_server() {
    let hs1 = start_federated(|_| {}).await;
    let hs2 = start_federated(|_| {}).await;
    let (alice, _) = hs1.register("alice", "correct horse battery").await;
    let (bob, _) = hs2.register("bob", "correct horse battery").await;
    let alice_id = format!("@alice:{}", hs1.name());
    let (status, body) = hs1
        .put(
            &format!("/_matrix/client/v3/profile/{alice_id}/displayname"),
            Some(&alice),
            json!({"displayname": "Alice of hs1"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = hs2
        .get(
            &format!("/_matrix/client/v3/profile/{alice_id}"),
            Some(&bob),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["displayname"], "Alice of hs1");
    let (status, body) = hs2
        .get(
            &format!("/_matrix/client/v3/profile/{alice_id}/displayname"),
            Some(&bob),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["displayname"], "Alice of hs1");
    let nobody = format!("@nobody:{}", hs1.name());
    let answer = hs2
        .get(&format!("/_matrix/client/v3/profile/{nobody}"), Some(&bob))
        .await;
    assert_error(&answer, 404, "M_NOT_FOUND");
}

/// bob on hs2 knocks on alice's room on hs1 (`make_knock`/`send_knock`); his client sees
/// the knock with the room's state; alice lets him in by inviting him; carol's knock is
/// rescinded through hs1.
#[tokio::test]
async fn knocks_across_servers() {
    let hs1 = start_federated(|_| {}).await;
    let hs2 = start_federated(|_| {}).await;
    let (alice, _) = hs1.register("alice", "correct horse battery").await;
    let (bob, _) = hs2.register("bob", "correct horse battery").await;
    let (carol, _) = hs2.register("carol", "correct horse battery").await;
    let bob_id = format!("@bob:{}", hs2.name());
    let carol_id = format!("@carol:{}", hs2.name());
    let room = hs1
        .create_room(
            &alice,
            json!({"preset": "private_chat", "room_version": "11", "name": "Members only",
                   "initial_state": [{"type": "m.room.join_rules", "state_key": "",
                                      "content": {"join_rule": "knock"}}]}),
        )
        .await;
    let since = hs2.next_batch(&bob).await;
    let (status, body) = hs2
        .post(
            &format!("/_matrix/client/v3/knock/{room}?via={}", hs1.name()),
            Some(&bob),
            json!({"reason": "let me in"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["room_id"], room.as_str());
    hs1.waits_for_membership(&alice, &room, &bob_id, "knock")
        .await;
    let knocked = hs2.synced_room(&bob, "knock", &room, Some(&since)).await;
    let shown = knocked["knock_state"]["events"].to_string();
    assert!(shown.contains("Members only"), "{knocked}");

    let (status, body) = hs1
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/invite"),
            Some(&alice),
            json!({"user_id": bob_id}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    hs2.synced_room(&bob, "invite", &room, None).await;
    let (status, body) = hs2
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    hs1.waits_for_membership(&alice, &room, &bob_id, "join")
        .await;

    // A knock on a room that does not allow it is refused by the room.
    let closed = hs1
        .create_room(
            &alice,
            json!({"preset": "private_chat", "room_version": "11"}),
        )
        .await;
    let (status, body) = hs2
        .post(
            &format!("/_matrix/client/v3/knock/{closed}?via={}", hs1.name()),
            Some(&carol),
            json!({}),
        )
        .await;
    assert_eq!(status, 403, "{body}");

    // carol knocks and thinks better of it.
    let (status, body) = hs2
        .post(
            &format!("/_matrix/client/v3/knock/{room}?via={}", hs1.name()),
            Some(&carol),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    hs1.waits_for_membership(&alice, &room, &carol_id, "knock")
        .await;
    let (status, body) = hs2
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/leave"),
            Some(&carol),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    hs1.waits_for_membership(&alice, &room, &carol_id, "leave")
        .await;
}
