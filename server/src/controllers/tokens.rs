//! API tokens (admin): create, list, revoke. The handlers parse and check
//! the role; issuing and revoking are [`crate::tokens`]'s job.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::{Admins, Caller};
use crate::db;
use crate::domain::roles::Role;
use crate::error::AppResult;
use crate::extract::{JsonBody, Path, Query};
use crate::tokens::{CreatedToken, NewToken, create_token, revoke_token};

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(revoke))
}

/// Creates an API token (admin).
#[utoipa::path(post, path = "/v1/admin/tokens", tag = "admin", request_body = NewToken,
    responses((status = 201, body = CreatedToken),
        (status = 400, description = "`invalid_label`, `serial_required`, `serial_not_allowed`, \
            `invalid_name`, `invalid_expiry` (expires_in_days not 1-3650)",
            body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(app): State<AppState>,
    principal: Caller<Admins>,
    JsonBody(req): JsonBody<NewToken>,
) -> AppResult<(StatusCode, Json<CreatedToken>)> {
    let created = create_token(&app.db, &principal.actor(), req).await?;
    Ok((StatusCode::CREATED, Json(created)))
}

/// A token as listed (never its secret).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct TokenInfo {
    /// Token id.
    pub id: String,
    /// Role.
    pub role: String,
    /// Bound serial.
    pub serial: Option<String>,
    /// Label.
    pub label: String,
    /// Created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Expires.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// Revoked.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

impl From<db::tokens::TokenRow> for TokenInfo {
    fn from(r: db::tokens::TokenRow) -> Self {
        TokenInfo {
            id: r.id,
            role: r.role,
            serial: r.serial,
            label: r.label,
            created_at: r.created_at,
            expires_at: r.expires_at,
            revoked_at: r.revoked_at,
        }
    }
}

/// Default page size of the token list.
pub const DEFAULT_LIMIT: i64 = 100;

/// Largest page size of the token list.
pub const MAX_LIMIT: i64 = 1000;

/// Which page of tokens to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// At most this many tokens (default 100; values outside 1-1000 are
    /// clamped into that range).
    pub limit: Option<i64>,
    /// Only tokens of this role.
    pub role: Option<Role>,
    /// Only tokens created before this time (RFC 3339, URL-encoded). For
    /// the next page pass the `created_at` of the last token listed, and
    /// its `id` as `before_id`.
    #[serde(default, with = "time::serde::rfc3339::option")]
    #[param(value_type = Option<String>, format = DateTime)]
    pub before: Option<OffsetDateTime>,
    /// With `before`: also tokens created at exactly that time whose id
    /// sorts before this one, so a page boundary between tokens created
    /// at the same instant skips none of them.
    pub before_id: Option<String>,
}

/// Lists tokens, newest first, a page at a time (admin). Never returns
/// secrets. A page shorter than `limit` is the last one.
#[utoipa::path(get, path = "/v1/admin/tokens", tag = "admin", params(ListQuery),
    responses((status = 200, description = "tokens, newest first (by created_at, then id)",
            body = Vec<TokenInfo>),
        (status = 400, description = "`invalid_query`: bad role or timestamp",
            body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    _principal: Caller<Admins>,
    Query(q): Query<ListQuery>,
) -> AppResult<Json<Vec<TokenInfo>>> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_LIMIT);
    let filter = db::tokens::TokenFilter {
        role: q.role,
        before: q.before,
        before_id: q.before_id,
    };
    let rows = db::tokens::list(&app.db, &filter, limit).await?;
    Ok(Json(rows.into_iter().map(TokenInfo::from).collect()))
}

/// Revokes a token (admin). This replica refuses the token from the
/// response on; other replicas within about two seconds.
#[utoipa::path(delete, path = "/v1/admin/tokens/{id}", tag = "admin",
    params(("id" = String, Path, description = "token id")),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke(
    State(app): State<AppState>,
    principal: Caller<Admins>,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    revoke_token(&app, &principal.actor(), &id).await?;
    Ok(StatusCode::NO_CONTENT)
}
