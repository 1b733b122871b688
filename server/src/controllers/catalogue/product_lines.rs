//! Product lines: create or update one (admin), list them with their models
//! (readers). A product line is the unit release keys are delegated to, so
//! its id is the one manifests and root delegations use.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::display_name;
use super::models::{ModelView, model_view};
use crate::app::AppState;
use crate::auth::{Admins, Caller, Staff};
use crate::db::catalogue::ProductLineRow;
use crate::db::{self, Db, Tx};
use crate::domain::Name;
use crate::domain::roles::Actor;
use crate::error::{AppError, AppResult};
use crate::extract::{JsonBody, Path};
use crate::warranty;

/// Standard warranty when a request does not give one.
pub const DEFAULT_WARRANTY_MONTHS: u32 = 12;

/// Longest warranty accepted, in months (50 years).
/// Longest standard warranty a product line may state, in months.
pub const MAX_WARRANTY_MONTHS: u32 = 600;

/// A product line to create or update.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProductLineInput {
    /// Display name.
    pub name: String,
    /// `hardware` (free upgrades until EOL) or `software` (licensed).
    #[schema(example = "hardware")]
    pub kind: String,
    /// Standard warranty in months (default 12).
    #[serde(default, deserialize_with = "crate::domain::optional_whole_number")]
    pub warranty_months: Option<u32>,
    /// How a faulty unit is served under warranty: `repair` (sent in for
    /// repair; encoders, decoders, converters: the default) or `exchange`
    /// (accessories and batteries).
    pub service_class: Option<String>,
    /// Standard warranty per region, in months, replacing
    /// `warranty_months` for devices sold in that region (e.g.
    /// `{"EU": 24}`).
    #[serde(default, deserialize_with = "crate::domain::optional_whole_number_map")]
    pub warranty_by_region: Option<std::collections::BTreeMap<String, u32>>,
}

/// A product line as shown, with its models.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ProductLineView {
    /// Id, as in manifests and root delegations.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `hardware` or `software`.
    pub kind: String,
    /// Standard warranty in months.
    pub warranty_months: i64,
    /// `repair` or `exchange`.
    pub service_class: String,
    /// Standard warranty per region, in months.
    pub warranty_by_region: std::collections::BTreeMap<String, u32>,
    /// Extra warranty months for registering a device (12 for hardware,
    /// 0 for software).
    pub registration_bonus_months: u32,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Its models, by id.
    pub models: Vec<ModelView>,
}

/// Parses a product kind.
pub fn parse_kind(value: &str) -> AppResult<&'static str> {
    match value {
        "hardware" => Ok("hardware"),
        "software" => Ok("software"),
        other => Err(AppError::bad_request(
            "invalid_kind",
            format!("product line kind {other:?} is unknown; use hardware or software"),
        )),
    }
}

/// What [`apply`] changed.
#[derive(Debug, Clone)]
pub struct LineChange {
    /// The line as it was; `None` if it was created.
    pub before: Option<ProductLineRow>,
    /// The line as it is now.
    pub after: ProductLineRow,
}

impl LineChange {
    /// Whether anything changed.
    pub fn changed(&self) -> bool {
        self.before.as_ref() != Some(&self.after)
    }
}

/// Validates `input` and creates or updates the product line `id` inside
/// the caller's transaction (no audit record: the caller writes one).
pub async fn apply(tx: &mut Tx, id: &Name, input: &ProductLineInput) -> AppResult<LineChange> {
    let name = display_name("name", &input.name)?;
    let kind = parse_kind(&input.kind)?;
    let months = input.warranty_months.unwrap_or(DEFAULT_WARRANTY_MONTHS);
    if months > MAX_WARRANTY_MONTHS {
        return Err(AppError::bad_request(
            "invalid_warranty",
            format!("warranty_months {months} is more than {MAX_WARRANTY_MONTHS}"),
        ));
    }
    let service_class = match input.service_class.as_deref() {
        None => warranty::ServiceClass::Repair,
        Some(c) => warranty::ServiceClass::parse(c).ok_or_else(|| {
            AppError::bad_request(
                "invalid_service_class",
                format!(
                    "service_class {c:?} is unknown; use repair (units sent in for repair) or \
                     exchange (accessories and batteries)"
                ),
            )
        })?,
    };
    let regions = input.warranty_by_region.clone().unwrap_or_default();
    for (region, m) in &regions {
        Name::parse("region", region)?;
        if *m > MAX_WARRANTY_MONTHS {
            return Err(AppError::bad_request(
                "invalid_warranty",
                format!("warranty_by_region.{region} {m} is more than {MAX_WARRANTY_MONTHS}"),
            ));
        }
    }
    let regions = serde_json::to_string(&regions)
        .map_err(|e| anyhow::anyhow!("warranty regions do not serialise: {e}"))?;
    let before = db::catalogue::product_line_tx(tx, id.as_str()).await?;
    db::catalogue::upsert_product_line(
        tx,
        id.as_str(),
        &db::catalogue::LineTerms {
            name: &name,
            kind,
            warranty_months: months.into(),
            service_class: service_class.as_str(),
            warranty_regions: &regions,
        },
    )
    .await?;
    let after = db::catalogue::product_line_tx(tx, id.as_str())
        .await?
        .ok_or_else(|| anyhow::anyhow!("product line {id} vanished after its upsert"))?;
    Ok(LineChange { before, after })
}

/// A product line's per-region warranties (stored as a JSON object).
pub fn region_months(row: &ProductLineRow) -> std::collections::BTreeMap<String, u32> {
    serde_json::from_str(&row.warranty_regions).unwrap_or_default()
}

/// The audit detail of a product line.
pub fn audit_detail(row: &ProductLineRow) -> serde_json::Value {
    serde_json::json!({
        "name": row.name, "kind": row.kind, "warranty_months": row.warranty_months,
        "service_class": row.service_class, "warranty_by_region": region_months(row),
    })
}

/// Creates or updates a product line with its audit record, in one
/// transaction.
async fn put_line(
    db: &Db,
    actor: &Actor,
    id: &Name,
    input: &ProductLineInput,
) -> AppResult<LineChange> {
    let mut tx = db.begin().await?;
    let change = apply(&mut tx, id, input).await?;
    let (action, detail) = match &change.before {
        None => ("product_line.create", audit_detail(&change.after)),
        Some(old) => (
            "product_line.update",
            serde_json::json!({ "old": audit_detail(old), "new": audit_detail(&change.after) }),
        ),
    };
    db::audit::record(
        &mut tx,
        actor,
        action,
        &format!("product_line/{id}"),
        detail,
    )
    .await?;
    tx.commit().await?;
    Ok(change)
}

/// Creates (201) or updates (200) a product line (admin).
#[utoipa::path(put, path = "/v1/admin/product-lines/{id}", tag = "catalogue",
    params(("id" = String, Path, description = "product line id, e.g. `encoders`")),
    request_body = ProductLineInput,
    responses(
        (status = 201, description = "created", body = ProductLineView),
        (status = 200, description = "updated", body = ProductLineView),
        (status = 400, description = "invalid_name, invalid_display_name, invalid_kind, invalid_warranty, invalid_service_class, invalid_json",
            body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn put(
    State(app): State<AppState>,
    principal: Caller<Admins>,
    Path(id): Path<String>,
    JsonBody(body): JsonBody<ProductLineInput>,
) -> AppResult<(StatusCode, Json<ProductLineView>)> {
    let id = Name::parse("product line id", &id)?;
    let input = body;
    let change = put_line(&app.db, &principal.actor(), &id, &input).await?;
    app.catalogue_changed();
    let view = load_views(&app.db)
        .await?
        .into_iter()
        .find(|l| l.id == id.as_str())
        .ok_or_else(|| anyhow::anyhow!("product line {id} vanished after its commit"))?;
    let status = if change.before.is_none() {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(view)))
}

/// Lists product lines with their models (admin, release engineer,
/// technician).
#[utoipa::path(get, path = "/v1/product-lines", tag = "catalogue",
    responses(
        (status = 200, body = Vec<ProductLineView>),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    _principal: Caller<Staff>,
) -> AppResult<Json<Vec<ProductLineView>>> {
    Ok(Json(load_views(&app.db).await?))
}

/// Every product line with its models. Catalogues hold tens to hundreds of
/// models, so three whole-table reads are cheaper than anything cleverer.
pub async fn load_views(db: &Db) -> AppResult<Vec<ProductLineView>> {
    let lines = db::catalogue::list_product_lines(db).await?;
    let models = db::catalogue::list_models(db).await?;
    let mut hw: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    for (model_id, hw_id) in db::catalogue::list_hw_ids(db).await? {
        hw.entry(model_id).or_default().push(hw_id);
    }
    Ok(lines
        .into_iter()
        .map(|l| ProductLineView {
            warranty_by_region: region_months(&l),
            registration_bonus_months: warranty::registration_bonus_months(&l.kind),
            models: models
                .iter()
                .filter(|m| m.product_line == l.id)
                .map(|m| model_view(m.clone(), hw.get(&m.id).cloned().unwrap_or_default()))
                .collect(),
            id: l.id,
            name: l.name,
            kind: l.kind,
            warranty_months: l.warranty_months,
            service_class: l.service_class,
            created_at: l.created_at,
        })
        .collect())
}
