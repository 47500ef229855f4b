//! The homeserver client the scenarios use: registration, rooms, sends, sync.

use std::{
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use serde_json::{Value, json};

pub type Res<T> = Result<T, String>;

#[derive(Clone)]
pub struct Server {
    base: String,
    http: reqwest::Client,
    /// Makes user names unique per run, so a server can be benchmarked again.
    run: String,
    txn: Arc<AtomicU64>,
}

#[derive(Clone)]
pub struct User {
    pub id: String,
    pub token: String,
}

impl Server {
    pub fn new(base: &str) -> Self {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(512)
            .timeout(Duration::from_secs(120))
            .build()
            .expect("HTTP client");
        let run = format!("{:x}", std::process::id() ^ (now_ms() as u32));
        Self {
            base: base.trim_end_matches('/').to_owned(),
            http,
            run,
            txn: Arc::new(AtomicU64::new(0)),
        }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Res<(u16, Value)> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().await.map_err(|e| format!("{path}: {e}"))?;
        let status = res.status().as_u16();
        let body = res.json().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    pub async fn ok(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<&Value>,
    ) -> Res<Value> {
        let (status, res) = self.call(method, path, token, body).await?;
        if status == 200 {
            Ok(res)
        } else {
            Err(format!("{path}: {status} {res}"))
        }
    }

    /// Registers through the dummy stage, as a client would.
    pub async fn register(&self, name: &str) -> Res<User> {
        let username = format!("bench{}{name}", self.run);
        let mut body = json!({ "username": username, "password": "bench-password-1234",
                               "initial_device_display_name": "axon-bench" });
        let (status, res) = self
            .call(
                reqwest::Method::POST,
                "/_matrix/client/v3/register",
                None,
                Some(&body),
            )
            .await?;
        let res = if status == 401 {
            body["auth"] = json!({ "type": "m.login.dummy", "session": res["session"] });
            self.ok(
                reqwest::Method::POST,
                "/_matrix/client/v3/register",
                None,
                Some(&body),
            )
            .await?
        } else if status == 200 {
            res
        } else {
            return Err(format!("register: {status} {res}"));
        };
        Ok(User {
            id: res["user_id"].as_str().unwrap_or_default().to_owned(),
            token: res["access_token"].as_str().unwrap_or_default().to_owned(),
        })
    }

    pub async fn create_room(&self, u: &User, invite: &[&User]) -> Res<String> {
        let ids: Vec<&str> = invite.iter().map(|i| i.id.as_str()).collect();
        let res = self
            .ok(
                reqwest::Method::POST,
                "/_matrix/client/v3/createRoom",
                Some(&u.token),
                Some(&json!({ "preset": "private_chat", "invite": ids })),
            )
            .await?;
        Ok(res["room_id"].as_str().unwrap_or_default().to_owned())
    }

    pub async fn join(&self, u: &User, room: &str) -> Res<()> {
        self.ok(
            reqwest::Method::POST,
            &format!("/_matrix/client/v3/join/{room}"),
            Some(&u.token),
            Some(&json!({})),
        )
        .await
        .map(|_| ())
    }

    /// Sends an event; its ID and how long the server took.
    pub async fn send(
        &self,
        u: &User,
        room: &str,
        event_type: &str,
        content: &Value,
    ) -> Res<(String, Duration)> {
        let txn = self.txn.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        let res = self
            .ok(
                reqwest::Method::PUT,
                &format!(
                    "/_matrix/client/v3/rooms/{room}/send/{event_type}/b{}t{txn}",
                    self.run
                ),
                Some(&u.token),
                Some(content),
            )
            .await?;
        Ok((
            res["event_id"].as_str().unwrap_or_default().to_owned(),
            started.elapsed(),
        ))
    }

    pub async fn sync(&self, u: &User, since: Option<&str>, timeout_ms: u64) -> Res<Value> {
        let mut path = format!("/_matrix/client/v3/sync?timeout={timeout_ms}");
        if let Some(s) = since {
            path.push_str(&format!("&since={s}"));
        }
        self.ok(reqwest::Method::GET, &path, Some(&u.token), None)
            .await
    }
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}
