//! API tokens. Only the sha256 of a token is stored; the secret is shown
//! once, when it is created.

use sqlx::FromRow;
use time::{OffsetDateTime, UtcOffset};

use super::{Db, Tx};
use crate::domain::roles::Role;

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
#[tracing::instrument(skip(tx, token_hash, serial, label))]
pub async fn insert(
    tx: &mut Tx,
    id: &str,
    token_hash: &str,
    role: Role,
    serial: Option<&str>,
    label: &str,
    expires_at: Option<OffsetDateTime>,
) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query(
        "INSERT INTO tokens (id, token_hash, role, serial, label, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(id)
    .bind(token_hash)
    .bind(role.as_str())
    .bind(serial)
    .bind(label)
    .bind(OffsetDateTime::now_utc())
    .bind(expires_at)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// A query reading [`TokenRow`]s: the columns once, then `$rest` (its
/// `WHERE`). A macro rather than `format!`, so every query stays a static
/// string and the token lookup on the request path allocates nothing more.
macro_rules! select_token_rows {
    ($rest:literal) => {
        concat!(
            "SELECT id, role, serial, label, created_at, expires_at, revoked_at FROM tokens ",
            $rest
        )
    };
}

/// Finds a token by the hash of its secret.
#[tracing::instrument(skip(db, token_hash))]
pub async fn find_by_hash(db: &Db, token_hash: &str) -> Result<Option<TokenRow>, super::Error> {
    on!(db, conn => sqlx::query_as(select_token_rows!("WHERE token_hash = $1"))
        .bind(token_hash)
        .fetch_optional(conn)
        .await)
}

/// Finds a token by id, revoked or not.
#[tracing::instrument(skip(db))]
pub async fn find_by_id(db: &Db, id: &str) -> Result<Option<TokenRow>, super::Error> {
    on!(db, conn => sqlx::query_as(select_token_rows!("WHERE id = $1"))
        .bind(id)
        .fetch_optional(conn)
        .await)
}

/// Which tokens [`list`] returns.
#[derive(Debug, Clone, Default)]
pub struct TokenFilter {
    /// Only tokens of this role.
    pub role: Option<Role>,
    /// Only tokens created before this time; with `before_id`, tokens
    /// created at exactly this time with a smaller id too (the position of
    /// the last token of the previous page).
    pub before: Option<OffsetDateTime>,
    /// Tie-breaker for `before` (ignored without it).
    pub before_id: Option<String>,
}

/// Lists up to `limit` tokens, newest first (by creation time, then id
/// descending), matching `filter`.
#[tracing::instrument(skip(db, filter))]
pub async fn list(
    db: &Db,
    filter: &TokenFilter,
    limit: i64,
) -> Result<Vec<TokenRow>, super::Error> {
    // One query text for every filter: an absent filter is a NULL that
    // matches every row. `(created_at, id) < (b, i)` is spelt out so that a
    // cursor without an id (`i` NULL) compares on the time alone. Bound as
    // `OffsetDateTime`, the cursor is encoded exactly as stored timestamps
    // are (RFC 3339 UTC text on SQLite, timestamptz on PostgreSQL).
    on!(db, conn => sqlx::query_as(select_token_rows!(
        "WHERE ($1 IS NULL OR role = $1)
           AND ($2 IS NULL OR created_at < $2 OR (created_at = $2 AND id < $3))
         ORDER BY created_at DESC, id DESC LIMIT $4"
    ))
    .bind(filter.role.as_ref().map(Role::as_str))
    .bind(filter.before.map(|b| b.to_offset(UtcOffset::UTC)))
    .bind(filter.before_id.as_deref())
    .bind(limit)
    .fetch_all(conn)
    .await)
}

/// Revokes a token; returns false if there is no such token.
#[tracing::instrument(skip(tx))]
pub async fn revoke(tx: &mut Tx, id: &str) -> Result<bool, super::Error> {
    let done = on!(&mut *tx, conn => sqlx::query("UPDATE tokens SET revoked_at = $1 WHERE id = $2 AND revoked_at IS NULL")
        .bind(OffsetDateTime::now_utc())
        .bind(id)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// The stored hash of every token, revoked ones included. For tests (that
/// no secret is stored); the server looks tokens up by hash
/// ([`find_by_hash`]) and never lists hashes.
#[doc(hidden)]
#[tracing::instrument(skip(db))]
pub async fn stored_hashes(db: &Db) -> Result<Vec<String>, super::Error> {
    on!(db, conn => sqlx::query_scalar("SELECT token_hash FROM tokens ORDER BY id")
        .fetch_all(conn)
        .await)
}

/// Sets (or clears) a token's expiry; returns false if there is no such
/// token. For tests (a token that has already expired); the server sets
/// the expiry once, at creation ([`insert`]). Cached lookups of the token
/// are not dropped: call it before the token is first used.
#[doc(hidden)]
#[tracing::instrument(skip(tx))]
pub async fn set_expires_at(
    tx: &mut Tx,
    id: &str,
    expires_at: Option<OffsetDateTime>,
) -> Result<bool, super::Error> {
    let done = on!(&mut *tx, conn => sqlx::query("UPDATE tokens SET expires_at = $1 WHERE id = $2")
        .bind(expires_at)
        .bind(id)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(done == 1)
}
