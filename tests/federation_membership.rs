//! Membership across two axon servers beyond plain joins: a restricted room (v8+) joined
//! from hs2 through hs1, whose user authorises it (and refused to a user in no allowed
//! room); kicks, bans and unbans of hs2's users by hs1's, seen on both servers.

mod common;
#[path = "common/federation.rs"]
mod federation;

use federation::start_federated;
use serde_json::json;

#[tokio::test]
async fn restricted_room_joined_through_a_remote_authoriser() {
    let hs1 = start_federated(|_| {}).await;
    let hs2 = start_federated(|_| {}).await;
    let (alice, _) = hs1.register("alice", "correct horse battery").await;
    let (bob, _) = hs2.register("bob", "correct horse battery").await;
    let (carol, _) = hs2.register("carol", "correct horse battery").await;
    let alice_id = format!("@alice:{}", hs1.name());
    let bob_id = format!("@bob:{}", hs2.name());
    let space = hs1
        .create_room(
            &alice,
            json!({"preset": "public_chat", "room_version": "11", "name": "Space",
                   "creation_content": {"type": "m.space"}}),
        )
        .await;
    let room = hs1
        .create_room(
            &alice,
            json!({"preset": "private_chat", "room_version": "11", "name": "Members",
                   "initial_state": [{"type": "m.room.join_rules", "state_key": "",
                       "content": {"join_rule": "restricted",
                                   "allow": [{"type": "m.room_membership", "room_id": space}]}}]}),
        )
        .await;
    let via = hs1.name();
    let (status, body) = hs2
        .post(
            &format!("/_matrix/client/v3/join/{space}?via={via}"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    hs1.waits_for_membership(&alice, &space, &bob_id, "join")
        .await;

    let (status, body) = hs2
        .post(
            &format!("/_matrix/client/v3/join/{room}?via={via}"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, member) = hs1
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{bob_id}"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200, "{member}");
    assert_eq!(member["membership"], "join");
    assert_eq!(
        member["join_authorised_via_users_server"],
        alice_id.as_str()
    );

    // carol is in no allowed room: the room refuses her.
    let (status, body) = hs2
        .post(
            &format!("/_matrix/client/v3/join/{room}?via={via}"),
            Some(&carol),
            json!({}),
        )
        .await;
    assert_eq!(status, 403, "{body}");
}

#[tokio::test]
async fn kicks_bans_and_unbans_of_remote_users() {
    let hs1 = start_federated(|_| {}).await;
    let hs2 = start_federated(|_| {}).await;
    let (alice, _) = hs1.register("alice", "correct horse battery").await;
    let (bob, _) = hs2.register("bob", "correct horse battery").await;
    let (carol, _) = hs2.register("carol", "correct horse battery").await;
    let bob_id = format!("@bob:{}", hs2.name());
    let room = hs1
        .create_room(
            &alice,
            json!({"preset": "public_chat", "room_version": "11"}),
        )
        .await;
    let join = format!("/_matrix/client/v3/join/{room}?via={}", hs1.name());
    for token in [&bob, &carol] {
        let (status, body) = hs2.post(&join, Some(token), json!({})).await;
        assert_eq!(status, 200, "{body}");
    }
    hs1.waits_for_membership(&alice, &room, &bob_id, "join")
        .await;

    // A kick: hs2 hears of it (carol is still there), bob can join again.
    let (status, body) = hs1
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/kick"),
            Some(&alice),
            json!({"user_id": bob_id, "reason": "cool off"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    hs2.waits_for_membership(&carol, &room, &bob_id, "leave")
        .await;
    let (status, body) = hs2.post(&join, Some(&bob), json!({})).await;
    assert_eq!(status, 200, "{body}");
    hs1.waits_for_membership(&alice, &room, &bob_id, "join")
        .await;

    // A ban: seen on hs2, and bob's join is refused there and by the room.
    let (status, body) = hs1
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/ban"),
            Some(&alice),
            json!({"user_id": bob_id}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    hs2.waits_for_membership(&carol, &room, &bob_id, "ban")
        .await;
    let (status, body) = hs2.post(&join, Some(&bob), json!({})).await;
    assert_eq!(status, 403, "{body}");

    // Unbanned, bob may come back.
    let (status, body) = hs1
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/unban"),
            Some(&alice),
            json!({"user_id": bob_id}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    hs2.waits_for_membership(&carol, &room, &bob_id, "leave")
        .await;
    let (status, body) = hs2.post(&join, Some(&bob), json!({})).await;
    assert_eq!(status, 200, "{body}");
    hs1.waits_for_membership(&alice, &room, &bob_id, "join")
        .await;
}
