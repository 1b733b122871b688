//! Repair pushes (technicians): `POST /v1/devices/{serial}/push` assigns a
//! release, `DELETE` cancels the active push, `GET .../pushes` lists them.
//!
//! A push entitles the device to one release (or, without a version, to
//! every compatible release) until it expires, is cancelled, or the device
//! reports the pushed version installed; while it names a version, the
//! update check offers that version and nothing newer.
//!
//! A push never weakens the device's own checks, and the server refuses one
//! the device would refuse anyway: a release for other hardware, on another
//! channel, with a security counter below the device's, or not newer than
//! what the device runs. A **downgrade is never made on the server's word**:
//! the device library refuses any offer that is not newer than its running
//! version, and the server never asks it to. A technician who needs an older
//! release on a unit does it at the bench, where the device's own local
//! consent applies (see docs/API.md, "Repair pushes"); the anti-rollback
//! counter holds even there.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::{Duration, OffsetDateTime};

use crate::app::AppState;
use crate::auth::{Caller, Staff, Technicians};
use crate::controllers::catalogue::unknown_serial;
use crate::db::pushes::PushRow;
use crate::db::{self, Db};
use crate::domain::{Name, check_text, parse_version};
use crate::error::{AppError, AppResult};
use crate::extract::{JsonBody, Path};

/// Longest reason, in characters.
pub const MAX_REASON_CHARS: usize = 500;
/// Most pushes [`history`] lists.
pub const HISTORY_LIMIT: i64 = 100;

/// A push to make.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// The release to push (semver); omitted: the newest release the device
    /// can install, whatever its entitlement.
    pub version: Option<String>,
    /// The release's product line; when given it must be the device's.
    pub product_line: Option<String>,
    /// The release's channel (default: the device's); it must be the
    /// channel the device follows, since the device checks on that one.
    pub channel: Option<String>,
    /// The open RMA of this unit the repair belongs to, e.g.
    /// `RMA-2026-000123` (`POST /v1/rmas` opens one).
    pub rma: String,
    /// Why, for the repair record (1-500 characters).
    pub reason: String,
}

/// A push as technicians see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PushView {
    /// Push id.
    pub id: String,
    /// The device.
    pub serial: String,
    /// The device's product line.
    pub product_line: String,
    /// The channel of the pushed release.
    pub channel: String,
    /// The pushed version; `null` means the newest compatible release.
    pub version: Option<String>,
    /// The RMA.
    pub rma: String,
    /// Why.
    pub reason: String,
    /// Who pushed.
    pub technician: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it stops entitling.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
    /// `active`, `expired`, `cancelled` or `done`.
    pub state: String,
    /// When it was cancelled, done or found expired.
    #[serde(with = "time::serde::rfc3339::option")]
    pub ended_at: Option<OffsetDateTime>,
    /// Who cancelled it; `device` when done, `server` when expired.
    pub ended_by: Option<String>,
    /// The version the device reported installed.
    pub done_version: Option<String>,
}

/// The view of a stored push at `now` (an active push past its expiry
/// shows as `expired`).
pub fn push_view(p: PushRow, now: OffsetDateTime) -> PushView {
    let state = if p.state == "active" && now >= p.expires_at {
        "expired".to_owned()
    } else {
        p.state
    };
    PushView {
        id: p.id,
        serial: p.serial,
        product_line: p.product_line,
        channel: p.channel,
        version: p.version,
        rma: p.rma,
        reason: p.reason,
        technician: p.technician,
        created_at: p.created_at,
        expires_at: p.expires_at,
        state,
        ended_at: p.ended_at,
        ended_by: p.ended_by,
        done_version: p.done_version,
    }
}

/// The device's pushes, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PushList {
    /// At most 100 pushes.
    pub pushes: Vec<PushView>,
}

/// Pushes a release to a device under repair (technician): its next
/// update check is offered the release with the entitlement code
/// `repair_grant`, even where it is not otherwise entitled. One active push
/// per device; it expires after `repair_push_ttl_secs` (7 days by
/// default). Audited as `device.push`.
#[utoipa::path(post, path = "/v1/devices/{serial}/push", tag = "repair",
    params(("serial" = String, Path, description = "device serial")),
    request_body = PushRequest,
    responses(
        (status = 201, body = PushView),
        (status = 400, description = "invalid_version, invalid_name, invalid_rma, invalid_reason, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_serial, unknown_rma, unknown_release", body = crate::error::ErrorBody),
        (status = 409, description = "push_exists, release_yanked, rma_finished", body = crate::error::ErrorBody),
        (status = 422, description = "rma_other_device, push_wrong_product_line, push_wrong_channel, push_hw_incompatible, push_below_security_counter, push_not_newer, push_nothing_newer", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(app): State<AppState>,
    principal: Caller<Technicians>,
    Path(serial): Path<String>,
    JsonBody(req): JsonBody<PushRequest>,
) -> AppResult<(StatusCode, Json<PushView>)> {
    let serial = Name::parse("serial", &serial)?;
    let version = req
        .version
        .as_deref()
        .map(|v| parse_version("version", v))
        .transpose()?;
    let product_line = req
        .product_line
        .as_deref()
        .map(|p| Name::parse("product_line", p))
        .transpose()?;
    let channel = req
        .channel
        .as_deref()
        .map(|c| Name::parse("channel", c))
        .transpose()?;
    let rma = super::rmas::parse_number(req.rma.trim())?;
    let reason = check_text(
        "invalid_reason",
        "reason",
        &req.reason,
        MAX_REASON_CHARS,
        true,
    )?;

    let now = OffsetDateTime::now_utc();
    let mut tx = app.db.begin().await?;
    let row = db::devices::find(&mut tx, serial.as_str())
        .await?
        .ok_or_else(|| unknown_serial(serial.as_str()))?;
    let rma_row = super::rmas::find(&mut tx, rma).await?;
    if rma_row.serial != row.device.serial {
        return Err(AppError::unprocessable(
            "rma_other_device",
            format!(
                "{rma} is for unit {}, not {serial}; push under the RMA of the unit at the bench",
                rma_row.serial
            ),
        ));
    }
    let rma_state = super::rmas::stored_state(&rma_row);
    if !rma_state.is_open() {
        return Err(super::rmas::finished(rma, rma_state));
    }
    if let Some(line) = &product_line
        && line.as_str() != row.product_line
    {
        return Err(AppError::unprocessable(
            "push_wrong_product_line",
            format!(
                "device {serial} is a {} ({}); a release of product line {line} cannot be \
                 pushed to it",
                row.model_name, row.product_line
            ),
        ));
    }
    let device_channel = row.device.channel.clone();
    let channel = channel.map_or_else(|| device_channel.clone(), Name::into_string);
    if channel != device_channel {
        return Err(AppError::unprocessable(
            "push_wrong_channel",
            format!(
                "device {serial} follows channel {device_channel} and checks for updates only \
                 there; push a release of {device_channel}, or move the device to {channel} \
                 first (PUT /v1/admin/devices/{serial}/channel)"
            ),
        ));
    }
    let running = row
        .device
        .current_version
        .as_deref()
        .and_then(|v| v.parse::<semver::Version>().ok());
    let counter = row.device.security_counter.unwrap_or(0);
    match &version {
        Some(v) => {
            check_pushable(&mut tx, &row, &channel, v, running.as_ref(), counter).await?;
        }
        None => {
            let releases = db::releases::list(&app.db, &row.product_line).await?;
            let any = releases
                .iter()
                .any(|r| pushable(r, &row, &channel, running.as_ref(), counter));
            if !any {
                return Err(AppError::unprocessable(
                    "push_nothing_newer",
                    format!(
                        "no release of {} on channel {channel} is newer than what device \
                         {serial} runs ({}) and fits its hardware {}; there is nothing to push",
                        row.product_line,
                        row.device.current_version.as_deref().unwrap_or("unknown"),
                        row.device.hw_id
                    ),
                ));
            }
        }
    }

    if let Some(active) = db::pushes::active(&mut tx, serial.as_str()).await? {
        if now < active.expires_at {
            return Err(AppError::conflict(
                "push_exists",
                format!(
                    "device {serial} already has an active push ({}, {} for {}, until {}); \
                     cancel it first (DELETE /v1/devices/{serial}/push)",
                    active.id,
                    active
                        .version
                        .as_deref()
                        .map_or("the newest release".to_owned(), |v| format!("release {v}")),
                    active.rma,
                    rfc3339(active.expires_at)
                ),
            ));
        }
        db::pushes::end(&mut tx, serial.as_str(), "expired", now, "server", None).await?;
    }
    let ttl = Duration::seconds(i64::try_from(app.config.repair_push_ttl_secs).unwrap_or(0));
    let push = PushRow {
        id: format!("push_{}", uuid::Uuid::new_v4().simple()),
        serial: serial.as_str().to_owned(),
        product_line: row.product_line.clone(),
        channel,
        version: version.as_ref().map(ToString::to_string),
        rma: rma.to_owned(),
        reason: reason.to_owned(),
        technician: principal.actor().label.clone(),
        created_at: now,
        expires_at: now + ttl,
        state: "active".to_owned(),
        ended_at: None,
        ended_by: None,
        done_version: None,
    };
    db::pushes::insert(&mut tx, &push).await.map_err(|e| {
        if e.is_conflict() {
            // Another technician's push committed first.
            AppError::conflict(
                "push_exists",
                format!(
                    "device {serial} already has an active push; list it with GET \
                     /v1/devices/{serial}/pushes and cancel it first"
                ),
            )
        } else {
            e.into()
        }
    })?;
    super::rmas::event(
        &mut tx,
        &principal.actor(),
        rma,
        now,
        "push",
        None,
        serde_json::json!({ "push": push.id, "version": push.version, "channel": push.channel }),
    )
    .await?;
    db::audit::record(
        &mut tx,
        &principal.actor(),
        "device.push",
        &format!("device/{serial}"),
        serde_json::json!({
            "push": push.id,
            "version": push.version,
            "channel": push.channel,
            "rma": push.rma,
            "reason": push.reason,
            "expires_at": rfc3339(push.expires_at),
        }),
    )
    .await?;
    tx.commit().await?;
    app.device_changed(serial.as_str());
    tracing::info!(serial = %app.log_serial(serial.as_str()), push = %push.id, version = ?push.version, "repair push");
    Ok((StatusCode::CREATED, Json(push_view(push, now))))
}

/// Whether the device could take `r` on `channel`: not yanked, signed for
/// its hardware, at or above its counter, newer than what it runs.
pub fn pushable(
    r: &db::releases::ReleaseRow,
    row: &db::devices::DeviceDetailRow,
    channel: &str,
    running: Option<&semver::Version>,
    counter: i64,
) -> bool {
    r.channel == channel
        && r.yanked_at.is_none()
        && r.security_counter >= counter
        && compat_ids(r).contains(&row.device.hw_id)
        && r.version
            .parse::<semver::Version>()
            .is_ok_and(|rv| running.is_none_or(|cur| rv.cmp_precedence(cur).is_gt()))
}

/// The hardware ids a stored release is signed for.
fn compat_ids(r: &db::releases::ReleaseRow) -> Vec<String> {
    serde_json::from_str(&r.hw_compat).unwrap_or_default()
}

/// Refuses a push of `version` the device could not or would not take.
async fn check_pushable(
    tx: &mut db::Tx,
    row: &db::devices::DeviceDetailRow,
    channel: &str,
    version: &semver::Version,
    running: Option<&semver::Version>,
    counter: i64,
) -> AppResult<()> {
    let serial = &row.device.serial;
    let release = db::releases::find(&mut *tx, &row.product_line, channel, &version.to_string())
        .await?
        .ok_or_else(|| {
            AppError::not_found(
                "unknown_release",
                format!(
                    "there is no release {version} of {} on channel {channel}; GET \
                     /v1/devices/{serial}/entitlement lists the releases this device can have",
                    row.product_line
                ),
            )
        })?;
    if let Some(at) = release.yanked_at {
        return Err(AppError::conflict(
            "release_yanked",
            format!(
                "release {version} was yanked at {} ({}); push another release",
                rfc3339(at),
                release.yank_reason.as_deref().unwrap_or("no reason given")
            ),
        ));
    }
    if !compat_ids(&release).contains(&row.device.hw_id) {
        return Err(AppError::unprocessable(
            "push_hw_incompatible",
            format!(
                "release {version} is signed for hardware {} but device {serial} is {}; the \
                 device would refuse it",
                compat_ids(&release).join(", "),
                row.device.hw_id
            ),
        ));
    }
    if release.security_counter < counter {
        return Err(AppError::unprocessable(
            "push_below_security_counter",
            format!(
                "release {version} has security counter {} but device {serial} has committed \
                 counter {counter}; its anti-rollback check would refuse it. Push a release \
                 with counter {counter} or more",
                release.security_counter
            ),
        ));
    }
    if let Some(cur) = running
        && version.cmp_precedence(cur).is_le()
    {
        return Err(AppError::unprocessable(
            "push_not_newer",
            format!(
                "device {serial} runs {cur}, and release {version} is not newer: a downgrade is \
                 never made over the network on the server's word. Install the older release \
                 at the bench with the device's local consent, or push a newer release"
            ),
        ));
    }
    Ok(())
}

/// Cancels the device's active push (technician); audited as
/// `device.push_cancel`. The device is no longer offered the release on
/// the grounds of the push from its next check.
#[utoipa::path(delete, path = "/v1/devices/{serial}/push", tag = "repair",
    params(("serial" = String, Path, description = "device serial")),
    responses(
        (status = 200, body = PushView),
        (status = 400, description = "invalid_name", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_serial, no_active_push", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn cancel(
    State(app): State<AppState>,
    principal: Caller<Technicians>,
    Path(serial): Path<String>,
) -> AppResult<Json<PushView>> {
    let serial = Name::parse("serial", &serial)?;
    let now = OffsetDateTime::now_utc();
    let mut tx = app.db.begin().await?;
    db::devices::find(&mut tx, serial.as_str())
        .await?
        .ok_or_else(|| unknown_serial(serial.as_str()))?;
    let no_push = || {
        AppError::not_found(
            "no_active_push",
            format!(
                "device {serial} has no active push; GET /v1/devices/{serial}/pushes lists its \
                 pushes"
            ),
        )
    };
    let active = db::pushes::active(&mut tx, serial.as_str())
        .await?
        .ok_or_else(no_push)?;
    if now >= active.expires_at {
        db::pushes::end(&mut tx, serial.as_str(), "expired", now, "server", None).await?;
        tx.commit().await?;
        app.device_changed(serial.as_str());
        return Err(no_push());
    }
    let actor = principal.actor();
    db::pushes::end(
        &mut tx,
        serial.as_str(),
        "cancelled",
        now,
        &actor.label,
        None,
    )
    .await?;
    super::rmas::event(
        &mut tx,
        &actor,
        &active.rma,
        now,
        "push_cancel",
        None,
        serde_json::json!({ "push": active.id }),
    )
    .await?;
    db::audit::record(
        &mut tx,
        &actor,
        "device.push_cancel",
        &format!("device/{serial}"),
        serde_json::json!({ "push": active.id, "rma": active.rma }),
    )
    .await?;
    tx.commit().await?;
    app.device_changed(serial.as_str());
    let mut ended = active;
    ended.state = "cancelled".to_owned();
    ended.ended_at = Some(now);
    ended.ended_by = Some(actor.label.clone());
    Ok(Json(push_view(ended, now)))
}

/// Lists a device's pushes, newest first (admin, release engineer,
/// technician).
#[utoipa::path(get, path = "/v1/devices/{serial}/pushes", tag = "repair",
    params(("serial" = String, Path, description = "device serial")),
    responses(
        (status = 200, body = PushList),
        (status = 400, description = "invalid_name", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_serial", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn history(
    State(app): State<AppState>,
    _principal: Caller<Staff>,
    Path(serial): Path<String>,
) -> AppResult<Json<PushList>> {
    let serial = Name::parse("serial", &serial)?;
    db::devices::find(&app.db, serial.as_str())
        .await?
        .ok_or_else(|| unknown_serial(serial.as_str()))?;
    Ok(Json(PushList {
        pushes: list(&app.db, serial.as_str()).await?,
    }))
}

/// The device's pushes as views, newest first.
pub async fn list(db: &Db, serial: &str) -> AppResult<Vec<PushView>> {
    let now = OffsetDateTime::now_utc();
    Ok(db::pushes::history(db, serial, HISTORY_LIMIT)
        .await?
        .into_iter()
        .map(|p| push_view(p, now))
        .collect())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}
