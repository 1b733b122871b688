//! The database layer's one error type: what went wrong, classified so that
//! callers never look inside `sqlx::Error` or at a backend's error codes.

use std::fmt;

use crate::error::AppError;

/// A failed query or transaction.
#[derive(Debug)]
pub enum Error {
    /// A uniqueness constraint refused the write: the key exists (often
    /// because a concurrent request inserted it first).
    Conflict {
        /// The constraint's name, when the backend gives it.
        constraint: Option<String>,
        /// The backend's message.
        message: String,
    },
    /// The database is down, unreachable, or busy past the timeouts
    /// (locks, pool, statement timeout): trying again later can work.
    Unavailable(sqlx::Error),
    /// Anything else: a bug, corruption or a schema mismatch.
    Other(sqlx::Error),
    /// A stored row the code cannot read (only a hand edit makes one).
    Malformed(String),
}

impl Error {
    /// Whether this is a uniqueness conflict.
    pub fn is_conflict(&self) -> bool {
        matches!(self, Error::Conflict { .. })
    }

    /// Whether trying again later may succeed.
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Error::Unavailable(_))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Conflict { message, .. } => write!(f, "conflict: {message}"),
            Error::Unavailable(e) => write!(f, "database unavailable: {e}"),
            Error::Other(e) => write!(f, "database error: {e}"),
            Error::Malformed(what) => write!(f, "malformed stored row: {what}"),
        }
    }
}

/// The message already holds the cause's, so no `source` is given (an
/// error chain would print it twice).
impl std::error::Error for Error {}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => Error::Unavailable(e),
            sqlx::Error::Database(ref d) if d.is_unique_violation() => Error::Conflict {
                constraint: d.constraint().map(str::to_string),
                message: d.message().to_string(),
            },
            sqlx::Error::Database(ref d) if is_transient(d.code().as_deref()) => {
                Error::Unavailable(e)
            }
            other => Error::Other(other),
        }
    }
}

impl From<Error> for AppError {
    /// Contention and outages are 503 (retry later); a conflict a handler
    /// did not turn into its own 409, and anything else, is a bug or
    /// corruption: 500.
    fn from(e: Error) -> Self {
        if e.is_unavailable() {
            AppError::Unavailable(e.to_string())
        } else {
            AppError::Internal(anyhow::Error::new(e).context("database"))
        }
    }
}

/// Whether a backend error code means "try again later".
///
/// SQLite's are numbers: `SQLITE_BUSY` (5) or `SQLITE_LOCKED` (6), or one of
/// their extended codes (the primary code is the low byte:
/// `SQLITE_BUSY_SNAPSHOT` is 517, `SQLITE_BUSY_TIMEOUT` 773,
/// `SQLITE_LOCKED_SHAREDCACHE` 262, ...): another connection held a lock
/// past the busy timeout.
///
/// PostgreSQL's are SQLSTATEs: class 08 (connection exceptions), 40001 and
/// 40P01 (serialisation failure, deadlock), 53 (insufficient resources:
/// too many connections, disk full), 55P03 (lock not available), 57014
/// (statement timeout or cancel), 57P01–57P03 (shutdown, crash recovery,
/// cannot connect now).
pub(crate) fn is_transient(code: Option<&str>) -> bool {
    const SQLITE_BUSY: i32 = 5;
    const SQLITE_LOCKED: i32 = 6;
    let Some(code) = code else {
        return false;
    };
    // SQLSTATEs are always five characters, some of them all digits
    // (40001, 53300, and 08006, which parses as 8006); SQLite's codes are
    // decimal numbers of at most four digits (its extended codes stay below
    // 10000), so only a shorter code is read as SQLite's.
    if code.len() < 5
        && let Ok(n) = code.parse::<i32>()
    {
        return matches!(n & 0xff, SQLITE_BUSY | SQLITE_LOCKED);
    }
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "40001" | "40P01" | "55P03" | "57014" | "57P01" | "57P02" | "57P03"
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn busy_locked_and_outage_codes_are_transient() {
        for code in ["5", "6", "261", "262", "517", "518", "773"] {
            assert!(is_transient(Some(code)), "{code}");
        }
        for code in [
            "08006", "08001", "40001", "40P01", "53300", "55P03", "57014", "57P01", "57P03",
        ] {
            assert!(is_transient(Some(code)), "{code}");
        }
        // Constraint (19, 2067 unique), I/O (10), corrupt (11); PostgreSQL
        // unique violation, syntax error, internal error.
        for code in ["19", "2067", "10", "11", "23505", "42601", "XX000"] {
            assert!(!is_transient(Some(code)), "{code}");
        }
        assert!(!is_transient(None));
    }

    /// A real `SQLITE_BUSY` from a second writer that does not wait.
    #[tokio::test]
    async fn a_locked_database_is_unavailable_not_internal() {
        use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("busy.db"))
            .create_if_missing(true)
            .busy_timeout(std::time::Duration::ZERO);
        let pool = SqlitePoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .unwrap();
        let holder = pool.begin_with("BEGIN IMMEDIATE").await.unwrap();
        let e = pool.begin_with("BEGIN IMMEDIATE").await.unwrap_err();
        let app = AppError::from(Error::from(e));
        assert_eq!(
            app.status(),
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "{app:?}"
        );
        let response = axum::response::IntoResponse::into_response(app);
        assert_eq!(
            response.headers().get(axum::http::header::RETRY_AFTER),
            Some(&axum::http::HeaderValue::from_static("5"))
        );
        drop(holder);
    }
}
