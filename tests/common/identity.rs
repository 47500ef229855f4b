//! Stand-ins for the services a homeserver mails and looks people up through: an
//! identity server (Identity Service API v2: hash_details, lookup, store-invite, bind,
//! unbind, pubkey validity; over TLS from the test CA, as `localhost:<port>`) and an SMTP
//! server that keeps every mail it is given.
//! Include beside `common` and `federation`:
//! `#[path = "common/identity.rs"] mod identity;`.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Arc, Mutex},
};

use axum::{
    Json, Router,
    extract::{Query, State},
    http::{HeaderMap, StatusCode},
    routing::{get, post},
};
use base64::Engine as _;
use ruma::{CanonicalJsonObject, serde::Base64, signatures::Ed25519KeyPair};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

pub const ACCESS_TOKEN: &str = "identity-access-token";
const PEPPER: &str = "matrixrocks";

#[derive(Default)]
pub struct IdentityState {
    /// sid -> (medium, address) the identity server validated.
    pub sessions: BTreeMap<String, (String, String)>,
    /// (medium, address) -> mxid
    pub bindings: BTreeMap<(String, String), String>,
    /// Invites stored: (medium, address, room_id, sender, token).
    pub invites: Vec<(String, String, String, String, String)>,
    /// Public keys (unpadded base64) that `isvalid` vouches for.
    pub valid_keys: BTreeSet<String>,
    /// Authorization headers of unbind requests.
    pub unbind_authorizations: Vec<String>,
    /// Requests that reached store-invite.
    pub store_invite_calls: usize,
}

pub struct FakeIdentityServer {
    pub name: String,
    pub state: Arc<Mutex<IdentityState>>,
    pub key: Arc<Ed25519KeyPair>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
}

#[derive(Clone)]
struct Shared {
    name: String,
    state: Arc<Mutex<IdentityState>>,
    key: Arc<Ed25519KeyPair>,
}

fn new_key(version: &str) -> Ed25519KeyPair {
    let der = Ed25519KeyPair::generate();
    Ed25519KeyPair::from_der(&der, version.into()).unwrap()
}

pub fn public_key(pair: &Ed25519KeyPair) -> String {
    Base64::<ruma::serde::base64::Standard>::new(pair.public_key().to_vec()).encode()
}

impl FakeIdentityServer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let name = format!("localhost:{port}");
        let key = Arc::new(new_key("0"));
        let state = Arc::new(Mutex::new(IdentityState::default()));
        state.lock().unwrap().valid_keys.insert(public_key(&key));
        let shared = Shared {
            name: name.clone(),
            state: state.clone(),
            key: key.clone(),
        };
        let app = Router::new()
            .route("/_matrix/identity/v2/hash_details", get(hash_details))
            .route("/_matrix/identity/v2/lookup", post(lookup))
            .route("/_matrix/identity/v2/store-invite", post(store_invite))
            .route("/_matrix/identity/v2/3pid/bind", post(bind))
            .route("/_matrix/identity/v2/3pid/unbind", post(unbind))
            .route("/_matrix/identity/v2/pubkey/isvalid", get(is_valid))
            .with_state(shared);
        let tx = super::federation::serve_tls(listener, app);
        Self {
            name,
            state,
            key,
            shutdown: Some(tx),
        }
    }

    /// A session in which the identity server validated an address (as after its mail).
    pub fn validated_session(&self, medium: &str, address: &str) -> String {
        let mut state = self.state.lock().unwrap();
        let sid = format!("session_{}", state.sessions.len());
        state
            .sessions
            .insert(sid.clone(), (medium.to_owned(), address.to_owned()));
        sid
    }

    pub fn binding(&self, medium: &str, address: &str) -> Option<String> {
        self.state
            .lock()
            .unwrap()
            .bindings
            .get(&(medium.to_owned(), address.to_owned()))
            .cloned()
    }

    /// Binds an address out of band (no homeserver involved).
    pub fn bind_directly(&self, medium: &str, address: &str, mxid: &str) {
        self.state
            .lock()
            .unwrap()
            .bindings
            .insert((medium.to_owned(), address.to_owned()), mxid.to_owned());
    }

    /// Binds an address and tells the homeserver at `hs_base` (its `/3pid/onbind`), with
    /// the invites stored for it signed by `signer` (the server's key, or another).
    pub async fn bind_and_notify(
        &self,
        hs_base: &str,
        medium: &str,
        address: &str,
        mxid: &str,
        signer: &Ed25519KeyPair,
    ) -> (reqwest::StatusCode, String) {
        self.bind_directly(medium, address, mxid);
        let invites: Vec<Value> = {
            let state = self.state.lock().unwrap();
            state
                .invites
                .iter()
                .filter(|(m, a, ..)| m == medium && a == address)
                .map(|(m, a, room_id, sender, token)| {
                    let mut signed: CanonicalJsonObject =
                        serde_json::from_value(json!({ "mxid": mxid, "token": token })).unwrap();
                    ruma::signatures::sign_json(&self.name, signer, &mut signed).unwrap();
                    json!({
                        "medium": m, "address": a, "mxid": mxid, "room_id": room_id,
                        "sender": sender, "signed": signed,
                    })
                })
                .collect()
        };
        let body =
            json!({ "medium": medium, "address": address, "mxid": mxid, "invites": invites });
        let response = reqwest::Client::new()
            .post(format!("{hs_base}/_matrix/federation/v1/3pid/onbind"))
            .json(&body)
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// A key this server never published (for forged signatures).
    pub fn stranger_key() -> Ed25519KeyPair {
        new_key("0")
    }

    /// The server stops vouching for its key (as after a rotation).
    pub fn revoke_key(&self) {
        self.state.lock().unwrap().valid_keys.clear();
    }
}

impl Drop for FakeIdentityServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn authorized(headers: &HeaderMap) -> bool {
    headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == format!("Bearer {ACCESS_TOKEN}"))
}

fn refused() -> (StatusCode, Json<Value>) {
    (
        StatusCode::UNAUTHORIZED,
        Json(json!({ "errcode": "M_UNAUTHORIZED", "error": "bad token" })),
    )
}

async fn hash_details(headers: HeaderMap) -> (StatusCode, Json<Value>) {
    if !authorized(&headers) {
        return refused();
    }
    (
        StatusCode::OK,
        Json(json!({ "algorithms": ["none", "sha256"], "lookup_pepper": PEPPER })),
    )
}

async fn lookup(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if !authorized(&headers) {
        return refused();
    }
    if body["algorithm"] != "sha256" || body["pepper"] != PEPPER {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "errcode": "M_INVALID_PEPPER", "error": "pepper" })),
        );
    }
    let state = s.state.lock().unwrap();
    let mut mappings = serde_json::Map::new();
    for ((medium, address), mxid) in &state.bindings {
        let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(format!("{address} {medium} {PEPPER}")));
        if body["addresses"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a == hash.as_str())
        {
            mappings.insert(hash, mxid.clone().into());
        }
    }
    (StatusCode::OK, Json(json!({ "mappings": mappings })))
}

async fn store_invite(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if !authorized(&headers) {
        return refused();
    }
    let mut state = s.state.lock().unwrap();
    state.store_invite_calls += 1;
    let token = format!("invite-token-{}", state.invites.len());
    state.invites.push((
        body["medium"].as_str().unwrap().to_owned(),
        body["address"].as_str().unwrap().to_owned(),
        body["room_id"].as_str().unwrap().to_owned(),
        body["sender"].as_str().unwrap().to_owned(),
        token.clone(),
    ));
    let url = format!("https://{}/_matrix/identity/v2/pubkey/isvalid", s.name);
    let key = public_key(&s.key);
    (
        StatusCode::OK,
        Json(json!({
            "token": token,
            "display_name": "B...@e...",
            "public_keys": [{ "public_key": key, "key_validity_url": url }],
        })),
    )
}

async fn bind(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    if !authorized(&headers) {
        return refused();
    }
    let mut state = s.state.lock().unwrap();
    let Some((medium, address)) = state
        .sessions
        .get(body["sid"].as_str().unwrap_or_default())
        .cloned()
    else {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "errcode": "M_SESSION_NOT_VALIDATED", "error": "no such session" })),
        );
    };
    let mxid = body["mxid"].as_str().unwrap().to_owned();
    state
        .bindings
        .insert((medium.clone(), address.clone()), mxid.clone());
    (
        StatusCode::OK,
        Json(json!({ "medium": medium, "address": address, "mxid": mxid })),
    )
}

async fn unbind(
    State(s): State<Shared>,
    headers: HeaderMap,
    Json(body): Json<Value>,
) -> (StatusCode, Json<Value>) {
    let mut state = s.state.lock().unwrap();
    if let Some(auth) = headers.get("authorization").and_then(|v| v.to_str().ok()) {
        state.unbind_authorizations.push(auth.to_owned());
    }
    let key = (
        body["threepid"]["medium"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
        body["threepid"]["address"]
            .as_str()
            .unwrap_or_default()
            .to_owned(),
    );
    if state.bindings.get(&key).map(String::as_str) != body["mxid"].as_str() {
        return (
            StatusCode::NOT_FOUND,
            Json(json!({ "errcode": "M_NOT_FOUND", "error": "no such binding" })),
        );
    }
    state.bindings.remove(&key);
    (StatusCode::OK, Json(json!({})))
}

async fn is_valid(
    State(s): State<Shared>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Json<Value> {
    let valid = q
        .get("public_key")
        .is_some_and(|k| s.state.lock().unwrap().valid_keys.contains(k));
    Json(json!({ "valid": valid }))
}

/// Mails received: (recipients, text).
pub type Mails = Arc<Mutex<Vec<(Vec<String>, String)>>>;

/// An SMTP server (plain, no TLS or AUTH) that keeps each mail's recipients and text.
pub struct MailSink {
    pub port: u16,
    pub mails: Mails,
}

impl MailSink {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mails: Mails = Arc::default();
        let kept = mails.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                let kept = kept.clone();
                tokio::spawn(async move {
                    let _ = smtp_session(socket, kept).await;
                });
            }
        });
        Self { port, mails }
    }

    /// The mails so far, waiting up to 10 s for at least `n`.
    pub async fn wait_for(&self, n: usize) -> Vec<(Vec<String>, String)> {
        for _ in 0..200 {
            let mails = self.mails.lock().unwrap().clone();
            if mails.len() >= n {
                return mails;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        panic!("expected {n} mails, got {:?}", self.mails.lock().unwrap());
    }

    /// The validation link in a mail (quoted-printable soft breaks undone).
    pub fn link_in(mail: &str) -> String {
        let text = mail.replace("=\r\n", "").replace("=3D", "=");
        let start = text.find("http").expect("a link in the mail");
        text[start..].split_whitespace().next().unwrap().to_owned()
    }
}

async fn smtp_session(socket: tokio::net::TcpStream, mails: Mails) -> std::io::Result<()> {
    let (read, mut write) = socket.into_split();
    let mut lines = BufReader::new(read).lines();
    write.write_all(b"220 sink ESMTP\r\n").await?;
    let mut recipients = Vec::new();
    while let Some(line) = lines.next_line().await? {
        let upper = line.to_ascii_uppercase();
        if upper.starts_with("EHLO") || upper.starts_with("HELO") {
            write.write_all(b"250-sink\r\n250 8BITMIME\r\n").await?;
        } else if upper.starts_with("MAIL FROM") {
            recipients.clear();
            write.write_all(b"250 OK\r\n").await?;
        } else if upper.starts_with("RCPT TO") {
            recipients.push(line[8..].trim().trim_matches(['<', '>']).to_owned());
            write.write_all(b"250 OK\r\n").await?;
        } else if upper == "DATA" {
            write.write_all(b"354 go on\r\n").await?;
            let mut text = String::new();
            while let Some(line) = lines.next_line().await? {
                if line == "." {
                    break;
                }
                text.push_str(&line);
                text.push_str("\r\n");
            }
            mails
                .lock()
                .unwrap()
                .push((std::mem::take(&mut recipients), text));
            write.write_all(b"250 kept\r\n").await?;
        } else if upper == "QUIT" {
            write.write_all(b"221 bye\r\n").await?;
            return Ok(());
        } else {
            write.write_all(b"250 OK\r\n").await?;
        }
    }
    Ok(())
}
