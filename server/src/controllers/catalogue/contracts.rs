//! Service contracts and warranty extensions of a device (admin): add one,
//! delete one. Bulk import is `firmup-server contract import`
//! ([`crate::provisioning::import_contracts`]).
//!
//! A service contract entitles a device to firmware its own terms do not
//! cover (for example after its model's EOL); a warranty extension only
//! moves the warranty end. Contract ids are for operators and technicians
//! and must never be shown to a device.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::Date;

use super::unknown_serial;
use crate::app::AppState;
use crate::auth::{Admins, Caller};
use crate::db::{self, contracts::ContractRow};
use crate::domain::Name;
use crate::error::{AppError, AppResult};
use crate::extract::{JsonBody, Path};
use crate::provisioning::{self, format_date};

/// A contract to add.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContractInput {
    /// Contract id, unique across all devices.
    pub id: String,
    /// `service_contract` or `warranty_extension`.
    #[schema(example = "service_contract")]
    pub kind: String,
    /// First day, `YYYY-MM-DD` (inclusive).
    #[schema(example = "2026-01-01")]
    pub starts: String,
    /// Last day, `YYYY-MM-DD` (inclusive), not before `starts`.
    #[schema(example = "2026-12-31")]
    pub ends: String,
}

/// A contract as shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ContractView {
    /// Contract id.
    pub id: String,
    /// Device serial.
    pub serial: String,
    /// `service_contract` or `warranty_extension`.
    pub kind: String,
    /// First day, `YYYY-MM-DD`.
    pub starts: String,
    /// Last day, `YYYY-MM-DD`.
    pub ends: String,
    /// Whether today (UTC) is within the contract.
    pub active: bool,
}

/// The API view of a contract, judged active on `today`.
pub fn contract_view(c: ContractRow, today: Date) -> ContractView {
    ContractView {
        active: c.starts <= today && today <= c.ends,
        id: c.id,
        serial: c.serial,
        kind: c.kind,
        starts: format_date(c.starts),
        ends: format_date(c.ends),
    }
}

fn audit_detail(c: &ContractRow) -> serde_json::Value {
    serde_json::json!({
        "serial": c.serial, "kind": c.kind,
        "starts": format_date(c.starts), "ends": format_date(c.ends),
    })
}

/// Adds a contract to a device (admin); audited as `contract.create`.
#[utoipa::path(post, path = "/v1/admin/devices/{serial}/contracts", tag = "catalogue",
    params(("serial" = String, Path, description = "device serial")),
    request_body = ContractInput,
    responses(
        (status = 201, body = ContractView),
        (status = 400, description = "invalid_name, invalid_kind, invalid_date, invalid_period, invalid_json",
            body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_serial", body = crate::error::ErrorBody),
        (status = 409, description = "contract_exists", body = crate::error::ErrorBody),
        (status = 422, description = "paid_extension_window_closed, paid_extension_not_for_series, paid_extension_of_replaced_unit", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn create(
    State(app): State<AppState>,
    principal: Caller<Admins>,
    Path(serial): Path<String>,
    JsonBody(body): JsonBody<ContractInput>,
) -> AppResult<(StatusCode, Json<ContractView>)> {
    let serial = Name::parse("serial", &serial)?;
    let input = body;
    let terms = provisioning::parse_contract(&input.id, &input.kind, &input.starts, &input.ends)?;
    let mut tx = app.db.begin().await?;
    let device = db::devices::find(&mut tx, serial.as_str())
        .await?
        .ok_or_else(|| unknown_serial(serial.as_str()))?;
    if input.kind == "warranty_extension" {
        // A warranty extension is the paid extension of the after-sales
        // terms: sold only for the repair series, within a month of the
        // sale.
        let facts = super::devices::load_warranty_facts(&mut tx, &device).await?;
        let today = time::OffsetDateTime::now_utc().date();
        crate::warranty::paid_extension_check(&facts, today)
            .map_err(|r| AppError::unprocessable(r.code, r.message))?;
    }
    let row = provisioning::insert_contract(&mut tx, serial.as_str(), &terms).await?;
    db::audit::record(
        &mut tx,
        &principal.actor(),
        "contract.create",
        &format!("contract/{}", row.id),
        audit_detail(&row),
    )
    .await?;
    tx.commit().await?;
    app.device_changed(serial.as_str());
    let today = time::OffsetDateTime::now_utc().date();
    Ok((StatusCode::CREATED, Json(contract_view(row, today))))
}

/// Deletes a contract (admin); audited as `contract.delete` with what it
/// was.
#[utoipa::path(delete, path = "/v1/admin/contracts/{id}", tag = "catalogue",
    params(("id" = String, Path, description = "contract id")),
    responses(
        (status = 204),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_contract", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn delete(
    State(app): State<AppState>,
    principal: Caller<Admins>,
    Path(id): Path<String>,
) -> AppResult<StatusCode> {
    let mut tx = app.db.begin().await?;
    let row = db::contracts::find_contract_tx(&mut tx, &id)
        .await?
        .ok_or_else(|| {
            AppError::not_found("unknown_contract", format!("no contract with id {id:?}"))
        })?;
    db::contracts::delete_contract(&mut tx, &row.id).await?;
    db::audit::record(
        &mut tx,
        &principal.actor(),
        "contract.delete",
        &format!("contract/{}", row.id),
        audit_detail(&row),
    )
    .await?;
    tx.commit().await?;
    app.device_changed(&row.serial);
    Ok(StatusCode::NO_CONTENT)
}
