//! Guests across servers: a guest of hs2 in a room of hs1 leaves when hs1's admin stops
//! letting guests in (the change arrives over federation; hs2 makes its guest leave, and
//! the leave reaches hs1).

mod common;
#[path = "common/federation.rs"]
mod federation;

use federation::start_federated;
use serde_json::json;

#[tokio::test]
async fn guests_leave_when_another_server_revokes_guest_access() {
    let hs1 = start_federated(|_| {}).await;
    let hs2 = start_federated(|env| {
        env.insert("AXON_REGISTRATION__ALLOW_GUESTS".into(), "true".into());
    })
    .await;
    let (alice, _) = hs1.register("alice", "pw").await;
    let room = hs1
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    let access_path = format!("/_matrix/client/v3/rooms/{room}/state/m.room.guest_access/");
    let set_access =
        |access: &'static str| hs1.put(&access_path, Some(&alice), json!({"guest_access": access}));
    assert_eq!(set_access("can_join").await.0, 200);
    let (status, body) = hs2
        .post("/_matrix/client/v3/register?kind=guest", None, json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let guest = body["access_token"].as_str().unwrap().to_owned();
    let guest_id = body["user_id"].as_str().unwrap().to_owned();
    let (status, body) = hs2.join_via(&guest, &room, &hs1.name()).await;
    assert_eq!(status, 200, "{body}");
    hs1.waits_for_membership(&alice, &room, &guest_id, "join")
        .await;

    assert_eq!(set_access("forbidden").await.0, 200);
    hs1.waits_for_membership(&alice, &room, &guest_id, "leave")
        .await;
    hs2.waits_for_membership(&guest, &room, &guest_id, "leave")
        .await;
}
