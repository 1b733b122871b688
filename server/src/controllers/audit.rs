//! The audit log (admin, read-only).

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::{Admins, Caller};
use crate::db::{self, audit::AuditEntry};
use crate::error::AppResult;
use crate::extract::Query;

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list))
}

/// Paging of the audit log.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct AuditQuery {
    /// At most this many entries (default 100, max 1000).
    pub limit: Option<i64>,
    /// Only entries with an id below this (for the next page).
    pub before: Option<i64>,
}

/// Lists audit records, newest first (admin).
#[utoipa::path(get, path = "/v1/admin/audit", tag = "admin", params(AuditQuery),
    responses((status = 200, body = Vec<AuditEntry>)), security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    _principal: Caller<Admins>,
    Query(q): Query<AuditQuery>,
) -> AppResult<Json<Vec<AuditEntry>>> {
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    Ok(Json(db::audit::list(&app.db, limit, q.before).await?))
}
