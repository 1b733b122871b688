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
    /// The root offered as the pinned trust anchor is not version 1: a
    /// later root is only trusted when reached by rotation from version 1.
    #[error(
        "the pinned root must be root version 1, this is version {found}; later versions are \
         trusted only as rotations from version 1"
    )]
    PinnedRootNotV1 {
        /// The version of the root offered.
        found: u64,
    },
    /// Release notes do not have the SHA-256 the manifest signs.
    #[error("release notes ({source_name}) have sha256 {actual}, the manifest signs {expected}")]
    ReleaseNotesMismatch {
        /// Where the notes came from ("inline release_notes", a file name).
        source_name: String,
        /// The signed `release_notes_sha256`.
        expected: String,
        /// The digest of the notes given.
        actual: String,
    },
    /// A `security` or `mixed` release carries no advisory: devices and
    /// owners must be told what it fixes and what to do.
    #[error(
        "a {kind} release must carry an advisory (summary, CVE ids, severity, required action)"
    )]
    AdvisoryMissing {
        /// The release kind (`security` or `mixed`).
        kind: &'static str,
    },
    /// A `mixed` release does not say why its security fix could not ship
    /// on its own.
    #[error("a mixed release must say in mixed_reason why its security fix could not ship alone")]
    MixedReasonMissing,
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
    /// The offered release already failed its health check on this device;
    /// it is not installed again until a newer manifest_version comes.
    #[error(
        "release {version} failed its health check on this device before; waiting for a newer release"
    )]
    FailedBefore {
        /// The release version.
        version: semver::Version,
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
    /// Local storage (state directory, slot) is full or over its quota.
    #[error("{context}: storage full ({source})")]
    StorageFull {
        /// What was being written, with the path.
        context: String,
        /// The underlying error (ENOSPC or a quota error).
        #[source]
        source: std::io::Error,
    },
    /// The device's persisted state cannot be read back as written: it does
    /// not parse or fails its checksum. Trust is never reset silently.
    #[error("corrupt device state in {path}: {detail}")]
    CorruptState {
        /// The file.
        path: String,
        /// What is wrong with it.
        detail: String,
    },
    /// A trusted value (counter, manifest_version, installed version) would
    /// go backwards.
    #[error("refusing to lower {field} from {committed} to {requested}")]
    RatchetBackwards {
        /// The field of the trusted state.
        field: &'static str,
        /// The committed value.
        committed: String,
        /// The value asked for.
        requested: String,
    },
    /// The release has an image this device cannot install.
    #[error(
        "image {name:?} targets {target:?}, which this device cannot install (it installs exactly one image with target {supported:?})"
    )]
    UnsupportedTarget {
        /// Image name from the manifest.
        name: String,
        /// Its target.
        target: String,
        /// What the device supports.
        supported: &'static str,
    },
    /// The bytes read back from the slot after writing are not the signed
    /// ones; the slot was not marked bootable.
    #[error(
        "image {name:?} read back from slot {slot} has sha256 {actual}, the manifest signs {expected}"
    )]
    ReadBackMismatch {
        /// Image name from the manifest.
        name: String,
        /// The slot written.
        slot: String,
        /// Signed digest (hex).
        expected: String,
        /// Digest read back (hex).
        actual: String,
    },
    /// The update state machine was asked for a step that does not fit the
    /// device's current state (for example commit with nothing pending).
    #[error("invalid update state: {detail}")]
    UpdateState {
        /// What was asked and why it does not fit.
        detail: String,
    },
    /// No answer was had from the network: connection refused or reset,
    /// DNS failure, TLS failure, timeout, an unparseable HTTP answer.
    #[error("{context}: {detail}")]
    Network {
        /// The request, with its URL redacted (no query).
        context: String,
        /// What failed.
        detail: String,
    },
    /// The server or mirror answered with a status the operation cannot
    /// use (a 404, a 403 `grant_expired`, a 503, ...).
    #[error("{url} answered HTTP {status}{}", server_code.as_ref().map(|c| format!(" ({c})")).unwrap_or_default())]
    UnexpectedStatus {
        /// The URL asked for, redacted (no query).
        url: String,
        /// The HTTP status.
        status: u16,
        /// The server's stable error code, when the body carried one.
        server_code: Option<String>,
    },
    /// A 206 answer whose `Content-Range` does not start at the offset
    /// asked for (or is missing or unparseable). Its body is never used.
    #[error("asked for bytes from offset {requested}, the answer's Content-Range is {answered:?}")]
    RangeMismatch {
        /// The offset asked for.
        requested: u64,
        /// The `Content-Range` header as sent (`(none)` if absent).
        answered: String,
    },
    /// A redirect the transport's policy does not follow.
    #[error("refused redirect from {from} to {to}: {reason}")]
    RedirectRefused {
        /// The URL that answered with the redirect, redacted.
        from: String,
        /// Where it pointed, redacted.
        to: String,
        /// Which rule refused it, and for a target on another origin which
        /// origin and how to allow it.
        reason: String,
    },
    /// The object store or CDN an allowed download origin points at (the
    /// server redirected the image download to a presigned URL there)
    /// refused the presigned URL, typically with a 403 (expired or tampered
    /// with) or a 400. Retryable the way a 403 `grant_expired` is: not by
    /// asking the same link again, but after a fresh update check, which
    /// hands out a fresh grant (and the server a fresh presigned URL); the
    /// download then resumes from the partial file.
    #[error(
        "the presigned download URL was refused by {origin} (HTTP {status}{}); a fresh update check hands out a new one",
        store_code.as_ref().map(|c| format!(", {c}")).unwrap_or_default()
    )]
    PresignedUrlRefused {
        /// The origin that refused it (`scheme://host[:port]`).
        origin: String,
        /// The HTTP status it answered with.
        status: u16,
        /// The store's error code (S3's `<Code>`, such as `AccessDenied`),
        /// when its body carried a plausible one.
        store_code: Option<String>,
    },
    /// The operation is not available on this transport or build (for
    /// example POST on an offline bundle).
    #[error("unsupported: {what}")]
    Unsupported {
        /// What was asked for.
        what: String,
    },
    /// A download kept failing and its retry budget (attempts without
    /// progress, or total time) ran out. The partial file is kept, so a
    /// later attempt resumes where this one stopped.
    #[error(
        "download of image {name:?} gave up after {attempts} attempt(s) in {elapsed_ms} ms; last failure: {last}"
    )]
    DownloadBudgetExhausted {
        /// Image name from the manifest.
        name: String,
        /// Requests made in this call.
        attempts: u32,
        /// Time spent in this call, in milliseconds.
        elapsed_ms: u64,
        /// The server's last `Retry-After`, if it asked for a wait longer
        /// than the budget allowed: the earliest sensible time to try again.
        retry_after: Option<std::time::Duration>,
        /// The failure that used up the budget.
        #[source]
        last: Box<Error>,
    },
    /// The server's update offer contradicts the signed manifest it carries
    /// (an image the manifest does not sign, a missing download URL). The
    /// manifest wins; nothing is downloaded from such an offer.
    #[error("the update offer does not match its signed manifest: {detail}")]
    OfferMismatch {
        /// What does not match.
        detail: String,
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
            Error::PinnedRootNotV1 { .. } => "pinned_root_not_v1",
            Error::ReleaseNotesMismatch { .. } => "release_notes_mismatch",
            Error::AdvisoryMissing { .. } => "advisory_missing",
            Error::MixedReasonMissing => "mixed_reason_missing",
            Error::ImageTruncated { .. } => "image_truncated",
            Error::ImageOversize { .. } => "image_oversize",
            Error::ImageHashMismatch { .. } => "image_hash_mismatch",
            Error::FailedBefore { .. } => "failed_before",
            Error::Io { .. } => "io",
            Error::StorageFull { .. } => "storage_full",
            Error::CorruptState { .. } => "corrupt_state",
            Error::RatchetBackwards { .. } => "ratchet_backwards",
            Error::UnsupportedTarget { .. } => "unsupported_target",
            Error::ReadBackMismatch { .. } => "read_back_mismatch",
            Error::UpdateState { .. } => "invalid_update_state",
            Error::Network { .. } => "network",
            Error::UnexpectedStatus { .. } => "unexpected_status",
            Error::RangeMismatch { .. } => "range_mismatch",
            Error::RedirectRefused { .. } => "redirect_refused",
            Error::PresignedUrlRefused { .. } => "presigned_url_refused",
            Error::Unsupported { .. } => "unsupported",
            Error::DownloadBudgetExhausted { .. } => "download_budget_exhausted",
            Error::OfferMismatch { .. } => "offer_mismatch",
        }
    }

    /// A 403 because the download link's grant ran out: retry after a new
    /// update check, which hands out a fresh link.
    pub fn is_grant_expired(&self) -> bool {
        matches!(
            self,
            Error::UnexpectedStatus { status: 403, server_code: Some(c), .. } if c == "grant_expired"
        )
    }

    /// The download link cannot be used again, but a fresh update check
    /// hands out one that works: the server's grant expired
    /// ([`Error::is_grant_expired`]), or the presigned URL the server
    /// redirected to was refused by its object store or CDN
    /// ([`Error::PresignedUrlRefused`]). The downloader stops at once on
    /// these (asking the same link again cannot help) and the error is
    /// retryable.
    pub fn needs_fresh_grant(&self) -> bool {
        self.is_grant_expired() || matches!(self, Error::PresignedUrlRefused { .. })
    }

    /// Whether the same operation may succeed if tried again later.
    ///
    /// Verification verdicts are final for the bytes they judged: fetching
    /// the same bytes again cannot change them. Only I/O can be transient.
    /// A truncated image is retryable because the usual cause is a cut
    /// download, and a resumed download can complete it. A full disk is
    /// retryable because space is usually freed (old partial downloads,
    /// logs). A 403 with the server code `grant_expired` is retryable: the
    /// download link's grant ran out (a slow download), a fresh check hands
    /// out a new link and the download resumes from the partial file; so is
    /// [`Error::PresignedUrlRefused`], its counterpart when the server
    /// redirected the download to an object store or CDN. A
    /// read-back mismatch is not: the device wrote the signed bytes
    /// and its slot holds others (failing storage or tampering on the
    /// device), which needs a person, not a loop.
    pub fn retryable(&self) -> bool {
        match self {
            Error::Io { .. } | Error::ImageTruncated { .. } | Error::StorageFull { .. } => true,
            // Transport trouble, not a verdict on bytes.
            Error::Network { .. } | Error::DownloadBudgetExhausted { .. } => true,
            // An expired or refused presigned URL: the next update check
            // hands out a fresh one (see `needs_fresh_grant`).
            Error::PresignedUrlRefused { .. } => true,
            // A source that misplaced a range once may be a cache or a
            // proxy in a bad state; the partial file is intact, so trying
            // later (another connection, another node) can succeed.
            Error::RangeMismatch { .. } => true,
            // 408 timeout, 425 too early, 429 too many requests, 5xx: the
            // server says "later". A 403 `grant_expired` means the download
            // link's grant ran out during a slow download: trying again
            // (the next update check hands out a fresh link) resumes from
            // the partial file. Other 4xx: the request must change.
            Error::UnexpectedStatus {
                status,
                server_code,
                ..
            } => {
                matches!(*status, 408 | 425 | 429)
                    || (500..600).contains(status)
                    || (*status == 403 && server_code.as_deref() == Some("grant_expired"))
            }
            _ => false,
        }
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

    /// Wraps an I/O error from *writing* local storage (state files,
    /// slots): a full disk or an exceeded quota becomes
    /// [`Error::StorageFull`], anything else [`Error::Io`].
    pub fn storage_io(context: impl Into<String>, source: std::io::Error) -> Self {
        use std::io::ErrorKind;
        match source.kind() {
            ErrorKind::StorageFull | ErrorKind::QuotaExceeded => Error::StorageFull {
                context: context.into(),
                source,
            },
            _ => Error::io(context, source),
        }
    }
}

/// Result alias used across the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn status(status: u16, server_code: Option<&str>) -> Error {
        Error::UnexpectedStatus {
            url: "http://server/v1/images/ab".into(),
            status,
            server_code: server_code.map(str::to_owned),
        }
    }

    #[test]
    fn an_expired_download_grant_is_retryable_other_403s_are_not() {
        assert!(status(403, Some("grant_expired")).retryable());
        assert!(!status(403, None).retryable());
        assert!(!status(403, Some("grant_invalid")).retryable());
        assert!(!status(404, Some("grant_expired")).retryable());
        assert!(status(503, None).retryable());
        assert!(status(429, None).retryable());
    }

    #[test]
    fn a_refused_presigned_url_needs_a_fresh_grant_like_an_expired_one() {
        let refused = Error::PresignedUrlRefused {
            origin: "http://127.0.0.1:3900".into(),
            status: 403,
            store_code: Some("AccessDenied".into()),
        };
        assert!(refused.retryable());
        assert!(refused.needs_fresh_grant());
        assert!(!refused.is_grant_expired());
        assert_eq!(refused.code(), "presigned_url_refused");
        let msg = refused.to_string();
        assert!(msg.contains("presigned download URL was refused by http://127.0.0.1:3900"));
        assert!(msg.contains("HTTP 403, AccessDenied"), "{msg}");
        assert!(status(403, Some("grant_expired")).needs_fresh_grant());
        assert!(!status(403, None).needs_fresh_grant());
        assert!(!status(503, None).needs_fresh_grant());
    }
}
