//! Process lifecycle: open the database (embedded or external), serve, shut down cleanly.

use std::{
    fs::File,
    future::Future,
    os::fd::AsRawFd,
    path::Path,
    sync::{Arc, atomic::Ordering},
    time::Duration,
};

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::{
    config::Config,
    metrics::Metrics,
    server::Homeserver,
    storage::{EmbeddedPostgres, Storage, embedded},
};

/// How often the supervisor looks at the database, and how long a ping may take.
const SUPERVISE_EVERY: Duration = Duration::from_secs(1);
const PING_TIMEOUT: Duration = Duration::from_secs(3);

/// The database a process uses, and the embedded cluster if this process runs it.
pub struct Database {
    pub storage: Storage,
    embedded: Option<Arc<EmbeddedPostgres>>,
    _lock: Option<File>,
}

impl Database {
    /// Connects (starting the embedded cluster when no URL is configured) and migrates.
    pub async fn open(config: &Config) -> anyhow::Result<Self> {
        let max = config.database.max_connections;
        let db = match &config.database.url {
            Some(url) => Self {
                storage: Storage::connect_url(url, max)
                    .await
                    .context("connecting to database.url")?,
                embedded: None,
                _lock: None,
            },
            None => Self::open_embedded(&config.data_dir, max).await?,
        };
        db.storage.migrate().await.context("running migrations")?;
        Ok(db)
    }

    /// One process per data_dir runs the cluster; it holds `axon.lock`. Another process
    /// (say `axon create-user` beside a running server) uses that cluster's socket.
    async fn open_embedded(data_dir: &Path, max: u32) -> anyhow::Result<Self> {
        std::fs::create_dir_all(data_dir)
            .with_context(|| format!("creating data_dir {}", data_dir.display()))?;
        let lock = File::create(data_dir.join("axon.lock")).context("creating axon.lock")?;
        // SAFETY: flock on a file descriptor we own.
        let owner = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !owner {
            let options = embedded::attach(data_dir)?;
            let storage = Storage::connect(options, max)
                .await
                .context("connecting to the running cluster")?;
            return Ok(Self {
                storage,
                embedded: None,
                _lock: None,
            });
        }
        let dir = data_dir.to_path_buf();
        let cluster = tokio::task::spawn_blocking(move || EmbeddedPostgres::start(&dir))
            .await?
            .context("starting the embedded PostgreSQL")?;
        let options = cluster.connect_options();
        embedded::wait_ready(&options).await;
        let storage = match Storage::connect(options, max).await {
            Ok(s) => s,
            Err(e) => {
                let _ = cluster.stop();
                return Err(e).context("connecting to the embedded PostgreSQL");
            }
        };
        Ok(Self {
            storage,
            embedded: Some(Arc::new(cluster)),
            _lock: Some(lock),
        })
    }

    /// Watches the database until the returned task is aborted: the embedded cluster is
    /// started again when its postmaster dies, and while the database does not answer the
    /// HTTP edge answers 503 at once (`DbHealth`) instead of letting requests wait.
    pub fn supervise(&self, metrics: Arc<Metrics>) -> tokio::task::JoinHandle<()> {
        let storage = self.storage.clone();
        let cluster = self.embedded.clone();
        if cluster.is_some() {
            metrics.embedded_state.store(1, Ordering::Relaxed);
        }
        tokio::spawn(async move {
            let mut failures = 0u32;
            loop {
                tokio::time::sleep(SUPERVISE_EVERY).await;
                if let Some(cluster) = &cluster {
                    let probe = cluster.clone();
                    let running = tokio::task::spawn_blocking(move || probe.is_running())
                        .await
                        .unwrap_or(true);
                    if !running {
                        metrics.embedded_state.store(2, Ordering::Relaxed);
                        storage.health().set_down(true);
                        tracing::error!(
                            "the embedded PostgreSQL is not running; starting it again"
                        );
                        let restart = cluster.clone();
                        match tokio::task::spawn_blocking(move || restart.restart()).await {
                            Ok(Ok(())) => {
                                metrics.embedded_restarts.fetch_add(1, Ordering::Relaxed);
                                metrics.embedded_state.store(1, Ordering::Relaxed);
                                tracing::info!("embedded PostgreSQL started again");
                            }
                            // Backends of the dead postmaster may still hold its shared
                            // memory for a moment; the next round tries again.
                            Ok(Err(e)) => tracing::error!("restarting embedded PostgreSQL: {e}"),
                            Err(e) => tracing::error!("restarting embedded PostgreSQL: {e}"),
                        }
                    }
                }
                if storage.ping(PING_TIMEOUT).await {
                    failures = 0;
                    storage.health().set_down(false);
                } else {
                    failures += 1;
                    // One slow answer under load is not an outage.
                    if failures >= 2 {
                        storage.health().set_down(true);
                    }
                }
            }
        })
    }

    /// Closes the pool and stops the embedded cluster if this process started it.
    pub async fn close(self) {
        self.storage.close().await;
        if let Some(cluster) = self.embedded {
            match tokio::task::spawn_blocking(move || cluster.stop()).await {
                Ok(Ok(())) => tracing::info!("embedded PostgreSQL stopped"),
                Ok(Err(e)) => tracing::error!("stopping embedded PostgreSQL: {e}"),
                Err(e) => tracing::error!("stopping embedded PostgreSQL: {e}"),
            }
        }
    }
}

/// `axon serve`: runs until SIGINT or SIGTERM, then drains requests and stops the database.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let listener = TcpListener::bind(config.listen.client)
        .await
        .with_context(|| format!("binding listen.client {}", config.listen.client))?;
    let federation = match config.listen.federation {
        Some(address) if config.federation_enabled() => Some(
            TcpListener::bind(address)
                .await
                .with_context(|| format!("binding listen.federation {address}"))?,
        ),
        Some(address) => {
            tracing::warn!(%address, "listen.federation is set but federation is off");
            None
        }
        None => None,
    };
    let db = Database::open(&config).await?;
    let hs = match Homeserver::new(config, db.storage.clone()).await {
        Ok(hs) => hs,
        Err(e) => {
            db.close().await;
            return Err(anyhow::anyhow!("starting: {e}"));
        }
    };
    tracing::info!(
        server_name = %hs.config.server_name,
        address = %listener.local_addr()?,
        "axon is serving the Client-Server API"
    );
    let supervisor = db.supervise(hs.metrics.clone());
    let metrics_server = match hs.config.listen.metrics {
        Some(address) => {
            let listener = TcpListener::bind(address)
                .await
                .with_context(|| format!("binding listen.metrics {address}"))?;
            tracing::info!(%address, "serving Prometheus metrics at /metrics");
            let app = crate::api::metrics_app(hs.clone());
            Some(tokio::spawn(async move {
                if let Err(e) = axum::serve(listener, app).await {
                    tracing::error!("metrics listener: {e}");
                }
            }))
        }
        None => None,
    };
    let listeners = Listeners {
        client: listener,
        federation,
    };
    let result = serve_on(listeners, hs, shutdown_signal()).await;
    if let Some(server) = metrics_server {
        server.abort();
    }
    supervisor.abort();
    db.close().await;
    result
}

/// The sockets axon serves on.
pub struct Listeners {
    pub client: TcpListener,
    /// The Server-Server API's own listener (`listen.federation`).
    pub federation: Option<TcpListener>,
}

impl From<TcpListener> for Listeners {
    fn from(client: TcpListener) -> Self {
        Self {
            client,
            federation: None,
        }
    }
}

/// Serves the apps on their listeners until `shutdown` completes, then answers long polls
/// at once and gives requests in flight `limits.shutdown_grace_secs` to finish.
pub async fn serve_on(
    listeners: impl Into<Listeners>,
    hs: Arc<Homeserver>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let Listeners {
        client: listener,
        federation,
    } = listeners.into();
    crate::federation::start(&hs).map_err(|e| anyhow::anyhow!("{e}"))?;
    let tls = match (
        &hs.config.federation.tls_cert,
        &hs.config.federation.tls_key,
    ) {
        (Some(cert), Some(key)) if federation.is_some() => Some(
            crate::http::tls::TlsFiles::open(cert, key)
                .map_err(|e| anyhow::anyhow!("federation TLS: {e}"))?,
        ),
        _ => None,
    };
    crate::server::wake::spawn_listener(&hs);
    crate::housekeeping::spawn(&hs);
    crate::push::delivery::spawn_worker(&hs);
    crate::users::appservice::ensure_senders(&hs)
        .await
        .map_err(|e| anyhow::anyhow!("application services: {e}"))?;
    crate::appservice::spawn_workers(&hs);
    let limits = &hs.config.limits;
    let connection_limits = crate::http::serve::ConnectionLimits {
        max_connections: limits.max_connections,
        header_read_timeout: Duration::from_secs(limits.header_read_timeout_secs),
        shutdown_grace: Duration::from_secs(limits.shutdown_grace_secs),
    };
    let app = crate::api::app(hs.clone());
    let (stop_tx, stop) = tokio::sync::watch::channel(false);
    let federation_server = federation.map(|listener| {
        let address = listener.local_addr().ok();
        tracing::info!(
            ?address,
            tls = tls.is_some(),
            "axon is serving the Server-Server API"
        );
        let app = crate::api::federation_app(hs.clone());
        let metrics = hs.metrics.clone();
        let mut stop = stop.clone();
        tokio::spawn(crate::http::serve::serve(
            listener,
            app,
            tls,
            connection_limits,
            metrics,
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
        ))
    });
    let notifier_hs = hs.clone();
    let shutdown = async move {
        shutdown.await;
        notifier_hs.notifier.shut_down();
        stop_tx.send_replace(true);
    };
    let served = crate::http::serve::serve(
        listener,
        app,
        None,
        connection_limits,
        hs.metrics.clone(),
        shutdown,
    )
    .await
    .context("serving HTTP");
    if let Some(server) = federation_server {
        match server.await {
            Ok(result) => result.context("serving the federation API")?,
            Err(e) => tracing::warn!("federation listener: {e}"),
        }
    }
    drop(stop);
    crate::federation::stop(&hs).await;
    served
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("cannot listen for SIGTERM: {e}");
            return std::future::pending().await;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received, shutting down"),
        _ = term.recv() => tracing::info!("SIGTERM received, shutting down"),
    }
}
