//! Devices: bulk provisioning with optional device tokens (admin), the
//! detail view (readers), the channel a device follows and the owner's
//! registration (admin).
//!
//! Provisioning is all-or-nothing and shares its validation with the
//! `firmup-server device import` CLI ([`crate::provisioning`]). Device
//! token secrets appear only in the provisioning response, once; they are
//! never logged or stored.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::contracts::{ContractView, contract_view};
use super::licences::{LicenceView, licence_view};
use super::unknown_serial;
use crate::app::{App, AppState};
use crate::auth::{Admins, Caller, Roles as _, Staff, Technicians};
use crate::controllers::device::entitlement::{EntitlementView, explain};
use crate::controllers::repair::pushes::{PushView, push_view};
use crate::controllers::repair::rmas::{RmaSummary, rma_summary};
use crate::db;
use crate::domain::Name;
use crate::error::{AppError, AppResult};
use crate::extract::{JsonBody, Path, Query};
use crate::provisioning::{
    self, DeviceEntry, EntryRef, MAX_DEVICES_PER_REQUEST, Source, format_date,
};
use crate::warranty;

/// One device to provision.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DeviceInput {
    /// Serial (installation id for software).
    pub serial: String,
    /// Model id.
    pub model_id: String,
    /// Hardware id, one of the model's (for software: the platform id).
    pub hw_id: String,
    /// Channel to follow (default `stable`).
    pub channel: Option<String>,
    /// The verification code printed on the unit, from factory data (6-64
    /// letters and digits; spaces and dashes ignored). Stored hashed and
    /// never returned; owners register with it.
    pub verification_code: Option<String>,
    /// Date of sale, `YYYY-MM-DD`, when known.
    pub sale_date: Option<String>,
    /// Region it was sold in.
    pub region: Option<String>,
}

/// A batch of devices to provision, all or nothing.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProvisionRequest {
    /// 1 to 10 000 devices.
    pub devices: Vec<DeviceInput>,
    /// Issue one device token per device, bound to its serial (default
    /// true).
    #[serde(default = "yes")]
    pub issue_tokens: bool,
}

fn yes() -> bool {
    true
}

/// A provisioned device.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProvisionedView {
    /// Serial.
    pub serial: String,
    /// The device token's secret, shown only here, once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// The device token's id (for revocation).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_id: Option<String>,
}

/// The provisioned batch, in request order.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ProvisionResponse {
    /// The devices.
    pub devices: Vec<ProvisionedView>,
}

/// Provisions devices in bulk (admin): all or nothing, one audit record
/// `device.provision`. Errors name the entry (`devices[3]`) and its serial.
#[utoipa::path(post, path = "/v1/admin/devices", tag = "catalogue",
    request_body = ProvisionRequest,
    responses(
        (status = 201, body = ProvisionResponse),
        (status = 400, description = "no_devices, duplicate_serial, invalid_name, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 409, description = "serial_exists", body = crate::error::ErrorBody),
        (status = 413, description = "too_many_devices, body_too_large", body = crate::error::ErrorBody),
        (status = 422, description = "unknown_model, hw_id_not_in_model", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn provision(
    State(app): State<AppState>,
    principal: Caller<Admins>,
    JsonBody(body): JsonBody<ProvisionRequest>,
) -> AppResult<(StatusCode, Json<ProvisionResponse>)> {
    let req = body;
    if req.devices.len() > MAX_DEVICES_PER_REQUEST {
        return Err(AppError::PayloadTooLarge {
            code: "too_many_devices",
            message: format!(
                "{} devices in one request; at most {MAX_DEVICES_PER_REQUEST} are accepted: split \
                 the batch, or use `firmup-server device import` on the server host",
                req.devices.len()
            ),
        });
    }
    let entries: Vec<DeviceEntry> = req
        .devices
        .into_iter()
        .enumerate()
        .map(|(index, d)| DeviceEntry {
            at: EntryRef::Index {
                field: "devices",
                index,
            },
            serial: d.serial,
            model_id: d.model_id,
            hw_id: d.hw_id,
            channel: d.channel,
            verification_code: d.verification_code,
            sale_date: d.sale_date,
            region: d.region,
        })
        .collect();
    let done = provisioning::provision_devices(
        &app.db,
        &principal.actor(),
        Source::Api,
        &entries,
        req.issue_tokens,
    )
    .await?;
    for d in &done {
        app.device_changed(&d.serial);
    }
    Ok((
        StatusCode::CREATED,
        Json(ProvisionResponse {
            devices: done
                .into_iter()
                .map(|d| ProvisionedView {
                    serial: d.serial,
                    token_id: d.token.as_ref().map(|t| t.id.clone()),
                    token: d.token.map(|t| t.token),
                })
                .collect(),
        }),
    ))
}

/// A device as shown to technicians and operators.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceView {
    /// Serial.
    pub serial: String,
    /// Model id.
    pub model: String,
    /// Model name.
    pub model_name: String,
    /// The model's EOL date, `YYYY-MM-DD`, or `null` while in production.
    pub model_eol: Option<String>,
    /// Product line id.
    pub product_line: String,
    /// `hardware` or `software`.
    pub kind: String,
    /// Hardware id (platform id for software).
    pub hw_id: String,
    /// Channel it follows.
    pub channel: String,
    /// Installed version, as last reported.
    pub current_version: Option<String>,
    /// Anti-rollback counter, as last reported.
    pub security_counter: Option<i64>,
    /// Root version it trusts, as last reported.
    pub root_version: Option<i64>,
    /// When it was provisioned.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// First contact.
    #[serde(with = "time::serde::rfc3339::option")]
    pub first_seen: Option<OffsetDateTime>,
    /// Latest contact.
    #[serde(with = "time::serde::rfc3339::option")]
    pub last_seen: Option<OffsetDateTime>,
    /// When the owner registered it.
    #[serde(with = "time::serde::rfc3339::option")]
    pub registered_at: Option<OffsetDateTime>,
    /// Date of sale, `YYYY-MM-DD`; `null` when unknown (the warranty then
    /// runs from the provisioning day, and says so).
    pub sale_date: Option<String>,
    /// Region it was sold in.
    pub region: Option<String>,
    /// End of the warranty after every extension, `YYYY-MM-DD` (the same
    /// as `warranty.ends`).
    pub warranty_ends: String,
    /// The warranty as the after-sales terms state it: state, standard
    /// end, extensions, gaps, parts, with its reasoning (see docs/API.md,
    /// "Warranty").
    #[schema(value_type = Object)]
    pub warranty: warranty::Assessment,
    /// Its contracts, by start date.
    pub contracts: Vec<ContractView>,
    /// Its licences (software), by start date.
    pub licences: Vec<LicenceView>,
    /// Its active repair push, if any (an expired one shows as `expired`
    /// until the next push replaces it).
    pub active_push: Option<PushView>,
    /// Its latest installation reports, newest first (at most 20).
    pub reports: Vec<ReportView>,
    /// Its RMAs that are not closed or cancelled, newest first.
    pub open_rmas: Vec<RmaSummary>,
    /// The unit this one replaced under warranty.
    pub replaces: Option<String>,
    /// The unit that replaced this one.
    pub replaced_by: Option<String>,
    /// When this unit was replaced, `YYYY-MM-DD`.
    pub replaced_on: Option<String>,
    /// Whether the unit's verification code is on file (owners can then
    /// register it themselves). The code is never shown.
    pub verification_code_on_file: bool,
    /// What its next update check would answer on its channel, and the
    /// entitlement decision for every release signed for its hardware, in
    /// full (as `GET /v1/devices/{serial}/entitlement` gives it); `null`
    /// for a release engineer, to whom that route does not answer either.
    pub entitlement: Option<EntitlementView>,
}

/// Most reports [`DeviceView::reports`] lists.
pub const VIEW_REPORTS: i64 = 20;

/// An installation report, as technicians see it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReportView {
    /// Report id.
    pub id: i64,
    /// Release version.
    pub version: String,
    /// Stage reached.
    pub stage: String,
    /// Why it failed or was rolled back.
    pub reason_code: Option<String>,
    /// Free text from the device.
    pub detail: Option<String>,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// The warranty facts of a device: its product line's terms (service
/// class, standard period with the region's override), its date of sale
/// (or, when unknown, its provisioning day; for a unit that replaced
/// another, the start its replacement set), its registration, its paid
/// extensions (`warranty_extension` contracts: requested on the day they
/// were recorded, signed on their start day) and its replaced parts.
pub fn warranty_facts(
    row: &db::devices::DeviceDetailRow,
    contracts: &[db::contracts::ContractRow],
    parts: &[db::rmas::PartRow],
) -> warranty::WarrantyFacts {
    let d = &row.device;
    let regions: Vec<(String, u32)> =
        serde_json::from_str::<std::collections::BTreeMap<String, u32>>(&row.warranty_regions)
            .unwrap_or_default()
            .into_iter()
            .collect();
    let (standard_months, region_override) = warranty::standard_months(
        u32::try_from(row.warranty_months).unwrap_or(0),
        &regions,
        d.region.as_deref(),
    );
    let class =
        warranty::ServiceClass::parse(&row.service_class).unwrap_or(warranty::ServiceClass::Repair);
    let (start, start_source) = match (&d.replaces, d.replacement_start, d.sale_date) {
        (Some(replaces), Some(start), _) => (
            start,
            match class {
                warranty::ServiceClass::Repair => warranty::StartSource::Replacement {
                    replaces: replaces.clone(),
                },
                warranty::ServiceClass::Exchange => warranty::StartSource::Exchanged {
                    replaces: replaces.clone(),
                },
            },
        ),
        (_, _, Some(sale)) => (sale, warranty::StartSource::Sale),
        _ => (d.created_at.date(), warranty::StartSource::Provisioning),
    };
    warranty::WarrantyFacts {
        hardware: row.kind == "hardware",
        class,
        standard_months,
        region_override,
        start,
        start_source,
        registered_on: d.registered_at.map(|t| t.date()),
        paid_extensions: contracts
            .iter()
            .filter(|c| c.kind == "warranty_extension")
            .map(|c| warranty::PaidExtension {
                contract_id: c.id.clone(),
                requested_on: c.created_at.date(),
                signed_on: c.starts,
            })
            .collect(),
        parts: parts
            .iter()
            .map(|p| warranty::PartReplacement {
                part: p.part.clone(),
                replaced_on: p.replaced_on,
                under_warranty: p.under_warranty,
            })
            .collect(),
    }
}

/// Loads what [`warranty_facts`] needs besides the device row (contracts
/// and replaced parts) and gives the facts.
pub async fn load_warranty_facts(
    tx: impl Into<db::Exec<'_>>,
    row: &db::devices::DeviceDetailRow,
) -> AppResult<warranty::WarrantyFacts> {
    let mut exec = tx.into();
    let serial = row.device.serial.as_str();
    let contracts = db::contracts::contracts_of(exec.reborrow(), serial).await?;
    let parts = db::rmas::parts_of(exec, serial).await?;
    Ok(warranty_facts(row, &contracts, &parts))
}

/// Loads the view of a device, with its entitlement reasoning when
/// `explained`, or 404 `unknown_serial`.
pub async fn load_view(app: &App, serial: &str, explained: bool) -> AppResult<DeviceView> {
    let db = &app.db;
    let row = db::devices::find(db, serial)
        .await?
        .ok_or_else(|| unknown_serial(serial))?;
    let contracts = db::contracts::contracts_of(db, serial).await?;
    let parts = db::rmas::parts_of(db, serial).await?;
    let licences = db::contracts::licences_of(db, serial).await?;
    let active_push = db::pushes::active(db, serial).await?;
    let reports = db::reports::recent(db, serial, VIEW_REPORTS).await?;
    let open_rmas = db::rmas::unfinished_of(db, serial).await?;
    let entitlement = if explained {
        Some(explain(app, serial, None).await?)
    } else {
        None
    };
    let now = OffsetDateTime::now_utc();
    let today = now.date();
    let assessment = warranty::assess(&warranty_facts(&row, &contracts, &parts), today);
    let d = row.device;
    Ok(DeviceView {
        serial: d.serial,
        model: d.model_id,
        model_name: row.model_name,
        model_eol: row.eol.map(format_date),
        product_line: row.product_line,
        kind: row.kind,
        hw_id: d.hw_id,
        channel: d.channel,
        current_version: d.current_version,
        security_counter: d.security_counter,
        root_version: d.root_version,
        created_at: d.created_at,
        first_seen: d.first_seen,
        last_seen: d.last_seen,
        registered_at: d.registered_at,
        sale_date: d.sale_date.map(format_date),
        region: d.region,
        warranty_ends: format_date(assessment.ends),
        warranty: assessment,
        contracts: contracts
            .into_iter()
            .map(|c| contract_view(c, today))
            .collect(),
        licences: licences.into_iter().map(licence_view).collect(),
        active_push: active_push.map(|p| push_view(p, now)),
        reports: reports
            .into_iter()
            .map(|r| ReportView {
                id: r.id,
                version: r.version,
                stage: r.stage,
                reason_code: r.reason_code,
                detail: r.detail,
                at: r.at,
            })
            .collect(),
        open_rmas: open_rmas.into_iter().map(rma_summary).collect(),
        replaces: d.replaces,
        replaced_by: d.replaced_by,
        replaced_on: d.replaced_on.map(format_date),
        verification_code_on_file: d.verification_hash.is_some(),
        entitlement,
    })
}

/// Shows a device with its contracts and licences (admin, release
/// engineer, technician).
#[utoipa::path(get, path = "/v1/devices/{serial}", tag = "catalogue",
    params(("serial" = String, Path, description = "device serial")),
    responses(
        (status = 200, body = DeviceView),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_serial", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get(
    State(app): State<AppState>,
    principal: Caller<Staff>,
    Path(serial): Path<String>,
) -> AppResult<Json<DeviceView>> {
    let serial = Name::parse("serial", &serial)?;
    let explained = principal.require(Technicians::ROLES).is_ok();
    Ok(Json(load_view(&app, serial.as_str(), explained).await?))
}

/// The channel a device should follow.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelInput {
    /// Channel, e.g. `stable` or `beta`.
    pub channel: String,
}

/// Moves a device to another channel (admin); audited as `device.channel`
/// with the old and new channel.
#[utoipa::path(put, path = "/v1/admin/devices/{serial}/channel", tag = "catalogue",
    params(("serial" = String, Path, description = "device serial")),
    request_body = ChannelInput,
    responses(
        (status = 200, body = DeviceView),
        (status = 400, description = "invalid_name, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_serial", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn set_channel(
    State(app): State<AppState>,
    principal: Caller<Admins>,
    Path(serial): Path<String>,
    JsonBody(body): JsonBody<ChannelInput>,
) -> AppResult<Json<DeviceView>> {
    let serial = Name::parse("serial", &serial)?;
    let channel = Name::parse("channel", &body.channel)?;
    let mut tx = app.db.begin().await?;
    let row = db::devices::find(&mut tx, serial.as_str())
        .await?
        .ok_or_else(|| unknown_serial(serial.as_str()))?;
    db::devices::set_channel(&mut tx, serial.as_str(), channel.as_str()).await?;
    db::audit::record(
        &mut tx,
        &principal.actor(),
        "device.channel",
        &format!("device/{serial}"),
        serde_json::json!({ "old": row.device.channel, "new": channel }),
    )
    .await?;
    tx.commit().await?;
    app.device_changed(serial.as_str());
    Ok(Json(load_view(&app, serial.as_str(), true).await?))
}

/// Records the owner's registration of a device on the owner's behalf
/// (technician, admin: the service desk), which extends a hardware
/// warranty by 12 months (from the registration day); the answer carries
/// the new `warranty`. A unit registered already is 409
/// `already_registered`, and nothing changes.
#[utoipa::path(post, path = "/v1/admin/devices/{serial}/registration", tag = "catalogue",
    params(("serial" = String, Path, description = "device serial")),
    responses(
        (status = 200, body = DeviceView),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_serial", body = crate::error::ErrorBody),
        (status = 409, description = "already_registered", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn register(
    State(app): State<AppState>,
    principal: Caller<Technicians>,
    Path(serial): Path<String>,
) -> AppResult<Json<DeviceView>> {
    let serial = Name::parse("serial", &serial)?;
    let mut tx = app.db.begin().await?;
    let row = db::devices::find(&mut tx, serial.as_str())
        .await?
        .ok_or_else(|| unknown_serial(serial.as_str()))?;
    record_registration(
        &mut tx,
        &principal.actor(),
        &row,
        OffsetDateTime::now_utc(),
        "desk",
    )
    .await?;
    tx.commit().await?;
    app.device_changed(serial.as_str());
    Ok(Json(load_view(&app, serial.as_str(), true).await?))
}

/// Records the owner's registration of the unit `row` at `now`, by `by`
/// (`owner` or `desk`) in the audit record `device.register`; 409
/// `already_registered` when it is registered already.
pub async fn record_registration(
    tx: &mut db::Tx,
    actor: &crate::domain::roles::Actor,
    row: &db::devices::DeviceDetailRow,
    now: OffsetDateTime,
    by: &str,
) -> AppResult<()> {
    let serial = &row.device.serial;
    if let Some(at) = row.device.registered_at {
        return Err(AppError::conflict(
            "already_registered",
            format!(
                "unit {serial} was registered on {}; its warranty already has the extension",
                format_date(at.date())
            ),
        ));
    }
    db::devices::set_registered(tx, serial, now).await?;
    db::audit::record(
        tx,
        actor,
        "device.register",
        &format!("device/{serial}"),
        serde_json::json!({
            "registered_at": now.format(&time::format_description::well_known::Rfc3339).ok(),
            "bonus_months": warranty::registration_bonus_months(&row.kind),
            "by": by,
        }),
    )
    .await?;
    Ok(())
}

/// A device's date of sale and region, from a sales record.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaleInput {
    /// Date of sale, `YYYY-MM-DD`; the warranty runs from it.
    pub sale_date: String,
    /// Region it was sold in, for per-region warranty periods.
    pub region: Option<String>,
}

/// Records a device's date of sale and region (admin); audited as
/// `device.sale` with the old and new values.
#[utoipa::path(put, path = "/v1/admin/devices/{serial}/sale", tag = "catalogue",
    params(("serial" = String, Path, description = "device serial")),
    request_body = SaleInput,
    responses(
        (status = 200, body = DeviceView),
        (status = 400, description = "invalid_name, invalid_date, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_serial", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn set_sale(
    State(app): State<AppState>,
    principal: Caller<Admins>,
    Path(serial): Path<String>,
    JsonBody(body): JsonBody<SaleInput>,
) -> AppResult<Json<DeviceView>> {
    let serial = Name::parse("serial", &serial)?;
    let sale_date = provisioning::parse_date("sale_date", &body.sale_date)?;
    let region = body
        .region
        .as_deref()
        .map(|r| Name::parse("region", r))
        .transpose()?;
    let mut tx = app.db.begin().await?;
    let row = db::devices::find(&mut tx, serial.as_str())
        .await?
        .ok_or_else(|| unknown_serial(serial.as_str()))?;
    db::devices::set_sale(
        &mut tx,
        serial.as_str(),
        sale_date,
        region.as_ref().map(Name::as_str),
    )
    .await?;
    db::audit::record(
        &mut tx,
        &principal.actor(),
        "device.sale",
        &format!("device/{serial}"),
        serde_json::json!({
            "old": { "sale_date": row.device.sale_date.map(format_date), "region": row.device.region },
            "new": { "sale_date": format_date(sale_date), "region": region },
        }),
    )
    .await?;
    tx.commit().await?;
    app.device_changed(serial.as_str());
    Ok(Json(load_view(&app, serial.as_str(), true).await?))
}

/// Whether a fault on a given day is covered.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct WarrantyQuery {
    /// The day the fault occurred, `YYYY-MM-DD` (default: today).
    pub fault_on: Option<String>,
}

/// A device's warranty and the answer for one fault day.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WarrantyView {
    /// Serial.
    pub serial: String,
    /// The warranty with its reasoning.
    #[schema(value_type = Object)]
    pub warranty: warranty::Assessment,
    /// Whether a fault on `fault_on` is covered, and why.
    #[schema(value_type = Object)]
    pub fault: warranty::FaultCoverage,
}

/// A device's warranty, and whether a fault on a given day is covered
/// (admin, release engineer, technician).
#[utoipa::path(get, path = "/v1/devices/{serial}/warranty", tag = "catalogue",
    params(("serial" = String, Path, description = "device serial"), WarrantyQuery),
    responses(
        (status = 200, body = WarrantyView),
        (status = 400, description = "invalid_name, invalid_date, invalid_query", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_serial", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn warranty_of(
    State(app): State<AppState>,
    _principal: Caller<Staff>,
    Path(serial): Path<String>,
    Query(q): Query<WarrantyQuery>,
) -> AppResult<Json<WarrantyView>> {
    let serial = Name::parse("serial", &serial)?;
    let today = OffsetDateTime::now_utc().date();
    let fault_on = q
        .fault_on
        .as_deref()
        .map(|d| provisioning::parse_date("fault_on", d))
        .transpose()?
        .unwrap_or(today);
    let row = db::devices::find(&app.db, serial.as_str())
        .await?
        .ok_or_else(|| unknown_serial(serial.as_str()))?;
    let facts = load_warranty_facts(&app.db, &row).await?;
    Ok(Json(WarrantyView {
        serial: serial.into_string(),
        warranty: warranty::assess(&facts, today),
        fault: warranty::fault_covered(&facts, fault_on),
    }))
}
