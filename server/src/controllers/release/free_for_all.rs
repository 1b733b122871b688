//! Free for all (release engineer): a release marked free for all is offered
//! to every device whose hardware it fits, regardless of warranty, contract
//! or end of life (for example a critical security fix). It changes who is
//! offered the release, never what devices verify: the signed manifest
//! still decides where it may be installed.

use axum::Json;
use axum::extract::State;
use serde::Deserialize;

use super::{ReleaseInfo, ReleaseKey, ReleasePath, find_release, load_info};
use crate::app::AppState;
use crate::auth::{Caller, ReleaseEngineers};
use crate::db;
use crate::error::AppResult;
use crate::extract::{JsonBody, Path};

/// The new flag.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FreeForAllRequest {
    /// True: offer to every device regardless of entitlement.
    pub free_for_all: bool,
}

/// Sets or clears a release's free-for-all flag (release engineer).
#[utoipa::path(post, path = "/v1/product-lines/{line}/releases/{channel}/{version}/free-for-all",
    tag = "releases", params(ReleasePath), request_body = FreeForAllRequest,
    responses(
        (status = 200, body = ReleaseInfo),
        (status = 400, description = "invalid_json", body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, description = "unknown_release", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn set_free_for_all(
    State(app): State<AppState>,
    principal: Caller<ReleaseEngineers>,
    Path(path): Path<ReleasePath>,
    JsonBody(body): JsonBody<FreeForAllRequest>,
) -> AppResult<Json<ReleaseInfo>> {
    let key = ReleaseKey::parse(&path)?;
    let req = body;
    let mut tx = app.db.begin().await?;
    let row = find_release(&mut tx, &key).await?;
    if row.free_for_all != req.free_for_all {
        db::releases::set_free_for_all(&mut tx, row.id, req.free_for_all).await?;
        db::audit::record(
            &mut tx,
            &principal.actor(),
            "release.free_for_all",
            &key.target(),
            serde_json::json!({ "from": row.free_for_all, "to": req.free_for_all }),
        )
        .await?;
        tx.commit().await?;
        app.catalogue_changed();
    } else {
        tx.rollback().await?;
    }
    let row = find_release(&app.db, &key).await?;
    Ok(Json(load_info(&app, row).await?))
}
