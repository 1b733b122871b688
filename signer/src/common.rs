//! Pieces several commands share: time arguments, expiry options and
//! reading signed documents for editing.
//!
//! Documents read here are *drafts to edit or sign*, not trusted input:
//! nothing read by these helpers is ever used to decide trust. Trust
//! decisions go through `TrustedRoot` and `verify_manifest` only.
//!
//! This module must never write files (see [`crate::fsutil`]).

use std::path::Path;

use anyhow::{Context as _, Result};
use firmup_client::manifest::{MANIFEST_PAYLOAD_TYPE, MAX_MANIFEST_BYTES};
use firmup_client::root::{MAX_ROOT_BYTES, ROOT_PAYLOAD_TYPE};
use firmup_client::{Envelope, Manifest, RootDocument};
use time::format_description::well_known::Rfc3339;
use time::{Duration, OffsetDateTime, UtcOffset};

use crate::fsutil;

/// Parses an RFC 3339 timestamp (for clap) and normalises it to UTC.
pub fn parse_rfc3339(s: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s, &Rfc3339)
        .map(|t| t.to_offset(UtcOffset::UTC))
        .map_err(|e| format!("{s:?} is not an RFC 3339 timestamp like 2027-12-31T00:00:00Z: {e}"))
}

/// Parses a semantic version (for clap).
pub fn parse_semver(s: &str) -> Result<semver::Version, String> {
    semver::Version::parse(s)
        .map_err(|e| format!("{s:?} is not a semantic version like 2.1.0: {e}"))
}

/// The current time in UTC, to the second (documents are easier to read
/// and compare without nanoseconds).
pub fn now_utc() -> OffsetDateTime {
    let now = OffsetDateTime::now_utc();
    now.replace_nanosecond(0).unwrap_or(now)
}

/// Formats a timestamp the way documents store it.
pub fn fmt_time(t: OffsetDateTime) -> String {
    firmup_client::format_time(t)
}

/// `--expires` / `--expires-in-days`, shared by root and manifest commands.
#[derive(Debug, Clone, clap::Args)]
pub struct ExpiryArgs {
    /// Expiry as an RFC 3339 instant, e.g. 2027-12-31T00:00:00Z.
    #[arg(
        long,
        value_name = "RFC3339",
        value_parser = parse_rfc3339,
        conflicts_with = "expires_in_days"
    )]
    pub expires: Option<OffsetDateTime>,
    /// Expiry as a number of days after the document's start (now, or
    /// --issued-at for manifests).
    #[arg(long, value_name = "DAYS", default_value_t = 365)]
    pub expires_in_days: u32,
}

impl ExpiryArgs {
    /// The expiry instant, counted from `start` when given in days.
    pub fn resolve(&self, start: OffsetDateTime) -> Result<OffsetDateTime> {
        match self.expires {
            Some(t) => Ok(t),
            None => start
                .checked_add(Duration::days(i64::from(self.expires_in_days)))
                .context("--expires-in-days is too far in the future"),
        }
    }
}

/// Warns (on stderr) when a document being produced is already expired;
/// not an error, because test fixtures need expired documents.
pub fn warn_if_expired(what: &str, expires: OffsetDateTime) {
    let now = OffsetDateTime::now_utc();
    if expires <= now {
        eprintln!(
            "warning: {what} expires at {}, which is not in the future; devices will refuse it",
            fmt_time(expires)
        );
    }
}

/// A root envelope read for editing or signing, with its parsed document.
#[derive(Debug, Clone)]
pub struct RootFile {
    /// The raw bytes as read.
    pub bytes: Vec<u8>,
    /// The envelope.
    pub envelope: Envelope,
    /// The payload bytes, exactly as in the envelope.
    pub payload: Vec<u8>,
    /// The payload parsed (untrusted: the signatures are not checked here).
    pub doc: RootDocument,
}

/// Reads and parses a root envelope, with the engine's size limit.
pub fn read_root(path: &Path) -> Result<RootFile> {
    let bytes = fsutil::read_document(path, MAX_ROOT_BYTES, "root envelope")?;
    let ctx = || format!("invalid root document ({})", path.display());
    let envelope = Envelope::from_slice(&bytes, MAX_ROOT_BYTES, "root envelope", ROOT_PAYLOAD_TYPE)
        .with_context(ctx)?;
    let payload = envelope.payload_bytes().with_context(ctx)?;
    let doc = RootDocument::from_payload(&payload).with_context(ctx)?;
    Ok(RootFile {
        bytes,
        envelope,
        payload,
        doc,
    })
}

/// A manifest envelope read for co-signing, with its parsed payload.
#[derive(Debug, Clone)]
pub struct ManifestFile {
    /// The envelope.
    pub envelope: Envelope,
    /// The payload parsed (untrusted: the signatures are not checked here).
    pub manifest: Manifest,
}

/// Reads and parses a manifest envelope, with the engine's size limit.
pub fn read_manifest(path: &Path) -> Result<ManifestFile> {
    let bytes = fsutil::read_document(path, MAX_MANIFEST_BYTES, "manifest envelope")?;
    let ctx = || format!("invalid manifest ({})", path.display());
    let envelope = Envelope::from_slice(
        &bytes,
        MAX_MANIFEST_BYTES,
        "manifest envelope",
        MANIFEST_PAYLOAD_TYPE,
    )
    .with_context(ctx)?;
    let payload = envelope.payload_bytes().with_context(ctx)?;
    let manifest = Manifest::from_payload(&payload).with_context(ctx)?;
    Ok(ManifestFile { envelope, manifest })
}

/// What a manifest says about its release kind, its advisory and its SBOM,
/// as lines to print under a command's summary line: always the kind
/// (noting when the manifest does not state it), for `security` and
/// `mixed` the severity and CVE ids, the advisory's summary and action and
/// the mixed reason, and the SBOM reference if there is one. Text spanning
/// several lines is indented on its continuation lines.
pub fn release_kind_lines(m: &Manifest) -> Vec<String> {
    let indent = |text: &str| text.trim_end().replace('\n', "\n    ");
    let mut lines = Vec::new();
    let kind = m.kind();
    match &m.advisory {
        Some(a) if kind.fixes_security() => lines.push(format!(
            "kind {}: severity {}, fixes {}",
            kind.as_str(),
            a.severity.as_str(),
            a.cves.join(", ")
        )),
        _ if m.kind.is_none() => lines.push(format!("kind {} (not stated)", kind.as_str())),
        _ => lines.push(format!("kind {}", kind.as_str())),
    }
    if let Some(reason) = &m.mixed_reason {
        lines.push(format!("mixed reason: {}", indent(reason)));
    }
    if let Some(a) = &m.advisory {
        lines.push(format!("advisory: {}", indent(&a.summary)));
        lines.push(format!("action: {}", indent(&a.action)));
    }
    if let Some(sbom) = &m.sbom {
        lines.push(format!(
            "sbom {}: {} bytes, sha256 {}",
            sbom.format.as_str(),
            sbom.length,
            sbom.sha256
        ));
    }
    lines
}

/// Shortens a key id for messages where the full id would drown the
/// sentence; full ids are printed wherever they are the point.
pub fn short_id(id: &firmup_client::KeyId) -> &str {
    let s = id.as_str();
    s.get(..16).unwrap_or(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_kind_lines_say_the_kind_and_what_a_fix_fixes() {
        let mut m = firmup_fixtures::release::ReleaseBuilder::standard().manifest;
        assert_eq!(release_kind_lines(&m), ["kind feature (not stated)"]);
        m.kind = Some(firmup_client::ReleaseKind::Feature);
        assert_eq!(release_kind_lines(&m), ["kind feature"]);

        let mut m = firmup_fixtures::release::ReleaseBuilder::standard()
            .mixed(&["CVE-2026-1111", "CVE-2026-2222"])
            .manifest;
        m.advisory.as_mut().unwrap().action = "Install it.\nUntil then, block port 554.\n".into();
        m.sbom = Some(firmup_client::SbomRef {
            format: firmup_client::SbomFormat::Spdx,
            length: 3,
            sha256: firmup_client::Sha256Digest::of(b"abc"),
        });
        let lines = release_kind_lines(&m);
        assert_eq!(
            lines[0],
            "kind mixed: severity high, fixes CVE-2026-1111, CVE-2026-2222"
        );
        assert_eq!(
            lines[1],
            "mixed reason: TEST-ONLY: the fix needs the new stack."
        );
        assert!(
            lines[2].starts_with("advisory: TEST-ONLY: fixes"),
            "{lines:?}"
        );
        assert_eq!(
            lines[3],
            "action: Install it.\n    Until then, block port 554."
        );
        assert_eq!(
            lines[4],
            format!(
                "sbom spdx: 3 bytes, sha256 {}",
                firmup_client::Sha256Digest::of(b"abc")
            )
        );
        assert_eq!(lines.len(), 5);
    }

    #[test]
    fn timestamps_are_normalised_to_utc() {
        let t = parse_rfc3339("2027-12-31T02:00:00+02:00").unwrap();
        assert_eq!(fmt_time(t), "2027-12-31T00:00:00Z");
        assert!(parse_rfc3339("2027-12-31").is_err());
    }
}
