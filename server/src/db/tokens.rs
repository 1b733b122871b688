//! API tokens. Only the sha256 of a token is stored; the secret is shown
//! once, when it is created.

use sqlx::FromRow;
use time::OffsetDateTime;

use super::{Db, Tx};
use crate::auth::Role;

/// A stored token (without its secret).
#[derive(Debug, Clone, FromRow)]
pub struct TokenRow {
    /// Token id.
    pub id: String,
    /// Role.
    pub role: String,
    /// Bound serial (device tokens).
    pub serial: Option<String>,
    /// Label.
    pub label: String,
    /// Creation time.
    pub created_at: OffsetDateTime,
    /// Expiry, if any.
    pub expires_at: Option<OffsetDateTime>,
    /// Revocation time, if revoked.
    pub revoked_at: Option<OffsetDateTime>,
}

/// Inserts a token.
#[tracing::instrument(skip(tx, token_hash))]
pub async fn insert(
    tx: &mut Tx,
    id: &str,
    token_hash: &str,
    role: Role,
    serial: Option<&str>,
    label: &str,
    expires_at: Option<OffsetDateTime>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO tokens (id, token_hash, role, serial, label, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(id)
    .bind(token_hash)
    .bind(role.as_str())
    .bind(serial)
    .bind(label)
    .bind(OffsetDateTime::now_utc())
    .bind(expires_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Finds a token by the hash of its secret.
#[tracing::instrument(skip(db, token_hash))]
pub async fn find_by_hash(db: &Db, token_hash: &str) -> Result<Option<TokenRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, role, serial, label, created_at, expires_at, revoked_at
         FROM tokens WHERE token_hash = ?",
    )
    .bind(token_hash)
    .fetch_optional(db.pool())
    .await
}

/// Lists tokens, newest first.
#[tracing::instrument(skip(db))]
pub async fn list(db: &Db) -> Result<Vec<TokenRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, role, serial, label, created_at, expires_at, revoked_at
         FROM tokens ORDER BY created_at DESC",
    )
    .fetch_all(db.pool())
    .await
}

/// Revokes a token; returns false if there is no such token.
#[tracing::instrument(skip(tx))]
pub async fn revoke(tx: &mut Tx, id: &str) -> Result<bool, sqlx::Error> {
    let done = sqlx::query("UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL")
        .bind(OffsetDateTime::now_utc())
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(done.rows_affected() == 1)
}
