//! The repair desk's RMA: its readable number and the states a unit goes
//! through at the service facility (after-sales policy, section 3).
//!
//! ```text
//! received ─▶ diagnosing ─▶ repairing ─▶ testing ─▶ shipped ─▶ closed
//!                 │             ▲            │         ▲
//!                 │             └────────────┘         │
//!                 └────────────────────────────────────┘
//! any state before shipped ─▶ cancelled
//! ```
//!
//! A unit found not covered (or not faulty) goes from diagnosing straight
//! back to the customer; a unit that fails its test goes back to
//! repairing. `closed` and `cancelled` are final.

use std::fmt;

/// Where an RMA stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum RmaState {
    /// The desk has the request (and, once it arrives, the unit).
    Received,
    /// An engineer analyses the fault and decides whether it is covered.
    Diagnosing,
    /// Being fixed: firmware, a part, or the whole unit.
    Repairing,
    /// Being tested after the fix.
    Testing,
    /// On its way back to the customer.
    Shipped,
    /// Done.
    Closed,
    /// Withdrawn before the unit was shipped back.
    Cancelled,
}

impl RmaState {
    /// Every state, in the order of the flow.
    pub const ALL: [RmaState; 7] = [
        RmaState::Received,
        RmaState::Diagnosing,
        RmaState::Repairing,
        RmaState::Testing,
        RmaState::Shipped,
        RmaState::Closed,
        RmaState::Cancelled,
    ];

    /// The stable name, identical to the serialised form and the stored one.
    pub fn as_str(&self) -> &'static str {
        match self {
            RmaState::Received => "received",
            RmaState::Diagnosing => "diagnosing",
            RmaState::Repairing => "repairing",
            RmaState::Testing => "testing",
            RmaState::Shipped => "shipped",
            RmaState::Closed => "closed",
            RmaState::Cancelled => "cancelled",
        }
    }

    /// Parses [`RmaState::as_str`]'s names.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    /// The states an RMA in this state may move to.
    pub fn next(&self) -> &'static [RmaState] {
        use RmaState::*;
        match self {
            Received => &[Diagnosing, Cancelled],
            Diagnosing => &[Repairing, Shipped, Cancelled],
            Repairing => &[Testing, Cancelled],
            Testing => &[Repairing, Shipped, Cancelled],
            Shipped => &[Closed],
            Closed | Cancelled => &[],
        }
    }

    /// Whether the RMA may move from this state to `to`.
    pub fn can_move_to(&self, to: RmaState) -> bool {
        self.next().contains(&to)
    }

    /// Whether the unit is still at the desk or on its way there: firmware
    /// may be pushed, parts and units replaced, the coverage decided.
    pub fn is_open(&self) -> bool {
        !matches!(
            self,
            RmaState::Shipped | RmaState::Closed | RmaState::Cancelled
        )
    }
}

impl fmt::Display for RmaState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The readable RMA number of the `seq`th RMA of `year`:
/// `RMA-2026-000123` (six digits at least).
pub fn rma_number(year: i32, seq: i64) -> String {
    format!("RMA-{year:04}-{seq:06}")
}

/// Whether `s` has the shape of an RMA number (`RMA-YYYY-NNNNNN`, the
/// sequence six digits or more).
pub fn is_rma_number(s: &str) -> bool {
    let Some(rest) = s.strip_prefix("RMA-") else {
        return false;
    };
    let Some((year, seq)) = rest.split_once('-') else {
        return false;
    };
    year.len() == 4
        && year.bytes().all(|b| b.is_ascii_digit())
        && (6..=12).contains(&seq.len())
        && seq.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_flow_runs_forward_and_a_failed_test_goes_back_to_repair() {
        use RmaState::*;
        let flow = [Received, Diagnosing, Repairing, Testing, Shipped, Closed];
        for pair in flow.windows(2) {
            assert!(pair[0].can_move_to(pair[1]), "{} -> {}", pair[0], pair[1]);
        }
        assert!(Testing.can_move_to(Repairing));
        assert!(Diagnosing.can_move_to(Shipped));
    }

    #[test]
    fn skipping_going_back_and_leaving_a_final_state_are_forbidden() {
        use RmaState::*;
        assert!(!Received.can_move_to(Repairing));
        assert!(!Received.can_move_to(Shipped));
        assert!(!Repairing.can_move_to(Shipped));
        assert!(!Repairing.can_move_to(Diagnosing));
        assert!(!Shipped.can_move_to(Cancelled));
        assert!(!Shipped.can_move_to(Repairing));
        for st in RmaState::ALL {
            assert!(!st.can_move_to(st), "{st} -> {st}");
            assert!(!Closed.can_move_to(st));
            assert!(!Cancelled.can_move_to(st));
        }
    }

    #[test]
    fn every_state_before_shipped_may_be_cancelled_and_is_open() {
        for st in RmaState::ALL {
            let before_shipped = matches!(
                st,
                RmaState::Received | RmaState::Diagnosing | RmaState::Repairing | RmaState::Testing
            );
            assert_eq!(st.can_move_to(RmaState::Cancelled), before_shipped, "{st}");
            assert_eq!(st.is_open(), before_shipped, "{st}");
            assert_eq!(RmaState::parse(st.as_str()), Some(st));
        }
        assert_eq!(RmaState::parse("Received"), None);
    }

    #[test]
    fn numbers_are_readable_and_checked_by_shape() {
        assert_eq!(rma_number(2026, 123), "RMA-2026-000123");
        assert_eq!(rma_number(2027, 1_234_567), "RMA-2027-1234567");
        assert!(is_rma_number("RMA-2026-000123"));
        assert!(is_rma_number(&rma_number(2027, 1_234_567)));
        for bad in [
            "",
            "RMA-2026-123",
            "rma-2026-000123",
            "RMA-26-000123",
            "RMA-2026-00012a",
            "RMA-2026",
            "RMA-2026-000123-1",
            "../RMA-2026-000123",
        ] {
            assert!(!is_rma_number(bad), "{bad}");
        }
    }
}
