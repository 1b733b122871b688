//! The hardware warranty rule, kept deliberately simple:
//!
//! * the warranty starts on the day the device first contacted the server,
//!   or the day it was provisioned if it never has;
//! * it lasts the product line's `warranty_months`;
//! * registering the device (`POST /v1/admin/devices/{serial}/registration`)
//!   adds [`HARDWARE_REGISTRATION_BONUS_MONTHS`] for hardware lines and
//!   nothing for software;
//! * a `warranty_extension` contract that ends later moves the end to the
//!   contract's end.
//!
//! Adding months keeps the day of the month, clamped to the month's length
//! (31 January + 1 month = 28 or 29 February). The warranty covers repairs,
//! not firmware: entitlement to upgrades never depends on it. This module
//! is pure: no I/O, no clock.

use time::{Date, Month};

/// Extra warranty months for registering a hardware device.
pub const HARDWARE_REGISTRATION_BONUS_MONTHS: u32 = 24;

/// The registration bonus of a product line kind (`hardware`/`software`).
pub fn registration_bonus_months(kind: &str) -> u32 {
    if kind == "hardware" {
        HARDWARE_REGISTRATION_BONUS_MONTHS
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

/// The last day of a device's warranty under the rule above.
pub fn warranty_ends(
    start: Date,
    warranty_months: u32,
    kind: &str,
    registered: bool,
    extension_ends: &[Date],
) -> Date {
    let bonus = if registered {
        registration_bonus_months(kind)
    } else {
        0
    };
    let base = add_months(start, warranty_months.saturating_add(bonus));
    extension_ends.iter().copied().fold(base, Date::max)
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

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
    fn registration_adds_24_months_for_hardware_only() {
        let start = date!(2024 - 03 - 10);
        assert_eq!(
            warranty_ends(start, 12, "hardware", false, &[]),
            date!(2025 - 03 - 10)
        );
        assert_eq!(
            warranty_ends(start, 12, "hardware", true, &[]),
            date!(2027 - 03 - 10)
        );
        assert_eq!(
            warranty_ends(start, 12, "software", true, &[]),
            date!(2025 - 03 - 10)
        );
    }

    #[test]
    fn a_later_extension_wins_an_earlier_one_does_not() {
        let start = date!(2024 - 03 - 10);
        let ext = [date!(2024 - 12 - 31), date!(2028 - 01 - 01)];
        assert_eq!(
            warranty_ends(start, 12, "hardware", true, &ext),
            date!(2028 - 01 - 01)
        );
        assert_eq!(
            warranty_ends(start, 12, "hardware", false, &ext[..1]),
            date!(2025 - 03 - 10)
        );
    }
}
