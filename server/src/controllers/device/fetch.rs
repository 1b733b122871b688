//! `POST /v1/device/fetch`: a device asks for one release by version,
//! yanked or not: to reinstall a known-good version, or to fetch a
//! security fix that was withdrawn from offers but must stay available for
//! as long as its retention runs (docs/CRA.md, duty 4).
//!
//! The same rules as an offer apply, except that nothing here chooses:
//! the release must be signed for the device's hardware and the device
//! must be entitled to it (a security fix inside the unit's support is).
//! Rollouts and maintenance windows do not hold it back: the device asked
//! for it. Anti-rollback and every other check stay with the device, which
//! verifies the signed manifest before it installs anything.
//!
//! Not the hot path: it reads the release from the database (the snapshot
//! leaves yanked releases out), and nothing of it is recorded as the
//! device's last-seen state.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;

use super::check::{UpdateOffer, grant_expiry, update_offer};
use super::{cached_facts, catalogue_for, model_and_line, product_facts, require_hw_id};
use crate::app::AppState;
use crate::auth::{Caller, Devices};
use crate::controllers::trust::raw_envelopes;
use crate::domain::support::SupportWindow;
use crate::domain::{Name, parse_version};
use crate::error::{AppError, AppResult};
use crate::extract::JsonBody;
use crate::selection::Terms;

/// Which release a device asks for.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct FetchRequest {
    /// The device's serial; must be the one its token is bound to.
    pub serial: String,
    /// The hardware id the device reads from itself; must match the
    /// registered one.
    pub hw_id: String,
    /// The version it wants (semver).
    pub version: String,
    /// The channel it was published on (default: the registered channel).
    pub channel: Option<String>,
    /// The newest root version it trusts; newer roots come back in
    /// `root_chain`.
    #[serde(deserialize_with = "crate::domain::whole_number")]
    pub root_version: u64,
}

/// The release asked for.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct FetchResponse {
    /// Root envelopes newer than the device's `root_version`, oldest first,
    /// each exactly as signed; walk them before verifying the manifest.
    #[schema(value_type = Vec<Object>)]
    pub root_chain: Vec<Box<RawValue>>,
    /// The release with its signed envelope and download URLs, as a check
    /// offers it.
    pub update: UpdateOffer,
    /// Whether it is withdrawn from offers (still downloadable here).
    pub yanked: bool,
}

/// Fetches one release by version, yanked or not (device token bound to
/// `serial`).
#[utoipa::path(post, path = "/v1/device/fetch", tag = "device", request_body = FetchRequest,
    responses(
        (status = 200, body = FetchResponse),
        (status = 400, description = "invalid_version, invalid_name", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role, token_serial_mismatch, not_entitled", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_serial, unknown_release", body = crate::error::ErrorBody),
        (status = 409, description = "hw_id_mismatch, hw_incompatible", body = crate::error::ErrorBody),
        (status = 429, description = "rate_limited_token, rate_limited_address (Retry-After)", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn fetch(
    State(app): State<AppState>,
    principal: Caller<Devices>,
    JsonBody(req): JsonBody<FetchRequest>,
) -> AppResult<Json<FetchResponse>> {
    principal.require_device(&req.serial)?;
    Name::parse("serial", &req.serial)?;
    let hw_id = Name::parse("hw_id", &req.hw_id)?;
    let version = parse_version("version", &req.version)?;
    let channel = req
        .channel
        .as_deref()
        .map(|c| Name::parse("channel", c))
        .transpose()?;
    let facts = cached_facts(&app, &req.serial).await?;
    require_hw_id(&facts, &hw_id)?;
    let channel = channel.map_or_else(|| facts.channel.clone(), Name::into_string);
    let catalogue = catalogue_for(&app, &facts.model_id).await?;
    let (model, line) = model_and_line(&catalogue, &facts.model_id)?;

    let not_found = || {
        AppError::not_found(
            "unknown_release",
            format!(
                "no release {version} on channel {channel} of product line {}",
                line.id
            ),
        )
    };
    let (row, images, envelope) =
        crate::db::snapshot::load_release(&app.db, &line.id, &channel, &version.to_string())
            .await?
            .ok_or_else(not_found)?;
    let (release, yanked_at) = crate::snapshot::release_entry(row, images, &envelope)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("stored release: {e}")))?;
    if !release.hw_compat.iter().any(|h| *h == facts.hw_id) {
        return Err(AppError::conflict(
            "hw_incompatible",
            format!(
                "release {version} is not signed for hardware {:?}; it fits {}",
                facts.hw_id,
                release.hw_compat.join(", ")
            ),
        ));
    }

    let now = OffsetDateTime::now_utc();
    let product = product_facts(model, line, &facts);
    let support = SupportWindow::new(facts.on_market, model.support.clone());
    let terms = Terms {
        now,
        product: &product,
        contracts: &facts.contracts,
        grants: &facts.grants,
        rollouts: None,
        support: Some((&support, &model.name)),
    };
    let decision = terms.decide(&release);
    if !decision.entitled {
        return Err(AppError::forbidden(
            "not_entitled",
            format!(
                "this device may not have release {version} ({}): {}",
                decision.code.as_str(),
                decision.summary
            ),
        ));
    }
    let update = update_offer(
        &app,
        &release,
        &decision,
        &facts.serial,
        grant_expiry(&app.config, now),
    );
    Ok(Json(FetchResponse {
        root_chain: raw_envelopes(app.trust().newer_than(req.root_version))?,
        update,
        yanked: yanked_at.is_some(),
    }))
}
