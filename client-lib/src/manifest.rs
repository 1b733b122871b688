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
    /// Non-critical vendor data that verifiers may ignore.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extensions: BTreeMap<String, serde_json::Value>,
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
            extensions: BTreeMap::new(),
        }
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
