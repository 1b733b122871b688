//! Catalogue routes: product lines, models and their EOL dates, devices
//! (bulk provisioning, channel, owner registration), service contracts,
//! licences, dates of sale in bulk, and the one-call catalogue import.
//!
//! Writes are for admins; reads for admins, release engineers and
//! technicians; device tokens never reach these routes. Every write records
//! its audit entry in the same transaction and, after the commit, tells the
//! update-check caches what changed (`App::catalogue_changed` for product
//! lines and models, `App::device_changed` for a device and its contracts
//! and licences). These handlers must never decide entitlement themselves:
//! they keep the facts the entitlement module judges.

pub mod contracts;
pub mod devices;
pub mod import;
pub mod licences;
pub mod models;
pub mod product_lines;
pub mod sales;
pub mod support;

use axum::extract::DefaultBodyLimit;
use serde::{Deserialize, Deserializer};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;

use crate::error::{AppError, AppResult};

/// Largest provisioning or import body: 10 000 devices with long names fit
/// comfortably; anything larger is refused while it is read.
pub const MAX_BULK_BODY_BYTES: usize = 16 * 1024 * 1024;

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(product_lines::put))
        .routes(routes!(product_lines::list))
        .routes(routes!(models::put))
        .routes(routes!(models::put_eol))
        .routes(routes!(models::get))
        .routes(routes!(support::put_line))
        .routes(routes!(support::put_model))
        .routes(routes!(support::get_model))
        .routes(routes!(support::get_device))
        .routes(routes!(devices::get))
        .routes(routes!(devices::set_channel))
        .routes(routes!(devices::register))
        .routes(routes!(devices::set_sale))
        .routes(routes!(devices::warranty_of))
        .routes(routes!(contracts::create))
        .routes(routes!(contracts::delete))
        .routes(routes!(licences::create))
        .routes(routes!(licences::delete))
}

/// The bulk routes (provisioning, dates of sale, catalogue import): large
/// bodies, so no request timeout; the connection layer's progress rule
/// still applies.
pub fn bulk_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(devices::provision))
        .routes(routes!(sales::import))
        .routes(routes!(import::import))
        .layer(DefaultBodyLimit::max(MAX_BULK_BODY_BYTES))
}

/// Deserialises a field that may be absent (outer `None`: keep the stored
/// value), `null` (`Some(None)`: clear it) or a value (`Some(Some(v))`).
/// Use with `#[serde(default, deserialize_with = "patch")]`.
pub fn patch<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// Checks a display name (not an id): 1-200 characters after trimming.
pub fn display_name(field: &str, value: &str) -> AppResult<String> {
    crate::domain::check_text("invalid_display_name", field, value, 200, false).map(str::to_owned)
}

/// 404 `unknown_serial`.
pub fn unknown_serial(serial: &str) -> AppError {
    AppError::not_found(
        "unknown_serial",
        format!(
            "no device with serial {serial:?} is provisioned; POST /v1/admin/devices provisions it"
        ),
    )
}
