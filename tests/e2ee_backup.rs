//! Key backup (`/room_keys`) and dehydrated devices (MSC3814) over HTTP, with their
//! error paths.

mod common;

use common::{TestServer, assert_error};
use serde_json::{Value, json};

const V: &str = "/_matrix/client/v3/room_keys/version";
const K: &str = "/_matrix/client/v3/room_keys/keys";
const ALG: &str = "m.megolm_backup.v1.curve25519-aes-sha2";

fn key(index: i64, forwards: i64, verified: bool, tag: &str) -> Value {
    json!({
        "first_message_index": index,
        "forwarded_count": forwards,
        "is_verified": verified,
        "session_data": { "ephemeral": tag, "ciphertext": tag, "mac": tag },
    })
}

#[tokio::test]
async fn key_backup_versions_keys_and_replacement() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let t = Some(alice.as_str());

    assert_error(&s.get(V, t).await, 404, "M_NOT_FOUND");
    let (status, res) = s
        .post(
            V,
            t,
            json!({ "algorithm": ALG, "auth_data": { "public_key": "pk1" } }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["version"], "1");
    let (status, res) = s.get(V, t).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(
        (
            res["version"].as_str(),
            res["count"].as_i64(),
            res["algorithm"].as_str()
        ),
        (Some("1"), Some(0), Some(ALG)),
        "{res}"
    );
    let etag0 = res["etag"].as_str().unwrap().to_owned();
    assert_eq!(res["auth_data"]["public_key"], "pk1");

    // Keys for two rooms.
    let (status, res) = s
        .put(
            &format!("{K}?version=1"),
            t,
            json!({ "rooms": {
                "!a:localhost": { "sessions": { "s1": key(5, 1, false, "a1") } },
                "!b:localhost": { "sessions": { "s2": key(0, 0, false, "b2") } },
            }}),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["count"], 2, "{res}");
    assert_ne!(res["etag"].as_str().unwrap(), etag0);

    // Replacement: worse keys are ignored; better ones replace.
    let one = format!("{K}/!a:localhost/s1?version=1");
    for (worse, why) in [
        (key(6, 0, false, "x"), "later index"),
        (key(5, 2, false, "x"), "more forwards"),
    ] {
        let (status, _) = s.put(&one, t, worse).await;
        assert_eq!(status, 200);
        let (_, got) = s.get(&one, t).await;
        assert_eq!(got["session_data"]["ciphertext"], "a1", "{why}: {got}");
    }
    let (status, _) = s.put(&one, t, key(3, 1, false, "a-earlier")).await;
    assert_eq!(status, 200);
    let (_, got) = s.get(&one, t).await;
    assert_eq!(got["session_data"]["ciphertext"], "a-earlier", "{got}");
    let (status, _) = s.put(&one, t, key(9, 9, true, "a-verified")).await;
    assert_eq!(status, 200);
    let (_, got) = s.get(&one, t).await;
    assert_eq!(got["session_data"]["ciphertext"], "a-verified", "{got}");
    assert_eq!(got["is_verified"], true);
    let (_, got) = s.put(&one, t, key(0, 0, false, "unverified")).await;
    assert_eq!(got["count"], 2, "{got}");
    let (_, got) = s.get(&one, t).await;
    assert_eq!(got["session_data"]["ciphertext"], "a-verified", "{got}");

    // Reading: all, a room, a missing session, an empty room.
    let (_, all) = s.get(&format!("{K}?version=1"), t).await;
    assert_eq!(
        all["rooms"]["!b:localhost"]["sessions"]["s2"]["session_data"]["ciphertext"], "b2",
        "{all}"
    );
    let (_, room) = s.get(&format!("{K}/!b:localhost?version=1"), t).await;
    assert!(room["sessions"]["s2"].is_object(), "{room}");
    assert_error(
        &s.get(&format!("{K}/!b:localhost/nope?version=1"), t).await,
        404,
        "M_NOT_FOUND",
    );
    let (status, empty) = s.get(&format!("{K}/!zzz:localhost?version=1"), t).await;
    assert_eq!(
        (status.as_u16(), &empty["sessions"]),
        (200, &json!({})),
        "{empty}"
    );
    // Bad data and unknown versions.
    let res = s
        .put(
            &one,
            t,
            json!({ "first_message_index": 1, "session_data": {} }),
        )
        .await;
    assert_error(&res, 400, "M_BAD_JSON");
    assert_error(
        &s.get(&format!("{K}?version=77"), t).await,
        404,
        "M_NOT_FOUND",
    );
    assert_error(&s.get(&format!("{V}/abc"), t).await, 404, "M_NOT_FOUND");

    // Updating a version: same algorithm only, and the body's version must match.
    let res = s
        .put(
            &format!("{V}/1"),
            t,
            json!({ "algorithm": "other", "auth_data": {} }),
        )
        .await;
    assert_error(&res, 400, "M_INVALID_PARAM");
    let res = s
        .put(
            &format!("{V}/1"),
            t,
            json!({ "algorithm": ALG, "auth_data": {}, "version": "2" }),
        )
        .await;
    assert_error(&res, 400, "M_INVALID_PARAM");
    let (status, _) = s
        .put(
            &format!("{V}/1"),
            t,
            json!({ "algorithm": ALG, "auth_data": { "public_key": "pk1b" } }),
        )
        .await;
    assert_eq!(status, 200);
    let (_, res) = s.get(&format!("{V}/1"), t).await;
    assert_eq!(res["auth_data"]["public_key"], "pk1b", "{res}");

    // A new version becomes current: writes to the old one are refused with the current
    // version named; the old one can still be read.
    let (_, res) = s
        .post(
            V,
            t,
            json!({ "algorithm": ALG, "auth_data": { "public_key": "pk2" } }),
        )
        .await;
    assert_eq!(res["version"], "2");
    let res = s
        .put(
            &format!("{K}/!a:localhost/s9?version=1"),
            t,
            key(0, 0, false, "z"),
        )
        .await;
    assert_error(&res, 403, "M_WRONG_ROOM_KEYS_VERSION");
    assert_eq!(res.1["current_version"], "2", "{}", res.1);
    let (status, _) = s.get(&one, t).await;
    assert_eq!(status, 200);

    // Deleting a session, then the version.
    let (status, res) = s.delete(&one, t, None).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["count"], 1, "{res}");
    let (status, _) = s.delete(&format!("{V}/1"), t, None).await;
    assert_eq!(status, 200);
    assert_error(&s.get(&format!("{V}/1"), t).await, 404, "M_NOT_FOUND");
    assert_error(
        &s.delete(&format!("{V}/1"), t, None).await,
        404,
        "M_NOT_FOUND",
    );
    // Another user sees none of it.
    let (bob, _) = s.register("bob", "password-bob").await;
    assert_error(
        &s.get(&format!("{V}/2"), Some(&bob)).await,
        404,
        "M_NOT_FOUND",
    );
}

const D: &str = "/_matrix/client/unstable/org.matrix.msc3814.v1/dehydrated_device";

fn dehydrated(device: &str) -> Value {
    json!({
        "device_id": device,
        "initial_device_display_name": "dehydrated",
        "device_data": { "algorithm": "org.matrix.msc3814.v2", "device_pickle": "opaque" },
        "device_keys": {
            "user_id": "@alice:localhost",
            "device_id": device,
            "algorithms": ["m.olm.v1.curve25519-aes-sha2"],
            "keys": { format!("curve25519:{device}"): "c", format!("ed25519:{device}"): "e" },
            "signatures": {},
        },
        "one_time_keys": { "signed_curve25519:AAAA": { "key": "k", "signatures": {} } },
    })
}

#[tokio::test]
async fn dehydrated_device_lifecycle_and_events() {
    let s = TestServer::start().await;
    let (alice, alice_dev) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let t = Some(alice.as_str());

    assert_error(&s.get(D, t).await, 404, "M_NOT_FOUND");
    let (status, res) = s.put(D, t, dehydrated("DEHYDRATED1")).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["device_id"], "DEHYDRATED1");
    let (_, res) = s.get(D, t).await;
    assert_eq!(res["device_id"], "DEHYDRATED1");
    assert_eq!(res["device_data"]["device_pickle"], "opaque", "{res}");
    // Its keys are published; it is not among the sessions the user manages.
    let (_, res) = s
        .post(
            "/_matrix/client/v3/keys/query",
            Some(&bob),
            json!({ "device_keys": { "@alice:localhost": [] } }),
        )
        .await;
    assert!(
        res["device_keys"]["@alice:localhost"]["DEHYDRATED1"].is_object(),
        "{res}"
    );
    let (_, res) = s.get("/_matrix/client/v3/devices", t).await;
    let ids: Vec<&str> = res["devices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["device_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [alice_dev.as_str()], "{res}");
    // An ordinary device's ID cannot be taken.
    assert_error(
        &s.put(D, t, dehydrated(&alice_dev)).await,
        400,
        "M_INVALID_PARAM",
    );

    // Messages sent to all of alice's devices wait for it, and are paged out once.
    for i in 0..3 {
        let (status, _) = s
            .put(
                &format!("/_matrix/client/v3/sendToDevice/m.room.encrypted/tx{i}"),
                Some(&bob),
                json!({ "messages": { "@alice:localhost": { "*": { "n": i } } } }),
            )
            .await;
        assert_eq!(status, 200);
    }
    let events = format!("{D}/DEHYDRATED1/events");
    let (status, page) = s.post(&events, t, json!({})).await;
    assert_eq!(status, 200, "{page}");
    let ns: Vec<i64> = page["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, [0, 1, 2], "{page}");
    let next = page["next_batch"].as_str().unwrap();
    let (_, page2) = s.post(&events, t, json!({ "next_batch": next })).await;
    assert_eq!(page2["events"], json!([]), "{page2}");
    // Acknowledged: from the start again, nothing.
    let (_, again) = s.post(&events, t, json!({})).await;
    assert_eq!(again["events"], json!([]), "{again}");
    assert_error(
        &s.post(&events, t, json!({ "next_batch": "x" })).await,
        400,
        "M_INVALID_PARAM",
    );

    // A new dehydrated device replaces the old one.
    let (status, _) = s.put(D, t, dehydrated("DEHYDRATED2")).await;
    assert_eq!(status, 200);
    assert_error(&s.post(&events, t, json!({})).await, 403, "M_FORBIDDEN");
    let (_, res) = s
        .post(
            "/_matrix/client/v3/keys/query",
            Some(&bob),
            json!({ "device_keys": { "@alice:localhost": [] } }),
        )
        .await;
    assert!(
        res["device_keys"]["@alice:localhost"]
            .get("DEHYDRATED1")
            .is_none(),
        "{res}"
    );
    let (status, res) = s.delete(D, t, None).await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["device_id"], "DEHYDRATED2");
    assert_error(&s.get(D, t).await, 404, "M_NOT_FOUND");
    assert_error(&s.delete(D, t, None).await, 404, "M_NOT_FOUND");
    // /versions says it is here.
    let (_, res) = s.get("/_matrix/client/versions", None).await;
    assert_eq!(
        res["unstable_features"]["org.matrix.msc3814"], true,
        "{res}"
    );
}

#[tokio::test]
async fn e2ee_endpoints_need_a_token_and_well_formed_bodies() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    for (path, body) in [
        ("/_matrix/client/v3/keys/upload", json!({})),
        (
            "/_matrix/client/v3/keys/query",
            json!({ "device_keys": {} }),
        ),
        (
            "/_matrix/client/v3/keys/claim",
            json!({ "one_time_keys": {} }),
        ),
        ("/_matrix/client/v3/keys/signatures/upload", json!({})),
        (
            "/_matrix/client/v3/room_keys/version",
            json!({ "algorithm": ALG, "auth_data": {} }),
        ),
    ] {
        assert_error(&s.post(path, None, body).await, 401, "M_MISSING_TOKEN");
    }
    assert_error(
        &s.put(
            "/_matrix/client/v3/sendToDevice/m.test/t1",
            None,
            json!({ "messages": {} }),
        )
        .await,
        401,
        "M_MISSING_TOKEN",
    );
    assert_error(
        &s.get("/_matrix/client/v3/keys/changes?from=s1&to=s2", None)
            .await,
        401,
        "M_MISSING_TOKEN",
    );
    assert_error(&s.get(D, None).await, 401, "M_MISSING_TOKEN");
    // Bodies of the wrong shape.
    let t = Some(alice.as_str());
    let res = s
        .post(
            "/_matrix/client/v3/keys/claim",
            t,
            json!({ "one_time_keys": "nope" }),
        )
        .await;
    assert_eq!(res.0, 400, "{}", res.1);
    let res = s
        .post(
            "/_matrix/client/v3/keys/query",
            t,
            json!({ "device_keys": { "not-a-user": [] } }),
        )
        .await;
    assert_eq!(res.0, 400, "{}", res.1);
    let res = s
        .post(
            "/_matrix/client/v3/room_keys/version",
            t,
            json!({ "auth_data": {} }),
        )
        .await;
    assert_eq!(res.0, 400, "{}", res.1);
    let res = s
        .put(
            "/_matrix/client/v3/sendToDevice/m.test/t2",
            t,
            json!({ "messages": { "@bob:localhost": { "*": [] } } }),
        )
        .await;
    assert_eq!(res.0, 400, "{}", res.1);
}
