//! `firmup-signer sign`: create and sign a release manifest, or co-sign an
//! existing one.
//!
//! Create mode hashes every image (and the SBOM) in constant memory, builds
//! the manifest, has the shared library validate it, wraps it in an
//! envelope and signs it with every `--key`. Co-sign mode adds signatures
//! to an existing manifest without touching its payload, optionally after
//! checking the images against it with the engine's streaming check.
//!
//! This command must never write the output before all the work has
//! succeeded, never change a payload when co-signing, and never produce a
//! manifest larger than devices accept.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use ed25519_dalek::SigningKey;
use firmup_client::manifest::{MANIFEST_PAYLOAD_TYPE, MANIFEST_SPEC_VERSION, MAX_MANIFEST_BYTES};
use firmup_client::{
    Advisory, Envelope, ImageSpec, KeyId, Manifest, ReleaseKind, SbomRef, Severity, Sha256Digest,
};
use semver::Version;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::common::{self, ExpiryArgs, parse_rfc3339, parse_semver, short_id};
use crate::fsutil::{self, Limited, MODE_PUBLIC, Overwrite};
use crate::images::{self, ImageArg, parse_image_arg};
use crate::keysource::key_source;
use crate::sbom;

/// Target of an image given without `TARGET=`.
pub const DEFAULT_TARGET: &str = "firmware";

/// Largest release-notes file: the whole manifest envelope must stay under
/// 64 KiB, and base64 inflates the payload by a third.
const MAX_NOTES_BYTES: u64 = 40 * 1024;

/// Largest advisory file (its texts are at most 4000 characters each).
const MAX_ADVISORY_BYTES: u64 = 16 * 1024;

/// Man-page text of this subcommand (`--help`).
pub const LONG_ABOUT: &str = "\
Create a release manifest and sign it, or co-sign an existing one.

Create: every --image is hashed (SHA-256, streamed in constant memory, with
a progress bar on a terminal); its name in the manifest is its file name and
its target is `firmware` unless given as TARGET=PATH. The manifest records
the product line, the exact hardware ids it fits, the channel, the version,
the replay counter (--manifest-version), the anti-rollback counter
(--security-counter), an optional minimum installed version (--requires),
issue and expiry times and optional release notes. It is signed with every
--key given. --out is never overwritten unless --force is given.

Release kind: --kind security (the release fixes vulnerabilities and nothing
else), feature, or mixed (a security fix inside a feature release; then
--mixed-reason says why the fix could not ship on its own). Without --kind
the manifest does not state a kind and is a feature release, exactly as
before the field existed. A security or mixed release needs --advisory
FILE, a JSON object with `summary` (what it fixes, for owners), `severity`
(low, medium, high or critical), `action` (what owners must do) and
optionally `cves` (a list of CVE ids); --cve ID adds ids to the file's, and
at least one is needed. The advisory is signed with the manifest. Devices
whose client predates these fields refuse a manifest that carries any of
them (--kind feature included): roll out a client that understands them
first.

--sbom FILE references the release's software bill of materials, SPDX 2.x
JSON (a top-level `spdxVersion`) or CycloneDX JSON (`\"bomFormat\":
\"CycloneDX\"`), at most 64 MiB: the manifest signs its format, length and
SHA-256, and `publish --sbom FILE` uploads it. All of this is checked
before any image is hashed.

Co-sign: --cosign FILE adds the signature of every --key to an existing
manifest, in place, without changing its signed payload. Any --image given
is first checked against the manifest (length and SHA-256), so a co-signer
can confirm the bytes before vouching for them.

Examples:
    firmup-signer sign --key keys/rel1.key --image build/fw.bin \\
        --image bootloader=build/boot.bin --product-line encoders \\
        --hw-id enc-4k-r2 --hw-id enc-4k-r3 --channel stable --version 2.1.0 \\
        --manifest-version 7 --security-counter 3 --requires 2.0.0 \\
        --notes-file NOTES.md --out fw.manifest.json
    firmup-signer sign --key keys/rel2.key --cosign fw.manifest.json --image build/fw.bin

A security release, with advisory.json holding
{\"summary\": \"Fixes a buffer overflow in the RTSP server.\", \"severity\": \"high\",
 \"action\": \"Install this update; until then block port 554.\"}:
    firmup-signer sign --key keys/rel1.key --image build/fw.bin \\
        --product-line encoders --hw-id enc-4k-r2 --channel stable --version 2.1.1 \\
        --manifest-version 8 --security-counter 4 --kind security \\
        --advisory advisory.json --cve CVE-2026-12345 --sbom build/sbom.spdx.json \\
        --out fw.manifest.json";

/// Flags of `sign`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A private release key to sign with (PKCS#8 PEM, mode 0600). Repeatable.
    #[arg(long = "key", value_name = "FILE", required = true)]
    pub keys: Vec<PathBuf>,

    /// Co-sign this existing manifest in place instead of creating one.
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with_all = [
            "product_line", "hw_ids", "channel", "version", "manifest_version",
            "security_counter", "requires", "expires", "expires_in_days",
            "issued_at", "notes_file", "kind", "mixed_reason", "advisory", "cves",
            "sbom", "out", "force",
        ]
    )]
    pub cosign: Option<PathBuf>,

    /// An image file, as PATH or TARGET=PATH (target defaults to `firmware`).
    /// Repeatable. With --cosign: files to check against the manifest first.
    #[arg(
        long = "image",
        value_name = "[TARGET=]PATH",
        value_parser = parse_image_arg,
        required_unless_present = "cosign"
    )]
    pub images: Vec<ImageArg>,

    /// Product line whose delegated release keys sign this manifest.
    #[arg(long, value_name = "NAME", required_unless_present = "cosign")]
    pub product_line: Option<String>,

    /// A hardware id the release fits exactly. Repeatable.
    #[arg(long = "hw-id", value_name = "ID", required_unless_present = "cosign")]
    pub hw_ids: Vec<String>,

    /// Release channel, e.g. stable or beta.
    #[arg(long, value_name = "NAME", required_unless_present = "cosign")]
    pub channel: Option<String>,

    /// Release version (semver), e.g. 2.1.0.
    #[arg(long, value_name = "SEMVER", value_parser = parse_semver, required_unless_present = "cosign")]
    pub version: Option<Version>,

    /// Replay counter for this product line and channel; must grow with every manifest.
    #[arg(long, value_name = "N", required_unless_present = "cosign")]
    pub manifest_version: Option<u64>,

    /// Anti-rollback counter; devices never accept a lower one after committing this.
    #[arg(long, value_name = "N", required_unless_present = "cosign")]
    pub security_counter: Option<u32>,

    /// Minimum installed version needed before this release (upgrade path).
    #[arg(long, value_name = "SEMVER", value_parser = parse_semver)]
    pub requires: Option<Version>,

    /// When the manifest expires.
    #[command(flatten)]
    pub expiry: ExpiryArgs,

    /// Issue time, RFC 3339 (default: now).
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    pub issued_at: Option<OffsetDateTime>,

    /// Release notes to include inline (UTF-8 text, at most 40 KiB).
    #[arg(long, value_name = "FILE")]
    pub notes_file: Option<PathBuf>,

    /// What the release is. Without it the manifest states no kind, which
    /// reads as feature.
    #[arg(long, value_name = "KIND", value_enum)]
    pub kind: Option<KindArg>,

    /// With --kind mixed: why the security fix could not ship in a release
    /// of its own.
    #[arg(long, value_name = "TEXT")]
    pub mixed_reason: Option<String>,

    /// With --kind security or mixed: the advisory, a JSON file with
    /// summary, severity, action and optional cves (at most 16 KiB).
    #[arg(long, value_name = "FILE")]
    pub advisory: Option<PathBuf>,

    /// A CVE id the release fixes, added to the --advisory file's. Repeatable.
    #[arg(long = "cve", value_name = "ID")]
    pub cves: Vec<String>,

    /// The release's SBOM (SPDX or CycloneDX JSON, at most 64 MiB), whose
    /// format, length and SHA-256 the manifest signs.
    #[arg(long, value_name = "FILE")]
    pub sbom: Option<PathBuf>,

    /// Where to write the signed manifest.
    #[arg(long, value_name = "FILE", required_unless_present = "cosign")]
    pub out: Option<PathBuf>,

    /// Replace an existing --out file.
    #[arg(long)]
    pub force: bool,
}

/// `--kind`: what the release is for security support.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum KindArg {
    /// Fixes vulnerabilities and nothing else (needs --advisory).
    Security,
    /// New features; writes the field (omit --kind for the same meaning
    /// in a manifest that older clients read).
    Feature,
    /// A security fix inside a feature release (needs --advisory and
    /// --mixed-reason).
    Mixed,
}

impl From<KindArg> for ReleaseKind {
    fn from(k: KindArg) -> Self {
        match k {
            KindArg::Security => ReleaseKind::Security,
            KindArg::Feature => ReleaseKind::Feature,
            KindArg::Mixed => ReleaseKind::Mixed,
        }
    }
}

/// The `--advisory` file: the manifest's advisory, with `cves` optional
/// (`--cve` adds to it). Unknown fields are refused by name.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AdvisoryFile {
    summary: String,
    severity: Severity,
    action: String,
    #[serde(default)]
    cves: Vec<String>,
}

/// Reads the advisory file (size-limited, strict JSON) and appends the
/// `--cve` ids to its own; the ids themselves are checked by the
/// manifest's validation.
fn read_advisory(path: &Path, extra_cves: &[String]) -> Result<Advisory> {
    let ctx = || format!("cannot read advisory ({})", path.display());
    let bytes = match fsutil::read_limited(path, MAX_ADVISORY_BYTES).with_context(ctx)? {
        Limited::TooLarge { size } => {
            return Err(anyhow::anyhow!(
                "{size} bytes, over the limit of {MAX_ADVISORY_BYTES} (16 KiB)"
            ))
            .with_context(ctx);
        }
        Limited::Complete(bytes) => bytes,
    };
    let file: AdvisoryFile = firmup_client::strict::from_slice(&bytes, "advisory file")
        .with_context(|| {
            format!(
                "invalid advisory ({}): expected a JSON object with summary, severity \
                 (low, medium, high or critical), action and optional cves",
                path.display()
            )
        })?;
    let mut cves = file.cves;
    cves.extend(extra_cves.iter().cloned());
    Ok(Advisory {
        summary: file.summary,
        cves,
        severity: file.severity,
        action: file.action,
    })
}

/// Puts the command line's words on the library's verdict about the
/// release kind, so the user learns which flag to pass or drop.
fn explain(
    err: firmup_client::Error,
    kind: Option<ReleaseKind>,
    advisory: Option<&Path>,
) -> anyhow::Error {
    use firmup_client::Error as E;
    let stated = match kind {
        Some(k) => format!("--kind {}", k.as_str()),
        None => "a feature release (no --kind)".to_string(),
    };
    let is_mixed = kind == Some(ReleaseKind::Mixed);
    let context = match &err {
        E::AdvisoryMissing { kind } => format!(
            "--kind {kind} needs --advisory FILE: a JSON file with the advisory's summary, \
             severity, action and CVE ids (see `firmup-signer sign --help`)"
        ),
        E::MixedReasonMissing => "--kind mixed needs --mixed-reason TEXT: why the security fix \
                                  could not ship in a release of its own"
            .to_string(),
        E::InvalidField {
            field: "mixed_reason",
            ..
        } if !is_mixed => {
            format!("--mixed-reason is for --kind mixed only; this release is {stated}")
        }
        E::InvalidField {
            field: "mixed_reason",
            ..
        } => "invalid --mixed-reason".to_string(),
        E::InvalidField {
            field: "advisory", ..
        } => format!("--advisory is for --kind security or --kind mixed; this release is {stated}"),
        E::InvalidField { field, .. } if field.starts_with("advisory.") => format!(
            "invalid advisory ({} and any --cve)",
            advisory.map_or_else(|| "--advisory".into(), |p| p.display().to_string())
        ),
        _ => "invalid manifest fields (command line)".to_string(),
    };
    anyhow::Error::new(err).context(context)
}

/// Runs `sign`.
pub fn run(args: Args) -> Result<()> {
    match args.cosign.clone() {
        Some(path) => cosign(&path, &args),
        None => create(args),
    }
}

/// Loads every key before any work, so a bad key file fails fast and
/// before an image is hashed.
fn load_keys(paths: &[PathBuf]) -> Result<Vec<SigningKey>> {
    paths.iter().map(|p| key_source(p).signing_key()).collect()
}

fn sign_all(env: &mut Envelope, keys: &[SigningKey]) -> Result<Vec<KeyId>> {
    keys.iter()
        .map(|k| env.sign(k).context("cannot sign with this key"))
        .collect()
}

fn check_size(bytes: &[u8], path: &Path) -> Result<()> {
    if bytes.len() as u64 > MAX_MANIFEST_BYTES {
        bail!(
            "signed manifest would be too large ({}): {} bytes, devices accept at most {} \
             (shorten the release notes or the advisory)",
            path.display(),
            bytes.len(),
            MAX_MANIFEST_BYTES
        );
    }
    Ok(())
}

fn read_notes(path: &Path) -> Result<String> {
    let ctx = || format!("cannot read release notes ({})", path.display());
    match fsutil::read_limited(path, MAX_NOTES_BYTES).with_context(ctx)? {
        Limited::TooLarge { size } => Err(anyhow::anyhow!(
            "{size} bytes, over the limit of {MAX_NOTES_BYTES} (a manifest is at most 64 KiB); \
             publish long notes elsewhere"
        ))
        .with_context(ctx),
        Limited::Complete(bytes) => String::from_utf8(bytes)
            .map_err(|_| anyhow::anyhow!("not UTF-8 text"))
            .with_context(ctx),
    }
}

fn create(args: Args) -> Result<()> {
    // `required_unless_present = "cosign"` makes clap enforce these.
    let (Some(product_line), Some(channel), Some(version), Some(manifest_version), Some(counter)) = (
        args.product_line,
        args.channel,
        args.version,
        args.manifest_version,
        args.security_counter,
    ) else {
        bail!("missing manifest fields: see `firmup-signer sign --help`");
    };
    let Some(out) = args.out else {
        bail!("missing --out: see `firmup-signer sign --help`");
    };
    let overwrite = Overwrite::from_force(args.force);
    fsutil::check_writable(&out, overwrite)?;

    let issued_at = args.issued_at.unwrap_or_else(common::now_utc);
    let expires = args.expiry.resolve(issued_at)?;
    let release_notes = args.notes_file.as_deref().map(read_notes).transpose()?;
    let kind = args.kind.map(ReleaseKind::from);
    if !args.cves.is_empty() && args.advisory.is_none() {
        bail!(
            "--cve needs --advisory FILE: the CVE ids go with an advisory (summary, severity, \
             action) of a --kind security or --kind mixed release"
        );
    }
    let advisory = args
        .advisory
        .as_deref()
        .map(|p| read_advisory(p, &args.cves))
        .transpose()?;
    // The format is told now, so an unknown one fails before any hashing;
    // length and digest are filled in with the images'.
    let sbom = args
        .sbom
        .as_deref()
        .map(sbom::detect_format)
        .transpose()?
        .map(|format| SbomRef {
            format,
            length: 0,
            sha256: Sha256Digest([0; 32]),
        });
    let keys = load_keys(&args.keys)?;

    // Validate everything that does not need the digests before hashing
    // what may be gigabytes: the same rules, a placeholder digest.
    let mut images = Vec::with_capacity(args.images.len());
    for arg in &args.images {
        // Fail on a missing second image before hashing the first.
        images::check_readable(&arg.path)?;
        images.push(ImageSpec {
            name: images::image_name(&arg.path)?,
            target: arg
                .target
                .clone()
                .unwrap_or_else(|| DEFAULT_TARGET.to_string()),
            length: 0,
            sha256: Sha256Digest([0; 32]),
        });
    }
    let mut manifest = Manifest {
        spec_version: MANIFEST_SPEC_VERSION,
        product_line,
        hw_compat: args.hw_ids,
        channel,
        version,
        manifest_version,
        security_counter: counter,
        requires: args.requires,
        issued_at,
        expires,
        images,
        // The digest of the inline notes is signed too, so notes copied
        // out of the manifest can be checked (`verify --release-notes`).
        release_notes_sha256: release_notes
            .as_deref()
            .map(|n| firmup_client::Sha256Digest::of(n.as_bytes())),
        release_notes,
        kind,
        mixed_reason: args.mixed_reason,
        advisory,
        sbom,
        extensions: BTreeMap::new(),
    };
    manifest
        .validate()
        .map_err(|e| explain(e, kind, args.advisory.as_deref()))?;

    for (spec, arg) in manifest.images.iter_mut().zip(&args.images) {
        eprintln!("hashing {} ...", arg.path.display());
        let (length, digest) = images::hash_file(&arg.path)?;
        spec.length = length;
        spec.sha256 = digest;
    }
    if let (Some(path), Some(reference)) = (&args.sbom, &mut manifest.sbom) {
        eprintln!("hashing {} ...", path.display());
        *reference = sbom::reference(path, reference.format)?;
    }

    let payload = manifest
        .to_payload()
        .context("invalid manifest (command line)")?;
    let mut env = Envelope::new(MANIFEST_PAYLOAD_TYPE, &payload);
    let signed_by = sign_all(&mut env, &keys)?;
    let bytes = env.to_json_bytes();
    check_size(&bytes, &out)?;
    fsutil::write_atomic(&out, &bytes, MODE_PUBLIC, overwrite)?;
    common::warn_if_expired("the manifest", expires);

    println!(
        "wrote {}: {} {} (channel {}, manifest_version {}, security_counter {}), expires {}",
        out.display(),
        manifest.product_line,
        manifest.version,
        manifest.channel,
        manifest.manifest_version,
        manifest.security_counter,
        common::fmt_time(manifest.expires)
    );
    for spec in &manifest.images {
        println!(
            "  image {} -> {}: {} bytes, sha256 {}",
            spec.name, spec.target, spec.length, spec.sha256
        );
    }
    for line in common::release_kind_lines(&manifest) {
        println!("  {line}");
    }
    for id in &signed_by {
        println!("  signed by {id}");
    }
    println!(
        "co-sign with: firmup-signer sign --key REL.key --cosign {}",
        out.display()
    );
    Ok(())
}

fn cosign(path: &Path, args: &Args) -> Result<()> {
    let mut file = common::read_manifest(path)?;
    let keys = load_keys(&args.keys)?;
    let m = &file.manifest;
    eprintln!(
        "co-signing {} {} (channel {}, manifest_version {}, security_counter {}, hw {})",
        m.product_line,
        m.version,
        m.channel,
        m.manifest_version,
        m.security_counter,
        m.hw_compat.join(",")
    );
    for line in common::release_kind_lines(m) {
        eprintln!("  {line}");
    }

    if !args.images.is_empty() {
        let paths: Vec<PathBuf> = args.images.iter().map(|a| a.path.clone()).collect();
        for (spec, image_path) in images::match_images(&m.images, &paths)? {
            let given_target = args
                .images
                .iter()
                .find(|a| a.path == image_path)
                .and_then(|a| a.target.as_deref());
            if let Some(target) = given_target.filter(|t| *t != spec.target) {
                bail!(
                    "image target mismatch ({}): the manifest installs {:?} to {:?}, not {target:?}",
                    image_path.display(),
                    spec.name,
                    spec.target
                );
            }
            images::check_image(&spec, &image_path)?;
            eprintln!("image {} matches the manifest", spec.name);
        }
    }

    let already: Vec<KeyId> = file
        .envelope
        .signatures
        .iter()
        .map(|s| s.keyid.clone())
        .collect();
    let original_payload = file.envelope.payload.clone();
    let signed_by = sign_all(&mut file.envelope, &keys)?;
    if file.envelope.payload != original_payload {
        bail!(
            "internal error: signing changed the payload ({}); nothing written",
            path.display()
        );
    }
    let bytes = file.envelope.to_json_bytes();
    check_size(&bytes, path)?;
    let mode = fsutil::existing_mode(path, MODE_PUBLIC);
    fsutil::write_atomic(path, &bytes, mode, Overwrite::Replace)?;

    for id in &signed_by {
        if already.contains(id) {
            eprintln!(
                "note: {} had already signed; its signature was replaced, not added",
                short_id(id)
            );
        }
        println!("co-signed {} with {id}", path.display());
    }
    println!(
        "{} now carries {} signature(s)",
        path.display(),
        file.envelope.signatures.len()
    );
    Ok(())
}
