//! Test harness: one private PostgreSQL cluster per test process (started with axon's own
//! embedded-cluster code, stopped at exit), a migrated template database, and a fresh
//! database cloned from it for every test server.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{
        Arc, OnceLock,
        atomic::{AtomicU32, Ordering},
    },
};

use axon::{
    config::Config,
    server::Homeserver,
    storage::{EmbeddedPostgres, Storage},
};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sqlx::{AssertSqlSafe, Executor, postgres::PgConnectOptions};

struct Cluster {
    pg: EmbeddedPostgres,
    dir: PathBuf,
}

static CLUSTER: OnceLock<Cluster> = OnceLock::new();
static DB_COUNTER: AtomicU32 = AtomicU32::new(0);
const TEMPLATE: &str = "axon_template";

extern "C" fn stop_cluster() {
    if let Some(c) = CLUSTER.get() {
        let _ = c.pg.stop();
        let _ = std::fs::remove_dir_all(&c.dir);
    }
}

fn cluster() -> &'static Cluster {
    CLUSTER.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("axon-test-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        // /tmp is world-traversable, so the cluster can run as `postgres` when we are root.
        let pg = EmbeddedPostgres::start_with(&dir, false).expect("start test PostgreSQL");
        // A fresh thread: the caller may already be inside a runtime.
        let options = pg.connect_options();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            rt.block_on(async {
                let admin = Storage::connect(options.clone(), 1).await.unwrap();
                drop(admin);
                let mut conn: sqlx::PgConnection = sqlx::ConnectOptions::connect(&options)
                    .await
                    .expect("connect admin");
                conn.execute(AssertSqlSafe(format!("CREATE DATABASE {TEMPLATE}")))
                    .await
                    .unwrap();
                let template = Storage::connect(options.clone().database(TEMPLATE), 1)
                    .await
                    .unwrap();
                template.migrate().await.expect("migrate template");
                template.close().await;
            })
        })
        .join()
        .expect("template setup");
        // SAFETY: registering a plain extern "C" function.
        unsafe { libc::atexit(stop_cluster) };
        Cluster { pg, dir }
    })
}

/// A fresh, migrated database for one test.
pub async fn fresh_database() -> PgConnectOptions {
    let cluster = cluster();
    let options = cluster.pg.connect_options();
    let name = format!(
        "t{}_{}",
        std::process::id(),
        DB_COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let mut conn: sqlx::PgConnection = sqlx::ConnectOptions::connect(&options).await.unwrap();
    conn.execute(AssertSqlSafe(format!(
        "CREATE DATABASE {name} TEMPLATE {TEMPLATE}"
    )))
    .await
    .expect("create test database");
    options.database(&name)
}

/// Binds `addr` again after a restart, waiting briefly while the old socket closes.
async fn rebind(addr: &str) -> tokio::net::TcpListener {
    for _ in 0..100 {
        if let Ok(listener) = tokio::net::TcpListener::bind(addr).await {
            return listener;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("cannot bind {addr} again");
}

/// Settings a test may change from the defaults (open registration, no rate limits).
pub fn test_env() -> BTreeMap<String, String> {
    [
        ("AXON_SERVER_NAME", "localhost"),
        ("AXON_REGISTRATION__MODE", "open"),
        ("AXON_RATE_LIMITS__ENABLED", "false"),
        ("AXON_LISTEN__CLIENT", "127.0.0.1:0"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .chain(std::iter::once((
        "AXON_MEDIA__PATH".to_owned(),
        // Media files of this test process (IDs are random, so servers can share it).
        std::env::temp_dir()
            .join(format!("axon-test-media-{}", std::process::id()))
            .display()
            .to_string(),
    )))
    .collect()
}

pub struct TestServer {
    pub base: String,
    pub hs: Arc<Homeserver>,
    pub http: reqwest::Client,
    pub db: PgConnectOptions,
    pub addr: SocketAddr,
    /// The federation listener's address (federated test servers only).
    pub federation_addr: Option<SocketAddr>,
    env: BTreeMap<String, String>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    served: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// Starts a server on an ephemeral port with its own database; `tweak` edits the env.
    pub async fn start_with(tweak: impl FnOnce(&mut BTreeMap<String, String>)) -> Self {
        let mut env = test_env();
        tweak(&mut env);
        Self::start_on(env, fresh_database().await, None).await
    }

    /// A second axon process on this server's database (as behind a load balancer).
    pub async fn another_process(&self) -> Self {
        let mut env = self.env.clone();
        env.remove("AXON_LISTEN__FEDERATION");
        Self::start_on(env, self.db.clone(), None).await
    }

    /// Stops this server and starts a new one on the same database, as a restart would.
    pub async fn restart(mut self) -> Self {
        let db = self.db.clone();
        // As a process stopping: it finishes serving (and gives back what it holds) first.
        self.shut_down().await;
        self.hs.storage.close().await;
        let env = std::mem::take(&mut self.env);
        // A federated server keeps its port: it is part of its name.
        let federation = match env.get("AXON_LISTEN__FEDERATION") {
            Some(addr) => Some(rebind(addr).await),
            None => None,
        };
        Self::start_on(env, db, federation).await
    }

    pub(crate) async fn start_on(
        env: BTreeMap<String, String>,
        db: PgConnectOptions,
        federation: Option<tokio::net::TcpListener>,
    ) -> Self {
        let config = Config::load_from(None, &env).expect("test config");
        let kept_env = env.clone();
        let storage = Storage::connect(db.clone(), 4).await.unwrap();
        let hs = Homeserver::new(config, storage).await.expect("homeserver");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr: SocketAddr = listener.local_addr().unwrap();
        let federation_addr = federation.as_ref().map(|l| l.local_addr().unwrap());
        let listeners = axon::run::Listeners {
            client: listener,
            federation,
        };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let served = tokio::spawn(axon::run::serve_on(listeners, hs.clone(), async move {
            let _ = rx.await;
        }));
        Self {
            base: format!("http://{addr}"),
            hs,
            http: reqwest::Client::new(),
            db,
            addr,
            federation_addr,
            env: kept_env,
            shutdown: Some(tx),
            served: Some(served),
        }
    }

    /// Shuts the server down as SIGTERM does and waits until it has stopped serving.
    pub async fn shut_down(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(served) = self.served.take() {
            served.await.expect("serve task").expect("serve");
        }
    }

    /// Runs SQL against this server's database, to stage what tests cannot reach through
    /// the API (time passing, for one).
    pub async fn sql(&self, statement: &str) {
        let mut conn: sqlx::PgConnection = sqlx::ConnectOptions::connect(&self.db).await.unwrap();
        conn.execute(AssertSqlSafe(statement.to_owned()))
            .await
            .unwrap();
    }

    /// Sends a request; returns status and JSON body (Null when the body is not JSON).
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
        let res = req.send().await.expect("request");
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

    pub async fn delete(
        &self,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        self.call(Method::DELETE, path, token, body).await
    }

    /// Registers through the dummy UIA flow; returns (access_token, device_id).
    /// Sends an `m.room.message` with `content` (must succeed); its event ID.
    pub async fn send_message(&self, token: &str, room: &str, txn: &str, content: Value) -> String {
        let (status, res) = self
            .put(
                &format!("/_matrix/client/v3/rooms/{room}/send/m.room.message/{txn}"),
                Some(token),
                content,
            )
            .await;
        assert_eq!(status, 200, "{res}");
        res["event_id"].as_str().unwrap().to_owned()
    }

    pub async fn register(&self, username: &str, password: &str) -> (String, String) {
        let (status, body) = self
            .post(
                "/_matrix/client/v3/register",
                None,
                json!({"username": username, "password": password}),
            )
            .await;
        assert_eq!(status, 401, "{body}");
        let session = body["session"].as_str().unwrap().to_owned();
        let (status, body) = self
            .post(
                "/_matrix/client/v3/register",
                None,
                json!({
                    "username": username,
                    "password": password,
                    "auth": {"type": "m.login.dummy", "session": session}
                }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        (
            body["access_token"].as_str().unwrap().to_owned(),
            body["device_id"].as_str().unwrap().to_owned(),
        )
    }

    /// `POST /createRoom` with `body`, which must succeed; the room ID.
    pub async fn create_room(&self, token: &str, body: Value) -> String {
        let (status, res) = self
            .post("/_matrix/client/v3/createRoom", Some(token), body)
            .await;
        assert_eq!(status, 200, "{res}");
        res["room_id"].as_str().unwrap().to_owned()
    }

    /// `POST /join/{room}`, which must succeed.
    pub async fn join(&self, token: &str, room: &str) {
        let (status, res) = self
            .post(
                &format!("/_matrix/client/v3/join/{room}"),
                Some(token),
                json!({}),
            )
            .await;
        assert_eq!(status, 200, "{res}");
    }

    /// Alice's public room, joined by bob: (alice's token, bob's token, room ID).
    pub async fn alice_and_bob_in_a_room(&self) -> (String, String, String) {
        let (alice, _) = self.register("alice", "password-alice").await;
        let (bob, _) = self.register("bob", "password-bob").await;
        let room = self
            .create_room(&alice, json!({"preset": "public_chat"}))
            .await;
        self.join(&bob, &room).await;
        (alice, bob, room)
    }

    pub async fn login(&self, username: &str, password: &str) -> (StatusCode, Value) {
        self.post(
            "/_matrix/client/v3/login",
            None,
            json!({
                "type": "m.login.password",
                "identifier": {"type": "m.id.user", "user": username},
                "password": password
            }),
        )
        .await
    }

    /// Logs in and returns (access_token, device_id).
    pub async fn login_ok(&self, username: &str, password: &str) -> (String, String) {
        let (status, body) = self.login(username, password).await;
        assert_eq!(status, 200, "{body}");
        (
            body["access_token"].as_str().unwrap().to_owned(),
            body["device_id"].as_str().unwrap().to_owned(),
        )
    }
}

/// Asserts an error response's status and errcode.
#[track_caller]
pub fn assert_error(result: &(StatusCode, Value), status: u16, errcode: &str) {
    assert_eq!(
        result.0.as_u16(),
        status,
        "unexpected status, body: {}",
        result.1
    );
    assert_eq!(
        result.1["errcode"], errcode,
        "unexpected errcode, body: {}",
        result.1
    );
    assert!(
        result.1["error"].is_string(),
        "error message missing: {}",
        result.1
    );
}
