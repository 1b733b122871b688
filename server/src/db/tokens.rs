//! API tokens. Only the sha256 of a token is stored; the secret is shown
//! once, when it is created.

use sqlx::{FromRow, QueryBuilder, Sqlite};
use time::{OffsetDateTime, UtcOffset};

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
pub async fn find_by_hash(db: &Db, token_hash: &str) -> Result<Option<TokenRow>, sqlx::Error> {
    sqlx::query_as(select_token_rows!("WHERE token_hash = ?"))
        .bind(token_hash)
        .fetch_optional(db.pool())
        .await
}

/// Finds a token by id, revoked or not.
#[tracing::instrument(skip(db))]
pub async fn find_by_id(db: &Db, id: &str) -> Result<Option<TokenRow>, sqlx::Error> {
    sqlx::query_as(select_token_rows!("WHERE id = ?"))
        .bind(id)
        .fetch_optional(db.pool())
        .await
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
#[tracing::instrument(skip(db))]
pub async fn list(db: &Db, filter: &TokenFilter, limit: i64) -> Result<Vec<TokenRow>, sqlx::Error> {
    let mut q = QueryBuilder::<Sqlite>::new(select_token_rows!("WHERE 1 = 1"));
    if let Some(role) = filter.role {
        q.push(" AND role = ").push_bind(role.as_str());
    }
    // Bound as `OffsetDateTime`, the cursor is encoded exactly as stored
    // timestamps are (RFC 3339 UTC), so the text comparison orders them.
    match (filter.before, filter.before_id.as_deref()) {
        (Some(before), Some(id)) => {
            q.push(" AND (created_at, id) < (")
                .push_bind(before.to_offset(UtcOffset::UTC))
                .push(", ")
                .push_bind(id)
                .push(")");
        }
        (Some(before), None) => {
            q.push(" AND created_at < ")
                .push_bind(before.to_offset(UtcOffset::UTC));
        }
        (None, _) => {}
    }
    q.push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .push_bind(limit);
    q.build_query_as().fetch_all(db.pool()).await
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
