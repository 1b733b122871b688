//! What a device reported in an update check, as the last-seen flush
//! writes it (see [`crate::lastseen`]).

use time::OffsetDateTime;

/// What a device reported in one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// Serial.
    pub serial: String,
    /// Version it runs (canonical semver text).
    pub current_version: String,
    /// Its anti-rollback counter.
    pub security_counter: i64,
    /// The root version it trusts.
    pub root_version: i64,
    /// When the check arrived.
    pub seen_at: OffsetDateTime,
    /// The release the check offered, if it offered one (a rollout's
    /// "offered" count).
    pub offered_release_id: Option<i64>,
}

/// The latest record for a serial and the earliest time in the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pending {
    /// The latest record.
    pub latest: Seen,
    /// The earliest `seen_at` of the serial in this batch, for `first_seen`.
    pub first_seen: OffsetDateTime,
}
