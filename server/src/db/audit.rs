//! The audit log: who did what, when, on what. Every state-changing action
//! writes one record in the same transaction as the change itself, so there
//! is no change without its record and no record without its change.

use serde::Serialize;
use sqlx::FromRow;
use time::OffsetDateTime;

use super::Tx;
use crate::domain::roles::Actor;

/// Writes an audit record.
#[tracing::instrument(skip(tx, detail))]
pub async fn record(
    tx: &mut Tx,
    actor: &Actor,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query(
        "INSERT INTO audit_log (at, actor_id, actor_label, actor_role, action, target, detail,
                                request_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(OffsetDateTime::now_utc())
    .bind(&actor.token_id)
    .bind(&actor.label)
    .bind(actor.role.as_str())
    .bind(action)
    .bind(target)
    .bind(detail.to_string())
    .bind(&actor.request_id)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// One audit record as listed.
#[derive(Debug, Serialize, FromRow, utoipa::ToSchema)]
pub struct AuditEntry {
    /// Sequence number.
    pub id: i64,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Token id of the actor (absent for server CLI actions).
    pub actor_id: Option<String>,
    /// Label of the actor's token.
    pub actor_label: String,
    /// Role of the actor.
    pub actor_role: String,
    /// What was done, e.g. `release.publish`.
    pub action: String,
    /// On what, e.g. `encoders/stable/2.1.0`.
    pub target: String,
    /// Details as JSON text.
    pub detail: String,
    /// The request it was done in (`x-request-id`, also in the access
    /// log); absent for server CLI actions.
    pub request_id: Option<String>,
}

/// The most recent records, newest first, optionally after id `before`.
#[tracing::instrument(skip(db))]
pub async fn list(
    db: &super::Db,
    limit: i64,
    before: Option<i64>,
) -> Result<Vec<AuditEntry>, super::Error> {
    on!(db, conn => sqlx::query_as(
        "SELECT id, at, actor_id, actor_label, actor_role, action, target, detail, request_id
         FROM audit_log WHERE id < $1 ORDER BY id DESC LIMIT $2",
    )
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(conn)
    .await)
}

/// How many records of `action` exist, read on the pool or inside a
/// transaction. For tests (what a transaction sees of another's records);
/// the server lists records ([`list`]) and never counts them.
#[doc(hidden)]
#[tracing::instrument(skip(exec))]
pub async fn count_action(
    exec: impl Into<super::Exec<'_>>,
    action: &str,
) -> Result<i64, super::Error> {
    on!(exec, conn => sqlx::query_scalar("SELECT COUNT(*) FROM audit_log WHERE action = $1")
        .bind(action)
        .fetch_one(conn)
        .await)
}
