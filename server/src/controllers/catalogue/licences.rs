//! Software licences of an installation (admin): add one, delete one.
//!
//! A licence covers every release published up to its end date; without an
//! end it is perpetual. Only devices of a software product line hold
//! licences. Licence ids are for operators and technicians and must never
//! be shown to a device.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::unknown_serial;
use crate::app::AppState;
use crate::auth::{Admins, Caller};
use crate::db::{self, contracts::LicenceRow};
use crate::domain::Name;
use crate::error::{AppError, AppResult};
use crate::extract::{JsonBody, Path};
use crate::provisioning::{check_period, format_date, parse_date};

/// A licence to add.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LicenceInput {
    /// Licence id, unique across all installations.
    pub id: String,
    /// Valid from, `YYYY-MM-DD`.
    #[schema(example = "2024-01-01")]
    pub starts: String,
    /// Last day of releases it covers, `YYYY-MM-DD`; absent or `null`
    /// means perpetual.
    #[schema(example = "2025-01-01")]
    pub ends: Option<String>,
}

/// A licence as shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LicenceView {
    /// Licence id.
    pub id: String,
    /// Installation serial.
    pub serial: String,
    /// Valid from, `YYYY-MM-DD`.
    pub starts: String,
    /// Last day of releases it covers, `YYYY-MM-DD`; `null` = perpetual.
    pub ends: Option<String>,
}

/// The API view of a licence.
pub fn licence_view(l: LicenceRow) -> LicenceView {
    LicenceView {
        id: l.id,
        serial: l.serial,
        starts: format_date(l.starts),
        ends: l.ends.map(format_date),
    }
}

fn audit_detail(l: &LicenceRow) -> serde_json::Value {
    serde_json::json!({
        "serial": l.serial, "starts": format_date(l.starts), "ends": l.ends.map(format_date),
    })
}

/// Adds a licence to a software installation (admin); audited as
/// `licence.create`.
#[utoipa::path(post, path = "/v1/admin/devices/{serial}/licences", tag = "catalogue",
    params(("serial" = String, Path, description = "installation serial")),
    request_body = LicenceInput,
    responses(
        (status = 201, body = LicenceView),
        (status = 400, description = "invalid_name, invalid_date, invalid_period, invalid_json",
            body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_serial", body = crate::error::ErrorBody),
        (status = 409, description = "licence_exists", body = crate::error::ErrorBody),
        (status = 422, description = "not_software", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(app): State<AppState>,
    principal: Caller<Admins>,
    Path(serial): Path<String>,
    JsonBody(body): JsonBody<LicenceInput>,
) -> AppResult<(StatusCode, Json<LicenceView>)> {
    let serial = Name::parse("serial", &serial)?;
    let input = body;
    let id = Name::parse("licence id", &input.id)?;
    let starts = parse_date("starts", &input.starts)?;
    let ends = input
        .ends
        .as_deref()
        .map(|e| parse_date("ends", e))
        .transpose()?;
    check_period(starts, ends)?;
    let mut tx = app.db.begin().await?;
    let device = db::devices::find(&mut tx, serial.as_str())
        .await?
        .ok_or_else(|| unknown_serial(serial.as_str()))?;
    if device.kind != "software" {
        return Err(AppError::unprocessable(
            "not_software",
            format!(
                "device {serial} is a {} device (model {}); licences apply to installations of \
                 software product lines",
                device.kind, device.device.model_id
            ),
        ));
    }
    let exists = || {
        AppError::conflict(
            "licence_exists",
            format!("a licence with id {id:?} already exists; delete it first to replace it"),
        )
    };
    if db::contracts::find_licence_tx(&mut tx, id.as_str())
        .await?
        .is_some()
    {
        return Err(exists());
    }
    let row = LicenceRow {
        id: id.to_string(),
        serial: serial.to_string(),
        starts,
        ends,
    };
    db::contracts::insert_licence(&mut tx, &row)
        .await
        .map_err(|e| if e.is_conflict() { exists() } else { e.into() })?;
    db::audit::record(
        &mut tx,
        &principal.actor(),
        "licence.create",
        &format!("licence/{id}"),
        audit_detail(&row),
    )
    .await?;
    tx.commit().await?;
    app.device_changed(serial.as_str());
    Ok((StatusCode::CREATED, Json(licence_view(row))))
}

/// Deletes a licence (admin); audited as `licence.delete` with what it was.
#[utoipa::path(delete, path = "/v1/admin/licences/{id}", tag = "catalogue",
    params(("id" = String, Path, description = "licence id")),
    responses(
        (status = 204),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_licence", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn delete(
    State(app): State<AppState>,
    principal: Caller<Admins>,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let mut tx = app.db.begin().await?;
    let row = db::contracts::find_licence_tx(&mut tx, &id)
        .await?
        .ok_or_else(|| {
            AppError::not_found("unknown_licence", format!("no licence with id {id:?}"))
        })?;
    db::contracts::delete_licence(&mut tx, &row.id).await?;
    db::audit::record(
        &mut tx,
        &principal.actor(),
        "licence.delete",
        &format!("licence/{}", row.id),
        audit_detail(&row),
    )
    .await?;
    tx.commit().await?;
    app.device_changed(&row.serial);
    Ok(StatusCode::NO_CONTENT)
}
