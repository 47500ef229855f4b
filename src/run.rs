//! Process lifecycle: open the database (embedded or external), serve, shut down cleanly.

use std::{fs::File, future::Future, net::SocketAddr, os::fd::AsRawFd, path::Path, sync::Arc};

use anyhow::Context as _;
use tokio::net::TcpListener;

use crate::{
    config::Config,
    server::Homeserver,
    storage::{EmbeddedPostgres, Storage, embedded},
};

/// The database a process uses, and the embedded cluster if this process runs it.
pub struct Database {
    pub storage: Storage,
    embedded: Option<EmbeddedPostgres>,
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
            embedded: Some(cluster),
            _lock: Some(lock),
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
    let result = serve_on(listener, hs, shutdown_signal()).await;
    db.close().await;
    result
}

/// Serves the app on `listener` until `shutdown` completes.
pub async fn serve_on(
    listener: TcpListener,
    hs: Arc<Homeserver>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    crate::sync::notifier::spawn_background(&hs);
    crate::push::delivery::spawn_worker(&hs);
    let app = crate::http::app(hs);
    // Without TCP_NODELAY a response written in two pieces waits for the client's delayed
    // ACK (up to 40 ms) on a kept-alive connection.
    let listener = axum::serve::ListenerExt::tap_io(listener, |tcp| {
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!("TCP_NODELAY: {e}");
        }
    });
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .context("serving HTTP")
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
