//! What real clients read that the spec leaves to the server (issue 17): fields Synapse
//! fills that matrix-js-sdk and Element rely on, and endpoints Element asks for first.

mod common;

use common::{TestServer, assert_error};
use serde_json::{Value, json};

#[tokio::test]
async fn redactions_carry_redacts_at_the_top_level_in_every_room_version() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    for version in ["10", "11", "12"] {
        let (status, res) = s
            .post(
                "/_matrix/client/v3/createRoom",
                Some(&alice),
                json!({ "room_version": version }),
            )
            .await;
        assert_eq!(status, 200, "{res}");
        let room = res["room_id"].as_str().unwrap().to_owned();
        let target = s
            .send_message(
                &alice,
                &room,
                &format!("m{version}"),
                json!({"msgtype": "m.text", "body": "oops"}),
            )
            .await;
        let (status, res) = s
            .put(
                &format!("/_matrix/client/v3/rooms/{room}/redact/{target}/r{version}"),
                Some(&alice),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "v{version} {room} {target}: {res}");
        let (status, res) = s
            .get(
                &format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=5"),
                Some(&alice),
            )
            .await;
        assert_eq!(status, 200, "{res}");
        let redaction: &Value = res["chunk"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["type"] == "m.room.redaction")
            .unwrap_or_else(|| panic!("v{version}: no redaction in {res}"));
        assert_eq!(
            redaction["redacts"],
            target.as_str(),
            "v{version}: {redaction}"
        );
    }
}

#[tokio::test]
async fn third_party_protocols_without_bridges() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (status, res) = s
        .get("/_matrix/client/v3/thirdparty/protocols", Some(&alice))
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res, json!({}));
    let r = s
        .get("/_matrix/client/v3/thirdparty/protocol/irc", Some(&alice))
        .await;
    assert_error(&r, 404, "M_NOT_FOUND");
    let r = s
        .get(
            "/_matrix/client/v3/thirdparty/user/irc?nick=x",
            Some(&alice),
        )
        .await;
    assert_error(&r, 404, "M_NOT_FOUND");
    let (status, res) = s
        .get(
            "/_matrix/client/v3/thirdparty/location?alias=%23a:localhost",
            Some(&alice),
        )
        .await;
    assert_eq!((status.as_u16(), res), (200, json!([])));
    let (status, res) = s
        .get(
            "/_matrix/client/v3/thirdparty/user?userid=@alice:localhost",
            Some(&alice),
        )
        .await;
    assert_eq!((status.as_u16(), res), (200, json!([])));
    let r = s.get("/_matrix/client/v3/thirdparty/protocols", None).await;
    assert_error(&r, 401, "M_MISSING_TOKEN");
}
