//! The connection loop: HTTP/1.1 connections with a cap on how many are open, a deadline
//! for request headers (which also closes idle kept-alive connections), and a bounded
//! graceful shutdown. axum's own `serve` has none of these knobs.

use std::{
    future::Future,
    net::SocketAddr,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use axum::{Router, extract::ConnectInfo};
use hyper::{body::Incoming, server::conn::http1};
use hyper_util::{
    rt::{TokioIo, TokioTimer},
    service::TowerToHyperService,
};
use tokio::{net::TcpListener, sync::Semaphore, task::JoinSet};
use tower::ServiceExt as _;

/// How the loop treats connections (from `[limits]`).
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub max_connections: usize,
    pub header_read_timeout: Duration,
    pub shutdown_grace: Duration,
}

/// File descriptors kept free of client connections: the database pool, the media store,
/// log files, the listener itself.
const RESERVED_FDS: u64 = 256;

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting, lets
/// requests in flight finish for up to `shutdown_grace` (the caller answers long polls at
/// once) and closes whatever is left.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    tls: Option<Arc<super::tls::TlsFiles>>,
    limits: ConnectionLimits,
    open_gauge: Arc<crate::metrics::Metrics>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let max = limits.max_connections.min(connection_budget());
    let open = Arc::new(Semaphore::new(max));
    let (closing_tx, closing) = tokio::sync::watch::channel(false);
    let mut connections = JoinSet::new();
    let mut shutdown = std::pin::pin!(shutdown);
    let mut warned_full = false;
    loop {
        // A permit first: at the cap, new connections wait in the kernel's backlog instead
        // of taking file descriptors the server needs.
        let permit = tokio::select! {
            _ = &mut shutdown => break,
            permit = open.clone().acquire_owned() => permit.expect("never closed"),
        };
        if open.available_permits() == 0 && !warned_full {
            tracing::warn!(max, "connection limit reached; new connections wait");
            warned_full = true;
        } else if open.available_permits() > max / 10 {
            warned_full = false;
        }
        let (tcp, peer) = tokio::select! {
            _ = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning or exiting.
                    tracing::warn!("accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        // Without TCP_NODELAY a response written in two pieces waits for the client's
        // delayed ACK (up to 40 ms) on a kept-alive connection.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
        while connections.try_join_next().is_some() {}
        let service = app
            .clone()
            .map_request(move |mut req: http::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                req
            });
        let closing = closing.clone();
        let gauge = open_gauge.clone();
        let acceptor = tls.as_ref().map(|t| t.acceptor());
        connections.spawn(async move {
            let _permit = permit;
            gauge.connections_open.fetch_add(1, Ordering::Relaxed);
            let _open = scopeguard(move || {
                gauge.connections_open.fetch_sub(1, Ordering::Relaxed);
            });
            match acceptor {
                None => serve_connection(tcp, service, limits, closing, peer).await,
                Some(acceptor) => {
                    // The handshake gets the headers' deadline: a peer that stalls in it
                    // holds a connection slot no longer than one that stalls in headers.
                    let handshake =
                        tokio::time::timeout(limits.header_read_timeout, acceptor.accept(tcp));
                    match handshake.await {
                        Ok(Ok(stream)) => {
                            serve_connection(stream, service, limits, closing, peer).await
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, "TLS handshake: {e}"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    drop(listener);
    closing_tx.send_replace(true);
    let drained = tokio::time::timeout(limits.shutdown_grace, async {
        while connections.join_next().await.is_some() {}
    })
    .await;
    if drained.is_err() {
        tracing::info!(
            open = connections.len(),
            "closing connections still open after the shutdown grace period"
        );
        connections.shutdown().await;
    }
    Ok(())
}

/// One HTTP/1.1 connection until it closes, or until shutdown lets its request in flight
/// finish.
async fn serve_connection<I, S>(
    io: I,
    service: S,
    limits: ConnectionLimits,
    mut closing: tokio::sync::watch::Receiver<bool>,
    peer: SocketAddr,
) where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: tower::Service<http::Request<Incoming>, Response = axum::response::Response>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: std::error::Error + Send + Sync + 'static,
{
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .serve_connection(TokioIo::new(io), TowerToHyperService::new(service));
    let mut conn = std::pin::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        _ = async { closing.wait_for(|c| *c).await.map(|_| ()) } => {
            // Finish the request in flight, if any, then close.
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        tracing::debug!(%peer, "connection: {e}");
    }
}

/// Runs `f` when dropped (a connection task ends, or is aborted at shutdown).
fn scopeguard(f: impl FnOnce()) -> impl Drop {
    struct Guard<F: FnOnce()>(Option<F>);
    impl<F: FnOnce()> Drop for Guard<F> {
        fn drop(&mut self) {
            if let Some(f) = self.0.take() {
                f();
            }
        }
    }
    Guard(Some(f))
}

/// Raises the soft open-file limit to the hard one and returns how many connections fit
/// in it beside the server's own files.
fn connection_budget() -> usize {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to an rlimit we own.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return usize::MAX;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: limit.rlim_max,
                rlim_max: limit.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit.rlim_cur = limit.rlim_max;
            }
        }
    }
    let soft = limit.rlim_cur;
    if soft == libc::RLIM_INFINITY {
        return usize::MAX;
    }
    usize::try_from(soft.saturating_sub(RESERVED_FDS).max(16)).unwrap_or(usize::MAX)
}
