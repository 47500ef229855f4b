//! The federation bench: axon servers on loopback, each named `localhost:<port>` after
//! its federation listener, with its own database and TLS from a test CA made here
//! (rcgen), trusting that CA, and with loopback opened in the outbound policy.
//! Include with `#[path = "common/federation.rs"] mod federation;` beside `mod common;`.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::OnceLock,
};

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose,
};

use super::common::{TestServer, fresh_database, test_env};

/// The test CA and a certificate it signed for `localhost`, `127.0.0.1` and `::1`, as
/// PEM files in a directory of this test process.
pub struct TestCa {
    pub dir: PathBuf,
    pub ca_file: PathBuf,
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    issuer: Issuer<'static, KeyPair>,
    pub ca_pem: String,
}

static CA: OnceLock<TestCa> = OnceLock::new();

impl TestCa {
    pub fn get() -> &'static TestCa {
        CA.get_or_init(|| {
            let dir = std::env::temp_dir().join(format!("axon-test-ca-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            let mut params = CertificateParams::new(Vec::new()).unwrap();
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params
                .distinguished_name
                .push(DnType::CommonName, "axon test CA");
            params.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
            ];
            let key = KeyPair::generate().unwrap();
            let ca = params.self_signed(&key).unwrap();
            let issuer = Issuer::new(params, key);
            let ca_pem = ca.pem();
            let ca_file = dir.join("ca.pem");
            std::fs::write(&ca_file, &ca_pem).unwrap();
            let this = TestCa {
                cert_file: dir.join("cert.pem"),
                key_file: dir.join("key.pem"),
                dir,
                ca_file,
                issuer,
                ca_pem,
            };
            let (cert, key) = this.leaf(&["localhost", "127.0.0.1", "::1"]);
            // (`this` is not mutated: the files are written beside it.)
            std::fs::write(&this.cert_file, cert).unwrap();
            std::fs::write(&this.key_file, key).unwrap();
            this
        })
    }

    /// A certificate (PEM) and its key (PEM) for these names, signed by the CA.
    pub fn leaf(&self, names: &[&str]) -> (String, String) {
        let mut params =
            CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, names[0]);
        params.use_authority_key_identifier_extension = true;
        params.key_usages.push(KeyUsagePurpose::DigitalSignature);
        params
            .extended_key_usages
            .push(ExtendedKeyUsagePurpose::ServerAuth);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    /// A reqwest client that trusts the test CA.
    pub fn client(&self) -> reqwest::Client {
        reqwest::Client::builder()
            .add_root_certificate(reqwest::Certificate::from_pem(self.ca_pem.as_bytes()).unwrap())
            .build()
            .unwrap()
    }
}

/// Serves `app` on `listener` over TLS with the test CA's certificate for `localhost`,
/// until the returned sender is used or dropped (stand-in servers).
pub fn serve_tls(
    listener: tokio::net::TcpListener,
    app: axum::Router,
) -> tokio::sync::oneshot::Sender<()> {
    let ca = TestCa::get();
    let tls = axon::http::tls::TlsFiles::open(&ca.cert_file, &ca.key_file).unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let limits = axon::http::serve::ConnectionLimits {
        max_connections: 64,
        header_read_timeout: std::time::Duration::from_secs(10),
        shutdown_grace: std::time::Duration::from_secs(1),
    };
    tokio::spawn(axon::http::serve::serve(
        listener,
        app,
        Some(tls),
        limits,
        Default::default(),
        async move {
            let _ = rx.await;
        },
    ));
    tx
}

/// The settings of a federated test server named after `port`.
pub fn federation_env(port: u16) -> BTreeMap<String, String> {
    let ca = TestCa::get();
    let mut env = test_env();
    let set: HashMap<&str, String> = HashMap::from([
        ("AXON_SERVER_NAME", format!("localhost:{port}")),
        ("AXON_LISTEN__FEDERATION", format!("127.0.0.1:{port}")),
        ("AXON_FEDERATION__ENABLED", "true".into()),
        (
            "AXON_FEDERATION__TLS_CERT",
            ca.cert_file.display().to_string(),
        ),
        (
            "AXON_FEDERATION__TLS_KEY",
            ca.key_file.display().to_string(),
        ),
        (
            "AXON_FEDERATION__TLS_CA_FILE",
            ca.ca_file.display().to_string(),
        ),
        ("AXON_FEDERATION__TRUSTED_KEY_SERVERS", "[]".into()),
        ("AXON_FEDERATION__REQUEST_TIMEOUT_SECS", "10".into()),
        ("AXON_OUTBOUND__ALLOW_RANGES", "127.0.0.0/8,::1".into()),
    ]);
    for (k, v) in set {
        env.insert(k.to_owned(), v);
    }
    env
}

/// Starts a federated server on a fresh database; `tweak` edits its settings.
pub async fn start_federated(tweak: impl FnOnce(&mut BTreeMap<String, String>)) -> TestServer {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut env = federation_env(port);
    tweak(&mut env);
    TestServer::start_on(env, fresh_database().await, Some(listener)).await
}

impl TestServer {
    /// This server's name.
    pub fn name(&self) -> String {
        self.hs.config.server_name().to_string()
    }

    /// `https://localhost:<port>`: the federation listener.
    pub fn federation_url(&self) -> String {
        format!(
            "https://localhost:{}",
            self.federation_addr.expect("a federated server").port()
        )
    }
}

/// Client-side reads the federation tests share, each through the client API.
impl TestServer {
    /// `POST /join/{room}?via=` as `token`'s user (an alias's `#` escaped).
    pub async fn join_via(
        &self,
        token: &str,
        room: &str,
        via: &str,
    ) -> (reqwest::StatusCode, serde_json::Value) {
        let room = room.replace('#', "%23");
        self.post(
            &format!("/_matrix/client/v3/join/{room}?via={via}"),
            Some(token),
            serde_json::json!({}),
        )
        .await
    }

    /// `user`'s membership of the room as `token`'s user reads it; None when unreadable.
    pub async fn membership_of(&self, token: &str, room: &str, user: &str) -> Option<String> {
        let (status, body) = self
            .get(
                &format!("/_matrix/client/v3/rooms/{room}/state/m.room.member/{user}"),
                Some(token),
            )
            .await;
        (status == 200).then(|| body["membership"].as_str().unwrap_or_default().to_owned())
    }

    /// Waits until `user`'s membership of the room is `wanted`; fails after 10 s.
    pub async fn waits_for_membership(&self, token: &str, room: &str, user: &str, wanted: &str) {
        for _ in 0..100 {
            if self.membership_of(token, room, user).await.as_deref() == Some(wanted) {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!(
            "{user} never became {wanted} in {room}: {:?}",
            self.membership_of(token, room, user).await
        );
    }

    /// The `next_batch` of a sync now.
    pub async fn next_batch(&self, token: &str) -> String {
        let (status, body) = self
            .get("/_matrix/client/v3/sync?timeout=0", Some(token))
            .await;
        assert_eq!(status, 200, "{body}");
        body["next_batch"].as_str().unwrap().to_owned()
    }

    /// Syncs (from `since`, or initially) until `room` shows under `section` (invite,
    /// join, knock, leave: a room left shows in incremental syncs); returns it.
    pub async fn synced_room(
        &self,
        token: &str,
        section: &str,
        room: &str,
        since: Option<&str>,
    ) -> serde_json::Value {
        let path = match since {
            Some(since) => format!("/_matrix/client/v3/sync?timeout=0&since={since}"),
            None => "/_matrix/client/v3/sync?timeout=0".to_owned(),
        };
        for _ in 0..100 {
            let (status, body) = self.get(&path, Some(token)).await;
            assert_eq!(status, 200, "{body}");
            let entry = &body["rooms"][section][room];
            if entry.is_object() {
                return entry.clone();
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        panic!("{room} never showed under {section}");
    }

    /// Every event of the room `token`'s user can page back to, newest first.
    pub async fn history(&self, token: &str, room: &str) -> Vec<serde_json::Value> {
        let mut events = Vec::new();
        let mut from: Option<String> = None;
        for _ in 0..100 {
            let path = match &from {
                Some(f) => {
                    format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=60&from={f}")
                }
                None => format!("/_matrix/client/v3/rooms/{room}/messages?dir=b&limit=60"),
            };
            let (status, page) = self.get(&path, Some(token)).await;
            assert_eq!(status, 200, "{page}");
            let chunk = page["chunk"].as_array().cloned().unwrap_or_default();
            let end = page["end"].as_str().map(str::to_owned);
            let done = chunk.is_empty() || end.is_none();
            events.extend(chunk);
            if done {
                return events;
            }
            from = end;
        }
        panic!("paging back never ended");
    }

    /// The room's message bodies, newest first.
    pub async fn bodies(&self, token: &str, room: &str) -> Vec<String> {
        self.history(token, room)
            .await
            .iter()
            .filter_map(|e| e["content"]["body"].as_str().map(str::to_owned))
            .collect()
    }

    /// Waits until `body` is among the room's messages; how often it is there (0 if it
    /// never comes within 15 s).
    pub async fn arrives(&self, token: &str, room: &str, body: &str) -> usize {
        for _ in 0..150 {
            let count = self
                .bodies(token, room)
                .await
                .iter()
                .filter(|b| *b == body)
                .count();
            if count > 0 {
                return count;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        0
    }
}
