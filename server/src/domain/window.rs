//! Maintenance windows: a weekly schedule in a time zone, such as "Monday
//! to Friday from 02:00 for 4 hours, Europe/Berlin". Devices of a group
//! with a window are offered updates only inside it; outside, the check
//! answer says when the next window opens.
//!
//! Times are civil times of the zone, so a window at 02:00 stays at 02:00
//! across daylight-saving changes; a start that falls into a spring-forward
//! gap moves forward by the gap's length (02:30 becomes 03:30), and one in
//! an autumn fold takes the first of the two (jiff's "compatible"
//! disambiguation, as RFC 5545 calendars do). The zone database is bundled
//! into the binary, so a server behaves the same on every host.

use jiff::civil::{Date, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::{AppError, AppResult};

/// Most slots a window may have.
pub const MAX_SLOTS: usize = 28;
/// Longest slot, in hours (a whole week).
pub const MAX_SLOT_HOURS: u32 = 168;

/// A window as sent and stored (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WindowSpec {
    /// IANA time zone, e.g. `Europe/Berlin`, `America/New_York`, `UTC`.
    pub timezone: String,
    /// When the window is open; at least one.
    pub slots: Vec<SlotSpec>,
}

/// One weekly slot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SlotSpec {
    /// Days it starts on: `mon`, `tue`, `wed`, `thu`, `fri`, `sat`, `sun`.
    pub days: Vec<String>,
    /// Local start time, `HH:MM` (24-hour).
    pub start: String,
    /// How long it stays open, 1 to 168 hours.
    pub hours: u32,
}

/// A slot, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Slot {
    /// Monday first.
    days: [bool; 7],
    hour: i8,
    minute: i8,
    length: SignedDuration,
}

/// A window, parsed and ready to judge instants.
#[derive(Debug, Clone)]
pub struct Window {
    spec: WindowSpec,
    tz: TimeZone,
    slots: Vec<Slot>,
}

impl PartialEq for Window {
    fn eq(&self, other: &Self) -> bool {
        self.spec == other.spec
    }
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

fn invalid(message: String) -> AppError {
    AppError::bad_request(
        "invalid_window",
        format!(
            "{message}; a window is {{\"timezone\": \"Europe/Berlin\", \"slots\": \
             [{{\"days\": [\"mon\", \"fri\"], \"start\": \"02:00\", \"hours\": 4}}]}}"
        ),
    )
}

fn day_index(w: Weekday) -> usize {
    usize::try_from(w.to_monday_zero_offset()).unwrap_or(0)
}

impl Window {
    /// Parses a window. 400 `invalid_timezone` for a zone the database does
    /// not know, `invalid_window` for anything else.
    pub fn parse(spec: WindowSpec) -> AppResult<Window> {
        let tz = TimeZone::get(&spec.timezone).map_err(|_| {
            AppError::bad_request(
                "invalid_timezone",
                format!(
                    "{:?} is not a time zone of the IANA database; use a name like \
                     Europe/Berlin, America/New_York or UTC",
                    spec.timezone
                ),
            )
        })?;
        if spec.slots.is_empty() || spec.slots.len() > MAX_SLOTS {
            return Err(invalid(format!(
                "a window needs 1 to {MAX_SLOTS} slots; {} given",
                spec.slots.len()
            )));
        }
        let mut slots = Vec::with_capacity(spec.slots.len());
        for (i, s) in spec.slots.iter().enumerate() {
            let n = i + 1;
            if s.days.is_empty() {
                return Err(invalid(format!("slot {n} has no days")));
            }
            let mut days = [false; 7];
            for d in &s.days {
                let idx = DAYS.iter().position(|x| x == d).ok_or_else(|| {
                    invalid(format!(
                        "slot {n}: {d:?} is not a day (mon, tue, wed, thu, fri, sat, sun)"
                    ))
                })?;
                days[idx] = true;
            }
            let (h, m) = s
                .start
                .split_once(':')
                .filter(|(h, m)| h.len() == 2 && m.len() == 2)
                .and_then(|(h, m)| Some((h.parse::<i8>().ok()?, m.parse::<i8>().ok()?)))
                .filter(|(h, m)| (0..24).contains(h) && (0..60).contains(m))
                .ok_or_else(|| {
                    invalid(format!(
                        "slot {n}: start {:?} is not a time HH:MM from 00:00 to 23:59",
                        s.start
                    ))
                })?;
            if !(1..=MAX_SLOT_HOURS).contains(&s.hours) {
                return Err(invalid(format!(
                    "slot {n}: {} hours; a slot lasts 1 to {MAX_SLOT_HOURS} hours",
                    s.hours
                )));
            }
            slots.push(Slot {
                days,
                hour: h,
                minute: m,
                length: SignedDuration::from_hours(i64::from(s.hours)),
            });
        }
        Ok(Window { spec, tz, slots })
    }

    /// The window as given.
    pub fn spec(&self) -> &WindowSpec {
        &self.spec
    }

    /// The openings (start, end) of slots starting on the local days from
    /// `first` to `last` days after the local date of `at`.
    fn openings(&self, at: Timestamp, first: i64, last: i64) -> Vec<(Timestamp, Timestamp)> {
        let today: Date = self.tz.to_datetime(at).date();
        let mut out = Vec::new();
        for offset in first..=last {
            let Ok(day) = today.checked_add(jiff::Span::new().days(offset)) else {
                continue;
            };
            let weekday = day_index(day.weekday());
            for slot in self.slots.iter().filter(|s| s.days[weekday]) {
                let Ok(start) = self.tz.to_timestamp(day.at(slot.hour, slot.minute, 0, 0)) else {
                    continue;
                };
                if let Ok(end) = start.checked_add(slot.length) {
                    out.push((start, end));
                }
            }
        }
        out
    }

    /// Whether the window is open at `now`.
    pub fn is_open(&self, now: OffsetDateTime) -> bool {
        let at = to_timestamp(now);
        // A slot lasts at most a week, so one that is open now started at
        // most 7 days (plus a day of zone offset) ago.
        self.openings(at, -8, 0)
            .iter()
            .any(|(start, end)| *start <= at && at < *end)
    }

    /// When the window next opens after `now` (`None` if it is open now).
    pub fn next_opening(&self, now: OffsetDateTime) -> Option<OffsetDateTime> {
        if self.is_open(now) {
            return None;
        }
        let at = to_timestamp(now);
        self.openings(at, 0, 8)
            .into_iter()
            .map(|(start, _)| start)
            .filter(|start| *start > at)
            .min()
            .and_then(from_timestamp)
    }
}

fn to_timestamp(t: OffsetDateTime) -> Timestamp {
    // Nanoseconds dropped: a window is judged to the second.
    Timestamp::from_second(t.unix_timestamp()).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn from_timestamp(t: Timestamp) -> Option<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(t.as_second()).ok()
}

/// When the earliest of `windows` opens next after `now`, if the device is
/// outside all of them; `None` when any is open (or there is none).
pub fn deferred_until<'a>(
    windows: impl IntoIterator<Item = &'a Window>,
    now: OffsetDateTime,
) -> Option<OffsetDateTime> {
    let mut earliest: Option<OffsetDateTime> = None;
    let mut any = false;
    for w in windows {
        any = true;
        match w.next_opening(now) {
            None => return None,
            Some(t) => earliest = Some(earliest.map_or(t, |e| e.min(t))),
        }
    }
    if any { earliest } else { None }
}

#[cfg(test)]
mod tests {
    use time::macros::datetime;

    use super::*;

    fn window(tz: &str, slots: &[(&[&str], &str, u32)]) -> Window {
        Window::parse(WindowSpec {
            timezone: tz.into(),
            slots: slots
                .iter()
                .map(|(d, s, h)| SlotSpec {
                    days: d.iter().map(|x| x.to_string()).collect(),
                    start: s.to_string(),
                    hours: *h,
                })
                .collect(),
        })
        .unwrap()
    }

    #[test]
    fn weekday_nights_in_berlin() {
        let w = window(
            "Europe/Berlin",
            &[(&["mon", "tue", "wed", "thu", "fri"], "02:00", 4)],
        );
        // Thursday 3 December 2026, 01:30 UTC = 02:30 in Berlin (CET): open.
        assert!(w.is_open(datetime!(2026-12-03 01:30 UTC)));
        assert_eq!(w.next_opening(datetime!(2026-12-03 01:30 UTC)), None);
        // 05:00 UTC = 06:00 Berlin: closed; next is Friday 02:00 CET.
        assert!(!w.is_open(datetime!(2026-12-03 05:00 UTC)));
        assert_eq!(
            w.next_opening(datetime!(2026-12-03 05:00 UTC)),
            Some(datetime!(2026-12-04 01:00 UTC))
        );
        // Saturday: the next window is Monday.
        assert_eq!(
            w.next_opening(datetime!(2026-12-05 12:00 UTC)),
            Some(datetime!(2026-12-07 01:00 UTC))
        );
        // The end is exclusive: 06:00 Berlin is closed.
        assert!(!w.is_open(datetime!(2026-12-03 05:00 UTC)));
        assert!(w.is_open(datetime!(2026-12-03 04:59:59 UTC)));
    }

    #[test]
    fn civil_times_hold_across_daylight_saving() {
        let w = window("Europe/Berlin", &[(&["sun"], "01:00", 1)]);
        // Sunday 29 March 2026 is the spring change: 01:00 CET is 00:00 UTC.
        assert_eq!(
            w.next_opening(datetime!(2026-03-28 12:00 UTC)),
            Some(datetime!(2026-03-29 00:00 UTC))
        );
        // A week later it is CEST: 01:00 local is 23:00 UTC the day before.
        assert_eq!(
            w.next_opening(datetime!(2026-03-30 12:00 UTC)),
            Some(datetime!(2026-04-04 23:00 UTC))
        );
        // A start inside the spring-forward gap (02:30 does not exist on
        // 29 March) moves forward by the gap: 03:30 CEST.
        let gap = window("Europe/Berlin", &[(&["sun"], "02:30", 1)]);
        let opens = gap.next_opening(datetime!(2026-03-28 12:00 UTC)).unwrap();
        assert_eq!(opens, datetime!(2026-03-29 01:30 UTC));
    }

    #[test]
    fn a_slot_past_midnight_and_a_whole_weekend() {
        let w = window("UTC", &[(&["sat"], "00:00", 48)]);
        assert!(w.is_open(datetime!(2026-12-06 23:59 UTC)));
        assert!(!w.is_open(datetime!(2026-12-07 00:00 UTC)));
        let night = window("America/New_York", &[(&["fri"], "22:00", 6)]);
        // Saturday 02:00 New York (EST, UTC-5) = 07:00 UTC: still open.
        assert!(night.is_open(datetime!(2026-12-05 07:00 UTC)));
    }

    #[test]
    fn the_earliest_window_wins_and_an_open_one_defers_nothing() {
        let a = window("UTC", &[(&["mon"], "02:00", 1)]);
        let b = window("UTC", &[(&["thu"], "20:00", 1)]);
        let now = datetime!(2026-12-03 12:00 UTC); // a Thursday
        assert_eq!(
            deferred_until([&a, &b], now),
            Some(datetime!(2026-12-03 20:00 UTC))
        );
        assert_eq!(
            deferred_until([&a, &b], datetime!(2026-12-03 20:30 UTC)),
            None
        );
        assert_eq!(deferred_until(std::iter::empty(), now), None);
    }

    #[test]
    fn bad_windows_are_refused_with_what_to_write() {
        let bad = |tz: &str, days: &[&str], start: &str, hours: u32| {
            Window::parse(WindowSpec {
                timezone: tz.into(),
                slots: vec![SlotSpec {
                    days: days.iter().map(|d| d.to_string()).collect(),
                    start: start.into(),
                    hours,
                }],
            })
            .unwrap_err()
        };
        assert_eq!(
            bad("Mars/Olympus", &["mon"], "02:00", 1).code(),
            "invalid_timezone"
        );
        for (e, says) in [
            (bad("UTC", &["monday"], "02:00", 1), "not a day"),
            (bad("UTC", &[], "02:00", 1), "no days"),
            (bad("UTC", &["mon"], "2:00", 1), "HH:MM"),
            (bad("UTC", &["mon"], "24:00", 1), "HH:MM"),
            (bad("UTC", &["mon"], "02:00", 0), "1 to 168 hours"),
            (bad("UTC", &["mon"], "02:00", 169), "1 to 168 hours"),
        ] {
            assert_eq!(e.code(), "invalid_window");
            assert!(e.to_string().contains(says), "{e}");
        }
        let none = Window::parse(WindowSpec {
            timezone: "UTC".into(),
            slots: vec![],
        })
        .unwrap_err();
        assert_eq!(none.code(), "invalid_window");
    }
}
