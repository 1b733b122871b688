//! Data-protection requests (admin): export what is held about a unit or
//! an owner, erase a unit, restrict processing, correct a customer
//! contact, and run the retention job now. The work is in
//! [`crate::privacy`]; docs/PRIVACY.md lists what is held and for how long.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::auth::{Admins, Caller};
use crate::controllers::repair::rmas::{Customer, check_customer};
use crate::db;
use crate::domain::{Name, check_text};
use crate::error::{AppError, AppResult};
use crate::extract::{JsonBody, Path, Query};
use crate::privacy::{self, ErasureView, Subject};

/// Longest reason for an erasure, in characters.
pub const MAX_REASON: usize = 500;

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(export))
        .routes(routes!(erase))
        .routes(routes!(restrict))
        .routes(routes!(rectify))
        .routes(routes!(run_retention))
}

/// Whom to export: exactly one of the two.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ExportQuery {
    /// A unit's serial.
    pub serial: Option<String>,
    /// An owner's email, as on their RMAs (without case): every unit of
    /// theirs.
    pub email: Option<String>,
}

/// Everything held about a unit (`?serial=`) or an owner (`?email=`), one
/// JSON document (`format` `firmup-personal-data/1`): per unit its row,
/// tags, groups, licences, contracts, repair pushes, RMAs with their events
/// and files, replaced parts, reports, tokens (without their hashes), the
/// units it replaced or was replaced by, and the audit records about it.
/// Admin only; audited as `privacy.export`.
#[utoipa::path(get, path = "/v1/privacy/export", tag = "privacy", params(ExportQuery),
    responses(
        (status = 200, description = "the export document", body = serde_json::Value),
        (status = 400, description = "invalid_query, invalid_name, invalid_email", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_serial, device_erased, unknown_owner", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn export(
    State(app): State<AppState>,
    principal: Caller<Admins>,
    Query(q): Query<ExportQuery>,
) -> AppResult<Json<serde_json::Value>> {
    let subject = match (q.serial, q.email) {
        (Some(serial), None) => Subject::Serial(Name::parse("serial", &serial)?.into_string()),
        (None, Some(email)) => {
            let email = check_text("invalid_email", "email", &email, 254, false)?;
            if !email.contains('@') {
                return Err(AppError::bad_request(
                    "invalid_email",
                    "email must be an email address such as name@example.com",
                ));
            }
            Subject::Owner(email.to_owned())
        }
        _ => {
            return Err(AppError::bad_request(
                "invalid_query",
                "give exactly one of serial= (a unit) and email= (an owner)",
            ));
        }
    };
    Ok(Json(
        privacy::export(&app, &principal.actor(), &subject).await?,
    ))
}

/// Why a unit is erased.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EraseRequest {
    /// The request it answers (a ticket number, "owner's email of
    /// 2026-11-30"), 1-500 characters; kept with the erasure.
    pub reason: String,
}

/// Erases a unit at its owner's request (admin): the owner's contact and
/// registration and the verification code are deleted, the unit's tokens
/// revoked and its RMA files deleted; wherever history is kept (the unit's
/// row, reports, RMAs, audit records) the serial becomes its pseudonym, a
/// keyed hash, so fleet statistics and the audit trail stay whole. A unit
/// erased before is answered `already_erased` and nothing changes. Audited
/// as `privacy.erase` under the pseudonym.
#[utoipa::path(post, path = "/v1/privacy/devices/{serial}/erase", tag = "privacy",
    params(("serial" = String, Path, description = "the unit's serial")),
    request_body = EraseRequest,
    responses(
        (status = 200, body = ErasureView),
        (status = 400, description = "invalid_name, invalid_reason, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_serial", body = crate::error::ErrorBody),
        (status = 409, description = "rma_open: close or cancel the unit's RMA first", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn erase(
    State(app): State<AppState>,
    principal: Caller<Admins>,
    Path(serial): Path<String>,
    JsonBody(req): JsonBody<EraseRequest>,
) -> AppResult<Json<ErasureView>> {
    let serial = Name::parse("serial", &serial)?;
    let reason = check_text("invalid_reason", "reason", &req.reason, MAX_REASON, false)?;
    Ok(Json(
        privacy::erase(&app, &principal.actor(), serial.as_str(), reason).await?,
    ))
}

/// Restrict processing, or lift the restriction.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RestrictionRequest {
    /// True: nothing beyond what updating needs is recorded about the
    /// unit (no last-seen state, no stored reports); false lifts it.
    pub restricted: bool,
}

/// A unit's restriction.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RestrictionView {
    /// The unit.
    pub serial: String,
    /// Whether processing is restricted.
    pub restricted: bool,
    /// Since when.
    #[serde(with = "time::serde::rfc3339::option")]
    pub restricted_since: Option<OffsetDateTime>,
}

/// Restricts processing for a unit, or lifts it (admin). A restricted unit
/// still checks for, downloads and installs updates, and its repair push
/// still ends when it is done; its checks and reports are not recorded.
/// Audited as `privacy.restrict` / `privacy.unrestrict` when it changes.
#[utoipa::path(put, path = "/v1/privacy/devices/{serial}/restriction", tag = "privacy",
    params(("serial" = String, Path, description = "the unit's serial")),
    request_body = RestrictionRequest,
    responses(
        (status = 200, body = RestrictionView),
        (status = 400, description = "invalid_name, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_serial, device_erased", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn restrict(
    State(app): State<AppState>,
    principal: Caller<Admins>,
    Path(serial): Path<String>,
    JsonBody(req): JsonBody<RestrictionRequest>,
) -> AppResult<Json<RestrictionView>> {
    let serial = Name::parse("serial", &serial)?;
    let since =
        privacy::restrict(&app, &principal.actor(), serial.as_str(), req.restricted).await?;
    Ok(Json(RestrictionView {
        serial: serial.into_string(),
        restricted: since.is_some(),
        restricted_since: since,
    }))
}

/// How many RMAs carry the corrected contact.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RectifiedView {
    /// The unit.
    pub serial: String,
    /// RMAs whose customer contact was corrected.
    pub rmas: u64,
}

/// Corrects the customer's contact on every RMA of a unit (admin), at the
/// owner's request. Audited as `privacy.rectify` with the fields, never
/// their values.
#[utoipa::path(put, path = "/v1/privacy/devices/{serial}/contact", tag = "privacy",
    params(("serial" = String, Path, description = "the unit's serial")),
    request_body = Customer,
    responses(
        (status = 200, body = RectifiedView),
        (status = 400, description = "invalid_name, invalid_customer, invalid_email, invalid_phone, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_serial, device_erased", body = crate::error::ErrorBody),
        (status = 422, description = "no_contact_held: no RMA of the unit holds a contact", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn rectify(
    State(app): State<AppState>,
    principal: Caller<Admins>,
    Path(serial): Path<String>,
    JsonBody(req): JsonBody<Customer>,
) -> AppResult<Json<RectifiedView>> {
    let serial = Name::parse("serial", &serial)?;
    let c = check_customer(&req)?;
    let rmas = privacy::rectify(
        &app,
        &principal.actor(),
        serial.as_str(),
        &db::privacy::Contact {
            name: &c.name,
            email: &c.email,
            phone: c.phone.as_deref(),
        },
    )
    .await?;
    Ok(Json(RectifiedView {
        serial: serial.into_string(),
        rmas,
    }))
}

/// Runs the retention job now with the configured periods (admin); it
/// also runs by itself every hour, once across replicas. Audited as
/// `privacy.retention` with the counts.
#[utoipa::path(post, path = "/v1/privacy/retention", tag = "privacy",
    responses(
        (status = 200, body = db::privacy::Pruned),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn run_retention(
    State(app): State<AppState>,
    principal: Caller<Admins>,
) -> AppResult<Json<db::privacy::Pruned>> {
    let now = OffsetDateTime::now_utc();
    let p = crate::retention::prune(&app.db, now, app.config.retention()).await?;
    let mut tx = app.db.begin().await?;
    db::audit::record(
        &mut tx,
        &principal.actor(),
        "privacy.retention",
        "retention",
        serde_json::to_value(p).unwrap_or_default(),
    )
    .await?;
    tx.commit().await?;
    Ok(Json(p))
}
