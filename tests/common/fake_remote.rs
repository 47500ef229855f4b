//! A stand-in for another homeserver, for the transport tests that need to send what no
//! real server would (forged signatures, oversized transactions, bad hashes) or to see
//! exactly what axon sends: it serves its signing key and `PUT /send` (verifying axon's
//! X-Matrix signature with axon's published key, and recording each transaction) and
//! `get_missing_events` (answering with the events a test gives it), over TLS from the
//! test CA, on loopback as `localhost:<port>`.
//! Include beside `common` and `federation`:
//! `#[path = "common/fake_remote.rs"] mod fake_remote;`.
#![allow(dead_code)]

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    body::Bytes,
    extract::{Request, State},
    http::StatusCode,
    routing::{get, post, put},
};
use ruma::{
    CanonicalJsonObject, CanonicalJsonValue, ServerName,
    api::federation::authentication::{XMatrix, XMatrixSigningInput},
    room_version_rules::{EventIdFormatVersion, EventsReferenceFormatVersion, RoomVersionRules},
    serde::Base64,
    signatures::{Ed25519KeyPair, PublicKeyMap},
};
use serde_json::{Value, json};

use super::federation::TestCa;

/// Event ID -> (state IDs before it, auth chain IDs), as `/state_ids` answers.
pub type StateIdsTable = Arc<Mutex<BTreeMap<String, (Vec<String>, Vec<String>)>>>;

/// (method, path prefix, JSON body) answers of a stand-in server.
pub type Canned = Arc<Mutex<Vec<(String, String, Value)>>>;

pub struct FakeRemote {
    pub name: String,
    pub port: u16,
    pub pair: Arc<Ed25519KeyPair>,
    /// `ed25519:<version>`
    pub key_id: String,
    /// Bodies of the transactions received, in order.
    pub received: Arc<Mutex<Vec<Value>>>,
    /// What `get_missing_events` answers.
    pub missing: Arc<Mutex<Vec<Value>>>,
    /// Events `/event/{id}` answers, by ID.
    pub events: Arc<Mutex<BTreeMap<String, Value>>>,
    /// What `/state_ids?event_id=` answers, by event: (state IDs, auth chain IDs).
    pub state_ids: StateIdsTable,
    /// Answers to other requests: (method, path prefix, body), the first match wins;
    /// anything else is 404 M_UNRECOGNIZED.
    pub canned: Canned,
    /// Bodies of the v1 invites received (the only invite form it serves: it signs the
    /// event, of a v11 room, and answers `[200, {"event": ...}]`, as servers before v2
    /// did).
    pub invites_v1: Arc<Mutex<Vec<Value>>>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Clone)]
struct Shared {
    name: String,
    pair: Arc<Ed25519KeyPair>,
    valid_until_ts: i64,
    received: Arc<Mutex<Vec<Value>>>,
    missing: Arc<Mutex<Vec<Value>>>,
    events: Arc<Mutex<BTreeMap<String, Value>>>,
    state_ids: StateIdsTable,
    canned: Canned,
    invites_v1: Arc<Mutex<Vec<Value>>>,
}

fn now() -> i64 {
    axon::server::now_ms()
}

pub fn new_key(version: &str) -> Arc<Ed25519KeyPair> {
    let doc = Ed25519KeyPair::generate();
    Arc::new(Ed25519KeyPair::from_der(&doc, version.into()).unwrap())
}

impl FakeRemote {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        Self::start_on(listener, new_key("fake"), now() + 3_600_000).await
    }

    /// A reserved port, for a server that starts later (down at first).
    pub async fn reserve() -> (tokio::net::TcpListener, u16) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        (listener, port)
    }

    /// Serves on `listener` with `pair`, publishing it valid until `valid_until_ts`.
    pub async fn start_on(
        listener: tokio::net::TcpListener,
        pair: Arc<Ed25519KeyPair>,
        valid_until_ts: i64,
    ) -> Self {
        let port = listener.local_addr().unwrap().port();
        let name = format!("localhost:{port}");
        let shared = Shared {
            name: name.clone(),
            pair: pair.clone(),
            valid_until_ts,
            received: Arc::default(),
            missing: Arc::default(),
            events: Arc::default(),
            state_ids: Arc::default(),
            canned: Arc::default(),
            invites_v1: Arc::default(),
        };
        let app = Router::new()
            .route("/_matrix/key/v2/server", get(key_document))
            .route("/_matrix/federation/v1/send/{txn}", put(transaction))
            .route(
                "/_matrix/federation/v1/get_missing_events/{room}",
                post(missing_events),
            )
            .route("/_matrix/federation/v1/event/{id}", get(event))
            .route("/_matrix/federation/v1/state_ids/{room}", get(state_ids))
            .route(
                "/_matrix/federation/v1/invite/{room}/{event}",
                put(invite_v1),
            )
            .fallback(canned_answer)
            .with_state(shared.clone());
        let tx = super::federation::serve_tls(listener, app);
        Self {
            name,
            port,
            key_id: format!("ed25519:{}", pair.version()),
            pair,
            received: shared.received,
            missing: shared.missing,
            events: shared.events,
            state_ids: shared.state_ids,
            canned: shared.canned,
            invites_v1: shared.invites_v1,
            shutdown: Some(tx),
        }
    }

    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }

    /// This server's keys as a PublicKeyMap.
    pub fn keys(&self) -> PublicKeyMap {
        BTreeMap::from([(
            self.name.clone(),
            BTreeMap::from([(
                self.key_id.clone(),
                Base64::new(self.pair.public_key().to_vec()),
            )]),
        )])
    }

    /// An X-Matrix header for a request from this server, signed with `pair`.
    pub fn authorization(
        &self,
        pair: &Ed25519KeyPair,
        method: &str,
        uri: &str,
        destination: &str,
        body: Option<&Value>,
    ) -> String {
        let mut request = http::Request::builder().method(method).uri(uri);
        request = request.header("content-type", "application/json");
        let bytes = body
            .map(|b| serde_json::to_vec(b).unwrap())
            .unwrap_or_default();
        let request = request.body(bytes).unwrap();
        let input = XMatrixSigningInput::new(
            ServerName::parse(&self.name).unwrap(),
            ServerName::parse(destination).unwrap(),
            pair,
        );
        let xmatrix = XMatrix::sign_http_request(&request, input).unwrap();
        xmatrix.to_string()
    }

    /// Sends a request signed by this server to `target`'s federation listener.
    pub async fn request(
        &self,
        target: &super::common::TestServer,
        method: &str,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let auth = self.authorization(&self.pair, method, path, &target.name(), body.as_ref());
        self.request_with(target, method, path, body, Some(auth))
            .await
    }

    /// Sends a request with the given Authorization header (or none).
    pub async fn request_with(
        &self,
        target: &super::common::TestServer,
        method: &str,
        path: &str,
        body: Option<Value>,
        authorization: Option<String>,
    ) -> (StatusCode, Value) {
        let client = TestCa::get().client();
        let url = format!("{}{path}", target.federation_url());
        let mut request = client.request(method.parse().unwrap(), url);
        if let Some(auth) = authorization {
            request = request.header("authorization", auth);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// Sends `raw` as the body (whatever it is) with the given Authorization header.
    pub async fn request_raw(
        &self,
        target: &super::common::TestServer,
        method: &str,
        path: &str,
        raw: &str,
        authorization: String,
    ) -> (StatusCode, Value) {
        let client = TestCa::get().client();
        let url = format!("{}{path}", target.federation_url());
        let response = client
            .request(method.parse().unwrap(), url)
            .header("authorization", authorization)
            .header("content-type", "application/json")
            .body(raw.to_owned())
            .send()
            .await
            .unwrap();
        let status = StatusCode::from_u16(response.status().as_u16()).unwrap();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    /// A PDU from `sender` (a user of this server), signed by this server.
    pub fn pdu(
        &self,
        room_id: &str,
        rules: &RoomVersionRules,
        draft: Draft<'_>,
    ) -> CanonicalJsonObject {
        let refs = |ids: &[String]| -> Value {
            match rules.events_reference_format {
                EventsReferenceFormatVersion::V1 => ids.iter().map(|id| json!([id, {}])).collect(),
                _ => json!(ids),
            }
        };
        let mut pdu = json!({
            "room_id": room_id, "sender": draft.sender, "type": draft.kind,
            "content": draft.content, "prev_events": refs(&draft.prev),
            "auth_events": refs(&draft.auth), "depth": draft.depth,
            "origin_server_ts": now(),
        });
        if let Some(key) = draft.state_key {
            pdu["state_key"] = json!(key);
        }
        if rules.event_id_format == EventIdFormatVersion::V1 {
            pdu["event_id"] = json!(format!("${}:{}", now(), self.name));
        }
        let mut object: CanonicalJsonObject = serde_json::from_value(pdu).unwrap();
        ruma::signatures::hash_and_sign_event(
            &self.name,
            &*self.pair,
            &mut object,
            &rules.redaction,
        )
        .unwrap();
        object
    }

    /// The event ID axon will give `object`.
    pub fn event_id(object: &CanonicalJsonObject, rules: &RoomVersionRules) -> String {
        match rules.event_id_format {
            EventIdFormatVersion::V1 => match object.get("event_id") {
                Some(CanonicalJsonValue::String(id)) => id.clone(),
                _ => panic!("no event_id"),
            },
            _ => format!(
                "${}",
                ruma::signatures::reference_hash(object, rules).unwrap()
            ),
        }
    }
}

impl Drop for FakeRemote {
    fn drop(&mut self) {
        self.stop();
    }
}

pub struct Draft<'a> {
    pub sender: &'a str,
    pub kind: &'a str,
    pub state_key: Option<&'a str>,
    pub content: Value,
    pub prev: Vec<String>,
    pub auth: Vec<String>,
    pub depth: i64,
}

async fn key_document(State(s): State<Shared>) -> Json<Value> {
    let mut doc: CanonicalJsonObject = serde_json::from_value(json!({
        "server_name": s.name,
        "verify_keys": {
            format!("ed25519:{}", s.pair.version()): {
                "key": Base64::<ruma::serde::base64::Standard>::new(s.pair.public_key().to_vec()).encode()
            }
        },
        "old_verify_keys": {},
        "valid_until_ts": s.valid_until_ts,
    }))
    .unwrap();
    ruma::signatures::sign_json(&s.name, &*s.pair, &mut doc).unwrap();
    Json(serde_json::to_value(doc).unwrap())
}

/// Checks the X-Matrix signature of a request from the axon server it names, with that
/// server's published key.
async fn verify_from_axon(s: &Shared, request: &http::Request<&[u8]>) -> Result<(), String> {
    let xmatrix =
        XMatrix::extract_from_http_headers(request.headers()).map_err(|e| e.to_string())?;
    let url = format!("https://{}/_matrix/key/v2/server", xmatrix.origin);
    let doc: Value = TestCa::get()
        .client()
        .get(url)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    let mut set = BTreeMap::new();
    for (id, key) in doc["verify_keys"].as_object().unwrap() {
        set.insert(
            id.clone(),
            Base64::parse(key["key"].as_str().unwrap()).unwrap(),
        );
    }
    let map = BTreeMap::from([(xmatrix.origin.to_string(), set)]);
    xmatrix
        .verify_http_request(request, &ServerName::parse(&s.name).unwrap(), &map)
        .map_err(|e| e.to_string())
}

type Answer = (StatusCode, Json<Value>);

/// A request from axon, its X-Matrix signature checked: (path, body bytes), or the 401
/// to answer.
async fn from_axon(s: &Shared, request: Request, limit: usize) -> Result<(String, Bytes), Answer> {
    let (parts, body) = request.into_parts();
    let bytes: Bytes = axum::body::to_bytes(body, limit).await.unwrap();
    let checked = http::Request::from_parts(parts, bytes.as_ref());
    if let Err(e) = verify_from_axon(s, &checked).await {
        return Err((
            StatusCode::UNAUTHORIZED,
            Json(json!({"errcode": "M_UNAUTHORIZED", "error": e})),
        ));
    }
    Ok((checked.uri().path().to_owned(), bytes))
}

async fn transaction(State(s): State<Shared>, request: Request) -> Answer {
    let (path, bytes) = match from_axon(&s, request, 64 << 20).await {
        Ok(checked) => checked,
        Err(answer) => return answer,
    };
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    let mut txn = body.clone();
    txn["txn_id"] = json!(path.rsplit('/').next().unwrap());
    s.received.lock().unwrap().push(txn);
    (StatusCode::OK, Json(json!({"pdus": {}})))
}

async fn invite_v1(State(s): State<Shared>, request: Request) -> Answer {
    let bytes = match from_axon(&s, request, 1 << 20).await {
        Ok((_, bytes)) => bytes,
        Err(answer) => return answer,
    };
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    s.invites_v1.lock().unwrap().push(body.clone());
    let mut event: CanonicalJsonObject = serde_json::from_value(body).unwrap();
    event.remove("unsigned");
    // Signed as events are (their redacted form); the rooms of these tests are v11.
    let rules = ruma::RoomVersionId::V11.rules().unwrap();
    ruma::signatures::hash_and_sign_event(&s.name, &*s.pair, &mut event, &rules.redaction).unwrap();
    (StatusCode::OK, Json(json!([200, {"event": event}])))
}

async fn missing_events(State(s): State<Shared>, request: Request) -> Answer {
    if let Err(answer) = from_axon(&s, request, 1 << 20).await {
        return answer;
    }
    let events = s.missing.lock().unwrap().clone();
    (StatusCode::OK, Json(json!({ "events": events })))
}

async fn event(
    State(s): State<Shared>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> (StatusCode, Json<Value>) {
    match s.events.lock().unwrap().get(&id) {
        Some(pdu) => (
            StatusCode::OK,
            Json(json!({"origin": s.name, "origin_server_ts": now(), "pdus": [pdu]})),
        ),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"errcode": "M_NOT_FOUND", "error": "unknown event"})),
        ),
    }
}

async fn state_ids(
    State(s): State<Shared>,
    axum::extract::Query(query): axum::extract::Query<BTreeMap<String, String>>,
) -> (StatusCode, Json<Value>) {
    let at = query.get("event_id").cloned().unwrap_or_default();
    match s.state_ids.lock().unwrap().get(&at) {
        Some((pdu_ids, auth_chain_ids)) => (
            StatusCode::OK,
            Json(json!({"pdu_ids": pdu_ids, "auth_chain_ids": auth_chain_ids})),
        ),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"errcode": "M_NOT_FOUND", "error": "unknown event"})),
        ),
    }
}

async fn canned_answer(State(s): State<Shared>, request: Request) -> (StatusCode, Json<Value>) {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    let canned = s.canned.lock().unwrap();
    match canned
        .iter()
        .find(|(m, prefix, _)| *m == method && path.starts_with(prefix.as_str()))
    {
        Some((_, _, body)) => (StatusCode::OK, Json(body.clone())),
        None => (
            StatusCode::NOT_FOUND,
            Json(json!({"errcode": "M_UNRECOGNIZED", "error": "not served here"})),
        ),
    }
}
