//! The audit log: who did what, when, on what. Every state-changing action
//! writes one record in the same transaction as the change itself, so there
//! is no change without its record and no record without its change.

use serde::Serialize;
use sqlx::FromRow;
use time::OffsetDateTime;

use super::Tx;
use crate::auth::Actor;

/// Writes an audit record.
#[tracing::instrument(skip(tx, detail))]
pub async fn record(
    tx: &mut Tx,
    actor: &Actor,
    action: &str,
    target: &str,
    detail: serde_json::Value,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO audit_log (at, actor_id, actor_label, actor_role, action, target, detail,
                                request_id)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(OffsetDateTime::now_utc())
    .bind(&actor.token_id)
    .bind(&actor.label)
    .bind(actor.role.as_str())
    .bind(action)
    .bind(target)
    .bind(detail.to_string())
    .bind(&actor.request_id)
    .execute(&mut **tx)
    .await?;
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
) -> Result<Vec<AuditEntry>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, at, actor_id, actor_label, actor_role, action, target, detail, request_id
         FROM audit_log WHERE id < ? ORDER BY id DESC LIMIT ?",
    )
    .bind(before.unwrap_or(i64::MAX))
    .bind(limit)
    .fetch_all(db.pool())
    .await
}
