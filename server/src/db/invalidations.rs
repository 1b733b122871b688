//! The `cache_invalidations` log that tells every replica which cached
//! device facts and tokens to drop (see [`crate::invalidation`]).
//!
//! Rows only: this module never touches a cache. Appending inside the
//! transaction that makes the change ([`record`]) means the row exists
//! exactly when the change does.

use std::fmt;

use time::OffsetDateTime;

use super::{Db, Tx};

/// What a row invalidates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// The cached facts of one device; the key is its serial.
    Device,
    /// The cached lookups of one token; the key is its id.
    Token,
}

impl Kind {
    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Device => "device",
            Kind::Token => "token",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "device" => Some(Kind::Device),
            "token" => Some(Kind::Token),
            _ => None,
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One row of the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalidation {
    /// Sequence number; rows become visible in this order.
    pub seq: i64,
    /// What to drop.
    pub kind: Kind,
    /// Serial or token id.
    pub key: String,
}

/// Appends a row inside the caller's transaction.
#[tracing::instrument(skip(tx))]
pub async fn record(tx: &mut Tx, kind: Kind, key: &str) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO cache_invalidations (kind, key, at) VALUES (?, ?, ?)")
        .bind(kind.as_str())
        .bind(key)
        .bind(OffsetDateTime::now_utc())
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The highest sequence number written so far (0 for none): where a
/// replica that starts with empty caches begins reading.
#[tracing::instrument(skip(db))]
pub async fn max_seq(db: &Db) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM cache_invalidations")
        .fetch_one(db.pool())
        .await
}

/// Rows read by [`after`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// The rows, oldest first.
    pub rows: Vec<Invalidation>,
    /// The highest seq read, including rows of a kind this version does
    /// not know (skipped, but read past); `None` when nothing was read.
    pub last_seq: Option<i64>,
    /// Fewer rows than the limit were read: nothing more is waiting.
    pub complete: bool,
}

/// Up to `limit` rows after `seq`, oldest first.
#[tracing::instrument(skip(db))]
pub async fn after(db: &Db, seq: i64, limit: i64) -> Result<Batch, sqlx::Error> {
    let rows: Vec<(i64, String, String)> = sqlx::query_as(
        "SELECT seq, kind, key FROM cache_invalidations WHERE seq > ? ORDER BY seq LIMIT ?",
    )
    .bind(seq)
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    let complete = i64::try_from(rows.len()).unwrap_or(i64::MAX) < limit;
    let last_seq = rows.last().map(|(seq, _, _)| *seq);
    let rows = rows
        .into_iter()
        .filter_map(|(seq, kind, key)| match Kind::parse(&kind) {
            Some(kind) => Some(Invalidation { seq, kind, key }),
            // A newer replica's kind: nothing of ours to drop.
            None => {
                tracing::warn!(seq, kind = %kind, "unknown cache invalidation kind; skipped");
                None
            }
        })
        .collect();
    Ok(Batch {
        rows,
        last_seq,
        complete,
    })
}

/// Deletes rows written before `before`; returns how many.
#[tracing::instrument(skip(db))]
pub async fn prune(db: &Db, before: OffsetDateTime) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("DELETE FROM cache_invalidations WHERE at < ?")
        .bind(before)
        .execute(db.pool())
        .await?;
    Ok(done.rows_affected())
}
