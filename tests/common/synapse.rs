//! A real Synapse (1.163.2 from PyPI, tests/clients/synapse/requirements.txt, in a venv
//! cached in the target dir) as the other server of the federation bench: named
//! `localhost:<port>` after its TLS federation listener, with a certificate of the test
//! CA, trusting that CA, loopback allowed, SQLite, open registration and rate limits out
//! of the way. Include with `#[path]` beside `common`, `federation`, `cli` and
//! `client_run`. If Synapse cannot be installed or started, the test fails saying so.
#![allow(dead_code)]

use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::{
    client_run::{python_env, run_bounded, show},
    federation::TestCa,
};

const REQUIREMENTS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/clients/synapse/requirements.txt"
);

pub struct Synapse {
    /// `localhost:<federation port>`
    pub name: String,
    /// `http://127.0.0.1:<client port>`
    pub base: String,
    pub http: reqwest::Client,
    child: Child,
    dir: tempfile::TempDir,
}

impl Drop for Synapse {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Rate limits high enough that a test never meets them.
fn unlimited() -> Value {
    json!({"per_second": 10000, "burst_count": 10000})
}

fn config(dir: &Path, federation_port: u16, client_port: u16) -> Value {
    let ca = TestCa::get();
    let (cert, key) = ca.leaf(&["localhost", "127.0.0.1"]);
    std::fs::write(dir.join("tls.crt"), cert).unwrap();
    std::fs::write(dir.join("tls.key"), key).unwrap();
    let path = |name: &str| dir.join(name).display().to_string();
    json!({
        "server_name": format!("localhost:{federation_port}"),
        "pid_file": path("synapse.pid"),
        "listeners": [
            {"port": federation_port, "bind_addresses": ["127.0.0.1"], "type": "http",
             "tls": true, "resources": [{"names": ["federation"], "compress": false}]},
            {"port": client_port, "bind_addresses": ["127.0.0.1"], "type": "http",
             "tls": false, "resources": [{"names": ["client"], "compress": false}]},
        ],
        "tls_certificate_path": path("tls.crt"),
        "tls_private_key_path": path("tls.key"),
        "federation_custom_ca_list": [ca.ca_file.display().to_string()],
        "federation_verify_certificates": true,
        "ip_range_whitelist": ["127.0.0.0/8", "::1/128"],
        "trusted_key_servers": [],
        "suppress_key_server_warning": true,
        "database": {"name": "sqlite3", "args": {"database": path("homeserver.db")}},
        "media_store_path": path("media"),
        "signing_key_path": path("signing.key"),
        "report_stats": false,
        "enable_metrics": false,
        "enable_registration": true,
        "enable_registration_without_verification": true,
        "registration_shared_secret": "synapse test secret",
        "macaroon_secret_key": "synapse test macaroon secret",
        "form_secret": "synapse test form secret",
        "allow_public_rooms_over_federation": true,
        "room_list_publication_rules": [{"action": "allow"}],
        "rc_message": unlimited(),
        "rc_registration": unlimited(),
        "rc_login": {"address": unlimited(), "account": unlimited(), "failed_attempts": unlimited()},
        "rc_joins": {"local": unlimited(), "remote": unlimited()},
        "rc_joins_per_room": unlimited(),
        "rc_invites": {"per_room": unlimited(), "per_user": unlimited(), "per_issuer": unlimited()},
        "rc_3pid_validation": unlimited(),
        "rc_federation": {"window_size": 1000, "sleep_limit": 10000, "sleep_delay": 0,
                          "reject_limit": 10000, "concurrent": 100},
        "federation_rr_transactions_per_room_per_second": 10000,
    })
}

impl Synapse {
    /// Installs (first time) and starts a Synapse; returns once it answers clients.
    pub async fn start() -> Synapse {
        tokio::task::spawn_blocking(Self::spawn)
            .await
            .unwrap()
            .wait_until_ready()
            .await
    }

    fn spawn() -> Synapse {
        let python = python_env("synapse", Path::new(REQUIREMENTS));
        let dir = tempfile::tempdir().unwrap();
        let federation_port = free_port();
        let client_port = free_port();
        let config_file = dir.path().join("homeserver.yaml");
        // JSON is YAML.
        std::fs::write(
            &config_file,
            serde_json::to_vec_pretty(&config(dir.path(), federation_port, client_port)).unwrap(),
        )
        .unwrap();
        let mut keys = Command::new(&python);
        keys.args([
            "-m",
            "synapse.app.homeserver",
            "--generate-keys",
            "--config-path",
        ])
        .arg(&config_file);
        let out = run_bounded(keys, Duration::from_secs(120), "synapse --generate-keys");
        assert!(
            out.status.success(),
            "Synapse could not make its keys: {}",
            show(&out)
        );
        let log = std::fs::File::create(dir.path().join("synapse.log")).unwrap();
        let child = Command::new(&python)
            .args(["-m", "synapse.app.homeserver", "--config-path"])
            .arg(&config_file)
            .env("PYTHONDONTWRITEBYTECODE", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .expect("start Synapse");
        Synapse {
            name: format!("localhost:{federation_port}"),
            base: format!("http://127.0.0.1:{client_port}"),
            http: reqwest::Client::new(),
            child,
            dir,
        }
    }

    async fn wait_until_ready(mut self) -> Synapse {
        let started = Instant::now();
        let url = format!("{}/_matrix/client/versions", self.base);
        while started.elapsed() < Duration::from_secs(180) {
            if let Ok(r) = self.http.get(&url).send().await
                && r.status().is_success()
            {
                return self;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("Synapse exited ({status}):\n{}", self.log_tail());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        panic!("Synapse did not start within 180 s:\n{}", self.log_tail());
    }

    pub fn log_file(&self) -> PathBuf {
        self.dir.path().join("synapse.log")
    }

    /// The last lines of Synapse's log, for a failure message.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log_file()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(80)..].join("\n")
    }

    pub async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let res = req.send().await.expect("request to Synapse");
        let status = res.status();
        let text = res.text().await.unwrap();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(Method::GET, path, token, None).await
    }

    pub async fn post(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::POST, path, token, Some(body)).await
    }

    pub async fn put(&self, path: &str, token: Option<&str>, body: Value) -> (StatusCode, Value) {
        self.call(Method::PUT, path, token, Some(body)).await
    }

    /// Registers a user (the dummy auth stage); (access token, user ID).
    pub async fn register(&self, username: &str) -> (String, String) {
        let body = json!({"username": username, "password": "correct horse battery"});
        let (status, first) = self
            .post("/_matrix/client/v3/register", None, body.clone())
            .await;
        let answer = if status == StatusCode::UNAUTHORIZED {
            let mut body = body;
            body["auth"] = json!({"type": "m.login.dummy", "session": first["session"]});
            let (status, answer) = self.post("/_matrix/client/v3/register", None, body).await;
            assert_eq!(status, 200, "Synapse register: {answer}");
            answer
        } else {
            assert_eq!(status, 200, "Synapse register: {first}");
            first
        };
        (
            answer["access_token"].as_str().unwrap().to_owned(),
            answer["user_id"].as_str().unwrap().to_owned(),
        )
    }
}
