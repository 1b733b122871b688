//! Security support under the EU Cyber Resilience Act (docs/CRA.md): how
//! long each unit gets security fixes, from when, and how long security
//! releases stay available.
//!
//! A product line declares a support period in months, which a model may
//! override; with neither, the legal minimum of 60 months applies. Shorter
//! than 60 months needs a stated justification (the law allows it when the
//! product is expected to be in use for less). The period runs per unit from
//! the day it was placed on the market: its recorded sale date, or its
//! provisioning day when the sale is not recorded.
//!
//! The module is pure: no I/O, no clock; callers pass `today`.

use time::{Date, Month, OffsetDateTime};

/// The shortest support period the law accepts without a justification.
pub const MIN_SUPPORT_MONTHS: u32 = 60;
/// The period of a line and model that declare none: the legal minimum.
pub const DEFAULT_SUPPORT_MONTHS: u32 = MIN_SUPPORT_MONTHS;
/// The longest period accepted (50 years), against typing mistakes.
pub const MAX_SUPPORT_MONTHS: u32 = 600;
/// Longest justification, in characters.
pub const MAX_JUSTIFICATION: usize = 2000;
/// How long a security release stays available after its publication, at
/// least (Art 13(9)): ten years.
pub const RETENTION_MONTHS: u32 = 120;

/// Where a support period comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicySource {
    /// The model declares it.
    Model,
    /// The model's product line declares it.
    ProductLine,
    /// Neither does: the legal minimum applies.
    Default,
}

/// A support period and its justification, as declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportPolicy {
    /// Months from the day a unit was placed on the market.
    pub months: u32,
    /// Why it is shorter than [`MIN_SUPPORT_MONTHS`] (or any note given).
    pub justification: Option<String>,
    /// Who declares it.
    pub source: PolicySource,
}

impl SupportPolicy {
    /// The policy of a model: its own period if declared, else its line's,
    /// else the default.
    pub fn resolve(
        model: Option<(u32, Option<String>)>,
        line: Option<(u32, Option<String>)>,
    ) -> SupportPolicy {
        match (model, line) {
            (Some((months, justification)), _) => SupportPolicy {
                months,
                justification,
                source: PolicySource::Model,
            },
            (None, Some((months, justification))) => SupportPolicy {
                months,
                justification,
                source: PolicySource::ProductLine,
            },
            (None, None) => SupportPolicy {
                months: DEFAULT_SUPPORT_MONTHS,
                justification: None,
                source: PolicySource::Default,
            },
        }
    }
}

/// Why a declared support period is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyError {
    /// Outside 1 to [`MAX_SUPPORT_MONTHS`].
    OutOfRange(i64),
    /// Under [`MIN_SUPPORT_MONTHS`] with no justification.
    TooShort(u32),
    /// The justification is empty, too long or holds control characters.
    BadJustification(&'static str),
}

impl std::fmt::Display for PolicyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PolicyError::OutOfRange(m) => write!(
                f,
                "support period of {m} months is outside 1 to {MAX_SUPPORT_MONTHS} months"
            ),
            PolicyError::TooShort(m) => write!(
                f,
                "a support period of {m} months is under the {MIN_SUPPORT_MONTHS} months (5 \
                 years) the Cyber Resilience Act requires; give a justification (why the \
                 product is expected to be in use for less) or declare at least \
                 {MIN_SUPPORT_MONTHS} months"
            ),
            PolicyError::BadJustification(why) => write!(f, "justification {why}"),
        }
    }
}

/// Checks a declared period: 1 to [`MAX_SUPPORT_MONTHS`] months, and a
/// justification (1 to [`MAX_JUSTIFICATION`] characters, no control
/// characters but newlines) when under [`MIN_SUPPORT_MONTHS`].
pub fn check_policy(months: i64, justification: Option<&str>) -> Result<u32, PolicyError> {
    let m = u32::try_from(months)
        .ok()
        .filter(|m| (1..=MAX_SUPPORT_MONTHS).contains(m))
        .ok_or(PolicyError::OutOfRange(months))?;
    if let Some(j) = justification {
        if j.trim().is_empty() {
            return Err(PolicyError::BadJustification("must not be empty"));
        }
        if j.chars().count() > MAX_JUSTIFICATION {
            return Err(PolicyError::BadJustification(
                "must be at most 2000 characters",
            ));
        }
        if j.chars().any(|c| c.is_control() && c != '\n') {
            return Err(PolicyError::BadJustification(
                "must not hold control characters other than newlines",
            ));
        }
    } else if m < MIN_SUPPORT_MONTHS {
        return Err(PolicyError::TooShort(m));
    }
    Ok(m)
}

/// Where a unit's start of support comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum StartSource {
    /// Its recorded date of sale.
    Sale,
    /// Its provisioning day (no sale recorded).
    Provisioning,
}

/// The day a unit was placed on the market, and how that is known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OnMarket {
    /// The day.
    pub date: Date,
    /// Its source.
    pub source: StartSource,
}

impl OnMarket {
    /// The sale date if recorded, else the provisioning day (UTC).
    pub fn of(sale_date: Option<Date>, provisioned_at: OffsetDateTime) -> OnMarket {
        match sale_date {
            Some(date) => OnMarket {
                date,
                source: StartSource::Sale,
            },
            None => OnMarket {
                date: provisioned_at.to_offset(time::UtcOffset::UTC).date(),
                source: StartSource::Provisioning,
            },
        }
    }
}

/// `date` plus `months` calendar months, on the same day of the month or
/// the month's last day when it is shorter (31 January + 1 month is 28 or
/// 29 February). Saturates at the last representable date.
pub fn add_months(date: Date, months: u32) -> Date {
    let total =
        i64::from(date.year()) * 12 + i64::from(u8::from(date.month()) - 1) + i64::from(months);
    let (Ok(year), Ok(month0)) = (i32::try_from(total / 12), u8::try_from(total % 12)) else {
        return Date::MAX;
    };
    let Ok(month) = Month::try_from(month0 + 1) else {
        return Date::MAX;
    };
    if year > Date::MAX.year() {
        return Date::MAX;
    }
    let day = date.day().min(time::util::days_in_month(month, year));
    Date::from_calendar_date(year, month, day).unwrap_or(Date::MAX)
}

/// A unit's security support: from when, for how long, until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SupportWindow {
    /// The day the unit was placed on the market.
    pub starts: OnMarket,
    /// The policy that applies.
    pub policy: SupportPolicy,
    /// The last day of support (inclusive): the day before `starts` plus
    /// the period.
    pub ends: Date,
}

impl SupportWindow {
    /// The window of a unit placed on the market `starts` under `policy`.
    pub fn new(starts: OnMarket, policy: SupportPolicy) -> SupportWindow {
        let end = add_months(starts.date, policy.months);
        let ends = if end == Date::MAX {
            end
        } else {
            end.previous_day().unwrap_or(end)
        };
        SupportWindow {
            starts,
            policy,
            ends,
        }
    }

    /// Whether `today` is inside the window.
    pub fn covers(&self, today: Date) -> bool {
        today <= self.ends
    }

    /// Days from `today` to the last day (negative once over).
    pub fn days_left(&self, today: Date) -> i64 {
        (self.ends - today).whole_days()
    }

    /// The sentence for people: where the start and the period come from.
    pub fn explanation(&self, model_name: &str) -> String {
        let start = match self.starts.source {
            StartSource::Sale => "sold",
            StartSource::Provisioning => "provisioned (no sale recorded)",
        };
        let period = match self.policy.source {
            PolicySource::Model => {
                format!("model {model_name} declares {} months", self.policy.months)
            }
            PolicySource::ProductLine => format!(
                "its product line declares {} months for model {model_name}",
                self.policy.months
            ),
            PolicySource::Default => format!(
                "model {model_name} declares no period, so the legal minimum of {} months applies",
                self.policy.months
            ),
        };
        let mut s = format!(
            "Unit {start} on {}; {period}; security support runs until {}",
            fmt_date(self.starts.date),
            fmt_date(self.ends)
        );
        if let Some(j) = &self.policy.justification {
            s.push_str(&format!(" (justification: {j})"));
        }
        s.push('.');
        s
    }

    /// A warning for the device when at most `warn_days` days are left
    /// (`None` otherwise, and with `warn_days` 0).
    pub fn warning(&self, today: Date, warn_days: u32) -> Option<String> {
        let left = self.days_left(today);
        if warn_days == 0 || left > i64::from(warn_days) {
            return None;
        }
        let ends = fmt_date(self.ends);
        Some(if left < 0 {
            format!(
                "Security support for this unit ended on {ends}; it gets no more security updates."
            )
        } else {
            format!(
                "Security support for this unit ends on {ends}; after that it gets no more \
                 security updates."
            )
        })
    }
}

/// Until when a release must stay available: for a security or mixed
/// release, ten years after publication, or the last day of support of
/// the units that can install it (`last_support_end`) if later; `None`
/// for a feature release (no legal retention).
pub fn retained_until(
    fixes_security: bool,
    published_at: OffsetDateTime,
    last_support_end: Option<Date>,
) -> Option<Date> {
    if !fixes_security {
        return None;
    }
    let ten_years = add_months(
        published_at.to_offset(time::UtcOffset::UTC).date(),
        RETENTION_MONTHS,
    );
    Some(last_support_end.map_or(ten_years, |s| s.max(ten_years)))
}

/// `YYYY-MM-DD`.
pub fn fmt_date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::{date, datetime};

    fn window(sold: Date, months: u32) -> SupportWindow {
        SupportWindow::new(
            OnMarket::of(Some(sold), datetime!(2020-01-01 0:00 UTC)),
            SupportPolicy {
                months,
                justification: None,
                source: PolicySource::ProductLine,
            },
        )
    }

    #[test]
    fn support_runs_to_the_day_before_the_anniversary() {
        let w = window(date!(2026 - 03 - 15), 60);
        assert_eq!(w.ends, date!(2031 - 03 - 14));
        assert!(w.covers(date!(2031 - 03 - 14)));
        assert!(!w.covers(date!(2031 - 03 - 15)));
    }

    #[test]
    fn month_ends_clamp_to_the_shorter_month() {
        assert_eq!(add_months(date!(2026 - 01 - 31), 1), date!(2026 - 02 - 28));
        assert_eq!(add_months(date!(2027 - 01 - 31), 13), date!(2028 - 02 - 29));
        assert_eq!(add_months(date!(2026 - 12 - 15), 1), date!(2027 - 01 - 15));
        assert_eq!(add_months(Date::MAX, 12), Date::MAX);
    }

    #[test]
    fn without_a_sale_the_provisioning_day_starts_support() {
        let m = OnMarket::of(None, datetime!(2026-05-01 23:30 -02:00));
        assert_eq!(m.date, date!(2026 - 05 - 02));
        assert_eq!(m.source, StartSource::Provisioning);
    }

    #[test]
    fn the_model_overrides_the_line_and_the_default_is_the_legal_minimum() {
        let p = SupportPolicy::resolve(Some((84, None)), Some((72, None)));
        assert_eq!((p.months, p.source), (84, PolicySource::Model));
        let p = SupportPolicy::resolve(None, Some((72, None)));
        assert_eq!((p.months, p.source), (72, PolicySource::ProductLine));
        let p = SupportPolicy::resolve(None, None);
        assert_eq!((p.months, p.source), (60, PolicySource::Default));
    }

    #[test]
    fn a_period_under_five_years_needs_a_justification() {
        assert_eq!(check_policy(59, None), Err(PolicyError::TooShort(59)));
        assert_eq!(
            check_policy(36, Some("sold as a 3-year rental unit")),
            Ok(36)
        );
        assert_eq!(check_policy(60, None), Ok(60));
        assert!(matches!(
            check_policy(0, None),
            Err(PolicyError::OutOfRange(0))
        ));
        assert!(matches!(
            check_policy(601, None),
            Err(PolicyError::OutOfRange(601))
        ));
        assert!(matches!(
            check_policy(36, Some("  ")),
            Err(PolicyError::BadJustification(_))
        ));
        assert!(
            PolicyError::TooShort(59)
                .to_string()
                .contains("justification")
        );
    }

    #[test]
    fn the_warning_starts_within_the_configured_days() {
        let w = window(date!(2021 - 01 - 01), 60);
        assert_eq!(w.ends, date!(2025 - 12 - 31));
        assert_eq!(w.warning(date!(2025 - 07 - 03), 180), None);
        let soon = w.warning(date!(2025 - 07 - 04), 180).unwrap();
        assert!(soon.contains("ends on 2025-12-31"), "{soon}");
        let over = w.warning(date!(2026 - 01 - 01), 180).unwrap();
        assert!(over.contains("ended on 2025-12-31"), "{over}");
        assert_eq!(w.warning(date!(2025 - 12 - 30), 0), None);
    }

    #[test]
    fn the_explanation_names_the_start_the_period_and_the_end() {
        let w = window(date!(2026 - 03 - 15), 60);
        assert_eq!(
            w.explanation("Encoder 4K"),
            "Unit sold on 2026-03-15; its product line declares 60 months for model Encoder 4K; \
             security support runs until 2031-03-14."
        );
    }

    #[test]
    fn security_releases_are_kept_ten_years_or_to_the_end_of_support() {
        let at = datetime!(2026-06-01 10:00 UTC);
        assert_eq!(retained_until(false, at, Some(date!(2040 - 01 - 01))), None);
        assert_eq!(retained_until(true, at, None), Some(date!(2036 - 06 - 01)));
        assert_eq!(
            retained_until(true, at, Some(date!(2030 - 01 - 01))),
            Some(date!(2036 - 06 - 01))
        );
        assert_eq!(
            retained_until(true, at, Some(date!(2040 - 01 - 01))),
            Some(date!(2040 - 01 - 01))
        );
    }
}
