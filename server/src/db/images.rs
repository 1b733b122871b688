//! Uploaded images: one row per verified blob in storage, keyed by its
//! sha256. A row is written only after storage has accepted the bytes (the
//! digest and length were checked on the stream), so a row always names a
//! complete, verified object; publishing relies on that.
//!
//! This module must never insert a row for bytes storage has not verified.

use time::OffsetDateTime;

use super::{Db, Tx};

/// Length of the uploaded image `sha256`, if a row exists.
#[tracing::instrument(skip(db))]
pub async fn length(db: &Db, sha256: &str) -> Result<Option<u64>, super::Error> {
    let row: Option<(i64,)> = on!(db, conn => sqlx::query_as("SELECT length FROM images WHERE sha256 = $1")
        .bind(sha256)
        .fetch_optional(conn)
        .await)?;
    Ok(row.map(|(l,)| l.max(0) as u64))
}

/// Whether any published release (yanked ones included) lists the image.
#[tracing::instrument(skip(db))]
pub async fn in_a_release(db: &Db, sha256: &str) -> Result<bool, super::Error> {
    let row: Option<(i32,)> = on!(db, conn => sqlx::query_as("SELECT 1 FROM release_images WHERE sha256 = $1 LIMIT 1")
            .bind(sha256)
            .fetch_optional(conn)
            .await)?;
    Ok(row.is_some())
}

/// Up to two distinct names the releases listing `sha256` give it
/// (two means "named differently"; none means "in no release").
#[tracing::instrument(skip(db))]
pub async fn release_names(db: &Db, sha256: &str) -> Result<Vec<String>, super::Error> {
    let rows: Vec<(String,)> = on!(db, conn => sqlx::query_as("SELECT DISTINCT name FROM release_images WHERE sha256 = $1 LIMIT 2")
            .bind(sha256)
            .fetch_all(conn)
            .await)?;
    Ok(rows.into_iter().map(|(n,)| n).collect())
}

/// Records an image storage has verified; returns false when the row
/// already existed (uploads are idempotent, content-addressed).
#[tracing::instrument(skip(tx))]
pub async fn insert_if_absent(
    tx: &mut Tx,
    sha256: &str,
    length: u64,
) -> Result<bool, super::Error> {
    let length = i64::try_from(length).unwrap_or(i64::MAX);
    let done = on!(&mut *tx, conn => sqlx::query(
        "INSERT INTO images (sha256, length, created_at) VALUES ($1, $2, $3)
         ON CONFLICT (sha256) DO NOTHING",
    )
    .bind(sha256)
    .bind(length)
    .bind(OffsetDateTime::now_utc())
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// Every image row, as `(sha256, length)`, by sha256. For tests (that an
/// upload stored exactly one verified row); the server looks images up by
/// digest ([`length`]).
#[doc(hidden)]
#[tracing::instrument(skip(db))]
pub async fn list(db: &Db) -> Result<Vec<(String, u64)>, super::Error> {
    let rows: Vec<(String, i64)> = on!(db, conn => sqlx::query_as("SELECT sha256, length FROM images ORDER BY sha256")
            .fetch_all(conn)
            .await)?;
    Ok(rows
        .into_iter()
        .map(|(sha256, length)| (sha256, length.max(0) as u64))
        .collect())
}
