//! The stored trust chain: root version 1 (the pinned root, stored on the
//! first start with a configured trust root, or added through the API) and
//! every rotation after it, kept so that every replica serves the same
//! chain. Replicas load it at start and pick up versions other replicas
//! added with [`newer_than`] (`trust::refresh`), verifying each before
//! trusting it: a row here is never trusted for being here. Rows are
//! inserted only after verification and never changed.

use time::OffsetDateTime;

use super::{Db, Tx};

/// All stored root envelopes, by ascending version.
#[tracing::instrument(skip(db))]
pub async fn chain(db: &Db) -> Result<Vec<(i64, Vec<u8>)>, super::Error> {
    on!(db, conn => sqlx::query_as("SELECT version, envelope FROM trust_roots ORDER BY version")
        .fetch_all(conn)
        .await)
}

/// Stored root envelopes newer than `version`, ascending.
#[tracing::instrument(skip(db))]
pub async fn newer_than(db: &Db, version: u64) -> Result<Vec<(i64, Vec<u8>)>, super::Error> {
    on!(db, conn => sqlx::query_as("SELECT version, envelope FROM trust_roots WHERE version > $1 ORDER BY version")
        .bind(i64::try_from(version).unwrap_or(i64::MAX))
        .fetch_all(conn)
        .await)
}

/// Stores a verified root envelope.
#[tracing::instrument(skip(tx, envelope))]
pub async fn insert(tx: &mut Tx, version: i64, envelope: &[u8]) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query("INSERT INTO trust_roots (version, envelope, added_at) VALUES ($1, $2, $3)")
        .bind(version)
        .bind(envelope)
        .bind(OffsetDateTime::now_utc())
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Deletes the stored root envelope of `version`; returns false if there
/// was none. For tests only (removing a forged row another replica could
/// have stored): the server never deletes a root, the chain only grows.
#[doc(hidden)]
#[tracing::instrument(skip(tx))]
pub async fn delete(tx: &mut Tx, version: i64) -> Result<bool, super::Error> {
    let done = on!(&mut *tx, conn => sqlx::query("DELETE FROM trust_roots WHERE version = $1")
        .bind(version)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(done == 1)
}
