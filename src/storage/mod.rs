//! PostgreSQL access. All SQL in axon lives under this module; each submodule is one
//! family of tables. Nothing here calls into domain code.

use std::time::Duration;

use sqlx::{
    PgPool,
    postgres::{PgConnectOptions, PgPoolOptions},
};

pub mod account_data;
pub mod backup;
pub mod devices;
pub mod e2ee;
pub mod embedded;
pub mod events;
pub mod filters;
pub mod keys;
pub mod media;
pub mod nonces;
pub mod presence;
pub mod profile;
pub mod push;
pub mod pushers;
pub mod receipts;
pub mod relations;
pub mod rooms;
pub mod sliding_sync;
pub mod state;
pub mod streams;
pub mod sync;
pub mod to_device;
pub mod tokens;
pub mod uia;
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

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Handle to the database; cheap to clone.
#[derive(Clone, Debug)]
pub struct Storage {
    pool: PgPool,
    options: PgConnectOptions,
    wake: streams::WakeBus,
}

impl Storage {
    /// Connects to `options` with a pool of `max_connections`.
    pub async fn connect(options: PgConnectOptions, max_connections: u32) -> Result<Self> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await?;
        Ok(Self {
            pool,
            options,
            wake: Default::default(),
        })
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
