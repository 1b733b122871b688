//! Staged rollouts: starting one, the actions release engineers take on
//! it, the rules that pause and advance it by themselves, and its status.
//!
//! Who is offered a release is decided on the check path from the snapshot
//! ([`crate::selection`], [`crate::domain::rollout`]); this module changes
//! the stored rollout, always in one transaction with its event and audit
//! record, and the caller then calls `App::catalogue_changed` so the new
//! state reaches this replica's snapshot at once and the others' within
//! the refresh interval.
//!
//! Every change is an optimistic update on the state and phase it was
//! judged from ([`db::rollouts::update`]): two replicas pausing and
//! advancing the same rollout at once cannot both win, and the loser's
//! request is answered with the rollout as it now is.
//!
//! The failure rule: after each failed or rolled-back report on a release
//! with a running rollout ([`after_failure_report`]), and on every tick of
//! the background job ([`tick`]), the devices that reported an outcome
//! since the current phase began are counted; past the minimum sample, a
//! failure rate above the threshold pauses the rollout (`auto_paused`).
//! The same tick advances a running rollout whose soak time has passed
//! while under the threshold (`auto_advanced`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use serde::Serialize;
use time::OffsetDateTime;

use crate::db::rollouts::{Change, EventRow, NewRollout, RolloutRow};
use crate::db::{self, Db, Tx};
use crate::domain::roles::{Actor, Role};
use crate::domain::rollout::{
    self, Attempts, RolloutState, advanced, bucket, failure_pause, next_advance_at, phase_of,
};
use crate::error::{AppError, AppResult};

/// How often the background job looks at running rollouts.
pub const TICK_INTERVAL: Duration = Duration::from_secs(30);
/// The label of changes the server makes by itself.
pub const SYSTEM: &str = "system";

/// A rollout to start, checked.
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutSpec {
    /// Percentages, strictly increasing.
    pub phases: Vec<u8>,
    /// Limited to this group.
    pub group: Option<String>,
    /// Soak time of a phase before it advances by itself.
    pub soak_secs: Option<u64>,
    /// Failure rate above which it pauses, in percent.
    pub failure_threshold_percent: f64,
    /// Installs attempted in a phase before the failure rate counts.
    pub min_sample: u32,
}

impl RolloutSpec {
    /// Checks the parts of a rollout; 400 with the code of the first bad
    /// one (`invalid_phases`, `invalid_threshold`, `invalid_min_sample`,
    /// `invalid_soak`, `invalid_group_name`).
    pub fn parse(
        phases: Vec<u8>,
        group: Option<&str>,
        soak_secs: Option<u64>,
        failure_threshold_percent: Option<f64>,
        min_sample: Option<u32>,
    ) -> AppResult<RolloutSpec> {
        Ok(RolloutSpec {
            phases,
            group: group
                .map(|g| crate::domain::group::check_label("invalid_group_name", "group", g))
                .transpose()?
                .map(str::to_owned),
            soak_secs: soak_secs.map(rollout::check_soak).transpose()?,
            failure_threshold_percent: rollout::check_threshold(
                failure_threshold_percent.unwrap_or(rollout::DEFAULT_FAILURE_THRESHOLD_PERCENT),
            )?,
            min_sample: rollout::check_min_sample(
                min_sample.unwrap_or(rollout::DEFAULT_MIN_SAMPLE),
            )?,
        })
    }
}

/// The audit actor of the server's own changes.
pub fn system_actor() -> Actor {
    Actor {
        token_id: None,
        label: SYSTEM.into(),
        role: Role::Admin,
        request_id: None,
    }
}

fn audit_target(r: &RolloutRow) -> String {
    format!("{}/{}/{} {}", r.product_line, r.channel, r.version, r.id)
}

/// Starts a rollout of the release `release_id` (`target`:
/// `line/channel/version`, for the audit record) in `tx`; returns its id.
/// 422 `unknown_group`; 409 `rollout_exists` while another rollout of the
/// release is active.
pub async fn start(
    tx: &mut Tx,
    actor: &Actor,
    release_id: i64,
    target: &str,
    spec: &RolloutSpec,
    now: OffsetDateTime,
) -> AppResult<String> {
    if let Some(g) = &spec.group
        && db::groups::find(&mut *tx, g).await?.is_none()
    {
        return Err(AppError::unprocessable(
            "unknown_group",
            format!(
                "no device group {g:?}; create it first (POST /v1/groups) or leave the group out"
            ),
        ));
    }
    if let Some(active) = db::rollouts::active_of_release(&mut *tx, release_id).await? {
        return Err(rollout_exists(target, &active.id));
    }
    let id = format!("ro_{}", uuid::Uuid::new_v4().simple());
    let phases = serde_json::to_string(&spec.phases).unwrap_or_else(|_| "[]".into());
    db::rollouts::insert(
        tx,
        &NewRollout {
            id: &id,
            release_id,
            group_name: spec.group.as_deref(),
            phases: &phases,
            soak_secs: spec.soak_secs.and_then(|s| i64::try_from(s).ok()),
            failure_threshold_percent: spec.failure_threshold_percent,
            min_sample: i32::try_from(spec.min_sample).unwrap_or(i32::MAX),
            created_by: &actor.label,
            at: now,
        },
    )
    .await
    .map_err(|e| match e {
        // Another rollout started between the check and the insert.
        db::Error::Conflict { .. } => rollout_exists(target, "another"),
        e => e.into(),
    })?;
    let detail = format!(
        "started at {}% (phases {}){}{}, pausing above {}% failures after {} installs",
        spec.phases[0],
        phases,
        spec.group
            .as_ref()
            .map_or_else(String::new, |g| format!(", group {g}")),
        spec.soak_secs
            .map_or_else(String::new, |s| format!(", advancing after {s} s")),
        spec.failure_threshold_percent,
        spec.min_sample
    );
    db::rollouts::insert_event(
        tx,
        &id,
        &EventRow {
            at: now,
            actor: actor.label.clone(),
            kind: "started".into(),
            detail: detail.clone(),
        },
    )
    .await?;
    db::audit::record(
        tx,
        actor,
        "rollout.start",
        &format!("{target} {id}"),
        serde_json::json!({
            "rollout": id,
            "phases": spec.phases,
            "group": spec.group,
            "soak_secs": spec.soak_secs,
            "failure_threshold_percent": spec.failure_threshold_percent,
            "min_sample": spec.min_sample,
        }),
    )
    .await?;
    Ok(id)
}

fn rollout_exists(target: &str, id: &str) -> AppError {
    AppError::conflict(
        "rollout_exists",
        format!(
            "release {target} already has an active rollout ({id}); pause, abort or finish it \
             before starting another"
        ),
    )
}

/// 404 for a rollout id that does not exist.
pub fn unknown_rollout(id: &str) -> AppError {
    AppError::not_found(
        "unknown_rollout",
        format!("no rollout {id:?}; GET /v1/rollouts lists them"),
    )
}

/// What a person does to a rollout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// To the next phase (finishing after the last).
    Advance,
    /// No new offers until resumed.
    Pause(Option<String>),
    /// Offers again at the current phase.
    Resume,
    /// No new offers, for good.
    Abort(Option<String>),
    /// To 100% at once.
    Finish,
}

impl Action {
    fn name(&self) -> &'static str {
        match self {
            Action::Advance => "advance",
            Action::Pause(_) => "pause",
            Action::Resume => "resume",
            Action::Abort(_) => "abort",
            Action::Finish => "finish",
        }
    }
}

/// Parses a rollout's stored phases and state (a hand edit of the database
/// is the only way they could be wrong).
fn parsed(r: &RolloutRow) -> AppResult<(Vec<u8>, usize, RolloutState)> {
    let phases: Vec<u8> = serde_json::from_str(&r.phases)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("rollout {} phases: {e}", r.id)))?;
    let state = RolloutState::parse(&r.state).ok_or_else(|| {
        AppError::Internal(anyhow::anyhow!("rollout {} state {:?}", r.id, r.state))
    })?;
    let phase = usize::try_from(r.phase)
        .unwrap_or(0)
        .min(phases.len().saturating_sub(1));
    Ok((phases, phase, state))
}

/// The change `action` makes to a rollout in `state` at `phase`, with its
/// event (kind, detail); 409 when the state does not allow it.
fn plan(
    r: &RolloutRow,
    phases: &[u8],
    phase: usize,
    state: RolloutState,
    action: &Action,
    actor: &str,
) -> AppResult<(usize, RolloutState, Option<String>, &'static str, String)> {
    if matches!(state, RolloutState::Aborted | RolloutState::Finished) {
        return Err(AppError::conflict(
            "rollout_finished",
            format!(
                "rollout {} is {state}; it changes no more. Start a new rollout of the release \
                 if it should go out again",
                r.id
            ),
        ));
    }
    let percent = |p: usize| phases.get(p).copied().unwrap_or(100);
    Ok(match action {
        Action::Advance => {
            if state == RolloutState::Paused {
                return Err(AppError::conflict(
                    "rollout_paused",
                    format!(
                        "rollout {} is paused ({}); resume it before advancing",
                        r.id,
                        r.paused_reason.as_deref().unwrap_or("no reason given")
                    ),
                ));
            }
            let (next, new_state) = advanced(phases, phase);
            if new_state == RolloutState::Finished {
                (
                    next,
                    new_state,
                    None,
                    "finished",
                    "finished at 100%".to_string(),
                )
            } else {
                (
                    next,
                    new_state,
                    None,
                    "advanced",
                    format!(
                        "phase {} of {} ({}%)",
                        next + 1,
                        phases.len(),
                        percent(next)
                    ),
                )
            }
        }
        Action::Pause(reason) => {
            if state == RolloutState::Paused {
                return Err(AppError::conflict(
                    "rollout_paused",
                    format!("rollout {} is already paused", r.id),
                ));
            }
            let why = format!(
                "paused by {actor}{}",
                reason
                    .as_ref()
                    .map_or_else(String::new, |r| format!(": {r}"))
            );
            (
                phase,
                RolloutState::Paused,
                Some(why.clone()),
                "paused",
                why,
            )
        }
        Action::Resume => {
            if state != RolloutState::Paused {
                return Err(AppError::conflict(
                    "rollout_not_paused",
                    format!("rollout {} is {state}, not paused", r.id),
                ));
            }
            (
                phase,
                RolloutState::Running,
                None,
                "resumed",
                format!("resumed at phase {} ({}%)", phase + 1, percent(phase)),
            )
        }
        Action::Abort(reason) => {
            let why = format!(
                "aborted by {actor}{}",
                reason
                    .as_ref()
                    .map_or_else(String::new, |r| format!(": {r}"))
            );
            (
                phase,
                RolloutState::Aborted,
                Some(why.clone()),
                "aborted",
                why,
            )
        }
        Action::Finish => (
            phase,
            RolloutState::Finished,
            None,
            "finished",
            "finished at 100%".to_string(),
        ),
    })
}

/// Applies `action` to rollout `id` for `actor`; gives the rollout as
/// changed. 404 `unknown_rollout`; 409 `rollout_finished`,
/// `rollout_paused`, `rollout_not_paused`, or `rollout_changed` when
/// another change won the race.
pub async fn act(db: &Db, actor: &Actor, id: &str, action: Action) -> AppResult<RolloutRow> {
    let now = OffsetDateTime::now_utc();
    let mut tx = db.begin().await?;
    let r = db::rollouts::find(&mut tx, id)
        .await?
        .ok_or_else(|| unknown_rollout(id))?;
    let (phases, phase, state) = parsed(&r)?;
    let (new_phase, new_state, reason, kind, detail) =
        plan(&r, &phases, phase, state, &action, &actor.label)?;
    let applied = db::rollouts::update(
        &mut tx,
        id,
        &r.state,
        r.phase,
        &Change {
            phase: i32::try_from(new_phase).unwrap_or(r.phase),
            state: new_state.as_str(),
            paused_reason: reason.as_deref(),
            // A new phase, and a resume, start the phase's clock again: its
            // soak time and the installs its failure rate counts. (A
            // resume is a person's judgement that the failures so far do
            // not stop the rollout; they stay in the status counts.)
            phase_started_at: if new_phase == phase
                && matches!(new_state, RolloutState::Paused | RolloutState::Aborted)
            {
                r.phase_started_at
            } else {
                now
            },
            at: now,
        },
    )
    .await?;
    if !applied {
        return Err(AppError::conflict(
            "rollout_changed",
            format!(
                "rollout {id} changed while this request was judged; look at it again and retry"
            ),
        ));
    }
    db::rollouts::insert_event(
        &mut tx,
        id,
        &EventRow {
            at: now,
            actor: actor.label.clone(),
            kind: kind.into(),
            detail: detail.clone(),
        },
    )
    .await?;
    db::audit::record(
        &mut tx,
        actor,
        &format!("rollout.{}", action.name()),
        &audit_target(&r),
        serde_json::json!({ "rollout": id, "state": new_state.as_str(), "phase": new_phase, "detail": detail }),
    )
    .await?;
    tx.commit().await?;
    tracing::info!(rollout = %id, action = action.name(), state = %new_state, phase = new_phase, "rollout changed");
    db::rollouts::find(db, id)
        .await?
        .ok_or_else(|| unknown_rollout(id))
}

/// The installs attempted since `since` and how many failed, counting each
/// device's latest outcome (installed, failed, rolled back) once.
pub fn attempts(reports: &[db::rollouts::ReportRow]) -> Attempts {
    let mut latest: HashMap<&str, &str> = HashMap::new();
    for r in reports {
        if matches!(r.stage.as_str(), "installed" | "failed" | "rolled_back") {
            latest.insert(&r.serial, &r.stage);
        }
    }
    let failed = latest
        .values()
        .filter(|s| matches!(**s, "failed" | "rolled_back"))
        .count();
    Attempts {
        attempted: latest.len() as u64,
        failed: failed as u64,
    }
}

/// Pauses rollout `r` by itself when its current phase fails too often;
/// returns whether it did. Called in its own transaction.
async fn pause_if_failing(db: &Db, r: &RolloutRow, now: OffsetDateTime) -> AppResult<bool> {
    let (_, phase, state) = parsed(r)?;
    if state != RolloutState::Running {
        return Ok(false);
    }
    let (attempted, failed) =
        db::rollouts::outcomes_since(db, r.release_id, r.phase_started_at).await?;
    let counted = Attempts {
        attempted: u64::try_from(attempted).unwrap_or(0),
        failed: u64::try_from(failed).unwrap_or(0),
    };
    let Some(reason) = failure_pause(
        counted,
        r.failure_threshold_percent,
        u32::try_from(r.min_sample).unwrap_or(u32::MAX),
        phase,
    ) else {
        return Ok(false);
    };
    let mut tx = db.begin().await?;
    let applied = db::rollouts::update(
        &mut tx,
        &r.id,
        "running",
        r.phase,
        &Change {
            phase: r.phase,
            state: "paused",
            paused_reason: Some(&reason),
            phase_started_at: r.phase_started_at,
            at: now,
        },
    )
    .await?;
    if !applied {
        return Ok(false);
    }
    system_event(
        &mut tx,
        r,
        now,
        "auto_paused",
        &reason,
        "rollout.auto_pause",
    )
    .await?;
    tx.commit().await?;
    tracing::warn!(rollout = %r.id, reason = %reason, "rollout paused by its failure rate");
    Ok(true)
}

async fn system_event(
    tx: &mut Tx,
    r: &RolloutRow,
    now: OffsetDateTime,
    kind: &str,
    detail: &str,
    action: &str,
) -> AppResult<()> {
    db::rollouts::insert_event(
        tx,
        &r.id,
        &EventRow {
            at: now,
            actor: SYSTEM.into(),
            kind: kind.into(),
            detail: detail.into(),
        },
    )
    .await?;
    db::audit::record(
        tx,
        &system_actor(),
        action,
        &audit_target(r),
        serde_json::json!({ "rollout": r.id, "detail": detail }),
    )
    .await?;
    Ok(())
}

/// After a failed or rolled-back report on `release_id`: pauses its
/// running rollout if the failures climbed past its threshold. Returns
/// whether a rollout paused (the caller then marks the catalogue changed).
pub async fn after_failure_report(db: &Db, release_id: i64) -> AppResult<bool> {
    let Some(r) = db::rollouts::active_of_release(db, release_id).await? else {
        return Ok(false);
    };
    pause_if_failing(db, &r, OffsetDateTime::now_utc()).await
}

/// One run of the background job at `now`: pauses running rollouts that
/// fail too often and advances those whose soak time has passed. Returns
/// how many rollouts changed.
pub async fn tick(db: &Db, now: OffsetDateTime) -> AppResult<usize> {
    let mut changed = 0;
    for r in db::rollouts::soaking(db).await? {
        if pause_if_failing(db, &r, now).await? {
            changed += 1;
            continue;
        }
        let (phases, phase, state) = parsed(&r)?;
        let soak = r.soak_secs.and_then(|s| u64::try_from(s).ok());
        let Some(due) = next_advance_at(state, r.phase_started_at, soak) else {
            continue;
        };
        if now < due {
            continue;
        }
        let (next, new_state) = advanced(&phases, phase);
        let mut tx = db.begin().await?;
        let applied = db::rollouts::update(
            &mut tx,
            &r.id,
            "running",
            r.phase,
            &Change {
                phase: i32::try_from(next).unwrap_or(r.phase),
                state: new_state.as_str(),
                paused_reason: None,
                phase_started_at: now,
                at: now,
            },
        )
        .await?;
        if !applied {
            continue;
        }
        let detail = if new_state == RolloutState::Finished {
            "finished at 100% after its soak time".to_string()
        } else {
            format!(
                "phase {} of {} ({}%) after a soak of {} s under the failure threshold",
                next + 1,
                phases.len(),
                phases[next],
                soak.unwrap_or(0)
            )
        };
        system_event(
            &mut tx,
            &r,
            now,
            "auto_advanced",
            &detail,
            "rollout.auto_advance",
        )
        .await?;
        tx.commit().await?;
        tracing::info!(rollout = %r.id, phase = next, state = %new_state, "rollout advanced after its soak time");
        changed += 1;
    }
    Ok(changed)
}

/// Starts the background job: every [`TICK_INTERVAL`], the replica whose
/// claim wins runs [`tick`] (once across replicas), then calls `changed`
/// when a rollout changed. Ends when `alive` says the app is gone.
pub fn spawn_ticker(
    db: Db,
    alive: impl Fn() -> bool + Send + 'static,
    changed: impl Fn() + Send + 'static,
) {
    tokio::spawn(async move {
        let mut every =
            tokio::time::interval_at(tokio::time::Instant::now() + TICK_INTERVAL, TICK_INTERVAL);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let replica = uuid::Uuid::new_v4().to_string();
        loop {
            every.tick().await;
            if !alive() {
                return;
            }
            let now = OffsetDateTime::now_utc();
            // A little under the interval, so the next tick's claim is due.
            let claim_every = TICK_INTERVAL.saturating_sub(Duration::from_secs(2));
            match db::jobs::claim(&db, "rollouts", &replica, now, claim_every).await {
                Ok(true) => match tick(&db, now).await {
                    Ok(0) => {}
                    Ok(_) => changed(),
                    Err(e) => tracing::warn!(error = %e, "the rollout job failed"),
                },
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "claiming the rollout job failed"),
            }
        }
    });
}

/// One phase's counts.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct PhaseStatus {
    /// Phase number, from 1.
    pub phase: usize,
    /// Its share of devices, in percent.
    pub percent: u8,
    /// Devices of the phase last offered the release since the rollout
    /// began (from their last-seen state, at most a flush behind).
    pub offered: u64,
    /// Devices whose latest report is a download, verification or install
    /// in progress.
    pub downloading: u64,
    /// Devices whose latest report is `installed`.
    pub installed: u64,
    /// Devices whose latest report is `failed`.
    pub failed: u64,
    /// Devices whose latest report is `rolled_back`.
    pub rolled_back: u64,
    /// Failed and rolled back over installs attempted, in percent.
    pub failure_rate_percent: f64,
}

/// A failure reason and how many devices reported it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct ReasonCount {
    /// The reason code the device sent (`unspecified` without one).
    pub reason: String,
    /// Failed and rolled-back reports with it.
    pub count: u64,
}

/// Installs in one hour.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct HourCount {
    /// The hour's start (RFC 3339, UTC).
    #[serde(with = "time::serde::rfc3339")]
    pub hour: OffsetDateTime,
    /// `installed` reports in it.
    pub installed: u64,
}

/// The status of a rollout, from the reports and offers since it began.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
pub struct RolloutStatus {
    /// Per phase, the devices that joined in it (devices outside every
    /// phase, when the last is below 100%, are not counted).
    pub phases: Vec<PhaseStatus>,
    /// The most frequent failure reasons, at most 10.
    pub failure_reasons: Vec<ReasonCount>,
    /// Installs per hour, oldest first.
    pub installs_by_hour: Vec<HourCount>,
    /// The current phase's installs attempted and failed since it began,
    /// which the failure threshold judges.
    pub current_phase_attempted: u64,
    /// Of those, failed or rolled back.
    pub current_phase_failed: u64,
}

/// Computes the status of `r`. Reads every report on the release since the
/// rollout began and the devices offered it: an admin view, not the check
/// path.
pub async fn status(db: &Db, r: &RolloutRow) -> AppResult<RolloutStatus> {
    let (phases, _, _) = parsed(r)?;
    let reports = db::rollouts::reports_since(db, r.release_id, r.created_at).await?;
    let offered = db::rollouts::offered_since(db, r.release_id, r.created_at).await?;
    let current = attempts(
        &reports
            .iter()
            .filter(|x| x.at >= r.phase_started_at)
            .cloned()
            .collect::<Vec<_>>(),
    );
    Ok(summarise(&r.id, &phases, &reports, &offered, current))
}

/// The status from the rows read (pure, for tests).
pub fn summarise(
    id: &str,
    phases: &[u8],
    reports: &[db::rollouts::ReportRow],
    offered: &[String],
    current: Attempts,
) -> RolloutStatus {
    let mut out: Vec<PhaseStatus> = phases
        .iter()
        .enumerate()
        .map(|(i, p)| PhaseStatus {
            phase: i + 1,
            percent: *p,
            ..PhaseStatus::default()
        })
        .collect();
    let joined = |serial: &str| phase_of(phases, bucket(id, serial));
    for s in offered {
        if let Some(p) = joined(s) {
            out[p].offered += 1;
        }
    }
    let mut latest: HashMap<&str, &str> = HashMap::new();
    let mut reasons: BTreeMap<String, u64> = BTreeMap::new();
    let mut hours: BTreeMap<i64, u64> = BTreeMap::new();
    for rep in reports {
        latest.insert(&rep.serial, &rep.stage);
        match rep.stage.as_str() {
            "failed" | "rolled_back" => {
                *reasons
                    .entry(
                        rep.reason_code
                            .clone()
                            .unwrap_or_else(|| "unspecified".into()),
                    )
                    .or_default() += 1;
            }
            "installed" => {
                let t = rep.at.unix_timestamp();
                *hours.entry(t - t.rem_euclid(3600)).or_default() += 1;
            }
            _ => {}
        }
    }
    for (serial, stage) in latest {
        let Some(p) = joined(serial) else { continue };
        let counts = &mut out[p];
        match stage {
            "installed" => counts.installed += 1,
            "failed" => counts.failed += 1,
            "rolled_back" => counts.rolled_back += 1,
            _ => counts.downloading += 1,
        }
    }
    for p in &mut out {
        p.failure_rate_percent = Attempts {
            attempted: p.installed + p.failed + p.rolled_back,
            failed: p.failed + p.rolled_back,
        }
        .rate_percent();
    }
    let mut failure_reasons: Vec<ReasonCount> = reasons
        .into_iter()
        .map(|(reason, count)| ReasonCount { reason, count })
        .collect();
    failure_reasons.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.reason.cmp(&b.reason)));
    failure_reasons.truncate(10);
    RolloutStatus {
        phases: out,
        failure_reasons,
        installs_by_hour: hours
            .into_iter()
            .filter_map(|(h, installed)| {
                Some(HourCount {
                    hour: OffsetDateTime::from_unix_timestamp(h).ok()?,
                    installed,
                })
            })
            .collect(),
        current_phase_attempted: current.attempted,
        current_phase_failed: current.failed,
    }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;
    use crate::db::rollouts::ReportRow;

    fn report(serial: &str, stage: &str, reason: Option<&str>, at: OffsetDateTime) -> ReportRow {
        ReportRow {
            serial: serial.into(),
            stage: stage.into(),
            reason_code: reason.map(str::to_owned),
            at,
        }
    }

    #[test]
    fn each_device_counts_once_by_its_latest_outcome() {
        let t = datetime!(2026-12-03 10:00 UTC);
        let reports = vec![
            report("A", "downloading", None, t),
            report("A", "failed", Some("boot_timeout"), t),
            report("A", "installed", None, t),
            report("B", "rolled_back", Some("health_check"), t),
            report("C", "downloading", None, t),
        ];
        assert_eq!(
            attempts(&reports),
            Attempts {
                attempted: 2,
                failed: 1
            }
        );
    }

    #[test]
    fn status_counts_devices_in_the_phase_they_joined() {
        let phases = [50u8, 100];
        let id = "ro_s";
        let serials: Vec<String> = (0..40).map(|i| format!("S{i}")).collect();
        let first: Vec<&String> = serials
            .iter()
            .filter(|s| phase_of(&phases, bucket(id, s)) == Some(0))
            .collect();
        let second: Vec<&String> = serials
            .iter()
            .filter(|s| phase_of(&phases, bucket(id, s)) == Some(1))
            .collect();
        assert!(first.len() >= 2 && !second.is_empty());
        let t = datetime!(2026-12-03 10:15 UTC);
        let reports = vec![
            report(first[0], "installed", None, t),
            report(first[1], "failed", Some("boot_timeout"), t),
            report(second[0], "downloading", None, t),
            report(
                second[0],
                "rolled_back",
                Some("boot_timeout"),
                datetime!(2026-12-03 11:05 UTC),
            ),
        ];
        let offered: Vec<String> = vec![first[0].clone(), first[1].clone(), second[0].clone()];
        let s = summarise(id, &phases, &reports, &offered, Attempts::default());
        assert_eq!(s.phases[0].offered, 2);
        assert_eq!(s.phases[0].installed, 1);
        assert_eq!(s.phases[0].failed, 1);
        assert_eq!(s.phases[0].failure_rate_percent, 50.0);
        assert_eq!(s.phases[1].offered, 1);
        assert_eq!(s.phases[1].rolled_back, 1);
        assert_eq!(s.phases[1].downloading, 0);
        assert_eq!(
            s.failure_reasons,
            vec![ReasonCount {
                reason: "boot_timeout".into(),
                count: 2
            }]
        );
        assert_eq!(
            s.installs_by_hour,
            vec![HourCount {
                hour: datetime!(2026-12-03 10:00 UTC),
                installed: 1
            }]
        );
    }

    #[test]
    fn actions_follow_the_state_machine() {
        let row = RolloutRow {
            id: "ro_p".into(),
            release_id: 1,
            product_line: "encoders".into(),
            channel: "stable".into(),
            version: "2.3.0".into(),
            group_name: None,
            phases: "[1,10,100]".into(),
            phase: 0,
            state: "running".into(),
            paused_reason: None,
            soak_secs: None,
            failure_threshold_percent: 5.0,
            min_sample: 20,
            phase_started_at: datetime!(2026-12-03 10:00 UTC),
            created_by: "rel".into(),
            created_at: datetime!(2026-12-03 10:00 UTC),
            updated_at: datetime!(2026-12-03 10:00 UTC),
        };
        let p = [1u8, 10, 100];
        use RolloutState::*;
        let go = |phase, state, a: Action| plan(&row, &p, phase, state, &a, "alice");
        assert_eq!(go(0, Running, Action::Advance).unwrap().0, 1);
        assert_eq!(go(2, Running, Action::Advance).unwrap().1, Finished);
        assert_eq!(
            go(0, Paused, Action::Advance).unwrap_err().code(),
            "rollout_paused"
        );
        assert_eq!(
            go(0, Running, Action::Resume).unwrap_err().code(),
            "rollout_not_paused"
        );
        assert_eq!(go(0, Paused, Action::Resume).unwrap().1, Running);
        let paused = go(1, Running, Action::Pause(Some("field reports".into()))).unwrap();
        assert_eq!(paused.2.as_deref(), Some("paused by alice: field reports"));
        assert_eq!(go(1, Paused, Action::Abort(None)).unwrap().1, Aborted);
        assert_eq!(go(1, Running, Action::Finish).unwrap().1, Finished);
        for done in [Aborted, Finished] {
            for a in [
                Action::Advance,
                Action::Resume,
                Action::Finish,
                Action::Pause(None),
            ] {
                assert_eq!(go(0, done, a).unwrap_err().code(), "rollout_finished");
            }
        }
    }
}
