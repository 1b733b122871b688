//! The release manifest: the signed statement of what a release installs,
//! on which hardware, and in what order relative to other releases.
//!
//! The JSON schema is `docs/manifest.v1.schema.json`. Unknown top-level
//! fields are treated as *critical* and rejected: a field this build does
//! not understand might restrict where the release may go, and ignoring a
//! restriction is unsafe. Data that a verifier may safely ignore goes under
//! `extensions`.
//!
//! This module parses payload bytes that have already passed signature
//! verification; it must never be used to decide trust on its own.

use std::collections::{BTreeMap, BTreeSet};

use semver::Version;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::digest::Sha256Digest;
use crate::error::{Error, Result};

/// Payload type of a manifest envelope.
pub const MANIFEST_PAYLOAD_TYPE: &str = "application/vnd.firmup.manifest.v1+json";
/// The manifest format version this build implements.
pub const MANIFEST_SPEC_VERSION: u32 = 1;
/// Largest manifest envelope accepted, in bytes (checked before parsing).
pub const MAX_MANIFEST_BYTES: u64 = 64 * 1024;

/// One image a release installs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageSpec {
    /// Name of the image file, unique within the manifest.
    pub name: String,
    /// Where it goes: a slot or component name (for example "rootfs").
    pub target: String,
    /// Exact length in bytes. Downloads are capped at this length.
    pub length: u64,
    /// SHA-256 of the image; images are content-addressed by it.
    pub sha256: Sha256Digest,
}

/// The signed manifest payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Format version; see [`MANIFEST_SPEC_VERSION`].
    pub spec_version: u32,
    /// Product line whose delegated release keys must sign this manifest.
    pub product_line: String,
    /// Exact hardware ids (or revisions) this release fits.
    pub hw_compat: Vec<String>,
    /// Release channel, for example "stable" or "beta".
    pub channel: String,
    /// Release version (semver).
    pub version: Version,
    /// Monotonic counter per product line and channel, against replay.
    pub manifest_version: u64,
    /// Anti-rollback counter: devices never accept a lower one.
    pub security_counter: u32,
    /// Minimum installed version needed before this release (upgrade path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requires: Option<Version>,
    /// When the release engineers signed it.
    #[serde(with = "time::serde::rfc3339")]
    pub issued_at: OffsetDateTime,
    /// After this instant the manifest is refused (except offline installs).
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    /// Every image the release installs; nothing else is installed.
    pub images: Vec<ImageSpec>,
    /// Release notes, inline. When `release_notes_sha256` is present too,
    /// it must be the SHA-256 of these notes' UTF-8 bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_notes: Option<String>,
    /// SHA-256 of the release notes (the UTF-8 bytes of the inline notes,
    /// or of a notes file that travels with the manifest); checked with
    /// [`Manifest::check_release_notes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub release_notes_sha256: Option<Sha256Digest>,
    /// What the release is for security support; absent means
    /// [`ReleaseKind::Feature`] (every manifest signed before the field
    /// existed). Read it with [`Manifest::kind`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ReleaseKind>,
    /// Why a `mixed` release's security fix could not ship on its own;
    /// required for `mixed`, refused for other kinds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mixed_reason: Option<String>,
    /// What a `security` or `mixed` release fixes and what owners should
    /// do; required for those kinds, refused for `feature`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub advisory: Option<Advisory>,
    /// The release's software bill of materials, a separate signed
    /// artifact: the manifest signs its digest and length.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom: Option<SbomRef>,
    /// Non-critical vendor data that verifiers may ignore.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extensions: BTreeMap<String, serde_json::Value>,
}

/// What a release is, as the Cyber Resilience Act distinguishes them:
/// security fixes are free for a unit's whole support period and may
/// install automatically; feature releases follow the product's terms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReleaseKind {
    /// Fixes vulnerabilities and nothing else.
    Security,
    /// New features (the default).
    Feature,
    /// A security fix that ships inside a feature release, with the reason
    /// it could not be separated (`mixed_reason`).
    Mixed,
}

impl ReleaseKind {
    /// The stable name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            ReleaseKind::Security => "security",
            ReleaseKind::Feature => "feature",
            ReleaseKind::Mixed => "mixed",
        }
    }

    /// Parses the stable name.
    pub fn parse(s: &str) -> Option<ReleaseKind> {
        match s {
            "security" => Some(ReleaseKind::Security),
            "feature" => Some(ReleaseKind::Feature),
            "mixed" => Some(ReleaseKind::Mixed),
            _ => None,
        }
    }

    /// Whether the release carries a security fix (`security` or `mixed`).
    pub fn fixes_security(self) -> bool {
        matches!(self, ReleaseKind::Security | ReleaseKind::Mixed)
    }
}

/// How severe the vulnerabilities an advisory names are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Low.
    Low,
    /// Medium.
    Medium,
    /// High.
    High,
    /// Critical.
    Critical,
}

impl Severity {
    /// The stable name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// The security advisory of a `security` or `mixed` release, signed with
/// the manifest so no server can relabel or soften it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Advisory {
    /// What the release fixes, in a few sentences for owners.
    pub summary: String,
    /// The vulnerabilities fixed: at least one `CVE-YYYY-NNNN` id, each
    /// once.
    pub cves: Vec<String>,
    /// The highest severity among them.
    pub severity: Severity,
    /// What owners must do (for example "Install this update; until then
    /// block port 554 from untrusted networks").
    pub action: String,
}

/// Longest advisory summary or action, and mixed reason, in characters.
pub const MAX_ADVISORY_TEXT: usize = 4000;
/// Most CVE ids one advisory names.
pub const MAX_CVES: usize = 100;

/// The format of an SBOM artifact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SbomFormat {
    /// SPDX 2.x JSON.
    Spdx,
    /// CycloneDX JSON.
    Cyclonedx,
}

impl SbomFormat {
    /// The stable name, as serialised.
    pub fn as_str(self) -> &'static str {
        match self {
            SbomFormat::Spdx => "spdx",
            SbomFormat::Cyclonedx => "cyclonedx",
        }
    }
}

/// The signed reference to a release's SBOM file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SbomRef {
    /// SPDX or CycloneDX (JSON).
    pub format: SbomFormat,
    /// Exact length of the file in bytes.
    pub length: u64,
    /// SHA-256 of the file.
    pub sha256: Sha256Digest,
}

/// Whether `id` is a CVE id: `CVE-`, a four-digit year, `-`, and 4 to 19
/// digits.
pub fn is_cve_id(id: &str) -> bool {
    let Some(rest) = id.strip_prefix("CVE-") else {
        return false;
    };
    let Some((year, seq)) = rest.split_once('-') else {
        return false;
    };
    year.len() == 4
        && year.bytes().all(|b| b.is_ascii_digit())
        && (4..=19).contains(&seq.len())
        && seq.bytes().all(|b| b.is_ascii_digit())
}

/// Checks free text of the advisory: present, at most
/// [`MAX_ADVISORY_TEXT`] characters, no control characters but newlines.
fn check_text(field: &'static str, value: &str) -> Result<()> {
    if value.trim().is_empty() {
        return Err(Error::invalid(field, "must not be empty"));
    }
    if value.chars().count() > MAX_ADVISORY_TEXT {
        return Err(Error::invalid(
            field,
            format!("must be at most {MAX_ADVISORY_TEXT} characters"),
        ));
    }
    if value.chars().any(|c| c.is_control() && c != '\n') {
        return Err(Error::invalid(
            field,
            "must not hold control characters other than newlines",
        ));
    }
    Ok(())
}

impl Advisory {
    /// The advisory's own rules.
    pub fn validate(&self) -> Result<()> {
        check_text("advisory.summary", &self.summary)?;
        check_text("advisory.action", &self.action)?;
        if self.cves.is_empty() {
            return Err(Error::invalid(
                "advisory.cves",
                "must name at least one CVE id",
            ));
        }
        if self.cves.len() > MAX_CVES {
            return Err(Error::invalid(
                "advisory.cves",
                format!("must name at most {MAX_CVES} ids"),
            ));
        }
        let mut seen = BTreeSet::new();
        for cve in &self.cves {
            if !is_cve_id(cve) {
                return Err(Error::invalid(
                    "advisory.cves",
                    format!("{cve:?} is not a CVE id like CVE-2026-12345"),
                ));
            }
            if !seen.insert(cve.as_str()) {
                return Err(Error::invalid(
                    "advisory.cves",
                    format!("{cve} appears twice"),
                ));
            }
        }
        Ok(())
    }
}

impl Manifest {
    /// Parses verified payload bytes and checks the manifest's own
    /// consistency (not its fitness for any device).
    pub fn from_payload(bytes: &[u8]) -> Result<Self> {
        let m: Manifest = crate::strict::from_slice(bytes, "manifest payload")?;
        m.validate()?;
        Ok(m)
    }

    /// Serialises to the payload bytes that will be signed.
    pub fn to_payload(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let mut out =
            serde_json::to_vec_pretty(self).map_err(|e| Error::malformed("manifest", e))?;
        out.push(b'\n');
        Ok(out)
    }

    /// Internal consistency rules, shared by the signer (before signing)
    /// and every verifier (after signature checks).
    pub fn validate(&self) -> Result<()> {
        if self.spec_version != MANIFEST_SPEC_VERSION {
            return Err(Error::UnsupportedSpecVersion {
                what: "manifest",
                found: self.spec_version,
                supported: MANIFEST_SPEC_VERSION,
            });
        }
        check_name("product_line", &self.product_line)?;
        check_name("channel", &self.channel)?;
        if self.hw_compat.is_empty() {
            return Err(Error::invalid(
                "hw_compat",
                "must list at least one hardware id",
            ));
        }
        for hw in &self.hw_compat {
            check_name("hw_compat", hw)?;
        }
        if self.expires <= self.issued_at {
            return Err(Error::invalid("expires", "must be later than issued_at"));
        }
        if self.images.is_empty() {
            return Err(Error::invalid("images", "must list at least one image"));
        }
        let mut names = BTreeSet::new();
        for image in &self.images {
            check_name("images[].name", &image.name)?;
            check_name("images[].target", &image.target)?;
            if !names.insert(image.name.as_str()) {
                return Err(Error::invalid(
                    "images[].name",
                    format!("{:?} appears twice", image.name),
                ));
            }
        }
        if let (Some(notes), Some(_)) = (&self.release_notes, &self.release_notes_sha256) {
            self.check_release_notes(notes.as_bytes(), "inline release_notes")?;
        }
        self.validate_kind()?;
        if let Some(req) = &self.requires
            && req.cmp_precedence(&self.version).is_ge()
        {
            return Err(Error::invalid(
                "requires",
                format!(
                    "{req} must be lower than the release version {}",
                    self.version
                ),
            ));
        }
        Ok(())
    }
}

impl Manifest {
    /// What the release is: [`ReleaseKind::Feature`] when the manifest does
    /// not say.
    pub fn kind(&self) -> ReleaseKind {
        self.kind.unwrap_or(ReleaseKind::Feature)
    }

    /// The kind rules: a security fix says what it fixes, a mixed release
    /// says why the fix could not ship alone, and a feature release carries
    /// neither.
    fn validate_kind(&self) -> Result<()> {
        let kind = self.kind();
        match (&self.mixed_reason, kind) {
            (None, ReleaseKind::Mixed) => return Err(Error::MixedReasonMissing),
            (Some(reason), ReleaseKind::Mixed) => check_text("mixed_reason", reason)?,
            (Some(_), _) => {
                return Err(Error::invalid(
                    "mixed_reason",
                    format!("is for mixed releases only; this one is {}", kind.as_str()),
                ));
            }
            (None, _) => {}
        }
        match (&self.advisory, kind.fixes_security()) {
            (None, true) => Err(Error::AdvisoryMissing {
                kind: kind.as_str(),
            }),
            (Some(a), true) => a.validate(),
            (Some(_), false) => Err(Error::invalid(
                "advisory",
                "belongs to security and mixed releases; this one is a feature release",
            )),
            (None, false) => Ok(()),
        }
    }

    /// Checks release notes that travel with the manifest (inline, or as a
    /// separate file) against the signed `release_notes_sha256`. Fails with
    /// [`Error::ReleaseNotesMismatch`] when the digest differs or when the
    /// manifest signs no digest at all (the notes cannot be vouched for).
    pub fn check_release_notes(&self, notes: &[u8], source_name: &str) -> Result<()> {
        let actual = Sha256Digest::of(notes);
        match &self.release_notes_sha256 {
            Some(expected) if *expected == actual => Ok(()),
            expected => Err(Error::ReleaseNotesMismatch {
                source_name: source_name.to_string(),
                expected: expected
                    .map_or_else(|| "no release_notes_sha256".to_string(), |d| d.to_hex()),
                actual: actual.to_hex(),
            }),
        }
    }
}

/// Checks a name (product line, channel, hardware id, image name, serial):
/// names are short,
/// printable and free of path separators, because they end up in file
/// names, URLs and log lines.
pub fn check_name(field: &'static str, value: &str) -> Result<()> {
    let ok = !value.is_empty()
        && value.len() <= 128
        && value != "."
        && value != ".."
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'+'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            field,
            format!(
                "{value:?} must be 1-128 characters of letters, digits, '-', '_', '.', '+' and not a path"
            ),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn sample() -> Manifest {
        Manifest {
            spec_version: 1,
            product_line: "encoders".into(),
            hw_compat: vec!["enc-4k-r2".into()],
            channel: "stable".into(),
            version: Version::new(2, 1, 0),
            manifest_version: 7,
            security_counter: 3,
            requires: Some(Version::new(2, 0, 0)),
            issued_at: datetime!(2026-01-01 0:00 UTC),
            expires: datetime!(2027-01-01 0:00 UTC),
            images: vec![ImageSpec {
                name: "rootfs.img".into(),
                target: "rootfs".into(),
                length: 3,
                sha256: Sha256Digest::of(b"abc"),
            }],
            release_notes: Some("Fixes.".into()),
            release_notes_sha256: None,
            kind: None,
            mixed_reason: None,
            advisory: None,
            sbom: None,
            extensions: BTreeMap::new(),
        }
    }

    fn advisory() -> Advisory {
        Advisory {
            summary: "Fixes a buffer overflow in the RTSP server.".into(),
            cves: vec!["CVE-2026-12345".into()],
            severity: Severity::High,
            action: "Install this update.".into(),
        }
    }

    #[test]
    fn a_manifest_without_kind_is_a_feature_release() {
        let m = sample();
        assert_eq!(m.kind(), ReleaseKind::Feature);
        let text = String::from_utf8(m.to_payload().unwrap()).unwrap();
        assert!(!text.contains("kind"), "{text}");
    }

    #[test]
    fn a_security_release_round_trips_with_its_advisory_and_sbom() {
        let mut m = sample();
        m.kind = Some(ReleaseKind::Security);
        m.advisory = Some(advisory());
        m.sbom = Some(SbomRef {
            format: SbomFormat::Cyclonedx,
            length: 3,
            sha256: Sha256Digest::of(b"abc"),
        });
        let bytes = m.to_payload().unwrap();
        assert_eq!(Manifest::from_payload(&bytes).unwrap(), m);
    }

    #[test]
    fn a_security_release_without_advisory_is_refused() {
        let mut m = sample();
        m.kind = Some(ReleaseKind::Security);
        assert_eq!(m.validate().unwrap_err().code(), "advisory_missing");
        m.kind = Some(ReleaseKind::Mixed);
        m.mixed_reason = Some("The fix needs the new TLS stack of 3.0.".into());
        assert_eq!(m.validate().unwrap_err().code(), "advisory_missing");
    }

    #[test]
    fn a_mixed_release_without_reason_is_refused() {
        let mut m = sample();
        m.kind = Some(ReleaseKind::Mixed);
        m.advisory = Some(advisory());
        assert_eq!(m.validate().unwrap_err().code(), "mixed_reason_missing");
        m.mixed_reason = Some("  ".into());
        assert_eq!(m.validate().unwrap_err().code(), "invalid_field");
        m.mixed_reason = Some("The fix needs the new TLS stack of 3.0.".into());
        assert!(m.validate().is_ok());
    }

    #[test]
    fn a_feature_release_carries_no_advisory_or_mixed_reason() {
        let mut m = sample();
        m.advisory = Some(advisory());
        let err = m.validate().unwrap_err();
        assert_eq!(err.code(), "invalid_field");
        assert!(err.to_string().contains("advisory"), "{err}");
        m.advisory = None;
        m.mixed_reason = Some("why".into());
        assert_eq!(m.validate().unwrap_err().code(), "invalid_field");
    }

    #[test]
    fn advisory_cve_ids_are_checked() {
        let mut m = sample();
        m.kind = Some(ReleaseKind::Security);
        for bad in [
            vec![],
            vec!["CVE-26-1234".to_string()],
            vec!["cve-2026-1234".into()],
            vec!["CVE-2026-123".into()],
            vec!["CVE-2026-12345".into(), "CVE-2026-12345".into()],
        ] {
            let mut a = advisory();
            a.cves = bad.clone();
            m.advisory = Some(a);
            let err = m.validate().unwrap_err();
            assert_eq!(err.code(), "invalid_field", "{bad:?}");
            assert!(err.to_string().contains("advisory.cves"), "{err}");
        }
        assert!(is_cve_id("CVE-2026-1234567"));
        let mut a = advisory();
        a.summary = "bell\u{7}".into();
        m.advisory = Some(a);
        assert_eq!(m.validate().unwrap_err().code(), "invalid_field");
    }

    #[test]
    fn an_unknown_kind_or_severity_is_malformed() {
        let mut v: serde_json::Value =
            serde_json::from_slice(&sample().to_payload().unwrap()).unwrap();
        v["kind"] = "hotfix".into();
        let err = Manifest::from_payload(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(err.code(), "malformed");
    }

    #[test]
    fn round_trips() {
        let m = sample();
        let bytes = m.to_payload().unwrap();
        assert_eq!(Manifest::from_payload(&bytes).unwrap(), m);
    }

    #[test]
    fn unknown_field_is_critical() {
        let mut v: serde_json::Value =
            serde_json::from_slice(&sample().to_payload().unwrap()).unwrap();
        v["only_for_region"] = "eu".into();
        let err = Manifest::from_payload(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(err.code(), "malformed");
        assert!(err.to_string().contains("only_for_region"), "{err}");
    }

    #[test]
    fn extensions_are_not_critical() {
        let mut m = sample();
        m.extensions.insert("x-build".into(), "ci-1234".into());
        let bytes = m.to_payload().unwrap();
        assert_eq!(Manifest::from_payload(&bytes).unwrap(), m);
    }

    #[test]
    fn invalid_semver_is_named() {
        let mut v: serde_json::Value =
            serde_json::from_slice(&sample().to_payload().unwrap()).unwrap();
        v["version"] = "2.1".into();
        let err = Manifest::from_payload(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert_eq!(err.code(), "malformed");
    }

    #[test]
    fn path_like_names_are_refused() {
        let mut m = sample();
        m.images[0].name = "../etc/passwd".into();
        assert_eq!(m.validate().unwrap_err().code(), "invalid_field");
    }

    #[test]
    fn inline_release_notes_must_match_their_signed_digest() {
        let mut m = sample();
        m.release_notes_sha256 = Some(Sha256Digest::of(b"Fixes."));
        assert!(m.validate().is_ok());
        m.release_notes_sha256 = Some(Sha256Digest::of(b"Other notes."));
        assert_eq!(m.validate().unwrap_err().code(), "release_notes_mismatch");
        m.release_notes = None;
        assert!(m.validate().is_ok(), "notes published elsewhere");
        let err = m.check_release_notes(b"Fixes.", "notes.md").unwrap_err();
        assert_eq!(err.code(), "release_notes_mismatch");
        assert!(m.check_release_notes(b"Other notes.", "notes.md").is_ok());
        m.release_notes_sha256 = None;
        let err = m.check_release_notes(b"Fixes.", "notes.md").unwrap_err();
        assert!(err.to_string().contains("no release_notes_sha256"), "{err}");
    }

    #[test]
    fn requires_with_only_build_metadata_is_not_lower() {
        let mut m = sample();
        m.requires = Some("2.1.0+build.7".parse().unwrap());
        assert_eq!(m.validate().unwrap_err().code(), "invalid_field");
    }

    #[test]
    fn positional_manifest_payload_is_refused() {
        let v: serde_json::Value = serde_json::from_slice(&sample().to_payload().unwrap()).unwrap();
        // Every field, in the struct's declaration order: what serde's
        // derive would read by position.
        let order = [
            "spec_version",
            "product_line",
            "hw_compat",
            "channel",
            "version",
            "manifest_version",
            "security_counter",
            "requires",
            "issued_at",
            "expires",
            "images",
            "release_notes",
        ];
        let fields: Vec<serde_json::Value> = order.iter().map(|k| v[*k].clone()).collect();
        let positional = serde_json::to_vec(&fields).unwrap();
        assert!(
            serde_json::from_slice::<Manifest>(&positional).is_ok(),
            "serde is lenient"
        );
        let err = Manifest::from_payload(&positional).unwrap_err();
        assert_eq!(err.code(), "malformed");
        assert!(err.to_string().contains("found an array"), "{err}");
        let mut v = v;
        v["images"][0] = serde_json::json!(["rootfs.img", "rootfs", 3, Sha256Digest::of(b"abc")]);
        let err = Manifest::from_payload(&serde_json::to_vec(&v).unwrap()).unwrap_err();
        assert!(err.to_string().contains("found an array"), "{err}");
    }

    #[test]
    fn duplicate_keys_in_manifest_are_refused() {
        let text = String::from_utf8(sample().to_payload().unwrap()).unwrap();
        let dup = text.replacen("{", "{\n  \"channel\": \"beta\",", 1);
        let err = Manifest::from_payload(dup.as_bytes()).unwrap_err();
        assert!(
            err.to_string().contains("duplicate key \"channel\""),
            "{err}"
        );
        let mut m = sample();
        m.extensions.insert("x-a".into(), 1.into());
        let text = String::from_utf8(m.to_payload().unwrap()).unwrap();
        let dup = text.replace("\"x-a\": 1", "\"x-a\": 1, \"x-a\": 2");
        let err = Manifest::from_payload(dup.as_bytes()).unwrap_err();
        assert!(err.to_string().contains("duplicate key \"x-a\""), "{err}");
    }

    #[test]
    fn duplicate_image_names_are_refused() {
        let mut m = sample();
        m.images.push(m.images[0].clone());
        assert_eq!(m.validate().unwrap_err().code(), "invalid_field");
    }
}
