//! One-call catalogue import (admin): product lines with their models, in
//! the shape of the fixtures' sample `Catalogue`, so an operator can load a
//! whole catalogue at once.
//!
//! It is an upsert and therefore idempotent: importing the same document
//! twice changes nothing the second time. All of it happens in one
//! transaction with one `catalogue.import` audit record; the first invalid
//! entry aborts everything, named by its position. Lines of kind
//! `accessory` carry no firmware and are skipped (and listed as skipped);
//! `licences` are accepted and ignored, because licences belong to
//! installations (`POST /v1/admin/devices/{serial}/licences`).

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use super::models::{ModelInput, apply as apply_model};
use super::patch;
use super::product_lines::{ProductLineInput, apply as apply_line};
use crate::app::AppState;
use crate::auth::{Admins, Caller};
use crate::db;
use crate::domain::Name;
use crate::error::{AppError, AppResult};
use crate::extract::JsonBody;
use crate::provisioning::in_context;
use crate::warranty;

/// A catalogue to import.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CatalogueImport {
    /// Product lines with their models.
    pub product_lines: Vec<ImportLine>,
    /// Accepted and ignored (licences are per installation).
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub licences: Option<serde_json::Value>,
}

/// A product line to import.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportLine {
    /// Product line id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `hardware`, `software`, or `accessory` (skipped).
    pub kind: String,
    /// Standard warranty in months (default 12).
    #[serde(default, deserialize_with = "crate::domain::optional_whole_number")]
    pub warranty_months: Option<u32>,
    /// If given, must equal the server's rule: 12 for hardware, 0 for
    /// software.
    #[serde(default, deserialize_with = "crate::domain::optional_whole_number")]
    pub registration_bonus_months: Option<u32>,
    /// `repair` (default) or `exchange`, as in `PUT
    /// /v1/admin/product-lines/{id}`.
    pub service_class: Option<String>,
    /// Standard warranty per region, in months.
    pub warranty_by_region: Option<std::collections::BTreeMap<String, u32>>,
    /// Models of the line.
    #[serde(default)]
    pub models: Vec<ImportModel>,
}

/// A model to import (same rules as `PUT /v1/admin/models/{id}`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ImportModel {
    /// Model id.
    pub id: String,
    /// Marketing name.
    pub name: String,
    /// Hardware ids.
    #[serde(default)]
    pub hw_ids: Vec<String>,
    /// Launch date `YYYY-MM-DD`; absent keeps the stored value, `null`
    /// clears it.
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<String>)]
    pub launched: Option<Option<String>>,
    /// EOL date `YYYY-MM-DD`; absent keeps the stored value, `null` clears
    /// it.
    #[serde(default, deserialize_with = "patch")]
    #[schema(value_type = Option<String>)]
    pub eol: Option<Option<String>>,
}

/// Ids by what the import did to them.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct Outcomes {
    /// Newly created.
    pub created: Vec<String>,
    /// Existing and changed.
    pub updated: Vec<String>,
    /// Existing and already equal.
    pub unchanged: Vec<String>,
}

impl Outcomes {
    fn add(&mut self, id: String, created: bool, changed: bool) {
        match (created, changed) {
            (true, _) => self.created.push(id),
            (false, true) => self.updated.push(id),
            (false, false) => self.unchanged.push(id),
        }
    }

    fn counts(&self) -> serde_json::Value {
        serde_json::json!({
            "created": self.created.len(),
            "updated": self.updated.len(),
            "unchanged": self.unchanged.len(),
        })
    }
}

/// Something the import left out, and why.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Skipped {
    /// Product line id.
    pub id: String,
    /// Why.
    pub reason: String,
}

/// What an import did.
#[derive(Debug, Default, Serialize, utoipa::ToSchema)]
pub struct ImportSummary {
    /// Product lines.
    pub product_lines: Outcomes,
    /// Models.
    pub models: Outcomes,
    /// Lines left out.
    pub skipped: Vec<Skipped>,
}

/// Imports product lines and models (admin), all or nothing; idempotent.
#[utoipa::path(post, path = "/v1/admin/catalogue/import", tag = "catalogue",
    request_body = CatalogueImport,
    responses(
        (status = 200, body = ImportSummary),
        (status = 400, description = "as PUT product line / model, unsupported_registration_bonus, invalid_json",
            body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_product_line", body = crate::error::ErrorBody),
        (status = 409, description = "hw_id_taken, hw_id_in_use, model_has_devices", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn import(
    State(app): State<AppState>,
    principal: Caller<Admins>,
    JsonBody(body): JsonBody<CatalogueImport>,
) -> AppResult<Json<ImportSummary>> {
    let doc = body;
    let mut summary = ImportSummary::default();
    let mut tx = app.db.begin().await?;
    for (i, line) in doc.product_lines.iter().enumerate() {
        let context = format!("product_lines[{i}] (product line {:?})", line.id);
        let id = Name::parse("product line id", &line.id).map_err(|e| in_context(e, &context))?;
        if line.kind == "accessory" {
            summary.skipped.push(Skipped {
                id: id.into_string(),
                reason: "accessories carry no firmware; Firmup does not track them".into(),
            });
            continue;
        }
        if let Some(bonus) = line.registration_bonus_months {
            let rule = warranty::registration_bonus_months(&line.kind);
            if bonus != rule {
                return Err(in_context(
                    AppError::bad_request(
                        "unsupported_registration_bonus",
                        format!(
                            "registration_bonus_months {bonus} differs from this server's rule \
                             for {} lines ({rule}); leave it out or set {rule}",
                            line.kind
                        ),
                    ),
                    &context,
                ));
            }
        }
        let input = ProductLineInput {
            name: line.name.clone(),
            kind: line.kind.clone(),
            warranty_months: line.warranty_months,
            service_class: line.service_class.clone(),
            warranty_by_region: line.warranty_by_region.clone(),
        };
        let change = apply_line(&mut tx, &id, &input)
            .await
            .map_err(|e| in_context(e, &context))?;
        summary
            .product_lines
            .add(id.to_string(), change.before.is_none(), change.changed());
        for (j, model) in line.models.iter().enumerate() {
            let context = format!("product_lines[{i}].models[{j}] (model {:?})", model.id);
            let model_id =
                Name::parse("model id", &model.id).map_err(|e| in_context(e, &context))?;
            let input = ModelInput {
                product_line: id.to_string(),
                name: model.name.clone(),
                hw_ids: model.hw_ids.clone(),
                launched: model.launched.clone(),
                eol: model.eol.clone(),
            };
            let change = apply_model(&mut tx, &model_id, &input)
                .await
                .map_err(|e| in_context(e, &context))?;
            summary.models.add(
                model_id.into_string(),
                change.before.is_none(),
                change.changed(),
            );
        }
    }
    db::audit::record(
        &mut tx,
        &principal.actor(),
        "catalogue.import",
        "catalogue",
        serde_json::json!({
            "product_lines": summary.product_lines.counts(),
            "models": summary.models.counts(),
            "skipped": summary.skipped.iter().map(|s| &s.id).collect::<Vec<_>>(),
        }),
    )
    .await?;
    tx.commit().await?;
    app.catalogue_changed();
    Ok(Json(summary))
}
