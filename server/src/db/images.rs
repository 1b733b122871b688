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
pub async fn length(db: &Db, sha256: &str) -> Result<Option<u64>, sqlx::Error> {
    let row: Option<(i64,)> = sqlx::query_as("SELECT length FROM images WHERE sha256 = ?")
        .bind(sha256)
        .fetch_optional(db.pool())
        .await?;
    Ok(row.map(|(l,)| l.max(0) as u64))
}

/// Whether any published release (yanked ones included) lists the image.
#[tracing::instrument(skip(db))]
pub async fn in_a_release(db: &Db, sha256: &str) -> Result<bool, sqlx::Error> {
    let row: Option<(i64,)> =
        sqlx::query_as("SELECT 1 FROM release_images WHERE sha256 = ? LIMIT 1")
            .bind(sha256)
            .fetch_optional(db.pool())
            .await?;
    Ok(row.is_some())
}

/// Up to two distinct names the releases listing `sha256` give it
/// (two means "named differently"; none means "in no release").
#[tracing::instrument(skip(db))]
pub async fn release_names(db: &Db, sha256: &str) -> Result<Vec<String>, sqlx::Error> {
    let rows: Vec<(String,)> =
        sqlx::query_as("SELECT DISTINCT name FROM release_images WHERE sha256 = ? LIMIT 2")
            .bind(sha256)
            .fetch_all(db.pool())
            .await?;
    Ok(rows.into_iter().map(|(n,)| n).collect())
}

/// Records an image storage has verified; returns false when the row
/// already existed (uploads are idempotent, content-addressed).
#[tracing::instrument(skip(tx))]
pub async fn insert_if_absent(tx: &mut Tx, sha256: &str, length: u64) -> Result<bool, sqlx::Error> {
    let length = i64::try_from(length).unwrap_or(i64::MAX);
    let done = sqlx::query(
        "INSERT INTO images (sha256, length, created_at) VALUES (?, ?, ?)
         ON CONFLICT (sha256) DO NOTHING",
    )
    .bind(sha256)
    .bind(length)
    .bind(OffsetDateTime::now_utc())
    .execute(&mut **tx)
    .await?;
    Ok(done.rows_affected() == 1)
}
