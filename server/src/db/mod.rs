//! The database layer: all SQL lives in this folder, one file per resource,
//! as functions that take a pool or a transaction.
//!
//! [`Db`] is the facade handlers get; it hides which backend is in use.
//! Today it is SQLite (the embedded default, WAL mode); PostgreSQL slots in
//! as a second backend with its own migrations folder.

pub mod audit;
pub mod catalogue;
pub mod contracts;
pub mod devices;
pub mod images;
pub mod releases;
pub mod reports;
pub mod snapshot;
pub mod tokens;
pub mod trust;

use std::str::FromStr as _;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

/// The database facade.
#[derive(Debug, Clone)]
pub struct Db {
    pool: SqlitePool,
}

/// A transaction; state-changing handlers do their writes and the audit
/// record in one.
pub type Tx = Transaction<'static, Sqlite>;

impl Db {
    /// Connects (creating the file if needed) and applies migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("database URL {url:?}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .with_context(|| format!("opening database {url}"))?;
        sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .context("applying database migrations")?;
        Ok(Db { pool })
    }

    /// The pool, for the functions of this layer.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Starts a transaction.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        self.pool.begin().await
    }

    /// Checks the database answers (for `/readyz`).
    pub async fn ready(&self) -> Result<(), sqlx::Error> {
        sqlx::query("SELECT 1")
            .execute(&self.pool)
            .await
            .map(|_| ())
    }
}
