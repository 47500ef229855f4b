//! End-to-end encryption endpoints over HTTP, with keys signed here (ed25519): key upload
//! and its refusals, query, claim (one-time then fallback, each once under concurrency),
//! counts and device lists in /sync, /keys/changes, to-device delivery and idempotency,
//! cross-signing keys behind UIA, and signature upload with verification.

mod common;

use common::{TestServer, assert_error};
use ruma::{
    CanonicalJsonObject,
    serde::{Base64, base64::Standard},
    signatures::Ed25519KeyPair,
};
use serde_json::{Value, json};

struct Signer {
    pair: Ed25519KeyPair,
    public: String,
}

impl Signer {
    /// A key whose ID is `ed25519:<id>` (`id` None: its own public key, as cross-signing
    /// keys are named).
    fn new(id: Option<&str>) -> Self {
        let doc = Ed25519KeyPair::generate();
        let probe = Ed25519KeyPair::from_der(&doc, "probe".into()).unwrap();
        let public = Base64::<Standard>::new(probe.public_key().to_vec()).encode();
        let version = id.map_or(public.clone(), str::to_owned);
        Self {
            pair: Ed25519KeyPair::from_der(&doc, version).unwrap(),
            public,
        }
    }

    fn sign(&self, user: &str, object: &mut Value) {
        let mut canonical: CanonicalJsonObject = serde_json::from_value(object.clone()).unwrap();
        ruma::signatures::sign_json(user, &self.pair, &mut canonical).unwrap();
        *object = serde_json::to_value(canonical).unwrap();
    }
}

fn device_keys(user: &str, device: &str, signer: &Signer) -> Value {
    let mut keys = json!({
        "user_id": user,
        "device_id": device,
        "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
        "keys": {
            format!("curve25519:{device}"): format!("curve-{device}"),
            format!("ed25519:{device}"): signer.public,
        },
    });
    signer.sign(user, &mut keys);
    keys
}

fn otk(user: &str, signer: &Signer, key: &str, fallback: bool) -> Value {
    let mut k = json!({ "key": key });
    if fallback {
        k["fallback"] = json!(true);
    }
    signer.sign(user, &mut k);
    k
}

fn cross_key(user: &str, usage: &str, key: &Signer) -> Value {
    json!({
        "user_id": user,
        "usage": [usage],
        "keys": { format!("ed25519:{}", key.public): key.public },
    })
}

async fn sync(s: &TestServer, token: &str, query: &str) -> Value {
    let (status, res) = s
        .get(
            &format!("/_matrix/client/v3/sync?set_presence=offline&{query}"),
            Some(token),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    res
}

async fn shared_room(s: &TestServer, a: &str, b: &str) -> String {
    let (status, res) = s
        .post(
            "/_matrix/client/v3/createRoom",
            Some(a),
            json!({"preset": "public_chat"}),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let room = res["room_id"].as_str().unwrap().to_owned();
    let (status, res) = s
        .post(
            &format!("/_matrix/client/v3/join/{room}"),
            Some(b),
            json!({}),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    room
}

const ALICE: &str = "@alice:localhost";
const ALG: &str = "signed_curve25519";

#[tokio::test]
async fn upload_query_and_claim() {
    let s = TestServer::start().await;
    let (alice, alice_dev) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let dev_key = Signer::new(Some(&alice_dev));
    let keys = device_keys(ALICE, &alice_dev, &dev_key);
    let (status, res) = s
        .post(
            "/_matrix/client/v3/keys/upload",
            Some(&alice),
            json!({
                "device_keys": keys,
                "one_time_keys": {
                    format!("{ALG}:AAAA"): otk(ALICE, &dev_key, "otk-a", false),
                    format!("{ALG}:AAAB"): otk(ALICE, &dev_key, "otk-b", false),
                },
                "fallback_keys": { format!("{ALG}:FFFF"): otk(ALICE, &dev_key, "fb", true) },
            }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["one_time_key_counts"][ALG], 2, "{res}");

    // Refusals: other identity keys for this device; keys for another device; a used
    // one-time key ID with new contents; a key ID without an algorithm.
    let other = Signer::new(Some(&alice_dev));
    let res = s
        .post(
            "/_matrix/client/v3/keys/upload",
            Some(&alice),
            json!({ "device_keys": device_keys(ALICE, &alice_dev, &other) }),
        )
        .await;
    assert_error(&res, 400, "M_INVALID_PARAM");
    let res = s
        .post(
            "/_matrix/client/v3/keys/upload",
            Some(&alice),
            json!({ "device_keys": device_keys(ALICE, "OTHERDEV", &other) }),
        )
        .await;
    assert_error(&res, 400, "M_INVALID_PARAM");
    let res = s
        .post(
            "/_matrix/client/v3/keys/upload",
            Some(&alice),
            json!({ "one_time_keys": { format!("{ALG}:AAAA"): otk(ALICE, &dev_key, "changed", false) } }),
        )
        .await;
    assert_error(&res, 400, "M_INVALID_PARAM");
    // The same keys again are fine (clients re-upload after a restart).
    let (status, res) = s
        .post(
            "/_matrix/client/v3/keys/upload",
            Some(&alice),
            json!({
                "device_keys": keys,
                "one_time_keys": { format!("{ALG}:AAAA"): otk(ALICE, &dev_key, "otk-a", false) },
            }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["one_time_key_counts"][ALG], 2, "{res}");

    // Bob sees alice's device, with its display name.
    let (status, _) = s
        .put(
            &format!("/_matrix/client/v3/devices/{alice_dev}"),
            Some(&alice),
            json!({ "display_name": "alice's laptop" }),
        )
        .await;
    assert_eq!(status, 200);
    let (status, res) = s
        .post(
            "/_matrix/client/v3/keys/query",
            Some(&bob),
            json!({ "device_keys": { ALICE: [] } }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let got = &res["device_keys"][ALICE][&alice_dev];
    assert_eq!(got["keys"], keys["keys"], "{res}");
    assert_eq!(got["signatures"], keys["signatures"], "{res}");
    assert_eq!(
        got["unsigned"]["device_display_name"], "alice's laptop",
        "{res}"
    );
    // Unknown device: an empty map. A remote user: a failure for that server.
    let (_, res) = s
        .post(
            "/_matrix/client/v3/keys/query",
            Some(&bob),
            json!({ "device_keys": { ALICE: ["NOPE"], "@carol:elsewhere.example": [] } }),
        )
        .await;
    assert_eq!(res["device_keys"][ALICE], json!({}), "{res}");
    assert!(res["failures"]["elsewhere.example"].is_object(), "{res}");

    // Claims: both one-time keys once each, then the fallback key (again and again).
    let mut claimed = Vec::new();
    for _ in 0..4 {
        let (status, res) = s
            .post(
                "/_matrix/client/v3/keys/claim",
                Some(&bob),
                json!({ "one_time_keys": { ALICE: { &alice_dev: ALG } } }),
            )
            .await;
        assert_eq!(status, 200, "{res}");
        let keys = res["one_time_keys"][ALICE][&alice_dev]
            .as_object()
            .unwrap()
            .clone();
        assert_eq!(keys.len(), 1, "{res}");
        let (id, key) = keys.into_iter().next().unwrap();
        claimed.push((id, key["key"].as_str().unwrap().to_owned()));
    }
    let ids: Vec<&str> = claimed.iter().map(|c| c.0.as_str()).collect();
    assert_eq!(
        ids,
        [
            format!("{ALG}:AAAA"),
            format!("{ALG}:AAAB"),
            format!("{ALG}:FFFF"),
            format!("{ALG}:FFFF")
        ]
    );
    // Alice's sync: no one-time keys left, the fallback key used.
    let res = sync(&s, &alice, "timeout=0").await;
    assert_eq!(res["device_one_time_keys_count"][ALG], 0, "{res}");
    assert_eq!(res["device_unused_fallback_key_types"], json!([]), "{res}");
    // A new fallback key is unused again.
    let (status, _) = s
        .post(
            "/_matrix/client/v3/keys/upload",
            Some(&alice),
            json!({ "fallback_keys": { format!("{ALG}:FFFG"): otk(ALICE, &dev_key, "fb2", true) } }),
        )
        .await;
    assert_eq!(status, 200);
    let res = sync(&s, &alice, "timeout=0").await;
    assert_eq!(
        res["device_unused_fallback_key_types"],
        json!([ALG]),
        "{res}"
    );

    // Concurrent claims never hand out a one-time key twice.
    let batch: serde_json::Map<String, Value> = (0..20)
        .map(|i| {
            (
                format!("{ALG}:C{i:03}"),
                otk(ALICE, &dev_key, &format!("c{i}"), false),
            )
        })
        .collect();
    let (status, _) = s
        .post(
            "/_matrix/client/v3/keys/upload",
            Some(&alice),
            json!({ "one_time_keys": batch }),
        )
        .await;
    assert_eq!(status, 200);
    let claims = (0..30).map(|_| {
        let (base, http, bob, dev) = (
            s.base.clone(),
            s.http.clone(),
            bob.clone(),
            alice_dev.clone(),
        );
        tokio::spawn(async move {
            let res: Value = http
                .post(format!("{base}/_matrix/client/v3/keys/claim"))
                .bearer_auth(bob)
                .json(&json!({ "one_time_keys": { ALICE: { &dev: ALG } } }))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            let keys = res["one_time_keys"][ALICE][&dev]
                .as_object()
                .unwrap()
                .clone();
            keys.keys().next().unwrap().clone()
        })
    });
    let mut got = Vec::new();
    for c in claims {
        got.push(c.await.unwrap());
    }
    let one_time: std::collections::HashSet<&String> =
        got.iter().filter(|id| id.contains(":C")).collect();
    assert_eq!(one_time.len(), 20, "each one-time key once: {got:?}");
    assert_eq!(
        got.iter().filter(|id| id.ends_with(":FFFG")).count(),
        10,
        "{got:?}"
    );
}

#[tokio::test]
async fn to_device_delivery_is_idempotent_and_acknowledged() {
    let s = TestServer::start().await;
    let (alice, alice_dev) = s.register("alice", "password-alice").await;
    let (alice2, alice_dev2) = s.login_ok("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let t0 = sync(&s, &alice, "timeout=0").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let send = |txn: &str, target: &str, n: i64| {
        let path = format!("/_matrix/client/v3/sendToDevice/m.test.ping/{txn}");
        let body = json!({ "messages": { ALICE: { target: { "n": n } }, "@nobody:localhost": { "X": {} } } });
        let bob = bob.clone();
        let s = &s;
        async move { s.put(&path, Some(&bob), body).await }
    };
    let (status, res) = send("t1", &alice_dev, 1).await;
    assert_eq!(status, 200, "{res}");
    // The same transaction again: not sent twice.
    let (status, _) = send("t1", &alice_dev, 1).await;
    assert_eq!(status, 200);
    let (status, _) = send("t2", "*", 2).await;
    assert_eq!(status, 200);

    let first = sync(&s, &alice, &format!("since={t0}&timeout=0")).await;
    let events = first["to_device"]["events"].as_array().unwrap();
    let ns: Vec<i64> = events
        .iter()
        .map(|e| e["content"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, [1, 2], "{first}");
    assert_eq!(events[0]["sender"], "@bob:localhost");
    assert_eq!(events[0]["type"], "m.test.ping");
    // The answer was lost: the retry with the same token has them again.
    let retry = sync(&s, &alice, &format!("since={t0}&timeout=0")).await;
    assert_eq!(retry["to_device"]["events"].as_array().unwrap().len(), 2);
    // Acknowledged by the next sync: gone.
    let t1 = retry["next_batch"].as_str().unwrap();
    let next = sync(&s, &alice, &format!("since={t1}&timeout=0")).await;
    assert!(
        next["to_device"]["events"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{next}"
    );
    let again = sync(&s, &alice, &format!("since={t0}&timeout=0")).await;
    assert!(
        again["to_device"]["events"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{again}"
    );
    // The other device got only the `*` one.
    let other = sync(&s, &alice2, "timeout=0").await;
    let ns: Vec<i64> = other["to_device"]["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["content"]["n"].as_i64().unwrap())
        .collect();
    assert_eq!(ns, [2], "{other} ({alice_dev2})");

    // More than a sync holds: the rest come with the next sync, none lost.
    for i in 0..130 {
        let (status, _) = send(&format!("m{i}"), &alice_dev, 100 + i).await;
        assert_eq!(status, 200);
    }
    let mut since = next["next_batch"].as_str().unwrap().to_owned();
    let mut got = Vec::new();
    for _ in 0..3 {
        let res = sync(&s, &alice, &format!("since={since}&timeout=0")).await;
        got.extend(
            res["to_device"]["events"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e["content"]["n"].as_i64().unwrap()),
        );
        since = res["next_batch"].as_str().unwrap().to_owned();
    }
    assert_eq!(got, (100..230).collect::<Vec<i64>>());
    // Transaction IDs are kept a day (the hourly prune): all of them are older than "now +
    // a day".
    let pruned = s.hs.storage.prune_to_device_txns(i64::MAX).await.unwrap();
    assert_eq!(pruned, 132, "t1, t2 and m0..m129");
    // Not JSON objects: refused.
    let res = s
        .put(
            "/_matrix/client/v3/sendToDevice/m.test/bad",
            Some(&bob),
            json!({ "messages": { ALICE: { "*": "text" } } }),
        )
        .await;
    assert_eq!(res.0, 400, "{}", res.1);
}

#[tokio::test]
async fn device_lists_in_sync_and_key_changes() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let room = shared_room(&s, &alice, &bob).await;
    let t0 = sync(&s, &bob, "timeout=0").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    // Alice adds a device with keys: bob must fetch her keys again.
    let (alice2, dev2) = s.login_ok("alice", "password-alice").await;
    let signer = Signer::new(Some(&dev2));
    let (status, _) = s
        .post(
            "/_matrix/client/v3/keys/upload",
            Some(&alice2),
            json!({ "device_keys": device_keys(ALICE, &dev2, &signer) }),
        )
        .await;
    assert_eq!(status, 200);
    let res = sync(&s, &bob, &format!("since={t0}&timeout=5000")).await;
    assert_eq!(res["device_lists"]["changed"], json!([ALICE]), "{res}");
    let t1 = res["next_batch"].as_str().unwrap().to_owned();
    let (status, res) = s
        .get(
            &format!("/_matrix/client/v3/keys/changes?from={t0}&to={t1}"),
            Some(&bob),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(res["changed"], json!([ALICE]), "{res}");
    let res = s
        .get(
            "/_matrix/client/v3/keys/changes?from=nonsense&to=x",
            Some(&bob),
        )
        .await;
    assert_error(&res, 400, "M_INVALID_PARAM");

    // Alice logs the device out: a change again.
    let (status, _) = s
        .post("/_matrix/client/v3/logout", Some(&alice2), json!({}))
        .await;
    assert_eq!(status, 200);
    let res = sync(&s, &bob, &format!("since={t1}&timeout=5000")).await;
    assert_eq!(res["device_lists"]["changed"], json!([ALICE]), "{res}");
    let t2 = res["next_batch"].as_str().unwrap().to_owned();
    // Alice leaves their only shared room: bob stops tracking her.
    let (status, _) = s
        .post(
            &format!("/_matrix/client/v3/rooms/{room}/leave"),
            Some(&alice),
            json!({}),
        )
        .await;
    assert_eq!(status, 200);
    let res = sync(&s, &bob, &format!("since={t2}&timeout=5000")).await;
    assert_eq!(res["device_lists"]["left"], json!([ALICE]), "{res}");
    // A user who shares no room is never in changed.
    let (carol, _) = s.register("carol", "password-carol").await;
    let t3 = sync(&s, &carol, "timeout=0").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = s
        .post(
            "/_matrix/client/v3/keys/upload",
            Some(&alice),
            json!({ "one_time_keys": {} }),
        )
        .await;
    assert_eq!(status, 200);
    let res = sync(&s, &carol, &format!("since={t3}&timeout=0")).await;
    assert!(
        res["device_lists"]["changed"]
            .as_array()
            .is_none_or(Vec::is_empty),
        "{res}"
    );
}

#[tokio::test]
async fn cross_signing_keys_and_signatures() {
    let s = TestServer::start().await;
    let (alice, alice_dev) = s.register("alice", "password-alice").await;
    let (bob, bob_dev) = s.register("bob", "password-bob").await;
    let dev_key = Signer::new(Some(&alice_dev));
    let (status, _) = s
        .post(
            "/_matrix/client/v3/keys/upload",
            Some(&alice),
            json!({ "device_keys": device_keys(ALICE, &alice_dev, &dev_key) }),
        )
        .await;
    assert_eq!(status, 200);
    let master = Signer::new(None);
    let ssk = Signer::new(None);
    let usk = Signer::new(None);
    let master_key = cross_key(ALICE, "master", &master);
    let mut ssk_key = cross_key(ALICE, "self_signing", &ssk);
    master.sign(ALICE, &mut ssk_key);
    let mut usk_key = cross_key(ALICE, "user_signing", &usk);
    master.sign(ALICE, &mut usk_key);

    // A self-signing key the master did not sign is refused.
    let unsigned_ssk = cross_key(ALICE, "self_signing", &ssk);
    let res = s
        .post(
            "/_matrix/client/v3/keys/device_signing/upload",
            Some(&alice),
            json!({ "master_key": master_key, "self_signing_key": unsigned_ssk }),
        )
        .await;
    assert_error(&res, 400, "M_INVALID_SIGNATURE");
    // The first upload needs no password.
    let (status, res) = s
        .post(
            "/_matrix/client/v3/keys/device_signing/upload",
            Some(&alice),
            json!({ "master_key": master_key, "self_signing_key": ssk_key, "user_signing_key": usk_key }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    // Replacing them does.
    let master2 = Signer::new(None);
    let res = s
        .post(
            "/_matrix/client/v3/keys/device_signing/upload",
            Some(&alice),
            json!({ "master_key": cross_key(ALICE, "master", &master2) }),
        )
        .await;
    assert_eq!(res.0, 401, "{}", res.1);
    assert!(res.1["flows"].is_array(), "{}", res.1);
    // Identical keys again (a retry) need none.
    let (status, _) = s
        .post(
            "/_matrix/client/v3/keys/device_signing/upload",
            Some(&alice),
            json!({ "master_key": master_key, "self_signing_key": ssk_key }),
        )
        .await;
    assert_eq!(status, 200);

    // Alice signs her device with her self-signing key.
    let mut signed_device = device_keys(ALICE, &alice_dev, &dev_key);
    ssk.sign(ALICE, &mut signed_device);
    let (status, res) = s
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            Some(&alice),
            json!({ ALICE: { &alice_dev: signed_device } }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    assert!(
        res["failures"].as_object().is_none_or(|f| f.is_empty()),
        "{res}"
    );
    // A forged signature is reported per key, not stored.
    let mut forged = device_keys(ALICE, &alice_dev, &dev_key);
    forged["signatures"][ALICE][format!("ed25519:{}", ssk.public)] = json!("AAAA");
    let (status, res) = s
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            Some(&alice),
            json!({ ALICE: { &alice_dev: forged } }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(
        res["failures"][ALICE][&alice_dev]["errcode"], "M_INVALID_SIGNATURE",
        "{res}"
    );

    // Bob sees alice's master and self-signing keys and the device signature; not her
    // user-signing key. Alice sees that one too.
    let query = json!({ "device_keys": { ALICE: [] } });
    let (_, res) = s
        .post("/_matrix/client/v3/keys/query", Some(&bob), query.clone())
        .await;
    assert_eq!(
        res["master_keys"][ALICE]["keys"], master_key["keys"],
        "{res}"
    );
    assert_eq!(
        res["self_signing_keys"][ALICE]["keys"], ssk_key["keys"],
        "{res}"
    );
    assert!(res["user_signing_keys"].get(ALICE).is_none(), "{res}");
    let sig_id = format!("ed25519:{}", ssk.public);
    let sig = &res["device_keys"][ALICE][&alice_dev]["signatures"][ALICE][&sig_id];
    assert!(sig.is_string(), "{res}");
    let (_, res) = s
        .post("/_matrix/client/v3/keys/query", Some(&alice), query)
        .await;
    assert_eq!(
        res["user_signing_keys"][ALICE]["keys"], usk_key["keys"],
        "{res}"
    );

    // Bob cannot sign alice's master key without a user-signing key of his own.
    let _ = bob_dev;
    let mut theirs = master_key.clone();
    usk.sign("@bob:localhost", &mut theirs);
    let (status, res) = s
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            Some(&bob),
            json!({ ALICE: { &master.public: theirs } }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    assert_eq!(
        res["failures"][ALICE][&master.public]["errcode"], "M_MISSING_SIGNATURE",
        "{res}"
    );
}

#[tokio::test]
async fn a_new_device_and_a_renamed_one_change_the_device_list() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    shared_room(&s, &alice, &bob).await;
    let res = sync(&s, &bob, "timeout=0").await;
    let since = res["next_batch"].as_str().unwrap().to_owned();

    // A login makes a device (no keys uploaded yet): others must query again.
    let (_, device) = s.login_ok("alice", "password-alice").await;
    let res = sync(&s, &bob, &format!("since={since}&timeout=0")).await;
    assert_eq!(res["device_lists"]["changed"], json!([ALICE]), "{res}");
    let since = res["next_batch"].as_str().unwrap().to_owned();

    // Nothing changed since: not listed again.
    let res = sync(&s, &bob, &format!("since={since}&timeout=0")).await;
    assert!(
        res["device_lists"]["changed"]
            .as_array()
            .is_none_or(|c| c.is_empty()),
        "{res}"
    );

    let (status, _) = s
        .put(
            &format!("/_matrix/client/v3/devices/{device}"),
            Some(&alice),
            json!({ "display_name": "laptop" }),
        )
        .await;
    assert_eq!(status, 200);
    let res = sync(&s, &bob, &format!("since={since}&timeout=0")).await;
    assert_eq!(res["device_lists"]["changed"], json!([ALICE]), "{res}");
}

/// A user-signing key is the user's own (others never fetch it): replacing it lists the
/// user in their own device list changes, not in those of the people they share a room with.
#[tokio::test]
async fn a_new_user_signing_key_is_news_to_its_owner_only() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    shared_room(&s, &alice, &bob).await;
    let master = Signer::new(None);
    let ssk = Signer::new(None);
    let master_key = cross_key(ALICE, "master", &master);
    let mut ssk_key = cross_key(ALICE, "self_signing", &ssk);
    master.sign(ALICE, &mut ssk_key);
    let (status, res) = s
        .post(
            "/_matrix/client/v3/keys/device_signing/upload",
            Some(&alice),
            json!({ "master_key": master_key, "self_signing_key": ssk_key }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let alice_since = sync(&s, &alice, "timeout=0").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();
    let bob_since = sync(&s, &bob, "timeout=0").await["next_batch"]
        .as_str()
        .unwrap()
        .to_owned();

    let usk = Signer::new(None);
    let mut usk_key = cross_key(ALICE, "user_signing", &usk);
    master.sign(ALICE, &mut usk_key);
    let (status, res) = s
        .post(
            "/_matrix/client/v3/keys/device_signing/upload",
            Some(&alice),
            json!({ "user_signing_key": usk_key,
                    "auth": { "type": "m.login.password", "password": "password-alice",
                              "identifier": { "type": "m.id.user", "user": "alice" } } }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    let res = sync(&s, &alice, &format!("since={alice_since}&timeout=0")).await;
    assert_eq!(res["device_lists"]["changed"], json!([ALICE]), "{res}");
    let res = sync(&s, &bob, &format!("since={bob_since}&timeout=0")).await;
    assert!(
        res["device_lists"]["changed"]
            .as_array()
            .is_none_or(|c| c.is_empty()),
        "{res}"
    );
}

/// Alice's signature of bob's master key (made with her user-signing key) is hers: she
/// sees it in /keys/query, bob and others do not.
#[tokio::test]
async fn a_signature_by_another_users_user_signing_key_is_shown_to_its_signer_only() {
    let s = TestServer::start().await;
    let (alice, _) = s.register("alice", "password-alice").await;
    let (bob, _) = s.register("bob", "password-bob").await;
    let (carol, _) = s.register("carol", "password-carol").await;
    const BOB: &str = "@bob:localhost";
    let upload = |token: String, body: serde_json::Value| {
        let s = &s;
        async move {
            let (status, res) = s
                .post(
                    "/_matrix/client/v3/keys/device_signing/upload",
                    Some(&token),
                    body,
                )
                .await;
            assert_eq!(status, 200, "{res}");
        }
    };
    let alice_master = Signer::new(None);
    let alice_usk = Signer::new(None);
    let mut usk_key = cross_key(ALICE, "user_signing", &alice_usk);
    alice_master.sign(ALICE, &mut usk_key);
    upload(
        alice.clone(),
        json!({ "master_key": cross_key(ALICE, "master", &alice_master),
                "user_signing_key": usk_key }),
    )
    .await;
    let bob_master = Signer::new(None);
    let bob_master_key = cross_key(BOB, "master", &bob_master);
    upload(bob.clone(), json!({ "master_key": bob_master_key })).await;

    let mut signed = bob_master_key.clone();
    alice_usk.sign(ALICE, &mut signed);
    let (status, res) = s
        .post(
            "/_matrix/client/v3/keys/signatures/upload",
            Some(&alice),
            json!({ BOB: { &bob_master.public: signed } }),
        )
        .await;
    assert_eq!(status, 200, "{res}");
    assert!(
        res["failures"].as_object().is_none_or(|f| f.is_empty()),
        "{res}"
    );

    let alice_signature_on_bob = |token: String| {
        let s = &s;
        async move {
            let (status, res) = s
                .post(
                    "/_matrix/client/v3/keys/query",
                    Some(&token),
                    json!({ "device_keys": { BOB: [] } }),
                )
                .await;
            assert_eq!(status, 200, "{res}");
            assert!(res["master_keys"][BOB].is_object(), "{res}");
            res["master_keys"][BOB]["signatures"].get(ALICE).cloned()
        }
    };
    assert!(alice_signature_on_bob(alice).await.is_some());
    assert_eq!(alice_signature_on_bob(bob).await, None);
    assert_eq!(alice_signature_on_bob(carol).await, None);
}
