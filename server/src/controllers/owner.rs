//! Owner-facing routes, without a staff token: an owner registers a unit
//! with its serial and the verification code printed on it (after-sales
//! terms, section 2: the free registration extension).
//!
//! Nothing here lets a caller learn which serials exist: an unknown serial,
//! a unit without a code on file and a wrong code get the same answer, the
//! code is compared in constant time against a hash, and attempts are rate
//! limited per serial and per client address before anything is read
//! ([`crate::ratelimit::RateLimits::check_registration`]). Whether a unit is
//! registered already is told only to a caller who gave its code.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::controllers::catalogue::devices::{load_warranty_facts, record_registration};
use crate::db;
use crate::domain::Name;
use crate::domain::roles::{Actor, Role};
use crate::domain::verification::VerificationCode;
use crate::error::{AppError, AppResult};
use crate::extract::{JsonBody, Peer};
use crate::provisioning::format_date;
use crate::warranty;

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(register))
}

/// An owner's registration.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RegistrationRequest {
    /// The unit's serial, as on its label.
    pub serial: String,
    /// The verification code printed on the unit (case, spaces and dashes
    /// do not matter).
    pub verification_code: String,
}

/// What the owner is told after registering.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RegistrationView {
    /// The unit.
    pub serial: String,
    /// When it was registered.
    #[serde(with = "time::serde::rfc3339")]
    pub registered_at: OffsetDateTime,
    /// The warranty's state after registering (`in_warranty`, `expired`,
    /// ...).
    pub warranty_state: String,
    /// Its last day, `YYYY-MM-DD`, after every extension.
    pub warranty_ends: String,
    /// The warranty in a sentence.
    pub warranty_summary: String,
}

/// The answer to an unknown serial, a unit without a code on file and a
/// wrong code alike.
fn refused() -> AppError {
    AppError::unprocessable(
        "registration_refused",
        "this serial and verification code do not register a unit; check both against the \
         unit's label, or ask the vendor's service desk to register it for you",
    )
}

/// Registers a unit for its owner, with the serial and the verification
/// code printed on it; no token. Adds the registration extension to a
/// hardware warranty (12 months; a late registration leaves faults before
/// it uncovered). Rate limited per serial and per client address (429
/// `rate_limited_registration` with `Retry-After`). Audited as
/// `device.register` with the actor `owner`.
#[utoipa::path(post, path = "/v1/registrations", tag = "owner",
    request_body = RegistrationRequest,
    responses(
        (status = 200, body = RegistrationView),
        (status = 400, description = "invalid_name, invalid_verification_code, invalid_json", body = crate::error::ErrorBody),
        (status = 409, description = "already_registered", body = crate::error::ErrorBody),
        (status = 422, description = "registration_refused: unknown serial, no code on file or a wrong code (one answer for all three)", body = crate::error::ErrorBody),
        (status = 429, description = "rate_limited_registration", body = crate::error::ErrorBody),
    ))]
pub async fn register(
    State(app): State<AppState>,
    Peer(peer): Peer,
    JsonBody(req): JsonBody<RegistrationRequest>,
) -> AppResult<Json<RegistrationView>> {
    let serial = Name::parse("serial", &req.serial)?;
    let code = VerificationCode::parse(&req.verification_code)?;
    app.rate_limits.check_registration(peer, serial.as_str())?;
    let mut tx = app.db.begin().await?;
    let Some(row) = db::devices::find(&mut tx, serial.as_str()).await? else {
        return Err(refused());
    };
    // A unit without a code on file is compared against a hash no code has,
    // so the answer takes as long as for a wrong code.
    let stored = row.device.verification_hash.as_deref().unwrap_or("-");
    if !code.matches(serial.as_str(), stored) {
        tracing::info!(serial = %app.log_serial(serial.as_str()), "owner registration refused");
        return Err(refused());
    }
    let now = OffsetDateTime::now_utc();
    let actor = Actor {
        token_id: None,
        label: "owner".to_owned(),
        role: Role::Device,
        request_id: None,
    };
    record_registration(&mut tx, &actor, &row, now, "owner").await?;
    let mut row = row;
    row.device.registered_at = Some(now);
    let facts = load_warranty_facts(&mut tx, &row).await?;
    tx.commit().await?;
    app.device_changed(serial.as_str());
    let w = warranty::assess(&facts, now.date());
    Ok(Json(RegistrationView {
        serial: serial.into_string(),
        registered_at: now,
        warranty_state: serde_json::to_value(w.state)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        warranty_ends: format_date(w.ends),
        warranty_summary: w.summary,
    }))
}
