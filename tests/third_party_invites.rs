//! Inviting by email address: an address bound at the identity server invites its
//! account; an unbound one leaves `m.room.third_party_invite` in the room, and when the
//! identity server binds the address (its `/3pid/onbind` call) the invitee is invited and
//! can join, even after the inviter left. Refused: an invite signed by a key the room does
//! not know, one whose key the identity server revoked, and an inviter without the power
//! to invite (before the identity server is asked).

mod common;
#[path = "common/federation.rs"]
mod federation;
#[path = "common/identity.rs"]
mod identity;

use common::{TestServer, assert_error};
use federation::TestCa;
use identity::{ACCESS_TOKEN, FakeIdentityServer};
use serde_json::{Value, json};

async fn start() -> (TestServer, FakeIdentityServer) {
    let ids = FakeIdentityServer::start().await;
    let s = TestServer::start_with(|env| {
        env.insert(
            "AXON_FEDERATION__TLS_CA_FILE".into(),
            TestCa::get().ca_file.display().to_string(),
        );
        env.insert(
            "AXON_OUTBOUND__ALLOW_RANGES".into(),
            "127.0.0.0/8,::1".into(),
        );
    })
    .await;
    (s, ids)
}

async fn invite_by_email(
    s: &TestServer,
    ids: &FakeIdentityServer,
    token: &str,
    room: &str,
    address: &str,
) -> (reqwest::StatusCode, Value) {
    s.post(
        &format!("/_matrix/client/v3/rooms/{room}/invite"),
        Some(token),
        json!({"id_server": ids.name, "id_access_token": ACCESS_TOKEN,
               "medium": "email", "address": address}),
    )
    .await
}

async fn member_state(
    s: &TestServer,
    token: &str,
    room: &str,
    user: &str,
) -> (reqwest::StatusCode, Value) {
    s.get(
        &format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{user}"),
        Some(token),
    )
    .await
}

#[tokio::test]
async fn a_bound_address_invites_its_account() {
    let (s, ids) = start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let (bob, _) = s.register("bob", "pw").await;
    ids.bind_directly("email", "bob@example.org", "@bob:localhost");
    let room = s.create_room(&alice, json!({})).await;
    let (status, body) = invite_by_email(&s, &ids, &alice, &room, "bob@example.org").await;
    assert_eq!(status, 200, "{body}");
    let (_, member) = member_state(&s, &alice, &room, "@bob:localhost").await;
    assert_eq!(member["membership"], "invite", "{member}");
    assert_eq!(ids.state.lock().unwrap().store_invite_calls, 0);
    // createRoom's invite_3pid does the same.
    let (status, body) = s
        .post(
            "/_matrix/client/v3/createRoom",
            Some(&alice),
            json!({"invite_3pid": [{"id_server": ids.name, "id_access_token": ACCESS_TOKEN,
                                    "medium": "email", "address": "bob@example.org"}]}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let second = body["room_id"].as_str().unwrap();
    let (_, member) = member_state(&s, &alice, second, "@bob:localhost").await;
    assert_eq!(member["membership"], "invite", "{member}");
    s.join(&bob, second).await;
}

#[tokio::test]
async fn an_unbound_address_is_invited_when_it_is_bound_even_after_the_inviter_left() {
    let (s, ids) = start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let (carol, _) = s.register("carol", "pw").await;
    let (bob, _) = s.register("bob", "pw").await;
    let room = s
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    s.join(&carol, &room).await;
    let (status, body) = invite_by_email(&s, &ids, &alice, &room, "bob@example.org").await;
    assert_eq!(status, 200, "{body}");
    let token = ids.state.lock().unwrap().invites[0].4.clone();
    let (status, invite) = s
        .get(
            &format!("/_matrix/client/v3/rooms/{room}/state/m.room.third_party_invite/{token}"),
            Some(&alice),
        )
        .await;
    assert_eq!(status, 200, "{invite}");
    assert_eq!(invite["display_name"], "B...@e...");
    assert_eq!(
        invite["public_keys"][0]["public_key"],
        identity::public_key(&ids.key)
    );
    // The inviter leaves; the invite still holds (the auth rules check its signature,
    // not the inviter's presence).
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/leave"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let (status, answer) = ids
        .bind_and_notify(
            &s.base,
            "email",
            "bob@example.org",
            "@bob:localhost",
            &ids.key,
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    let (_, member) = member_state(&s, &carol, &room, "@bob:localhost").await;
    assert_eq!(member["membership"], "invite", "{member}");
    assert_eq!(member["third_party_invite"]["display_name"], "B...@e...");
    s.join(&bob, &room).await;
    let (_, member) = member_state(&s, &carol, &room, "@bob:localhost").await;
    assert_eq!(member["membership"], "join", "{member}");
}

#[tokio::test]
async fn forged_or_revoked_invites_invite_no_one() {
    let (s, ids) = start().await;
    let (alice, _) = s.register("alice", "pw").await;
    let (bob, _) = s.register("bob", "pw").await;
    let (eve, _) = s.register("eve", "pw").await;

    // Signed by a key the room does not know: the callback is refused and no one is
    // invited.
    let room = s.create_room(&alice, json!({})).await;
    let (status, _) = invite_by_email(&s, &ids, &alice, &room, "bob@example.org").await;
    assert_eq!(status, 200);
    let stranger = FakeIdentityServer::stranger_key();
    let (status, answer) = ids
        .bind_and_notify(
            &s.base,
            "email",
            "bob@example.org",
            "@bob:localhost",
            &stranger,
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    let (status, _) = member_state(&s, &alice, &room, "@bob:localhost").await;
    assert_eq!(status, 404);
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/join"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_eq!(status, 403);

    // A key the identity server no longer vouches for.
    let room2 = s.create_room(&alice, json!({})).await;
    let (status, _) = invite_by_email(&s, &ids, &alice, &room2, "eve@example.org").await;
    assert_eq!(status, 200);
    ids.revoke_key();
    let (status, answer) = ids
        .bind_and_notify(
            &s.base,
            "email",
            "eve@example.org",
            "@eve:localhost",
            &ids.key,
        )
        .await;
    assert_eq!(status, 403, "{answer}");
    let (status, _) = member_state(&s, &alice, &room2, "@eve:localhost").await;
    assert_eq!(status, 404);
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room2}/join"),
            Some(&eve),
            json!({}),
        )
        .await;
    assert_eq!(status, 403);

    // Someone without the power to invite is refused before the identity server hears.
    let calls = ids.state.lock().unwrap().store_invite_calls;
    let room3 = s
        .create_room(
            &alice,
            json!({"preset": "public_chat", "power_level_content_override": {"invite": 50}}),
        )
        .await;
    s.join(&eve, &room3).await;
    let r = invite_by_email(&s, &ids, &eve, &room3, "zed@example.org").await;
    assert_error(&r, 403, "M_FORBIDDEN");
    assert_eq!(ids.state.lock().unwrap().store_invite_calls, calls);
    // Not in the room at all.
    let r = invite_by_email(&s, &ids, &bob, &room3, "zed@example.org").await;
    assert_error(&r, 403, "M_FORBIDDEN");
    // Another medium.
    let r = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room3}/invite"),
            Some(&alice),
            json!({"id_server": ids.name, "id_access_token": ACCESS_TOKEN,
                   "medium": "msisdn", "address": "447700900000"}),
        )
        .await;
    assert_error(&r, 400, "M_THREEPID_MEDIUM_NOT_SUPPORTED");
}
