//! Encrypted bridges: a registration with `org.matrix.msc3202` gets device list changes
//! (`changed`, `left`) and its users' one-time key counts and unused fallback keys in
//! transactions (MSC3202), one without gets none of it; with `forward_key_claims` and
//! `forward_key_queries`, key claims and queries for its users are asked of the bridge
//! (MSC3983, MSC3984), and a bridge that fails or does not serve them falls back on what
//! the homeserver has.

#[path = "common/appservice.rs"]
mod appservice;
mod common;

use appservice::{AS_TOKEN, FakeAppservice, KeyAnswers};
use common::TestServer;
use serde_json::{Value, json};

const PUPPET: &str = "@bridge_alice:localhost";
const HUMAN: &str = "@human:localhost";
const ALG: &str = "signed_curve25519";

fn as_user(path: &str, user: &str) -> String {
    let sep = if path.contains('?') { '&' } else { '?' };
    format!(
        "{path}{sep}user_id={}",
        user.replace('@', "%40").replace(':', "%3A")
    )
}

/// Registers the bridge's puppet and logs it in: (its access token, its device).
async fn puppet_with_device(s: &TestServer) -> (String, String) {
    let (status, body) = s
        .post(
            "/_matrix/client/v3/register",
            Some(AS_TOKEN),
            json!({"type": "m.login.application_service", "username": "bridge_alice", "inhibit_login": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let (status, login) = s
        .post(
            "/_matrix/client/v3/login",
            Some(AS_TOKEN),
            json!({"type": "m.login.application_service",
                   "identifier": {"type": "m.id.user", "user": "bridge_alice"}}),
        )
        .await;
    assert_eq!(status, 200, "{login}");
    (
        login["access_token"].as_str().unwrap().to_owned(),
        login["device_id"].as_str().unwrap().to_owned(),
    )
}

/// The human's room with the puppet in it.
async fn room_with_puppet(s: &TestServer, human: &str) -> String {
    let room = s.create_room(human, json!({"invite": [PUPPET]})).await;
    let (status, body) = s
        .post(
            &as_user(&format!("/_matrix/client/v3/rooms/{room}/join"), PUPPET),
            Some(AS_TOKEN),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    room
}

async fn upload(s: &TestServer, token: &str, body: Value) {
    let (status, res) = s
        .post("/_matrix/client/v3/keys/upload", Some(token), body)
        .await;
    assert_eq!(status, 200, "{res}");
}

fn device_keys(user: &str, device: &str) -> Value {
    json!({
        "user_id": user, "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {format!("curve25519:{device}"): "curve", format!("ed25519:{device}"): "ed"},
        "signatures": {},
    })
}

/// Waits (10 s at most) for a transaction whose body satisfies `wanted`.
async fn wait_for_transaction(bridge: &FakeAppservice, wanted: impl Fn(&Value) -> bool) -> Value {
    for _ in 0..200 {
        let found = bridge
            .seen
            .lock()
            .unwrap()
            .transactions
            .iter()
            .map(|(_, body)| body.clone())
            .find(|b| wanted(b));
        if let Some(found) = found {
            return found;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let all: Vec<Value> = bridge
        .seen
        .lock()
        .unwrap()
        .transactions
        .iter()
        .map(|(_, b)| b.clone())
        .collect();
    panic!("no such transaction; the bridge got {all:#?}");
}

/// The transaction that carried the message with this body.
async fn transaction_with_message(bridge: &FakeAppservice, text: &str) -> Value {
    wait_for_transaction(bridge, |b| {
        b["events"]
            .as_array()
            .is_some_and(|e| e.iter().any(|e| e["content"]["body"] == text))
    })
    .await
}

fn lists(body: &Value, which: &str) -> Vec<String> {
    body["org.matrix.msc3202.device_lists"][which]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|u| u.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn device_lists_and_key_counts_reach_a_bridge_that_asks() {
    let bridge = FakeAppservice::start().await;
    let plain = FakeAppservice::start_named("plain", "as-plain", "hs-plain", "plain_").await;
    let dir = tempfile::tempdir().unwrap();
    let files = [
        bridge.registration_with(dir.path(), "org.matrix.msc3202: true"),
        // Interested in the same rooms through a room namespace, without MSC3202.
        plain.registration_with(dir.path(), ""),
    ];
    let s = TestServer::start_with(|env| env.extend(appservice::env_with(&files))).await;
    let (human, human_device) = s.register("human", "pw").await;
    let (puppet, puppet_device) = puppet_with_device(&s).await;
    let room = room_with_puppet(&s, &human).await;

    // The puppet's device keeps two one-time keys and a fallback key here.
    upload(
        &s,
        &puppet,
        json!({
            "device_keys": device_keys(PUPPET, &puppet_device),
            "one_time_keys": {
                format!("{ALG}:P1"): {"key": "p1", "signatures": {}},
                format!("{ALG}:P2"): {"key": "p2", "signatures": {}},
            },
            "fallback_keys": {format!("{ALG}:PF"): {"key": "pf", "fallback": true, "signatures": {}}},
        }),
    )
    .await;

    // The human, in a room with the puppet, gets a device with keys: the bridge hears
    // that the human's devices changed.
    upload(
        &s,
        &human,
        json!({"device_keys": device_keys(HUMAN, &human_device)}),
    )
    .await;
    let body =
        wait_for_transaction(&bridge, |b| lists(b, "changed").contains(&HUMAN.to_owned())).await;
    assert!(lists(&body, "left").is_empty(), "{body}");

    // A message from the puppet names it: its device's counts come along.
    s.put(
        &as_user(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/c1"),
            PUPPET,
        ),
        Some(AS_TOKEN),
        json!({"msgtype": "m.text", "body": "counted"}),
    )
    .await;
    let body = transaction_with_message(&bridge, "counted").await;
    let counts = &body["org.matrix.msc3202.device_one_time_keys_count"][PUPPET][&puppet_device];
    assert_eq!(counts[ALG], 2, "{body:#}");
    assert_eq!(
        body["org.matrix.msc3202.device_one_time_key_counts"],
        body["org.matrix.msc3202.device_one_time_keys_count"]
    );
    assert_eq!(
        body["org.matrix.msc3202.device_unused_fallback_key_types"][PUPPET][&puppet_device],
        json!([ALG])
    );

    // The human claims a key: the next count is one less.
    let (status, claimed) = s
        .post(
            "/_matrix/client/v3/keys/claim",
            Some(&human),
            json!({"one_time_keys": {PUPPET: {&puppet_device: ALG}}}),
        )
        .await;
    assert_eq!(status, 200, "{claimed}");
    assert!(
        claimed["one_time_keys"][PUPPET][&puppet_device][format!("{ALG}:P1")].is_object(),
        "{claimed}"
    );
    s.put(
        &as_user(
            &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/c2"),
            PUPPET,
        ),
        Some(AS_TOKEN),
        json!({"msgtype": "m.text", "body": "counted again"}),
    )
    .await;
    let body = transaction_with_message(&bridge, "counted again").await;
    assert_eq!(
        body["org.matrix.msc3202.device_one_time_keys_count"][PUPPET][&puppet_device][ALG], 1,
        "{body:#}"
    );

    // The human leaves the only room shared with the bridge's users: left.
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/leave"),
            Some(&human),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let body =
        wait_for_transaction(&bridge, |b| lists(b, "left").contains(&HUMAN.to_owned())).await;
    assert!(
        !lists(&body, "changed").contains(&HUMAN.to_owned()),
        "{body}"
    );

    // The registration without MSC3202 gets none of it: its user is invited to a room
    // of the human's, the human's new device uploads keys, then the human talks there; once the
    // bridge has the message, nothing it got carries MSC3202 fields.
    let (status, body) = s
        .post(
            "/_matrix/client/v3/register",
            Some("as-plain"),
            json!({"type": "m.login.application_service", "username": "plain_bob", "inhibit_login": true}),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let plain_room = s
        .create_room(&human, json!({"invite": ["@plain_bob:localhost"]}))
        .await;
    plain
        .wait_for(|e| e["room_id"] == plain_room.as_str() && e["type"] == "m.room.member")
        .await;
    let (second, second_device) = s.login_ok("human", "pw").await;
    upload(
        &s,
        &second,
        json!({"device_keys": device_keys(HUMAN, &second_device)}),
    )
    .await;
    s.send_message(
        &human,
        &plain_room,
        "p1",
        json!({"msgtype": "m.text", "body": "last"}),
    )
    .await;
    plain.wait_for(|e| e["content"]["body"] == "last").await;
    for (_, body) in &plain.seen.lock().unwrap().transactions {
        let fields: Vec<&String> = body.as_object().unwrap().keys().collect();
        assert!(
            fields.iter().all(|f| !f.starts_with("org.matrix.msc3202")),
            "{body}"
        );
    }
}

#[tokio::test]
async fn key_claims_and_queries_for_bridge_users_are_asked_of_the_bridge() {
    let bridge = FakeAppservice::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = bridge.registration(dir.path());
    let s = TestServer::start_with(|env| {
        env.extend(appservice::env_with(&[file]));
        env.insert("AXON_APPSERVICES__FORWARD_KEY_CLAIMS".into(), "true".into());
        env.insert(
            "AXON_APPSERVICES__FORWARD_KEY_QUERIES".into(),
            "true".into(),
        );
    })
    .await;
    let (human, human_device) = s.register("human", "pw").await;
    let (puppet, puppet_device) = puppet_with_device(&s).await;
    upload(
        &s,
        &puppet,
        json!({
            "device_keys": device_keys(PUPPET, &puppet_device),
            "one_time_keys": {format!("{ALG}:P1"): {"key": "p1", "signatures": {}}},
            "fallback_keys": {format!("{ALG}:PF"): {"key": "pf", "fallback": true, "signatures": {}}},
        }),
    )
    .await;
    upload(
        &s,
        &human,
        json!({"device_keys": device_keys(HUMAN, &human_device)}),
    )
    .await;

    // Queries: the stored device and the bridge's, the bridge's master key; nothing the
    // bridge was not asked about (another user, a device under another ID).
    let (status, found) = s
        .post(
            "/_matrix/client/v3/keys/query",
            Some(&human),
            json!({"device_keys": {PUPPET: [], HUMAN: []}}),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    let puppet_devices = found["device_keys"][PUPPET].as_object().unwrap();
    let mut ids: Vec<&String> = puppet_devices.keys().collect();
    ids.sort();
    let mut expected = vec!["BRIDGEDEV", puppet_device.as_str()];
    expected.sort();
    assert_eq!(ids, expected, "{found:#}");
    assert_eq!(
        found["device_keys"][PUPPET]["BRIDGEDEV"]["keys"]["curve25519:BRIDGEDEV"],
        "bridge-curve"
    );
    assert_eq!(
        found["master_keys"][PUPPET]["keys"]["ed25519:bridge-master"],
        "bridge-master"
    );
    let human_devices = found["device_keys"][HUMAN].as_object().unwrap();
    assert_eq!(
        human_devices.keys().collect::<Vec<_>>(),
        [&human_device],
        "{found:#}"
    );
    {
        let seen = bridge.seen.lock().unwrap();
        assert_eq!(seen.key_queries, vec![json!({PUPPET: []})]);
    }

    // Claims: the stored one-time key first; then the bridge's; with the bridge failing,
    // the fallback key.
    let claim = || async {
        let (status, claimed) = s
            .post(
                "/_matrix/client/v3/keys/claim",
                Some(&human),
                json!({"one_time_keys": {PUPPET: {&puppet_device: ALG}}}),
            )
            .await;
        assert_eq!(status, 200, "{claimed}");
        let keys = claimed["one_time_keys"][PUPPET][&puppet_device]
            .as_object()
            .cloned()
            .unwrap_or_default();
        assert_eq!(keys.len(), 1, "{claimed}");
        keys.into_iter().next().unwrap()
    };
    assert_eq!(claim().await.0, format!("{ALG}:P1"));
    assert!(bridge.seen.lock().unwrap().key_claims.is_empty());
    let (id, key) = claim().await;
    assert!(id.starts_with(&format!("{ALG}:AS")), "{id}");
    assert!(key["key"].as_str().unwrap().starts_with("bridge-key-"));
    assert_eq!(
        bridge.seen.lock().unwrap().key_claims,
        vec![json!({PUPPET: {&puppet_device: [ALG]}})]
    );
    *bridge.keys.lock().unwrap() = KeyAnswers::Fail;
    assert_eq!(claim().await.0, format!("{ALG}:PF"));
    let (status, found) = s
        .post(
            "/_matrix/client/v3/keys/query",
            Some(&human),
            json!({"device_keys": {PUPPET: []}}),
        )
        .await;
    assert_eq!(status, 200, "{found}");
    assert_eq!(
        found["device_keys"][PUPPET]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>(),
        [&puppet_device],
        "a failing bridge: the stored keys"
    );

    // A bridge that does not serve the endpoint: the fallback key, and it is not asked
    // again for a while.
    *bridge.keys.lock().unwrap() = KeyAnswers::Unknown;
    assert_eq!(claim().await.0, format!("{ALG}:PF"));
    let asked = bridge.seen.lock().unwrap().key_claims.len();
    assert_eq!(claim().await.0, format!("{ALG}:PF"));
    assert_eq!(bridge.seen.lock().unwrap().key_claims.len(), asked);
}
