//! Models: create or update one (admin), move its EOL date (admin), show it
//! (readers).
//!
//! A model's EOL date is the one fact that ends free firmware upgrades for
//! its hardware, so every change to it is audited with the old and the new
//! value. A hardware id names exactly one model; a model's hardware ids and
//! product line cannot change under devices that rely on them.

use std::collections::HashSet;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::Date;

use super::{display_name, patch};
use crate::app::AppState;
use crate::auth::{Admins, Caller, Staff};
use crate::db::catalogue::ModelRow;
use crate::db::{self, Tx};
use crate::domain::Name;
use crate::error::{AppError, AppResult};
use crate::extract::{JsonBody, Path};
use crate::provisioning::{format_date, parse_date};

/// A model to create or update. `launched` and `eol` may be left out to
/// keep the stored value (nothing, for a new model), or set to `null` to
/// clear it; leaving out `eol` can therefore never end a model's free
/// upgrades by accident, nor restore them.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModelInput {
    /// Product line the model belongs to.
    pub product_line: String,
    /// Marketing name.
    pub name: String,
    /// Hardware ids manifests name in `hw_compat` (for software: the
    /// platform ids installations report). Required for hardware lines.
    #[serde(default)]
    pub hw_ids: Vec<String>,
    /// Launch date, `YYYY-MM-DD`.
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<String>, example = "2022-03-01")]
    pub launched: Option<Option<String>>,
    /// Discontinuation date, `YYYY-MM-DD`; `null` while in production.
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<String>, example = "2025-06-30")]
    pub eol: Option<Option<String>>,
}

/// A model as shown.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ModelView {
    /// Id.
    pub id: String,
    /// Product line.
    pub product_line: String,
    /// Marketing name.
    pub name: String,
    /// Hardware ids, sorted.
    pub hw_ids: Vec<String>,
    /// Launch date, `YYYY-MM-DD`.
    pub launched: Option<String>,
    /// Discontinuation date, `YYYY-MM-DD`; `null` while in production.
    pub eol: Option<String>,
}

/// The API view of a model row and its hardware ids.
pub fn model_view(row: ModelRow, hw_ids: Vec<String>) -> ModelView {
    ModelView {
        id: row.id,
        product_line: row.product_line,
        name: row.name,
        hw_ids,
        launched: row.launched.map(format_date),
        eol: row.eol.map(format_date),
    }
}

/// A model with its hardware ids, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelState {
    /// The row.
    pub row: ModelRow,
    /// Hardware ids, sorted.
    pub hw_ids: Vec<String>,
}

impl ModelState {
    /// The audit detail of this state.
    pub fn audit_detail(&self) -> serde_json::Value {
        serde_json::json!({
            "product_line": self.row.product_line,
            "name": self.row.name,
            "hw_ids": self.hw_ids,
            "launched": self.row.launched.map(format_date),
            "eol": self.row.eol.map(format_date),
        })
    }
}

/// What [`apply`] changed.
#[derive(Debug, Clone)]
pub struct ModelChange {
    /// The model as it was; `None` if it was created.
    pub before: Option<ModelState>,
    /// The model as it is now.
    pub after: ModelState,
}

impl ModelChange {
    /// Whether anything changed.
    pub fn changed(&self) -> bool {
        self.before.as_ref() != Some(&self.after)
    }
}

/// Parses an optional patch of a date field: `None` keeps `current`.
fn patched_date(
    field: &str,
    value: &Option<Option<String>>,
    current: Option<Date>,
) -> AppResult<Option<Date>> {
    match value {
        None => Ok(current),
        Some(None) => Ok(None),
        Some(Some(s)) => parse_date(field, s).map(Some),
    }
}

/// Fails with 400 `invalid_period` when a model would be discontinued
/// before it was launched.
fn check_dates(launched: Option<Date>, eol: Option<Date>) -> AppResult<()> {
    match (launched, eol) {
        (Some(l), Some(e)) if e < l => Err(AppError::bad_request(
            "invalid_period",
            format!(
                "eol {} is before launched {}; a model cannot be discontinued before its launch",
                format_date(e),
                format_date(l)
            ),
        )),
        _ => Ok(()),
    }
}

/// 404 `unknown_model`.
pub fn unknown_model(id: &str) -> AppError {
    AppError::not_found(
        "unknown_model",
        format!("no model with id {id:?}; PUT /v1/admin/models/{{id}} creates it"),
    )
}

/// Validates `input` and creates or updates the model `id` with its
/// hardware ids inside the caller's transaction (no audit record: the
/// caller writes one). Errors: 404 `unknown_product_line`; 400
/// `invalid_name`, `invalid_display_name`, `duplicate_hw_id`,
/// `hw_ids_required`, `invalid_date`, `invalid_period`; 409 `hw_id_taken`,
/// `hw_id_in_use`, `model_has_devices`.
pub async fn apply(tx: &mut Tx, id: &Name, input: &ModelInput) -> AppResult<ModelChange> {
    let line_id = Name::parse("product_line", &input.product_line)?;
    let line = db::catalogue::product_line_tx(tx, line_id.as_str())
        .await?
        .ok_or_else(|| {
            AppError::not_found(
                "unknown_product_line",
                format!(
                    "product line {line_id:?} does not exist; create it with \
                     PUT /v1/admin/product-lines/{line_id} first"
                ),
            )
        })?;
    let name = display_name("name", &input.name)?;
    let mut hw_ids = Vec::with_capacity(input.hw_ids.len());
    let mut seen = HashSet::new();
    for raw in &input.hw_ids {
        let hw = Name::parse("hw_id", raw)?.into_string();
        if !seen.insert(hw.clone()) {
            return Err(AppError::bad_request(
                "duplicate_hw_id",
                format!("hardware id {hw:?} is listed twice; list each once"),
            ));
        }
        hw_ids.push(hw);
    }
    hw_ids.sort();
    if line.kind == "hardware" && hw_ids.is_empty() {
        return Err(AppError::bad_request(
            "hw_ids_required",
            format!(
                "product line {} is hardware: give the model at least one hardware id \
                 (the ids its manifests name in hw_compat)",
                line.id
            ),
        ));
    }
    let before = match db::catalogue::find_model(&mut *tx, id.as_str()).await? {
        Some(row) => {
            let hw = db::catalogue::model_hw_ids(&mut *tx, id.as_str()).await?;
            Some(ModelState { row, hw_ids: hw })
        }
        None => None,
    };
    let launched = patched_date(
        "launched",
        &input.launched,
        before.as_ref().and_then(|b| b.row.launched),
    )?;
    let eol = patched_date("eol", &input.eol, before.as_ref().and_then(|b| b.row.eol))?;
    check_dates(launched, eol)?;
    if let Some(old) = &before {
        if old.row.product_line != line.id
            && db::catalogue::device_count(tx, id.as_str()).await? > 0
        {
            return Err(AppError::conflict(
                "model_has_devices",
                format!(
                    "model {id} has provisioned devices, so it cannot move from product line {} \
                     to {}: they would be offered another line's releases",
                    old.row.product_line, line.id
                ),
            ));
        }
        let in_use = db::catalogue::hw_ids_in_use(tx, id.as_str()).await?;
        if let Some(hw) = in_use.iter().find(|hw| !hw_ids.contains(hw)) {
            return Err(AppError::conflict(
                "hw_id_in_use",
                format!(
                    "hardware id {hw:?} is used by provisioned devices of model {id}; keep it in hw_ids"
                ),
            ));
        }
    }
    for hw in &hw_ids {
        if let Some(owner) = db::catalogue::hw_id_owner(tx, hw).await?
            && owner != id.as_str()
        {
            return Err(AppError::conflict(
                "hw_id_taken",
                format!(
                    "hardware id {hw:?} already belongs to model {owner}; a hardware id names \
                     exactly one model"
                ),
            ));
        }
    }
    let row = ModelRow {
        id: id.to_string(),
        product_line: line.id,
        name,
        launched,
        eol,
    };
    db::catalogue::upsert_model(tx, &row).await?;
    db::catalogue::set_hw_ids(tx, id.as_str(), &hw_ids).await?;
    Ok(ModelChange {
        before,
        after: ModelState { row, hw_ids },
    })
}

/// Creates (201) or updates (200) a model with its hardware ids (admin).
#[utoipa::path(put, path = "/v1/admin/models/{id}", tag = "catalogue",
    params(("id" = String, Path, description = "model id, e.g. `E4K`")),
    request_body = ModelInput,
    responses(
        (status = 201, description = "created", body = ModelView),
        (status = 200, description = "updated", body = ModelView),
        (status = 400, description = "invalid_name, invalid_display_name, duplicate_hw_id, hw_ids_required, invalid_date, invalid_period, invalid_json",
            body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_product_line", body = crate::error::ErrorBody),
        (status = 409, description = "hw_id_taken, hw_id_in_use, model_has_devices", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn put(
    State(app): State<AppState>,
    principal: Caller<Admins>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ModelInput>,
) -> AppResult<(StatusCode, Json<ModelView>)> {
    let id = Name::parse("model id", &id)?;
    let input = body;
    let mut tx = app.db.begin().await?;
    let change = apply(&mut tx, &id, &input).await?;
    let (action, detail) = match &change.before {
        None => ("model.create", change.after.audit_detail()),
        Some(old) => (
            "model.update",
            serde_json::json!({ "old": old.audit_detail(), "new": change.after.audit_detail() }),
        ),
    };
    db::audit::record(
        &mut tx,
        &principal.actor(),
        action,
        &format!("model/{id}"),
        detail,
    )
    .await?;
    tx.commit().await?;
    app.catalogue_changed();
    let status = if change.before.is_none() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(model_view(change.after.row, change.after.hw_ids)),
    ))
}

/// A new EOL date. `eol` must be present: a date, or `null` to put the
/// model back in production.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EolInput {
    /// Discontinuation date, `YYYY-MM-DD`, or `null`.
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<String>, required, example = "2025-06-30")]
    pub eol: Option<Option<String>>,
}

/// Sets, moves or clears a model's EOL date (admin). The audit record
/// `model.eol` keeps the old and the new date.
#[utoipa::path(put, path = "/v1/admin/models/{id}/eol", tag = "catalogue",
    params(("id" = String, Path, description = "model id")),
    request_body = EolInput,
    responses(
        (status = 200, body = ModelView),
        (status = 400, description = "missing_eol, invalid_date, invalid_period, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_model", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn put_eol(
    State(app): State<AppState>,
    principal: Caller<Admins>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<EolInput>,
) -> AppResult<Json<ModelView>> {
    let id = Name::parse("model id", &id)?;
    let input = body;
    let Some(eol) = input.eol else {
        return Err(AppError::bad_request(
            "missing_eol",
            "give \"eol\": a date YYYY-MM-DD, or null to put the model back in production",
        ));
    };
    let eol = eol.map(|s| parse_date("eol", &s)).transpose()?;
    let mut tx = app.db.begin().await?;
    let mut row = db::catalogue::find_model(&mut tx, id.as_str())
        .await?
        .ok_or_else(|| unknown_model(id.as_str()))?;
    check_dates(row.launched, eol)?;
    let old = row.eol;
    db::catalogue::set_eol(&mut tx, id.as_str(), eol).await?;
    db::audit::record(
        &mut tx,
        &principal.actor(),
        "model.eol",
        &format!("model/{id}"),
        serde_json::json!({ "old": old.map(format_date), "new": eol.map(format_date) }),
    )
    .await?;
    let hw_ids = db::catalogue::model_hw_ids(&mut tx, id.as_str()).await?;
    tx.commit().await?;
    app.catalogue_changed();
    row.eol = eol;
    Ok(Json(model_view(row, hw_ids)))
}

/// Shows a model (admin, release engineer, technician).
#[utoipa::path(get, path = "/v1/models/{id}", tag = "catalogue",
    params(("id" = String, Path, description = "model id")),
    responses(
        (status = 200, body = ModelView),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_model", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get(
    State(app): State<AppState>,
    _principal: Caller<Staff>,
    Path(id): Path<String>,
) -> AppResult<Json<ModelView>> {
    let id = Name::parse("model id", &id)?;
    let row = db::catalogue::find_model(&app.db, id.as_str())
        .await?
        .ok_or_else(|| unknown_model(id.as_str()))?;
    let hw_ids = db::catalogue::model_hw_ids(&app.db, id.as_str()).await?;
    Ok(Json(model_view(row, hw_ids)))
}
