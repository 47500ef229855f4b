//! Server discovery, each branch of the spec's resolution order, end to end: names are
//! answered by a DNS server the test runs (A and SRV records, `federation.
//! resolver_nameservers`), `.well-known/matrix/server` is served over HTTPS on loopback,
//! and every route is followed by a real request to an axon server whose certificate
//! carries the names the spec says TLS must use.

mod common;
#[path = "common/federation.rs"]
mod federation;

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
};

use axum::{Json, Router, routing::get};
use federation::{TestCa, start_federated};
use hickory_resolver::proto::{
    op::{Message, MessageType, ResponseCode},
    rr::{
        Name, RData, Record, RecordType,
        rdata::{A, SRV},
    },
};
use ruma::{ServerName, api::federation::discovery::get_server_version};
use serde_json::json;

/// A DNS server on loopback answering A and SRV queries from a table; NXDOMAIN else.
struct Dns {
    addr: SocketAddr,
    a: Arc<Mutex<HashMap<String, Ipv4Addr>>>,
    srv: Arc<Mutex<HashMap<String, (u16, String)>>>,
}

impl Dns {
    async fn start() -> Self {
        let socket = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let addr = socket.local_addr().unwrap();
        let a: Arc<Mutex<HashMap<String, Ipv4Addr>>> = Arc::default();
        let srv: Arc<Mutex<HashMap<String, (u16, String)>>> = Arc::default();
        let (a2, srv2) = (a.clone(), srv.clone());
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            loop {
                let Ok((len, peer)) = socket.recv_from(&mut buf).await else {
                    return;
                };
                let Ok(query) = Message::from_vec(&buf[..len]) else {
                    continue;
                };
                let mut response = Message::response(query.metadata.id, query.metadata.op_code);
                response.metadata.message_type = MessageType::Response;
                response.metadata.authoritative = true;
                response.metadata.recursion_desired = query.metadata.recursion_desired;
                response.metadata.recursion_available = true;
                let mut found = false;
                for q in &query.queries {
                    response.add_query(q.clone());
                    let name = q.name().to_utf8().trim_end_matches('.').to_lowercase();
                    match q.query_type() {
                        RecordType::A => {
                            if let Some(ip) = a2.lock().unwrap().get(&name) {
                                response.add_answer(Record::from_rdata(
                                    q.name().clone(),
                                    60,
                                    RData::A(A(*ip)),
                                ));
                                found = true;
                            }
                        }
                        RecordType::SRV => {
                            let entry = srv2.lock().unwrap().get(&name).cloned();
                            if let Some((port, target)) = entry {
                                response.add_answer(Record::from_rdata(
                                    q.name().clone(),
                                    60,
                                    RData::SRV(SRV::new(
                                        10,
                                        5,
                                        port,
                                        Name::from_utf8(format!("{target}.")).unwrap(),
                                    )),
                                ));
                                found = true;
                            }
                        }
                        _ => {}
                    }
                    let known = a2.lock().unwrap().contains_key(&name)
                        || srv2.lock().unwrap().contains_key(&name);
                    if !found && !known {
                        response.metadata.response_code = ResponseCode::NXDomain;
                    }
                }
                let _ = socket.send_to(&response.to_vec().unwrap(), peer).await;
            }
        });
        Dns { addr, a, srv }
    }
}

/// Serves `/.well-known/matrix/server` over HTTPS with `document`; counts requests.
async fn well_known_server(
    listener: tokio::net::TcpListener,
    names: &[&str],
    document: serde_json::Value,
) -> Arc<AtomicUsize> {
    let ca = TestCa::get();
    let dir = tempfile::tempdir().unwrap().keep();
    let (cert, key) = ca.leaf(names);
    std::fs::write(dir.join("cert.pem"), cert).unwrap();
    std::fs::write(dir.join("key.pem"), key).unwrap();
    let hits = Arc::new(AtomicUsize::new(0));
    let counted = hits.clone();
    let app = Router::new().route(
        "/.well-known/matrix/server",
        get(move || {
            let document = document.clone();
            counted.fetch_add(1, Ordering::SeqCst);
            async move { Json(document) }
        }),
    );
    let tls = axon::http::tls::TlsFiles::open(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap();
    let limits = axon::http::serve::ConnectionLimits {
        max_connections: 16,
        header_read_timeout: std::time::Duration::from_secs(5),
        shutdown_grace: std::time::Duration::from_secs(1),
    };
    tokio::spawn(axon::http::serve::serve(
        listener,
        app,
        Some(tls),
        limits,
        Default::default(),
        std::future::pending(),
    ));
    hits
}

#[tokio::test]
async fn every_branch_of_server_name_resolution_reaches_the_server() {
    let ca = TestCa::get();
    let names = [
        "localhost",
        "127.0.0.1",
        "delegated.test",
        "srv.test",
        "legacy.test",
        "plain.test",
    ];
    // The server every name leads to, with a certificate for all of them.
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = ca.leaf(&names);
    std::fs::write(dir.path().join("cert.pem"), cert).unwrap();
    std::fs::write(dir.path().join("key.pem"), key).unwrap();
    let (c, k) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let target = start_federated(|env| {
        env.insert("AXON_FEDERATION__TLS_CERT".into(), c.display().to_string());
        env.insert("AXON_FEDERATION__TLS_KEY".into(), k.display().to_string());
    })
    .await;
    let port = target.federation_addr.unwrap().port();

    let dns = Dns::start().await;
    let wk_listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let wk_port = wk_listener.local_addr().unwrap().port();
    let loopback = Ipv4Addr::LOCALHOST;
    {
        let mut a = dns.a.lock().unwrap();
        for name in ["wk.test", "delegated.test", "target.test", "plain.test"] {
            a.insert(name.into(), loopback);
        }
        let mut srv = dns.srv.lock().unwrap();
        srv.insert(
            "_matrix-fed._tcp.srv.test".into(),
            (port, "target.test".into()),
        );
        srv.insert(
            "_matrix._tcp.legacy.test".into(),
            (port, "target.test".into()),
        );
    }
    // wk.test delegates to delegated.test:<port>.
    let hits = well_known_server(
        wk_listener,
        &["wk.test"],
        json!({"m.server": format!("delegated.test:{port}")}),
    )
    .await;

    let resolver = start_federated(|env| {
        env.insert(
            "AXON_FEDERATION__RESOLVER_NAMESERVERS".into(),
            format!("[\"{}\"]", dns.addr),
        );
        env.insert(
            "AXON_FEDERATION__WELL_KNOWN_PORT".into(),
            wk_port.to_string(),
        );
        env.insert("AXON_FEDERATION__DEFAULT_PORT".into(), port.to_string());
    })
    .await;
    let federation = axon::federation::state(&resolver.hs).unwrap();
    let discovery = &federation.client.discovery;
    let target_addr = SocketAddr::from((loopback, port));

    // (server name, TLS name, Host header)
    let cases = [
        (
            format!("127.0.0.1:{port}"),
            "127.0.0.1".to_owned(),
            format!("127.0.0.1:{port}"),
        ),
        (
            format!("localhost:{port}"),
            "localhost".to_owned(),
            format!("localhost:{port}"),
        ),
        (
            "wk.test".to_owned(),
            "delegated.test".to_owned(),
            format!("delegated.test:{port}"),
        ),
        (
            "srv.test".to_owned(),
            "srv.test".to_owned(),
            "srv.test".to_owned(),
        ),
        (
            "legacy.test".to_owned(),
            "legacy.test".to_owned(),
            "legacy.test".to_owned(),
        ),
        (
            "plain.test".to_owned(),
            "plain.test".to_owned(),
            "plain.test".to_owned(),
        ),
    ];
    for (name, tls_name, host) in &cases {
        let server = ServerName::parse(name).unwrap();
        let route = discovery
            .resolve(&server)
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(&route.tls_name, tls_name, "{name}");
        assert_eq!(&route.host_header, host, "{name}");
        assert!(route.addrs.contains(&target_addr), "{name}: {route:?}");
        // And a request over that route reaches the server, TLS checked for that name.
        let version = federation
            .client
            .send(
                resolver.hs.keys.pair(),
                &server,
                get_server_version::v1::Request::new(),
            )
            .await
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            version.server.unwrap().name.as_deref(),
            Some("axon"),
            "{name}"
        );
    }

    // .well-known is asked once and then cached.
    assert_eq!(hits.load(Ordering::SeqCst), 1);
    discovery
        .resolve(&ServerName::parse("wk.test").unwrap())
        .await
        .unwrap();
    assert_eq!(hits.load(Ordering::SeqCst), 1, "cached");

    // A name that resolves nowhere, and loopback without allow_ranges: refused.
    assert!(
        discovery
            .resolve(&ServerName::parse("nowhere.test").unwrap())
            .await
            .is_err()
    );
    let strict = start_federated(|env| {
        env.insert("AXON_OUTBOUND__ALLOW_RANGES".into(), "".into());
    })
    .await;
    let strict_federation = axon::federation::state(&strict.hs).unwrap();
    let refused = strict_federation
        .client
        .discovery
        .resolve(&ServerName::parse(format!("localhost:{port}")).unwrap())
        .await
        .unwrap_err();
    assert!(refused.contains("public"), "{refused}");
    let refused = strict_federation
        .client
        .discovery
        .resolve(&ServerName::parse(format!("127.0.0.1:{port}")).unwrap())
        .await
        .unwrap_err();
    assert!(refused.contains("public"), "{refused}");
}
