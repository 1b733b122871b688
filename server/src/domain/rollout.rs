//! Staged rollouts of a release: phases, the deterministic membership of a
//! device, and the rules that pause or advance a rollout by themselves.
//!
//! A rollout offers its release to a growing share of the fleet: phases
//! such as 1% → 10% → 50% → 100%. Which devices are in a phase is decided
//! by a hash of the rollout id and the serial ([`bucket`]), never stored:
//! a device's bucket never changes, so it never drops in and out as the
//! rollout advances, devices provisioned later join by the same rule, and
//! the check path decides membership without reading the database. Two
//! rollouts (even of the same release) draw independent samples, so the
//! same 1% of the fleet is not always first.
//!
//! Everything here is pure: no I/O, no clock (the caller passes `now`).

use std::fmt;

use sha2::{Digest as _, Sha256};
use time::OffsetDateTime;

use crate::error::{AppError, AppResult};

/// Membership is decided in buckets of 0.01%: a device is in a phase of P%
/// when its bucket is below `P * 100`.
pub const BUCKETS: u32 = 10_000;
/// Most phases a rollout may have.
pub const MAX_PHASES: usize = 20;
/// Failure threshold when none is given, in percent.
pub const DEFAULT_FAILURE_THRESHOLD_PERCENT: f64 = 5.0;
/// Minimum sample when none is given: installs attempted in a phase before
/// its failure rate can pause the rollout.
pub const DEFAULT_MIN_SAMPLE: u32 = 20;
/// Largest minimum sample accepted.
pub const MAX_MIN_SAMPLE: u32 = 1_000_000;
/// Longest soak time accepted (a year), in seconds.
pub const MAX_SOAK_SECS: u64 = 366 * 24 * 3600;

/// The state of a rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RolloutState {
    /// Offered to the devices of the current phase.
    Running,
    /// No new offers (by hand or because failures climbed); resumable.
    Paused,
    /// Stopped for good: no new offers; devices that installed keep it.
    Aborted,
    /// At 100%: the release is offered as if it had no rollout.
    Finished,
}

impl RolloutState {
    /// Every state, in the order of a rollout's life.
    pub const ALL: [RolloutState; 4] = [
        RolloutState::Running,
        RolloutState::Paused,
        RolloutState::Aborted,
        RolloutState::Finished,
    ];

    /// The stored and serialised name.
    pub fn as_str(self) -> &'static str {
        match self {
            RolloutState::Running => "running",
            RolloutState::Paused => "paused",
            RolloutState::Aborted => "aborted",
            RolloutState::Finished => "finished",
        }
    }

    /// Parses a stored or requested name.
    pub fn parse(s: &str) -> Option<RolloutState> {
        RolloutState::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// Running or paused: the rollout still decides who is offered its
    /// release, and no second rollout of that release may start.
    pub fn is_active(self) -> bool {
        matches!(self, RolloutState::Running | RolloutState::Paused)
    }
}

impl fmt::Display for RolloutState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Checks a rollout's phases: 1 to [`MAX_PHASES`] percentages from 1 to
/// 100, strictly increasing. 400 `invalid_phases`.
pub fn parse_phases(phases: &[u32]) -> AppResult<Vec<u8>> {
    let bad = |m: String| AppError::bad_request("invalid_phases", m);
    if phases.is_empty() || phases.len() > MAX_PHASES {
        return Err(bad(format!(
            "a rollout needs 1 to {MAX_PHASES} phases, e.g. [1, 10, 50, 100]; {} given",
            phases.len()
        )));
    }
    let mut out = Vec::with_capacity(phases.len());
    for (i, p) in phases.iter().enumerate() {
        if !(1..=100).contains(p) {
            return Err(bad(format!(
                "phase {} is {p}%; each phase is a percentage of devices from 1 to 100",
                i + 1
            )));
        }
        if let Some(prev) = out.last()
            && u32::from(*prev) >= *p
        {
            return Err(bad(format!(
                "phase {} ({p}%) does not increase on phase {} ({prev}%); phases must grow, \
                 e.g. [1, 10, 50, 100]",
                i + 1,
                i
            )));
        }
        out.push(u8::try_from(*p).unwrap_or(100));
    }
    Ok(out)
}

/// Parses phases given as text, `1,10,50,100` (the publish option).
pub fn parse_phases_text(text: &str) -> AppResult<Vec<u8>> {
    let values = text
        .split(',')
        .map(|p| {
            p.trim().parse::<u32>().map_err(|_| {
                AppError::bad_request(
                    "invalid_phases",
                    format!(
                        "phases {text:?} must be percentages separated by commas, e.g. 1,10,50,100"
                    ),
                )
            })
        })
        .collect::<AppResult<Vec<u32>>>()?;
    parse_phases(&values)
}

/// Checks a failure threshold: a percentage from 0 to 100 (0: any failure
/// pauses). 400 `invalid_threshold`.
pub fn check_threshold(percent: f64) -> AppResult<f64> {
    if percent.is_finite() && (0.0..=100.0).contains(&percent) {
        Ok(percent)
    } else {
        Err(AppError::bad_request(
            "invalid_threshold",
            format!(
                "the failure threshold {percent} is not a percentage from 0 to 100 \
                 (failed and rolled-back installs over attempted ones above it pause the rollout)"
            ),
        ))
    }
}

/// Checks a minimum sample: 1 to [`MAX_MIN_SAMPLE`]. 400 `invalid_min_sample`.
pub fn check_min_sample(n: u32) -> AppResult<u32> {
    if (1..=MAX_MIN_SAMPLE).contains(&n) {
        Ok(n)
    } else {
        Err(AppError::bad_request(
            "invalid_min_sample",
            format!(
                "the minimum sample {n} must be from 1 to {MAX_MIN_SAMPLE} installs attempted \
                 in a phase before its failure rate may pause the rollout"
            ),
        ))
    }
}

/// Checks a soak time: 1 second to a year. 400 `invalid_soak`.
pub fn check_soak(secs: u64) -> AppResult<u64> {
    if (1..=MAX_SOAK_SECS).contains(&secs) {
        Ok(secs)
    } else {
        Err(AppError::bad_request(
            "invalid_soak",
            format!(
                "the soak time {secs} s must be from 1 s to {MAX_SOAK_SECS} s (a year); \
                 leave it out to advance by hand"
            ),
        ))
    }
}

/// The bucket of `serial` in the rollout `rollout_id`, `0..BUCKETS`: the
/// first 8 bytes of sha256(rollout id, NUL, serial), reduced modulo
/// [`BUCKETS`]. The bias of the reduction is below 10⁻¹⁵.
pub fn bucket(rollout_id: &str, serial: &str) -> u32 {
    let mut h = Sha256::new();
    h.update(rollout_id.as_bytes());
    h.update([0u8]);
    h.update(serial.as_bytes());
    let digest = h.finalize();
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    u32::try_from(u64::from_be_bytes(first) % u64::from(BUCKETS)).unwrap_or(0)
}

/// The first phase (index) whose share takes in `bucket`; `None` when no
/// phase does (the last phase is below 100%).
pub fn phase_of(phases: &[u8], bucket: u32) -> Option<usize> {
    phases
        .iter()
        .position(|p| bucket < u32::from(*p) * (BUCKETS / 100))
}

/// A rollout as the check path needs it (held in the catalogue snapshot).
#[derive(Debug, Clone, PartialEq)]
pub struct RolloutEntry {
    /// Id, `ro_<32 hex>`.
    pub id: String,
    /// The release it rolls out.
    pub release_id: i64,
    /// Only devices of this group take part.
    pub group: Option<String>,
    /// Percentages, strictly increasing.
    pub phases: Vec<u8>,
    /// Index of the current phase.
    pub phase: usize,
    /// Its state.
    pub state: RolloutState,
}

/// Why a rollout offers or withholds its release from one device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Offered: the device is in a phase reached so far (or the rollout
    /// finished).
    Admitted,
    /// Not yet: the device joins at phase `joins_at` (index), or never
    /// when the last phase is below 100%.
    NotYet {
        /// The phase the device joins at.
        joins_at: Option<usize>,
    },
    /// The rollout is limited to a group the device is not in.
    OutsideGroup,
    /// Paused: no new offers.
    Paused,
    /// Aborted: no new offers.
    Aborted,
}

impl RolloutEntry {
    /// Whether the rollout offers its release to `serial`; `in_group`
    /// says whether the device is in the rollout's group (ignored without
    /// one).
    pub fn admission(&self, serial: &str, in_group: bool) -> Admission {
        match self.state {
            RolloutState::Finished => return Admission::Admitted,
            RolloutState::Aborted => return Admission::Aborted,
            RolloutState::Paused => return Admission::Paused,
            RolloutState::Running => {}
        }
        if self.group.is_some() && !in_group {
            return Admission::OutsideGroup;
        }
        match phase_of(&self.phases, bucket(&self.id, serial)) {
            Some(p) if p <= self.phase => Admission::Admitted,
            joins_at => Admission::NotYet { joins_at },
        }
    }

    /// The current share of devices, in percent.
    pub fn percent(&self) -> u8 {
        if self.state == RolloutState::Finished {
            return 100;
        }
        self.phases.get(self.phase).copied().unwrap_or(100)
    }
}

/// Installs attempted in a phase and how many of them failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Attempts {
    /// Devices of the phase that reported an outcome (installed, failed or
    /// rolled back) for the release since the phase began.
    pub attempted: u64,
    /// Of those, the ones whose latest outcome is failed or rolled back.
    pub failed: u64,
}

impl Attempts {
    /// The failure rate in percent (0 with no attempt).
    pub fn rate_percent(&self) -> f64 {
        if self.attempted == 0 {
            return 0.0;
        }
        // Counts of devices stay far below 2^52, exact as f64.
        #[allow(clippy::cast_precision_loss)]
        let rate = self.failed as f64 * 100.0 / self.attempted as f64;
        rate
    }
}

/// The reason to pause a rollout for its failures, if it must: at least
/// `min_sample` installs attempted in the phase, and a failure rate above
/// `threshold_percent`.
pub fn failure_pause(
    attempts: Attempts,
    threshold_percent: f64,
    min_sample: u32,
    phase: usize,
) -> Option<String> {
    if attempts.attempted < u64::from(min_sample) {
        return None;
    }
    let rate = attempts.rate_percent();
    (rate > threshold_percent).then(|| {
        format!(
            "failure rate {rate:.1}% ({} of {} installs failed or rolled back) is over the \
             threshold of {threshold_percent}% in phase {}",
            attempts.failed,
            attempts.attempted,
            phase + 1
        )
    })
}

/// When a running rollout with a soak time advances by itself: `soak_secs`
/// after its phase began.
pub fn next_advance_at(
    state: RolloutState,
    phase_started_at: OffsetDateTime,
    soak_secs: Option<u64>,
) -> Option<OffsetDateTime> {
    if state != RolloutState::Running {
        return None;
    }
    let soak = i64::try_from(soak_secs?).ok()?;
    phase_started_at.checked_add(time::Duration::seconds(soak))
}

/// What advancing does from phase `phase` of `phases`: the next phase, or
/// finishing when the current one is the last.
pub fn advanced(phases: &[u8], phase: usize) -> (usize, RolloutState) {
    if phase + 1 < phases.len() {
        (phase + 1, RolloutState::Running)
    } else {
        (phase, RolloutState::Finished)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_must_grow_within_one_and_a_hundred() {
        assert_eq!(
            parse_phases(&[1, 10, 50, 100]).unwrap(),
            vec![1, 10, 50, 100]
        );
        assert_eq!(parse_phases(&[5]).unwrap(), vec![5]);
        for bad in [
            vec![],
            vec![0, 10],
            vec![10, 10],
            vec![50, 10],
            vec![1, 101],
            (1..=21).collect(),
        ] {
            let e = parse_phases(&bad).unwrap_err();
            assert_eq!(e.code(), "invalid_phases", "{bad:?}");
        }
        assert!(
            parse_phases(&[10, 5])
                .unwrap_err()
                .to_string()
                .contains("does not increase")
        );
        assert_eq!(parse_phases_text(" 1, 10,100").unwrap(), vec![1, 10, 100]);
        assert_eq!(
            parse_phases_text("1;10").unwrap_err().code(),
            "invalid_phases"
        );
    }

    #[test]
    fn thresholds_samples_and_soak_are_bounded() {
        assert!(check_threshold(0.0).is_ok());
        assert!(check_threshold(100.0).is_ok());
        for bad in [-0.1, 100.1, f64::NAN, f64::INFINITY] {
            assert_eq!(
                check_threshold(bad).unwrap_err().code(),
                "invalid_threshold"
            );
        }
        assert_eq!(
            check_min_sample(0).unwrap_err().code(),
            "invalid_min_sample"
        );
        assert!(check_min_sample(1).is_ok());
        assert_eq!(check_soak(0).unwrap_err().code(), "invalid_soak");
        assert!(check_soak(3600).is_ok());
    }

    #[test]
    fn membership_is_deterministic_and_its_share_within_tolerance() {
        let serials: Vec<String> = (0..10_000).map(|i| format!("SN-{i:06}")).collect();
        let buckets: Vec<u32> = serials.iter().map(|s| bucket("ro_a", s)).collect();
        let again: Vec<u32> = serials.iter().map(|s| bucket("ro_a", s)).collect();
        assert_eq!(buckets, again);
        assert!(buckets.iter().all(|b| *b < BUCKETS));
        let phases = [1u8, 10, 50, 100];
        let in_share = |p: usize| {
            buckets
                .iter()
                .filter(|b| phase_of(&phases, **b).is_some_and(|j| j <= p))
                .count()
        };
        // 1% of 10,000 is 100; a binomial sample has sd 10, so ±40 is 4 sd.
        let first = in_share(0);
        assert!((60..=140).contains(&first), "{first}");
        let tenth = in_share(1);
        assert!((880..=1120).contains(&tenth), "{tenth}");
        let half = in_share(2);
        assert!((4800..=5200).contains(&half), "{half}");
        assert_eq!(in_share(3), 10_000);
        // Another rollout draws another sample.
        let other: Vec<u32> = serials.iter().map(|s| bucket("ro_b", s)).collect();
        let both = buckets
            .iter()
            .zip(&other)
            .filter(|(a, b)| **a < 100 && **b < 100)
            .count();
        assert!(both < 10, "{both} devices first in both rollouts");
    }

    #[test]
    fn a_device_stays_in_once_its_phase_is_reached() {
        let mut r = RolloutEntry {
            id: "ro_x".into(),
            release_id: 1,
            group: None,
            phases: vec![1, 10, 50, 100],
            phase: 0,
            state: RolloutState::Running,
        };
        let serials: Vec<String> = (0..2000).map(|i| format!("D{i}")).collect();
        let mut admitted_before: Vec<bool> = vec![false; serials.len()];
        for phase in 0..4 {
            r.phase = phase;
            for (i, s) in serials.iter().enumerate() {
                let now = r.admission(s, false) == Admission::Admitted;
                assert!(
                    now || !admitted_before[i],
                    "{s} dropped out at phase {phase}"
                );
                admitted_before[i] = now;
            }
        }
        assert!(admitted_before.iter().all(|a| *a));
        r.phase = 0;
        let waiting = serials
            .iter()
            .find(|s| r.admission(s, false) != Admission::Admitted)
            .unwrap();
        assert!(matches!(
            r.admission(waiting, false),
            Admission::NotYet {
                joins_at: Some(1..)
            }
        ));
        r.state = RolloutState::Paused;
        assert_eq!(r.admission(waiting, false), Admission::Paused);
        r.state = RolloutState::Aborted;
        assert_eq!(r.admission(waiting, false), Admission::Aborted);
        r.state = RolloutState::Finished;
        assert_eq!(r.admission(waiting, false), Admission::Admitted);
        assert_eq!(r.percent(), 100);
        r.state = RolloutState::Running;
        r.group = Some("studio".into());
        assert_eq!(r.admission(waiting, false), Admission::OutsideGroup);
    }

    #[test]
    fn a_last_phase_below_a_hundred_leaves_the_rest_out() {
        assert_eq!(phase_of(&[1, 10], 999), Some(1));
        assert_eq!(phase_of(&[1, 10], 1000), None);
        assert_eq!(phase_of(&[1, 10], 99), Some(0));
    }

    #[test]
    fn failures_pause_only_past_the_minimum_sample_and_above_the_threshold() {
        let a = |attempted, failed| Attempts { attempted, failed };
        assert_eq!(failure_pause(a(9, 9), 5.0, 10, 0), None);
        let why = failure_pause(a(10, 4), 5.0, 10, 1).unwrap();
        assert!(
            why.contains("40.0%") && why.contains("4 of 10") && why.contains("phase 2"),
            "{why}"
        );
        // Exactly at the threshold does not pause.
        assert_eq!(failure_pause(a(20, 1), 5.0, 10, 0), None);
        assert!(failure_pause(a(20, 2), 5.0, 10, 0).is_some());
        assert!(failure_pause(a(1, 1), 0.0, 1, 0).is_some());
        assert_eq!(failure_pause(a(5, 0), 0.0, 1, 0), None);
        assert_eq!(a(0, 0).rate_percent(), 0.0);
    }

    #[test]
    fn soak_time_and_advancing() {
        let t = time::macros::datetime!(2026-12-01 10:00 UTC);
        assert_eq!(
            next_advance_at(RolloutState::Running, t, Some(3600)),
            Some(time::macros::datetime!(2026-12-01 11:00 UTC))
        );
        assert_eq!(next_advance_at(RolloutState::Paused, t, Some(3600)), None);
        assert_eq!(next_advance_at(RolloutState::Running, t, None), None);
        assert_eq!(advanced(&[1, 10, 100], 0), (1, RolloutState::Running));
        assert_eq!(advanced(&[1, 10, 100], 2), (2, RolloutState::Finished));
    }
}
