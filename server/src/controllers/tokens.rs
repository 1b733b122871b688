//! API tokens (admin): create, list, revoke.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::{self, Actor, Principal, Role};
use crate::db::{self, Db, Tx};
use crate::domain::Name;
use crate::error::{AppError, AppResult};
use crate::extract::JsonBody;

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create, list))
        .routes(routes!(revoke))
}

/// A token to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewToken {
    /// Role of the token.
    pub role: Role,
    /// A label saying whose token it is (shown in the audit log).
    pub label: String,
    /// The serial a device token is bound to (device tokens only).
    pub serial: Option<String>,
    /// Days until the token expires (default: never).
    pub expires_in_days: Option<u32>,
}

/// A created token. The secret is shown only here, once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CreatedToken {
    /// Token id (for revocation and the audit log).
    pub id: String,
    /// The secret to send as `Authorization: Bearer <token>`.
    pub token: String,
    /// Role.
    pub role: Role,
    /// Expiry.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
}

/// Creates a token and its audit record in its own transaction. Shared by
/// the API and the CLI.
pub async fn create_token(db: &Db, actor: &Actor, req: NewToken) -> AppResult<CreatedToken> {
    let mut tx = db.begin().await?;
    let created = create_token_tx(&mut tx, actor, req).await?;
    tx.commit().await?;
    Ok(created)
}

/// Creates a token and its `token.create` audit record inside the caller's
/// transaction, so a token can be issued together with other changes
/// (device provisioning) and disappears with them if the caller rolls back.
/// The secret in the result exists only in memory until the caller shows it.
pub async fn create_token_tx(tx: &mut Tx, actor: &Actor, req: NewToken) -> AppResult<CreatedToken> {
    let label = req.label.trim();
    if label.is_empty() || label.len() > 200 {
        return Err(AppError::bad_request(
            "invalid_label",
            "label must be 1-200 characters",
        ));
    }
    let serial = match (req.role, req.serial.as_deref()) {
        (Role::Device, Some(s)) => Some(Name::parse("serial", s)?.into_string()),
        (Role::Device, None) => {
            return Err(AppError::bad_request(
                "serial_required",
                "a device token must be bound to a serial; pass \"serial\"",
            ));
        }
        (_, Some(_)) => {
            return Err(AppError::bad_request(
                "serial_not_allowed",
                "only device tokens are bound to a serial",
            ));
        }
        (_, None) => None,
    };
    let expires_at = req
        .expires_in_days
        .map(|d| OffsetDateTime::now_utc() + time::Duration::days(d.into()));
    let (secret, hash) = auth::new_token();
    let id = uuid::Uuid::new_v4().to_string();
    db::tokens::insert(
        tx,
        &id,
        &hash,
        req.role,
        serial.as_deref(),
        label,
        expires_at,
    )
    .await?;
    db::audit::record(
        tx,
        actor,
        "token.create",
        &format!("token/{id}"),
        serde_json::json!({ "role": req.role.as_str(), "label": label, "serial": serial }),
    )
    .await?;
    Ok(CreatedToken {
        id,
        token: secret,
        role: req.role,
        expires_at,
    })
}

/// Creates an API token (admin).
#[utoipa::path(post, path = "/v1/admin/tokens", tag = "admin", request_body = NewToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(app): State<AppState>,
    principal: Principal,
    JsonBody(req): JsonBody<NewToken>,
) -> AppResult<(StatusCode, Json<CreatedToken>)> {
    principal.require(&[Role::Admin])?;
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

/// Lists tokens (admin).
#[utoipa::path(get, path = "/v1/admin/tokens", tag = "admin",
    responses((status = 200, body = Vec<TokenInfo>)), security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    principal: Principal,
) -> AppResult<Json<Vec<TokenInfo>>> {
    principal.require(&[Role::Admin])?;
    let rows = db::tokens::list(&app.db).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| TokenInfo {
                id: r.id,
                role: r.role,
                serial: r.serial,
                label: r.label,
                created_at: r.created_at,
                expires_at: r.expires_at,
                revoked_at: r.revoked_at,
            })
            .collect(),
    ))
}

/// Revokes a token (admin). Takes effect within `cache_ttl_secs`.
#[utoipa::path(delete, path = "/v1/admin/tokens/{id}", tag = "admin",
    params(("id" = String, Path, description = "token id")),
    responses((status = 204), (status = 404, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke(
    State(app): State<AppState>,
    principal: Principal,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    principal.require(&[Role::Admin])?;
    let mut tx = app.db.begin().await?;
    if !db::tokens::revoke(&mut tx, &id).await? {
        return Err(AppError::not_found(
            "unknown_token",
            format!("no active token with id {id:?}"),
        ));
    }
    db::audit::record(
        &mut tx,
        &principal.actor(),
        "token.revoke",
        &format!("token/{id}"),
        serde_json::json!({}),
    )
    .await?;
    tx.commit().await?;
    Ok(StatusCode::NO_CONTENT)
}
