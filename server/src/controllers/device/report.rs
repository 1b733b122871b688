//! `POST /v1/device/reports`: a device tells how an installation goes.
//!
//! Reports are device telemetry, not people's actions, so they are not
//! written to the audit log (the audit log answers "who changed what"; a
//! device reporting its own progress changes nothing anyone decided). The
//! report itself is the record. An `installed` report also records the new
//! running version on the device, and marks the device's repair push done
//! when it names that version.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{cached_facts, catalogue_for, model_and_line};
use crate::app::AppState;
use crate::auth::{Caller, Devices};
use crate::db;
use crate::domain::{Name, parse_version};
use crate::error::{AppError, AppResult};
use crate::extract::JsonBody;

/// Longest accepted `reason_code`, in characters.
pub const MAX_REASON_CODE: usize = 64;
/// Longest accepted `detail`, in characters.
pub const MAX_DETAIL: usize = 1000;
/// Most reports one device may send about one release.
pub const MAX_REPORTS_PER_RELEASE: i64 = 100;

/// Installation stages a device reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    /// Fetching images.
    Downloading,
    /// Checking signatures and hashes.
    Verifying,
    /// Writing the images.
    Installing,
    /// Running the new version (final).
    Installed,
    /// The installation failed (final; needs `reason_code`).
    Failed,
    /// The new version was rolled back (final; needs `reason_code`).
    RolledBack,
    /// The owner opted out of automatic security updates, so this security
    /// release was not installed automatically (a choice, kept per release).
    OptedOut,
    /// The owner postponed this security release until `postponed_until`.
    Postponed,
}

impl Stage {
    /// The stored name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Stage::Downloading => "downloading",
            Stage::Verifying => "verifying",
            Stage::Installing => "installing",
            Stage::Installed => "installed",
            Stage::Failed => "failed",
            Stage::RolledBack => "rolled_back",
            Stage::OptedOut => "opted_out",
            Stage::Postponed => "postponed",
        }
    }

    /// Parses a request field.
    pub fn parse(s: &str) -> AppResult<Stage> {
        Ok(match s {
            "downloading" => Stage::Downloading,
            "verifying" => Stage::Verifying,
            "installing" => Stage::Installing,
            "installed" => Stage::Installed,
            "failed" => Stage::Failed,
            "rolled_back" => Stage::RolledBack,
            "opted_out" => Stage::OptedOut,
            "postponed" => Stage::Postponed,
            _ => {
                return Err(AppError::bad_request(
                    "invalid_stage",
                    format!(
                        "stage {s:?} is not one of downloading, verifying, installing, \
                         installed, failed, rolled_back, opted_out, postponed"
                    ),
                ));
            }
        })
    }

    /// Whether a report of this stage must say why.
    pub fn needs_reason(&self) -> bool {
        matches!(self, Stage::Failed | Stage::RolledBack)
    }
}

/// A progress report.
///
/// Unknown fields are ignored, as in the update check: the same rule for
/// every device route, since devices in the field run firmware of many ages.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct ReportRequest {
    /// The device's serial; must be the one its token is bound to.
    pub serial: String,
    /// The release version the report is about.
    pub version: String,
    /// The channel of that release (default: the registered channel).
    pub channel: Option<String>,
    /// The stage reached.
    #[schema(value_type = Stage)]
    pub stage: String,
    /// Why it failed or was rolled back (required then): a snake_case code
    /// of at most 64 characters, e.g. `image_hash_mismatch`.
    pub reason_code: Option<String>,
    /// Free text (at most 1000 characters).
    pub detail: Option<String>,
    /// Until when the owner postponed a security release (RFC 3339;
    /// required with stage `postponed`, refused otherwise).
    pub postponed_until: Option<String>,
}

/// A stored report.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReportAccepted {
    /// Report id; `null` for an `opted_out` or `postponed` choice (kept per
    /// device and release, the latest wins) and when processing is
    /// restricted for the device, whose
    /// reports are not stored (its repair push still ends when it reports
    /// the pushed version installed).
    pub id: Option<i64>,
}

/// Parses a reason code: snake_case, 1-64 characters.
pub fn parse_reason_code(s: &str) -> AppResult<&str> {
    let ok = !s.is_empty()
        && s.len() <= MAX_REASON_CODE
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if ok {
        Ok(s)
    } else {
        Err(AppError::bad_request(
            "invalid_reason_code",
            format!(
                "reason_code {s:?} must be a snake_case code of at most {MAX_REASON_CODE} \
                 characters, like image_hash_mismatch"
            ),
        ))
    }
}

/// Reports installation progress (device token bound to `serial`).
#[utoipa::path(post, path = "/v1/device/reports", tag = "device", request_body = ReportRequest,
    responses(
        (status = 201, body = ReportAccepted),
        (status = 400, description = "invalid_version, invalid_name, invalid_stage, reason_code_required, invalid_reason_code, detail_too_long, invalid_detail, invalid_postponed_until", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role, token_serial_mismatch", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_serial, unknown_release", body = crate::error::ErrorBody),
        (status = 422, description = "not_a_security_release", body = crate::error::ErrorBody),
        (status = 429, description = "rate_limited_token, rate_limited_address, too_many_reports (Retry-After)", body = crate::error::ErrorBody),
        (status = 503, description = "unavailable, request_timeout (Retry-After)", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn report(
    State(app): State<AppState>,
    principal: Caller<Devices>,
    JsonBody(req): JsonBody<ReportRequest>,
) -> AppResult<(StatusCode, Json<ReportAccepted>)> {
    principal.require_device(&req.serial)?;
    let version = parse_version("version", &req.version)?.to_string();
    let stage = Stage::parse(&req.stage)?;
    let reason_code = match (req.reason_code.as_deref(), stage.needs_reason()) {
        (Some(code), _) => Some(parse_reason_code(code)?),
        (None, true) => {
            return Err(AppError::bad_request(
                "reason_code_required",
                format!(
                    "a {} report must say why in reason_code (a snake_case code such as \
                     image_hash_mismatch)",
                    stage.as_str()
                ),
            ));
        }
        (None, false) => None,
    };
    if let Some(detail) = &req.detail {
        if detail.chars().count() > MAX_DETAIL {
            return Err(AppError::bad_request(
                "detail_too_long",
                format!("detail is limited to {MAX_DETAIL} characters; shorten it"),
            ));
        }
        if !detail.trim().is_empty() {
            crate::domain::check_text("invalid_detail", "detail", detail, MAX_DETAIL, true)?;
        }
    }
    let postponed_until = match (req.postponed_until.as_deref(), stage) {
        (Some(t), Stage::Postponed) => Some(
            OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).map_err(
                |e| {
                    AppError::bad_request(
                        "invalid_postponed_until",
                        format!("postponed_until {t:?} is not an RFC 3339 instant: {e}"),
                    )
                },
            )?,
        ),
        (None, Stage::Postponed) => {
            return Err(AppError::bad_request(
                "invalid_postponed_until",
                "a postponed report must say until when in postponed_until (RFC 3339)",
            ));
        }
        (Some(_), _) => {
            return Err(AppError::bad_request(
                "invalid_postponed_until",
                "postponed_until goes with stage postponed only",
            ));
        }
        (None, _) => None,
    };
    let channel = req
        .channel
        .as_deref()
        .map(|c| Name::parse("channel", c))
        .transpose()?;
    let facts = cached_facts(&app, &req.serial).await?;
    let channel = channel.map_or_else(|| facts.channel.clone(), Name::into_string);
    let catalogue = catalogue_for(&app, &facts.model_id).await?;
    let (_, line) = model_and_line(&catalogue, &facts.model_id)?;
    let release_id = db::reports::release_id(&app.db, &line.id, &channel, &version)
        .await?
        .ok_or_else(|| {
            AppError::not_found(
                "unknown_release",
                format!(
                    "there is no release {version} of {} on channel {channel}; report on the \
                     version and channel the update check offered",
                    line.id
                ),
            )
        })?;

    let at = OffsetDateTime::now_utc();
    if matches!(stage, Stage::OptedOut | Stage::Postponed) {
        return record_choice(
            &app,
            &facts,
            release_id,
            &version,
            stage,
            postponed_until,
            at,
        )
        .await;
    }
    let mut tx = app.db.begin().await?;
    // A device reports a handful of stages per release; a device that keeps
    // reporting is broken or hostile, and must not fill the database.
    if db::reports::count_for_device(&mut tx, &facts.serial, release_id).await?
        >= MAX_REPORTS_PER_RELEASE
    {
        return Err(AppError::TooManyRequests {
            code: "too_many_reports",
            message: format!(
                "this device already sent {MAX_REPORTS_PER_RELEASE} reports for release \
                 {version}; further reports are refused"
            ),
            // Retrying cannot help; a day keeps well-behaved clients away.
            retry_after_secs: 86_400,
        });
    }
    // A restricted device's reports are not kept: updating it does not
    // need them.
    let id = if facts.restricted {
        None
    } else {
        Some(
            db::reports::insert(
                &mut tx,
                &db::reports::NewReport {
                    serial: &facts.serial,
                    release_id,
                    version: &version,
                    stage: stage.as_str(),
                    reason_code,
                    detail: req.detail.as_deref(),
                    at,
                },
            )
            .await?,
        )
    };
    let mut push_done = false;
    if stage == Stage::Installed {
        if !facts.restricted {
            db::reports::record_installed(&mut tx, &facts.serial, &version, at).await?;
        }
        // A repair push is done once the device runs what it was pushed
        // (any newer release, for a push of the newest one).
        if let Some(push) = db::pushes::active(&mut tx, &facts.serial).await?
            && push.version.as_deref().is_none_or(|v| v == version)
        {
            push_done =
                db::pushes::end(&mut tx, &facts.serial, "done", at, "device", Some(&version))
                    .await?;
        }
    }
    tx.commit().await?;
    if push_done {
        app.device_changed(&facts.serial);
    }
    // A failure may push the release's rollout over its threshold. The
    // report is stored either way; the background job judges again.
    if stage.needs_reason() && !facts.restricted {
        match crate::rollouts::after_failure_report(&app.db, release_id).await {
            Ok(true) => app.catalogue_changed(),
            Ok(false) => {}
            Err(e) => {
                tracing::warn!(error = %e, release_id, "judging the rollout after a failure report failed")
            }
        }
    }
    crate::metrics::report(stage.as_str(), reason_code);
    tracing::info!(serial = %app.log_serial(&facts.serial), version = %version, stage = stage.as_str(), reason_code, "device report");
    Ok((StatusCode::CREATED, Json(ReportAccepted { id })))
}

/// Keeps an owner's choice not to install a security release now; 422
/// `not_a_security_release` for a feature release (those always ask).
async fn record_choice(
    app: &AppState,
    facts: &crate::domain::facts::DeviceFacts,
    release_id: i64,
    version: &str,
    stage: Stage,
    postponed_until: Option<OffsetDateTime>,
    at: OffsetDateTime,
) -> AppResult<(StatusCode, Json<ReportAccepted>)> {
    let kind = db::reports::release_kind(&app.db, release_id).await?;
    if kind.as_deref() == Some("feature") {
        return Err(AppError::unprocessable(
            "not_a_security_release",
            format!(
                "release {version} is a feature release: it is never installed automatically, \
                 so there is nothing to opt out of or postpone"
            ),
        ));
    }
    if !facts.restricted {
        let mut tx = app.db.begin().await?;
        db::reports::record_choice(
            &mut tx,
            &facts.serial,
            release_id,
            stage.as_str(),
            postponed_until,
            at,
        )
        .await?;
        tx.commit().await?;
    }
    crate::metrics::report(stage.as_str(), None);
    Ok((StatusCode::CREATED, Json(ReportAccepted { id: None })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reason_codes_are_snake_case_and_short() {
        for ok in ["image_hash_mismatch", "e1", "a"] {
            assert!(parse_reason_code(ok).is_ok(), "{ok}");
        }
        let long = "a".repeat(MAX_REASON_CODE + 1);
        for bad in [
            "",
            "Image",
            "image-hash",
            "1abc",
            "_x",
            "with space",
            "é",
            long.as_str(),
        ] {
            assert_eq!(
                parse_reason_code(bad).unwrap_err().code(),
                "invalid_reason_code",
                "{bad}"
            );
        }
        assert!(parse_reason_code(&"a".repeat(MAX_REASON_CODE)).is_ok());
    }

    #[test]
    fn stages_round_trip() {
        for s in [
            Stage::Downloading,
            Stage::Verifying,
            Stage::Installing,
            Stage::Installed,
            Stage::Failed,
            Stage::RolledBack,
            Stage::OptedOut,
            Stage::Postponed,
        ] {
            assert_eq!(Stage::parse(s.as_str()).unwrap(), s);
            assert_eq!(
                serde_json::to_value(s).unwrap(),
                serde_json::json!(s.as_str())
            );
        }
        assert_eq!(Stage::parse("done").unwrap_err().code(), "invalid_stage");
    }
}
