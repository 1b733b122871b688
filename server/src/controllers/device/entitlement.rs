//! `GET /v1/devices/{serial}/entitlement`: the reasoning behind what a
//! device is offered, for technicians and admins.
//!
//! Every release of the device's product line and channel signed for its
//! hardware, with the full entitlement decision (code, summary and the
//! explanation with contract ids, licence ids and dates) and whether the
//! update check would offer it now. Device facts are read fresh from the
//! database here (this is not the hot path), so the view shows a contract
//! added a moment ago; the device itself sees it once its cached facts
//! expire or are dropped. This view must never be reachable with a device
//! token: explanations are not for devices.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::{catalogue_for, device_groups, model_and_line, product_facts, unknown_serial};
use crate::app::{App, AppState};
use crate::auth::{Caller, Technicians};
use crate::db;
use crate::domain::Name;
use crate::domain::catalogue::ProductKind;
use crate::domain::rollout::{Admission, RolloutEntry, RolloutState};
use crate::domain::support::SupportWindow;
use crate::domain::window;
use crate::entitlement::Decision;
use crate::error::AppResult;
use crate::extract::{Path, Query};
use crate::selection::{self, Outcome, Reported, Rollouts, Terms};

/// Which channel to explain.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct EntitlementQuery {
    /// Channel (default: the device's registered channel).
    pub channel: Option<String>,
}

/// A full entitlement decision.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DecisionView {
    /// Whether the device may have the release.
    pub entitled: bool,
    /// Stable reason code.
    pub code: &'static str,
    /// The text the device sees.
    pub summary: String,
    /// The full reasoning, with ids and dates (never shown to devices).
    pub explanation: String,
}

impl From<Decision> for DecisionView {
    fn from(d: Decision) -> Self {
        DecisionView {
            entitled: d.entitled,
            code: d.code.as_str(),
            summary: d.summary,
            explanation: d.explanation,
        }
    }
}

/// One release as judged for the device.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReleaseVerdict {
    /// Version.
    pub version: String,
    /// Publication time (RFC 3339).
    #[serde(with = "time::serde::rfc3339")]
    pub published_at: OffsetDateTime,
    /// Minimum running version to install it directly.
    pub requires: Option<String>,
    /// Anti-rollback counter.
    pub security_counter: u64,
    /// Marked free for all.
    pub free_for_all: bool,
    /// Newer than the version the device last reported.
    pub newer: bool,
    /// A candidate for the device: newer, and not refused by the device's
    /// counter.
    pub candidate: bool,
    /// Installable directly from the reported version (`requires`).
    pub reachable: bool,
    /// The update check would offer exactly this release now.
    pub offered: bool,
    /// The entitlement decision, in full.
    pub decision: DecisionView,
    /// The staged rollout deciding who is offered the release, and whether
    /// it offers it to this device now (`null`: no rollout holds it back).
    pub rollout: Option<RolloutVerdict>,
}

/// What a release's rollout decides for one device.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RolloutVerdict {
    /// Rollout id.
    pub id: String,
    /// Its state.
    pub state: RolloutState,
    /// Its current share of devices, in percent.
    pub percent: u8,
    /// The rollout offers the release to this device now.
    pub admitted: bool,
    /// Why, in words.
    pub explanation: String,
}

fn rollout_verdict(r: &RolloutEntry, admission: Admission) -> RolloutVerdict {
    let percent = r.percent();
    let explanation = match admission {
        Admission::Admitted if r.state == RolloutState::Finished => {
            format!(
                "Rollout {} finished: offered to every entitled device.",
                r.id
            )
        }
        Admission::Admitted if r.state != RolloutState::Running => format!(
            "Rollout {} is {}, but a valid repair push overrides it for this device.",
            r.id, r.state
        ),
        Admission::Admitted => format!(
            "Rollout {} is at phase {} of {} ({percent}%), which includes this device.",
            r.id,
            r.phase + 1,
            r.phases.len()
        ),
        Admission::NotYet { joins_at: Some(p) } => format!(
            "Rollout {} is at phase {} of {} ({percent}%); this device joins at phase {} ({}%).",
            r.id,
            r.phase + 1,
            r.phases.len(),
            p + 1,
            r.phases[p]
        ),
        Admission::NotYet { joins_at: None } => format!(
            "Rollout {} ends at {}% and does not include this device.",
            r.id,
            r.phases.last().copied().unwrap_or(100)
        ),
        Admission::OutsideGroup => format!(
            "Rollout {} is limited to group {}, which this device is not in.",
            r.id,
            r.group.as_deref().unwrap_or("-")
        ),
        Admission::Paused => format!("Rollout {} is paused: no new offers.", r.id),
        Admission::Aborted => format!(
            "Rollout {} was aborted: the release is offered to no device not already running it.",
            r.id
        ),
    };
    RolloutVerdict {
        id: r.id.clone(),
        state: r.state,
        percent,
        admitted: admission == Admission::Admitted,
        explanation,
    }
}

/// The entitlement reasoning for one device.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct EntitlementView {
    /// Serial.
    pub serial: String,
    /// Model id.
    pub model_id: String,
    /// Model name.
    pub model_name: String,
    /// Product line.
    pub product_line: String,
    /// Hardware or software.
    pub kind: ProductKind,
    /// The model's EOL date (`YYYY-MM-DD`), if discontinued.
    pub eol: Option<String>,
    /// Registered hardware id.
    pub hw_id: String,
    /// Channel explained.
    pub channel: String,
    /// Version the device last reported (`null`: never checked in; judged
    /// as 0.0.0).
    pub current_version: Option<String>,
    /// Counter the device last reported.
    pub security_counter: Option<i64>,
    /// What the check would answer now: `update_available`, `up_to_date`
    /// or `not_entitled`.
    pub status: &'static str,
    /// The version it would offer (or explain as not entitled).
    pub version: Option<String>,
    /// The offer is a stepping stone.
    pub stepping_stone: bool,
    /// The stepping stone's target.
    pub target_version: Option<String>,
    /// Set when the offer waits for a maintenance window of the device's
    /// groups: when the next one opens (the check then answers
    /// `up_to_date`).
    #[serde(with = "time::serde::rfc3339::option")]
    pub deferred_until: Option<OffsetDateTime>,
    /// Every release of the line and channel signed for the device's
    /// hardware (yanked ones are never offered and not listed), newest
    /// first.
    pub releases: Vec<ReleaseVerdict>,
}

/// Explains what a device may have and why (technician, admin).
#[utoipa::path(get, path = "/v1/devices/{serial}/entitlement", tag = "device",
    params(("serial" = String, Path, description = "device serial"), EntitlementQuery),
    responses(
        (status = 200, body = EntitlementView),
        (status = 400, description = "invalid_name", body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, description = "unknown_serial", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn entitlement(
    State(app): State<AppState>,
    _principal: Caller<Technicians>,
    Path(serial): Path<String>,
    Query(q): Query<EntitlementQuery>,
) -> AppResult<Json<EntitlementView>> {
    let serial = Name::parse("serial", &serial)?;
    let channel = q
        .channel
        .as_deref()
        .map(|c| Name::parse("channel", c))
        .transpose()?
        .map(Name::into_string);
    Ok(Json(explain(&app, serial.as_str(), channel).await?))
}

/// The entitlement reasoning for the device `serial` on `channel` (default:
/// its own), as [`entitlement`] answers it and the device view
/// (`GET /v1/devices/{serial}`) embeds it; 404 `unknown_serial`.
pub async fn explain(
    app: &App,
    serial: &str,
    channel: Option<String>,
) -> AppResult<EntitlementView> {
    let facts = db::devices::load_device_facts(&app.db, serial)
        .await?
        .ok_or_else(|| unknown_serial(serial))?;
    let state = db::reports::reported_state(&app.db, serial)
        .await?
        .unwrap_or_default();
    let channel = channel.unwrap_or_else(|| facts.channel.clone());
    let catalogue = catalogue_for(app, &facts.model_id).await?;
    let (model, line) = model_and_line(&catalogue, &facts.model_id)?;
    let product = product_facts(model, line, &facts);
    let current = state
        .current_version
        .as_deref()
        .and_then(|v| v.parse().ok())
        .unwrap_or(semver::Version::new(0, 0, 0));
    let reported = Reported {
        hw_id: &facts.hw_id,
        current_version: &current,
        security_counter: state
            .security_counter
            .and_then(|c| u64::try_from(c).ok())
            .unwrap_or(0),
        manifest_version: None,
    };
    let reported_version = state.current_version.as_ref().and(Some(&current));
    let groups = device_groups(&catalogue, &facts, &channel, reported_version);
    let support = SupportWindow::new(facts.on_market, model.support.clone());
    let terms = Terms {
        now: OffsetDateTime::now_utc(),
        product: &product,
        contracts: &facts.contracts,
        grants: &facts.grants,
        rollouts: Some(Rollouts {
            by_release: catalogue.rollouts(),
            serial: &facts.serial,
            groups: &groups,
        }),
        support: Some((&support, &model.name)),
    };
    let releases = catalogue.releases(&line.id, &channel);
    let outcome = selection::select(releases, &reported, &terms);
    // As the check does: an offer outside every window of the device's
    // groups waits for the next opening.
    let deferred_until = match outcome {
        Outcome::Offer { .. } if !terms.repair_grant_valid() => {
            window::deferred_until(groups.iter().filter_map(|g| g.window.as_ref()), terms.now)
        }
        _ => None,
    };
    let (status, version, stepping_stone, target_version, offered) = match &outcome {
        Outcome::Offer {
            release,
            stepping_stone,
            target_version,
            ..
        } => (
            "update_available",
            Some(release.version.to_string()),
            *stepping_stone,
            target_version.as_ref().map(ToString::to_string),
            Some(release.id),
        ),
        Outcome::UpToDate => ("up_to_date", None, false, None, None),
        Outcome::NotEntitled { version, .. } => {
            ("not_entitled", Some(version.to_string()), false, None, None)
        }
    };
    let verdicts = releases
        .iter()
        .filter(|r| r.hw_compat.iter().any(|h| h == &facts.hw_id))
        .map(|r| ReleaseVerdict {
            version: r.version.to_string(),
            published_at: r.published_at,
            requires: r.requires.as_ref().map(ToString::to_string),
            security_counter: r.security_counter,
            free_for_all: r.free_for_all,
            newer: r.version.cmp_precedence(&current).is_gt(),
            candidate: selection::is_candidate(r, &reported),
            reachable: selection::is_reachable(r, &current),
            offered: offered == Some(r.id),
            decision: terms.decide(r).into(),
            rollout: terms
                .rollout_of(r)
                .map(|ro| rollout_verdict(ro, terms.admission(r))),
        })
        .collect();
    Ok(EntitlementView {
        serial: facts.serial.clone(),
        model_id: model.id.clone(),
        model_name: model.name.clone(),
        product_line: line.id.clone(),
        kind: line.kind,
        eol: model.eol.map(|d| d.to_string()),
        hw_id: facts.hw_id.clone(),
        channel,
        current_version: state.current_version,
        security_counter: state.security_counter,
        status,
        version,
        stepping_stone,
        target_version,
        deferred_until,
        releases: verdicts,
    })
}
