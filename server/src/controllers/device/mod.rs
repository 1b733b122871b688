//! Device-facing routes (update check, progress reports) and the views of
//! the same decisions for people (report summaries per release, the
//! entitlement reasoning for one device).
//!
//! Devices see entitlement codes and summaries only; explanations (with
//! contract ids, licence ids, technician names) are for technicians and
//! admins, through [`entitlement`]. The check is the hot path: with warm
//! caches it must not read the database (see [`crate::snapshot`]).

pub mod check;
pub mod entitlement;
pub mod fetch;
pub mod report;
pub mod summary;

use std::sync::Arc;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::{App, AppState};
use crate::domain::catalogue::{Catalogue, GroupEntry, ModelInfo, ProductKind, ProductLineInfo};
use crate::domain::facts::DeviceFacts;
use crate::domain::group::Subject;
use crate::entitlement::{ModelFacts, ProductFacts};
use crate::error::{AppError, AppResult};
use crate::snapshot;

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(summary::summary))
        .routes(routes!(entitlement::entitlement))
}

/// The routes device tokens call (rate limited in [`crate::router`]).
pub fn device_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(check::check))
        .routes(routes!(fetch::fetch))
        .routes(routes!(report::report))
}

/// 404 for a serial that is not provisioned.
pub(crate) fn unknown_serial(serial: &str) -> AppError {
    AppError::not_found(
        "unknown_serial",
        format!(
            "no device with serial {serial:?} is registered; ask an administrator to provision it"
        ),
    )
}

/// The device facts for a device-facing request (cached), or 404.
pub(crate) async fn cached_facts(app: &App, serial: &str) -> AppResult<Arc<DeviceFacts>> {
    snapshot::device_facts(&app.db, &app.caches, serial)
        .await?
        .ok_or_else(|| unknown_serial(serial))
}

/// 409 `hw_id_mismatch` unless the device reports the hardware id it is
/// registered with.
pub(crate) fn require_hw_id(facts: &DeviceFacts, hw_id: &crate::domain::Name) -> AppResult<()> {
    if hw_id.as_str() == facts.hw_id {
        return Ok(());
    }
    Err(AppError::conflict(
        "hw_id_mismatch",
        format!(
            "the device reports hardware id {:?} but serial {:?} is registered as {:?}; \
             ask support to correct the registration",
            hw_id.as_str(),
            facts.serial,
            facts.hw_id
        ),
    ))
}

/// A catalogue snapshot that knows the device's model and product line.
///
/// A device row always names an existing model (foreign key), so a
/// snapshot that does not know it predates the model (created through
/// another replica within the refresh interval): reload once.
pub(crate) async fn catalogue_for(app: &App, model_id: &str) -> AppResult<Arc<Catalogue>> {
    let knows = |c: &Catalogue| {
        c.model(model_id)
            .is_some_and(|m| c.product_line(&m.product_line).is_some())
    };
    let c = snapshot::current(&app.db, &app.catalogue).await;
    if knows(&c) {
        return Ok(c);
    }
    let c = snapshot::reload(&app.db, &app.catalogue).await?;
    if knows(&c) {
        return Ok(c);
    }
    Err(AppError::Internal(anyhow::anyhow!(
        "model {model_id:?} or its product line is missing from the catalogue snapshot"
    )))
}

/// The model and product line of a device in `catalogue` (which
/// [`catalogue_for`] checked knows them).
pub(crate) fn model_and_line<'c>(
    catalogue: &'c Catalogue,
    model_id: &str,
) -> AppResult<(&'c ModelInfo, &'c ProductLineInfo)> {
    catalogue
        .model(model_id)
        .and_then(|m| catalogue.product_line(&m.product_line).map(|l| (m, l)))
        .ok_or_else(|| {
            AppError::Internal(anyhow::anyhow!(
                "model {model_id:?} is missing from the catalogue snapshot"
            ))
        })
}

/// The groups a device is in as it checks on `channel` running `version`
/// (`None`: it never reported one): its static groups and the dynamic ones
/// it matches.
pub(crate) fn device_groups<'c>(
    catalogue: &'c Catalogue,
    facts: &DeviceFacts,
    channel: &str,
    version: Option<&semver::Version>,
) -> Vec<&'c GroupEntry> {
    catalogue.groups_of(
        &facts.groups,
        &Subject {
            model: &facts.model_id,
            hw_id: &facts.hw_id,
            channel,
            region: facts.region.as_deref(),
            tags: &facts.tags,
            version,
        },
    )
}

/// The product terms the entitlement rules judge for a device.
pub(crate) fn product_facts(
    model: &ModelInfo,
    line: &ProductLineInfo,
    facts: &DeviceFacts,
) -> ProductFacts {
    match line.kind {
        ProductKind::Hardware => ProductFacts::Hardware(ModelFacts {
            model_id: model.id.clone(),
            model_name: model.name.clone(),
            eol: model.eol,
        }),
        ProductKind::Software => ProductFacts::Software {
            product_name: line.name.clone(),
            licence: facts.licence.clone(),
        },
    }
}
