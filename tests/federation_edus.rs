//! What rides beside room events between two axon servers: typing notices, read
//! receipts (private ones stay home), presence, device keys queried and claimed across
//! servers, device list updates (a new device, a deleted one, cross-signing keys),
//! to-device messages, and OpenID tokens another party checks over federation.

mod common;
#[path = "common/federation.rs"]
mod federation;

use std::time::Duration;

use common::{TestServer, assert_error};
use federation::start_federated;
use serde_json::{Value, json};

/// Syncs from `since` until `found` picks something out of a sync response (20 s at
/// most); `since` moves on with each sync.
async fn sync_until(
    s: &TestServer,
    token: &str,
    since: &mut String,
    found: impl Fn(&Value) -> Option<Value>,
) -> Value {
    for _ in 0..200 {
        let (status, body) = s
            .get(
                &format!("/_matrix/client/v3/sync?timeout=100&since={since}"),
                Some(token),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        *since = body["next_batch"].as_str().unwrap().to_owned();
        if let Some(hit) = found(&body) {
            return hit;
        }
    }
    panic!("never synced what was expected");
}

fn ephemeral(body: &Value, room: &str, kind: &str) -> Option<Value> {
    body["rooms"]["join"][room]["ephemeral"]["events"]
        .as_array()?
        .iter()
        .find(|e| e["type"] == kind)
        .cloned()
}

/// alice on hs1 and bob on hs2, both in alice's room.
async fn two_servers() -> (TestServer, TestServer, String, String, String) {
    let hs1 = start_federated(|_| {}).await;
    let hs2 = start_federated(|_| {}).await;
    let (alice, _) = hs1.register("alice", "correct horse battery").await;
    let (bob, _) = hs2.register("bob", "correct horse battery").await;
    let room = hs1
        .create_room(&alice, json!({"preset": "public_chat"}))
        .await;
    let (status, body) = hs2.join_via(&bob, &room, &hs1.name()).await;
    assert_eq!(status, 200, "{body}");
    hs1.waits_for_membership(&alice, &room, &format!("@bob:{}", hs2.name()), "join")
        .await;
    (hs1, hs2, alice, bob, room)
}

#[tokio::test]
async fn typing_receipts_and_presence_reach_the_other_server() {
    let (hs1, hs2, alice, bob, room) = two_servers().await;
    let alice_id = format!("@alice:{}", hs1.name());
    let first = hs1
        .send_message(
            &alice,
            &room,
            "m1",
            json!({"msgtype": "m.text", "body": "one"}),
        )
        .await;
    assert_eq!(hs2.arrives(&bob, &room, "one").await, 1);
    let mut since = hs2.next_batch(&bob).await;

    // Typing starts, then stops.
    let typing_path = format!("/_matrix/client/v3/rooms/{room}/typing/{alice_id}");
    let (status, body) = hs1
        .put(
            &typing_path,
            Some(&alice),
            json!({"typing": true, "timeout": 30000}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let typing = sync_until(&hs2, &bob, &mut since, |b| {
        ephemeral(b, &room, "m.typing").filter(|t| t["content"]["user_ids"] == json!([alice_id]))
    })
    .await;
    assert_eq!(typing["content"]["user_ids"], json!([alice_id]));
    let (status, body) = hs1
        .put(&typing_path, Some(&alice), json!({"typing": false}))
        .await;
    assert_eq!(status, 200, "{body}");
    sync_until(&hs2, &bob, &mut since, |b| {
        ephemeral(b, &room, "m.typing").filter(|t| t["content"]["user_ids"] == json!([]))
    })
    .await;

    // Typing that runs out on hs1 ends on hs2 too (hs1 tells it).
    let (status, body) = hs1
        .put(
            &typing_path,
            Some(&alice),
            json!({"typing": true, "timeout": 1000}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    sync_until(&hs2, &bob, &mut since, |b| {
        ephemeral(b, &room, "m.typing").filter(|t| t["content"]["user_ids"] == json!([alice_id]))
    })
    .await;
    // (sync_until gives up after 20 s, before hs2's own 30 s expiry would end it.)
    sync_until(&hs2, &bob, &mut since, |b| {
        ephemeral(b, &room, "m.typing").filter(|t| t["content"]["user_ids"] == json!([]))
    })
    .await;

    // A public receipt arrives; a private one on a later message never leaves hs1 (the
    // typing notice after it is the marker that everything queued before has arrived).
    let second = hs1
        .send_message(
            &alice,
            &room,
            "m2",
            json!({"msgtype": "m.text", "body": "two"}),
        )
        .await;
    assert_eq!(hs2.arrives(&bob, &room, "two").await, 1);
    let (status, body) = hs1
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read/{first}"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let receipt = sync_until(&hs2, &bob, &mut since, |b| ephemeral(b, &room, "m.receipt")).await;
    assert!(
        receipt["content"][&first]["m.read"][&alice_id]["ts"].is_u64(),
        "{receipt}"
    );
    let (status, body) = hs1
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/receipt/m.read.private/{second}"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    hs1.put(
        &typing_path,
        Some(&alice),
        json!({"typing": true, "timeout": 30000}),
    )
    .await;
    sync_until(&hs2, &bob, &mut since, |b| {
        ephemeral(b, &room, "m.typing").filter(|t| t["content"]["user_ids"] == json!([alice_id]))
    })
    .await;
    let (status, full) = hs2
        .get("/_matrix/client/v3/sync?timeout=0", Some(&bob))
        .await;
    assert_eq!(status, 200, "{full}");
    let receipts = ephemeral(&full, &room, "m.receipt").unwrap_or(json!({}));
    assert!(
        receipts["content"][&second].is_null(),
        "a private receipt reached hs2: {receipts}"
    );

    // Presence.
    let (status, body) = hs1
        .put(
            &format!("/_matrix/client/v3/presence/{alice_id}/status"),
            Some(&alice),
            json!({"presence": "online", "status_msg": "in the lab"}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let presence = sync_until(&hs2, &bob, &mut since, |b| {
        b["presence"]["events"]
            .as_array()?
            .iter()
            .find(|e| {
                e["sender"] == alice_id.as_str() && e["content"]["status_msg"] == "in the lab"
            })
            .cloned()
    })
    .await;
    assert_eq!(presence["content"]["presence"], "online", "{presence}");
    let (status, body) = hs2
        .get(
            &format!("/_matrix/client/v3/presence/{alice_id}/status"),
            Some(&bob),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["status_msg"], "in the lab", "{body}");
}

fn device_keys(user: &str, device: &str) -> Value {
    json!({
        "user_id": user, "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{device}"): format!("curve-{device}"),
            format!("ed25519:{device}"): format!("ed-{device}"),
        },
        "signatures": {},
    })
}

async fn upload_keys(s: &TestServer, token: &str, user: &str, device: &str, otks: usize) {
    let mut one_time = serde_json::Map::new();
    for i in 0..otks {
        one_time.insert(
            format!("signed_curve25519:{device}{i}"),
            json!({"key": format!("otk-{device}-{i}"), "signatures": {}}),
        );
    }
    let (status, body) = s
        .post(
            "/_matrix/client/v3/keys/upload",
            Some(token),
            json!({"device_keys": device_keys(user, device), "one_time_keys": one_time}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

async fn query(s: &TestServer, token: &str, user: &str) -> Value {
    let (status, body) = s
        .post(
            "/_matrix/client/v3/keys/query",
            Some(token),
            json!({"device_keys": {user: []}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

fn no_failures(answer: &Value) -> bool {
    answer["failures"].as_object().is_none_or(|m| m.is_empty())
}

fn device_ids(answer: &Value, user: &str) -> Vec<String> {
    let mut ids: Vec<String> = answer["device_keys"][user]
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

#[tokio::test]
async fn keys_device_lists_and_to_device_across_servers() {
    let (hs1, hs2, alice, bob, _room) = two_servers().await;
    let bob_id = format!("@bob:{}", hs2.name());
    let alice_id = format!("@alice:{}", hs1.name());
    let bob_first = device_of(&hs2, &bob).await;
    upload_keys(&hs2, &bob, &bob_id, &bob_first, 2).await;

    // alice's server fetches bob's devices from hs2.
    let answer = query(&hs1, &alice, &bob_id).await;
    assert!(no_failures(&answer), "{answer}");
    assert_eq!(
        device_ids(&answer, &bob_id),
        vec![bob_first.clone()],
        "{answer}"
    );
    assert_eq!(
        answer["device_keys"][&bob_id][&bob_first]["keys"][format!("ed25519:{bob_first}")],
        format!("ed-{bob_first}")
    );

    // Claims: the two one-time keys, each once.
    let mut claimed = Vec::new();
    for _ in 0..2 {
        let (status, body) = hs1
            .post(
                "/_matrix/client/v3/keys/claim",
                Some(&alice),
                json!({"one_time_keys": {&bob_id: {&bob_first: "signed_curve25519"}}}),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert!(no_failures(&body), "{body}");
        let keys = body["one_time_keys"][&bob_id][&bob_first]
            .as_object()
            .cloned()
            .unwrap_or_else(|| panic!("no key claimed: {body}"));
        claimed.extend(keys.keys().cloned());
    }
    claimed.sort();
    assert_eq!(
        claimed,
        vec![
            format!("signed_curve25519:{bob_first}0"),
            format!("signed_curve25519:{bob_first}1")
        ]
    );

    // To-device: to bob's device, to all his devices, and to a device he does not have.
    let mut bob_since = hs2.next_batch(&bob).await;
    let (status, body) = hs1
        .put(
            "/_matrix/client/v3/sendToDevice/m.test/t1",
            Some(&alice),
            json!({"messages": {&bob_id: {&bob_first: {"n": 1}, "NOSUCHDEVICE": {"n": 2}}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = hs1
        .put(
            "/_matrix/client/v3/sendToDevice/m.test/t2",
            Some(&alice),
            json!({"messages": {&bob_id: {"*": {"n": 3}}}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut got = Vec::new();
    for _ in 0..100 {
        let (status, body) = hs2
            .get(
                &format!("/_matrix/client/v3/sync?timeout=100&since={bob_since}"),
                Some(&bob),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        bob_since = body["next_batch"].as_str().unwrap().to_owned();
        for e in body["to_device"]["events"]
            .as_array()
            .cloned()
            .unwrap_or_default()
        {
            assert_eq!(e["sender"], alice_id.as_str(), "{e}");
            assert_eq!(e["type"], "m.test", "{e}");
            got.push(e["content"]["n"].as_i64().unwrap());
        }
        if got.len() >= 2 {
            break;
        }
    }
    assert_eq!(got, vec![1, 3], "bob's first device got these");
    // The same transaction again is not delivered twice.
    let (status, _) = hs1
        .put(
            "/_matrix/client/v3/sendToDevice/m.test/t2",
            Some(&alice),
            json!({"messages": {&bob_id: {"*": {"n": 3}}}}),
        )
        .await;
    assert_eq!(status, 200);

    // bob's second device, with keys: alice's sync lists bob as changed, and her next
    // query shows both devices.
    let mut alice_since = hs1.next_batch(&alice).await;
    let (bob_device, second) = hs2.login_ok("bob", "correct horse battery").await;
    upload_keys(&hs2, &bob_device, &bob_id, &second, 1).await;
    sync_until(&hs1, &alice, &mut alice_since, |b| {
        b["device_lists"]["changed"]
            .as_array()?
            .iter()
            .find(|u| *u == bob_id.as_str())
            .cloned()
    })
    .await;
    let mut expected = vec![bob_first.clone(), second.clone()];
    expected.sort();
    assert_eq!(
        device_ids(&query(&hs1, &alice, &bob_id).await, &bob_id),
        expected
    );

    // The second device goes: alice hears, and it is gone from her query.
    let (status, body) = hs2
        .post("/_matrix/client/v3/logout", Some(&bob_device), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    let mut gone = false;
    for _ in 0..100 {
        if device_ids(&query(&hs1, &alice, &bob_id).await, &bob_id) == vec![bob_first.clone()] {
            gone = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(gone, "bob's deleted device still shows on hs1");

    // Cross-signing keys reach alice's query too.
    let master =
        json!({"user_id": bob_id, "usage": ["master"], "keys": {"ed25519:bobmaster": "bobmaster"}});
    let (status, body) = hs2
        .post(
            "/_matrix/client/v3/keys/device_signing/upload",
            Some(&bob),
            json!({"master_key": master, "auth": {"type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": "bob"}, "password": "correct horse battery"}}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let mut seen = false;
    for _ in 0..100 {
        if query(&hs1, &alice, &bob_id).await["master_keys"][&bob_id]["keys"]["ed25519:bobmaster"]
            == "bobmaster"
        {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "bob's master key never showed on hs1");

    // A server that does not exist is a failure, not an error.
    let (status, body) = hs1
        .post(
            "/_matrix/client/v3/keys/query",
            Some(&alice),
            json!({"device_keys": {"@x:nowhere.invalid": []}, "timeout": 3000}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["failures"]["nowhere.invalid"].is_object(), "{body}");
    let (status, body) = hs1
        .post(
            "/_matrix/client/v3/keys/claim",
            Some(&alice),
            json!({"one_time_keys": {"@x:nowhere.invalid": {"D": "signed_curve25519"}}, "timeout": 3000}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert!(body["failures"]["nowhere.invalid"].is_object(), "{body}");
}

async fn device_of(s: &TestServer, token: &str) -> String {
    let (status, who) = s
        .get("/_matrix/client/v3/account/whoami", Some(token))
        .await;
    assert_eq!(status, 200, "{who}");
    who["device_id"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn openid_tokens_are_checked_over_federation() {
    let hs1 = start_federated(|_| {}).await;
    let (alice, _) = hs1.register("alice", "correct horse battery").await;
    let alice_id = format!("@alice:{}", hs1.name());
    let (status, token) = hs1
        .post(
            &format!("/_matrix/client/v3/user/{alice_id}/openid/request_token"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{token}");
    assert_eq!(token["token_type"], "Bearer");
    assert_eq!(token["matrix_server_name"], hs1.name());
    assert_eq!(token["expires_in"], 3600);
    let access = token["access_token"].as_str().unwrap();

    let client = federation::TestCa::get().client();
    let ask = |t: String| {
        let client = client.clone();
        let url = format!(
            "{}/_matrix/federation/v1/openid/userinfo?access_token={t}",
            hs1.federation_url()
        );
        async move {
            let r = client.get(url).send().await.unwrap();
            (r.status().as_u16(), r.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = ask(access.to_owned()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sub"], alice_id.as_str());
    let (status, body) = ask("not-a-token".to_owned()).await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["errcode"], "M_UNKNOWN_TOKEN", "{body}");

    // The client listener answers too (widgets ask there); no token is 401.
    let (status, body) = hs1
        .get(
            &format!("/_matrix/federation/v1/openid/userinfo?access_token={access}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["sub"], alice_id.as_str());
    let result = hs1
        .get("/_matrix/federation/v1/openid/userinfo", None)
        .await;
    assert_error(&result, 401, "M_MISSING_TOKEN");

    // Only for oneself.
    let (bob, _) = hs1.register("bob", "correct horse battery").await;
    let result = hs1
        .post(
            &format!("/_matrix/client/v3/user/{alice_id}/openid/request_token"),
            Some(&bob),
            json!({}),
        )
        .await;
    assert_error(&result, 403, "M_FORBIDDEN");
}
