//! A stand-in application service: it serves the Application Service API's transaction,
//! ping and query endpoints on loopback (checking the homeserver's `hs_token`), keeps
//! what it is sent, and can be taken down (answering 500) and brought back. With it, a
//! registration file for a bridge-like appservice.
//! Include beside `common`: `#[path = "common/appservice.rs"] mod appservice;`.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    path::PathBuf,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
};

use axum::{
    Json, Router,
    extract::{Path, State},
    http::{HeaderMap, StatusCode},
    routing::{get, post, put},
};
use serde_json::{Value, json};

pub const AS_TOKEN: &str = "as-token-of-the-bridge";
pub const HS_TOKEN: &str = "hs-token-of-the-bridge";

#[derive(Default)]
pub struct Seen {
    /// Transactions accepted, by ID, in the order they first came.
    pub transactions: Vec<(String, Value)>,
    /// Every attempt at a transaction ID (retries included).
    pub attempts: usize,
    pub pings: Vec<Value>,
    pub user_queries: Vec<String>,
    pub alias_queries: Vec<String>,
    /// Bodies of the key claims (MSC3983) and key queries (MSC3984) it was sent.
    pub key_claims: Vec<Value>,
    pub key_queries: Vec<Value>,
    pub bad_tokens: usize,
}

/// How the stand-in answers key claims and queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum KeyAnswers {
    /// Keys it keeps for its users (see `key_claim`, `key_query`).
    #[default]
    Keys,
    /// 500.
    Fail,
    /// 404 M_UNRECOGNIZED, as an appservice that does not serve the endpoint.
    Unknown,
}

#[derive(Clone)]
struct Shared {
    seen: Arc<Mutex<Seen>>,
    down: Arc<AtomicBool>,
    hang: Arc<AtomicBool>,
    keys: Arc<Mutex<KeyAnswers>>,
    hs_token: String,
}

pub struct FakeAppservice {
    pub url: String,
    pub seen: Arc<Mutex<Seen>>,
    /// Answer transactions with 500.
    pub down: Arc<AtomicBool>,
    /// Never answer transactions.
    pub hang: Arc<AtomicBool>,
    pub keys: Arc<Mutex<KeyAnswers>>,
    pub id: String,
    pub as_token: String,
    pub hs_token: String,
    /// Its users are `@<prefix>*`, its aliases `#<prefix>*`.
    pub prefix: String,
}

impl FakeAppservice {
    /// The bridge: ID `bridge`, users `@bridge_*`, sender `bridgebot`.
    pub async fn start() -> Self {
        Self::start_named("bridge", AS_TOKEN, HS_TOKEN, "bridge_").await
    }

    pub async fn start_named(id: &str, as_token: &str, hs_token: &str, prefix: &str) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let shared = Shared {
            seen: Arc::default(),
            down: Arc::default(),
            hang: Arc::default(),
            keys: Arc::default(),
            hs_token: hs_token.to_owned(),
        };
        let app = Router::new()
            .route("/_matrix/app/v1/transactions/{txn}", put(transaction))
            .route("/_matrix/app/v1/ping", post(ping))
            .route("/_matrix/app/v1/users/{user}", get(user_query))
            .route("/_matrix/app/v1/rooms/{alias}", get(alias_query))
            .route(
                "/_matrix/app/v1/thirdparty/protocol/{protocol}",
                get(protocol),
            )
            .route(
                "/_matrix/app/v1/thirdparty/location/{protocol}",
                get(location_lookup),
            )
            .route(
                "/_matrix/app/v1/thirdparty/user/{protocol}",
                get(user_lookup),
            )
            .route(
                "/_matrix/app/v1/thirdparty/location",
                get(location_lookup_by_alias),
            )
            .route("/_matrix/app/v1/thirdparty/user", get(user_lookup_by_id))
            .route(
                "/_matrix/app/unstable/org.matrix.msc3983/keys/claim",
                post(key_claim),
            )
            .route(
                "/_matrix/app/unstable/org.matrix.msc3984/keys/query",
                post(key_query),
            )
            .with_state(shared.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Self {
            url,
            seen: shared.seen,
            down: shared.down,
            hang: shared.hang,
            keys: shared.keys,
            id: id.to_owned(),
            as_token: as_token.to_owned(),
            hs_token: hs_token.to_owned(),
            prefix: prefix.to_owned(),
        }
    }

    /// Writes a registration file for this appservice: users `@bridge_*`, aliases
    /// `#bridge_*`, exclusive; sender `bridgebot`; not rate limited.
    pub fn registration(&self, dir: &std::path::Path) -> PathBuf {
        self.registration_with(dir, "")
    }

    /// `registration`, with `extra` YAML lines (e.g. `receive_ephemeral: true`).
    pub fn registration_with(&self, dir: &std::path::Path, extra: &str) -> PathBuf {
        let file = dir.join(format!("{}.yaml", self.id));
        let (id, url, prefix) = (&self.id, &self.url, &self.prefix);
        let (as_token, hs_token) = (&self.as_token, &self.hs_token);
        std::fs::write(
            &file,
            format!(
                "id: {id}\nurl: {url}\nas_token: {as_token}\nhs_token: {hs_token}\n\
                 sender_localpart: {id}bot\nrate_limited: false\n\
                 namespaces:\n  users:\n    - exclusive: true\n      regex: '@{prefix}.*:localhost'\n\
                 \x20 aliases:\n    - exclusive: true\n      regex: '#{prefix}.*:localhost'\n\
                 \x20 rooms: []\n{extra}\n"
            ),
        )
        .unwrap();
        file
    }

    /// Every ephemeral event and to-device message received, in order.
    pub fn ephemeral(&self) -> Vec<Value> {
        self.seen
            .lock()
            .unwrap()
            .transactions
            .iter()
            .flat_map(|(_, body)| {
                let mut all = body["ephemeral"].as_array().cloned().unwrap_or_default();
                all.extend(
                    body["de.sorunome.msc2409.to_device"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default(),
                );
                all
            })
            .collect()
    }

    /// Every event received, in order, each once (retried transactions count once).
    pub fn events(&self) -> Vec<Value> {
        self.seen
            .lock()
            .unwrap()
            .transactions
            .iter()
            .flat_map(|(_, body)| body["events"].as_array().cloned().unwrap_or_default())
            .collect()
    }

    /// Waits (10 s at most) until an event matching `wanted` has arrived.
    pub async fn wait_for(&self, wanted: impl Fn(&Value) -> bool) -> Value {
        for _ in 0..200 {
            if let Some(found) = self.events().into_iter().find(|e| wanted(e)) {
                return found;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("the appservice never got it; it got {:?}", self.events());
    }
}

fn authorized(s: &Shared, headers: &HeaderMap) -> bool {
    let ok = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {}", s.hs_token));
    if !ok {
        s.seen.lock().unwrap().bad_tokens += 1;
    }
    ok
}

async fn transaction(
    State(s): State<Shared>,
    Path(txn): Path<String>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if !authorized(&s, &headers) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"errcode": "M_FORBIDDEN"})),
        );
    }
    if s.hang.load(Ordering::SeqCst) {
        tokio::time::sleep(std::time::Duration::from_secs(120)).await;
    }
    let mut seen = s.seen.lock().unwrap();
    seen.attempts += 1;
    if s.down.load(Ordering::SeqCst) {
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({})));
    }
    // As the spec asks of appservices: a transaction ID seen before is not applied again.
    if !seen.transactions.iter().any(|(id, _)| *id == txn) {
        seen.transactions.push((txn, body));
    }
    (StatusCode::OK, Json(json!({})))
}

async fn ping(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if !authorized(&s, &headers) {
        return (
            StatusCode::FORBIDDEN,
            Json(json!({"errcode": "M_FORBIDDEN"})),
        );
    }
    if s.down.load(Ordering::SeqCst) {
        return (StatusCode::SERVICE_UNAVAILABLE, Json(json!({})));
    }
    s.seen.lock().unwrap().pings.push(body);
    (StatusCode::OK, Json(json!({})))
}

async fn user_query(
    State(s): State<Shared>,
    Path(user): Path<String>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    if !authorized(&s, &headers) {
        return (StatusCode::FORBIDDEN, Json(json!({})));
    }
    s.seen.lock().unwrap().user_queries.push(user);
    (
        StatusCode::NOT_FOUND,
        Json(json!({"errcode": "M_NOT_FOUND"})),
    )
}

async fn alias_query(
    State(s): State<Shared>,
    Path(alias): Path<String>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    if !authorized(&s, &headers) {
        return (StatusCode::FORBIDDEN, Json(json!({})));
    }
    s.seen.lock().unwrap().alias_queries.push(alias);
    (
        StatusCode::NOT_FOUND,
        Json(json!({"errcode": "M_NOT_FOUND"})),
    )
}

/// The `chat` protocol: one network, `chatnet`.
async fn protocol(
    State(s): State<Shared>,
    Path(protocol): Path<String>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    if !authorized(&s, &headers) || protocol != "chat" {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({"errcode": "M_NOT_FOUND"})),
        );
    }
    (
        StatusCode::OK,
        Json(json!({
            "user_fields": ["nick"],
            "location_fields": ["room"],
            "icon": "mxc://localhost/chat",
            "field_types": {
                "nick": {"regexp": "\\w+", "placeholder": "nick"},
                "room": {"regexp": "\\w+", "placeholder": "room"}
            },
            "instances": [{"desc": "Chat network", "network_id": "chatnet", "fields": {}}]
        })),
    )
}

/// Echoes the query: the location `#bridge_<room>:localhost`.
async fn location_lookup(
    State(s): State<Shared>,
    Path(protocol): Path<String>,
    axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    if !authorized(&s, &headers) {
        return (StatusCode::FORBIDDEN, Json(json!({})));
    }
    let room = q.get("room").cloned().unwrap_or_default();
    (
        StatusCode::OK,
        Json(
            json!([{"alias": format!("#bridge_{room}:localhost"), "protocol": protocol,
                     "fields": {"room": room}}]),
        ),
    )
}

async fn user_lookup(
    State(s): State<Shared>,
    Path(protocol): Path<String>,
    axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    if !authorized(&s, &headers) {
        return (StatusCode::FORBIDDEN, Json(json!({})));
    }
    let nick = q.get("nick").cloned().unwrap_or_default();
    (
        StatusCode::OK,
        Json(
            json!([{"userid": format!("@bridge_{nick}:localhost"), "protocol": protocol,
                     "fields": {"nick": nick}}]),
        ),
    )
}

async fn location_lookup_by_alias(
    State(s): State<Shared>,
    axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    if !authorized(&s, &headers) {
        return (StatusCode::FORBIDDEN, Json(json!({})));
    }
    let alias = q.get("alias").cloned().unwrap_or_default();
    (
        StatusCode::OK,
        Json(json!([{"alias": alias, "protocol": "chat", "fields": {"room": "lobby"}}])),
    )
}

async fn user_lookup_by_id(
    State(s): State<Shared>,
    axum::extract::Query(q): axum::extract::Query<BTreeMap<String, String>>,
    headers: HeaderMap,
) -> (StatusCode, Json<Value>) {
    if !authorized(&s, &headers) {
        return (StatusCode::FORBIDDEN, Json(json!({})));
    }
    let user = q.get("userid").cloned().unwrap_or_default();
    (
        StatusCode::OK,
        Json(json!([{"userid": user, "protocol": "chat", "fields": {"nick": "bob"}}])),
    )
}

/// The answer the stand-in is set to give to a key request, if not its keys.
fn key_answer_override(s: &Shared, headers: &HeaderMap) -> Option<(StatusCode, Json<Value>)> {
    if !authorized(s, headers) {
        return Some((StatusCode::FORBIDDEN, Json(json!({}))));
    }
    match *s.keys.lock().unwrap() {
        KeyAnswers::Keys => None,
        KeyAnswers::Fail => Some((StatusCode::INTERNAL_SERVER_ERROR, Json(json!({})))),
        KeyAnswers::Unknown => Some((
            StatusCode::NOT_FOUND,
            Json(json!({"errcode": "M_UNRECOGNIZED", "error": "Unknown endpoint"})),
        )),
    }
}

/// MSC3983: one key `<algorithm>:AS<n>` per requested (device, algorithm), counting up.
async fn key_claim(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    s.seen.lock().unwrap().key_claims.push(body.clone());
    if let Some(answer) = key_answer_override(&s, &headers) {
        return answer;
    }
    let mut out = json!({});
    let mut n = s.seen.lock().unwrap().key_claims.len() * 100;
    for (user, devices) in body.as_object().into_iter().flatten() {
        for (device, algorithms) in devices.as_object().into_iter().flatten() {
            for algorithm in algorithms.as_array().into_iter().flatten() {
                n += 1;
                let id = format!("{}:AS{n}", algorithm.as_str().unwrap_or_default());
                out[user][device][id] = json!({"key": format!("bridge-key-{n}"), "signatures": {}});
            }
        }
    }
    (StatusCode::OK, Json(out))
}

/// MSC3984: a device `BRIDGEDEV` and a master key for every user asked about; also keys
/// nobody asked for (another user, a device under the wrong ID), which must be ignored.
async fn key_query(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    s.seen.lock().unwrap().key_queries.push(body.clone());
    if let Some(answer) = key_answer_override(&s, &headers) {
        return answer;
    }
    let mut out = json!({
        "device_keys": {"@human:localhost": {"EVIL": {
            "user_id": "@human:localhost", "device_id": "EVIL",
            "algorithms": ["m.olm.v1.curve25519-aes-sha2"], "keys": {}}}},
        "master_keys": {},
    });
    for user in body.as_object().into_iter().flatten().map(|(u, _)| u) {
        out["device_keys"][user] = json!({
            "BRIDGEDEV": {
                "user_id": user, "device_id": "BRIDGEDEV",
                "algorithms": ["m.olm.v1.curve25519-aes-sha2", "m.megolm.v1.aes-sha2"],
                "keys": {"curve25519:BRIDGEDEV": "bridge-curve", "ed25519:BRIDGEDEV": "bridge-ed"},
                "signatures": {}
            },
            "MISLABELLED": {"user_id": user, "device_id": "OTHER", "keys": {}}
        });
        out["master_keys"][user] = json!({
            "user_id": user, "usage": ["master"], "keys": {"ed25519:bridge-master": "bridge-master"}
        });
    }
    (StatusCode::OK, Json(out))
}

/// Config env for a server with these registration files.
pub fn env_with(files: &[PathBuf]) -> BTreeMap<String, String> {
    let list = files
        .iter()
        .map(|f| format!("\"{}\"", f.display()))
        .collect::<Vec<_>>()
        .join(",");
    BTreeMap::from([(
        "AXON_APPSERVICES__CONFIG_FILES".to_owned(),
        format!("[{list}]"),
    )])
}
