//! The hardware warranty: the vendors' terms of section 2 of
//! `AFTERSALES.md`, and the repair desk's coverage decision of section 3.
//! The warranty covers repairs, not firmware: entitlement to upgrades never
//! depends on it.
//!
//! # Rules
//!
//! * **Start** ("The warranty runs from the date of sale"): the caller passes
//!   [`WarrantyFacts::start`], the date of sale. When no date of sale is
//!   known the caller falls back to the provisioning date and says so with
//!   [`StartSource::Provisioning`]; every explanation then says the start is
//!   a fallback. A fault before the start is not covered (`before_sale`).
//! * **Standard period** (the table, and "the period is configuration, per
//!   product line, with an optional per-region override"): the product
//!   line's months, replaced by a region's override when the device's region
//!   has one ([`standard_months`]). [`ServiceClass::default_months`] gives the
//!   table's 12 and 6 months for a line that states none.
//! * **Service** (the table's last column): [`ServiceClass::Repair`] for
//!   encoders, decoders, N-series, audio-video interactive devices and
//!   converters (sent in for repair; firmware upgrade),
//!   [`ServiceClass::Exchange`] for accessories and batteries (exchanged).
//! * **Date rule** ("a period of N months starting on day D covers every day
//!   before the same day of the month N months later, clamped to the month's
//!   length"): [`period_last_day`] is the day before [`add_months`]. Sold on
//!   2026-01-10 with 12 months, the last covered day is 2027-01-09.
//!   Periods of days ([`day_period_last_day`]) cover the start day and the
//!   days after it: 90 days from D end on D + 89.
//! * **Registration extension** ("adds 12 months to the end of the standard
//!   warranty (hardware only)"): the end becomes the last day of a period of
//!   standard + 12 months from the start, counted in one step on the total
//!   months. It is effective from the registration day, whether the owner
//!   registered within the standard warranty (no gap: continuous cover) or
//!   after it ended ("the end date is still the standard end plus 12 months,
//!   but a fault that occurred before the registration day is not covered":
//!   a gap from the day after the standard end to the day before the
//!   registration, code `before_late_registration`).
//! * **Paid extension** ("12 months more, for the repair series ... requested
//!   within 1 month of the purchase, effective from the day its contract is
//!   signed"): only for [`ServiceClass::Repair`]; the request must be made
//!   before [`add_months`]`(start, 1)` (the one-month period under the date
//!   rule); it counts from its signing day. Each valid contract adds 12
//!   months. Refused extensions are listed with the reason, never applied.
//! * **Sum** ("the warranty after extensions is the standard period plus
//!   every extension"), realising both "effective from" rules at once: a
//!   fault on day F is covered when `start <= F <= period_last_day(start,
//!   standard + 12 * k)`, where k counts the valid extensions effective on or
//!   before F. The warranty end ([`Assessment::ends`]) uses every valid
//!   extension; the days it does not cover are listed as
//!   [`Assessment::gaps`].
//! * **Whole-unit replacement** ("the replacement unit starts a fresh
//!   standard warranty on the replacement day"): the caller builds the new
//!   unit's facts with the replacement day as start and
//!   [`StartSource::Replacement`].
//! * **Parts**: a part replaced under warranty is covered for the product's
//!   remaining warranty or 90 days from its replacement, whichever is longer
//!   (the part is covered on a day when either covers it); a part replaced in
//!   an out-of-warranty repair has 90 days of limited warranty (that part
//!   only).
//! * **30-day return or exchange** ("within 30 days (inclusive) of receiving
//!   the goods"): the RMA must be opened on or before received + 30 days, for
//!   a fault not caused by the customer, transport damage to the customer
//!   with the carrier's proof, or a unit seriously unlike its description.
//! * **Not covered**: the [`Exclusion`]s. In [`coverage`] an exclusion always
//!   wins; then the 30-day return, then the warranty, then a paid repair.
//!
//! # Readings this module had to choose
//!
//! * **Leap day and month ends**: the "same day" clamps first, then the day
//!   before is the last covered day. Sold 2024-02-29 with 12 months: the
//!   same day would be 2025-02-29, which does not exist, so it clamps to
//!   2025-02-28 and the last covered day is 2025-02-27. Likewise 31 January
//!   plus 1 month ends on 27 February (28 in a leap year).
//! * **Replacement of accessories and batteries**: the fresh-warranty rule
//!   says "not accessories". An exchanged accessory or battery keeps the
//!   warranty of the unit it replaced: its facts carry the original start
//!   (and the original registration) with [`StartSource::Exchanged`];
//!   [`replacement_start`] picks the start for either class. This module
//!   cannot know the original start, so it trusts the facts.
//! * **Replacement and extensions**: a replacement unit gets a fresh
//!   standard warranty only; the registration and paid extensions of the
//!   replaced unit do not carry over (the policy does not say they do). A
//!   registration or paid-extension request dated before the replacement
//!   day is taken to be the old unit's and refused; the owner may register
//!   the replacement unit itself, and a paid extension for it counts its
//!   one-month window from the replacement day.
//! * **Dates before the start**: for a sold unit a registration or a signed
//!   contract dated before the start takes effect on the start, and a paid
//!   extension requested before the start (bought with the unit) is within
//!   the window.
//! * **Transport damage without the carrier's proof** is not an exclusion: it
//!   only loses the 30-day return and is then judged like any fault (warranty
//!   or paid repair). A unit **unlike its description** after the 30 days is
//!   not a fault the warranty repairs (`return_window_closed`).
//! * **Parts**: the product's "remaining warranty" is the unit's own cover
//!   ([`fault_covered`]), so a part has no cover in the unit's gaps once its
//!   90 days are over.
//!
//! The module is pure: no I/O, no clock, no environment; the caller passes
//! `today` and every date. Summaries carry no contract ids; explanations,
//! for technicians, carry every id and date and the reason.

use serde::{Serialize, Serializer};
use time::{Date, Duration, Month};

/// Months a hardware registration adds to the end of the standard warranty.
pub const REGISTRATION_EXTENSION_MONTHS: u32 = 12;

/// Months a paid extension adds.
pub const PAID_EXTENSION_MONTHS: u32 = 12;

/// A paid extension must be requested within this many months of the
/// purchase.
pub const PAID_EXTENSION_WINDOW_MONTHS: u32 = 1;

/// Days of cover of a replaced part (at least, under warranty; exactly, out
/// of warranty).
pub const PART_WARRANTY_DAYS: u32 = 90;

/// Days after receipt (inclusive) during which a unit may be returned or
/// exchanged.
pub const RETURN_WINDOW_DAYS: u32 = 30;

/// The registration extension of a product line kind (`hardware` or
/// `software`): [`REGISTRATION_EXTENSION_MONTHS`] for hardware, nothing for
/// software.
pub fn registration_bonus_months(kind: &str) -> u32 {
    if kind == "hardware" {
        REGISTRATION_EXTENSION_MONTHS
    } else {
        0
    }
}

/// `date` plus `months` calendar months, the day clamped to the target
/// month's length; saturates at the largest representable date.
pub fn add_months(date: Date, months: u32) -> Date {
    let index =
        i64::from(date.year()) * 12 + i64::from(u8::from(date.month())) - 1 + i64::from(months);
    let (Ok(year), Ok(month_number)) = (
        i32::try_from(index.div_euclid(12)),
        u8::try_from(index.rem_euclid(12) + 1),
    ) else {
        return Date::MAX;
    };
    let Ok(month) = Month::try_from(month_number) else {
        return Date::MAX;
    };
    let day = date.day().min(month.length(year));
    Date::from_calendar_date(year, month, day).unwrap_or(Date::MAX)
}

/// The last day covered by a period of `months` months starting on `start`:
/// the day before the same day of the month `months` later (clamped).
/// Sold 2026-01-10 with 12 months: 2027-01-09. Zero months cover nothing
/// (the day before `start`).
pub fn period_last_day(start: Date, months: u32) -> Date {
    day_before(add_months(start, months))
}

/// The last day covered by a period of `days` days starting on `start` (the
/// start day counts): `start + days - 1`, so 90 days from D end on D + 89.
/// Zero days cover nothing (the day before `start`). Saturating.
pub fn day_period_last_day(start: Date, days: u32) -> Date {
    if days == 0 {
        day_before(start)
    } else {
        plus_days(start, i64::from(days) - 1)
    }
}

/// The last day on which goods received on `received_on` may still be
/// returned or exchanged: "within 30 days (inclusive)", so `received_on +
/// 30`.
pub fn return_window_last_day(received_on: Date) -> Date {
    plus_days(received_on, i64::from(RETURN_WINDOW_DAYS))
}

/// The last day a paid extension may be requested for a unit whose warranty
/// starts on `start`: the last day of a one-month period from `start`.
pub fn paid_extension_last_request_day(start: Date) -> Date {
    period_last_day(start, PAID_EXTENSION_WINDOW_MONTHS)
}

/// How a product series is serviced under warranty (the table's last
/// column). Serialised as [`ServiceClass::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceClass {
    /// Encoders, decoders, N-series, audio-video interactive devices,
    /// converters: sent in for repair; firmware upgrade.
    Repair,
    /// Accessories and batteries: exchanged.
    Exchange,
}

impl ServiceClass {
    /// The stable name: `repair` or `exchange`.
    pub fn as_str(&self) -> &'static str {
        match self {
            ServiceClass::Repair => "repair",
            ServiceClass::Exchange => "exchange",
        }
    }

    /// Parses [`ServiceClass::as_str`]'s names (ASCII case and surrounding
    /// spaces ignored).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        if s.eq_ignore_ascii_case("repair") {
            Some(ServiceClass::Repair)
        } else if s.eq_ignore_ascii_case("exchange") {
            Some(ServiceClass::Exchange)
        } else {
            None
        }
    }

    /// The policy table's standard warranty for the class when a product
    /// line states none: 12 months for repair, 6 for exchange.
    pub fn default_months(&self) -> u32 {
        match self {
            ServiceClass::Repair => 12,
            ServiceClass::Exchange => 6,
        }
    }

    fn series(&self) -> &'static str {
        match self {
            ServiceClass::Repair => {
                "encoders, decoders, N-series, audio-video interactive devices and converters"
            }
            ServiceClass::Exchange => "accessories and batteries",
        }
    }
}

/// The standard warranty of a device: its product line's `line_months`,
/// unless `overrides` (region, months) has an entry for `region`, compared
/// ignoring ASCII case and surrounding spaces; the first matching entry
/// wins. Returns the months and the region (as spelt in `overrides`) whose
/// override applied.
pub fn standard_months(
    line_months: u32,
    overrides: &[(String, u32)],
    region: Option<&str>,
) -> (u32, Option<String>) {
    let Some(region) = region.map(str::trim).filter(|r| !r.is_empty()) else {
        return (line_months, None);
    };
    overrides
        .iter()
        .find(|(r, _)| r.trim().eq_ignore_ascii_case(region))
        .map_or((line_months, None), |(r, m)| (*m, Some(r.clone())))
}

/// Where [`WarrantyFacts::start`] comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartSource {
    /// The date of sale.
    Sale,
    /// No date of sale is known: the caller fell back to the provisioning
    /// date.
    Provisioning,
    /// A whole unit replaced under warranty (repair class): `start` is the
    /// replacement day, the start of a fresh standard warranty.
    Replacement {
        /// Serial of the replaced unit.
        replaces: String,
    },
    /// An exchanged accessory or battery: it keeps the warranty of the unit
    /// it replaced, so `start` is that unit's start.
    Exchanged {
        /// Serial of the exchanged unit.
        replaces: String,
    },
}

/// The start of the warranty of a unit that replaced another one: the
/// replacement day for [`ServiceClass::Repair`] (a fresh standard
/// warranty, with [`StartSource::Replacement`]), the original unit's start
/// for [`ServiceClass::Exchange`] (the policy's "not accessories": it keeps
/// the original warranty, with [`StartSource::Exchanged`]).
pub fn replacement_start(class: ServiceClass, original_start: Date, replaced_on: Date) -> Date {
    match class {
        ServiceClass::Repair => replaced_on,
        ServiceClass::Exchange => original_start,
    }
}

/// A paid warranty extension contract.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PaidExtension {
    /// The contract's id.
    pub contract_id: String,
    /// When the customer asked for it.
    pub requested_on: Date,
    /// When the contract was signed; the extension is effective from then.
    pub signed_on: Date,
}

/// A part replaced in a repair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartReplacement {
    /// Name of the part.
    pub part: String,
    /// Day of the replacement.
    pub replaced_on: Date,
    /// Whether the repair was under warranty.
    pub under_warranty: bool,
}

/// The facts of one unit that its warranty depends on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WarrantyFacts {
    /// Hardware product (the registration extension is for hardware only).
    pub hardware: bool,
    /// How the series is serviced.
    pub class: ServiceClass,
    /// The standard warranty in months, after the region override
    /// ([`standard_months`]).
    pub standard_months: u32,
    /// The region whose override set `standard_months`, if one did (for the
    /// explanation).
    pub region_override: Option<String>,
    /// Start of the warranty (see [`StartSource`]).
    pub start: Date,
    /// Where `start` comes from.
    pub start_source: StartSource,
    /// When the owner registered the unit, if they did.
    pub registered_on: Option<Date>,
    /// Paid extension contracts.
    pub paid_extensions: Vec<PaidExtension>,
    /// Parts replaced in repairs.
    pub parts: Vec<PartReplacement>,
}

/// A refusal, with a stable code and an actionable sentence for a person.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    /// Stable machine code: `registration_not_hardware`,
    /// `registration_of_replaced_unit`, `paid_extension_not_for_series`,
    /// `paid_extension_of_replaced_unit` or `paid_extension_window_closed`.
    pub code: &'static str,
    /// What happened and what to do.
    pub message: String,
}

/// Kind of a warranty extension. Serialised `registration` or `paid`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ExtensionKind {
    /// The free registration extension.
    Registration,
    /// A paid extension contract.
    Paid,
}

/// One extension of a unit, applied or refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExtensionView {
    /// Registration or paid.
    pub kind: ExtensionKind,
    /// The contract of a paid extension.
    pub contract_id: Option<String>,
    /// Months it adds when applied.
    pub months: u32,
    /// The registration day, or the day the paid extension was requested.
    #[serde(serialize_with = "ser_date")]
    pub recorded_on: Date,
    /// The day a paid extension's contract was signed.
    #[serde(serialize_with = "ser_opt_date")]
    pub signed_on: Option<Date>,
    /// The day it takes effect; `None` when refused.
    #[serde(serialize_with = "ser_opt_date")]
    pub effective_from: Option<Date>,
    /// Whether it counts.
    pub applied: bool,
    /// Why it does not count.
    pub refusal: Option<Refusal>,
}

/// Days of the warranty that are not covered, both inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// First uncovered day.
    #[serde(serialize_with = "ser_date")]
    pub from: Date,
    /// Last uncovered day.
    #[serde(serialize_with = "ser_date")]
    pub to: Date,
}

/// The cover of a replaced part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PartView {
    /// Name of the part.
    pub part: String,
    /// Day of the replacement.
    #[serde(serialize_with = "ser_date")]
    pub replaced_on: Date,
    /// Whether it was replaced under warranty.
    pub under_warranty: bool,
    /// Last day the part is covered.
    #[serde(serialize_with = "ser_date")]
    pub ends: Date,
}

/// The warranty state of a unit on a day. Serialised in `snake_case`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WarrantyState {
    /// The day is covered.
    InWarranty,
    /// The day is after the warranty's last day.
    Expired,
    /// The day is before the warranty start.
    NotStarted,
    /// The day falls in a gap: an extension that covers later days has not
    /// taken effect yet.
    AwaitingExtension,
}

/// The outcome of [`assess`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Assessment {
    /// The state on `today`.
    pub state: WarrantyState,
    /// Stable reason, the [`FaultCoverage::code`] of a fault on `today`:
    /// `before_sale`, `in_standard_warranty`, `in_extension`,
    /// `before_late_registration`, `before_paid_extension_signed` or
    /// `after_warranty`.
    pub code: &'static str,
    /// The service class.
    pub class: ServiceClass,
    /// Start of the warranty.
    #[serde(serialize_with = "ser_date")]
    pub start: Date,
    /// Last day of the standard warranty.
    #[serde(serialize_with = "ser_date")]
    pub standard_ends: Date,
    /// Last day of the warranty with every valid extension.
    #[serde(serialize_with = "ser_date")]
    pub ends: Date,
    /// Last day actually covered (before `ends` when the last extension
    /// took effect after it); `None` when no day is covered.
    #[serde(serialize_with = "ser_opt_date")]
    pub last_covered_day: Option<Date>,
    /// Every extension, applied or refused.
    pub extensions: Vec<ExtensionView>,
    /// Days between `start` and `ends` that are not covered.
    pub gaps: Vec<Gap>,
    /// The cover of each replaced part.
    pub parts: Vec<PartView>,
    /// Short text without contract ids.
    pub summary: String,
    /// Full sentences with every date and why, for technicians.
    pub explanation: String,
}

/// Whether a fault on a day is covered by the unit's warranty.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FaultCoverage {
    /// Whether it is covered.
    pub covered: bool,
    /// Stable reason: `in_standard_warranty`, `in_extension`, `before_sale`,
    /// `before_late_registration`, `before_paid_extension_signed` or
    /// `after_warranty`.
    pub code: &'static str,
    /// Full sentence with the dates.
    pub explanation: String,
}

/// What a technician found caused the fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultCause {
    /// Nothing points to the customer: a fault not caused by them.
    Unknown,
    /// Damaged in transport to the customer.
    TransportToCustomer {
        /// Whether the carrier's proof of the damage was provided.
        carrier_proof: bool,
    },
    /// The unit is seriously unlike its description.
    NotAsDescribed,
    /// A cause the warranty does not cover.
    Excluded(Exclusion),
}

/// What the warranty does not cover. Serialised as [`Exclusion::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Exclusion {
    /// Damage caused by people: crushed, dropped, liquid, wrong voltage.
    HumanDamage,
    /// Unauthorised modification or repair.
    UnauthorisedModification,
    /// Transport damage during a return.
    ReturnTransportDamage,
    /// Use against the manual.
    AgainstManual,
    /// Force majeure.
    ForceMajeure,
    /// A removed or unreadable serial label.
    SerialLabelUnreadable,
}

impl Exclusion {
    /// Every exclusion, in the policy's order.
    pub const ALL: [Exclusion; 6] = [
        Exclusion::HumanDamage,
        Exclusion::UnauthorisedModification,
        Exclusion::ReturnTransportDamage,
        Exclusion::AgainstManual,
        Exclusion::ForceMajeure,
        Exclusion::SerialLabelUnreadable,
    ];

    /// The stable name, identical to the serialised form.
    pub fn as_str(&self) -> &'static str {
        match self {
            Exclusion::HumanDamage => "human_damage",
            Exclusion::UnauthorisedModification => "unauthorised_modification",
            Exclusion::ReturnTransportDamage => "return_transport_damage",
            Exclusion::AgainstManual => "against_manual",
            Exclusion::ForceMajeure => "force_majeure",
            Exclusion::SerialLabelUnreadable => "serial_label_unreadable",
        }
    }

    /// Parses [`Exclusion::as_str`]'s names (ASCII case and surrounding
    /// spaces ignored).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|e| e.as_str().eq_ignore_ascii_case(s))
    }

    /// The policy's words for it.
    pub fn description(&self) -> &'static str {
        match self {
            Exclusion::HumanDamage => {
                "damage caused by people (crushed, dropped, liquid, wrong voltage)"
            }
            Exclusion::UnauthorisedModification => "unauthorised modification or repair",
            Exclusion::ReturnTransportDamage => "transport damage during a return",
            Exclusion::AgainstManual => "use against the manual",
            Exclusion::ForceMajeure => "force majeure",
            Exclusion::SerialLabelUnreadable => "a removed or unreadable serial label",
        }
    }
}

/// A request for service at the repair desk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// When the fault occurred.
    pub fault_on: Date,
    /// When the customer received the goods, if known.
    pub received_on: Option<Date>,
    /// When the RMA was opened.
    pub requested_on: Date,
    /// What caused the fault.
    pub cause: FaultCause,
    /// The replaced part the fault was traced to, if any (matched against
    /// [`PartReplacement::part`] ignoring ASCII case).
    pub part: Option<String>,
}

/// Stable reason of a [`CoverageDecision`], serialised as
/// [`CoverageCode::as_str`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CoverageCode {
    /// Within 30 days of receipt: returned or exchanged for the same model.
    ReturnOrExchange,
    /// Repair class, fault covered by the warranty.
    WarrantyRepair,
    /// Exchange class, fault covered by the warranty.
    WarrantyExchange,
    /// The unit is not covered, but the fault is in a replaced part still
    /// under its own warranty.
    PartWarrantyRepair,
    /// Not covered by the warranty, no exclusion: repaired at the customer's
    /// cost.
    PaidRepair,
    /// An exclusion applies (see [`CoverageDecision::exclusion`]).
    NotCovered,
    /// Unlike its description, but the 30-day return option is over.
    ReturnWindowClosed,
    /// Unlike its description, and the day of receipt is not recorded.
    ReceiptDateNeeded,
}

impl CoverageCode {
    /// The stable machine code, identical to the serialised form.
    pub fn as_str(&self) -> &'static str {
        match self {
            CoverageCode::ReturnOrExchange => "return_or_exchange",
            CoverageCode::WarrantyRepair => "warranty_repair",
            CoverageCode::WarrantyExchange => "warranty_exchange",
            CoverageCode::PartWarrantyRepair => "part_warranty_repair",
            CoverageCode::PaidRepair => "paid_repair",
            CoverageCode::NotCovered => "not_covered",
            CoverageCode::ReturnWindowClosed => "return_window_closed",
            CoverageCode::ReceiptDateNeeded => "receipt_date_needed",
        }
    }
}

/// The repair desk's decision on a [`Claim`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CoverageDecision {
    /// Stable reason.
    pub code: CoverageCode,
    /// Whether the customer pays nothing (return, or repair or exchange
    /// under warranty).
    pub covered: bool,
    /// The remedy in a short sentence for the customer, without contract
    /// ids.
    pub summary: String,
    /// Full sentences with the dates and why, for technicians.
    pub explanation: String,
    /// The exclusion that applied, for [`CoverageCode::NotCovered`].
    pub exclusion: Option<Exclusion>,
}

/// Checks a paid extension requested on `requested_on` for the unit: only
/// for the repair series, not a replaced unit's, and requested before one
/// month from the start has passed.
pub fn paid_extension_check(f: &WarrantyFacts, requested_on: Date) -> Result<(), Refusal> {
    if f.class == ServiceClass::Exchange {
        return Err(Refusal {
            code: "paid_extension_not_for_series",
            message: format!(
                "Paid extensions are sold only for {}; this product is serviced by \
                 exchange ({}), so it keeps its standard warranty and no paid extension \
                 can be added.",
                ServiceClass::Repair.series(),
                ServiceClass::Exchange.series()
            ),
        });
    }
    if let StartSource::Replacement { replaces } = &f.start_source
        && requested_on < f.start
    {
        return Err(Refusal {
            code: "paid_extension_of_replaced_unit",
            message: format!(
                "This paid extension was requested on {requested_on}, before this unit \
                 replaced {replaces} on {}: it belongs to the replaced unit, and a \
                 replacement unit starts a fresh standard warranty only. A paid extension \
                 for this unit can be requested up to {}.",
                f.start,
                paid_extension_last_request_day(f.start)
            ),
        });
    }
    let last = paid_extension_last_request_day(f.start);
    if requested_on > last {
        let fallback = if f.start_source == StartSource::Provisioning {
            " No date of sale is recorded, so the month was counted from the provisioning \
             date; if the unit was sold later, record its date of sale and check again."
        } else {
            ""
        };
        return Err(Refusal {
            code: "paid_extension_window_closed",
            message: format!(
                "A paid extension must be requested within 1 month of the purchase on {}: \
                 the last day was {last}, and this request of {requested_on} is too late, so \
                 it cannot be added. An annual maintenance contract after the warranty is \
                 the alternative.{fallback}",
                f.start
            ),
        });
    }
    Ok(())
}

/// Whether a fault on `fault_on` is covered by the unit's warranty (not
/// counting replaced parts; see [`coverage`]).
pub fn fault_covered(f: &WarrantyFacts, fault_on: Date) -> FaultCoverage {
    let tl = Timeline::of(f);
    tl.fault(f, fault_on, &format!("The fault of {fault_on}"))
}

/// The warranty of a unit as of `today`: its state, ends, extensions, gaps,
/// parts, and why.
pub fn assess(f: &WarrantyFacts, today: Date) -> Assessment {
    let tl = Timeline::of(f);
    let today_cover = tl.fault(f, today, &format!("Today, {today},"));
    let last_covered_day = tl.covered.last().map(|&(_, hi)| hi);
    let (state, summary) = if today < f.start {
        (
            WarrantyState::NotStarted,
            format!("Warranty starts on {}.", f.start),
        )
    } else if let Some(&(_, hi)) = tl
        .covered
        .iter()
        .find(|&&(lo, hi)| lo <= today && today <= hi)
    {
        (
            WarrantyState::InWarranty,
            format!("In warranty until {hi}."),
        )
    } else if let Some(&(lo, _)) = tl.covered.iter().find(|&&(lo, _)| lo > today) {
        (
            WarrantyState::AwaitingExtension,
            format!("Not covered today; covered again from {lo}."),
        )
    } else {
        let summary = match last_covered_day {
            Some(d) => format!("Warranty ended on {d}."),
            None => "No warranty.".to_owned(),
        };
        (WarrantyState::Expired, summary)
    };
    let parts: Vec<PartView> = f
        .parts
        .iter()
        .map(|p| PartView {
            part: p.part.clone(),
            replaced_on: p.replaced_on,
            under_warranty: p.under_warranty,
            ends: part_ends(&tl, p),
        })
        .collect();

    let mut x = format!("{}. {}", start_sentence(f), standard_sentence(f, &tl));
    for v in &tl.views {
        x.push(' ');
        x.push_str(&extension_sentence(f, &tl, v));
    }
    if tl.views.iter().any(|v| v.applied) {
        x.push_str(&format!(
            " With the extensions the warranty ends on {}.",
            tl.ends
        ));
    }
    for g in &tl.gaps {
        x.push_str(&format!(
            " Faults from {} to {} are not covered: {}.",
            g.from,
            g.to,
            gap_reason(&tl, g.from)
        ));
    }
    for (p, v) in f.parts.iter().zip(&parts) {
        x.push(' ');
        x.push_str(&part_sentence(p, v));
    }
    x.push(' ');
    x.push_str(&today_cover.explanation);

    Assessment {
        state,
        code: today_cover.code,
        class: f.class,
        start: f.start,
        standard_ends: tl.standard_ends,
        ends: tl.ends,
        last_covered_day,
        extensions: tl.views.clone(),
        gaps: tl.gaps.clone(),
        parts,
        summary,
        explanation: x,
    }
}

/// The repair desk's decision on `claim`, in this order: an exclusion (never
/// covered), the 30-day return or exchange, the warranty (the unit's, then
/// a replaced part's), a paid repair.
pub fn coverage(f: &WarrantyFacts, claim: &Claim) -> CoverageDecision {
    let fault_on = claim.fault_on;
    if let FaultCause::Excluded(e) = claim.cause {
        return CoverageDecision {
            code: CoverageCode::NotCovered,
            covered: false,
            summary: format!(
                "Not covered by the warranty: {}. A repair is possible at the customer's \
                 cost.",
                e.description()
            ),
            explanation: format!(
                "The fault of {fault_on} was caused by {}, which the warranty does not \
                 cover ({}); an exclusion applies whatever the dates, so neither the 30-day \
                 return nor the warranty applies.",
                e.description(),
                e.as_str()
            ),
            exclusion: Some(e),
        };
    }

    let requested = claim.requested_on;
    let notes = match claim.received_on {
        Some(received) => {
            let last = return_window_last_day(received);
            let within = requested <= last;
            let window = format!(
                "the goods were received on {received} and the RMA opened on {requested}; \
                 the 30-day return or exchange runs to {last}"
            );
            let reason = match claim.cause {
                FaultCause::Unknown => Some("a fault not caused by the customer"),
                FaultCause::TransportToCustomer {
                    carrier_proof: true,
                } => Some("damage in transport, with the carrier's proof"),
                FaultCause::NotAsDescribed => Some("a unit seriously unlike its description"),
                FaultCause::TransportToCustomer {
                    carrier_proof: false,
                }
                | FaultCause::Excluded(_) => None,
            };
            match reason {
                Some(reason) if within => {
                    return CoverageDecision {
                        code: CoverageCode::ReturnOrExchange,
                        covered: true,
                        summary: "Within 30 days of receipt: the unit may be returned or \
                                  exchanged for the same model."
                            .to_owned(),
                        explanation: format!(
                            "The claim is for {reason}; {window}, so the unit may be \
                             returned or exchanged for the same model."
                        ),
                        exclusion: None,
                    };
                }
                _ if claim.cause == FaultCause::NotAsDescribed => {
                    return CoverageDecision {
                        code: CoverageCode::ReturnWindowClosed,
                        covered: false,
                        summary: format!(
                            "Not covered: a unit unlike its description could be returned \
                             only until {last}."
                        ),
                        explanation: format!(
                            "The unit is seriously unlike its description, but {window}, and \
                             the RMA came after it: the return option is gone, and the \
                             warranty repairs faults, not a mismatch with the description."
                        ),
                        exclusion: None,
                    };
                }
                None if within => format!(
                    " The 30-day return does not apply: {window}, but transport damage needs \
                     the carrier's proof, which was not provided."
                ),
                _ => format!(" The 30-day return does not apply: {window}."),
            }
        }
        None => {
            if claim.cause == FaultCause::NotAsDescribed {
                return CoverageDecision {
                    code: CoverageCode::ReceiptDateNeeded,
                    covered: false,
                    summary: "Record the day the customer received the goods: a unit unlike \
                              its description may be returned only within 30 days of receipt."
                        .to_owned(),
                    explanation: format!(
                        "The unit is seriously unlike its description, and the RMA was opened \
                         on {requested}, but the day the customer received the goods is not \
                         recorded, so the 30-day return cannot be checked; the warranty \
                         repairs faults, not a mismatch with the description."
                    ),
                    exclusion: None,
                };
            }
            " The day the customer received the goods is not recorded, so the 30-day return \
             was not considered."
                .to_owned()
        }
    };

    let tl = Timeline::of(f);
    let unit = tl.fault(f, fault_on, &format!("The fault of {fault_on}"));
    if unit.covered {
        let (code, summary) = match f.class {
            ServiceClass::Repair => (
                CoverageCode::WarrantyRepair,
                "Covered: repaired under warranty (firmware upgrade, part or whole-unit \
                 replacement); the vendor pays the return shipping.",
            ),
            ServiceClass::Exchange => (
                CoverageCode::WarrantyExchange,
                "Covered: exchanged under warranty; the vendor pays the return shipping.",
            ),
        };
        return CoverageDecision {
            code,
            covered: true,
            summary: summary.to_owned(),
            explanation: format!("{}{notes}", unit.explanation),
            exclusion: None,
        };
    }

    if let Some(name) = &claim.part
        && let Some(p) = f
            .parts
            .iter()
            .filter(|p| {
                p.part.trim().eq_ignore_ascii_case(name.trim()) && p.replaced_on <= fault_on
            })
            .max_by_key(|p| p.replaced_on)
        && fault_on <= day_period_last_day(p.replaced_on, PART_WARRANTY_DAYS)
    {
        let how = if p.under_warranty {
            "under warranty, so it is covered for 90 days or the product's remaining \
             warranty, whichever is longer"
        } else {
            "in an out-of-warranty repair, so it has 90 days of limited warranty"
        };
        return CoverageDecision {
            code: CoverageCode::PartWarrantyRepair,
            covered: true,
            summary: "Covered: the fault is in a part still under its own warranty; the \
                      vendor pays the return shipping."
                .to_owned(),
            explanation: format!(
                "{} The fault is in the part {}, replaced on {} {how}; the fault of \
                 {fault_on} is on or before {}, so the part is repaired under its \
                 warranty.{notes}",
                unit.explanation,
                p.part,
                p.replaced_on,
                day_period_last_day(p.replaced_on, PART_WARRANTY_DAYS)
            ),
            exclusion: None,
        };
    }

    CoverageDecision {
        code: CoverageCode::PaidRepair,
        covered: false,
        summary: "Not under warranty: the repair is at the customer's cost.".to_owned(),
        explanation: format!(
            "{} No exclusion applies, so the unit can be repaired at the customer's \
             cost.{notes}",
            unit.explanation
        ),
        exclusion: None,
    }
}

/// An applied extension, as the timeline counts it.
#[derive(Debug, Clone)]
struct Effective {
    day: Date,
    kind: ExtensionKind,
    contract_id: Option<String>,
}

/// Every derived date of a unit's warranty.
struct Timeline {
    standard_ends: Date,
    ends: Date,
    views: Vec<ExtensionView>,
    /// Applied extensions by effective day.
    effective: Vec<Effective>,
    /// Covered days, disjoint, in order, both ends inclusive.
    covered: Vec<(Date, Date)>,
    gaps: Vec<Gap>,
}

impl Timeline {
    fn of(f: &WarrantyFacts) -> Self {
        let views = extension_views(f);
        let mut effective: Vec<Effective> = views
            .iter()
            .filter_map(|v| {
                v.effective_from.map(|day| Effective {
                    day,
                    kind: v.kind,
                    contract_id: v.contract_id.clone(),
                })
            })
            .collect();
        effective.sort_by_key(|e| e.day);
        let n = effective.len();
        let mut covered: Vec<(Date, Date)> = Vec::new();
        for k in 0..=n {
            let lo = if k == 0 {
                f.start
            } else {
                effective[k - 1].day
            };
            let segment_end = if k < n {
                match effective[k].day.previous_day() {
                    Some(d) => d,
                    None => continue,
                }
            } else {
                Date::MAX
            };
            let hi = segment_end.min(last_day_with(f, k));
            if lo > hi {
                continue;
            }
            match covered.last_mut() {
                Some(last) if last.1.next_day() == Some(lo) || last.1 >= lo => {
                    last.1 = last.1.max(hi);
                }
                _ => covered.push((lo, hi)),
            }
        }
        let ends = last_day_with(f, n);
        let mut gaps = Vec::new();
        let mut cursor = Some(f.start);
        for &(lo, hi) in &covered {
            if let Some(c) = cursor
                && c < lo
            {
                gaps.push(Gap {
                    from: c,
                    to: day_before(lo),
                });
            }
            cursor = hi.next_day();
        }
        if let Some(c) = cursor
            && c <= ends
        {
            gaps.push(Gap { from: c, to: ends });
        }
        Timeline {
            standard_ends: period_last_day(f.start, f.standard_months),
            ends,
            views,
            effective,
            covered,
            gaps,
        }
    }

    fn covers(&self, day: Date) -> bool {
        self.covered.iter().any(|&(lo, hi)| lo <= day && day <= hi)
    }

    fn fault(&self, f: &WarrantyFacts, day: Date, subject: &str) -> FaultCoverage {
        if day < f.start {
            return FaultCoverage {
                covered: false,
                code: "before_sale",
                explanation: format!(
                    "{subject} is before {}, so the warranty does not cover it.",
                    start_phrase(f)
                ),
            };
        }
        if self.covers(day) {
            if day <= self.standard_ends {
                return FaultCoverage {
                    covered: true,
                    code: "in_standard_warranty",
                    explanation: format!(
                        "{subject} is within the standard warranty, {} to {}.",
                        f.start, self.standard_ends
                    ),
                };
            }
            let in_effect: Vec<&Effective> =
                self.effective.iter().filter(|e| e.day <= day).collect();
            let names: Vec<String> = in_effect.iter().map(|e| effective_name(e)).collect();
            return FaultCoverage {
                covered: true,
                code: "in_extension",
                explanation: format!(
                    "{subject} is after the standard warranty ended on {}, within \
                     the warranty extended to {} by {}.",
                    self.standard_ends,
                    last_day_with(f, in_effect.len()),
                    join(&names)
                ),
            };
        }
        if day <= self.ends {
            let pending = self.effective.iter().find(|e| e.day > day);
            let reached = last_day_with(f, self.effective.iter().filter(|e| e.day <= day).count());
            return match pending {
                Some(e) if e.kind == ExtensionKind::Registration => FaultCoverage {
                    covered: false,
                    code: "before_late_registration",
                    explanation: format!(
                        "{subject} is after the warranty ended on {reached} and \
                         before the registration on {}; a registration after the standard \
                         warranty ended covers faults from the registration day only.",
                        e.day
                    ),
                },
                _ => FaultCoverage {
                    covered: false,
                    code: "before_paid_extension_signed",
                    explanation: format!(
                        "{subject} is after the warranty ended on {reached} and \
                         before {} took effect on {}; a paid extension covers faults from \
                         the day its contract is signed only.",
                        pending.map_or_else(|| "an extension".to_owned(), effective_name),
                        pending.map_or(self.ends, |e| e.day)
                    ),
                },
            };
        }
        let ended = match self.covered.last() {
            Some(&(_, hi)) if hi != self.ends => format!(
                "the warranty ended on {} (its last covered day was {hi})",
                self.ends
            ),
            Some(_) => format!("the warranty ended on {}", self.ends),
            None => format!(
                "a warranty of {} months, which covers no day",
                f.standard_months
            ),
        };
        FaultCoverage {
            covered: false,
            code: "after_warranty",
            explanation: format!("{subject} is after {ended}."),
        }
    }
}

fn extension_views(f: &WarrantyFacts) -> Vec<ExtensionView> {
    let mut views = Vec::new();
    if let Some(registered) = f.registered_on {
        let refusal = if !f.hardware {
            Some(Refusal {
                code: "registration_not_hardware",
                message: "The registration extension is for hardware only; registering this \
                          product adds no warranty."
                    .to_owned(),
            })
        } else if let StartSource::Replacement { replaces } = &f.start_source
            && registered < f.start
        {
            Some(Refusal {
                code: "registration_of_replaced_unit",
                message: format!(
                    "This registration of {registered} is older than the replacement on {}: \
                     it belongs to the replaced unit {replaces}, whose extensions do not carry \
                     over to a replacement unit. Register this unit (its serial and \
                     verification code) to extend its warranty.",
                    f.start
                ),
            })
        } else {
            None
        };
        views.push(ExtensionView {
            kind: ExtensionKind::Registration,
            contract_id: None,
            months: REGISTRATION_EXTENSION_MONTHS,
            recorded_on: registered,
            signed_on: None,
            effective_from: refusal.is_none().then(|| registered.max(f.start)),
            applied: refusal.is_none(),
            refusal,
        });
    }
    for p in &f.paid_extensions {
        let refusal = paid_extension_check(f, p.requested_on).err();
        views.push(ExtensionView {
            kind: ExtensionKind::Paid,
            contract_id: Some(p.contract_id.clone()),
            months: PAID_EXTENSION_MONTHS,
            recorded_on: p.requested_on,
            signed_on: Some(p.signed_on),
            effective_from: refusal.is_none().then(|| p.signed_on.max(f.start)),
            applied: refusal.is_none(),
            refusal,
        });
    }
    views
}

/// The last covered day with `k` extensions in effect.
fn last_day_with(f: &WarrantyFacts, k: usize) -> Date {
    let extra = u32::try_from(k)
        .unwrap_or(u32::MAX)
        .saturating_mul(REGISTRATION_EXTENSION_MONTHS);
    period_last_day(f.start, f.standard_months.saturating_add(extra))
}

fn part_ends(tl: &Timeline, p: &PartReplacement) -> Date {
    let own = day_period_last_day(p.replaced_on, PART_WARRANTY_DAYS);
    match tl.covered.last() {
        Some(&(_, last_covered)) if p.under_warranty => own.max(last_covered),
        _ => own,
    }
}

fn start_sentence(f: &WarrantyFacts) -> String {
    match &f.start_source {
        StartSource::Sale => format!("Sold on {}", f.start),
        StartSource::Provisioning => format!(
            "No date of sale is recorded, so the warranty is counted from the provisioning \
             date, {}",
            f.start
        ),
        StartSource::Replacement { replaces } => format!(
            "This unit replaced {replaces} under warranty on {}, so it starts a fresh \
             standard warranty that day; the replaced unit's extensions do not carry over",
            f.start
        ),
        StartSource::Exchanged { replaces } => format!(
            "This unit was exchanged for {replaces} and keeps its warranty, which started on \
             {}",
            f.start
        ),
    }
}

fn start_phrase(f: &WarrantyFacts) -> String {
    match &f.start_source {
        StartSource::Sale => format!("the date of sale, {}", f.start),
        StartSource::Provisioning => format!(
            "the provisioning date, {}, used because no date of sale is recorded",
            f.start
        ),
        StartSource::Replacement { replaces } => {
            format!("the day this unit replaced {replaces}, {}", f.start)
        }
        StartSource::Exchanged { .. } => format!("the warranty start, {}", f.start),
    }
}

fn standard_sentence(f: &WarrantyFacts, tl: &Timeline) -> String {
    let source = match &f.region_override {
        Some(region) => format!(" (the override for region {region})"),
        None => String::new(),
    };
    let service = match f.class {
        ServiceClass::Repair => "sent in for repair",
        ServiceClass::Exchange => "exchanged",
    };
    if f.standard_months == 0 {
        format!("The standard warranty is 0 months{source}: it covers no day.")
    } else {
        format!(
            "The standard warranty is {} months{source}, {} to {}; faults are {service}.",
            f.standard_months, f.start, tl.standard_ends
        )
    }
}

fn extension_sentence(f: &WarrantyFacts, tl: &Timeline, v: &ExtensionView) -> String {
    let name = match (&v.kind, &v.contract_id) {
        (ExtensionKind::Registration, _) => "The registration".to_owned(),
        (ExtensionKind::Paid, Some(id)) => format!("Paid extension {id}"),
        (ExtensionKind::Paid, None) => "A paid extension".to_owned(),
    };
    if let Some(r) = &v.refusal {
        return format!(
            "{name} of {} is not applied ({}). {}",
            v.recorded_on, r.code, r.message
        );
    }
    let effective = v.effective_from.unwrap_or(f.start);
    match v.kind {
        ExtensionKind::Registration => {
            if v.recorded_on < f.start {
                format!(
                    "Registered on {}, before the warranty start: 12 more months, effective \
                     from {effective}.",
                    v.recorded_on
                )
            } else if v.recorded_on <= tl.standard_ends {
                format!(
                    "Registered on {}, within the standard warranty: 12 more months, \
                     effective from that day.",
                    v.recorded_on
                )
            } else {
                format!(
                    "Registered on {}, after the standard warranty ended on {}: the end \
                     still moves 12 months, but only faults from the registration day on are \
                     covered.",
                    v.recorded_on, tl.standard_ends
                )
            }
        }
        ExtensionKind::Paid => {
            let signed = v.signed_on.unwrap_or(effective);
            let from = if signed < f.start {
                format!(
                    "effective from the warranty start, {effective} (its contract was signed \
                     before, on {signed})"
                )
            } else {
                format!("effective from {effective}, the day its contract was signed")
            };
            format!(
                "{name}, requested on {} (within the month to {}): 12 more months, {from}.",
                v.recorded_on,
                paid_extension_last_request_day(f.start)
            )
        }
    }
}

fn gap_reason(tl: &Timeline, from: Date) -> String {
    match tl.effective.iter().find(|e| e.day > from) {
        Some(e) if e.kind == ExtensionKind::Registration => format!(
            "they are after the warranty then in effect and before the late registration \
             on {}",
            e.day
        ),
        Some(e) => format!(
            "they are after the warranty then in effect and before {} took effect on {}",
            effective_name(e),
            e.day
        ),
        None => "no extension covers them".to_owned(),
    }
}

fn part_sentence(p: &PartReplacement, v: &PartView) -> String {
    if p.under_warranty {
        format!(
            "Part {} was replaced under warranty on {}: it is covered until {}, the longer \
             of the product's remaining warranty and 90 days.",
            p.part, p.replaced_on, v.ends
        )
    } else {
        format!(
            "Part {} was replaced in an out-of-warranty repair on {}: 90 days of limited \
             warranty on that part, until {}.",
            p.part, p.replaced_on, v.ends
        )
    }
}

fn effective_name(e: &Effective) -> String {
    match (&e.kind, &e.contract_id) {
        (ExtensionKind::Registration, _) => format!("the registration of {}", e.day),
        (ExtensionKind::Paid, Some(id)) => format!("paid extension {id}"),
        (ExtensionKind::Paid, None) => "a paid extension".to_owned(),
    }
}

fn join(names: &[String]) -> String {
    match names {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} and {last}", init.join(", ")),
    }
}

fn plus_days(date: Date, days: i64) -> Date {
    date.checked_add(Duration::days(days))
        .unwrap_or(if days < 0 { Date::MIN } else { Date::MAX })
}

fn day_before(date: Date) -> Date {
    date.previous_day().unwrap_or(Date::MIN)
}

fn ser_date<S: Serializer>(date: &Date, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(date)
}

fn ser_opt_date<S: Serializer>(date: &Option<Date>, s: S) -> Result<S::Ok, S::Error> {
    match date {
        Some(d) => s.collect_str(d),
        None => s.serialize_none(),
    }
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    fn sold(start: Date, months: u32, class: ServiceClass) -> WarrantyFacts {
        WarrantyFacts {
            hardware: true,
            class,
            standard_months: months,
            region_override: None,
            start,
            start_source: StartSource::Sale,
            registered_on: None,
            paid_extensions: Vec::new(),
            parts: Vec::new(),
        }
    }

    fn encoder(start: Date) -> WarrantyFacts {
        sold(start, 12, ServiceClass::Repair)
    }

    fn paid(id: &str, requested_on: Date, signed_on: Date) -> PaidExtension {
        PaidExtension {
            contract_id: id.to_owned(),
            requested_on,
            signed_on,
        }
    }

    fn claim(
        fault_on: Date,
        received_on: Option<Date>,
        requested_on: Date,
        cause: FaultCause,
    ) -> Claim {
        Claim {
            fault_on,
            received_on,
            requested_on,
            cause,
            part: None,
        }
    }

    fn assert_covered(f: &WarrantyFacts, day: Date, code: &str) {
        let c = fault_covered(f, day);
        assert!(c.covered, "{day}: {c:?}");
        assert_eq!(c.code, code, "{day}: {c:?}");
    }

    fn assert_not_covered(f: &WarrantyFacts, day: Date, code: &str) {
        let c = fault_covered(f, day);
        assert!(!c.covered, "{day}: {c:?}");
        assert_eq!(c.code, code, "{day}: {c:?}");
    }

    #[test]
    fn months_keep_the_day_and_clamp_at_month_end() {
        assert_eq!(add_months(date!(2024 - 01 - 15), 12), date!(2025 - 01 - 15));
        assert_eq!(add_months(date!(2024 - 01 - 31), 1), date!(2024 - 02 - 29));
        assert_eq!(add_months(date!(2023 - 01 - 31), 1), date!(2023 - 02 - 28));
        assert_eq!(add_months(date!(2024 - 11 - 30), 3), date!(2025 - 02 - 28));
        assert_eq!(add_months(date!(2024 - 06 - 01), 0), date!(2024 - 06 - 01));
        assert_eq!(add_months(date!(9999 - 06 - 01), 12), Date::MAX);
    }

    #[test]
    fn a_period_covers_every_day_before_the_same_day_n_months_later() {
        let cases = [
            (date!(2026 - 01 - 10), 12, date!(2027 - 01 - 09)),
            (date!(2026 - 01 - 01), 12, date!(2026 - 12 - 31)),
            (date!(2026 - 03 - 01), 1, date!(2026 - 03 - 31)),
            (date!(2025 - 06 - 15), 6, date!(2025 - 12 - 14)),
            (date!(2025 - 06 - 15), 36, date!(2028 - 06 - 14)),
            (date!(2026 - 01 - 10), 0, date!(2026 - 01 - 09)),
        ];
        for (start, months, last) in cases {
            assert_eq!(period_last_day(start, months), last, "{start} + {months}");
        }
    }

    #[test]
    fn a_period_from_a_month_end_ends_the_day_before_the_clamped_day() {
        assert_eq!(
            period_last_day(date!(2025 - 01 - 31), 1),
            date!(2025 - 02 - 27)
        );
        assert_eq!(
            period_last_day(date!(2024 - 01 - 31), 1),
            date!(2024 - 02 - 28)
        );
        assert_eq!(
            period_last_day(date!(2025 - 08 - 31), 1),
            date!(2025 - 09 - 29)
        );
        assert_eq!(
            period_last_day(date!(2025 - 12 - 31), 2),
            date!(2026 - 02 - 27)
        );
    }

    #[test]
    fn a_leap_day_sale_clamps_to_28_february_and_ends_the_day_before() {
        assert_eq!(
            period_last_day(date!(2024 - 02 - 29), 12),
            date!(2025 - 02 - 27)
        );
        assert_eq!(
            period_last_day(date!(2024 - 02 - 29), 48),
            date!(2028 - 02 - 28)
        );
        let f = encoder(date!(2024 - 02 - 29));
        assert_covered(&f, date!(2025 - 02 - 27), "in_standard_warranty");
        assert_not_covered(&f, date!(2025 - 02 - 28), "after_warranty");
    }

    #[test]
    fn day_periods_count_the_start_day() {
        assert_eq!(
            day_period_last_day(date!(2026 - 01 - 01), 90),
            date!(2026 - 03 - 31)
        );
        assert_eq!(
            day_period_last_day(date!(2026 - 01 - 01), 1),
            date!(2026 - 01 - 01)
        );
        assert_eq!(
            day_period_last_day(date!(2026 - 01 - 01), 0),
            date!(2025 - 12 - 31)
        );
        assert_eq!(day_period_last_day(Date::MAX, 90), Date::MAX);
    }

    #[test]
    fn the_return_window_includes_day_30_after_receipt() {
        assert_eq!(
            return_window_last_day(date!(2026 - 01 - 10)),
            date!(2026 - 02 - 09)
        );
        assert_eq!(
            return_window_last_day(date!(2024 - 02 - 15)),
            date!(2024 - 03 - 16)
        );
    }

    #[test]
    fn service_classes_and_exclusions_parse_their_own_names() {
        for class in [ServiceClass::Repair, ServiceClass::Exchange] {
            assert_eq!(ServiceClass::parse(class.as_str()), Some(class));
        }
        assert_eq!(ServiceClass::parse(" Repair "), Some(ServiceClass::Repair));
        assert_eq!(ServiceClass::parse("swap"), None);
        assert_eq!(ServiceClass::Repair.default_months(), 12);
        assert_eq!(ServiceClass::Exchange.default_months(), 6);
        for e in Exclusion::ALL {
            assert_eq!(Exclusion::parse(e.as_str()), Some(e));
        }
        assert_eq!(Exclusion::parse("dropped"), None);
    }

    #[test]
    fn a_region_override_replaces_the_product_line_period() {
        let overrides = vec![("EU".to_owned(), 24), ("apac".to_owned(), 36)];
        assert_eq!(
            standard_months(12, &overrides, Some("eu")),
            (24, Some("EU".to_owned()))
        );
        assert_eq!(
            standard_months(12, &overrides, Some("APAC")),
            (36, Some("apac".to_owned()))
        );
        assert_eq!(standard_months(12, &overrides, Some("US")), (12, None));
        assert_eq!(standard_months(12, &overrides, None), (12, None));
        assert_eq!(standard_months(12, &[], Some("EU")), (12, None));
    }

    #[test]
    fn the_standard_warranty_covers_its_last_day_and_not_the_next() {
        let f = encoder(date!(2026 - 01 - 10));
        assert_covered(&f, date!(2026 - 01 - 10), "in_standard_warranty");
        assert_covered(&f, date!(2027 - 01 - 09), "in_standard_warranty");
        assert_not_covered(&f, date!(2027 - 01 - 10), "after_warranty");
        let a = assess(&f, date!(2026 - 06 - 01));
        assert_eq!(a.standard_ends, date!(2027 - 01 - 09));
        assert_eq!(a.ends, date!(2027 - 01 - 09));
        assert!(a.gaps.is_empty());
    }

    #[test]
    fn accessories_have_the_six_month_standard_warranty_of_their_line() {
        let f = sold(date!(2026 - 01 - 10), 6, ServiceClass::Exchange);
        assert_covered(&f, date!(2026 - 07 - 09), "in_standard_warranty");
        assert_not_covered(&f, date!(2026 - 07 - 10), "after_warranty");
    }

    #[test]
    fn a_fault_before_the_date_of_sale_is_not_covered() {
        let f = encoder(date!(2026 - 01 - 10));
        assert_not_covered(&f, date!(2026 - 01 - 09), "before_sale");
    }

    #[test]
    fn registration_within_the_standard_warranty_adds_12_months_without_a_gap() {
        let mut f = encoder(date!(2026 - 01 - 10));
        f.registered_on = Some(date!(2026 - 05 - 01));
        assert_covered(&f, date!(2027 - 01 - 09), "in_standard_warranty");
        assert_covered(&f, date!(2027 - 01 - 10), "in_extension");
        assert_covered(&f, date!(2028 - 01 - 09), "in_extension");
        assert_not_covered(&f, date!(2028 - 01 - 10), "after_warranty");
        let a = assess(&f, date!(2026 - 06 - 01));
        assert_eq!(a.ends, date!(2028 - 01 - 09));
        assert!(a.gaps.is_empty());
        assert_eq!(a.extensions.len(), 1);
        assert!(a.extensions[0].applied);
        assert_eq!(a.extensions[0].effective_from, Some(date!(2026 - 05 - 01)));
    }

    #[test]
    fn registration_on_the_last_standard_day_is_still_within_the_standard_warranty() {
        let mut f = encoder(date!(2026 - 01 - 10));
        f.registered_on = Some(date!(2027 - 01 - 09));
        assert_covered(&f, date!(2027 - 01 - 10), "in_extension");
        assert!(assess(&f, date!(2027 - 01 - 09)).gaps.is_empty());
    }

    #[test]
    fn registration_after_the_standard_warranty_leaves_a_gap_before_the_registration_day() {
        let mut f = encoder(date!(2026 - 01 - 10));
        f.registered_on = Some(date!(2027 - 03 - 01));
        assert_covered(&f, date!(2027 - 01 - 09), "in_standard_warranty");
        assert_not_covered(&f, date!(2027 - 01 - 10), "before_late_registration");
        assert_not_covered(&f, date!(2027 - 02 - 28), "before_late_registration");
        assert_covered(&f, date!(2027 - 03 - 01), "in_extension");
        assert_covered(&f, date!(2028 - 01 - 09), "in_extension");
        assert_not_covered(&f, date!(2028 - 01 - 10), "after_warranty");
        let a = assess(&f, date!(2027 - 03 - 01));
        assert_eq!(a.ends, date!(2028 - 01 - 09));
        assert_eq!(
            a.gaps,
            vec![Gap {
                from: date!(2027 - 01 - 10),
                to: date!(2027 - 02 - 28)
            }]
        );
        assert_eq!(a.state, WarrantyState::InWarranty);
    }

    #[test]
    fn registration_after_the_extended_end_keeps_the_end_but_covers_no_more_day() {
        let mut f = encoder(date!(2026 - 01 - 10));
        f.registered_on = Some(date!(2028 - 06 - 01));
        let a = assess(&f, date!(2028 - 06 - 01));
        assert_eq!(a.ends, date!(2028 - 01 - 09));
        assert_eq!(a.last_covered_day, Some(date!(2027 - 01 - 09)));
        assert_eq!(a.state, WarrantyState::Expired);
        assert_not_covered(&f, date!(2027 - 06 - 01), "before_late_registration");
        assert_not_covered(&f, date!(2028 - 06 - 01), "after_warranty");
    }

    #[test]
    fn registration_extends_hardware_only() {
        let mut f = encoder(date!(2026 - 01 - 10));
        f.hardware = false;
        f.registered_on = Some(date!(2026 - 02 - 01));
        let a = assess(&f, date!(2026 - 02 - 01));
        assert_eq!(a.ends, date!(2027 - 01 - 09));
        assert!(!a.extensions[0].applied);
        assert_eq!(
            a.extensions[0].refusal.as_ref().map(|r| r.code),
            Some("registration_not_hardware")
        );
        assert_eq!(registration_bonus_months("hardware"), 12);
        assert_eq!(registration_bonus_months("software"), 0);
    }

    #[test]
    fn extensions_are_counted_on_the_total_months_from_the_start() {
        // 36 + 12 months from a leap day: 2028-02-29 exists, so the last
        // day is 2028-02-28, not the 27th a chained count would give.
        let mut f = sold(date!(2024 - 02 - 29), 36, ServiceClass::Repair);
        f.registered_on = Some(date!(2024 - 03 - 01));
        let a = assess(&f, date!(2024 - 03 - 01));
        assert_eq!(a.standard_ends, date!(2027 - 02 - 27));
        assert_eq!(a.ends, date!(2028 - 02 - 28));
        assert!(a.gaps.is_empty());
    }

    #[test]
    fn paid_extension_requested_within_a_month_of_purchase_adds_12_months() {
        let mut f = encoder(date!(2026 - 01 - 10));
        f.paid_extensions = vec![paid("C-7", date!(2026 - 02 - 09), date!(2026 - 02 - 12))];
        assert_eq!(paid_extension_check(&f, date!(2026 - 02 - 09)), Ok(()));
        let a = assess(&f, date!(2026 - 03 - 01));
        assert_eq!(a.ends, date!(2028 - 01 - 09));
        assert!(a.extensions[0].applied);
        assert_eq!(a.extensions[0].effective_from, Some(date!(2026 - 02 - 12)));
        assert!(a.explanation.contains("C-7"));
        assert!(!a.summary.contains("C-7"));
        assert_covered(&f, date!(2028 - 01 - 09), "in_extension");
        assert_not_covered(&f, date!(2028 - 01 - 10), "after_warranty");
    }

    #[test]
    fn paid_extension_requested_after_its_window_is_refused_naming_the_last_day() {
        let mut f = encoder(date!(2026 - 01 - 10));
        let refusal = paid_extension_check(&f, date!(2026 - 02 - 10)).unwrap_err();
        assert_eq!(refusal.code, "paid_extension_window_closed");
        assert!(
            refusal.message.contains("2026-02-09"),
            "{}",
            refusal.message
        );
        f.paid_extensions = vec![paid("C-8", date!(2026 - 02 - 10), date!(2026 - 02 - 10))];
        let a = assess(&f, date!(2026 - 03 - 01));
        assert_eq!(a.ends, date!(2027 - 01 - 09));
        assert!(!a.extensions[0].applied);
        assert_eq!(a.extensions[0].effective_from, None);
        assert_eq!(a.extensions[0].refusal, Some(refusal));
        assert!(a.explanation.contains("not applied"), "{}", a.explanation);
    }

    #[test]
    fn paid_extension_window_on_a_month_end_sale_closes_on_the_clamped_day_before() {
        let f = encoder(date!(2025 - 01 - 31));
        assert_eq!(paid_extension_check(&f, date!(2025 - 02 - 27)), Ok(()));
        assert_eq!(
            paid_extension_check(&f, date!(2025 - 02 - 28)).map_err(|r| r.code),
            Err("paid_extension_window_closed")
        );
    }

    #[test]
    fn paid_extension_window_refusal_mentions_the_provisioning_fallback() {
        let mut f = encoder(date!(2026 - 01 - 10));
        f.start_source = StartSource::Provisioning;
        let r = paid_extension_check(&f, date!(2026 - 03 - 01)).unwrap_err();
        assert!(r.message.contains("provisioning"), "{}", r.message);
    }

    #[test]
    fn paid_extension_signed_after_the_standard_warranty_leaves_a_gap_until_signing() {
        let mut f = encoder(date!(2026 - 01 - 10));
        f.paid_extensions = vec![paid("C-9", date!(2026 - 01 - 20), date!(2027 - 02 - 01))];
        assert_not_covered(&f, date!(2027 - 01 - 10), "before_paid_extension_signed");
        assert_not_covered(&f, date!(2027 - 01 - 31), "before_paid_extension_signed");
        assert_covered(&f, date!(2027 - 02 - 01), "in_extension");
        let a = assess(&f, date!(2027 - 01 - 20));
        assert_eq!(a.state, WarrantyState::AwaitingExtension);
        assert_eq!(a.code, "before_paid_extension_signed");
        assert_eq!(
            a.gaps,
            vec![Gap {
                from: date!(2027 - 01 - 10),
                to: date!(2027 - 01 - 31)
            }]
        );
    }

    #[test]
    fn paid_extension_is_not_sold_for_accessories_or_batteries() {
        let mut f = sold(date!(2026 - 01 - 10), 6, ServiceClass::Exchange);
        let r = paid_extension_check(&f, date!(2026 - 01 - 11)).unwrap_err();
        assert_eq!(r.code, "paid_extension_not_for_series");
        f.paid_extensions = vec![paid("C-10", date!(2026 - 01 - 11), date!(2026 - 01 - 11))];
        let a = assess(&f, date!(2026 - 02 - 01));
        assert_eq!(a.ends, date!(2026 - 07 - 09));
        assert!(!a.extensions[0].applied);
    }

    #[test]
    fn registration_and_paid_extension_add_up() {
        let mut f = encoder(date!(2026 - 01 - 10));
        f.registered_on = Some(date!(2026 - 01 - 15));
        f.paid_extensions = vec![paid("C-11", date!(2026 - 01 - 15), date!(2026 - 01 - 20))];
        let a = assess(&f, date!(2026 - 02 - 01));
        assert_eq!(a.ends, date!(2029 - 01 - 09));
        assert!(a.gaps.is_empty());
        assert_covered(&f, date!(2029 - 01 - 09), "in_extension");
        assert_not_covered(&f, date!(2029 - 01 - 10), "after_warranty");
    }

    #[test]
    fn a_paid_extension_bridges_a_late_registration() {
        let mut f = encoder(date!(2026 - 01 - 10));
        f.registered_on = Some(date!(2027 - 06 - 01));
        f.paid_extensions = vec![paid("C-12", date!(2026 - 01 - 10), date!(2026 - 01 - 10))];
        assert_covered(&f, date!(2027 - 03 - 01), "in_extension");
        let a = assess(&f, date!(2027 - 06 - 01));
        assert_eq!(a.ends, date!(2029 - 01 - 09));
        assert!(a.gaps.is_empty());
    }

    #[test]
    fn a_replacement_unit_starts_a_fresh_standard_warranty_without_the_old_extensions() {
        let mut f = encoder(date!(2026 - 09 - 01));
        f.start_source = StartSource::Replacement {
            replaces: "SN-OLD".to_owned(),
        };
        f.registered_on = Some(date!(2026 - 01 - 15));
        f.paid_extensions = vec![paid("C-13", date!(2026 - 01 - 20), date!(2026 - 01 - 20))];
        let a = assess(&f, date!(2026 - 09 - 02));
        assert_eq!(a.standard_ends, date!(2027 - 08 - 31));
        assert_eq!(a.ends, date!(2027 - 08 - 31));
        let codes: Vec<_> = a
            .extensions
            .iter()
            .map(|e| e.refusal.as_ref().map(|r| r.code))
            .collect();
        assert_eq!(
            codes,
            vec![
                Some("registration_of_replaced_unit"),
                Some("paid_extension_of_replaced_unit")
            ]
        );
        assert!(a.explanation.contains("SN-OLD"));
        assert_not_covered(&f, date!(2026 - 08 - 31), "before_sale");
        f.registered_on = Some(date!(2026 - 09 - 05));
        assert_eq!(
            assess(&f, date!(2026 - 09 - 05)).ends,
            date!(2028 - 08 - 31)
        );
    }

    #[test]
    fn an_exchanged_accessory_keeps_the_original_warranty() {
        let original = date!(2026 - 01 - 10);
        let replaced = date!(2026 - 04 - 01);
        assert_eq!(
            replacement_start(ServiceClass::Exchange, original, replaced),
            original
        );
        assert_eq!(
            replacement_start(ServiceClass::Repair, original, replaced),
            replaced
        );
        let mut f = sold(original, 6, ServiceClass::Exchange);
        f.start_source = StartSource::Exchanged {
            replaces: "BAT-1".to_owned(),
        };
        let a = assess(&f, replaced);
        assert_eq!(a.ends, date!(2026 - 07 - 09));
        assert!(a.explanation.contains("BAT-1"));
    }

    #[test]
    fn a_part_replaced_under_warranty_keeps_the_longer_remaining_warranty() {
        let mut f = encoder(date!(2026 - 01 - 10));
        f.parts = vec![PartReplacement {
            part: "fan".to_owned(),
            replaced_on: date!(2026 - 03 - 01),
            under_warranty: true,
        }];
        let a = assess(&f, date!(2026 - 03 - 02));
        assert_eq!(a.parts[0].ends, date!(2027 - 01 - 09));
    }

    #[test]
    fn a_part_replaced_under_warranty_near_the_end_gets_90_days() {
        let mut f = encoder(date!(2026 - 01 - 10));
        f.parts = vec![PartReplacement {
            part: "fan".to_owned(),
            replaced_on: date!(2026 - 12 - 01),
            under_warranty: true,
        }];
        let a = assess(&f, date!(2026 - 12 - 02));
        assert_eq!(a.parts[0].ends, date!(2027 - 02 - 28));
        let mut c = claim(
            date!(2027 - 02 - 28),
            None,
            date!(2027 - 03 - 01),
            FaultCause::Unknown,
        );
        c.part = Some("Fan".to_owned());
        assert_eq!(coverage(&f, &c).code, CoverageCode::PartWarrantyRepair);
        c.fault_on = date!(2027 - 03 - 01);
        assert_eq!(coverage(&f, &c).code, CoverageCode::PaidRepair);
    }

    #[test]
    fn a_part_replaced_out_of_warranty_has_90_days_of_limited_warranty() {
        let mut f = encoder(date!(2024 - 01 - 10));
        f.parts = vec![PartReplacement {
            part: "psu".to_owned(),
            replaced_on: date!(2026 - 01 - 01),
            under_warranty: false,
        }];
        let a = assess(&f, date!(2026 - 01 - 02));
        assert_eq!(a.parts[0].ends, date!(2026 - 03 - 31));
        let mut c = claim(
            date!(2026 - 03 - 31),
            None,
            date!(2026 - 04 - 01),
            FaultCause::Unknown,
        );
        c.part = Some("psu".to_owned());
        let d = coverage(&f, &c);
        assert_eq!(d.code, CoverageCode::PartWarrantyRepair);
        assert!(d.covered);
        c.fault_on = date!(2026 - 04 - 01);
        assert_eq!(coverage(&f, &c).code, CoverageCode::PaidRepair);
        c.part = Some("fan".to_owned());
        c.fault_on = date!(2026 - 02 - 01);
        assert_eq!(coverage(&f, &c).code, CoverageCode::PaidRepair);
    }

    #[test]
    fn assess_reports_not_started_in_warranty_and_expired() {
        let f = encoder(date!(2026 - 01 - 10));
        let before = assess(&f, date!(2026 - 01 - 09));
        assert_eq!(before.state, WarrantyState::NotStarted);
        assert_eq!(before.code, "before_sale");
        let during = assess(&f, date!(2027 - 01 - 09));
        assert_eq!(during.state, WarrantyState::InWarranty);
        assert_eq!(during.code, "in_standard_warranty");
        assert_eq!(during.summary, "In warranty until 2027-01-09.");
        let after = assess(&f, date!(2027 - 01 - 10));
        assert_eq!(after.state, WarrantyState::Expired);
        assert_eq!(after.code, "after_warranty");
        assert_eq!(after.summary, "Warranty ended on 2027-01-09.");
        assert!(after.explanation.contains("2026-01-10"));
    }

    #[test]
    fn assess_says_when_the_start_is_the_provisioning_fallback() {
        let mut f = encoder(date!(2026 - 01 - 10));
        f.start_source = StartSource::Provisioning;
        f.region_override = Some("EU".to_owned());
        let a = assess(&f, date!(2026 - 02 - 01));
        assert!(
            a.explanation.contains("provisioning date, 2026-01-10"),
            "{}",
            a.explanation
        );
        assert!(a.explanation.contains("region EU"), "{}", a.explanation);
    }

    #[test]
    fn a_fault_reported_on_day_30_after_receipt_may_be_returned() {
        let f = encoder(date!(2026 - 01 - 10));
        let c = claim(
            date!(2026 - 02 - 01),
            Some(date!(2026 - 01 - 12)),
            date!(2026 - 02 - 11),
            FaultCause::Unknown,
        );
        let d = coverage(&f, &c);
        assert_eq!(d.code, CoverageCode::ReturnOrExchange);
        assert!(d.covered);
    }

    #[test]
    fn on_day_31_the_return_option_is_gone_and_the_warranty_applies() {
        let f = encoder(date!(2026 - 01 - 10));
        let c = claim(
            date!(2026 - 02 - 01),
            Some(date!(2026 - 01 - 12)),
            date!(2026 - 02 - 12),
            FaultCause::Unknown,
        );
        let d = coverage(&f, &c);
        assert_eq!(d.code, CoverageCode::WarrantyRepair);
        assert!(d.explanation.contains("2026-02-11"), "{}", d.explanation);
    }

    #[test]
    fn transport_damage_to_the_customer_needs_the_carriers_proof_for_a_return() {
        let f = encoder(date!(2026 - 01 - 10));
        let received = Some(date!(2026 - 01 - 12));
        let with_proof = claim(
            date!(2026 - 01 - 12),
            received,
            date!(2026 - 01 - 13),
            FaultCause::TransportToCustomer {
                carrier_proof: true,
            },
        );
        assert_eq!(
            coverage(&f, &with_proof).code,
            CoverageCode::ReturnOrExchange
        );
        let without = Claim {
            cause: FaultCause::TransportToCustomer {
                carrier_proof: false,
            },
            ..with_proof
        };
        let d = coverage(&f, &without);
        assert_eq!(d.code, CoverageCode::WarrantyRepair);
        assert!(
            d.explanation.contains("carrier's proof"),
            "{}",
            d.explanation
        );
    }

    #[test]
    fn a_unit_unlike_its_description_may_be_returned_only_within_30_days() {
        let f = encoder(date!(2026 - 01 - 10));
        let mut c = claim(
            date!(2026 - 01 - 12),
            Some(date!(2026 - 01 - 12)),
            date!(2026 - 02 - 11),
            FaultCause::NotAsDescribed,
        );
        assert_eq!(coverage(&f, &c).code, CoverageCode::ReturnOrExchange);
        c.requested_on = date!(2026 - 02 - 12);
        let d = coverage(&f, &c);
        assert_eq!(d.code, CoverageCode::ReturnWindowClosed);
        assert!(!d.covered);
        c.received_on = None;
        assert_eq!(coverage(&f, &c).code, CoverageCode::ReceiptDateNeeded);
    }

    #[test]
    fn every_exclusion_wins_over_the_warranty_and_the_return() {
        let mut f = encoder(date!(2026 - 01 - 10));
        f.registered_on = Some(date!(2026 - 01 - 11));
        for e in Exclusion::ALL {
            let c = claim(
                date!(2026 - 01 - 15),
                Some(date!(2026 - 01 - 12)),
                date!(2026 - 01 - 16),
                FaultCause::Excluded(e),
            );
            let d = coverage(&f, &c);
            assert_eq!(d.code, CoverageCode::NotCovered, "{e:?}");
            assert!(!d.covered);
            assert_eq!(d.exclusion, Some(e));
            assert!(d.explanation.contains(e.description()), "{}", d.explanation);
        }
    }

    #[test]
    fn a_covered_fault_is_repaired_for_the_repair_series_and_exchanged_for_accessories() {
        let c = claim(
            date!(2026 - 05 - 01),
            None,
            date!(2026 - 05 - 02),
            FaultCause::Unknown,
        );
        let d = coverage(&encoder(date!(2026 - 01 - 10)), &c);
        assert_eq!(d.code, CoverageCode::WarrantyRepair);
        assert!(d.covered);
        let battery = sold(date!(2026 - 01 - 10), 6, ServiceClass::Exchange);
        let d = coverage(&battery, &c);
        assert_eq!(d.code, CoverageCode::WarrantyExchange);
        assert!(d.covered);
    }

    #[test]
    fn a_fault_outside_the_warranty_without_an_exclusion_is_a_paid_repair() {
        let f = encoder(date!(2026 - 01 - 10));
        let c = claim(
            date!(2027 - 01 - 10),
            None,
            date!(2027 - 01 - 11),
            FaultCause::Unknown,
        );
        let d = coverage(&f, &c);
        assert_eq!(d.code, CoverageCode::PaidRepair);
        assert!(!d.covered);
        assert_eq!(d.exclusion, None);
        let mut late = f.clone();
        late.registered_on = Some(date!(2027 - 03 - 01));
        let c = claim(
            date!(2027 - 02 - 01),
            None,
            date!(2027 - 03 - 02),
            FaultCause::Unknown,
        );
        assert_eq!(coverage(&late, &c).code, CoverageCode::PaidRepair);
    }

    #[test]
    fn codes_are_their_serialised_names() {
        assert_eq!(
            CoverageCode::ReturnOrExchange.as_str(),
            "return_or_exchange"
        );
        assert_eq!(CoverageCode::PaidRepair.as_str(), "paid_repair");
        assert_eq!(
            Exclusion::SerialLabelUnreadable.as_str(),
            "serial_label_unreadable"
        );
    }
}
