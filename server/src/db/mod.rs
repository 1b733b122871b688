//! The database layer: all SQL lives in this folder, one file per resource,
//! as functions that take the database ([`Db`]) or a transaction ([`Tx`]),
//! or either of them ([`Exec`]).
//!
//! Two backends sit behind the facade: SQLite (the embedded default, WAL
//! mode, one file beside the blobs) and PostgreSQL (for several replicas),
//! chosen by the URL's scheme. Each has its own migrations folder
//! (`migrations/sqlite`, `migrations/postgres`); every query is written
//! once, with `$N` placeholders, which both accept.
//!
//! Why an enum over two pools, with each query expanded for both by the
//! `on!` macro (defined below), rather than `sqlx::Any` or generic functions:
//! `sqlx::Any` has no date, time or uuid types (every timestamp would have
//! to travel as text on PostgreSQL too) and copies every row into its own
//! value type; functions generic over `sqlx::Database` need a long list of
//! `Encode`/`Decode`/`Executor` bounds on each of them. The macro compiles
//! the same query text against each backend's concrete types, so a type
//! that one backend cannot bind is a compile error, and what differs per
//! backend stays in this file: connecting and migrating, how a write
//! transaction starts ([`Db::begin`]), error classification
//! ([`Error`]) and the timestamp encoding that must sort as text on SQLite
//! ([`Stamp`]).
//!
//! Write transactions never interleave, on either backend:
//! - SQLite: `BEGIN IMMEDIATE` takes the one write lock up front, so two
//!   read-then-write transactions queue on the busy timeout instead of the
//!   second failing with `SQLITE_BUSY_SNAPSHOT` when it first writes (a
//!   deferred transaction whose snapshot is older than another's commit
//!   can never upgrade).
//! - PostgreSQL: `BEGIN` and then a transaction-scoped advisory lock
//!   ([`WRITE_LOCK`]) that every write transaction takes first. This is the
//!   same guarantee as SQLite's, chosen over row locks (each handler would
//!   have to name every row it reads before writing, and a missed one is a
//!   silent race) and over SERIALIZABLE (every handler would have to be
//!   re-runnable after a serialisation failure). Write transactions are
//!   short (a publish, a catalogue edit, a batch of last-seen updates), so
//!   one at a time is not what limits a fleet's update checks, which only
//!   read. READ COMMITTED gives each statement after the lock a view that
//!   includes every earlier write transaction.
//!
//! A lock held longer than the busy or statement timeout surfaces as
//! [`Error::Unavailable`], which handlers answer with 503 `unavailable` and
//! `Retry-After`. Read-only transactions ([`Db::begin_read`]) see one
//! consistent snapshot and never wait for writers.

/// Runs one query body against whichever backend `$exec` (a `&Db`, a
/// `&mut Tx` or an [`Exec`]) uses: the body is compiled once per backend,
/// with `$c` bound to that backend's pool (`&Pool`) or connection
/// (`&mut Connection`), and must evaluate to `Result<T, sqlx::Error>`; the
/// macro gives `Result<T, db::Error>`. A pool may be used several times in
/// the body; a connection once (reborrow with `&mut *$c` for more).
macro_rules! on {
    ($exec:expr, $c:ident => $body:expr) => {{
        let exec: $crate::db::Exec<'_> = ($exec).into();
        let result: ::std::result::Result<_, ::sqlx::Error> = match exec {
            $crate::db::Exec::Db(db) => match db.pool() {
                $crate::db::Pool::Sqlite($c) => $body,
                $crate::db::Pool::Postgres($c) => $body,
            },
            $crate::db::Exec::Tx(tx) => match tx.inner() {
                $crate::db::TxInner::Sqlite(t) => {
                    let $c = &mut **t;
                    $body
                }
                $crate::db::TxInner::Postgres(t) => {
                    let $c = &mut **t;
                    $body
                }
            },
        };
        result.map_err($crate::db::Error::from)
    }};
}

pub mod audit;
pub mod catalogue;
pub mod contracts;
pub mod devices;
mod error;
pub mod groups;
pub mod images;
pub mod invalidations;
pub mod jobs;
pub mod privacy;
pub mod pushes;
pub mod releases;
pub mod reports;
pub mod rmas;
pub mod rollouts;
pub mod snapshot;
pub mod tokens;
pub mod trust;

pub use error::Error;

use std::str::FromStr as _;
use std::time::Duration;

use anyhow::Context as _;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, Postgres, Sqlite, SqlitePool, Transaction};
use time::OffsetDateTime;

/// The advisory lock key every PostgreSQL write transaction takes first
/// (`pg_advisory_xact_lock`); any fixed number works, this one spells
/// "firmup" in ASCII.
pub const WRITE_LOCK: i64 = 0x6669_726d_7570;

/// How the pool is sized and how long a statement may run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolSettings {
    /// Connections in the pool.
    pub max_connections: u32,
    /// The longest a statement may run before the database cancels it
    /// (PostgreSQL `statement_timeout`; on SQLite, how long a write waits
    /// for the write lock).
    pub statement_timeout: Duration,
    /// How long a request waits for a free connection.
    pub acquire_timeout: Duration,
}

impl Default for PoolSettings {
    fn default() -> Self {
        PoolSettings {
            max_connections: 8,
            statement_timeout: Duration::from_secs(5),
            acquire_timeout: Duration::from_secs(5),
        }
    }
}

/// The database facade.
#[derive(Clone)]
pub struct Db {
    pool: Pool,
    /// The URL without its password, for messages.
    shown: String,
}

impl std::fmt::Debug for Db {
    /// Never the password: only the redacted URL.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Db")
            .field("backend", &self.backend())
            .field("url", &self.shown)
            .finish()
    }
}

/// The pool of one backend (used by [`on!`]).
#[derive(Debug, Clone)]
#[doc(hidden)]
pub enum Pool {
    /// The embedded default.
    Sqlite(SqlitePool),
    /// For several replicas.
    Postgres(PgPool),
}

/// Which engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// A transaction; state-changing handlers do their writes and the audit
/// record in one. Dropped without [`Tx::commit`], it rolls back.
#[derive(Debug)]
pub struct Tx(TxInner);

/// The transaction of one backend (used by [`on!`]).
#[derive(Debug)]
#[doc(hidden)]
pub enum TxInner {
    /// SQLite.
    Sqlite(Transaction<'static, Sqlite>),
    /// PostgreSQL.
    Postgres(Transaction<'static, Postgres>),
}

impl Tx {
    /// Commits.
    pub async fn commit(self) -> Result<(), Error> {
        match self.0 {
            TxInner::Sqlite(t) => t.commit().await,
            TxInner::Postgres(t) => t.commit().await,
        }
        .map_err(Error::from)
    }

    /// Rolls back (dropping does too, without waiting).
    pub async fn rollback(self) -> Result<(), Error> {
        match self.0 {
            TxInner::Sqlite(t) => t.rollback().await,
            TxInner::Postgres(t) => t.rollback().await,
        }
        .map_err(Error::from)
    }

    #[doc(hidden)]
    pub fn inner(&mut self) -> &mut TxInner {
        &mut self.0
    }
}

/// Where a query runs: on the pool (its own implicit transaction) or in a
/// transaction. Functions that are useful in both take
/// `impl Into<Exec<'_>>`, so one function serves both (pass `&db` or
/// `&mut tx`).
#[derive(Debug)]
pub enum Exec<'a> {
    /// On the pool.
    Db(&'a Db),
    /// In a transaction.
    Tx(&'a mut Tx),
}

impl Exec<'_> {
    /// The same place for one more query, so one `Exec` serves several.
    pub fn reborrow(&mut self) -> Exec<'_> {
        match self {
            Exec::Db(db) => Exec::Db(db),
            Exec::Tx(tx) => Exec::Tx(tx),
        }
    }
}

impl<'a> From<&'a Db> for Exec<'a> {
    fn from(db: &'a Db) -> Self {
        Exec::Db(db)
    }
}

impl<'a> From<&'a mut Tx> for Exec<'a> {
    fn from(tx: &'a mut Tx) -> Self {
        Exec::Tx(tx)
    }
}

/// A timestamp bound so that it compares correctly on each backend: on
/// SQLite, where timestamps are text, always with six fractional digits
/// (sqlx's own text form drops trailing zeros, and "…:05Z" sorts after
/// "…:05.5Z"); on PostgreSQL, a `timestamptz`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stamp(pub OffsetDateTime);

impl Stamp {
    fn text(self) -> String {
        const FORMAT: &[time::format_description::BorrowedFormatItem<'_>] = time::macros::format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
        );
        let t = self.0.to_offset(time::UtcOffset::UTC);
        t.format(FORMAT)
            .unwrap_or_else(|_| t.unix_timestamp().to_string())
    }
}

impl sqlx::Type<Sqlite> for Stamp {
    fn type_info() -> <Sqlite as sqlx::Database>::TypeInfo {
        <String as sqlx::Type<Sqlite>>::type_info()
    }
}

impl<'q> sqlx::Encode<'q, Sqlite> for Stamp {
    fn encode_by_ref(
        &self,
        buf: &mut <Sqlite as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <String as sqlx::Encode<'q, Sqlite>>::encode(self.text(), buf)
    }
}

impl sqlx::Type<Postgres> for Stamp {
    fn type_info() -> <Postgres as sqlx::Database>::TypeInfo {
        <OffsetDateTime as sqlx::Type<Postgres>>::type_info()
    }
}

impl<'q> sqlx::Encode<'q, Postgres> for Stamp {
    fn encode_by_ref(
        &self,
        buf: &mut <Postgres as sqlx::Database>::ArgumentBuffer<'q>,
    ) -> Result<sqlx::encode::IsNull, sqlx::error::BoxDynError> {
        <OffsetDateTime as sqlx::Encode<'q, Postgres>>::encode_by_ref(&self.0, buf)
    }
}

/// `$1, $2, ... $n`: the placeholders of an `IN (...)` list of `n` values.
fn in_list(n: usize) -> String {
    (1..=n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Which of `keys` exist: `select` is a query up to its `IN`
/// (`SELECT serial FROM devices WHERE serial IN`), run in chunks of 500
/// keys so that no backend's limit on bound values is reached.
async fn existing_keys(
    tx: &mut Tx,
    select: &str,
    keys: &[&str],
) -> Result<std::collections::HashSet<String>, Error> {
    let mut found = std::collections::HashSet::new();
    for chunk in keys.chunks(500) {
        let sql = format!("{select} ({})", in_list(chunk.len()));
        let rows: Vec<String> = on!(&mut *tx, conn => {
            let mut q = sqlx::query_scalar(&sql);
            for key in chunk {
                q = q.bind(*key);
            }
            q.fetch_all(conn).await
        })?;
        found.extend(rows);
    }
    Ok(found)
}

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
    /// Connects with the default pool settings and applies migrations.
    pub async fn connect(url: &str) -> anyhow::Result<Db> {
        Db::connect_with(url, PoolSettings::default()).await
    }

    /// Connects (creating a SQLite file if needed) and applies migrations;
    /// `postgres://` and `postgresql://` URLs select PostgreSQL, anything
    /// else SQLite.
    pub async fn connect_with(url: &str, settings: PoolSettings) -> anyhow::Result<Db> {
        let shown = crate::domain::url::redact_url(url);
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Db::connect_postgres(url, shown, settings).await
        } else {
            Db::connect_sqlite(url, shown, settings).await
        }
    }

    async fn connect_sqlite(
        url: &str,
        shown: String,
        settings: PoolSettings,
    ) -> anyhow::Result<Db> {
        let options = SqliteConnectOptions::from_str(url)
            .with_context(|| format!("database URL {shown:?}"))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(settings.statement_timeout);
        // Two processes opening a fresh database at once (`serve` and
        // `token create` started together) race on creating the file,
        // switching it to WAL and applying the schema: both would see no
        // migrations table. An exclusive lock on a file beside the database,
        // held from before the first connection until the migrations are
        // done, makes the second wait and then find everything in place
        // (sqlx's migrator takes no lock on SQLite).
        let lock = migration_lock(options_filename(url)).await?;
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await
            .with_context(|| format!("opening database {shown}"))?;
        let migrated = sqlx::migrate!("./migrations/sqlite")
            .run(&pool)
            .await
            .context("applying database migrations");
        drop(lock);
        migrated?;
        Ok(Db {
            pool: Pool::Sqlite(pool),
            shown,
        })
    }

    async fn connect_postgres(
        url: &str,
        shown: String,
        settings: PoolSettings,
    ) -> anyhow::Result<Db> {
        let options = PgConnectOptions::from_str(url)
            .with_context(|| format!("database URL {shown:?}"))?
            .application_name("firmup-server")
            .options([(
                "statement_timeout",
                format!("{}ms", settings.statement_timeout.as_millis().max(1)),
            )]);
        let place = format!(
            "PostgreSQL at {}:{}, database {:?}",
            options.get_host(),
            options.get_port(),
            options.get_database().unwrap_or("(the user's)")
        );
        // Plain connections first: the pool would retry until its acquire
        // timeout and report only that, hiding why. A refused or lost
        // connection is tried again for as long (the database may be
        // starting beside us); anything else (no such database, a wrong
        // password) fails at once; either way the error says which.
        use sqlx::{ConnectOptions as _, Connection as _};
        let deadline = tokio::time::Instant::now() + settings.acquire_timeout;
        loop {
            match options.connect().await {
                Ok(conn) => {
                    conn.close().await.ok();
                    break;
                }
                Err(e) => {
                    let e = Error::from(e);
                    if !e.is_unavailable() || tokio::time::Instant::now() >= deadline {
                        anyhow::bail!("cannot connect to {place}: {e}");
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await
            .map_err(|e| anyhow::anyhow!("cannot connect to {place}: {}", Error::from(e)))?;
        // sqlx's migrator holds an advisory lock on PostgreSQL while it
        // runs, so replicas starting together apply each migration once.
        sqlx::migrate!("./migrations/postgres")
            .run(&pool)
            .await
            .with_context(|| format!("applying database migrations on {place}"))?;
        Ok(Db {
            pool: Pool::Postgres(pool),
            shown,
        })
    }

    /// Which engine this is.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The pool's connections now: (open, idle).
    pub fn pool_stats(&self) -> (u32, usize) {
        match &self.pool {
            Pool::Sqlite(p) => (p.size(), p.num_idle()),
            Pool::Postgres(p) => (p.size(), p.num_idle()),
        }
    }

    /// The URL with its password replaced, for messages.
    pub fn shown_url(&self) -> &str {
        &self.shown
    }

    #[doc(hidden)]
    pub fn pool(&self) -> &Pool {
        &self.pool
    }

    /// Starts a write transaction that no other write transaction
    /// interleaves with (see the module docs): it waits up to the busy or
    /// statement timeout for the write lock, then holds it until commit or
    /// rollback, so what it reads cannot change under it before it writes.
    pub async fn begin(&self) -> Result<Tx, Error> {
        match &self.pool {
            Pool::Sqlite(p) => Ok(Tx(TxInner::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?))),
            Pool::Postgres(p) => {
                let mut tx = p.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock($1)")
                    .bind(WRITE_LOCK)
                    .execute(&mut *tx)
                    .await?;
                Ok(Tx(TxInner::Postgres(tx)))
            }
        }
    }

    /// A write transaction that does NOT take the write lock, so that two
    /// can be open at once. Only for tests of what concurrent writers can
    /// do to readers (the invalidation log's ordering); application code
    /// always uses [`Db::begin`].
    #[doc(hidden)]
    pub async fn begin_unserialised(&self) -> Result<Tx, Error> {
        match &self.pool {
            Pool::Sqlite(p) => Ok(Tx(TxInner::Sqlite(p.begin().await?))),
            Pool::Postgres(p) => Ok(Tx(TxInner::Postgres(p.begin().await?))),
        }
    }

    /// Starts a read-only transaction: a consistent snapshot for several
    /// reads that never waits for, nor blocks, a writer. Use [`Db::begin`]
    /// for anything that writes (on PostgreSQL a write here fails).
    pub async fn begin_read(&self) -> Result<Tx, Error> {
        match &self.pool {
            Pool::Sqlite(p) => Ok(Tx(TxInner::Sqlite(p.begin().await?))),
            Pool::Postgres(p) => Ok(Tx(TxInner::Postgres(
                p.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
                    .await?,
            ))),
        }
    }

    /// Checks the database answers (for `/readyz`).
    pub async fn ready(&self) -> Result<(), Error> {
        on!(self, conn => sqlx::query("SELECT 1").execute(conn).await.map(|_| ()))
    }

    /// Closes the pool, waiting for connections in use to come back.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }
}

#[cfg(test)]
mod tests {
    /// Every schema change is written for both backends, under one name.
    #[test]
    fn each_sqlite_migration_has_a_postgres_one_of_the_same_name() {
        let names = |backend: &str| {
            let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("migrations")
                .join(backend);
            let mut names: Vec<String> = std::fs::read_dir(&dir)
                .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        let sqlite = names("sqlite");
        assert!(!sqlite.is_empty());
        assert_eq!(sqlite, names("postgres"));
    }

    #[test]
    fn in_lists_number_their_placeholders() {
        assert_eq!(super::in_list(1), "$1");
        assert_eq!(super::in_list(3), "$1, $2, $3");
    }
}
