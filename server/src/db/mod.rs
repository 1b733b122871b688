//! The database layer: all SQL lives in this folder, one file per resource,
//! as functions that take a pool or a transaction.
//!
//! [`Db`] is the facade handlers get; it hides which backend is in use.
//! Today it is SQLite (the embedded default, WAL mode); PostgreSQL slots in
//! as a second backend with its own migrations folder.
//!
//! Write transactions start with `BEGIN IMMEDIATE` ([`Db::begin`]): they
//! take SQLite's one write lock up front, so two read-then-write
//! transactions queue on the busy timeout instead of the second failing
//! with `SQLITE_BUSY_SNAPSHOT` when it first writes (a deferred transaction
//! whose read snapshot is older than another's commit can never upgrade).
//! A write lock held longer than the busy timeout surfaces as 503
//! `unavailable` with `Retry-After` (see `AppError`'s `From<sqlx::Error>`).
//! Read-only transactions use [`Db::begin_read`] and never wait on writers.

pub mod audit;
pub mod catalogue;
pub mod contracts;
pub mod devices;
pub mod images;
pub mod invalidations;
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

/// The database file of a SQLite URL, if it names one.
fn options_filename(url: &str) -> Option<std::path::PathBuf> {
    let options = SqliteConnectOptions::from_str(url).ok()?;
    let path = options.get_filename();
    let memory = path.as_os_str().is_empty() || path.as_os_str() == ":memory:";
    (!memory).then(|| path.to_path_buf())
}

/// Takes the exclusive migration lock beside `db_file` (`<file>.lock`),
/// waiting for another process that holds it. Released when dropped.
async fn migration_lock(
    db_file: Option<std::path::PathBuf>,
) -> anyhow::Result<Option<std::fs::File>> {
    let Some(db_file) = db_file else {
        return Ok(None);
    };
    let mut name = db_file.into_os_string();
    name.push(".lock");
    let path = std::path::PathBuf::from(name);
    tokio::task::spawn_blocking(move || {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("opening the migration lock {}", path.display()))?;
        file.lock()
            .with_context(|| format!("locking {}", path.display()))?;
        Ok(Some(file))
    })
    .await
    .context("waiting for the migration lock")?
}

impl Db {
    /// Connects (creating the file if needed) and applies migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("database URL {:?}", crate::config::redact_url(url)))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(5));
        // Two processes opening a fresh database at once (`serve` and
        // `token create` started together) race on creating the file,
        // switching it to WAL and applying the schema: both would see no
        // migrations table. An exclusive lock on a file beside the database,
        // held from before the first connection until the migrations are
        // done, makes the second wait and then find everything in place
        // (sqlx's migrator takes no lock on SQLite).
        let lock = migration_lock(options_filename(url)).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await
            .with_context(|| format!("opening database {}", crate::config::redact_url(url)))?;
        let migrated = sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .context("applying database migrations");
        drop(lock);
        migrated?;
        Ok(Db { pool })
    }

    /// The pool, for the functions of this layer.
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    /// Starts a write transaction (`BEGIN IMMEDIATE`): it waits up to the
    /// busy timeout for the write lock, then holds it until commit or
    /// rollback, so what it reads cannot change under it before it writes.
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        self.pool.begin_with("BEGIN IMMEDIATE").await
    }

    /// Starts a read-only transaction (deferred `BEGIN`): a consistent
    /// snapshot for several reads that never waits for, nor blocks, a
    /// writer. Writing in it can fail with `SQLITE_BUSY_SNAPSHOT`; use
    /// [`Db::begin`] for anything that writes.
    pub async fn begin_read(&self) -> Result<Tx, sqlx::Error> {
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
