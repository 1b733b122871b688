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
pub async fn record(tx: &mut Tx, kind: Kind, key: &str) -> Result<(), super::Error> {
    record_at(tx, kind, key, OffsetDateTime::now_utc()).await
}

/// [`record`] with the row's time given: for tests of pruning, which need
/// old rows.
#[doc(hidden)]
pub async fn record_at(
    tx: &mut Tx,
    kind: Kind,
    key: &str,
    at: OffsetDateTime,
) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query("INSERT INTO cache_invalidations (kind, key, at) VALUES ($1, $2, $3)")
        .bind(kind.as_str())
        .bind(key)
        .bind(at)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The highest sequence number written so far (0 for none): where a
/// replica that starts with empty caches begins reading.
#[tracing::instrument(skip(db))]
pub async fn max_seq(db: &Db) -> Result<i64, super::Error> {
    on!(db, conn => sqlx::query_scalar("SELECT COALESCE(MAX(seq), 0) FROM cache_invalidations")
        .fetch_one(conn)
        .await)
}

/// Rows read by [`after`] or [`among`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Batch {
    /// The rows, oldest first.
    pub rows: Vec<Invalidation>,
    /// The seqs of rows of a kind this version does not know (skipped:
    /// nothing of ours to drop, but read).
    pub unknown: Vec<i64>,
    /// Fewer rows than the limit were read: nothing more is waiting.
    pub complete: bool,
}

/// Up to `limit` rows after `seq`, oldest first.
#[tracing::instrument(skip(db))]
pub async fn after(db: &Db, seq: i64, limit: i64) -> Result<Batch, super::Error> {
    let rows: Vec<(i64, String, String)> = on!(db, conn => sqlx::query_as(
        "SELECT seq, kind, key FROM cache_invalidations WHERE seq > $1 ORDER BY seq LIMIT $2",
    )
    .bind(seq)
    .bind(limit)
    .fetch_all(conn)
    .await)?;
    let complete = i64::try_from(rows.len()).unwrap_or(i64::MAX) < limit;
    Ok(batch(rows, complete))
}

/// The rows with these seqs that exist now (the gaps a poller awaits).
#[tracing::instrument(skip(db, seqs), fields(count = seqs.len()))]
pub async fn among(db: &Db, seqs: &[i64]) -> Result<Batch, super::Error> {
    let mut rows = Vec::new();
    for chunk in seqs.chunks(500) {
        let sql = format!(
            "SELECT seq, kind, key FROM cache_invalidations WHERE seq IN ({}) ORDER BY seq",
            super::in_list(chunk.len())
        );
        let found: Vec<(i64, String, String)> = on!(db, conn => {
            let mut q = sqlx::query_as(&sql);
            for seq in chunk {
                q = q.bind(*seq);
            }
            q.fetch_all(conn).await
        })?;
        rows.extend(found);
    }
    Ok(batch(rows, true))
}

fn batch(rows: Vec<(i64, String, String)>, complete: bool) -> Batch {
    let mut unknown = Vec::new();
    let rows = rows
        .into_iter()
        .filter_map(|(seq, kind, key)| match Kind::parse(&kind) {
            Some(kind) => Some(Invalidation { seq, kind, key }),
            // A newer replica's kind: nothing of ours to drop.
            None => {
                tracing::warn!(seq, kind = %kind, "unknown cache invalidation kind; skipped");
                unknown.push(seq);
                None
            }
        })
        .collect();
    Batch {
        rows,
        unknown,
        complete,
    }
}

/// Deletes rows written before `before`; returns how many.
#[tracing::instrument(skip(db))]
pub async fn prune(db: &Db, before: OffsetDateTime) -> Result<u64, super::Error> {
    let done = on!(db, conn => sqlx::query("DELETE FROM cache_invalidations WHERE at < $1")
        .bind(before)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(done)
}
