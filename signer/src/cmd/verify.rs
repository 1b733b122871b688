//! `firmup-signer verify`: verify a manifest and its images exactly as a
//! device would.
//!
//! The first `--root` is the pinned trust anchor
//! ([`TrustedRoot::from_pinned`]); the following ones are walked as the
//! rotation chain ([`TrustedRoot::walk`]). The manifest goes through
//! [`verify_manifest`], and every image it lists through
//! [`firmup_client::image::verify_reader`], streamed in 256 KiB chunks.
//!
//! This command must never accept anything the engine did not accept, and
//! never use a field of the manifest before the engine has checked its
//! signatures, with one documented exception: without `--product-line`,
//! the payload's `product_line` is peeked at only to choose which
//! delegation the engine checks against (see [`peek_product_line`]).

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use firmup_client::manifest::{MANIFEST_PAYLOAD_TYPE, MAX_MANIFEST_BYTES};
use firmup_client::root::MAX_ROOT_BYTES;
use firmup_client::{
    Clock, Envelope, Error, InstalledState, TrustedRoot, VerifyRequest, verify_manifest,
};
use semver::Version;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::common::{self, parse_rfc3339, parse_semver};
use crate::exit;
use crate::fsutil::{self, Limited};
use crate::images;

/// Man-page text of this subcommand (`--help`).
pub const LONG_ABOUT: &str = "\
Verify a signed manifest and its images with the same engine a device runs,
and print the verdict in words.

The first --root is the pinned trust anchor (root version 1, as devices
ship with it); any further --root files are the rotation chain, in order
(version 2, 3, ...), each of which must be signed by a threshold of the
previous root's keys and of its own. The manifest must be signed by a
threshold of the release keys that the resulting root delegates to its
product line. Every image the manifest lists must be given with --image
(matched by file name) and must have exactly the signed length and SHA-256.

Device checks are run when their facts are given: --hw-id, --channel, and
the installed state (--installed-version, --security-counter and
--manifest-version together) for downgrade, rollback, replay and upgrade
path checks. Expiry is checked against --now (default: the current time);
--offline skips only the expiry check, as a USB install does.

Without --product-line the manifest's own product_line field is read to
choose which delegation to check. This is safe: the engine still checks the
signatures before using anything else in the manifest, and a manifest that
names a product line its signers are not delegated for fails the threshold.

On success prints `OK: ...` and exits 0. Indented lines after it say what
the signed manifest states about the release: its kind (`kind feature (not
stated)` when the manifest does not say), for a security or mixed release
the severity, CVE ids, advisory summary, required action and mixed reason,
and the signed SBOM reference (format, length, SHA-256) if there is one.
On rejection prints `REJECTED (code): why` on stdout and exits 1; the code
is the engine's stable error code (threshold_not_met, image_hash_mismatch,
expired, ...).
Every verdict, a pinned root that does not verify (or is not version 1)
included, exits 1 with its bracketed code. Unreadable files and usage
mistakes are input errors (exit 3).

Without --product-line a loud WARNING on stderr names the product line that
was checked (the manifest's own), and the OK line says so: a device always
pins its product line, so pass --product-line to check as a device does.

--release-notes FILE checks a notes file against the manifest's signed
release_notes_sha256 (REJECTED (release_notes_mismatch) otherwise).

Examples:
    firmup-signer verify --root root.v1.json --manifest fw.manifest.json --image fw.bin
    firmup-signer verify --root root.v1.json --root root.v2.json \\
        --manifest fw.manifest.json --image fw.bin --hw-id enc-4k-r2 --channel stable \\
        --installed-version 2.0.0 --security-counter 3 --manifest-version 6";

/// Flags of `verify`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Root documents: the pinned root first, then each rotation in order. Repeatable.
    #[arg(long = "root", value_name = "FILE", required = true)]
    pub roots: Vec<PathBuf>,

    /// The signed manifest to verify.
    #[arg(long, value_name = "FILE")]
    pub manifest: PathBuf,

    /// An image file listed in the manifest (matched by file name). Repeatable;
    /// every image the manifest lists must be given.
    #[arg(long = "image", value_name = "PATH")]
    pub images: Vec<PathBuf>,

    /// Product line whose delegation must sign (default: the manifest's own, see above).
    #[arg(long, value_name = "NAME")]
    pub product_line: Option<String>,

    /// The device's hardware id, which must be in the manifest's hw_compat list.
    #[arg(long, value_name = "ID")]
    pub hw_id: Option<String>,

    /// The channel the device follows.
    #[arg(long, value_name = "NAME")]
    pub channel: Option<String>,

    /// Installed version, for downgrade and upgrade-path checks.
    #[arg(
        long,
        value_name = "SEMVER",
        value_parser = parse_semver,
        requires_all = ["security_counter", "manifest_version"]
    )]
    pub installed_version: Option<Version>,

    /// Installed (committed) security counter, for the anti-rollback check.
    #[arg(
        long,
        value_name = "N",
        alias = "installed-security-counter",
        requires = "installed_version"
    )]
    pub security_counter: Option<u32>,

    /// Highest manifest_version already accepted on this channel, for the replay check.
    #[arg(
        long,
        value_name = "N",
        alias = "installed-manifest-version",
        requires = "installed_version"
    )]
    pub manifest_version: Option<u64>,

    /// Accept a version that is not newer (a signed-off downgrade); the
    /// security counter must still hold.
    #[arg(long, requires = "installed_version")]
    pub allow_downgrade: bool,

    /// Offline (USB) install: skip only the expiry checks.
    #[arg(long, conflicts_with = "now")]
    pub offline: bool,

    /// Judge expiry at this instant instead of the current time (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    pub now: Option<OffsetDateTime>,

    /// Release notes that travel with the manifest, checked against its
    /// signed release_notes_sha256.
    #[arg(long, value_name = "FILE")]
    pub release_notes: Option<PathBuf>,
}

/// Reads an untrusted document: I/O trouble is an input error, an oversize
/// file is the engine's `too_large` verdict.
fn read_untrusted(path: &std::path::Path, limit: u64, what: &'static str) -> Result<Vec<u8>> {
    let ctx = || format!("cannot read {what} ({})", path.display());
    match fsutil::read_limited(path, limit).with_context(ctx)? {
        Limited::Complete(bytes) => Ok(bytes),
        Limited::TooLarge { size } => Err(exit::verdict(Error::TooLarge {
            what,
            limit,
            actual: size,
        })),
    }
}

/// Reads the payload's `product_line` without checking signatures, only
/// to pick the delegation whose keys the engine then checks. Nothing else
/// is read, and the engine parses the payload again itself after the
/// signatures have met their threshold; a lie here can only make the
/// threshold fail. The envelope is opened with the engine's own size cap
/// and payload-type check.
pub fn peek_product_line(envelope_bytes: &[u8]) -> Result<String> {
    peek(envelope_bytes).map_err(|e| exit::verdict(*e))
}

fn peek(envelope_bytes: &[u8]) -> Result<String, Box<Error>> {
    #[derive(Deserialize)]
    struct Peek {
        product_line: String,
    }
    let env = Envelope::from_slice(
        envelope_bytes,
        MAX_MANIFEST_BYTES,
        "manifest envelope",
        MANIFEST_PAYLOAD_TYPE,
    )?;
    let payload = env.payload_bytes()?;
    let value = firmup_client::strict::parse_value(&payload)
        .map_err(|e| Box::new(peek_error(e.to_string())))?;
    // The strict reading: an object (never a positional array), no
    // duplicate keys; the engine reads the same way after the signatures.
    firmup_client::strict::from_value::<Peek>(&value)
        .map(|p| p.product_line)
        .map_err(|e| Box::new(peek_error(e.to_string())))
}

fn peek_error(detail: String) -> Error {
    Error::Malformed {
        what: "manifest payload (looking for product_line; pass --product-line)",
        detail,
    }
}

/// Runs `verify`.
pub fn run(args: Args) -> Result<()> {
    let (pinned_path, chain_paths) = args
        .roots
        .split_first()
        .context("at least one --root is required")?;

    // A pinned root that does not verify (or is not version 1) is a
    // verdict like any other: exit 1 with its stable code.
    let pinned_bytes = read_untrusted(pinned_path, MAX_ROOT_BYTES, "root envelope")?;
    let pinned = TrustedRoot::from_pinned(&pinned_bytes).map_err(|e| {
        anyhow::Error::new(exit::Rejected {
            code: e.code().to_string(),
            message: format!("pinned root {}: {e}", pinned_path.display()),
        })
    })?;
    let mut chain = Vec::with_capacity(chain_paths.len());
    for path in chain_paths {
        chain.push(read_untrusted(path, MAX_ROOT_BYTES, "root envelope")?);
    }
    let root = pinned.walk(&chain).map_err(exit::verdict)?;

    let manifest_bytes = read_untrusted(&args.manifest, MAX_MANIFEST_BYTES, "manifest envelope")?;
    let pinned_line = args.product_line.is_some();
    let product_line = match args.product_line {
        Some(line) => line,
        None => {
            let line = peek_product_line(&manifest_bytes)?;
            eprintln!(
                "WARNING: no --product-line given: checked against the manifest's own product \
                 line {line:?}; a device pins its product line (pass --product-line {line} to \
                 check as a device does)"
            );
            line
        }
    };
    let now = args.now.unwrap_or_else(common::now_utc);
    let clock = if args.offline {
        Clock::OfflineNoExpiry
    } else {
        Clock::Trusted(now)
    };
    let installed = match (
        args.installed_version,
        args.security_counter,
        args.manifest_version,
    ) {
        (Some(version), Some(security_counter), Some(manifest_version)) => Some(InstalledState {
            version,
            security_counter,
            manifest_version,
        }),
        // clap's `requires` rules make partial combinations unreachable.
        _ => None,
    };
    let has_installed = installed.is_some();
    let request = VerifyRequest {
        product_line: product_line.clone(),
        hw_id: args.hw_id.clone(),
        channel: args.channel.clone(),
        installed,
        clock,
        allow_downgrade: args.allow_downgrade,
    };
    let plan = verify_manifest(&root, &request, &manifest_bytes).map_err(exit::verdict)?;
    // The engine found the role, so this lookup cannot fail; the threshold
    // is only needed for the message.
    let threshold = root
        .release_role(&product_line)
        .map(|r| r.threshold)
        .map_err(exit::verdict)?;

    let pairs = images::match_images(&plan.manifest.images, &args.images).with_context(|| {
        format!(
            "--image files do not match the manifest ({})",
            args.manifest.display()
        )
    })?;
    if let Some(path) = &args.release_notes {
        let notes = fsutil::read_document(path, MAX_MANIFEST_BYTES, "release notes")?;
        plan.manifest
            .check_release_notes(&notes, &path.display().to_string())
            .map_err(exit::verdict)?;
    }
    let mut image_reports = Vec::with_capacity(pairs.len());
    for (spec, path) in &pairs {
        let digest = images::check_image(spec, path)?;
        image_reports.push(format!(
            "image {} {} bytes sha256 {digest} verified",
            spec.name, spec.length
        ));
    }

    let m = &plan.manifest;
    let ids: Vec<&str> = plan.signed_by.iter().map(|k| k.as_str()).collect();
    println!(
        "OK: {} {} (channel {}, manifest_version {}, security_counter {}) signed by {} of {} \
         required release keys [{}]; root version {}; {}{}",
        m.product_line,
        m.version,
        m.channel,
        m.manifest_version,
        m.security_counter,
        plan.signed_by.len(),
        threshold,
        ids.join(", "),
        plan.root_version,
        image_reports.join("; "),
        if pinned_line {
            ""
        } else {
            " (product line from the manifest, not pinned)"
        }
    );
    for line in common::release_kind_lines(m) {
        println!("  {line}");
    }

    let mut skipped = Vec::new();
    if args.offline {
        skipped.push("expiry (--offline)");
    }
    if args.hw_id.is_none() {
        skipped.push("hardware id (no --hw-id)");
    }
    if args.channel.is_none() {
        skipped.push("channel (no --channel)");
    }
    if !has_installed {
        skipped.push("downgrade/rollback/replay (no --installed-version)");
    }
    if !skipped.is_empty() {
        eprintln!("note: not checked: {}", skipped.join(", "));
    }
    if !args.offline {
        eprintln!(
            "note: expiry checked at {}; manifest expires {}",
            common::fmt_time(now),
            common::fmt_time(m.expires)
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::cmd::{delegate, keygen, root, sign};
    use crate::common::ExpiryArgs;
    use crate::exit::Rejected;
    use crate::images::ImageArg;

    fn expiry() -> ExpiryArgs {
        ExpiryArgs {
            expires: None,
            expires_in_days: 30,
        }
    }

    fn keygen(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let prefix = dir.join(name);
        keygen::run(keygen::Args {
            out: prefix.clone(),
            force: false,
        })
        .unwrap();
        (prefix.with_extension("key"), prefix.with_extension("pub"))
    }

    fn verify_args(roots: Vec<PathBuf>, manifest: &Path, image: &Path) -> Args {
        Args {
            roots,
            manifest: manifest.to_path_buf(),
            images: vec![image.to_path_buf()],
            product_line: None,
            hw_id: Some("enc-4k-r2".into()),
            channel: Some("stable".into()),
            installed_version: None,
            security_counter: None,
            manifest_version: None,
            allow_downgrade: false,
            offline: false,
            now: None,
            release_notes: None,
        }
    }

    fn rejection_code(result: Result<()>) -> String {
        let err = result.unwrap_err();
        err.downcast_ref::<Rejected>()
            .unwrap_or_else(|| panic!("not a verdict: {err:#}"))
            .code
            .clone()
    }

    /// The whole release flow through the commands' `run` functions: a
    /// manifest with one of two required signatures is rejected, co-signed
    /// it verifies, and a flipped image byte is a rejection, not an error.
    #[test]
    fn release_flow_signs_cosigns_and_verifies() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let (r1, r1p) = keygen(d, "root1");
        let (r2, r2p) = keygen(d, "root2");
        let (rel1, rel1p) = keygen(d, "rel1");
        let (rel2, rel2p) = keygen(d, "rel2");

        let root_v1 = d.join("root.v1.json");
        root::init::run(root::init::Args {
            root_keys: vec![r1p, r2p],
            threshold: 2,
            expiry: expiry(),
            out: root_v1.clone(),
            force: false,
        })
        .unwrap();
        root::sign::run(root::sign::Args {
            keys: vec![r1.clone()],
            previous: None,
            file: root_v1.clone(),
        })
        .unwrap();
        let delegate_args = || delegate::Args {
            root: root_v1.clone(),
            product_line: "encoders".into(),
            keys: vec![rel1p.clone(), rel2p.clone()],
            threshold: Some(2),
            remove: false,
        };
        delegate::run(delegate_args()).unwrap();
        // Delegating changed the payload: the earlier signature is gone.
        let file = crate::common::read_root(&root_v1).unwrap();
        assert!(file.envelope.signatures.is_empty());
        root::sign::run(root::sign::Args {
            keys: vec![r1, r2],
            previous: None,
            file: root_v1.clone(),
        })
        .unwrap();
        // Delegating the same keys again changes nothing, signatures stay.
        delegate::run(delegate_args()).unwrap();
        assert!(TrustedRoot::from_pinned(&std::fs::read(&root_v1).unwrap()).is_ok());

        let image = d.join("fw.bin");
        std::fs::write(&image, vec![7u8; 300_000]).unwrap();
        let manifest = d.join("fw.manifest.json");
        sign::run(sign::Args {
            keys: vec![rel1],
            cosign: None,
            images: vec![ImageArg {
                target: None,
                path: image.clone(),
            }],
            product_line: Some("encoders".into()),
            hw_ids: vec!["enc-4k-r2".into()],
            channel: Some("stable".into()),
            version: Some(Version::new(2, 1, 0)),
            manifest_version: Some(7),
            security_counter: Some(3),
            requires: None,
            expiry: expiry(),
            issued_at: None,
            notes_file: None,
            kind: None,
            mixed_reason: None,
            advisory: None,
            cves: vec![],
            sbom: None,
            out: Some(manifest.clone()),
            force: false,
        })
        .unwrap();
        let one_signature = run(verify_args(vec![root_v1.clone()], &manifest, &image));
        assert_eq!(rejection_code(one_signature), "threshold_not_met");

        let before = crate::common::read_manifest(&manifest).unwrap();
        sign::run(sign::Args {
            keys: vec![rel2],
            cosign: Some(manifest.clone()),
            images: vec![ImageArg {
                target: None,
                path: image.clone(),
            }],
            product_line: None,
            hw_ids: vec![],
            channel: None,
            version: None,
            manifest_version: None,
            security_counter: None,
            requires: None,
            expiry: expiry(),
            issued_at: None,
            notes_file: None,
            kind: None,
            mixed_reason: None,
            advisory: None,
            cves: vec![],
            sbom: None,
            out: None,
            force: false,
        })
        .unwrap();
        let after = crate::common::read_manifest(&manifest).unwrap();
        assert_eq!(before.envelope.payload, after.envelope.payload);
        assert_eq!(after.envelope.signatures.len(), 2);
        run(verify_args(vec![root_v1.clone()], &manifest, &image)).unwrap();

        let mut bytes = std::fs::read(&image).unwrap();
        bytes[1234] ^= 1;
        std::fs::write(&image, bytes).unwrap();
        let flipped = run(verify_args(vec![root_v1], &manifest, &image));
        assert_eq!(rejection_code(flipped), "image_hash_mismatch");
    }

    /// A pinned-root failure is a verdict (exit 1, bracketed code), like the
    /// same defect in a rotation root; a self-signed version 2 is refused
    /// as the pinned root.
    #[test]
    fn pinned_root_failures_are_verdicts_and_must_be_version_1() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let release = firmup_fixtures::release::ReleaseBuilder::standard().build();
        let manifest = d.join("m.json");
        std::fs::write(&manifest, &release.envelope).unwrap();
        let image = d.join("firmware.img");
        std::fs::write(&image, &release.image).unwrap();
        let now = Some(firmup_fixtures::release::FIXTURE_NOW);
        let run_with = |root: &[u8]| {
            let path = d.join("root.json");
            std::fs::write(&path, root).unwrap();
            let mut a = verify_args(vec![path], &manifest, &image);
            a.now = now;
            run(a)
        };
        let standard = firmup_fixtures::release::RootBuilder::standard();
        run_with(&standard.build()).unwrap();
        let v2 = standard.clone().version(2).build();
        assert_eq!(rejection_code(run_with(&v2)), "pinned_root_not_v1");
        let unsigned = standard.clone().signed_by(&["root-1"]).build();
        assert_eq!(rejection_code(run_with(&unsigned)), "threshold_not_met");
        assert_eq!(rejection_code(run_with(b"[1, 2]")), "malformed");
    }

    /// `--release-notes` checks a notes file against the signed digest.
    #[test]
    fn release_notes_file_is_checked_against_the_signed_digest() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let mut b = firmup_fixtures::release::ReleaseBuilder::standard();
        b.manifest.release_notes = None;
        b.manifest.release_notes_sha256 = Some(firmup_client::Sha256Digest::of(b"Notes.\n"));
        let release = b.build();
        let manifest = d.join("m.json");
        std::fs::write(&manifest, &release.envelope).unwrap();
        let image = d.join("firmware.img");
        std::fs::write(&image, &release.image).unwrap();
        let root = d.join("root.json");
        std::fs::write(
            &root,
            firmup_fixtures::release::RootBuilder::standard().build(),
        )
        .unwrap();
        let notes = d.join("notes.md");
        let check = |text: &[u8]| {
            std::fs::write(&notes, text).unwrap();
            let mut a = verify_args(vec![root.clone()], &manifest, &image);
            a.now = Some(firmup_fixtures::release::FIXTURE_NOW);
            a.release_notes = Some(notes.clone());
            run(a)
        };
        check(b"Notes.\n").unwrap();
        assert_eq!(rejection_code(check(b"Other.\n")), "release_notes_mismatch");
    }

    #[test]
    fn peeking_refuses_positional_payloads() {
        let env = Envelope::new(MANIFEST_PAYLOAD_TYPE, br#"[1, "encoders"]"#);
        let err = peek_product_line(&env.to_json_bytes()).unwrap_err();
        assert_eq!(err.downcast_ref::<Rejected>().unwrap().code, "malformed");
        let env = Envelope::new(
            MANIFEST_PAYLOAD_TYPE,
            br#"{"product_line": "a", "product_line": "b"}"#,
        );
        let err = peek_product_line(&env.to_json_bytes()).unwrap_err();
        assert!(err.to_string().contains("duplicate key"), "{err}");
    }

    #[test]
    fn peeking_refuses_oversize_and_foreign_envelopes() {
        let big = vec![b' '; MAX_MANIFEST_BYTES as usize + 1];
        let err = peek_product_line(&big).unwrap_err();
        assert_eq!(err.downcast_ref::<Rejected>().unwrap().code, "too_large");
        let root_env = Envelope::new(firmup_client::root::ROOT_PAYLOAD_TYPE, b"{}");
        let err = peek_product_line(&root_env.to_json_bytes()).unwrap_err();
        assert_eq!(
            err.downcast_ref::<Rejected>().unwrap().code,
            "unknown_payload_type"
        );
    }
}
