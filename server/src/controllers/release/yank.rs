//! Yanking (release engineer): a yanked release is no longer offered to
//! devices. Nothing else changes: the signed envelope, its images and the
//! devices that already installed it stay as they are, and it can be
//! un-yanked. Yanking is not revocation: a device that has the manifest can
//! still install it offline; revoking trust means rotating the root.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;
use time::OffsetDateTime;

use super::{ReleaseInfo, ReleaseKey, ReleasePath, find_release, load_info};
use crate::app::AppState;
use crate::auth::{Caller, ReleaseEngineers};
use crate::db;
use crate::error::{AppError, AppResult};
use crate::extract::{JsonBody, Path};

/// Longest accepted yank reason, in characters.
pub const MAX_REASON: usize = 1000;

/// Why a release is yanked.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct YankRequest {
    /// Shown to operators and technicians, e.g. "bricks enc-4k-r1 units".
    pub reason: String,
}

/// Yanks a release (release engineer): devices stop being offered it.
#[utoipa::path(post, path = "/v1/product-lines/{line}/releases/{channel}/{version}/yank",
    tag = "releases", params(ReleasePath), request_body = YankRequest,
    responses(
        (status = 200, body = ReleaseInfo),
        (status = 400, description = "invalid_reason, invalid_json", body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, description = "unknown_release", body = crate::error::ErrorBody),
        (status = 409, description = "already_yanked", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn yank(
    State(app): State<AppState>,
    principal: Caller<ReleaseEngineers>,
    Path(path): Path<ReleasePath>,
    JsonBody(body): JsonBody<YankRequest>,
) -> AppResult<Json<ReleaseInfo>> {
    let key = ReleaseKey::parse(&path)?;
    let req = body;
    let reason = crate::domain::check_text(
        "invalid_reason",
        "reason (saying why the release is withdrawn)",
        &req.reason,
        MAX_REASON,
        true,
    )?;
    let mut tx = app.db.begin().await?;
    let row = find_release(&mut tx, &key).await?;
    if !db::releases::yank(&mut tx, row.id, OffsetDateTime::now_utc(), reason).await? {
        return Err(AppError::conflict(
            "already_yanked",
            format!(
                "{} is already yanked; DELETE .../yank to un-yank it first",
                key.target()
            ),
        ));
    }
    db::audit::record(
        &mut tx,
        &principal.actor(),
        "release.yank",
        &key.target(),
        serde_json::json!({ "reason": reason }),
    )
    .await?;
    tx.commit().await?;
    app.catalogue_changed();
    let row = find_release(&app.db, &key).await?;
    Ok(Json(load_info(&app, row).await?))
}

/// Un-yanks a release (release engineer): devices are offered it again.
#[utoipa::path(delete, path = "/v1/product-lines/{line}/releases/{channel}/{version}/yank",
    tag = "releases", params(ReleasePath),
    responses(
        (status = 200, body = ReleaseInfo),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, description = "unknown_release", body = crate::error::ErrorBody),
        (status = 409, description = "not_yanked", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn unyank(
    State(app): State<AppState>,
    principal: Caller<ReleaseEngineers>,
    Path(path): Path<ReleasePath>,
) -> AppResult<Json<ReleaseInfo>> {
    let key = ReleaseKey::parse(&path)?;
    let mut tx = app.db.begin().await?;
    let row = find_release(&mut tx, &key).await?;
    if !db::releases::unyank(&mut tx, row.id).await? {
        return Err(AppError::conflict(
            "not_yanked",
            format!("{} is not yanked", key.target()),
        ));
    }
    db::audit::record(
        &mut tx,
        &principal.actor(),
        "release.unyank",
        &key.target(),
        serde_json::json!({ "previous_reason": row.yank_reason }),
    )
    .await?;
    tx.commit().await?;
    app.catalogue_changed();
    let row = find_release(&app.db, &key).await?;
    Ok(Json(load_info(&app, row).await?))
}
