//! What the update check needs to know about one device: its
//! registration, service contracts, licence and repair grants (for the
//! entitlement rules), and its region, tags and static groups (for
//! rollouts and maintenance windows), as the database holds them.

use time::{Date, OffsetDateTime};

/// What the entitlement decision needs to know about one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceFacts {
    /// Serial.
    pub serial: String,
    /// Registered model.
    pub model_id: String,
    /// Registered hardware id.
    pub hw_id: String,
    /// Channel the device follows.
    pub channel: String,
    /// Service contracts of the device.
    pub contracts: Vec<ContractFacts>,
    /// Its software licence, if any.
    pub licence: Option<LicenceFacts>,
    /// Repair grants issued for it.
    pub grants: Vec<GrantFacts>,
    /// The region it was sold in, if recorded (dynamic groups filter on it).
    pub region: Option<String>,
    /// Its tags, sorted (dynamic groups filter on them).
    pub tags: Vec<String>,
    /// The static groups it is a member of, sorted.
    pub groups: Vec<String>,
    /// Whether processing is restricted (its owner asked): nothing beyond
    /// what updating needs is recorded about it.
    pub restricted: bool,
    /// The day it was placed on the market (its security support starts).
    pub on_market: crate::domain::support::OnMarket,
}

/// Facts about a software licence held for the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LicenceFacts {
    /// Identifier of the licence (never shown to devices).
    pub licence_id: String,
    /// Last day (inclusive, UTC) of releases the licence covers; `None` means
    /// perpetual.
    pub ends: Option<Date>,
}

/// A service contract held for the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractFacts {
    /// Identifier of the contract (never shown to devices).
    pub contract_id: String,
    /// First day the contract is active (inclusive, UTC).
    pub starts: Date,
    /// Last day the contract is active (inclusive, UTC).
    pub ends: Date,
}

/// A repair grant issued by a technician for the device.
///
/// Only grants issued for this device may be judged for it; the
/// entitlement rules cannot check that themselves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GrantFacts {
    /// Identifier of the grant (never shown to devices).
    pub grant_id: String,
    /// Name of the technician who issued it (never shown to devices).
    pub technician: String,
    /// The one release version the grant is for; `None` means any release.
    pub version: Option<semver::Version>,
    /// The grant is valid strictly before this instant.
    pub expires_at: OffsetDateTime,
}
