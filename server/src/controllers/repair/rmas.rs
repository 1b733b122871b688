//! RMAs, the repair desk's tracking system (after-sales policy, section
//! 3): open one for a unit with the customer's contact and the fault, move
//! it through the service facility (`crate::domain::rma`), record the
//! carrier tracking numbers, decide whether the fault is covered (the
//! warranty module's [`warranty::coverage`], section 2), and record what
//! was done: pushes (`pushes.rs`), replaced parts, a replaced unit. Files
//! the customer sent are attached in `attachments.rs`.
//!
//! Every change is an RMA event (who, when, what) and an audit record. The
//! customer's contact is personal data: it is shown to staff and never
//! written to the audit log.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::{Date, Duration, OffsetDateTime};

use super::attachments::{AttachmentView, attachment_view};
use super::pushes::{PushView, push_view};
use crate::app::AppState;
use crate::auth::{Caller, Staff, Technicians};
use crate::controllers::catalogue::devices::load_warranty_facts;
use crate::controllers::catalogue::unknown_serial;
use crate::db::rmas::{PartRow, RmaEventRow, RmaFilter, RmaRow};
use crate::db::{self, Tx};
use crate::domain::rma::{RmaState, is_rma_number, rma_number};
use crate::domain::roles::Actor;
use crate::domain::{Name, check_text};
use crate::error::{AppError, AppResult};
use crate::extract::{JsonBody, Path, Query};
use crate::provisioning::{format_date, parse_date};
use crate::warranty::{self, Exclusion, FaultCause};

/// Longest customer name, fault part name or tracking number, in characters.
pub const MAX_SHORT_CHARS: usize = 200;
/// Longest fault description or note, in characters.
pub const MAX_FAULT_CHARS: usize = 4000;
/// The oldest age a list filters on, in days (100 years).
pub const MAX_AGE_DAYS: u32 = 36_500;
/// Most RMAs a list gives.
pub const MAX_LIST: i64 = 1000;

/// The customer's contact.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Customer {
    /// Name.
    pub name: String,
    /// Email address.
    pub email: String,
    /// Phone number.
    #[serde(default)]
    pub phone: Option<String>,
}

/// An RMA to open.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct OpenRequest {
    /// The unit's serial.
    pub serial: String,
    /// Who to answer.
    pub customer: Customer,
    /// The customer's description of the fault (1-4000 characters).
    pub fault: String,
    /// When the fault occurred, `YYYY-MM-DD` (default: today).
    #[serde(default)]
    pub fault_on: Option<String>,
    /// When the customer received the goods, `YYYY-MM-DD` (for the 30-day
    /// return option).
    #[serde(default)]
    pub received_on: Option<String>,
    /// Carrier tracking number of the unit's way in.
    #[serde(default)]
    pub tracking_in: Option<String>,
}

/// An RMA in a list.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RmaSummary {
    /// `RMA-2026-000123`.
    pub number: String,
    /// The unit.
    pub serial: String,
    /// Its model.
    pub model: String,
    /// Where it stands.
    pub state: RmaState,
    /// The coverage decision's code, once decided.
    pub coverage_code: Option<String>,
    /// When it was opened.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Whole days since it was opened.
    pub age_days: i64,
}

/// The summary of a stored RMA.
pub fn rma_summary(r: RmaRow) -> RmaSummary {
    let now = OffsetDateTime::now_utc();
    RmaSummary {
        state: RmaState::parse(&r.state).unwrap_or(RmaState::Received),
        age_days: (now - r.created_at).whole_days(),
        number: r.number,
        serial: r.serial,
        model: r.model_id,
        coverage_code: r.coverage_code,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

/// One change of an RMA.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RmaEventView {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Who.
    pub actor: String,
    /// `opened`, `state`, `tracking`, `coverage`, `push`, `push_cancel`,
    /// `part`, `replacement` or `attachment`.
    pub kind: String,
    /// State before (`state` events).
    pub from_state: Option<String>,
    /// State after (`state` events).
    pub to_state: Option<String>,
    /// What changed.
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// A part replaced in a repair.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PartView {
    /// Which part.
    pub part: String,
    /// When, `YYYY-MM-DD`.
    pub replaced_on: String,
    /// Whether the repair was under warranty.
    pub under_warranty: bool,
    /// The part's own warranty ends on this day, `YYYY-MM-DD` (the unit's
    /// remaining warranty or 90 days, whichever is longer; 90 days after an
    /// out-of-warranty repair).
    pub warranty_ends: String,
    /// The RMA of the repair.
    pub rma: Option<String>,
}

/// An RMA with everything the desk knows of it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RmaView {
    /// `RMA-2026-000123`.
    pub number: String,
    /// The unit.
    pub serial: String,
    /// Its model when the RMA was opened.
    pub model: String,
    /// The customer's contact.
    pub customer: Customer,
    /// The customer's description of the fault.
    pub fault: String,
    /// When the fault occurred, `YYYY-MM-DD`.
    pub fault_on: String,
    /// When the customer received the goods, `YYYY-MM-DD`.
    pub received_on: Option<String>,
    /// Where it stands.
    pub state: RmaState,
    /// The states it may move to next.
    pub next_states: Vec<RmaState>,
    /// Carrier tracking number of the way in.
    pub tracking_in: Option<String>,
    /// Carrier tracking number of the way back.
    pub tracking_out: Option<String>,
    /// The coverage decision (code, covered, summary, explanation,
    /// exclusion), once decided.
    #[schema(value_type = Option<Object>)]
    pub coverage: Option<serde_json::Value>,
    /// Who opened it.
    pub opened_by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Every change, oldest first.
    pub events: Vec<RmaEventView>,
    /// Firmware pushed under this RMA, newest first.
    pub pushes: Vec<PushView>,
    /// Parts replaced under this RMA.
    pub parts: Vec<PartView>,
    /// Files attached to it (photos, logs), oldest first.
    pub attachments: Vec<AttachmentView>,
}

/// RMAs, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RmaList {
    /// The RMAs.
    pub rmas: Vec<RmaSummary>,
}

/// Opens an RMA for a unit (technician): a number such as
/// `RMA-2026-000123`, state `received`. Audited as `rma.open` (without the
/// customer's contact).
#[utoipa::path(post, path = "/v1/rmas", tag = "repair",
    request_body = OpenRequest,
    responses(
        (status = 201, body = RmaView),
        (status = 400, description = "invalid_name, invalid_customer, invalid_email, invalid_phone, invalid_fault, invalid_tracking, invalid_date, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_serial", body = crate::error::ErrorBody),
        (status = 409, description = "unit_replaced", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn open(
    State(app): State<AppState>,
    principal: Caller<Technicians>,
    JsonBody(req): JsonBody<OpenRequest>,
) -> AppResult<(StatusCode, Json<RmaView>)> {
    let serial = Name::parse("serial", &req.serial)?;
    let customer = check_customer(&req.customer)?;
    let fault = check_text("invalid_fault", "fault", &req.fault, MAX_FAULT_CHARS, true)?;
    let now = OffsetDateTime::now_utc();
    let today = now.date();
    let fault_on = past_date("fault_on", req.fault_on.as_deref(), today)?.unwrap_or(today);
    let received_on = past_date("received_on", req.received_on.as_deref(), today)?;
    let tracking_in = tracking("tracking_in", req.tracking_in.as_deref())?;

    let mut tx = app.db.begin().await?;
    let device = db::devices::find(&mut tx, serial.as_str())
        .await?
        .ok_or_else(|| unknown_serial(serial.as_str()))?;
    if let Some(by) = &device.device.replaced_by {
        return Err(AppError::conflict(
            "unit_replaced",
            format!(
                "unit {serial} was replaced by {by}; open the RMA for {by}, which holds its \
                 owner, contracts and warranty now"
            ),
        ));
    }
    let year = i64::from(today.year());
    let seq = db::rmas::next_seq(&mut tx, year).await?;
    let row = RmaRow {
        number: rma_number(today.year(), seq),
        year,
        seq,
        serial: serial.as_str().to_owned(),
        model_id: device.device.model_id.clone(),
        customer_name: customer.name,
        customer_email: customer.email,
        customer_phone: customer.phone,
        fault: fault.to_owned(),
        fault_on,
        received_on,
        state: RmaState::Received.as_str().to_owned(),
        tracking_in,
        tracking_out: None,
        coverage_code: None,
        coverage: None,
        opened_by: principal.actor().label.clone(),
        created_at: now,
        updated_at: now,
    };
    db::rmas::insert(&mut tx, &row).await?;
    let actor = principal.actor();
    event(
        &mut tx,
        &actor,
        &row.number,
        now,
        "opened",
        None,
        serde_json::json!({ "serial": row.serial, "fault_on": format_date(fault_on) }),
    )
    .await?;
    db::audit::record(
        &mut tx,
        &actor,
        "rma.open",
        &format!("rma/{}", row.number),
        serde_json::json!({ "serial": row.serial }),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(rma = %row.number, serial = %app.log_serial(&row.serial), "rma opened");
    Ok((StatusCode::CREATED, Json(load(&app, &row.number).await?)))
}

/// Filters of the RMA list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only these states, comma-separated (`received,diagnosing`); `open`
    /// stands for every state before `shipped`.
    pub state: Option<String>,
    /// Only this model.
    pub model: Option<String>,
    /// Only this unit.
    pub serial: Option<String>,
    /// Only RMAs opened at least this many days ago (at most 36 500).
    #[param(maximum = 36_500)]
    pub older_than_days: Option<u32>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// Lists RMAs, newest first, filtered by state, model, unit and age
/// (admin, release engineer, technician).
#[utoipa::path(get, path = "/v1/rmas", tag = "repair", params(ListQuery),
    responses(
        (status = 200, body = RmaList),
        (status = 400, description = "invalid_state, invalid_name, invalid_query", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    _principal: Caller<Staff>,
    Query(q): Query<ListQuery>,
) -> AppResult<Json<RmaList>> {
    let mut states = Vec::new();
    if let Some(list) = q.state.as_deref().filter(|l| !l.is_empty()) {
        for s in list.split(',') {
            match s {
                "open" => states.extend(RmaState::ALL.into_iter().filter(RmaState::is_open)),
                _ => states.push(parse_state(s)?),
            }
        }
    }
    if q.older_than_days.is_some_and(|d| d > MAX_AGE_DAYS) {
        return Err(AppError::bad_request(
            "invalid_query",
            format!("older_than_days is at most {MAX_AGE_DAYS}"),
        ));
    }
    let model = q
        .model
        .as_deref()
        .map(|m| Name::parse("model", m))
        .transpose()?;
    let serial = q
        .serial
        .as_deref()
        .map(|s| Name::parse("serial", s))
        .transpose()?;
    let filter = RmaFilter {
        states: states.iter().map(RmaState::as_str).collect(),
        model_id: model.as_ref().map(Name::as_str),
        serial: serial.as_ref().map(Name::as_str),
        opened_before: q
            .older_than_days
            .map(|d| OffsetDateTime::now_utc() - Duration::days(i64::from(d))),
        limit: q.limit.unwrap_or(100).clamp(1, MAX_LIST),
    };
    let rows = db::rmas::list(&app.db, &filter).await?;
    Ok(Json(RmaList {
        rmas: rows.into_iter().map(rma_summary).collect(),
    }))
}

/// Shows an RMA with its events, pushes, parts and attachments (admin,
/// release engineer, technician).
#[utoipa::path(get, path = "/v1/rmas/{number}", tag = "repair",
    params(("number" = String, Path, description = "RMA number, e.g. RMA-2026-000123")),
    responses(
        (status = 200, body = RmaView),
        (status = 400, description = "invalid_rma", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_rma", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get(
    State(app): State<AppState>,
    _principal: Caller<Staff>,
    Path(number): Path<String>,
) -> AppResult<Json<RmaView>> {
    let number = parse_number(&number)?;
    Ok(Json(load(&app, number).await?))
}

/// A state change.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StateRequest {
    /// The new state (see `next_states` of the RMA).
    pub state: String,
    /// A note for the record (1-4000 characters).
    #[serde(default)]
    pub note: Option<String>,
    /// Carrier tracking number of the way back (with `shipped`).
    #[serde(default)]
    pub tracking_out: Option<String>,
}

/// Moves an RMA to its next state (technician): received → diagnosing →
/// repairing → testing → shipped → closed, testing back to repairing,
/// diagnosing straight to shipped, and any state before shipped to
/// cancelled. Audited as `rma.state`.
#[utoipa::path(post, path = "/v1/rmas/{number}/state", tag = "repair",
    params(("number" = String, Path, description = "RMA number")),
    request_body = StateRequest,
    responses(
        (status = 200, body = RmaView),
        (status = 400, description = "invalid_rma, invalid_state, invalid_note, invalid_tracking, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_rma", body = crate::error::ErrorBody),
        (status = 409, description = "rma_state_forbidden", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn set_state(
    State(app): State<AppState>,
    principal: Caller<Technicians>,
    Path(number): Path<String>,
    JsonBody(req): JsonBody<StateRequest>,
) -> AppResult<Json<RmaView>> {
    let number = parse_number(&number)?;
    let note = req
        .note
        .as_deref()
        .map(|n| check_text("invalid_note", "note", n, MAX_FAULT_CHARS, true))
        .transpose()?;
    let tracking_out = tracking("tracking_out", req.tracking_out.as_deref())?;
    let now = OffsetDateTime::now_utc();
    let mut tx = app.db.begin().await?;
    let rma = find(&mut tx, number).await?;
    let from = stored_state(&rma);
    let to = parse_state(req.state.trim())?;
    if !from.can_move_to(to) {
        let next: Vec<&str> = from.next().iter().map(RmaState::as_str).collect();
        return Err(AppError::conflict(
            "rma_state_forbidden",
            format!(
                "{number} is {from} and cannot move to {to}; {}",
                if next.is_empty() {
                    format!("{from} is final")
                } else {
                    format!("from {from} it may move to {}", next.join(", "))
                }
            ),
        ));
    }
    if tracking_out.is_some() && to != RmaState::Shipped {
        return Err(AppError::bad_request(
            "invalid_tracking",
            "tracking_out goes with the change to shipped; set it later with PUT \
             /v1/rmas/{number}/tracking",
        ));
    }
    db::rmas::set_state(&mut tx, number, from.as_str(), to.as_str(), now).await?;
    if let Some(out) = &tracking_out {
        db::rmas::set_tracking(&mut tx, number, rma.tracking_in.as_deref(), Some(out), now).await?;
    }
    let actor = principal.actor();
    let detail = serde_json::json!({ "note": note, "tracking_out": tracking_out });
    event(
        &mut tx,
        &actor,
        number,
        now,
        "state",
        Some((from, to)),
        detail,
    )
    .await?;
    db::audit::record(
        &mut tx,
        &actor,
        "rma.state",
        &format!("rma/{number}"),
        serde_json::json!({ "from": from.as_str(), "to": to.as_str(), "serial": rma.serial }),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(load(&app, number).await?))
}

/// Carrier tracking numbers.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TrackingRequest {
    /// Customer to desk; omitted: unchanged.
    #[serde(default)]
    pub tracking_in: Option<String>,
    /// Desk back to customer; omitted: unchanged.
    #[serde(default)]
    pub tracking_out: Option<String>,
}

/// Records the carrier tracking numbers of an RMA (technician). Audited as
/// `rma.tracking`.
#[utoipa::path(put, path = "/v1/rmas/{number}/tracking", tag = "repair",
    params(("number" = String, Path, description = "RMA number")),
    request_body = TrackingRequest,
    responses(
        (status = 200, body = RmaView),
        (status = 400, description = "invalid_rma, invalid_tracking, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_rma", body = crate::error::ErrorBody),
        (status = 409, description = "rma_finished", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn set_tracking(
    State(app): State<AppState>,
    principal: Caller<Technicians>,
    Path(number): Path<String>,
    JsonBody(req): JsonBody<TrackingRequest>,
) -> AppResult<Json<RmaView>> {
    let number = parse_number(&number)?;
    let tracking_in = tracking("tracking_in", req.tracking_in.as_deref())?;
    let tracking_out = tracking("tracking_out", req.tracking_out.as_deref())?;
    let now = OffsetDateTime::now_utc();
    let mut tx = app.db.begin().await?;
    let rma = find(&mut tx, number).await?;
    let state = stored_state(&rma);
    if matches!(state, RmaState::Closed | RmaState::Cancelled) {
        return Err(finished(number, state));
    }
    let tin = tracking_in.or(rma.tracking_in);
    let tout = tracking_out.or(rma.tracking_out);
    db::rmas::set_tracking(&mut tx, number, tin.as_deref(), tout.as_deref(), now).await?;
    let actor = principal.actor();
    let detail = serde_json::json!({ "tracking_in": tin, "tracking_out": tout });
    event_and_audit(
        &mut tx,
        &actor,
        number,
        now,
        "tracking",
        "rma.tracking",
        detail,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(load(&app, number).await?))
}

/// What the engineer found.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CoverageRequest {
    /// What caused the fault: `no_customer_fault` (nothing points to the
    /// customer), `transport_to_customer` (damaged on the way to the
    /// customer), `not_as_described`, or an exclusion of the policy:
    /// `human_damage`, `unauthorised_modification`,
    /// `return_transport_damage`, `against_manual`, `force_majeure`,
    /// `serial_label_unreadable`.
    pub cause: String,
    /// With `transport_to_customer`: whether the carrier's proof of the
    /// damage was provided.
    #[serde(default)]
    pub carrier_proof: bool,
    /// The replaced part the fault was traced to, if any.
    #[serde(default)]
    pub part: Option<String>,
}

/// Decides whether the fault of an RMA is covered (technician), from the
/// unit's warranty and the after-sales policy's section 2: return or
/// exchange within 30 days of receipt, warranty repair or exchange, a
/// replaced part's own warranty, paid repair, or not covered with the
/// exclusion named. The decision, with its explanation, is stored on the
/// RMA; deciding again replaces it. Audited as `rma.coverage`.
#[utoipa::path(post, path = "/v1/rmas/{number}/coverage", tag = "repair",
    params(("number" = String, Path, description = "RMA number")),
    request_body = CoverageRequest,
    responses(
        (status = 200, body = RmaView),
        (status = 400, description = "invalid_rma, invalid_cause, invalid_part, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_rma", body = crate::error::ErrorBody),
        (status = 409, description = "rma_finished", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn decide_coverage(
    State(app): State<AppState>,
    principal: Caller<Technicians>,
    Path(number): Path<String>,
    JsonBody(req): JsonBody<CoverageRequest>,
) -> AppResult<Json<RmaView>> {
    let number = parse_number(&number)?;
    let cause = parse_cause(&req.cause, req.carrier_proof)?;
    let part = req
        .part
        .as_deref()
        .map(|p| check_text("invalid_part", "part", p, MAX_SHORT_CHARS, false))
        .transpose()?;
    let now = OffsetDateTime::now_utc();
    let mut tx = app.db.begin().await?;
    let rma = find(&mut tx, number).await?;
    let state = stored_state(&rma);
    if !state.is_open() {
        return Err(finished(number, state));
    }
    let device = db::devices::find(&mut tx, &rma.serial)
        .await?
        .ok_or_else(|| unknown_serial(&rma.serial))?;
    let facts = load_warranty_facts(&mut tx, &device).await?;
    let claim = warranty::Claim {
        fault_on: rma.fault_on,
        received_on: rma.received_on,
        requested_on: rma.created_at.date(),
        cause,
        part: part.map(str::to_owned),
    };
    let decision = warranty::coverage(&facts, &claim);
    let stored = serde_json::to_value(&decision).unwrap_or(serde_json::Value::Null);
    db::rmas::set_coverage(
        &mut tx,
        number,
        decision.code.as_str(),
        &stored.to_string(),
        now,
    )
    .await?;
    let actor = principal.actor();
    let detail = serde_json::json!({
        "code": decision.code.as_str(),
        "covered": decision.covered,
        "cause": req.cause.trim(),
    });
    event_and_audit(
        &mut tx,
        &actor,
        number,
        now,
        "coverage",
        "rma.coverage",
        detail,
    )
    .await?;
    tx.commit().await?;
    Ok(Json(load(&app, number).await?))
}

/// A replaced part.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PartRequest {
    /// Which part (1-200 characters), e.g. `power supply`.
    pub part: String,
    /// When, `YYYY-MM-DD` (default: today).
    #[serde(default)]
    pub replaced_on: Option<String>,
}

/// Records a part replaced in the repair of an RMA (technician). Under
/// warranty when the RMA's coverage decision covers the fault; the part
/// then has its own warranty (the unit's remaining warranty or 90 days,
/// whichever is longer; 90 days after a paid repair). Audited as
/// `rma.part`.
#[utoipa::path(post, path = "/v1/rmas/{number}/parts", tag = "repair",
    params(("number" = String, Path, description = "RMA number")),
    request_body = PartRequest,
    responses(
        (status = 201, body = PartView),
        (status = 400, description = "invalid_rma, invalid_part, invalid_date, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_rma", body = crate::error::ErrorBody),
        (status = 409, description = "rma_finished, coverage_not_decided", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn replace_part(
    State(app): State<AppState>,
    principal: Caller<Technicians>,
    Path(number): Path<String>,
    JsonBody(req): JsonBody<PartRequest>,
) -> AppResult<(StatusCode, Json<PartView>)> {
    let number = parse_number(&number)?;
    let part = check_text("invalid_part", "part", &req.part, MAX_SHORT_CHARS, false)?;
    let now = OffsetDateTime::now_utc();
    let today = now.date();
    let replaced_on = past_date("replaced_on", req.replaced_on.as_deref(), today)?.unwrap_or(today);
    let mut tx = app.db.begin().await?;
    let rma = find(&mut tx, number).await?;
    let state = stored_state(&rma);
    if !state.is_open() {
        return Err(finished(number, state));
    }
    let covered = decided_cover(&rma)?;
    let row = PartRow {
        id: format!("part_{}", uuid::Uuid::new_v4().simple()),
        serial: rma.serial.clone(),
        rma: Some(number.to_owned()),
        part: part.to_owned(),
        replaced_on,
        under_warranty: covered,
        created_at: now,
    };
    db::rmas::insert_part(&mut tx, &row).await?;
    let device = db::devices::find(&mut tx, &rma.serial)
        .await?
        .ok_or_else(|| unknown_serial(&rma.serial))?;
    let facts = load_warranty_facts(&mut tx, &device).await?;
    let view = part_view(&facts, &row, today);
    let actor = principal.actor();
    let detail = serde_json::json!({
        "part": row.part,
        "replaced_on": view.replaced_on,
        "under_warranty": covered,
        "warranty_ends": view.warranty_ends,
    });
    event_and_audit(&mut tx, &actor, number, now, "part", "rma.part", detail).await?;
    tx.commit().await?;
    app.device_changed(&rma.serial);
    Ok((StatusCode::CREATED, Json(view)))
}

/// A whole-unit replacement.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplacementRequest {
    /// The serial of the replacement unit: provisioned, of the same product
    /// line, and not yet in anyone's hands (no registration, contracts,
    /// licences or RMAs).
    pub serial: String,
}

/// Replaces the unit of an RMA by another one under warranty (technician):
/// the new unit takes over the owner's registration, the sale record,
/// contracts and licences; it starts a fresh standard warranty on the
/// replacement day (an exchanged accessory keeps the original warranty);
/// the old unit is marked replaced and its active push ends. Needs a
/// coverage decision that covers the fault. Audited as `device.replace`.
#[utoipa::path(post, path = "/v1/rmas/{number}/replacement", tag = "repair",
    params(("number" = String, Path, description = "RMA number")),
    request_body = ReplacementRequest,
    responses(
        (status = 200, body = RmaView),
        (status = 400, description = "invalid_rma, invalid_name, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_rma, unknown_serial", body = crate::error::ErrorBody),
        (status = 409, description = "rma_finished, coverage_not_decided, replacement_not_covered, unit_replaced, replacement_in_use", body = crate::error::ErrorBody),
        (status = 422, description = "replacement_same_unit, replacement_wrong_product_line", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn replace_unit(
    State(app): State<AppState>,
    principal: Caller<Technicians>,
    Path(number): Path<String>,
    JsonBody(req): JsonBody<ReplacementRequest>,
) -> AppResult<Json<RmaView>> {
    let number = parse_number(&number)?;
    let new = Name::parse("serial", &req.serial)?;
    let now = OffsetDateTime::now_utc();
    let today = now.date();
    let mut tx = app.db.begin().await?;
    let rma = find(&mut tx, number).await?;
    let state = stored_state(&rma);
    if !state.is_open() {
        return Err(finished(number, state));
    }
    let old = rma.serial.as_str();
    if !decided_cover(&rma)? {
        return Err(AppError::conflict(
            "replacement_not_covered",
            format!(
                "the coverage decision of {number} ({}) does not cover the fault; a whole unit \
                 is replaced only under warranty",
                rma.coverage_code.as_deref().unwrap_or("none")
            ),
        ));
    }
    if new.as_str() == old {
        return Err(AppError::unprocessable(
            "replacement_same_unit",
            format!("{new} is the unit of {number}; name the replacement unit's serial"),
        ));
    }
    let old_row = db::devices::find(&mut tx, old)
        .await?
        .ok_or_else(|| unknown_serial(old))?;
    if let Some(by) = &old_row.device.replaced_by {
        return Err(AppError::conflict(
            "unit_replaced",
            format!("unit {old} was already replaced by {by}"),
        ));
    }
    let new_row = db::devices::find(&mut tx, new.as_str())
        .await?
        .ok_or_else(|| unknown_serial(new.as_str()))?;
    if new_row.product_line != old_row.product_line {
        return Err(AppError::unprocessable(
            "replacement_wrong_product_line",
            format!(
                "{new} is a {} ({}) but {old} is a {} ({}); a replacement is a similar or \
                 better unit of the same product line",
                new_row.model_name, new_row.product_line, old_row.model_name, old_row.product_line
            ),
        ));
    }
    let in_use = new_row.device.registered_at.is_some()
        || new_row.device.replaces.is_some()
        || new_row.device.replaced_by.is_some()
        || !db::contracts::contracts_of(&mut tx, new.as_str())
            .await?
            .is_empty()
        || !db::contracts::licences_of(&mut tx, new.as_str())
            .await?
            .is_empty()
        || db::rmas::count_of(&mut tx, new.as_str()).await? > 0;
    if in_use {
        return Err(AppError::conflict(
            "replacement_in_use",
            format!(
                "{new} is already in use (registered, under contract or licence, a replacement \
                 itself, or with RMAs of its own); replace with a unit from stock"
            ),
        ));
    }
    let old_facts = load_warranty_facts(&mut tx, &old_row).await?;
    let start = warranty::replacement_start(old_facts.class, old_facts.start, today);
    db::devices::replace_unit(&mut tx, old, new.as_str(), today, start).await?;
    let actor = principal.actor();
    let ended_push = db::pushes::end(&mut tx, old, "cancelled", now, &actor.label, None).await?;
    let detail = serde_json::json!({
        "replaced": old,
        "replacement": new.as_str(),
        "warranty_start": format_date(start),
        "push_cancelled": ended_push,
    });
    event(
        &mut tx,
        &actor,
        number,
        now,
        "replacement",
        None,
        detail.clone(),
    )
    .await?;
    db::audit::record(
        &mut tx,
        &actor,
        "device.replace",
        &format!("device/{old}"),
        detail,
    )
    .await?;
    tx.commit().await?;
    app.device_changed(old);
    app.device_changed(new.as_str());
    tracing::info!(rma = %number, old = %app.log_serial(old), new = %app.log_serial(new.as_str()), "unit replaced");
    Ok(Json(load(&app, number).await?))
}

/// Checks an RMA number from a path or body: `unknown_rma`-proof shape.
pub fn parse_number(number: &str) -> AppResult<&str> {
    if is_rma_number(number) {
        Ok(number)
    } else {
        Err(AppError::bad_request(
            "invalid_rma",
            format!(
                "{:?} is not an RMA number; they read like RMA-2026-000123",
                number.chars().take(40).collect::<String>()
            ),
        ))
    }
}

/// The RMA, or 404 `unknown_rma`.
pub async fn find(tx: &mut Tx, number: &str) -> AppResult<RmaRow> {
    db::rmas::find(&mut *tx, number)
        .await?
        .ok_or_else(|| unknown_rma(number))
}

/// 404 `unknown_rma`.
pub fn unknown_rma(number: &str) -> AppError {
    AppError::not_found(
        "unknown_rma",
        format!("there is no {number}; GET /v1/rmas?serial=SERIAL lists a unit's RMAs"),
    )
}

/// The state of a stored RMA.
pub fn stored_state(r: &RmaRow) -> RmaState {
    RmaState::parse(&r.state).unwrap_or(RmaState::Received)
}

/// 409 `rma_finished`: the unit has left the desk.
pub fn finished(number: &str, state: RmaState) -> AppError {
    AppError::conflict(
        "rma_finished",
        format!("{number} is {state}: the unit has left the desk; open a new RMA if it comes back"),
    )
}

/// Records an event of an RMA.
pub async fn event(
    tx: &mut Tx,
    actor: &Actor,
    number: &str,
    at: OffsetDateTime,
    kind: &str,
    states: Option<(RmaState, RmaState)>,
    detail: serde_json::Value,
) -> AppResult<()> {
    db::rmas::add_event(
        tx,
        &RmaEventRow {
            id: format!("ev_{}", uuid::Uuid::new_v4().simple()),
            rma: number.to_owned(),
            at,
            actor: actor.label.clone(),
            kind: kind.to_owned(),
            from_state: states.map(|(f, _)| f.as_str().to_owned()),
            to_state: states.map(|(_, t)| t.as_str().to_owned()),
            detail: detail.to_string(),
        },
    )
    .await?;
    Ok(())
}

/// Records an event of an RMA and the audit record `action` with the same
/// detail.
pub(crate) async fn event_and_audit(
    tx: &mut Tx,
    actor: &Actor,
    number: &str,
    at: OffsetDateTime,
    kind: &str,
    action: &str,
    detail: serde_json::Value,
) -> AppResult<()> {
    event(tx, actor, number, at, kind, None, detail.clone()).await?;
    db::audit::record(tx, actor, action, &format!("rma/{number}"), detail).await?;
    Ok(())
}

/// Whether the RMA's coverage decision covers the fault, or 409
/// `coverage_not_decided`.
fn decided_cover(rma: &RmaRow) -> AppResult<bool> {
    let decision = rma
        .coverage
        .as_deref()
        .and_then(|c| serde_json::from_str::<serde_json::Value>(c).ok())
        .ok_or_else(|| {
            AppError::conflict(
                "coverage_not_decided",
                format!(
                    "{} has no coverage decision yet; POST /v1/rmas/{}/coverage first",
                    rma.number, rma.number
                ),
            )
        })?;
    Ok(decision["covered"].as_bool().unwrap_or(false))
}

fn part_view(facts: &warranty::WarrantyFacts, p: &PartRow, today: Date) -> PartView {
    let assessed = warranty::assess(facts, today);
    let ends = assessed
        .parts
        .iter()
        .rev()
        .find(|v| v.part == p.part && v.replaced_on == p.replaced_on)
        .map_or_else(
            || warranty::day_period_last_day(p.replaced_on, warranty::PART_WARRANTY_DAYS),
            |v| v.ends,
        );
    PartView {
        part: p.part.clone(),
        replaced_on: format_date(p.replaced_on),
        under_warranty: p.under_warranty,
        warranty_ends: format_date(ends),
        rma: p.rma.clone(),
    }
}

/// Loads the whole view of an RMA.
async fn load(app: &AppState, number: &str) -> AppResult<RmaView> {
    let db = &app.db;
    let r = db::rmas::find(db, number)
        .await?
        .ok_or_else(|| unknown_rma(number))?;
    let events = db::rmas::events(db, number).await?;
    let now = OffsetDateTime::now_utc();
    let pushes = db::pushes::of_rma(db, number).await?;
    let device = db::devices::find(db, &r.serial).await?;
    let parts = match &device {
        Some(d) => {
            let facts = load_warranty_facts(db, d).await?;
            db::rmas::parts_of(db, &r.serial)
                .await?
                .iter()
                .filter(|p| p.rma.as_deref() == Some(number))
                .map(|p| part_view(&facts, p, now.date()))
                .collect()
        }
        None => Vec::new(),
    };
    let attachments = db::rmas::attachments_of(db, number).await?;
    let state = stored_state(&r);
    Ok(RmaView {
        number: r.number,
        serial: r.serial,
        model: r.model_id,
        customer: Customer {
            name: r.customer_name,
            email: r.customer_email,
            phone: r.customer_phone,
        },
        fault: r.fault,
        fault_on: format_date(r.fault_on),
        received_on: r.received_on.map(format_date),
        state,
        next_states: state.next().to_vec(),
        tracking_in: r.tracking_in,
        tracking_out: r.tracking_out,
        coverage: r
            .coverage
            .as_deref()
            .and_then(|c| serde_json::from_str(c).ok()),
        opened_by: r.opened_by,
        created_at: r.created_at,
        updated_at: r.updated_at,
        events: events
            .into_iter()
            .map(|e| RmaEventView {
                at: e.at,
                actor: e.actor,
                kind: e.kind,
                from_state: e.from_state,
                to_state: e.to_state,
                detail: serde_json::from_str(&e.detail).unwrap_or(serde_json::Value::Null),
            })
            .collect(),
        pushes: pushes.into_iter().map(|p| push_view(p, now)).collect(),
        parts,
        attachments: attachments.into_iter().map(attachment_view).collect(),
    })
}

fn parse_state(s: &str) -> AppResult<RmaState> {
    RmaState::parse(s).ok_or_else(|| {
        let all: Vec<&str> = RmaState::ALL.iter().map(RmaState::as_str).collect();
        AppError::bad_request(
            "invalid_state",
            format!(
                "{:?} is not an RMA state; use one of {}, or open",
                s.chars().take(40).collect::<String>(),
                all.join(", ")
            ),
        )
    })
}

fn parse_cause(cause: &str, carrier_proof: bool) -> AppResult<FaultCause> {
    Ok(match cause.trim() {
        "no_customer_fault" => FaultCause::Unknown,
        "transport_to_customer" => FaultCause::TransportToCustomer { carrier_proof },
        "not_as_described" => FaultCause::NotAsDescribed,
        other => match Exclusion::parse(other) {
            Some(e) => FaultCause::Excluded(e),
            None => {
                let exclusions: Vec<&str> = Exclusion::ALL.iter().map(Exclusion::as_str).collect();
                return Err(AppError::bad_request(
                    "invalid_cause",
                    format!(
                        "cause must be no_customer_fault, transport_to_customer, \
                         not_as_described or an exclusion ({})",
                        exclusions.join(", ")
                    ),
                ));
            }
        },
    })
}

pub(crate) fn check_customer(c: &Customer) -> AppResult<Customer> {
    let name = check_text(
        "invalid_customer",
        "customer.name",
        &c.name,
        MAX_SHORT_CHARS,
        false,
    )?;
    let email = check_text("invalid_email", "customer.email", &c.email, 254, false)?;
    let shaped = email
        .split_once('@')
        .is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.'))
        && !email.contains(char::is_whitespace);
    if !shaped {
        return Err(AppError::bad_request(
            "invalid_email",
            "customer.email must be an email address such as name@example.com",
        ));
    }
    let phone = c
        .phone
        .as_deref()
        .map(|p| {
            let p = check_text("invalid_phone", "customer.phone", p, 40, false)?;
            if p.chars()
                .all(|ch| ch.is_ascii_digit() || " +-()./".contains(ch))
            {
                Ok(p.to_owned())
            } else {
                Err(AppError::bad_request(
                    "invalid_phone",
                    "customer.phone may hold digits, spaces and + - ( ) . / only",
                ))
            }
        })
        .transpose()?;
    Ok(Customer {
        name: name.to_owned(),
        email: email.to_owned(),
        phone,
    })
}

fn tracking(field: &str, value: Option<&str>) -> AppResult<Option<String>> {
    value
        .map(|v| {
            check_text("invalid_tracking", field, v, MAX_SHORT_CHARS, false).map(str::to_owned)
        })
        .transpose()
}

/// A date not after `today`, if given.
fn past_date(field: &str, value: Option<&str>, today: Date) -> AppResult<Option<Date>> {
    let Some(v) = value else { return Ok(None) };
    let d = parse_date(field, v)?;
    if d > today {
        return Err(AppError::bad_request(
            "invalid_date",
            format!("{field} {} is in the future", format_date(d)),
        ));
    }
    Ok(Some(d))
}
