//! Federation I on the bench (tests/common/federation.rs): the federation listener with
//! TLS (and a renewed certificate picked up live), signing keys fetched directly and
//! through a notary, and their validity.

mod common;
#[path = "common/federation.rs"]
mod federation;

use std::time::Duration;

use axon::federation::keys::verify_keys_for;
use federation::{TestCa, start_federated};
use ruma::ServerName;
use serde_json::Value;

fn now() -> i64 {
    axon::server::now_ms()
}

#[tokio::test]
async fn the_federation_listener_serves_tls_and_picks_up_a_renewed_certificate() {
    let ca = TestCa::get();
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let (cert, key) = ca.leaf(&["localhost"]);
    std::fs::write(&cert_file, &cert).unwrap();
    std::fs::write(&key_file, &key).unwrap();
    let (c, k) = (cert_file.clone(), key_file.clone());
    let s = start_federated(|env| {
        env.insert("AXON_FEDERATION__TLS_CERT".into(), c.display().to_string());
        env.insert("AXON_FEDERATION__TLS_KEY".into(), k.display().to_string());
    })
    .await;

    let peer_cert = |url: String| async move {
        // A new client each time: a new connection, a new handshake.
        let client = reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(ca.ca_pem.as_bytes()).unwrap())
            .tls_info(true)
            .build()
            .unwrap();
        let response = client.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200);
        let der = response
            .extensions()
            .get::<reqwest::tls::TlsInfo>()
            .and_then(|i| i.peer_certificate().map(<[u8]>::to_vec))
            .expect("peer certificate");
        let body: Value = response.json().await.unwrap();
        (der, body)
    };
    let version_url = format!("{}/_matrix/federation/v1/version", s.federation_url());
    let (first, body) = peer_cert(version_url.clone()).await;
    assert_eq!(body["server"]["name"], "axon", "{body}");

    // The federation API lives on its own listener, not on the client one.
    let (status, body) = s.get("/_matrix/federation/v1/version", None).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["errcode"], "M_UNRECOGNIZED");
    // Our keys are on both.
    let (status, keys) = s.get("/_matrix/key/v2/server", None).await;
    assert_eq!(status, 200);
    assert_eq!(keys["server_name"], s.name());

    // A renewal: new files in place; new connections get the new certificate.
    let (renewed, renewed_key) = ca.leaf(&["localhost"]);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(&key_file, &renewed_key).unwrap();
    std::fs::write(&cert_file, &renewed).unwrap();
    let renewed_der = rustls_pemfile_der(&renewed);
    let mut seen = first.clone();
    for _ in 0..40 {
        seen = peer_cert(version_url.clone()).await.0;
        if seen != first {
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(seen, renewed_der, "the renewed certificate is served");

    // A broken renewal keeps the last good certificate.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    std::fs::write(&cert_file, "not a certificate").unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(peer_cert(version_url).await.0, renewed_der);
}

/// The DER bytes of a PEM certificate.
fn rustls_pemfile_der(pem: &str) -> Vec<u8> {
    use base64::Engine as _;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD
        .decode(body)
        .unwrap()
}

#[tokio::test]
async fn keys_are_fetched_directly_and_through_a_notary() {
    let hs2 = start_federated(|_| {}).await;
    let notary = start_federated(|_| {}).await;
    let notary_name = notary.name();
    let hs1 = start_federated(|env| {
        env.insert(
            "AXON_FEDERATION__TRUSTED_KEY_SERVERS".into(),
            format!("[{{ server_name = \"{notary_name}\" }}]"),
        );
    })
    .await;
    let hs2_name = ServerName::parse(hs2.name()).unwrap();
    let hs2_key = hs2.hs.keys.key_id();

    // Directly: hs1 asks hs2 and gets the key hs2 signs with.
    let keys = verify_keys_for(&hs1.hs, &hs2_name, std::slice::from_ref(&hs2_key), now())
        .await
        .unwrap();
    let published = hs2.hs.keys.public_key_map(&hs2_name);
    assert_eq!(
        keys.get(&hs2_key),
        published[hs2_name.as_str()].get(&hs2_key),
        "hs1 has hs2's key"
    );
    // An unknown key ID of a known server is simply not there.
    let none = verify_keys_for(&hs1.hs, &hs2_name, &["ed25519:nope".into()], now())
        .await
        .unwrap();
    assert!(none.is_empty());

    // The notary answers for hs2, countersigned, fetching hs2's keys on the way.
    let http = TestCa::get().client();
    let url = format!(
        "{}/_matrix/key/v2/query/{}",
        notary.federation_url(),
        hs2_name
    );
    let answer: Value = http.get(url).send().await.unwrap().json().await.unwrap();
    let doc = &answer["server_keys"][0];
    assert_eq!(doc["server_name"], hs2_name.as_str(), "{answer}");
    assert!(doc["signatures"][hs2_name.as_str()].is_object(), "{doc}");
    assert!(doc["signatures"][&notary_name].is_object(), "{doc}");
    // The batch form too, and an empty answer for a server that does not exist.
    let url = format!("{}/_matrix/key/v2/query", notary.federation_url());
    let answer: Value = http
        .post(url)
        .json(&serde_json::json!({"server_keys": {
            hs2_name.as_str(): {},
            "localhost:1": {},
        }}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let docs = answer["server_keys"].as_array().unwrap();
    assert_eq!(docs.len(), 1, "{answer}");
    assert_eq!(docs[0]["server_name"], hs2_name.as_str());

    // Through the notary: hs3 has never seen hs2, which is now down.
    let hs3 = start_federated(|env| {
        env.insert(
            "AXON_FEDERATION__TRUSTED_KEY_SERVERS".into(),
            format!("[{{ server_name = \"{notary_name}\" }}]"),
        );
    })
    .await;
    let mut hs2 = hs2;
    hs2.shut_down().await;
    let keys = verify_keys_for(&hs3.hs, &hs2_name, std::slice::from_ref(&hs2_key), now())
        .await
        .unwrap();
    assert_eq!(
        keys.get(&hs2_key),
        published[hs2_name.as_str()].get(&hs2_key),
        "hs3 got hs2's key from the notary"
    );
    // Nothing is valid beyond a week from now, whatever a server claims.
    let rows = hs3
        .hs
        .storage
        .server_keys(hs2_name.as_str(), std::slice::from_ref(&hs2_key))
        .await
        .unwrap();
    assert!(rows[0].valid_until_ts <= now() + 7 * 24 * 3600 * 1000);
    // A key valid only until some time does not verify what was signed after it.
    let later = verify_keys_for(
        &hs3.hs,
        &hs2_name,
        std::slice::from_ref(&hs2_key),
        rows[0].valid_until_ts + 1,
    )
    .await
    .unwrap();
    assert!(later.is_empty());
    drop(hs1);
}

#[tokio::test]
async fn a_rotated_key_stays_usable_for_what_it_signed_before() {
    let hs2 = start_federated(|_| {}).await;
    let hs1 = start_federated(|_| {}).await;
    let hs2_name = ServerName::parse(hs2.name()).unwrap();
    let old_key = hs2.hs.keys.key_id();
    let before_rotation = now();
    axon::server::keys::rotate(&hs2.hs.storage).await.unwrap();
    let hs2 = hs2.restart().await;
    let new_key = hs2.hs.keys.key_id();
    assert_ne!(old_key, new_key);
    let keys = verify_keys_for(
        &hs1.hs,
        &hs2_name,
        &[old_key.clone(), new_key.clone()],
        before_rotation,
    )
    .await
    .unwrap();
    assert!(
        keys.contains_key(&old_key) && keys.contains_key(&new_key),
        "{keys:?}"
    );
    // After its expiry the old key verifies nothing.
    let keys = verify_keys_for(
        &hs1.hs,
        &hs2_name,
        std::slice::from_ref(&old_key),
        now() + 60_000,
    )
    .await
    .unwrap();
    assert!(keys.is_empty(), "{keys:?}");
}
