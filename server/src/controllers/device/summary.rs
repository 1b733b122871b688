//! `GET /v1/product-lines/{line}/releases/{channel}/{version}/reports`:
//! how a release's rollout is going, from the devices' reports.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::{Caller, Staff};
use crate::db;
use crate::domain::{Name, parse_version};
use crate::error::{AppError, AppResult};
use crate::extract::Path;

/// Path of one release.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ReleaseReportsPath {
    /// Product line id, e.g. `encoders`.
    pub line: String,
    /// Channel, e.g. `stable`.
    pub channel: String,
    /// Semver version, e.g. `2.1.0`.
    pub version: String,
}

/// The rollout of one release. Device counts go by each device's latest
/// report on the release: a device that failed once and then installed
/// counts as installed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReportSummary {
    /// Product line.
    pub product_line: String,
    /// Channel.
    pub channel: String,
    /// Version.
    pub version: String,
    /// Devices whose latest report is `installed`.
    pub installed: i64,
    /// Devices whose latest report is `failed`.
    pub failed: i64,
    /// Devices whose latest report is `rolled_back`.
    pub rolled_back: i64,
    /// Devices whose latest report is `downloading`, `verifying` or
    /// `installing`.
    pub in_progress: i64,
    /// Reports by stage (every report counts).
    pub by_stage: BTreeMap<String, i64>,
    /// `failed` and `rolled_back` reports by reason code.
    pub failures_by_reason: BTreeMap<String, i64>,
    /// Devices whose owner opted out of automatic security updates and did
    /// not install this security release automatically.
    pub opted_out: i64,
    /// Devices whose owner postponed this security release to a time still
    /// ahead.
    pub postponed: i64,
}

/// The rollout summary of a release (release engineer, technician, admin).
/// Yanked releases are included: their reports are often why they were
/// yanked.
#[utoipa::path(get, path = "/v1/product-lines/{line}/releases/{channel}/{version}/reports",
    tag = "device", params(ReleaseReportsPath),
    responses(
        (status = 200, body = ReportSummary),
        (status = 400, description = "invalid_name, invalid_version", body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, description = "unknown_release", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn summary(
    State(app): State<AppState>,
    _principal: Caller<Staff>,
    Path(p): Path<ReleaseReportsPath>,
) -> AppResult<Json<ReportSummary>> {
    let line = Name::parse("product line", &p.line)?;
    let channel = Name::parse("channel", &p.channel)?;
    let version = parse_version("version", &p.version)?.to_string();
    let release_id = db::reports::release_id(&app.db, line.as_str(), channel.as_str(), &version)
        .await?
        .ok_or_else(|| {
            AppError::not_found(
                "unknown_release",
                format!("there is no release {version} of {line} on channel {channel}"),
            )
        })?;
    let counts = db::reports::counts(&app.db, release_id).await?;
    let (opted_out, postponed) =
        db::reports::choice_counts(&app.db, release_id, time::OffsetDateTime::now_utc()).await?;
    let latest = |stages: &[&str]| -> i64 {
        stages
            .iter()
            .map(|s| counts.latest_by_stage.get(*s).copied().unwrap_or(0))
            .sum()
    };
    Ok(Json(ReportSummary {
        installed: latest(&["installed"]),
        failed: latest(&["failed"]),
        rolled_back: latest(&["rolled_back"]),
        in_progress: latest(&["downloading", "verifying", "installing"]),
        product_line: line.into_string(),
        channel: channel.into_string(),
        version,
        by_stage: counts.by_stage,
        failures_by_reason: counts.failures_by_reason,
        opted_out,
        postponed,
    }))
}
