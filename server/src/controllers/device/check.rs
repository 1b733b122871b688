//! `POST /v1/device/check`: a device asks whether there is something to
//! install.
//!
//! The hot path. With warm caches it reads no database row: the token comes
//! from the token cache, the device facts from `Caches::device_facts`, the
//! catalogue from the in-memory snapshot, the root chain from the trust
//! state, and last-seen is queued for a batched write. It must stay that
//! way: no query, no write and no lock held across an await here.
//!
//! Rollouts and maintenance windows are judged here from the snapshot too:
//! membership of a rollout is a hash of the serial, and the device's groups
//! come from its cached facts (static ones) and the snapshot's filters
//! (dynamic ones).
//!
//! The answer carries the signed manifest and root envelopes byte for byte
//! (devices verify them and trust nothing else this server says), download
//! URLs with short-lived grants, and the entitlement code and summary,
//! never the explanation.

use axum::Json;
use axum::extract::State;
use rand::Rng as _;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use time::OffsetDateTime;

use super::{
    cached_facts, catalogue_for, device_groups, model_and_line, product_facts, require_hw_id,
};
use crate::app::{App, AppState};
use crate::auth::{Caller, Devices};
use crate::config::Config;
use crate::controllers::trust::raw_envelopes;
use crate::domain::catalogue::{ReleaseEntry, SharedRaw};
use crate::domain::seen::Seen;
use crate::domain::support::SupportWindow;
use crate::domain::window;
use crate::domain::{Name, parse_version};
use crate::entitlement::Decision;
use crate::error::AppResult;
use crate::extract::JsonBody;
use crate::selection::{self, Outcome, Reported, Rollouts, Terms};

/// What a device reports when it checks.
///
/// Unknown fields are ignored rather than refused: devices in the field run
/// firmware of many ages, and a newer one may send more.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
pub struct CheckRequest {
    /// The device's serial; must be the one its token is bound to.
    pub serial: String,
    /// The hardware id the device reads from itself; must match the
    /// registered one.
    pub hw_id: String,
    /// The version it runs (semver).
    pub current_version: String,
    /// Its committed anti-rollback counter.
    #[serde(deserialize_with = "crate::domain::whole_number")]
    pub security_counter: u64,
    /// The channel it follows (default: the registered channel).
    pub channel: Option<String>,
    /// The newest root version it trusts; newer roots come back in
    /// `root_chain`.
    #[serde(deserialize_with = "crate::domain::whole_number")]
    pub root_version: u64,
    /// The highest manifest version it has accepted, if it tracks one.
    #[serde(default, deserialize_with = "crate::domain::optional_whole_number")]
    pub manifest_version: Option<u64>,
}

/// The fields of a [`CheckRequest`] parsed ("parse, don't validate").
#[derive(Debug)]
pub struct ParsedCheck {
    /// The version the device runs.
    pub current: semver::Version,
    /// Its hardware id.
    pub hw_id: Name,
    /// The channel it asks for, if any.
    pub channel: Option<Name>,
}

impl CheckRequest {
    /// Parses the fields a check decides on; 400 on the first bad one.
    pub fn parse(&self) -> AppResult<ParsedCheck> {
        Name::parse("serial", &self.serial)?;
        Ok(ParsedCheck {
            current: parse_version("current_version", &self.current_version)?,
            hw_id: Name::parse("hw_id", &self.hw_id)?,
            channel: self
                .channel
                .as_deref()
                .map(|c| Name::parse("channel", c))
                .transpose()?,
        })
    }
}

/// The kind of answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// `update` says what to install.
    UpdateAvailable,
    /// Nothing newer for this device.
    UpToDate,
    /// Newer releases exist but the device may not have them; `entitlement`
    /// says why.
    NotEntitled,
}

/// The part of an entitlement decision a device may see.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct DeviceEntitlement {
    /// Stable reason code, e.g. `published_before_eol`, `eol_no_contract`.
    pub code: &'static str,
    /// Short text safe to show on the device.
    pub summary: String,
}

impl From<&Decision> for DeviceEntitlement {
    fn from(d: &Decision) -> Self {
        DeviceEntitlement {
            code: d.code.as_str(),
            summary: d.summary.clone(),
        }
    }
}

/// One image to download.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImageDownload {
    /// Image name, as signed.
    pub name: String,
    /// Target slot or component, as signed.
    pub target: String,
    /// Signed length in bytes.
    pub length: u64,
    /// Signed sha256 (hex).
    pub sha256: String,
    /// Download path with a grant valid for `grant_ttl_secs`; supports
    /// `Range` for resuming.
    pub url: String,
}

/// The release to install.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct UpdateOffer {
    /// Version to install now.
    pub version: String,
    /// Channel it was published on.
    pub channel: String,
    /// This release is an intermediate step towards `target_version`, which
    /// cannot be installed directly from the running version.
    pub stepping_stone: bool,
    /// The release the steps lead to (stepping stones only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
    /// The signed manifest envelope, exactly as the release engineers signed
    /// it; verify it with the trust core before using anything else here.
    #[schema(value_type = Object)]
    pub manifest: SharedRaw,
    /// Images with download URLs.
    pub images: Vec<ImageDownload>,
    /// Why the device may have it.
    pub entitlement: DeviceEntitlement,
}

/// The answer to a check.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct CheckResponse {
    /// The kind of answer.
    pub status: CheckStatus,
    /// Seconds to wait before the next check (randomised per answer so a
    /// fleet does not poll in lockstep).
    pub poll_after_secs: u64,
    /// Root envelopes newer than the device's `root_version`, oldest first,
    /// each exactly as signed; walk them before verifying the manifest.
    #[schema(value_type = Vec<Object>)]
    pub root_chain: Vec<Box<RawValue>>,
    /// Set when `status` is `update_available`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub update: Option<UpdateOffer>,
    /// Set when `status` is `not_entitled`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entitlement: Option<DeviceEntitlement>,
    /// Set when an update waits for the maintenance window of the device's
    /// group (`status` is then `up_to_date`): when the window opens (RFC
    /// 3339); `poll_after_secs` is aimed at it.
    #[serde(
        skip_serializing_if = "Option::is_none",
        with = "time::serde::rfc3339::option"
    )]
    pub deferred_until: Option<OffsetDateTime>,
    /// When this unit's security support ends, and a warning when the end
    /// is near (within `support_warning_days`) or past.
    pub security_support: SecuritySupport,
}

/// The unit's security support, as the device is told it.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct SecuritySupport {
    /// The last day (UTC, `YYYY-MM-DD`) of security updates for this unit.
    pub ends: String,
    /// Set within `support_warning_days` of the end, or after it: a
    /// sentence to show the owner.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

/// Asks for an update (device token bound to `serial`). Always 200 for a
/// normal answer; `status` says which.
#[utoipa::path(post, path = "/v1/device/check", tag = "device", request_body = CheckRequest,
    responses(
        (status = 200, body = CheckResponse),
        (status = 400, description = "invalid_version, invalid_name", body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role, token_serial_mismatch", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_serial", body = crate::error::ErrorBody),
        (status = 409, description = "hw_id_mismatch", body = crate::error::ErrorBody),
        (status = 429, description = "rate_limited_token, rate_limited_address (Retry-After)", body = crate::error::ErrorBody),
        (status = 503, description = "unavailable, request_timeout (Retry-After)", body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn check(
    State(app): State<AppState>,
    principal: Caller<Devices>,
    JsonBody(req): JsonBody<CheckRequest>,
) -> AppResult<Json<CheckResponse>> {
    principal.require_device(&req.serial)?;
    let ParsedCheck {
        current,
        hw_id,
        channel,
    } = req.parse()?;
    let facts = cached_facts(&app, &req.serial).await?;
    require_hw_id(&facts, &hw_id)?;
    let channel = channel.map_or_else(|| facts.channel.clone(), Name::into_string);
    let catalogue = catalogue_for(&app, &facts.model_id).await?;
    let (model, line) = model_and_line(&catalogue, &facts.model_id)?;
    let product = product_facts(model, line, &facts);
    let now = OffsetDateTime::now_utc();
    let groups = device_groups(&catalogue, &facts, &channel, Some(&current));
    let support = SupportWindow::new(facts.on_market, model.support.clone());
    let terms = Terms {
        now,
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
    let mut outcome = selection::select(
        catalogue.releases(&line.id, &channel),
        &Reported {
            hw_id: &facts.hw_id,
            current_version: &current,
            security_counter: req.security_counter,
            manifest_version: req.manifest_version,
        },
        &terms,
    );
    // Outside every maintenance window of its groups, an offer waits for
    // the next one; a repair push does not wait (the unit is on the bench).
    let deferred_until = match outcome {
        Outcome::Offer { .. } if !terms.repair_grant_valid() => {
            window::deferred_until(groups.iter().filter_map(|g| g.window.as_ref()), now)
        }
        _ => None,
    };
    if deferred_until.is_some() {
        outcome = Outcome::UpToDate;
    }
    let offered_release_id = match &outcome {
        Outcome::Offer { release, .. } => Some(release.id),
        _ => None,
    };

    // Never waits: a full queue drops the record (counted, logged by the
    // flush task). Nothing is recorded of a restricted device's checks.
    if !facts.restricted {
        app.last_seen.push(Seen {
            serial: facts.serial.clone(),
            current_version: current.to_string(),
            security_counter: i64::try_from(req.security_counter).unwrap_or(i64::MAX),
            root_version: i64::try_from(req.root_version).unwrap_or(i64::MAX),
            seen_at: now,
            offered_release_id,
        });
    }

    let root_chain = raw_envelopes(app.trust().newer_than(req.root_version))?;
    let expires = grant_expiry(&app.config, now);
    let (status, update, entitlement) = match outcome {
        Outcome::Offer {
            release,
            decision,
            stepping_stone,
            target_version,
        } => {
            let mut offer = update_offer(&app, &release, &decision, &facts.serial, expires);
            offer.stepping_stone = stepping_stone;
            offer.target_version = target_version.map(|v| v.to_string());
            (CheckStatus::UpdateAvailable, Some(offer), None)
        }
        Outcome::UpToDate => (CheckStatus::UpToDate, None, None),
        Outcome::NotEntitled { decision, .. } => {
            (CheckStatus::NotEntitled, None, Some((&decision).into()))
        }
    };
    crate::metrics::check(match status {
        _ if deferred_until.is_some() => "deferred",
        CheckStatus::UpdateAvailable => "update_available",
        CheckStatus::UpToDate => "up_to_date",
        CheckStatus::NotEntitled => "not_entitled",
    });
    let poll_after_secs = match deferred_until {
        Some(opens) => poll_at_window(&app.config, opens - now),
        None => poll_after(&app.config),
    };
    let today = now.date();
    Ok(Json(CheckResponse {
        status,
        poll_after_secs,
        root_chain,
        update,
        entitlement,
        deferred_until,
        security_support: SecuritySupport {
            ends: crate::domain::support::fmt_date(support.ends),
            warning: support.warning(today, app.config.support_warning_days),
        },
    }))
}

/// The offer of `release` to the device `serial`: its signed envelope and
/// its images with download grants for that serial valid until `expires`
/// (unix seconds); not a stepping stone.
pub(crate) fn update_offer(
    app: &App,
    release: &ReleaseEntry,
    decision: &Decision,
    serial: &str,
    expires: i64,
) -> UpdateOffer {
    UpdateOffer {
        version: release.version.to_string(),
        channel: release.channel.clone(),
        stepping_stone: false,
        target_version: None,
        manifest: release.envelope.clone(),
        images: release
            .images
            .iter()
            .map(|i| ImageDownload {
                name: i.name.clone(),
                target: i.target.clone(),
                length: i.length,
                sha256: i.sha256.to_string(),
                url: app.grants.url(&i.sha256, serial, expires),
            })
            .collect(),
        entitlement: decision.into(),
    }
}

/// When grants issued `now` expire (unix seconds).
pub(crate) fn grant_expiry(config: &Config, now: OffsetDateTime) -> i64 {
    now.unix_timestamp()
        .saturating_add(i64::try_from(config.grant_ttl_secs).unwrap_or(i64::MAX))
}

/// Longest a device outside its maintenance window is told to wait: it
/// still checks in daily, so a repair push or a changed window reaches it.
pub const MAX_WINDOW_WAIT_SECS: u64 = 24 * 3600;

/// The wait for a device whose offer waits for a window opening in
/// `until`: aimed at the opening, plus a random spread of up to
/// `poll_jitter_percent` of the poll interval (at least a minute) so that
/// a group does not arrive in the same second; at most
/// [`MAX_WINDOW_WAIT_SECS`].
pub fn poll_at_window(config: &Config, until: time::Duration) -> u64 {
    let secs = u64::try_from(until.whole_seconds()).unwrap_or(0);
    let spread = (config
        .poll_interval_secs
        .saturating_mul(u64::from(config.poll_jitter_percent.min(100)))
        / 100)
        .max(60);
    let wait = secs.saturating_add(rand::thread_rng().gen_range(0..=spread));
    wait.clamp(1, MAX_WINDOW_WAIT_SECS)
}

/// The poll interval with a random spread of ± `poll_jitter_percent`, at
/// least one second.
pub fn poll_after(config: &Config) -> u64 {
    let base = config.poll_interval_secs;
    let spread = base.saturating_mul(u64::from(config.poll_jitter_percent.min(100))) / 100;
    let low = base - spread;
    let high = base.saturating_add(spread);
    rand::thread_rng().gen_range(low..=high).max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn poll_interval_is_spread_within_the_jitter() {
        let config = Config {
            poll_interval_secs: 1000,
            poll_jitter_percent: 20,
            ..Config::default()
        };
        let values: Vec<u64> = (0..500).map(|_| poll_after(&config)).collect();
        assert!(
            values.iter().all(|v| (800..=1200).contains(v)),
            "{values:?}"
        );
        assert!(values.iter().any(|v| *v != values[0]), "not randomised");
        let fixed = Config {
            poll_interval_secs: 60,
            poll_jitter_percent: 0,
            ..Config::default()
        };
        assert_eq!(poll_after(&fixed), 60);
        let zero = Config {
            poll_interval_secs: 0,
            ..Config::default()
        };
        assert_eq!(poll_after(&zero), 1);
    }
}
