//! Entitlement: may this device have this release, and why?
//!
//! This module turns the vendors' after-sales terms into a [`Decision`]:
//!
//! * **Hardware** gets every release published on or before the end (UTC) of
//!   its model's end-of-life day for free ("lifetime free upgrades until
//!   discontinued"); a model without an EOL date is still in production and
//!   gets everything. A release published after EOL is offered only when the
//!   release engineers marked it free for all, with an active service
//!   contract, or with a valid repair grant.
//! * **Software** with a licence gets every release published on or before
//!   the end (UTC) of the licence end date; a licence without an end date is
//!   perpetual. A release the licence does not cover (or any release, when
//!   there is no licence) is offered when marked free for all, with an active
//!   service contract, or with a valid repair grant.
//!
//! When several reasons allow, the most natural one is reported: the
//! product's own terms first (in production / published before EOL, or the
//! licence), then free for all, then the service contract, then the repair
//! grant.
//!
//! The module is pure: it must never touch I/O (no files, network, database,
//! clock or environment) and is not async; the caller supplies `now` and all
//! the facts. [`Decision::summary`] is shown to devices and must never leak
//! contract ids, licence ids, technician names or any date other than the
//! public EOL date; those belong in [`Decision::explanation`] only, which is
//! for technicians and admins.

use serde::Serialize;
use time::{Date, OffsetDateTime, UtcOffset};

use crate::domain::facts::{ContractFacts, GrantFacts, LicenceFacts};

/// Facts about a hardware model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelFacts {
    /// Stable identifier of the model.
    pub model_id: String,
    /// Human-readable model name, used in explanations.
    pub model_name: String,
    /// End-of-life (discontinuation) date; `None` while still in production.
    pub eol: Option<Date>,
}

/// What kind of product the device is, with the facts its terms depend on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProductFacts {
    /// A hardware model, free until discontinued.
    Hardware(ModelFacts),
    /// A software product, covered by a licence.
    Software {
        /// Human-readable product name, used in explanations.
        product_name: String,
        /// The device's licence, if it has one.
        licence: Option<LicenceFacts>,
    },
}

/// Facts about the release being asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReleaseFacts {
    /// Version of the release.
    pub version: semver::Version,
    /// When the release was published (any offset; compared as an instant).
    pub published_at: OffsetDateTime,
    /// Set by the release engineers to offer the release to every device
    /// (e.g. a critical security fix).
    pub free_for_all: bool,
}

/// The outcome of [`decide`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Decision {
    /// Whether the device may have the release.
    pub entitled: bool,
    /// Stable machine-readable reason.
    pub code: Code,
    /// Short text safe to show to the device: no contract or licence ids, no
    /// technician names, no dates other than the public EOL date.
    pub summary: String,
    /// Full sentence for technicians and admins, with ids and dates.
    pub explanation: String,
}

/// Stable machine-readable reason of a [`Decision`].
///
/// Serialised in `snake_case`, the same strings as [`Code::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    /// Entitled: the hardware model has no EOL date.
    InProduction,
    /// Entitled: the release was published on or before the model's EOL day.
    PublishedBeforeEol,
    /// Entitled: the release is marked free for all.
    FreeForAll,
    /// Entitled: an active service contract covers the release.
    ServiceContract,
    /// Entitled: a valid repair grant covers the release.
    RepairGrant,
    /// Not entitled: published after the model's EOL, nothing else allows it.
    EolNoContract,
    /// Entitled: the software licence is perpetual.
    LicencePerpetual,
    /// Entitled: the release was published on or before the licence end date.
    LicenceCovers,
    /// Not entitled: the licence does not cover the release, nothing else
    /// allows it.
    LicenceExpired,
    /// Not entitled: no licence, nothing else allows it.
    NoLicence,
    /// Entitled: a security (or mixed) release inside the unit's security
    /// support period, whatever the EOL, licence or contract say.
    SecuritySupport,
}

impl Code {
    /// The stable machine code, identical to the serialised form.
    pub fn as_str(&self) -> &'static str {
        match self {
            Code::InProduction => "in_production",
            Code::PublishedBeforeEol => "published_before_eol",
            Code::FreeForAll => "free_for_all",
            Code::ServiceContract => "service_contract",
            Code::RepairGrant => "repair_grant",
            Code::EolNoContract => "eol_no_contract",
            Code::LicencePerpetual => "licence_perpetual",
            Code::LicenceCovers => "licence_covers",
            Code::LicenceExpired => "licence_expired",
            Code::NoLicence => "no_licence",
            Code::SecuritySupport => "security_support",
        }
    }
}

/// Whether `code` is an entitlement by the product's own terms (in
/// production, published before EOL, or the licence): those are reported
/// before security support.
fn by_own_terms(code: Code) -> bool {
    matches!(
        code,
        Code::InProduction
            | Code::PublishedBeforeEol
            | Code::LicencePerpetual
            | Code::LicenceCovers
    )
}

/// [`decide`] with the Cyber Resilience Act's rule on top: a release that
/// fixes security (`fixes_security`, from its signed kind) is free while the
/// unit's security support runs (`support`; `None`: no window known), with
/// the code [`Code::SecuritySupport`], unless the product's own terms
/// already entitle. Outside the window the feature rules decide, and a
/// refusal says when support ended.
pub fn decide_with_support(
    now: OffsetDateTime,
    product: &ProductFacts,
    release: &ReleaseFacts,
    fixes_security: bool,
    support: Option<(&crate::domain::support::SupportWindow, &str)>,
    contracts: &[ContractFacts],
    grants: &[GrantFacts],
) -> Decision {
    let base = decide(now, product, release, contracts, grants);
    if !fixes_security || by_own_terms(base.code) {
        return base;
    }
    let Some((window, model_name)) = support else {
        return base;
    };
    let today = utc_date(now);
    let version = &release.version;
    if window.covers(today) {
        return Decision {
            entitled: true,
            code: Code::SecuritySupport,
            summary: "Free security update: this unit is inside its security support period."
                .to_owned(),
            explanation: format!(
                "Release {version} is a security fix, free for the whole support period: {}",
                window.explanation(model_name)
            ),
        };
    }
    if base.entitled {
        return base;
    }
    let mut explanation = base.explanation;
    explanation.pop();
    explanation.push_str(&format!(
        "; release {version} is a security fix, but security support for this unit ended on {}.",
        fmt_date(window.ends)
    ));
    Decision {
        explanation,
        ..base
    }
}

/// Decides whether the device described by `product`, `contracts` and
/// `grants` is entitled to `release` at `now`.
///
/// Contracts are active when `starts <= today <= ends`, with `today` the UTC
/// date of `now`. Grants are valid when `now < expires_at` and they are for
/// any release or exactly `release.version`. When several contracts or grants
/// apply, the first in the order given is reported.
pub fn decide(
    now: OffsetDateTime,
    product: &ProductFacts,
    release: &ReleaseFacts,
    contracts: &[ContractFacts],
    grants: &[GrantFacts],
) -> Decision {
    let version = &release.version;
    let published = fmt_date(utc_date(release.published_at));
    match product {
        ProductFacts::Hardware(model) => {
            let name = &model.model_name;
            let Some(eol) = model.eol else {
                return Decision {
                    entitled: true,
                    code: Code::InProduction,
                    summary: "Free upgrade: model still in production.".to_owned(),
                    explanation: format!(
                        "Model {name} is still in production (no end-of-life date); \
                         release {version} published on {published} is a free upgrade."
                    ),
                };
            };
            let eol_s = fmt_date(eol);
            if published_by_end_of(release.published_at, eol) {
                return Decision {
                    entitled: true,
                    code: Code::PublishedBeforeEol,
                    summary: format!(
                        "Free upgrade: release published before the model was \
                         discontinued on {eol_s}."
                    ),
                    explanation: format!(
                        "Model {name} was discontinued on {eol_s}; release {version} was \
                         published on {published}, on or before that date, so it is a \
                         free upgrade."
                    ),
                };
            }
            let context = format!(
                "Model {name} was discontinued on {eol_s}; release {version} was published \
                 on {published}"
            );
            beyond_terms(
                now,
                release,
                contracts,
                grants,
                &context,
                Refusal {
                    code: Code::EolNoContract,
                    summary: "Not entitled: model discontinued before this release; \
                              a service contract is needed.",
                },
            )
        }
        ProductFacts::Software {
            product_name,
            licence,
        } => {
            let Some(licence) = licence else {
                let context = format!(
                    "Product {product_name} has no licence for this device; release \
                     {version} was published on {published}"
                );
                return beyond_terms(
                    now,
                    release,
                    contracts,
                    grants,
                    &context,
                    Refusal {
                        code: Code::NoLicence,
                        summary: "Not entitled: no licence for this product.",
                    },
                );
            };
            let id = &licence.licence_id;
            let Some(ends) = licence.ends else {
                return Decision {
                    entitled: true,
                    code: Code::LicencePerpetual,
                    summary: "Free upgrade: perpetual licence.".to_owned(),
                    explanation: format!(
                        "Product {product_name} licence {id} is perpetual (no end date); \
                         release {version} published on {published} is a free upgrade."
                    ),
                };
            };
            let ends_s = fmt_date(ends);
            if published_by_end_of(release.published_at, ends) {
                return Decision {
                    entitled: true,
                    code: Code::LicenceCovers,
                    summary: "Free upgrade: release covered by the licence.".to_owned(),
                    explanation: format!(
                        "Product {product_name} licence {id} covers releases published up \
                         to {ends_s}; release {version} was published on {published}, so \
                         it is covered."
                    ),
                };
            }
            let context = format!(
                "Product {product_name} licence {id} covers releases published up to \
                 {ends_s}; release {version} was published on {published}"
            );
            beyond_terms(
                now,
                release,
                contracts,
                grants,
                &context,
                Refusal {
                    code: Code::LicenceExpired,
                    summary: "Not entitled: the licence does not cover this release; \
                              a licence renewal or service contract is needed.",
                },
            )
        }
    }
}

/// What to answer when nothing beyond the product's own terms allows.
struct Refusal {
    code: Code,
    summary: &'static str,
}

/// The reasons beyond the product's own terms, in precedence order: free for
/// all, active contract, valid grant; otherwise `refusal`, with the expired,
/// not yet started or mismatched contracts and grants listed for support.
fn beyond_terms(
    now: OffsetDateTime,
    release: &ReleaseFacts,
    contracts: &[ContractFacts],
    grants: &[GrantFacts],
    context: &str,
    refusal: Refusal,
) -> Decision {
    if release.free_for_all {
        return Decision {
            entitled: true,
            code: Code::FreeForAll,
            summary: "Free upgrade: this release is offered to all devices.".to_owned(),
            explanation: format!("{context}; the release is marked free for all."),
        };
    }
    let today = utc_date(now);
    if let Some(c) = contracts
        .iter()
        .find(|c| c.starts <= today && today <= c.ends)
    {
        return Decision {
            entitled: true,
            code: Code::ServiceContract,
            summary: "Entitled: covered by an active service contract.".to_owned(),
            explanation: format!(
                "{context}; entitled by service contract {} ({} to {}).",
                c.contract_id,
                fmt_date(c.starts),
                fmt_date(c.ends)
            ),
        };
    }
    let version = &release.version;
    let for_release = |g: &GrantFacts| g.version.as_ref().is_none_or(|v| v == version);
    if let Some(g) = grants.iter().find(|g| now < g.expires_at && for_release(g)) {
        let scope = match &g.version {
            None => "any release".to_owned(),
            Some(v) => format!("release {v}"),
        };
        return Decision {
            entitled: true,
            code: Code::RepairGrant,
            summary: "Entitled: covered by a repair grant.".to_owned(),
            explanation: format!(
                "{context}; entitled by repair grant {} from technician {} (for {scope}, \
                 valid until {}).",
                g.grant_id,
                g.technician,
                fmt_instant(g.expires_at)
            ),
        };
    }
    let mut explanation = format!("{context}; no active service contract");
    for c in contracts {
        if today < c.starts {
            explanation.push_str(&format!(
                "; service contract {} starts on {}",
                c.contract_id,
                fmt_date(c.starts)
            ));
        } else {
            explanation.push_str(&format!(
                "; service contract {} ended on {}",
                c.contract_id,
                fmt_date(c.ends)
            ));
        }
    }
    for g in grants {
        if now >= g.expires_at {
            explanation.push_str(&format!(
                "; repair grant {} from technician {} expired at {}",
                g.grant_id,
                g.technician,
                fmt_instant(g.expires_at)
            ));
        } else if let Some(v) = &g.version {
            explanation.push_str(&format!(
                "; repair grant {} from technician {} is for release {v} only",
                g.grant_id, g.technician
            ));
        }
    }
    explanation.push('.');
    Decision {
        entitled: false,
        code: refusal.code,
        summary: refusal.summary.to_owned(),
        explanation,
    }
}

/// Whether `instant` is at or before the end of `day` in UTC.
fn published_by_end_of(instant: OffsetDateTime, day: Date) -> bool {
    match day.next_day() {
        Some(next) => instant < next.midnight().assume_utc(),
        // `day` is the last representable date: every instant is before its end.
        None => true,
    }
}

/// The UTC calendar date of `instant`.
fn utc_date(instant: OffsetDateTime) -> Date {
    instant.to_offset(UtcOffset::UTC).date()
}

/// `YYYY-MM-DD`.
fn fmt_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// `YYYY-MM-DD HH:MM:SS UTC`.
fn fmt_instant(instant: OffsetDateTime) -> String {
    let utc = instant.to_offset(UtcOffset::UTC);
    format!(
        "{} {:02}:{:02}:{:02} UTC",
        fmt_date(utc.date()),
        utc.hour(),
        utc.minute(),
        utc.second()
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use semver::Version;
    use time::Duration;
    use time::macros::{date, datetime};

    const NOW: OffsetDateTime = datetime!(2026-03-15 12:00:00 UTC);
    const EOL: Date = date!(2025 - 06 - 30);

    fn v(s: &str) -> Version {
        Version::parse(s).unwrap()
    }

    fn hw(eol: Option<Date>) -> ProductFacts {
        ProductFacts::Hardware(ModelFacts {
            model_id: "m-e3".to_owned(),
            model_name: "E3".to_owned(),
            eol,
        })
    }

    fn sw(licence: Option<(&str, Option<Date>)>) -> ProductFacts {
        ProductFacts::Software {
            product_name: "StreamSuite".to_owned(),
            licence: licence.map(|(id, ends)| LicenceFacts {
                licence_id: id.to_owned(),
                ends,
            }),
        }
    }

    fn rel(version: &str, published_at: OffsetDateTime) -> ReleaseFacts {
        ReleaseFacts {
            version: v(version),
            published_at,
            free_for_all: false,
        }
    }

    fn after_eol() -> ReleaseFacts {
        rel("3.2.0", datetime!(2025-09-01 10:00:00 UTC))
    }

    fn before_eol() -> ReleaseFacts {
        rel("3.1.0", datetime!(2025-05-01 10:00:00 UTC))
    }

    fn contract(id: &str, starts: Date, ends: Date) -> ContractFacts {
        ContractFacts {
            contract_id: id.to_owned(),
            starts,
            ends,
        }
    }

    fn grant(id: &str, version: Option<&str>, expires_at: OffsetDateTime) -> GrantFacts {
        GrantFacts {
            grant_id: id.to_owned(),
            technician: "Ada Lovelace".to_owned(),
            version: version.map(v),
            expires_at,
        }
    }

    /// Asserts the device-facing summary leaks none of the private facts.
    fn assert_summary_private(d: &Decision) {
        for secret in [
            "SC-", "RG-", "LIC-", "Ada", "Lovelace", "2025-09", "2026", "2027", "3.2.0",
        ] {
            assert!(
                !d.summary.contains(secret),
                "summary {:?} leaks {secret:?}",
                d.summary
            );
        }
    }

    // ---- hardware ----

    #[test]
    fn no_eol_is_in_production() {
        let d = decide(NOW, &hw(None), &after_eol(), &[], &[]);
        assert!(d.entitled);
        assert_eq!(d.code, Code::InProduction);
        assert_eq!(d.summary, "Free upgrade: model still in production.");
        assert!(d.explanation.contains("E3"), "{}", d.explanation);
    }

    #[test]
    fn published_before_eol_is_free() {
        let d = decide(NOW, &hw(Some(EOL)), &before_eol(), &[], &[]);
        assert!(d.entitled);
        assert_eq!(d.code, Code::PublishedBeforeEol);
        assert!(d.summary.contains("2025-06-30"), "{}", d.summary);
        assert!(d.explanation.contains("2025-05-01"), "{}", d.explanation);
    }

    #[test]
    fn published_on_eol_day_last_second_is_free() {
        let r = rel("3.2.0", datetime!(2025-06-30 23:59:59 UTC));
        let d = decide(NOW, &hw(Some(EOL)), &r, &[], &[]);
        assert!(d.entitled);
        assert_eq!(d.code, Code::PublishedBeforeEol);
    }

    #[test]
    fn published_on_eol_day_last_nanosecond_is_free() {
        let r = rel("3.2.0", datetime!(2025-06-30 23:59:59.999_999_999 UTC));
        let d = decide(NOW, &hw(Some(EOL)), &r, &[], &[]);
        assert_eq!(d.code, Code::PublishedBeforeEol);
    }

    #[test]
    fn published_day_after_eol_at_midnight_is_not_free() {
        let r = rel("3.2.0", datetime!(2025-07-01 00:00:00 UTC));
        let d = decide(NOW, &hw(Some(EOL)), &r, &[], &[]);
        assert!(!d.entitled);
        assert_eq!(d.code, Code::EolNoContract);
    }

    #[test]
    fn eol_day_end_is_compared_in_utc_not_local_offset() {
        // 2025-07-01 01:00 at +02:00 is 2025-06-30 23:00 UTC: still free.
        let r = rel("3.2.0", datetime!(2025-07-01 01:00:00 +02:00));
        assert_eq!(
            decide(NOW, &hw(Some(EOL)), &r, &[], &[]).code,
            Code::PublishedBeforeEol
        );
        // 2025-06-30 20:00 at -05:00 is 2025-07-01 01:00 UTC: not free.
        let r = rel("3.2.0", datetime!(2025-06-30 20:00:00 -05:00));
        assert_eq!(
            decide(NOW, &hw(Some(EOL)), &r, &[], &[]).code,
            Code::EolNoContract
        );
    }

    #[test]
    fn eol_on_last_representable_date_covers_everything() {
        let r = rel("3.2.0", datetime!(9999-12-31 23:59:59 UTC));
        let d = decide(NOW, &hw(Some(Date::MAX)), &r, &[], &[]);
        assert_eq!(d.code, Code::PublishedBeforeEol);
    }

    #[test]
    fn eol_no_contract_explanation_is_exact() {
        let d = decide(NOW, &hw(Some(EOL)), &after_eol(), &[], &[]);
        assert!(!d.entitled);
        assert_eq!(d.code, Code::EolNoContract);
        assert_eq!(
            d.summary,
            "Not entitled: model discontinued before this release; a service contract is needed."
        );
        assert_eq!(
            d.explanation,
            "Model E3 was discontinued on 2025-06-30; release 3.2.0 was published on \
             2025-09-01; no active service contract."
        );
    }

    #[test]
    fn active_contract_after_eol_entitles_with_exact_explanation() {
        let c = contract("SC-1042", date!(2025 - 01 - 01), date!(2026 - 12 - 31));
        let d = decide(NOW, &hw(Some(EOL)), &after_eol(), &[c], &[]);
        assert!(d.entitled);
        assert_eq!(d.code, Code::ServiceContract);
        assert_eq!(
            d.explanation,
            "Model E3 was discontinued on 2025-06-30; release 3.2.0 was published on \
             2025-09-01; entitled by service contract SC-1042 (2025-01-01 to 2026-12-31)."
        );
        assert_summary_private(&d);
    }

    #[test]
    fn contract_starting_today_is_active() {
        let c = contract("SC-1", date!(2026 - 03 - 15), date!(2027 - 03 - 14));
        let d = decide(NOW, &hw(Some(EOL)), &after_eol(), &[c], &[]);
        assert_eq!(d.code, Code::ServiceContract);
    }

    #[test]
    fn contract_ending_today_is_active() {
        let c = contract("SC-1", date!(2025 - 03 - 16), date!(2026 - 03 - 15));
        let d = decide(NOW, &hw(Some(EOL)), &after_eol(), &[c], &[]);
        assert_eq!(d.code, Code::ServiceContract);
    }

    #[test]
    fn contract_ending_today_is_active_until_utc_midnight() {
        let c = contract("SC-1", date!(2025 - 03 - 16), date!(2026 - 03 - 15));
        let late = datetime!(2026-03-15 23:59:59 UTC);
        let next = datetime!(2026-03-16 00:00:00 UTC);
        let d = decide(
            late,
            &hw(Some(EOL)),
            &after_eol(),
            std::slice::from_ref(&c),
            &[],
        );
        assert_eq!(d.code, Code::ServiceContract);
        let d = decide(next, &hw(Some(EOL)), &after_eol(), &[c], &[]);
        assert_eq!(d.code, Code::EolNoContract);
    }

    #[test]
    fn today_is_the_utc_date_of_now() {
        // 2026-03-16 01:00 at +03:00 is still 2026-03-15 in UTC.
        let c = contract("SC-1", date!(2025 - 03 - 16), date!(2026 - 03 - 15));
        let now = datetime!(2026-03-16 01:00:00 +03:00);
        let d = decide(now, &hw(Some(EOL)), &after_eol(), &[c], &[]);
        assert_eq!(d.code, Code::ServiceContract);
    }

    #[test]
    fn contract_ended_yesterday_is_not_active_and_is_named() {
        let c = contract("SC-1", date!(2025 - 03 - 14), date!(2026 - 03 - 14));
        let d = decide(NOW, &hw(Some(EOL)), &after_eol(), &[c], &[]);
        assert!(!d.entitled);
        assert_eq!(d.code, Code::EolNoContract);
        assert_eq!(
            d.explanation,
            "Model E3 was discontinued on 2025-06-30; release 3.2.0 was published on \
             2025-09-01; no active service contract; service contract SC-1 ended on 2026-03-14."
        );
        assert_summary_private(&d);
    }

    #[test]
    fn contract_starting_tomorrow_is_not_active_and_is_named() {
        let c = contract("SC-9", date!(2026 - 03 - 16), date!(2027 - 03 - 15));
        let d = decide(NOW, &hw(Some(EOL)), &after_eol(), &[c], &[]);
        assert_eq!(d.code, Code::EolNoContract);
        assert!(
            d.explanation
                .ends_with("; service contract SC-9 starts on 2026-03-16."),
            "{}",
            d.explanation
        );
    }

    #[test]
    fn first_active_contract_is_reported() {
        let old = contract("SC-OLD", date!(2020 - 01 - 01), date!(2021 - 01 - 01));
        let a = contract("SC-A", date!(2026 - 01 - 01), date!(2026 - 12 - 31));
        let b = contract("SC-B", date!(2025 - 01 - 01), date!(2027 - 12 - 31));
        let d = decide(NOW, &hw(Some(EOL)), &after_eol(), &[old, a, b], &[]);
        assert_eq!(d.code, Code::ServiceContract);
        assert!(d.explanation.contains("SC-A"), "{}", d.explanation);
        assert!(!d.explanation.contains("SC-B"), "{}", d.explanation);
        assert!(!d.explanation.contains("SC-OLD"), "{}", d.explanation);
    }

    #[test]
    fn grant_for_any_version_entitles() {
        let g = grant("RG-7", None, datetime!(2026-04-01 00:00:00 UTC));
        let d = decide(NOW, &hw(Some(EOL)), &after_eol(), &[], &[g]);
        assert!(d.entitled);
        assert_eq!(d.code, Code::RepairGrant);
        assert_eq!(d.summary, "Entitled: covered by a repair grant.");
        assert_eq!(
            d.explanation,
            "Model E3 was discontinued on 2025-06-30; release 3.2.0 was published on \
             2025-09-01; entitled by repair grant RG-7 from technician Ada Lovelace \
             (for any release, valid until 2026-04-01 00:00:00 UTC)."
        );
        assert_summary_private(&d);
    }

    #[test]
    fn grant_for_this_exact_version_entitles() {
        let g = grant("RG-7", Some("3.2.0"), NOW + Duration::days(1));
        let d = decide(NOW, &hw(Some(EOL)), &after_eol(), &[], &[g]);
        assert_eq!(d.code, Code::RepairGrant);
        assert!(
            d.explanation.contains("for release 3.2.0"),
            "{}",
            d.explanation
        );
    }

    #[test]
    fn grant_for_another_version_does_not_entitle() {
        let g = grant("RG-7", Some("3.1.0"), NOW + Duration::days(1));
        let d = decide(NOW, &hw(Some(EOL)), &after_eol(), &[], &[g]);
        assert!(!d.entitled);
        assert_eq!(d.code, Code::EolNoContract);
        assert!(
            d.explanation.ends_with(
                "; repair grant RG-7 from technician Ada Lovelace is for release 3.1.0 only."
            ),
            "{}",
            d.explanation
        );
        assert_summary_private(&d);
    }

    #[test]
    fn grant_for_a_prerelease_of_this_version_does_not_entitle() {
        let g = grant("RG-7", Some("3.2.0-rc.1"), NOW + Duration::days(1));
        let d = decide(NOW, &hw(Some(EOL)), &after_eol(), &[], &[g]);
        assert_eq!(d.code, Code::EolNoContract);
    }

    #[test]
    fn grant_expired_one_second_ago_does_not_entitle() {
        let g = grant("RG-7", None, NOW - Duration::seconds(1));
        let d = decide(NOW, &hw(Some(EOL)), &after_eol(), &[], &[g]);
        assert!(!d.entitled);
        assert_eq!(d.code, Code::EolNoContract);
        assert!(
            d.explanation.ends_with(
                "; repair grant RG-7 from technician Ada Lovelace expired at 2026-03-15 11:59:59 UTC."
            ),
            "{}",
            d.explanation
        );
        assert_summary_private(&d);
    }

    #[test]
    fn grant_expiring_exactly_now_does_not_entitle() {
        let g = grant("RG-7", None, NOW);
        let d = decide(NOW, &hw(Some(EOL)), &after_eol(), &[], &[g]);
        assert_eq!(d.code, Code::EolNoContract);
        assert!(
            d.explanation
                .ends_with("; repair grant RG-7 from technician Ada Lovelace expired at 2026-03-15 12:00:00 UTC."),
            "{}",
            d.explanation
        );
    }

    #[test]
    fn inverted_contract_is_never_active() {
        // Malformed data (starts after ends) must not entitle, even on either day.
        let c = contract("SC-X", date!(2026 - 03 - 15), date!(2026 - 03 - 14));
        let d = decide(NOW, &hw(Some(EOL)), &after_eol(), &[c], &[]);
        assert_eq!(d.code, Code::EolNoContract);
        assert!(
            d.explanation
                .ends_with("; service contract SC-X ended on 2026-03-14."),
            "{}",
            d.explanation
        );
    }

    #[test]
    fn grant_expiring_in_one_second_entitles() {
        let g = grant("RG-7", None, NOW + Duration::seconds(1));
        let d = decide(NOW, &hw(Some(EOL)), &after_eol(), &[], &[g]);
        assert_eq!(d.code, Code::RepairGrant);
    }

    #[test]
    fn valid_grant_is_found_after_unusable_ones() {
        let expired = grant("RG-1", None, NOW - Duration::days(1));
        let other = grant("RG-2", Some("1.0.0"), NOW + Duration::days(1));
        let good = grant("RG-3", Some("3.2.0"), NOW + Duration::days(1));
        let d = decide(
            NOW,
            &hw(Some(EOL)),
            &after_eol(),
            &[],
            &[expired, other, good],
        );
        assert_eq!(d.code, Code::RepairGrant);
        assert!(d.explanation.contains("RG-3"), "{}", d.explanation);
    }

    #[test]
    fn failure_lists_every_unusable_contract_and_grant() {
        let c = contract("SC-1", date!(2024 - 01 - 01), date!(2025 - 12 - 31));
        let g1 = grant("RG-1", None, datetime!(2026-01-01 00:00:00 UTC));
        let g2 = grant("RG-2", Some("3.0.0"), NOW + Duration::days(3));
        let d = decide(NOW, &hw(Some(EOL)), &after_eol(), &[c], &[g1, g2]);
        assert_eq!(d.code, Code::EolNoContract);
        assert_eq!(
            d.explanation,
            "Model E3 was discontinued on 2025-06-30; release 3.2.0 was published on \
             2025-09-01; no active service contract; service contract SC-1 ended on \
             2025-12-31; repair grant RG-1 from technician Ada Lovelace expired at \
             2026-01-01 00:00:00 UTC; repair grant RG-2 from technician Ada Lovelace is \
             for release 3.0.0 only."
        );
        assert_summary_private(&d);
    }

    #[test]
    fn free_for_all_after_eol_entitles() {
        let mut r = after_eol();
        r.free_for_all = true;
        let d = decide(NOW, &hw(Some(EOL)), &r, &[], &[]);
        assert!(d.entitled);
        assert_eq!(d.code, Code::FreeForAll);
        assert!(d.explanation.ends_with("marked free for all."));
    }

    // ---- precedence ----

    #[test]
    fn before_eol_wins_over_contract_grant_and_free_for_all() {
        let mut r = before_eol();
        r.free_for_all = true;
        let c = contract("SC-1", date!(2025 - 01 - 01), date!(2026 - 12 - 31));
        let g = grant("RG-1", None, NOW + Duration::days(1));
        let d = decide(NOW, &hw(Some(EOL)), &r, &[c], &[g]);
        assert_eq!(d.code, Code::PublishedBeforeEol);
    }

    #[test]
    fn in_production_wins_over_everything() {
        let mut r = after_eol();
        r.free_for_all = true;
        let c = contract("SC-1", date!(2025 - 01 - 01), date!(2026 - 12 - 31));
        let d = decide(NOW, &hw(None), &r, &[c], &[]);
        assert_eq!(d.code, Code::InProduction);
    }

    #[test]
    fn free_for_all_wins_over_contract_and_grant() {
        let mut r = after_eol();
        r.free_for_all = true;
        let c = contract("SC-1", date!(2025 - 01 - 01), date!(2026 - 12 - 31));
        let g = grant("RG-1", None, NOW + Duration::days(1));
        let d = decide(NOW, &hw(Some(EOL)), &r, &[c], &[g]);
        assert_eq!(d.code, Code::FreeForAll);
    }

    #[test]
    fn contract_wins_over_grant() {
        let c = contract("SC-1", date!(2025 - 01 - 01), date!(2026 - 12 - 31));
        let g = grant("RG-1", None, NOW + Duration::days(1));
        let d = decide(NOW, &hw(Some(EOL)), &after_eol(), &[c], &[g]);
        assert_eq!(d.code, Code::ServiceContract);
        assert!(!d.explanation.contains("RG-1"), "{}", d.explanation);
    }

    // ---- software ----

    #[test]
    fn software_perpetual_licence_is_free() {
        let d = decide(NOW, &sw(Some(("LIC-1", None))), &after_eol(), &[], &[]);
        assert!(d.entitled);
        assert_eq!(d.code, Code::LicencePerpetual);
        assert!(d.explanation.contains("LIC-1"), "{}", d.explanation);
        assert_summary_private(&d);
    }

    #[test]
    fn software_licence_covers_release_published_before_its_end() {
        let p = sw(Some(("LIC-1", Some(date!(2025 - 12 - 31)))));
        let d = decide(NOW, &p, &after_eol(), &[], &[]);
        assert!(d.entitled);
        assert_eq!(d.code, Code::LicenceCovers);
        assert_eq!(d.summary, "Free upgrade: release covered by the licence.");
        assert_summary_private(&d);
    }

    #[test]
    fn software_licence_covers_release_published_on_its_last_day() {
        let p = sw(Some(("LIC-1", Some(date!(2025 - 09 - 01)))));
        let r = rel("3.2.0", datetime!(2025-09-01 23:59:59 UTC));
        assert_eq!(decide(NOW, &p, &r, &[], &[]).code, Code::LicenceCovers);
        let r = rel("3.2.0", datetime!(2025-09-02 00:00:00 UTC));
        assert_eq!(decide(NOW, &p, &r, &[], &[]).code, Code::LicenceExpired);
    }

    #[test]
    fn software_licence_ended_before_now_still_covers_older_releases() {
        // A licence that has run out still covers what was published while it ran.
        let p = sw(Some(("LIC-1", Some(date!(2025 - 10 - 01)))));
        let d = decide(NOW, &p, &after_eol(), &[], &[]);
        assert_eq!(d.code, Code::LicenceCovers);
    }

    #[test]
    fn software_licence_bought_later_covers_older_releases() {
        // No start date: a licence bought today covers a release from last year.
        let p = sw(Some(("LIC-NEW", Some(date!(2027 - 03 - 15)))));
        let r = rel("1.0.0", datetime!(2024-01-01 00:00:00 UTC));
        assert_eq!(decide(NOW, &p, &r, &[], &[]).code, Code::LicenceCovers);
    }

    #[test]
    fn software_licence_expired_is_not_entitled() {
        let p = sw(Some(("LIC-1", Some(date!(2025 - 06 - 30)))));
        let d = decide(NOW, &p, &after_eol(), &[], &[]);
        assert!(!d.entitled);
        assert_eq!(d.code, Code::LicenceExpired);
        assert_eq!(
            d.explanation,
            "Product StreamSuite licence LIC-1 covers releases published up to 2025-06-30; \
             release 3.2.0 was published on 2025-09-01; no active service contract."
        );
        assert_summary_private(&d);
    }

    #[test]
    fn software_licence_expired_with_contract_is_entitled() {
        let p = sw(Some(("LIC-1", Some(date!(2025 - 06 - 30)))));
        let c = contract("SC-5", date!(2026 - 01 - 01), date!(2026 - 12 - 31));
        let d = decide(NOW, &p, &after_eol(), &[c], &[]);
        assert!(d.entitled);
        assert_eq!(d.code, Code::ServiceContract);
        assert!(d.explanation.contains("SC-5"), "{}", d.explanation);
        assert_summary_private(&d);
    }

    #[test]
    fn software_licence_expired_with_grant_is_entitled() {
        let p = sw(Some(("LIC-1", Some(date!(2025 - 06 - 30)))));
        let g = grant("RG-1", Some("3.2.0"), NOW + Duration::hours(1));
        let d = decide(NOW, &p, &after_eol(), &[], &[g]);
        assert_eq!(d.code, Code::RepairGrant);
    }

    #[test]
    fn software_licence_expired_free_for_all_is_entitled() {
        let p = sw(Some(("LIC-1", Some(date!(2025 - 06 - 30)))));
        let mut r = after_eol();
        r.free_for_all = true;
        assert_eq!(decide(NOW, &p, &r, &[], &[]).code, Code::FreeForAll);
    }

    #[test]
    fn software_expired_licence_with_ended_contract_names_it() {
        let p = sw(Some(("LIC-1", Some(date!(2025 - 06 - 30)))));
        let c = contract("SC-1", date!(2024 - 01 - 01), date!(2025 - 12 - 31));
        let d = decide(NOW, &p, &after_eol(), &[c], &[]);
        assert_eq!(d.code, Code::LicenceExpired);
        assert!(
            d.explanation
                .ends_with("; service contract SC-1 ended on 2025-12-31."),
            "{}",
            d.explanation
        );
    }

    #[test]
    fn software_without_licence_is_not_entitled() {
        let d = decide(NOW, &sw(None), &after_eol(), &[], &[]);
        assert!(!d.entitled);
        assert_eq!(d.code, Code::NoLicence);
        assert_eq!(d.summary, "Not entitled: no licence for this product.");
        assert_summary_private(&d);
    }

    #[test]
    fn software_without_licence_with_contract_is_entitled() {
        let c = contract("SC-5", date!(2026 - 01 - 01), date!(2026 - 12 - 31));
        let d = decide(NOW, &sw(None), &after_eol(), &[c], &[]);
        assert_eq!(d.code, Code::ServiceContract);
    }

    #[test]
    fn software_licence_wins_over_free_for_all_and_contract() {
        let mut r = after_eol();
        r.free_for_all = true;
        let c = contract("SC-5", date!(2026 - 01 - 01), date!(2026 - 12 - 31));
        let p = sw(Some(("LIC-1", None)));
        let d = decide(NOW, &p, &r, std::slice::from_ref(&c), &[]);
        assert_eq!(d.code, Code::LicencePerpetual);
        let p = sw(Some(("LIC-1", Some(date!(2025 - 12 - 31)))));
        assert_eq!(decide(NOW, &p, &r, &[c], &[]).code, Code::LicenceCovers);
    }

    // ---- codes and summaries ----

    const ALL: [Code; 10] = [
        Code::InProduction,
        Code::PublishedBeforeEol,
        Code::FreeForAll,
        Code::ServiceContract,
        Code::RepairGrant,
        Code::EolNoContract,
        Code::LicencePerpetual,
        Code::LicenceCovers,
        Code::LicenceExpired,
        Code::NoLicence,
    ];

    /// `FooBar` -> `foo_bar`, the rule `#[serde(rename_all = "snake_case")]`
    /// applies to variant names.
    fn snake(name: &str) -> String {
        let mut out = String::new();
        for (i, ch) in name.chars().enumerate() {
            if ch.is_ascii_uppercase() {
                if i > 0 {
                    out.push('_');
                }
                out.push(ch.to_ascii_lowercase());
            } else {
                out.push(ch);
            }
        }
        out
    }

    #[test]
    fn as_str_matches_serde_snake_case_names() {
        for code in ALL {
            assert_eq!(code.as_str(), snake(&format!("{code:?}")), "{code:?}");
        }
    }

    #[test]
    fn every_code_is_reachable_with_correct_entitlement() {
        let mut ffa = after_eol();
        ffa.free_for_all = true;
        let c = contract("SC-1", date!(2026 - 01 - 01), date!(2026 - 12 - 31));
        let g = grant("RG-1", None, NOW + Duration::days(1));
        let expired_lic = sw(Some(("LIC-1", Some(date!(2025 - 01 - 01)))));
        let cases: Vec<(Decision, Code, bool)> = vec![
            (
                decide(NOW, &hw(None), &after_eol(), &[], &[]),
                Code::InProduction,
                true,
            ),
            (
                decide(NOW, &hw(Some(EOL)), &before_eol(), &[], &[]),
                Code::PublishedBeforeEol,
                true,
            ),
            (
                decide(NOW, &hw(Some(EOL)), &ffa, &[], &[]),
                Code::FreeForAll,
                true,
            ),
            (
                decide(NOW, &hw(Some(EOL)), &after_eol(), &[c], &[]),
                Code::ServiceContract,
                true,
            ),
            (
                decide(NOW, &hw(Some(EOL)), &after_eol(), &[], &[g]),
                Code::RepairGrant,
                true,
            ),
            (
                decide(NOW, &hw(Some(EOL)), &after_eol(), &[], &[]),
                Code::EolNoContract,
                false,
            ),
            (
                decide(NOW, &sw(Some(("LIC-1", None))), &after_eol(), &[], &[]),
                Code::LicencePerpetual,
                true,
            ),
            (
                decide(
                    NOW,
                    &sw(Some(("LIC-1", Some(date!(2026 - 01 - 01))))),
                    &after_eol(),
                    &[],
                    &[],
                ),
                Code::LicenceCovers,
                true,
            ),
            (
                decide(NOW, &expired_lic, &after_eol(), &[], &[]),
                Code::LicenceExpired,
                false,
            ),
            (
                decide(NOW, &sw(None), &after_eol(), &[], &[]),
                Code::NoLicence,
                false,
            ),
        ];
        let mut seen = Vec::new();
        for (d, code, entitled) in cases {
            assert_eq!(d.code, code);
            assert_eq!(d.entitled, entitled, "{code:?}");
            assert!(!d.summary.is_empty() && !d.explanation.is_empty());
            assert_eq!(
                d.summary.starts_with("Not entitled"),
                !entitled,
                "{code:?}: {}",
                d.summary
            );
            assert!(d.explanation.ends_with('.'), "{code:?}: {}", d.explanation);
            assert_summary_private(&d);
            seen.push(code);
        }
        for code in ALL {
            assert!(seen.contains(&code), "{code:?} not reached");
        }
    }
}
