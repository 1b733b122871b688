//! The one error type of the client library.
//!
//! Every variant carries a stable machine code ([`Error::code`]) that the
//! server, the signer and the device agent show and log unchanged, and says
//! whether trying again can help ([`Error::retryable`]). A verification
//! rejection is an `Error` too: the device must treat "could not prove this
//! is safe" exactly like "this is unsafe".
//!
//! This module must never include key material or whole payloads in a
//! message: messages name the problem and the field, not the secret.

use std::fmt;

/// Everything that can go wrong while parsing, verifying or checking images.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A document or stream is larger than the limit for its kind.
    #[error("{what} is {actual} bytes, over the limit of {limit} bytes")]
    TooLarge {
        /// What was too large (for example "manifest envelope").
        what: &'static str,
        /// The limit in bytes.
        limit: u64,
        /// The size seen, or the first size known to exceed the limit.
        actual: u64,
    },
    /// A document could not be decoded (bad JSON, bad base64, bad hex).
    #[error("malformed {what}: {detail}")]
    Malformed {
        /// What was being decoded.
        what: &'static str,
        /// What the decoder said.
        detail: String,
    },
    /// The envelope holds a payload of another kind than expected.
    #[error("unexpected payload type {found:?}, expected {expected:?}")]
    UnknownPayloadType {
        /// The payload type the caller asked for.
        expected: &'static str,
        /// The payload type in the envelope.
        found: String,
    },
    /// The document is of a format version this library does not implement.
    #[error("unsupported spec_version {found} in {what} (this build supports {supported})")]
    UnsupportedSpecVersion {
        /// Which document.
        what: &'static str,
        /// The version found.
        found: u32,
        /// The version supported.
        supported: u32,
    },
    /// A field is present but its value is not acceptable.
    #[error("invalid {field}: {detail}")]
    InvalidField {
        /// The field's name, as written in the document.
        field: &'static str,
        /// Why the value is not acceptable.
        detail: String,
    },
    /// The envelope carries no signature at all.
    #[error("the {role} document carries no signatures")]
    NoSignatures {
        /// The signing role that was expected ("root", or a product line).
        role: String,
    },
    /// Fewer distinct, valid signatures than the role's threshold.
    #[error(
        "signature threshold not met for {role}: {valid} valid signature(s) from distinct trusted keys, {threshold} required"
    )]
    ThresholdNotMet {
        /// The role, e.g. `root version 2 (keys of root version 1)` or `release keys for encoders`.
        role: String,
        /// Signatures that verified, each from a distinct trusted key.
        valid: usize,
        /// The threshold the role requires.
        threshold: u32,
    },
    /// A public key is a weak (small-order) ed25519 point.
    #[error("public key {keyid} is weak (small-order point) and is never trusted")]
    WeakKey {
        /// Key id of the weak key.
        keyid: String,
    },
    /// A public key could not be decoded.
    #[error("invalid public key {keyid}: {detail}")]
    InvalidKey {
        /// Key id as written in the document.
        keyid: String,
        /// What was wrong.
        detail: String,
    },
    /// The trusted root delegates no release keys to this product line.
    #[error("the trusted root has no delegation for product line {product_line:?}")]
    NoDelegation {
        /// The product line asked for.
        product_line: String,
    },
    /// The manifest is for another product line than the device's.
    #[error("manifest is for product line {found:?}, this device is {expected:?}")]
    WrongProductLine {
        /// The device's product line.
        expected: String,
        /// The manifest's product line.
        found: String,
    },
    /// The device's hardware id is not in the manifest's compatibility list.
    #[error("hardware id {hw_id:?} is not in the manifest's hw_compat list {compatible:?}")]
    WrongHardware {
        /// The device's hardware id.
        hw_id: String,
        /// What the manifest says it fits.
        compatible: Vec<String>,
    },
    /// The manifest is for another channel than the one asked for.
    #[error("manifest is for channel {found:?}, expected {expected:?}")]
    WrongChannel {
        /// The channel the device follows.
        expected: String,
        /// The manifest's channel.
        found: String,
    },
    /// The offered version is not newer than the installed one.
    #[error("version {offered} is not newer than the installed {installed}")]
    Downgrade {
        /// Installed version.
        installed: semver::Version,
        /// Offered version.
        offered: semver::Version,
    },
    /// The offered security counter is lower than the committed one.
    #[error("security counter {offered} is lower than the committed {committed}")]
    SecurityCounterRollback {
        /// The counter the device has committed.
        committed: u32,
        /// The counter in the manifest.
        offered: u32,
    },
    /// The manifest_version is older than one already accepted (replay).
    #[error("manifest_version {offered} is older than the already accepted {accepted} (replay)")]
    ManifestReplay {
        /// Highest manifest_version accepted for this product line and channel.
        accepted: u64,
        /// The manifest's manifest_version.
        offered: u64,
    },
    /// A signed document has expired.
    #[error("{what} expired at {expired_at} (time used: {now})")]
    Expired {
        /// Which document ("manifest", "root version 3").
        what: String,
        /// Its expiry.
        expired_at: String,
        /// The time it was checked against.
        now: String,
    },
    /// The release needs a newer installed version first (upgrade path).
    #[error("this release requires at least {requires} installed first; {installed} is installed")]
    RequiresVersion {
        /// The minimum installed version it needs.
        requires: semver::Version,
        /// What is installed.
        installed: semver::Version,
    },
    /// A root rotation skipped or repeated a version.
    #[error("root version {found} cannot follow root version {current}; expected {expected}")]
    RootVersionSkip {
        /// The currently trusted root version.
        current: u64,
        /// The only acceptable next version.
        expected: u64,
        /// The version offered.
        found: u64,
    },
    /// More root rotations than one update may walk.
    #[error("root chain has more than {limit} rotations")]
    RootChainTooLong {
        /// The limit.
        limit: usize,
    },
    /// The image has fewer bytes than the manifest says.
    #[error("image {name:?} is truncated: {actual} of {expected} bytes")]
    ImageTruncated {
        /// Image name from the manifest.
        name: String,
        /// Signed length.
        expected: u64,
        /// Bytes received.
        actual: u64,
    },
    /// The image has more bytes than the manifest says.
    #[error("image {name:?} is longer than its signed length of {expected} bytes")]
    ImageOversize {
        /// Image name from the manifest.
        name: String,
        /// Signed length.
        expected: u64,
    },
    /// The image's sha256 is not the signed one.
    #[error("image {name:?} has sha256 {actual}, the manifest signs {expected}")]
    ImageHashMismatch {
        /// Image name from the manifest.
        name: String,
        /// Signed digest (hex).
        expected: String,
        /// Computed digest (hex).
        actual: String,
    },
    /// An I/O error while reading an image or a document.
    #[error("{context}: {source}")]
    Io {
        /// What was being done, with the path where there is one.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
}

impl Error {
    /// A stable, machine-readable code. These never change meaning once
    /// released; clients and dashboards key on them.
    pub fn code(&self) -> &'static str {
        match self {
            Error::TooLarge { .. } => "too_large",
            Error::Malformed { .. } => "malformed",
            Error::UnknownPayloadType { .. } => "unknown_payload_type",
            Error::UnsupportedSpecVersion { .. } => "unsupported_spec_version",
            Error::InvalidField { .. } => "invalid_field",
            Error::NoSignatures { .. } => "no_signatures",
            Error::ThresholdNotMet { .. } => "threshold_not_met",
            Error::WeakKey { .. } => "weak_key",
            Error::InvalidKey { .. } => "invalid_key",
            Error::NoDelegation { .. } => "no_delegation",
            Error::WrongProductLine { .. } => "wrong_product_line",
            Error::WrongHardware { .. } => "wrong_hardware",
            Error::WrongChannel { .. } => "wrong_channel",
            Error::Downgrade { .. } => "downgrade",
            Error::SecurityCounterRollback { .. } => "security_counter_rollback",
            Error::ManifestReplay { .. } => "manifest_replay",
            Error::Expired { .. } => "expired",
            Error::RequiresVersion { .. } => "requires_version",
            Error::RootVersionSkip { .. } => "root_version_skip",
            Error::RootChainTooLong { .. } => "root_chain_too_long",
            Error::ImageTruncated { .. } => "image_truncated",
            Error::ImageOversize { .. } => "image_oversize",
            Error::ImageHashMismatch { .. } => "image_hash_mismatch",
            Error::Io { .. } => "io",
        }
    }

    /// Whether the same operation may succeed if tried again later.
    ///
    /// Verification verdicts are final for the bytes they judged: fetching
    /// the same bytes again cannot change them. Only I/O can be transient.
    /// A truncated image is retryable because the usual cause is a cut
    /// download, and a resumed download can complete it.
    pub fn retryable(&self) -> bool {
        matches!(self, Error::Io { .. } | Error::ImageTruncated { .. })
    }

    pub(crate) fn malformed(what: &'static str, detail: impl fmt::Display) -> Self {
        Error::Malformed {
            what,
            detail: detail.to_string(),
        }
    }

    pub(crate) fn invalid(field: &'static str, detail: impl fmt::Display) -> Self {
        Error::InvalidField {
            field,
            detail: detail.to_string(),
        }
    }

    /// Wraps an I/O error with what was being done.
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        Error::Io {
            context: context.into(),
            source,
        }
    }
}

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
