//! Security support periods (docs/CRA.md): declare one per product line or
//! model (admin), and read the support window of a model or of one unit
//! (staff), with its reasoning.
//!
//! A period under five years needs a justification; every change is
//! audited with the old and the new period.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::models::unknown_model;
use super::unknown_serial;
use crate::app::AppState;
use crate::auth::{Admins, Caller, Staff};
use crate::db::catalogue::{DeclaredSupport, SupportTable};
use crate::db::{self};
use crate::domain::Name;
use crate::domain::support::{
    OnMarket, PolicyError, PolicySource, StartSource, SupportPolicy, SupportWindow, check_policy,
    fmt_date,
};
use crate::error::{AppError, AppResult};
use crate::extract::{JsonBody, Path};

/// A support period to declare.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SupportInput {
    /// Months of security support from the day each unit is placed on the
    /// market (1-600); `null` clears the declaration (a model then follows
    /// its line, a line the 60-month default).
    #[schema(minimum = 1, maximum = 600)]
    pub months: Option<i64>,
    /// Why the period is shorter than 60 months (required then).
    #[serde(default)]
    #[schema(min_length = 1, max_length = 2000)]
    pub justification: Option<String>,
}

/// The support period that applies to a model.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SupportView {
    /// The model, or the product line for a line's declaration.
    pub id: String,
    /// Months of security support per unit.
    pub months: u32,
    /// Who declares it: `model`, `product_line` or `default`.
    pub source: PolicySource,
    /// The stated justification, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    /// The last day of support of the model's latest unit on the market
    /// (models with units only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_unit_ends: Option<String>,
}

/// One unit's security support window.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DeviceSupportView {
    /// Serial.
    pub serial: String,
    /// Model.
    pub model_id: String,
    /// The day the unit was placed on the market (`YYYY-MM-DD`).
    pub starts: String,
    /// `sale` (its recorded sale date) or `provisioning` (no sale recorded).
    pub start_source: StartSource,
    /// The period in months.
    pub months: u32,
    /// Who declares the period.
    pub policy_source: PolicySource,
    /// The stated justification for a short period, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
    /// The last day of security support (`YYYY-MM-DD`, inclusive).
    pub ends: String,
    /// Whether support runs today.
    pub active: bool,
    /// Days left (negative once over).
    pub days_left: i64,
    /// The reasoning, for people.
    pub explanation: String,
}

fn policy_error(e: PolicyError) -> AppError {
    match e {
        PolicyError::TooShort(_) => {
            AppError::unprocessable("support_period_too_short", e.to_string())
        }
        PolicyError::OutOfRange(_) => {
            AppError::bad_request("invalid_support_period", e.to_string())
        }
        PolicyError::BadJustification(_) => {
            AppError::bad_request("invalid_support_period", e.to_string())
        }
    }
}

/// Checks an input: `(months, justification)` to store.
fn checked(input: &SupportInput) -> AppResult<(Option<i32>, Option<String>)> {
    let justification = input
        .justification
        .as_deref()
        .map(str::trim)
        .map(str::to_owned);
    match input.months {
        None if justification.is_some() => Err(AppError::bad_request(
            "invalid_support_period",
            "a justification goes with a period: give months too, or leave both out to clear",
        )),
        None => Ok((None, None)),
        Some(m) => {
            let months = check_policy(m, justification.as_deref()).map_err(policy_error)?;
            Ok((
                Some(i32::try_from(months).unwrap_or(i32::MAX)),
                justification,
            ))
        }
    }
}

fn declared(d: DeclaredSupport) -> Option<(u32, Option<String>)> {
    let (months, justification) = d;
    Some((u32::try_from(months?).ok()?, justification))
}

/// Declares a product line's security support period (admin); its models
/// that declare none follow it. Audited as `support.product_line`.
#[utoipa::path(put, path = "/v1/admin/product-lines/{id}/support", tag = "catalogue",
    params(("id" = String, Path, description = "product line id")),
    request_body = SupportInput,
    responses(
        (status = 200, body = SupportView),
        (status = 400, description = "invalid_support_period, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_product_line", body = crate::error::ErrorBody),
        (status = 422, description = "support_period_too_short", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn put_line(
    State(app): State<AppState>,
    principal: Caller<Admins>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<SupportInput>,
) -> AppResult<Json<SupportView>> {
    let id = Name::parse("product line id", &id)?;
    let (months, justification) = checked(&input)?;
    let mut tx = app.db.begin().await?;
    if !db::catalogue::set_support(
        &mut tx,
        SupportTable::ProductLine,
        id.as_str(),
        months,
        justification.as_deref(),
    )
    .await?
    {
        return Err(AppError::not_found(
            "unknown_product_line",
            format!("no product line {id:?}; PUT /v1/admin/product-lines/{id} creates it"),
        ));
    }
    db::audit::record(
        &mut tx,
        &principal.actor(),
        "support.product_line",
        &format!("product_line/{id}"),
        serde_json::json!({ "months": months, "justification": justification }),
    )
    .await?;
    tx.commit().await?;
    app.catalogue_changed();
    let policy = SupportPolicy::resolve(
        None,
        months
            .and_then(|m| u32::try_from(m).ok())
            .map(|m| (m, justification)),
    );
    Ok(Json(SupportView {
        id: id.into_string(),
        months: policy.months,
        source: policy.source,
        justification: policy.justification,
        last_unit_ends: None,
    }))
}

/// Declares a model's own security support period (admin), overriding its
/// line's. Audited as `support.model`.
#[utoipa::path(put, path = "/v1/admin/models/{id}/support", tag = "catalogue",
    params(("id" = String, Path, description = "model id")),
    request_body = SupportInput,
    responses(
        (status = 200, body = SupportView),
        (status = 400, description = "invalid_support_period, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_model", body = crate::error::ErrorBody),
        (status = 422, description = "support_period_too_short", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn put_model(
    State(app): State<AppState>,
    principal: Caller<Admins>,
    Path(id): Path<String>,
    JsonBody(input): JsonBody<SupportInput>,
) -> AppResult<Json<SupportView>> {
    let id = Name::parse("model id", &id)?;
    let (months, justification) = checked(&input)?;
    let mut tx = app.db.begin().await?;
    if !db::catalogue::set_support(
        &mut tx,
        SupportTable::Model,
        id.as_str(),
        months,
        justification.as_deref(),
    )
    .await?
    {
        return Err(unknown_model(id.as_str()));
    }
    db::audit::record(
        &mut tx,
        &principal.actor(),
        "support.model",
        &format!("model/{id}"),
        serde_json::json!({ "months": months, "justification": justification }),
    )
    .await?;
    tx.commit().await?;
    app.catalogue_changed();
    model_view(&app, &id).await.map(Json)
}

/// The support period of a model with its source, and the last day of
/// support of its latest unit (admin, release engineer, technician).
#[utoipa::path(get, path = "/v1/models/{id}/support", tag = "catalogue",
    params(("id" = String, Path, description = "model id")),
    responses(
        (status = 200, body = SupportView),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_model", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get_model(
    State(app): State<AppState>,
    _principal: Caller<Staff>,
    Path(id): Path<String>,
) -> AppResult<Json<SupportView>> {
    let id = Name::parse("model id", &id)?;
    model_view(&app, &id).await.map(Json)
}

async fn model_view(app: &AppState, id: &Name) -> AppResult<SupportView> {
    let (policy, last_ends) = model_support(app, id.as_str())
        .await?
        .ok_or_else(|| unknown_model(id.as_str()))?;
    Ok(SupportView {
        id: id.as_str().to_owned(),
        last_unit_ends: last_ends.map(fmt_date),
        months: policy.months,
        source: policy.source,
        justification: policy.justification,
    })
}

/// A model's support policy and the last day of support of its latest
/// unit on the market (`None` before any unit is); `None` for an unknown
/// model.
pub(crate) async fn model_support(
    app: &AppState,
    model_id: &str,
) -> AppResult<Option<(SupportPolicy, Option<time::Date>)>> {
    let Some((_, model, line)) = db::catalogue::support_of_model(&app.db, model_id).await? else {
        return Ok(None);
    };
    let policy = SupportPolicy::resolve(declared(model), declared(line));
    let (sold, provisioned) = db::catalogue::last_on_market(&app.db, model_id).await?;
    let last = [
        sold.map(|d| OnMarket::of(Some(d), OffsetDateTime::UNIX_EPOCH)),
        provisioned.map(|at| OnMarket::of(None, at)),
    ]
    .into_iter()
    .flatten()
    .max_by_key(|m| m.date);
    let ends = last.map(|m| SupportWindow::new(m, policy.clone()).ends);
    Ok(Some((policy, ends)))
}

/// One unit's security support window with its reasoning (admin, release
/// engineer, technician).
#[utoipa::path(get, path = "/v1/devices/{serial}/support", tag = "catalogue",
    params(("serial" = String, Path, description = "device serial")),
    responses(
        (status = 200, body = DeviceSupportView),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_serial", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get_device(
    State(app): State<AppState>,
    _principal: Caller<Staff>,
    Path(serial): Path<String>,
) -> AppResult<Json<DeviceSupportView>> {
    let serial = Name::parse("serial", &serial)?;
    let facts = db::devices::load_device_facts(&app.db, serial.as_str())
        .await?
        .ok_or_else(|| unknown_serial(serial.as_str()))?;
    let (name, model, line) = db::catalogue::support_of_model(&app.db, &facts.model_id)
        .await?
        .ok_or_else(|| unknown_model(&facts.model_id))?;
    let window = SupportWindow::new(
        facts.on_market,
        SupportPolicy::resolve(declared(model), declared(line)),
    );
    let today = OffsetDateTime::now_utc().date();
    Ok(Json(DeviceSupportView {
        serial: facts.serial,
        model_id: facts.model_id,
        starts: fmt_date(window.starts.date),
        start_source: window.starts.source,
        months: window.policy.months,
        policy_source: window.policy.source,
        justification: window.policy.justification.clone(),
        ends: fmt_date(window.ends),
        active: window.covers(today),
        days_left: window.days_left(today),
        explanation: window.explanation(&name),
    }))
}
