//! The verification engine: the one code path that the signer's `verify`,
//! the server's publish check and the device all run.
//!
//! Given trusted state (a [`TrustedRoot`], what is installed, the device's
//! identity and a notion of time) and an untrusted manifest envelope, it
//! returns either an [`UpdatePlan`] or a typed [`Error`] naming the first
//! check that failed. The order of the checks is part of the contract:
//!
//! 1. size cap, envelope shape and payload type (nothing else is parsed);
//! 2. signatures: a threshold of the release keys delegated to the expected
//!    product line, counted once per distinct key, with strict verification;
//! 3. only then the payload is parsed, and checked for the device:
//!    product line, hardware id, channel, expiry (of the manifest and the
//!    root), replay (`manifest_version`), anti-rollback (`security_counter`),
//!    version order and the upgrade path (`requires`), both by SemVer
//!    precedence ([`Version::cmp_precedence`]: build metadata is ignored).
//!
//! Images are checked separately, as streams ([`crate::image`]), against
//! the [`ImageSpec`](crate::manifest::ImageSpec)s of the accepted plan.
//!
//! This module does no I/O and needs no async runtime.

use semver::Version;
use time::OffsetDateTime;

use crate::envelope::Envelope;
use crate::error::{Error, Result};
use crate::keys::KeyId;
use crate::manifest::{MANIFEST_PAYLOAD_TYPE, MAX_MANIFEST_BYTES, Manifest};
use crate::root::TrustedRoot;

/// What the verifier may believe about the current time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Clock {
    /// The device has a trustworthy wall clock reading this instant.
    Trusted(OffsetDateTime),
    /// No trustworthy clock: the latest `issued_at` ever accepted stands in
    /// for "now", so time only moves forward.
    LatestKnown(OffsetDateTime),
    /// Offline (USB) install: expiry is not checked. Version, counter and
    /// replay checks still are.
    OfflineNoExpiry,
}

impl Clock {
    fn now(&self) -> Option<OffsetDateTime> {
        match self {
            Clock::Trusted(t) | Clock::LatestKnown(t) => Some(*t),
            Clock::OfflineNoExpiry => None,
        }
    }
}

/// What the device has committed (after a successful boot and health
/// check) and must never go back from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstalledState {
    /// Version running now.
    pub version: Version,
    /// Highest security counter committed.
    pub security_counter: u32,
    /// Highest manifest_version accepted on the channel being checked.
    pub manifest_version: u64,
}

/// The checks a caller asks for. Fields left `None` are not checked; the
/// device fills in all of them, the signer and the server only the ones that
/// make sense without a device.
#[derive(Debug, Clone)]
pub struct VerifyRequest {
    /// Product line whose delegated keys must sign, and that the manifest
    /// must name.
    pub product_line: String,
    /// The device's hardware id, to be found in `hw_compat`.
    pub hw_id: Option<String>,
    /// The channel the device follows.
    pub channel: Option<String>,
    /// What is installed, for replay, rollback and upgrade-path checks.
    pub installed: Option<InstalledState>,
    /// How to judge expiry.
    pub clock: Clock,
    /// A technician's signed-off downgrade: allows a version that is not
    /// newer. The security counter must still hold.
    pub allow_downgrade: bool,
}

impl VerifyRequest {
    /// A request that checks signatures and the product line only, with the
    /// given clock; add device facts with the other fields.
    pub fn for_product_line(product_line: impl Into<String>, clock: Clock) -> Self {
        VerifyRequest {
            product_line: product_line.into(),
            hw_id: None,
            channel: None,
            installed: None,
            clock,
            allow_downgrade: false,
        }
    }
}

/// An accepted manifest: what to download and install, and the trusted state
/// to record once it is committed.
#[derive(Debug, Clone)]
pub struct UpdatePlan {
    /// The parsed manifest.
    pub manifest: Manifest,
    /// The payload bytes exactly as signed.
    pub payload: Vec<u8>,
    /// Key ids whose signatures counted toward the threshold.
    pub signed_by: Vec<KeyId>,
    /// The root version that authorised the release keys.
    pub root_version: u64,
    /// The latest time known after this manifest (`max(clock, issued_at)`),
    /// for devices without a clock. `None` for offline installs.
    pub latest_known_time: Option<OffsetDateTime>,
}

/// Runs every check on an untrusted manifest envelope.
pub fn verify_manifest(
    root: &TrustedRoot,
    req: &VerifyRequest,
    envelope_bytes: &[u8],
) -> Result<UpdatePlan> {
    let env = Envelope::from_slice(
        envelope_bytes,
        MAX_MANIFEST_BYTES,
        "manifest envelope",
        MANIFEST_PAYLOAD_TYPE,
    )?;
    let payload = env.payload_bytes()?;

    let role = root.release_role(&req.product_line)?;
    let signed_by = env.verify_threshold(
        &payload,
        &role.keys,
        role.threshold,
        &format!("release keys for {}", req.product_line),
    )?;

    let manifest = Manifest::from_payload(&payload)?;
    check_device(root, req, &manifest)?;

    let latest_known_time = req.clock.now().map(|t| t.max(manifest.issued_at));
    Ok(UpdatePlan {
        manifest,
        payload,
        signed_by,
        root_version: root.version(),
        latest_known_time,
    })
}

fn check_device(root: &TrustedRoot, req: &VerifyRequest, m: &Manifest) -> Result<()> {
    if m.product_line != req.product_line {
        return Err(Error::WrongProductLine {
            expected: req.product_line.clone(),
            found: m.product_line.clone(),
        });
    }
    if let Some(hw) = &req.hw_id
        && !m.hw_compat.iter().any(|h| h == hw)
    {
        return Err(Error::WrongHardware {
            hw_id: hw.clone(),
            compatible: m.hw_compat.clone(),
        });
    }
    if let Some(channel) = &req.channel
        && &m.channel != channel
    {
        return Err(Error::WrongChannel {
            expected: channel.clone(),
            found: m.channel.clone(),
        });
    }
    if let Some(now) = req.clock.now() {
        root.check_expiry(now)?;
        if now >= m.expires {
            return Err(Error::Expired {
                what: format!("manifest for {} {}", m.product_line, m.version),
                expired_at: crate::format_time(m.expires),
                now: crate::format_time(now),
            });
        }
    }
    if let Some(inst) = &req.installed {
        if m.manifest_version < inst.manifest_version {
            return Err(Error::ManifestReplay {
                accepted: inst.manifest_version,
                offered: m.manifest_version,
            });
        }
        if m.security_counter < inst.security_counter {
            return Err(Error::SecurityCounterRollback {
                committed: inst.security_counter,
                offered: m.security_counter,
            });
        }
        // SemVer precedence: build metadata never makes a release newer.
        if m.version.cmp_precedence(&inst.version).is_le() && !req.allow_downgrade {
            return Err(Error::Downgrade {
                installed: inst.version.clone(),
                offered: m.version.clone(),
            });
        }
        if let Some(requires) = &m.requires
            && inst.version.cmp_precedence(requires).is_lt()
        {
            return Err(Error::RequiresVersion {
                requires: requires.clone(),
                installed: inst.version.clone(),
            });
        }
    }
    Ok(())
}
