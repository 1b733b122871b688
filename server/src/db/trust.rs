//! Root documents added after the pinned one (rotations), kept so that
//! every replica serves the same chain.

use time::OffsetDateTime;

use super::{Db, Tx};

/// All stored root envelopes, by ascending version.
#[tracing::instrument(skip(db))]
pub async fn chain(db: &Db) -> Result<Vec<(i64, Vec<u8>)>, sqlx::Error> {
    sqlx::query_as("SELECT version, envelope FROM trust_roots ORDER BY version")
        .fetch_all(db.pool())
        .await
}

/// Stores a verified root envelope.
#[tracing::instrument(skip(tx, envelope))]
pub async fn insert(tx: &mut Tx, version: i64, envelope: &[u8]) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO trust_roots (version, envelope, added_at) VALUES (?, ?, ?)")
        .bind(version)
        .bind(envelope)
        .bind(OffsetDateTime::now_utc())
        .execute(&mut **tx)
        .await?;
    Ok(())
}
