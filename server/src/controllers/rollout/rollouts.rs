//! `/v1/rollouts`: start a staged rollout of a release, look at it, and
//! advance, pause, resume, abort or finish it.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::app::{App, AppState};
use crate::auth::{Caller, ReleaseEngineers, Staff};
use crate::controllers::release::audit_target;
use crate::db::rollouts::{EventRow, RolloutRow};
use crate::db::{self};
use crate::domain::rollout::{self, RolloutState};
use crate::domain::{Name, check_text, parse_version};
use crate::error::{AppError, AppResult};
use crate::extract::{JsonBody, Path, Query};
use crate::rollouts::{self as service, Action, RolloutSpec, RolloutStatus};

/// Longest reason given for a pause or an abort, in characters.
pub const MAX_REASON_CHARS: usize = 500;

/// A rollout.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RolloutView {
    /// Id, `ro_<32 hex>`.
    pub id: String,
    /// The release's product line.
    pub product_line: String,
    /// The release's channel.
    pub channel: String,
    /// The release's version.
    pub version: String,
    /// Only devices of this group take part.
    pub group: Option<String>,
    /// Shares of devices, in percent, strictly increasing.
    pub phases: Vec<u8>,
    /// Index of the current phase (0 is the first).
    pub phase: usize,
    /// The current share of devices offered the release, in percent (100
    /// once finished).
    pub percent: u8,
    /// `running`, `paused`, `aborted` or `finished`.
    pub state: RolloutState,
    /// Why it is paused or was aborted.
    pub paused_reason: Option<String>,
    /// Seconds a phase soaks before advancing by itself (`null`: advanced
    /// by hand only).
    pub soak_secs: Option<u64>,
    /// A failure rate above this pauses the rollout, in percent.
    pub failure_threshold_percent: f64,
    /// Installs attempted in a phase before its failure rate counts.
    pub min_sample: u32,
    /// When the current phase began.
    #[serde(with = "time::serde::rfc3339")]
    pub phase_started_at: OffsetDateTime,
    /// When it advances by itself, if it will.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_advance_at: Option<OffsetDateTime>,
    /// Who started it.
    pub created_by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Last change.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
    /// Counts per phase, failure reasons and installs per hour (in the
    /// answers about one rollout; not in lists).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<RolloutStatus>,
    /// What happened, oldest first (in the answers about one rollout).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub events: Option<Vec<RolloutEvent>>,
}

/// An event in a rollout's history.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RolloutEvent {
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// A token's label, or `system` for the server's own changes.
    pub actor: String,
    /// `started`, `advanced`, `paused`, `resumed`, `aborted`, `finished`,
    /// `auto_paused` or `auto_advanced`.
    pub kind: String,
    /// What happened, in words.
    pub detail: String,
}

impl From<EventRow> for RolloutEvent {
    fn from(e: EventRow) -> Self {
        RolloutEvent {
            at: e.at,
            actor: e.actor,
            kind: e.kind,
            detail: e.detail,
        }
    }
}

/// The view of a stored rollout, without status and events.
pub fn view(r: RolloutRow) -> AppResult<RolloutView> {
    let entry = crate::snapshot::rollout_entry(r.clone())
        .map_err(|e| AppError::Internal(anyhow::anyhow!("rollout {}: {e}", r.id)))?;
    let soak_secs = r.soak_secs.and_then(|s| u64::try_from(s).ok());
    Ok(RolloutView {
        percent: entry.percent(),
        next_advance_at: rollout::next_advance_at(entry.state, r.phase_started_at, soak_secs),
        id: r.id,
        product_line: r.product_line,
        channel: r.channel,
        version: r.version,
        group: r.group_name,
        phases: entry.phases,
        phase: entry.phase,
        state: entry.state,
        paused_reason: r.paused_reason,
        soak_secs,
        failure_threshold_percent: r.failure_threshold_percent,
        min_sample: u32::try_from(r.min_sample).unwrap_or(0),
        phase_started_at: r.phase_started_at,
        created_by: r.created_by,
        created_at: r.created_at,
        updated_at: r.updated_at,
        status: None,
        events: None,
    })
}

/// The full view of a rollout: with its status and events.
pub async fn full_view(app: &App, r: RolloutRow) -> AppResult<RolloutView> {
    let status = service::status(&app.db, &r).await?;
    let events = db::rollouts::events(&app.db, &r.id).await?;
    let mut v = view(r)?;
    v.status = Some(status);
    v.events = Some(events.into_iter().map(Into::into).collect());
    Ok(v)
}

/// A rollout to start.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRequest {
    /// The release's product line.
    pub product_line: String,
    /// The release's version.
    pub version: String,
    /// The release's channel (default `stable`).
    pub channel: Option<String>,
    /// Shares of devices in percent, strictly increasing, 1-20 of them,
    /// e.g. `[1, 10, 50, 100]`.
    pub phases: Vec<u32>,
    /// Only devices of this group take part.
    pub group: Option<String>,
    /// Seconds a phase soaks before advancing by itself while under the
    /// failure threshold (default: advanced by hand only).
    #[serde(default, deserialize_with = "crate::domain::optional_whole_number")]
    pub soak_secs: Option<u64>,
    /// A failure rate above this pauses the rollout, 0-100 (default 5).
    pub failure_threshold_percent: Option<f64>,
    /// Installs attempted in a phase before its failure rate counts
    /// (default 20).
    #[serde(default, deserialize_with = "crate::domain::optional_whole_number")]
    pub min_sample: Option<u32>,
}

/// Starts a staged rollout of a published release (release engineer,
/// admin): its first phase is offered the release at once; the rest wait
/// for an advance (by hand, or after the soak time). A release being rolled
/// out is offered only to the devices of the phases reached so far; an
/// older release they are entitled to is offered to the others meanwhile.
/// To start one with the publish, so that the release is never offered to
/// everyone first, publish with `?rollout=1,10,50,100`.
#[utoipa::path(post, path = "/v1/rollouts", tag = "rollouts", request_body = StartRequest,
    responses(
        (status = 201, body = RolloutView),
        (status = 400, description = "invalid_phases, invalid_threshold, invalid_min_sample, invalid_soak, invalid_group_name, invalid_name, invalid_version, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 409, description = "rollout_exists", body = crate::error::ErrorBody),
        (status = 422, description = "unknown_release, unknown_group", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn start(
    State(app): State<AppState>,
    principal: Caller<ReleaseEngineers>,
    JsonBody(req): JsonBody<StartRequest>,
) -> AppResult<(StatusCode, Json<RolloutView>)> {
    let line = Name::parse("product_line", &req.product_line)?;
    let channel = Name::parse("channel", req.channel.as_deref().unwrap_or("stable"))?;
    let version = parse_version("version", &req.version)?;
    let spec = RolloutSpec::parse(
        rollout::parse_phases(&req.phases)?,
        req.group.as_deref(),
        req.soak_secs,
        req.failure_threshold_percent,
        req.min_sample,
    )?;
    let now = OffsetDateTime::now_utc();
    let mut tx = app.db.begin().await?;
    let target = audit_target(line.as_str(), channel.as_str(), &version);
    let release = db::releases::find(
        &mut tx,
        line.as_str(),
        channel.as_str(),
        &version.to_string(),
    )
    .await?
    .ok_or_else(|| {
        AppError::unprocessable(
            "unknown_release",
            format!(
                "no release {version} on channel {channel} of product line {line}; publish it \
                 first (GET /v1/product-lines/{line}/releases lists them)"
            ),
        )
    })?;
    if release.yanked_at.is_some() {
        return Err(AppError::unprocessable(
            "unknown_release",
            format!("release {target} is yanked; a rollout would offer it to nobody"),
        ));
    }
    let id = service::start(&mut tx, &principal.actor(), release.id, &target, &spec, now).await?;
    tx.commit().await?;
    app.catalogue_changed();
    tracing::info!(rollout = %id, release = %target, "rollout started");
    let row = db::rollouts::find(&app.db, &id)
        .await?
        .ok_or_else(|| service::unknown_rollout(&id))?;
    Ok((StatusCode::CREATED, Json(full_view(&app, row).await?)))
}

/// Which rollouts to list.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct ListQuery {
    /// Only these states, comma-separated (`running,paused`); `active`
    /// stands for both.
    pub state: Option<String>,
    /// Only this product line.
    pub product_line: Option<String>,
    /// At most this many (default 100, at most 1000).
    pub limit: Option<i64>,
}

/// Rollouts, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RolloutList {
    /// The rollouts (without status and events).
    pub rollouts: Vec<RolloutView>,
}

/// Lists rollouts, newest first (admin, release engineer, technician).
#[utoipa::path(get, path = "/v1/rollouts", tag = "rollouts", params(ListQuery),
    responses(
        (status = 200, body = RolloutList),
        (status = 400, description = "invalid_state, invalid_name, invalid_query", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    _principal: Caller<Staff>,
    Query(q): Query<ListQuery>,
) -> AppResult<Json<RolloutList>> {
    let mut states: Vec<&str> = Vec::new();
    for s in q
        .state
        .as_deref()
        .unwrap_or_default()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
    {
        if s == "active" {
            states.extend(["running", "paused"]);
            continue;
        }
        let state = RolloutState::parse(s).ok_or_else(|| {
            AppError::bad_request(
                "invalid_state",
                format!(
                    "{s:?} is not a rollout state: running, paused, aborted, finished or active"
                ),
            )
        })?;
        states.push(state.as_str());
    }
    let line = q
        .product_line
        .as_deref()
        .map(|l| Name::parse("product_line", l))
        .transpose()?;
    let limit = q.limit.unwrap_or(100).clamp(1, 1000);
    let rows = db::rollouts::list(&app.db, &states, line.as_ref().map(Name::as_str), limit).await?;
    Ok(Json(RolloutList {
        rollouts: rows.into_iter().map(view).collect::<AppResult<_>>()?,
    }))
}

/// Checks a rollout id from the path: 400 `invalid_name` unless it is a
/// name; a name of another shape than `ro_` and 32 hex digits names no
/// rollout: 404 `unknown_rollout`.
fn parse_id(id: &str) -> AppResult<&str> {
    Name::parse("rollout id", id)?;
    let ok = id
        .strip_prefix("ro_")
        .is_some_and(|h| h.len() == 32 && h.bytes().all(|b| b.is_ascii_hexdigit()));
    if ok {
        Ok(id)
    } else {
        Err(service::unknown_rollout(id))
    }
}

/// One rollout with its status per phase, failure reasons, installs per
/// hour and events (admin, release engineer, technician).
#[utoipa::path(get, path = "/v1/rollouts/{id}", tag = "rollouts",
    params(("id" = String, Path, description = "rollout id, ro_...")),
    responses(
        (status = 200, body = RolloutView),
        (status = 400, description = "invalid_name", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_rollout", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn get(
    State(app): State<AppState>,
    _principal: Caller<Staff>,
    Path(id): Path<String>,
) -> AppResult<Json<RolloutView>> {
    let id = parse_id(&id)?;
    let row = db::rollouts::find(&app.db, id)
        .await?
        .ok_or_else(|| service::unknown_rollout(id))?;
    Ok(Json(full_view(&app, row).await?))
}

/// Why a rollout is paused or aborted.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReasonRequest {
    /// A reason for the record (at most 500 characters).
    pub reason: Option<String>,
}

async fn apply(
    app: &App,
    principal: &crate::domain::roles::Principal,
    id: &str,
    action: Action,
) -> AppResult<Json<RolloutView>> {
    let id = parse_id(id)?;
    let row = service::act(&app.db, &principal.actor(), id, action).await?;
    app.catalogue_changed();
    Ok(Json(full_view(app, row).await?))
}

fn reason(req: ReasonRequest) -> AppResult<Option<String>> {
    req.reason
        .as_deref()
        .map(|r| {
            check_text("invalid_reason", "reason", r, MAX_REASON_CHARS, false).map(str::to_owned)
        })
        .transpose()
}

/// Advances a running rollout to its next phase, or finishes it after the
/// last (release engineer, admin).
#[utoipa::path(post, path = "/v1/rollouts/{id}/advance", tag = "rollouts",
    params(("id" = String, Path, description = "rollout id")),
    responses(
        (status = 200, body = RolloutView),
        (status = 400, description = "invalid_name", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_rollout", body = crate::error::ErrorBody),
        (status = 409, description = "rollout_finished, rollout_paused, rollout_changed", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn advance(
    State(app): State<AppState>,
    principal: Caller<ReleaseEngineers>,
    Path(id): Path<String>,
) -> AppResult<Json<RolloutView>> {
    apply(&app, &principal, &id, Action::Advance).await
}

/// Pauses a running rollout: no device not yet offered the release is
/// offered it until it resumes (release engineer, admin). The body may be
/// `{}` or carry a reason.
#[utoipa::path(post, path = "/v1/rollouts/{id}/pause", tag = "rollouts",
    params(("id" = String, Path, description = "rollout id")),
    request_body = ReasonRequest,
    responses(
        (status = 200, body = RolloutView),
        (status = 400, description = "invalid_reason, invalid_name, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_rollout", body = crate::error::ErrorBody),
        (status = 409, description = "rollout_finished, rollout_paused, rollout_changed", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn pause(
    State(app): State<AppState>,
    principal: Caller<ReleaseEngineers>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ReasonRequest>,
) -> AppResult<Json<RolloutView>> {
    apply(&app, &principal, &id, Action::Pause(reason(req)?)).await
}

/// Resumes a paused rollout at its current phase (release engineer,
/// admin). The phase's clock starts again: its soak time, and the installs
/// its failure rate counts (the failures before stay in the status).
#[utoipa::path(post, path = "/v1/rollouts/{id}/resume", tag = "rollouts",
    params(("id" = String, Path, description = "rollout id")),
    responses(
        (status = 200, body = RolloutView),
        (status = 400, description = "invalid_name", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_rollout", body = crate::error::ErrorBody),
        (status = 409, description = "rollout_finished, rollout_not_paused, rollout_changed", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn resume(
    State(app): State<AppState>,
    principal: Caller<ReleaseEngineers>,
    Path(id): Path<String>,
) -> AppResult<Json<RolloutView>> {
    apply(&app, &principal, &id, Action::Resume).await
}

/// Aborts a rollout for good: no new offers of the release; devices that
/// installed it keep it (release engineer, admin). The body may be `{}` or
/// carry a reason.
#[utoipa::path(post, path = "/v1/rollouts/{id}/abort", tag = "rollouts",
    params(("id" = String, Path, description = "rollout id")),
    request_body = ReasonRequest,
    responses(
        (status = 200, body = RolloutView),
        (status = 400, description = "invalid_reason, invalid_name, invalid_json", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_rollout", body = crate::error::ErrorBody),
        (status = 409, description = "rollout_finished, rollout_changed", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn abort(
    State(app): State<AppState>,
    principal: Caller<ReleaseEngineers>,
    Path(id): Path<String>,
    JsonBody(req): JsonBody<ReasonRequest>,
) -> AppResult<Json<RolloutView>> {
    apply(&app, &principal, &id, Action::Abort(reason(req)?)).await
}

/// Finishes a running or paused rollout: the release is offered to every
/// entitled device (release engineer, admin).
#[utoipa::path(post, path = "/v1/rollouts/{id}/finish", tag = "rollouts",
    params(("id" = String, Path, description = "rollout id")),
    responses(
        (status = 200, body = RolloutView),
        (status = 400, description = "invalid_name", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_rollout", body = crate::error::ErrorBody),
        (status = 409, description = "rollout_finished, rollout_changed", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn finish(
    State(app): State<AppState>,
    principal: Caller<ReleaseEngineers>,
    Path(id): Path<String>,
) -> AppResult<Json<RolloutView>> {
    apply(&app, &principal, &id, Action::Finish).await
}
