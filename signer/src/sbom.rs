//! SBOM files: telling their format for a new manifest, and matching one
//! against the reference a manifest signs.
//!
//! A release's software bill of materials is a separate artifact: the
//! manifest signs its format, exact length and SHA-256 ([`SbomRef`]). The
//! format is told from the JSON itself: a top-level `spdxVersion` is SPDX,
//! a top-level `"bomFormat": "CycloneDX"` is CycloneDX. Telling it streams
//! the file through a parser that keeps only those two values, reading at
//! most [`MAX_SBOM_BYTES`]; the digest is taken like an image's, in
//! constant memory ([`images::hash_artifact`]).
//!
//! This module must never read an SBOM without a limit, and never guess a
//! format the file does not state.

use std::fmt;
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use firmup_client::{SbomFormat, SbomRef};
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

use crate::images;

/// Largest SBOM accepted, in bytes.
pub const MAX_SBOM_BYTES: u64 = 64 * 1024 * 1024;

/// The formats accepted, as error messages name them.
pub const ACCEPTED_FORMATS: &str = "accepted: SPDX 2.x JSON (with a top-level \"spdxVersion\") \
     or CycloneDX JSON (with \"bomFormat\": \"CycloneDX\")";

/// Tells the format of the SBOM file at `path` from its JSON, reading at
/// most [`MAX_SBOM_BYTES`].
pub fn detect_format(path: &Path) -> Result<SbomFormat> {
    let ctx = || format!("cannot read SBOM ({})", path.display());
    let file = File::open(path).with_context(ctx)?;
    let meta = file.metadata().with_context(ctx)?;
    if !meta.is_file() {
        return Err(anyhow::anyhow!("not a regular file")).with_context(ctx);
    }
    if meta.len() > MAX_SBOM_BYTES {
        bail!(
            "SBOM too large ({}): {} bytes, over the limit of {MAX_SBOM_BYTES} (64 MiB)",
            path.display(),
            meta.len()
        );
    }
    // `take` holds the limit even if the file grows meanwhile: a longer
    // file then ends in the middle of its JSON and is refused.
    format_of(BufReader::new(file).take(MAX_SBOM_BYTES)).map_err(|why| {
        anyhow::anyhow!(
            "unknown SBOM format ({}): {why}; {ACCEPTED_FORMATS}",
            path.display()
        )
    })
}

/// Tells the format of the SBOM JSON read from `reader`, or says why it
/// cannot.
pub fn format_of<R: Read>(reader: R) -> Result<SbomFormat, String> {
    let mut de = serde_json::Deserializer::from_reader(reader);
    let probe = de
        .deserialize_map(ProbeVisitor)
        .and_then(|p| de.end().map(|()| p))
        .map_err(|e| format!("not a JSON object ({e})"))?;
    match (probe.spdx_version, probe.bom_format) {
        (Some(_), Some(_)) => Err("it has both \"spdxVersion\" and \"bomFormat\"".into()),
        (Some(serde_json::Value::String(_)), None) => Ok(SbomFormat::Spdx),
        (Some(other), None) => Err(format!("\"spdxVersion\" is {other}, not a string")),
        (None, Some(serde_json::Value::String(f))) if f == "CycloneDX" => Ok(SbomFormat::Cyclonedx),
        (None, Some(other)) => Err(format!("\"bomFormat\" is {other}, not \"CycloneDX\"")),
        (None, None) => Err("it has neither \"spdxVersion\" nor \"bomFormat\"".into()),
    }
}

/// The two top-level values that tell the format; every other value is
/// skipped without being kept.
struct Probe {
    spdx_version: Option<serde_json::Value>,
    bom_format: Option<serde_json::Value>,
}

struct ProbeVisitor;

impl<'de> Visitor<'de> for ProbeVisitor {
    type Value = Probe;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Probe, A::Error> {
        let mut probe = Probe {
            spdx_version: None,
            bom_format: None,
        };
        while let Some(key) = map.next_key::<String>()? {
            let slot = match key.as_str() {
                "spdxVersion" => &mut probe.spdx_version,
                "bomFormat" => &mut probe.bom_format,
                _ => {
                    map.next_value::<IgnoredAny>()?;
                    continue;
                }
            };
            if slot.is_some() {
                return Err(de::Error::custom(format!("duplicate key {key:?}")));
            }
            *slot = Some(map.next_value()?);
        }
        Ok(probe)
    }
}

/// The signed reference to the SBOM at `path`: its format, then its length
/// and SHA-256, streamed.
pub fn reference(path: &Path, format: SbomFormat) -> Result<SbomRef> {
    let (length, sha256) = images::hash_artifact(path, "SBOM")?;
    Ok(SbomRef {
        format,
        length,
        sha256,
    })
}

/// Checks that the SBOM at `path` is the one `signed` refers to: the
/// length first (no hashing of a file of the wrong size), then the
/// SHA-256. `manifest` names the manifest in messages.
pub fn check_matches(signed: Option<&SbomRef>, path: &Path, manifest: &Path) -> Result<()> {
    let Some(signed) = signed else {
        bail!(
            "the manifest signs no SBOM ({}): sign the release with `firmup-signer sign --sbom \
             FILE`, or publish without --sbom",
            manifest.display()
        );
    };
    let meta = std::fs::metadata(path)
        .with_context(|| format!("cannot read SBOM ({})", path.display()))?;
    if meta.is_file() && meta.len() != signed.length {
        bail!(
            "the SBOM is not the one the manifest signs ({}): {} bytes, the manifest signs {} \
             bytes (sha256 {})",
            path.display(),
            meta.len(),
            signed.length,
            signed.sha256
        );
    }
    let (length, sha256) = images::hash_artifact(path, "SBOM")?;
    if length != signed.length || sha256 != signed.sha256 {
        bail!(
            "the SBOM is not the one the manifest signs ({}): sha256 {sha256}, the manifest signs \
             sha256 {}",
            path.display(),
            signed.sha256
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_are_told_from_the_top_level_fields() {
        let spdx = br#"{"SPDXID": "SPDXRef-DOCUMENT", "spdxVersion": "SPDX-2.3",
                        "packages": [{"name": "busybox", "bomFormat": "nested, ignored"}]}"#;
        assert_eq!(format_of(&spdx[..]).unwrap(), SbomFormat::Spdx);
        let cdx = br#"{"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []}"#;
        assert_eq!(format_of(&cdx[..]).unwrap(), SbomFormat::Cyclonedx);
    }

    #[test]
    fn anything_else_is_refused_with_the_reason() {
        for (bad, says) in [
            (&br#"{"bomFormat": "cyclonedx"}"#[..], "not \"CycloneDX\""),
            (br#"{"spdxVersion": 2}"#, "not a string"),
            (br#"{"name": "x"}"#, "neither"),
            (
                br#"{"spdxVersion": "SPDX-2.3", "bomFormat": "CycloneDX"}"#,
                "both",
            ),
            (
                br#"{"spdxVersion": "SPDX-2.3", "spdxVersion": "SPDX-2.2"}"#,
                "duplicate key",
            ),
            (br#"["SPDX-2.3", null]"#, "not a JSON object"),
            (b"SPDXVersion: SPDX-2.3\n", "not a JSON object"),
            (
                br#"{"spdxVersion": "SPDX-2.3"} trailing"#,
                "not a JSON object",
            ),
            (br#"{"spdxVersion": "SPDX-2.3""#, "not a JSON object"),
        ] {
            let why = format_of(bad).unwrap_err();
            assert!(
                why.contains(says),
                "{}: {why}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn files_are_detected_within_the_limit_and_errors_name_the_formats() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sbom.txt");
        std::fs::write(&path, "PackageName: busybox\n").unwrap();
        let err = detect_format(&path).unwrap_err().to_string();
        assert!(err.contains("sbom.txt"), "{err}");
        assert!(err.contains("SPDX") && err.contains("CycloneDX"), "{err}");
        let err = detect_format(dir.path()).unwrap_err();
        assert!(format!("{err:#}").contains("not a regular file"), "{err:#}");
    }

    #[test]
    fn a_file_must_match_the_signed_reference() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sbom.json");
        let manifest = Path::new("fw.manifest.json");
        std::fs::write(&path, br#"{"bomFormat": "CycloneDX"}"#).unwrap();
        let signed = reference(&path, SbomFormat::Cyclonedx).unwrap();
        assert_eq!(signed.length, 26);
        assert_eq!(
            signed.sha256,
            firmup_client::Sha256Digest::of(br#"{"bomFormat": "CycloneDX"}"#)
        );
        check_matches(Some(&signed), &path, manifest).unwrap();

        let err = check_matches(None, &path, manifest)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("signs no SBOM") && err.contains("--sbom"),
            "{err}"
        );
        // Same length, other bytes: the digest decides.
        std::fs::write(&path, br#"{"bomFormat": "CycloneDx"}"#).unwrap();
        let err = check_matches(Some(&signed), &path, manifest)
            .unwrap_err()
            .to_string();
        assert!(err.contains(&signed.sha256.to_hex()), "{err}");
        std::fs::write(&path, b"{}").unwrap();
        let err = check_matches(Some(&signed), &path, manifest)
            .unwrap_err()
            .to_string();
        assert!(err.contains("2 bytes") && err.contains("26 bytes"), "{err}");
    }
}
