//! PostgreSQL access. All SQL in axon lives under this module; each submodule is one
//! family of tables. Nothing here calls into domain code.

use std::time::Duration;

use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

pub mod account_data;
pub mod appservices;
pub mod backfill;
pub mod backup;
pub mod device_lists;
pub mod devices;
pub mod e2ee;
pub mod embedded;
pub mod events;
pub mod federation;
pub mod filters;
pub mod invites;
pub mod keys;
pub mod media;
pub mod nonces;
pub mod presence;
pub mod profile;
pub mod push;
pub mod pushers;
pub mod receipts;
pub mod rejected;
pub mod relations;
pub mod room_lookups;
pub mod rooms;
pub mod search;
pub mod server_keys;
pub mod sliding_sync;
pub mod state;
pub mod streams;
pub mod sync;
pub mod threepids;
pub mod to_device;
pub mod tokens;
pub mod uia;
pub mod user_directory;
pub mod users;

pub use embedded::EmbeddedPostgres;

/// The storage layer's error: a database failure, or a uniqueness conflict that callers
/// may want to turn into a domain error.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("embedded PostgreSQL: {0}")]
    Embedded(#[from] embedded::EmbeddedError),
}

pub type Result<T, E = StorageError> = std::result::Result<T, E>;

impl StorageError {
    /// The database could not be reached or went away mid-request (as opposed to a query
    /// that failed): the request may succeed when retried.
    pub fn is_unavailable(&self) -> bool {
        match self {
            StorageError::Database(e) => is_connection_error(e),
            _ => false,
        }
    }
}

fn is_connection_error(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::PoolTimedOut
        | sqlx::Error::PoolClosed
        | sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::WorkerCrashed => true,
        // Class 08: connection exceptions; 57P01-03: the server shutting down or starting.
        sqlx::Error::Database(db) => db
            .code()
            .is_some_and(|c| c.starts_with("08") || matches!(&*c, "57P01" | "57P02" | "57P03")),
        _ => false,
    }
}

/// Whether the database is known to be down (set by whoever watches it: the embedded
/// cluster's supervisor, or the health check of an external database). While it is,
/// requests are answered 503 at once instead of each waiting for a connection.
#[derive(Debug, Default)]
pub struct DbHealth {
    down: std::sync::atomic::AtomicBool,
}

impl DbHealth {
    pub fn is_down(&self) -> bool {
        self.down.load(std::sync::atomic::Ordering::Relaxed)
    }

    pub fn set_down(&self, down: bool) {
        let was = self.down.swap(down, std::sync::atomic::Ordering::Relaxed);
        if was != down {
            if down {
                tracing::error!("database unreachable: answering 503 until it is back");
            } else {
                tracing::info!("database reachable again");
            }
        }
    }
}

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Storage {
    pool: PgPool,
    options: PgConnectOptions,
    wake: streams::WakeBus,
    health: std::sync::Arc<DbHealth>,
}

impl Storage {
    /// Connects to `options` with a pool of `max_connections`.
    pub async fn connect(options: PgConnectOptions, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            // Short: when the database is gone, a request should learn it in seconds
            // (and answer 503), not hang. Busy pools wait in the room lock queue instead.
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(options.clone())
            .await?;
        Ok(Self {
            pool,
            options,
            wake: Default::default(),
            health: Default::default(),
        })
    }

    /// Connections in the pool now, and how many of them are idle (for metrics).
    pub fn pool_size(&self) -> u32 {
        self.pool.size()
    }

    pub fn pool_idle(&self) -> usize {
        self.pool.num_idle()
    }

    /// The database's known state, shared by every clone of this handle.
    pub fn health(&self) -> &DbHealth {
        &self.health
    }

    /// Whether the database answers within `timeout`, on a connection of its own: a pool
    /// busy with slow requests is not a database that is down.
    pub async fn ping(&self, timeout: Duration) -> bool {
        let probe = async {
            let mut conn: sqlx::PgConnection = sqlx::ConnectOptions::connect(&self.options).await?;
            sqlx::query("SELECT 1").execute(&mut conn).await?;
            sqlx::Connection::close(conn).await
        };
        matches!(tokio::time::timeout(timeout, probe).await, Ok(Ok(())))
    }

    pub async fn connect_url(url: &str, max_connections: u32) -> Result<Self> {
        Self::connect(url.parse()?, max_connections).await
    }

    /// Applies embedded migrations that have not run yet.
    pub async fn migrate(&self) -> Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    pub(crate) fn pool(&self) -> &PgPool {
        &self.pool
    }
}

/// True when `err` is a unique-constraint violation.
pub(crate) fn is_unique_violation(err: &sqlx::Error) -> bool {
    matches!(err, sqlx::Error::Database(db) if db.code().as_deref() == Some("23505"))
}
