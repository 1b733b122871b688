//! Dates of sale in bulk (admin): `POST /v1/admin/sales` records the dates
//! of sale (and regions) of units already provisioned, from a sales record,
//! all or nothing. The warranty of each then runs from its date of sale.
//!
//! Shares its validation with `firmup-server sale import`
//! ([`crate::provisioning::import_sales`]); one unit's sale is
//! `PUT /v1/admin/devices/{serial}/sale`.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};

use crate::app::AppState;
use crate::auth::{Admins, Caller};
use crate::error::{AppError, AppResult};
use crate::extract::JsonBody;
use crate::provisioning::{self, EntryRef, MAX_SALES_PER_REQUEST, SaleEntry, Source};

/// One unit's date of sale.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SaleRecord {
    /// The unit's serial; it must be provisioned.
    pub serial: String,
    /// Date of sale, `YYYY-MM-DD`; the warranty runs from it.
    pub sale_date: String,
    /// Region it was sold in, for per-region warranty periods; absent or
    /// `null` clears a recorded one.
    #[serde(default)]
    pub region: Option<String>,
}

/// Dates of sale to record, all or nothing.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SalesRequest {
    /// 1 to 10 000 units, each listed once.
    pub sales: Vec<SaleRecord>,
}

/// What was recorded.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SalesResponse {
    /// How many dates of sale were recorded.
    pub count: usize,
    /// The units, in request order.
    pub serials: Vec<String>,
}

/// Records the dates of sale of units already provisioned (admin): all or
/// nothing, one audit record `device.sale_import` with the count and the
/// serials. Errors name the entry (`sales[3]`) and its serial.
#[utoipa::path(post, path = "/v1/admin/sales", tag = "catalogue",
    request_body = SalesRequest,
    responses(
        (status = 200, body = SalesResponse),
        (status = 400, description = "no_sales, duplicate_serial, invalid_name, invalid_date, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 413, description = "too_many_sales, body_too_large", body = crate::error::ErrorBody),
        (status = 422, description = "unknown_serial", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn import(
    State(app): State<AppState>,
    principal: Caller<Admins>,
    JsonBody(req): JsonBody<SalesRequest>,
) -> AppResult<Json<SalesResponse>> {
    if req.sales.len() > MAX_SALES_PER_REQUEST {
        return Err(AppError::PayloadTooLarge {
            code: "too_many_sales",
            message: format!(
                "{} dates of sale in one request; at most {MAX_SALES_PER_REQUEST} are accepted: \
                 split the batch, or use `firmup-server sale import` on the server host",
                req.sales.len()
            ),
        });
    }
    let entries: Vec<SaleEntry> = req
        .sales
        .into_iter()
        .enumerate()
        .map(|(index, s)| SaleEntry {
            at: EntryRef::Index {
                field: "sales",
                index,
            },
            serial: s.serial,
            sale_date: s.sale_date,
            region: s.region,
        })
        .collect();
    let serials =
        provisioning::import_sales(&app.db, &principal.actor(), Source::Api, &entries).await?;
    // The transaction wrote the invalidations the other replicas apply;
    // this one drops its cached facts now.
    app.caches
        .forget_devices(serials.iter().map(String::as_str));
    tracing::info!(count = serials.len(), "dates of sale recorded");
    Ok(Json(SalesResponse {
        count: serials.len(),
        serials,
    }))
}
