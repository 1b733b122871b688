//! In-memory views for the update-check hot path (in progress).
//!
//! Devices poll by the million; a check must not need several database
//! round trips. The catalogue (product lines, models, releases) is held as
//! an immutable snapshot, reloaded when `App::catalogue_changed` bumps the
//! generation (and periodically, for other replicas' changes). Per-device
//! facts are cached for `cache_ttl_secs` and dropped on change.

use crate::entitlement::{ContractFacts, GrantFacts, LicenceFacts};

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
}
