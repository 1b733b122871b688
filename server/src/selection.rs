//! Which release, if any, to offer a device: the heart of the update check.
//!
//! Given what the device reports about itself, the releases of its product
//! line and channel (newest first, yanked ones already left out by the
//! snapshot) and its entitlement terms, [`select`] returns an [`Outcome`]:
//!
//! 1. **Candidates** are the releases signed for the device's hardware id,
//!    newer than what it runs, with a security counter at least the
//!    device's (a lower one would be refused on the device as a rollback)
//!    and, when the device reports it, a manifest version at least the one
//!    it last accepted (replay).
//! 2. **Entitlement**: candidates the device is not entitled to are
//!    skipped. The newest entitled candidate is the *target*.
//! 3. **Upgrade path**: a release that `requires` version R is reachable
//!    only from R or later. The offer is the newest candidate that is both
//!    entitled and reachable; when it is older than the target it is a
//!    *stepping stone* and the answer names the target. Reachability is
//!    monotonic in the installed version, so offering the newest reachable
//!    release always makes progress towards the target.
//! 4. When no candidate is entitled, the answer is "not entitled", with the
//!    decision for the newest candidate (the one the device would get).
//! 5. **Repair push**: while a repair grant for one release is valid (a
//!    technician pushed that release), releases newer than it are not
//!    candidates, so the device is offered the pushed release (or the
//!    stepping stones towards it) even when a newer one is entitled. A
//!    grant for "the newest compatible release" sets no ceiling. The push
//!    only entitles; every other rule above still holds, so a pushed
//!    release the device would refuse (wrong hardware, a lower counter, not
//!    newer) is never offered.
//! 6. **Rollouts**: a release under a staged rollout is a candidate only
//!    for the devices the rollout admits now (its current phase, its group;
//!    none while paused or aborted; everyone once finished; see
//!    [`crate::domain::rollout`]). A held release is skipped like one for
//!    other hardware, so the newest release the device is admitted to wins,
//!    and an older one it is entitled to is offered meanwhile. Entitlement
//!    is still judged for every release a rollout admits. A valid repair
//!    grant overrides every rollout for its one device.
//!
//! The module is pure: it must never touch I/O, the clock (the caller
//! passes `now` in [`Terms`]) or global state, and it never weakens a check
//! the device makes itself; it only avoids offering what the device would
//! refuse or may not have.

use std::collections::HashMap;
use std::sync::Arc;

use semver::Version;
use time::OffsetDateTime;

use crate::domain::catalogue::{GroupEntry, ReleaseEntry};
use crate::domain::facts::{ContractFacts, GrantFacts};
use crate::domain::rollout::{Admission, RolloutEntry};
use crate::domain::support::SupportWindow;
use crate::entitlement::{self, Decision, ProductFacts, ReleaseFacts};

/// What a device reports about itself in a check.
#[derive(Debug, Clone, Copy)]
pub struct Reported<'a> {
    /// Its hardware id.
    pub hw_id: &'a str,
    /// The version it runs.
    pub current_version: &'a Version,
    /// Its committed anti-rollback counter.
    pub security_counter: u64,
    /// The highest manifest version it has accepted, if it says.
    pub manifest_version: Option<u64>,
}

/// The entitlement terms of one device at one instant.
#[derive(Debug, Clone, Copy)]
pub struct Terms<'a> {
    /// The instant to judge at.
    pub now: OffsetDateTime,
    /// The product and its own terms (EOL or licence).
    pub product: &'a ProductFacts,
    /// The device's service contracts.
    pub contracts: &'a [ContractFacts],
    /// The device's repair grants.
    pub grants: &'a [GrantFacts],
    /// The rollouts it is judged under (`None`: no rollout holds anything).
    pub rollouts: Option<Rollouts<'a>>,
    /// The unit's security support window and its model's name (`None`:
    /// security releases follow the feature rules).
    pub support: Option<(&'a SupportWindow, &'a str)>,
}

/// The rollouts one device is judged under.
#[derive(Debug, Clone, Copy)]
pub struct Rollouts<'a> {
    /// The rollout deciding each release, by release id.
    pub by_release: &'a HashMap<i64, RolloutEntry>,
    /// The device's serial (its membership is a hash of it).
    pub serial: &'a str,
    /// The groups it is in.
    pub groups: &'a [&'a GroupEntry],
}

impl<'a> Terms<'a> {
    /// The release a valid repair grant pins the device to, if any.
    pub fn pushed_version(&self) -> Option<&Version> {
        self.grants
            .iter()
            .filter(|g| self.now < g.expires_at)
            .find_map(|g| g.version.as_ref())
    }

    /// Whether a repair grant is valid now: it overrides rollouts and
    /// maintenance windows for its device.
    pub fn repair_grant_valid(&self) -> bool {
        self.grants.iter().any(|g| self.now < g.expires_at)
    }

    /// The rollout deciding `release` for this device, if any.
    pub fn rollout_of(&self, release: &ReleaseEntry) -> Option<&'a RolloutEntry> {
        self.rollouts.and_then(|r| r.by_release.get(&release.id))
    }

    /// Whether the release's rollout offers it to this device now.
    pub fn admission(&self, release: &ReleaseEntry) -> Admission {
        let (Some(rollouts), Some(rollout)) = (self.rollouts, self.rollout_of(release)) else {
            return Admission::Admitted;
        };
        if self.repair_grant_valid() {
            return Admission::Admitted;
        }
        let in_group = rollout
            .group
            .as_deref()
            .is_some_and(|g| rollouts.groups.iter().any(|x| x.name == g));
        rollout.admission(rollouts.serial, in_group)
    }

    /// The entitlement decision for `release`.
    pub fn decide(&self, release: &ReleaseEntry) -> Decision {
        entitlement::decide_with_support(
            self.now,
            self.product,
            &ReleaseFacts {
                version: release.version.clone(),
                published_at: release.published_at,
                free_for_all: release.free_for_all,
            },
            release.kind.fixes_security(),
            self.support,
            self.contracts,
            self.grants,
        )
    }
}

/// The answer for one device.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Install `release`.
    Offer {
        /// The release to install now.
        release: Arc<ReleaseEntry>,
        /// Why the device may have it.
        decision: Decision,
        /// The release is an intermediate step towards a newer one the
        /// device cannot install directly.
        stepping_stone: bool,
        /// The release the steps lead to (set for stepping stones).
        target_version: Option<Version>,
    },
    /// Nothing newer for this device.
    UpToDate,
    /// Newer releases exist but the device may not have them.
    NotEntitled {
        /// The decision for the release the device would otherwise get.
        decision: Decision,
        /// That release's version.
        version: Version,
    },
}

/// Whether `release` is a candidate for a device reporting `reported`:
/// signed for its hardware, newer, not a rollback, not a replay.
pub fn is_candidate(release: &ReleaseEntry, reported: &Reported<'_>) -> bool {
    release.hw_compat.iter().any(|h| h == reported.hw_id)
        // SemVer precedence: build metadata never makes a release newer.
        && release.version.cmp_precedence(reported.current_version).is_gt()
        && release.security_counter >= reported.security_counter
        && reported
            .manifest_version
            .is_none_or(|m| release.manifest_version >= m)
}

/// Whether a device running `current` may install `release` directly.
pub fn is_reachable(release: &ReleaseEntry, current: &Version) -> bool {
    release
        .requires
        .as_ref()
        .is_none_or(|r| current.cmp_precedence(r).is_ge())
}

/// Chooses what to offer. `releases` must be newest first (as the
/// snapshot keeps them) and belong to the device's product line and
/// channel.
pub fn select(
    releases: &[Arc<ReleaseEntry>],
    reported: &Reported<'_>,
    terms: &Terms<'_>,
) -> Outcome {
    let mut newest: Option<(&Arc<ReleaseEntry>, Decision)> = None;
    let mut target: Option<&Arc<ReleaseEntry>> = None;
    // The newest reachable candidate the device is not entitled to, in
    // case no entitled release is reachable.
    let mut blocked_step: Option<(&Arc<ReleaseEntry>, Decision)> = None;
    let ceiling = terms.pushed_version();
    let under_ceiling =
        |r: &&Arc<ReleaseEntry>| ceiling.is_none_or(|c| r.version.cmp_precedence(c).is_le());
    for release in releases
        .iter()
        .filter(|r| is_candidate(r, reported))
        .filter(under_ceiling)
        .filter(|r| terms.admission(r) == Admission::Admitted)
    {
        let decision = terms.decide(release);
        if newest.is_none() {
            newest = Some((release, decision.clone()));
        }
        let reachable = is_reachable(release, reported.current_version);
        if !decision.entitled {
            if reachable && blocked_step.is_none() {
                blocked_step = Some((release, decision));
            }
            continue;
        }
        let target = *target.get_or_insert(release);
        if reachable {
            let stepping_stone = !Arc::ptr_eq(target, release);
            return Outcome::Offer {
                release: release.clone(),
                decision,
                stepping_stone,
                target_version: stepping_stone.then(|| target.version.clone()),
            };
        }
    }
    match (newest, target, blocked_step) {
        // Nothing newer for this hardware.
        (None, _, _) => Outcome::UpToDate,
        // Nothing entitled: explain the newest.
        (Some((r, decision)), None, _) => Outcome::NotEntitled {
            decision,
            version: r.version.clone(),
        },
        // Entitled releases exist, but the way there goes through a
        // release the device may not have.
        (Some(_), Some(_), Some((r, decision))) => Outcome::NotEntitled {
            decision,
            version: r.version.clone(),
        },
        // Entitled releases exist but none is reachable: no upgrade path
        // is published on this channel (a missing or yanked stepping
        // stone). The device can do nothing about it; release engineers can.
        (Some(_), Some(t), None) => {
            tracing::warn!(
                product_line = %t.product_line,
                channel = %t.channel,
                target = %t.version,
                from = %reported.current_version,
                "no published upgrade path to the newest release"
            );
            Outcome::UpToDate
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::catalogue::{Catalogue, LoadedRelease, SharedRaw};
    use crate::domain::facts::LicenceFacts;
    use crate::entitlement::{Code, ModelFacts};
    use time::macros::{date, datetime};
    use time::{Date, Duration};

    const NOW: OffsetDateTime = datetime!(2026-03-15 12:00 UTC);
    const EOL: Date = date!(2025 - 06 - 30);
    const BEFORE_EOL: OffsetDateTime = datetime!(2025-01-10 09:00 UTC);
    const AFTER_EOL: OffsetDateTime = datetime!(2025-09-01 09:00 UTC);

    fn rel(version: &str) -> ReleaseEntry {
        ReleaseEntry {
            id: 0,
            product_line: "encoders".into(),
            channel: "stable".into(),
            version: version.parse().unwrap(),
            manifest_version: 1,
            security_counter: 1,
            requires: None,
            hw_compat: vec!["enc-r1".into(), "enc-r2".into()],
            published_at: BEFORE_EOL,
            free_for_all: false,
            kind: firmup_client::ReleaseKind::Feature,
            envelope: SharedRaw::from_bytes(b"{}").unwrap(),
            images: vec![],
        }
    }

    fn requires(mut r: ReleaseEntry, v: &str) -> ReleaseEntry {
        r.requires = Some(v.parse().unwrap());
        r
    }

    fn published(mut r: ReleaseEntry, at: OffsetDateTime) -> ReleaseEntry {
        r.published_at = at;
        r
    }

    /// Newest first, as the snapshot keeps them.
    fn list(mut rs: Vec<ReleaseEntry>) -> Vec<Arc<ReleaseEntry>> {
        rs.sort_by(|a, b| b.version.cmp_precedence(&a.version));
        rs.into_iter().map(Arc::new).collect()
    }

    fn hw(eol: Option<Date>) -> ProductFacts {
        ProductFacts::Hardware(ModelFacts {
            model_id: "enc-4k".into(),
            model_name: "Encoder 4K".into(),
            eol,
        })
    }

    struct Case {
        product: ProductFacts,
        contracts: Vec<ContractFacts>,
        grants: Vec<GrantFacts>,
        hw_id: &'static str,
        current: Version,
        counter: u64,
        manifest_version: Option<u64>,
        rollouts: Option<HashMap<i64, RolloutEntry>>,
        serial: &'static str,
        groups: Vec<GroupEntry>,
    }

    impl Case {
        fn new(current: &str) -> Case {
            Case {
                product: hw(None),
                contracts: vec![],
                grants: vec![],
                hw_id: "enc-r2",
                current: current.parse().unwrap(),
                counter: 1,
                manifest_version: None,
                rollouts: None,
                serial: "SN-1",
                groups: vec![],
            }
        }

        fn run(&self, releases: &[Arc<ReleaseEntry>]) -> Outcome {
            let reported = Reported {
                hw_id: self.hw_id,
                current_version: &self.current,
                security_counter: self.counter,
                manifest_version: self.manifest_version,
            };
            let groups: Vec<&GroupEntry> = self.groups.iter().collect();
            let terms = Terms {
                now: NOW,
                product: &self.product,
                contracts: &self.contracts,
                grants: &self.grants,
                rollouts: self.rollouts.as_ref().map(|by_release| Rollouts {
                    by_release,
                    serial: self.serial,
                    groups: &groups,
                }),
                support: None,
            };
            select(releases, &reported, &terms)
        }
    }

    /// (version, stepping_stone, target, code) of an offer; panics otherwise.
    fn offered(o: Outcome) -> (String, bool, Option<String>, Code) {
        match o {
            Outcome::Offer {
                release,
                decision,
                stepping_stone,
                target_version,
            } => {
                assert!(decision.entitled);
                (
                    release.version.to_string(),
                    stepping_stone,
                    target_version.map(|v| v.to_string()),
                    decision.code,
                )
            }
            other => panic!("expected an offer, got {other:?}"),
        }
    }

    #[test]
    fn offers_the_newest_compatible_release() {
        let rs = list(vec![rel("1.1.0"), rel("1.3.0"), rel("1.2.0")]);
        assert_eq!(
            offered(Case::new("1.0.0").run(&rs)),
            ("1.3.0".into(), false, None, Code::InProduction)
        );
    }

    #[test]
    fn up_to_date_when_nothing_is_newer() {
        let rs = list(vec![rel("1.1.0"), rel("1.3.0")]);
        assert!(matches!(Case::new("1.3.0").run(&rs), Outcome::UpToDate));
        assert!(matches!(Case::new("2.0.0").run(&rs), Outcome::UpToDate));
        assert!(matches!(Case::new("1.0.0").run(&[]), Outcome::UpToDate));
    }

    #[test]
    fn prerelease_of_the_running_version_is_older() {
        let rs = list(vec![rel("2.0.0")]);
        assert_eq!(offered(Case::new("2.0.0-rc.1").run(&rs)).0, "2.0.0");
        let rs = list(vec![rel("2.0.0-rc.2")]);
        assert!(matches!(Case::new("2.0.0").run(&rs), Outcome::UpToDate));
    }

    #[test]
    fn stepping_stone_when_the_newest_requires_an_intermediate() {
        let rs = list(vec![rel("2.0.0"), requires(rel("3.0.0"), "2.0.0")]);
        assert_eq!(
            offered(Case::new("1.0.0").run(&rs)),
            (
                "2.0.0".into(),
                true,
                Some("3.0.0".into()),
                Code::InProduction
            )
        );
        // Once on the stepping stone, the target is offered directly.
        assert_eq!(
            offered(Case::new("2.0.0").run(&rs)),
            ("3.0.0".into(), false, None, Code::InProduction)
        );
    }

    #[test]
    fn stepping_stone_is_the_newest_reachable_release() {
        let rs = list(vec![
            rel("1.5.0"),
            rel("2.0.0"),
            requires(rel("2.5.0"), "2.0.0"),
            requires(rel("3.0.0"), "2.5.0"),
        ]);
        assert_eq!(
            offered(Case::new("1.0.0").run(&rs)),
            (
                "2.0.0".into(),
                true,
                Some("3.0.0".into()),
                Code::InProduction
            )
        );
        assert_eq!(
            offered(Case::new("2.0.0").run(&rs)),
            (
                "2.5.0".into(),
                true,
                Some("3.0.0".into()),
                Code::InProduction
            )
        );
        assert_eq!(offered(Case::new("2.5.0").run(&rs)).0, "3.0.0");
    }

    #[test]
    fn build_metadata_has_no_precedence() {
        // Installed 2.1.0 is not offered 2.1.0+rebuild.2 as an upgrade.
        let rs = list(vec![rel("2.1.0+rebuild.2")]);
        let current: Version = "2.1.0".parse().unwrap();
        let reported = Reported {
            hw_id: "enc-r2",
            current_version: &current,
            security_counter: 0,
            manifest_version: None,
        };
        assert!(!is_candidate(&rs[0], &reported));
        // requires 2.0.0+build.7 is met by a device on 2.0.0.
        let r = requires(rel("3.0.0"), "2.0.0+build.7");
        assert!(is_reachable(&r, &"2.0.0".parse().unwrap()));
    }

    #[test]
    fn requires_exactly_the_running_version_is_reachable() {
        let rs = list(vec![requires(rel("2.1.0"), "2.0.0")]);
        assert_eq!(offered(Case::new("2.0.0").run(&rs)).0, "2.1.0");
        assert_eq!(offered(Case::new("2.0.5").run(&rs)).0, "2.1.0");
    }

    #[test]
    fn no_published_path_is_up_to_date() {
        // The stepping stone 2.0.0 was never published (or was yanked).
        let rs = list(vec![requires(rel("3.0.0"), "2.0.0")]);
        assert!(matches!(Case::new("1.0.0").run(&rs), Outcome::UpToDate));
    }

    #[test]
    fn other_hardware_is_not_offered() {
        let mut other = rel("1.4.0");
        other.hw_compat = vec!["enc-r3".into()];
        let rs = list(vec![rel("1.1.0"), other]);
        assert_eq!(offered(Case::new("1.0.0").run(&rs)).0, "1.1.0");
        let mut c = Case::new("1.0.0");
        c.hw_id = "dec-r1";
        assert!(matches!(c.run(&rs), Outcome::UpToDate));
    }

    #[test]
    fn lower_security_counter_is_not_offered() {
        let mut low = rel("1.4.0");
        low.security_counter = 2;
        let mut ok = rel("1.2.0");
        ok.security_counter = 3;
        let rs = list(vec![low, ok]);
        let mut c = Case::new("1.0.0");
        c.counter = 3;
        assert_eq!(offered(c.run(&rs)).0, "1.2.0");
        c.counter = 4;
        assert!(matches!(c.run(&rs), Outcome::UpToDate));
    }

    #[test]
    fn replayed_manifest_version_is_not_offered() {
        let mut old = rel("1.4.0");
        old.manifest_version = 5;
        let mut fresh = rel("1.2.0");
        fresh.manifest_version = 9;
        let rs = list(vec![old, fresh]);
        let mut c = Case::new("1.0.0");
        assert_eq!(offered(c.run(&rs)).0, "1.4.0", "not reported: no filter");
        c.manifest_version = Some(9);
        assert_eq!(offered(c.run(&rs)).0, "1.2.0");
        c.manifest_version = Some(10);
        assert!(matches!(c.run(&rs), Outcome::UpToDate));
    }

    #[test]
    fn channel_releases_come_from_the_snapshot() {
        let mut beta = rel("2.0.0-beta.1");
        beta.channel = "beta".into();
        beta.id = 2;
        let mut stable = rel("1.1.0");
        stable.id = 1;
        let c = Catalogue::assemble(
            1,
            vec![],
            vec![],
            vec![],
            [stable, beta]
                .into_iter()
                .map(|entry| LoadedRelease {
                    entry,
                    yanked_at: None,
                })
                .collect(),
        );
        assert_eq!(
            offered(Case::new("1.0.0").run(c.releases("encoders", "stable"))).0,
            "1.1.0"
        );
        assert_eq!(
            offered(Case::new("1.0.0").run(c.releases("encoders", "beta"))).0,
            "2.0.0-beta.1"
        );
    }

    #[test]
    fn yanked_release_is_never_offered() {
        let mut yanked = rel("1.2.0");
        yanked.id = 2;
        let mut older = rel("1.1.0");
        older.id = 1;
        let c = Catalogue::assemble(
            1,
            vec![],
            vec![],
            vec![],
            vec![
                LoadedRelease {
                    entry: yanked,
                    yanked_at: Some(NOW - Duration::hours(1)),
                },
                LoadedRelease {
                    entry: older,
                    yanked_at: None,
                },
            ],
        );
        assert_eq!(
            offered(Case::new("1.0.0").run(c.releases("encoders", "stable"))).0,
            "1.1.0"
        );
    }

    #[test]
    fn after_eol_falls_back_to_the_newest_entitled_release() {
        let rs = list(vec![
            published(rel("1.1.0"), BEFORE_EOL),
            published(rel("1.2.0"), AFTER_EOL),
        ]);
        let mut c = Case::new("1.0.0");
        c.product = hw(Some(EOL));
        assert_eq!(
            offered(c.run(&rs)),
            ("1.1.0".into(), false, None, Code::PublishedBeforeEol)
        );
    }

    #[test]
    fn not_entitled_to_anything_newer_names_the_newest() {
        let rs = list(vec![
            published(rel("1.1.0"), AFTER_EOL),
            published(rel("1.2.0"), AFTER_EOL),
        ]);
        let mut c = Case::new("1.0.0");
        c.product = hw(Some(EOL));
        match c.run(&rs) {
            Outcome::NotEntitled { decision, version } => {
                assert_eq!(version.to_string(), "1.2.0");
                assert_eq!(decision.code, Code::EolNoContract);
                assert!(!decision.entitled);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn contract_entitles_releases_after_eol() {
        let rs = list(vec![
            published(rel("1.1.0"), BEFORE_EOL),
            published(rel("1.2.0"), AFTER_EOL),
        ]);
        let mut c = Case::new("1.0.0");
        c.product = hw(Some(EOL));
        c.contracts = vec![ContractFacts {
            contract_id: "SC-1".into(),
            starts: date!(2026 - 01 - 01),
            ends: date!(2026 - 12 - 31),
        }];
        assert_eq!(
            offered(c.run(&rs)),
            ("1.2.0".into(), false, None, Code::ServiceContract)
        );
    }

    #[test]
    fn free_for_all_after_eol_is_offered() {
        let mut fix = published(rel("1.2.0"), AFTER_EOL);
        fix.free_for_all = true;
        let rs = list(vec![published(rel("1.1.0"), BEFORE_EOL), fix]);
        let mut c = Case::new("1.0.0");
        c.product = hw(Some(EOL));
        assert_eq!(
            offered(c.run(&rs)),
            ("1.2.0".into(), false, None, Code::FreeForAll)
        );
    }

    #[test]
    fn stepping_stone_target_is_the_newest_entitled_release() {
        // 4.0.0 is after EOL (not entitled); 3.0.0 is the target.
        let rs = list(vec![
            rel("2.0.0"),
            requires(rel("3.0.0"), "2.0.0"),
            published(requires(rel("4.0.0"), "3.0.0"), AFTER_EOL),
        ]);
        let mut c = Case::new("1.0.0");
        c.product = hw(Some(EOL));
        assert_eq!(
            offered(c.run(&rs)),
            (
                "2.0.0".into(),
                true,
                Some("3.0.0".into()),
                Code::PublishedBeforeEol
            )
        );
    }

    #[test]
    fn unreachable_unentitled_newest_is_no_stepping_stone() {
        let rs = list(vec![
            rel("2.0.0"),
            published(requires(rel("3.0.0"), "2.0.0"), AFTER_EOL),
        ]);
        let mut c = Case::new("1.0.0");
        c.product = hw(Some(EOL));
        assert_eq!(
            offered(c.run(&rs)),
            ("2.0.0".into(), false, None, Code::PublishedBeforeEol)
        );
    }

    #[test]
    fn unentitled_stepping_stone_blocks_the_path() {
        // Only a licence renewal would open 2.0.0, the way to 3.0.0; 3.0.0
        // itself is free for all.
        let mut target = published(requires(rel("3.0.0"), "2.0.0"), AFTER_EOL);
        target.free_for_all = true;
        let rs = list(vec![published(rel("2.0.0"), AFTER_EOL), target]);
        let mut c = Case::new("1.0.0");
        c.product = ProductFacts::Software {
            product_name: "StreamSuite".into(),
            licence: Some(LicenceFacts {
                licence_id: "LIC-1".into(),
                ends: Some(EOL),
            }),
        };
        match c.run(&rs) {
            Outcome::NotEntitled { decision, version } => {
                assert_eq!(version.to_string(), "2.0.0");
                assert_eq!(decision.code, Code::LicenceExpired);
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn software_licence_decides() {
        let rs = list(vec![
            published(rel("1.1.0"), BEFORE_EOL),
            published(rel("1.2.0"), AFTER_EOL),
        ]);
        let software = |ends: Option<Date>| ProductFacts::Software {
            product_name: "StreamSuite".into(),
            licence: Some(LicenceFacts {
                licence_id: "LIC-1".into(),
                ends,
            }),
        };
        let mut c = Case::new("1.0.0");
        c.product = software(None);
        assert_eq!(
            offered(c.run(&rs)),
            ("1.2.0".into(), false, None, Code::LicencePerpetual)
        );
        c.product = software(Some(EOL));
        assert_eq!(
            offered(c.run(&rs)),
            ("1.1.0".into(), false, None, Code::LicenceCovers)
        );
        c.product = ProductFacts::Software {
            product_name: "StreamSuite".into(),
            licence: None,
        };
        assert!(matches!(
            c.run(&rs),
            Outcome::NotEntitled { decision, .. } if decision.code == Code::NoLicence
        ));
    }

    fn push(version: Option<&str>, expires_at: OffsetDateTime) -> GrantFacts {
        GrantFacts {
            grant_id: "push_1".into(),
            technician: "Ada Lovelace".into(),
            version: version.map(|v| v.parse().unwrap()),
            expires_at,
        }
    }

    #[test]
    fn a_pushed_release_is_offered_to_a_discontinued_device_as_a_repair_grant() {
        let rs = list(vec![
            published(rel("1.0.0"), BEFORE_EOL),
            published(rel("1.1.0"), AFTER_EOL),
            published(rel("1.2.0"), AFTER_EOL),
        ]);
        let mut c = Case::new("1.0.0");
        c.product = hw(Some(EOL));
        assert!(matches!(
            c.run(&rs),
            Outcome::NotEntitled { decision, .. } if decision.code == Code::EolNoContract
        ));
        c.grants = vec![push(Some("1.1.0"), NOW + Duration::days(7))];
        assert_eq!(
            offered(c.run(&rs)),
            ("1.1.0".into(), false, None, Code::RepairGrant)
        );
        // "The newest compatible release": no ceiling.
        c.grants = vec![push(None, NOW + Duration::days(7))];
        assert_eq!(
            offered(c.run(&rs)),
            ("1.2.0".into(), false, None, Code::RepairGrant)
        );
    }

    #[test]
    fn a_push_pins_the_offer_even_when_a_newer_release_is_entitled() {
        let rs = list(vec![rel("1.0.0"), rel("1.1.0"), rel("1.2.0")]);
        let mut c = Case::new("1.0.0");
        c.grants = vec![push(Some("1.1.0"), NOW + Duration::days(7))];
        assert_eq!(
            offered(c.run(&rs)),
            ("1.1.0".into(), false, None, Code::InProduction)
        );
        // Once installed, the pinned device is up to date until the push ends.
        let mut done = Case::new("1.1.0");
        done.grants = c.grants.clone();
        assert!(matches!(done.run(&rs), Outcome::UpToDate));
    }

    #[test]
    fn an_expired_push_neither_pins_nor_entitles() {
        let rs = list(vec![
            published(rel("1.0.0"), BEFORE_EOL),
            published(rel("1.1.0"), AFTER_EOL),
        ]);
        let mut c = Case::new("1.0.0");
        c.product = hw(Some(EOL));
        c.grants = vec![push(Some("1.1.0"), NOW)];
        assert!(matches!(
            c.run(&rs),
            Outcome::NotEntitled { decision, .. } if decision.code == Code::EolNoContract
        ));
        let mut live = Case::new("1.0.0");
        live.grants = vec![push(Some("1.0.5"), NOW)];
        assert_eq!(
            offered(live.run(&rs)).0,
            "1.1.0",
            "an expired push sets no ceiling"
        );
    }

    #[test]
    fn a_push_never_offers_what_the_device_would_refuse() {
        let mut low = published(rel("1.1.0"), AFTER_EOL);
        low.security_counter = 1;
        let rs = list(vec![published(rel("1.0.0"), BEFORE_EOL), low]);
        let mut c = Case::new("1.0.0");
        c.product = hw(Some(EOL));
        c.counter = 2;
        c.grants = vec![push(Some("1.1.0"), NOW + Duration::days(7))];
        assert!(matches!(c.run(&rs), Outcome::UpToDate));
        let mut other_hw = Case::new("1.0.0");
        other_hw.product = hw(Some(EOL));
        other_hw.hw_id = "dec-r1";
        other_hw.grants = c.grants.clone();
        assert!(matches!(other_hw.run(&rs), Outcome::UpToDate));
    }

    fn with_id(mut r: ReleaseEntry, id: i64) -> ReleaseEntry {
        r.id = id;
        r
    }

    fn rollout(
        release_id: i64,
        phase: usize,
        state: crate::domain::rollout::RolloutState,
    ) -> RolloutEntry {
        RolloutEntry {
            id: "ro_test".into(),
            release_id,
            group: None,
            phases: vec![1, 100],
            phase,
            state,
        }
    }

    /// A serial outside the first 1% of `ro_test` and one inside it.
    fn serials_around_the_first_phase() -> (&'static str, &'static str) {
        let outside = ["SN-1", "SN-2", "SN-3", "SN-4"]
            .into_iter()
            .find(|s| crate::domain::rollout::bucket("ro_test", s) >= 100)
            .unwrap();
        let inside = (0..100_000)
            .map(|i| format!("SN-{i}"))
            .find(|s| crate::domain::rollout::bucket("ro_test", s) < 100)
            .unwrap();
        (outside, Box::leak(inside.into_boxed_str()))
    }

    #[test]
    fn a_release_held_by_its_rollout_leaves_the_older_one_offered() {
        use crate::domain::rollout::RolloutState::*;
        let rs = list(vec![with_id(rel("1.1.0"), 1), with_id(rel("1.2.0"), 2)]);
        let (outside, inside) = serials_around_the_first_phase();
        let mut c = Case::new("1.0.0");
        c.rollouts = Some([(2, rollout(2, 0, Running))].into());
        c.serial = outside;
        assert_eq!(offered(c.run(&rs)).0, "1.1.0");
        // The newest release the device is in the rollout for wins.
        c.serial = inside;
        assert_eq!(offered(c.run(&rs)).0, "1.2.0");
        // Paused and aborted rollouts offer nothing new, even to members.
        for held in [Paused, Aborted] {
            c.rollouts = Some([(2, rollout(2, 0, held))].into());
            assert_eq!(offered(c.run(&rs)).0, "1.1.0", "{held}");
        }
        // The second phase is 100%, and a finished rollout holds nothing.
        c.serial = outside;
        for open in [rollout(2, 1, Running), rollout(2, 0, Finished)] {
            c.rollouts = Some([(2, open)].into());
            assert_eq!(offered(c.run(&rs)).0, "1.2.0");
        }
        // Held and nothing older: up to date, not "not entitled".
        let only = list(vec![with_id(rel("1.2.0"), 2)]);
        c.rollouts = Some([(2, rollout(2, 0, Paused))].into());
        assert!(matches!(c.run(&only), Outcome::UpToDate));
    }

    #[test]
    fn a_rollout_never_offers_what_the_device_is_not_entitled_to() {
        use crate::domain::rollout::RolloutState::*;
        let rs = list(vec![with_id(published(rel("1.2.0"), AFTER_EOL), 2)]);
        let mut c = Case::new("1.0.0");
        c.product = hw(Some(EOL));
        c.rollouts = Some([(2, rollout(2, 0, Finished))].into());
        assert!(matches!(
            c.run(&rs),
            Outcome::NotEntitled { decision, .. } if decision.code == Code::EolNoContract
        ));
    }

    #[test]
    fn a_group_limited_rollout_takes_in_only_its_group() {
        use crate::domain::rollout::RolloutState::*;
        let rs = list(vec![with_id(rel("1.2.0"), 2)]);
        let mut r = rollout(2, 1, Running);
        r.group = Some("studio".into());
        let mut c = Case::new("1.0.0");
        c.rollouts = Some([(2, r)].into());
        assert!(matches!(c.run(&rs), Outcome::UpToDate));
        c.groups = vec![GroupEntry {
            name: "studio".into(),
            filter: None,
            window: None,
        }];
        assert_eq!(offered(c.run(&rs)).0, "1.2.0");
    }

    #[test]
    fn a_repair_push_overrides_the_phases_for_its_device() {
        use crate::domain::rollout::RolloutState::*;
        let rs = list(vec![with_id(rel("1.1.0"), 1), with_id(rel("1.2.0"), 2)]);
        let (outside, _) = serials_around_the_first_phase();
        let mut c = Case::new("1.0.0");
        c.serial = outside;
        c.rollouts = Some([(2, rollout(2, 0, Paused))].into());
        c.grants = vec![push(Some("1.2.0"), NOW + Duration::days(7))];
        assert_eq!(
            offered(c.run(&rs)),
            ("1.2.0".into(), false, None, Code::InProduction)
        );
        // Once the push has expired, the rollout holds again.
        c.grants = vec![push(Some("1.2.0"), NOW)];
        assert_eq!(offered(c.run(&rs)).0, "1.1.0");
    }
}
