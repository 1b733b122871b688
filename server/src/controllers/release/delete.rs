//! Deleting a release (release engineer), for a release published by
//! mistake or long out of use. Two rules stand before it:
//!
//! - A release that fixes security (kind `security` or `mixed`) must stay
//!   available for ten years after publication, or until the security
//!   support of the last unit of its product line ends if that is later
//!   (docs/CRA.md, duty 4): inside that time the deletion is refused with
//!   409 `retention_active` and the date it ends.
//! - Only a yanked release can be deleted, so no device is being offered
//!   it when it goes (409 `release_not_yanked`), and none with an active
//!   rollout (409 `rollout_exists`).
//!
//! Refused, nothing changes. Accepted, the release leaves the catalogue in
//! one transaction; reports and devices that named it keep their history.

use axum::extract::State;
use axum::http::StatusCode;
use time::{Date, OffsetDateTime};

use super::{ReleaseKey, ReleasePath, find_release};
use crate::app::AppState;
use crate::auth::{Caller, ReleaseEngineers};
use crate::controllers::catalogue::support::model_support;
use crate::db;
use crate::domain::support::{fmt_date, retained_until};
use crate::error::{AppError, AppResult};
use crate::extract::Path;
use firmup_client::ReleaseKind;

/// Deletes a yanked release outside its retention (release engineer).
#[utoipa::path(delete, path = "/v1/product-lines/{line}/releases/{channel}/{version}",
    tag = "releases", params(ReleasePath),
    responses(
        (status = 204, description = "deleted"),
        (status = 400, description = "invalid_name, invalid_version", body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, description = "unknown_release", body = crate::error::ErrorBody),
        (status = 409, description = "retention_active, release_not_yanked, rollout_exists", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn delete(
    State(app): State<AppState>,
    principal: Caller<ReleaseEngineers>,
    Path(path): Path<ReleasePath>,
) -> AppResult<StatusCode> {
    let key = ReleaseKey::parse(&path)?;
    let row = find_release(&app.db, &key).await?;
    let fixes_security = ReleaseKind::parse(&row.kind).is_none_or(ReleaseKind::fixes_security);
    let last_support_end = if fixes_security {
        last_support_end(&app, key.line.as_str()).await?
    } else {
        None
    };
    let today = OffsetDateTime::now_utc().date();
    if let Some(until) = retained_until(fixes_security, row.published_at, last_support_end)
        .filter(|until| *until >= today)
    {
        return Err(AppError::conflict(
            "retention_active",
            format!(
                "{} fixes security ({}) and must stay available until {}: ten years after \
                 publication, or the end of security support of the line's last unit if later; \
                 yank it to stop offering it",
                key.target(),
                row.kind,
                fmt_date(until)
            ),
        ));
    }
    let mut tx = app.db.begin().await?;
    // Read again inside the transaction: the checks below must hold at the
    // commit.
    let row = find_release(&mut tx, &key).await?;
    if row.yanked_at.is_none() {
        return Err(AppError::conflict(
            "release_not_yanked",
            format!(
                "{} is offered to devices; yank it first (POST .../yank) so none is offered it \
                 when it goes",
                key.target()
            ),
        ));
    }
    if let Some(rollout) = db::rollouts::active_of_release(&mut tx, row.id).await? {
        return Err(AppError::conflict(
            "rollout_exists",
            format!(
                "{} has an active rollout ({}); abort it first",
                key.target(),
                rollout.id
            ),
        ));
    }
    db::releases::delete(&mut tx, row.id).await?;
    db::audit::record(
        &mut tx,
        &principal.actor(),
        "release.delete",
        &key.target(),
        serde_json::json!({
            "kind": row.kind,
            "payload_sha256": row.payload_sha256,
            "published_at": row.published_at.unix_timestamp(),
            "yank_reason": row.yank_reason,
        }),
    )
    .await?;
    tx.commit().await?;
    app.catalogue_changed();
    Ok(StatusCode::NO_CONTENT)
}

/// The latest end of security support among the units of the line's
/// models: a release stays for them all (a line-wide bound, longer than or
/// equal to the units that can install it).
async fn last_support_end(app: &AppState, line: &str) -> AppResult<Option<Date>> {
    let mut last = None;
    for model in db::catalogue::list_models(&app.db).await? {
        if model.product_line != line {
            continue;
        }
        if let Some((_, Some(ends))) = model_support(app, &model.id).await? {
            last = last.max(Some(ends));
        }
    }
    Ok(last)
}
