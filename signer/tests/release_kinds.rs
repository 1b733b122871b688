//! `firmup-signer sign --kind/--advisory/--cve/--mixed-reason/--sbom` and
//! what `verify` prints about them, through the real binary: a security
//! release verifies and its signed payload holds the advisory, an SBOM of
//! each format is detected and its digest signed, and every wrong
//! combination fails before an image is hashed, naming the flag to pass.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use firmup_client::manifest::{MANIFEST_PAYLOAD_TYPE, MAX_MANIFEST_BYTES};
use firmup_client::{Envelope, Manifest, ReleaseKind, SbomFormat, Severity, Sha256Digest};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn signer(dir: &Path, args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(env!("CARGO_BIN_EXE_firmup-signer"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("firmup-signer runs");
    Run {
        code: status.code().expect("not killed by a signal"),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

#[track_caller]
fn ok(dir: &Path, args: &[&str]) -> Run {
    let r = signer(dir, args);
    assert_eq!(
        r.code, 0,
        "{args:?}\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    r
}

/// Fails with exit code 3 (an input error), says `says` on stderr, has
/// hashed no image and written no manifest.
#[track_caller]
fn refused(dir: &Path, args: &[&str], says: &[&str]) -> Run {
    let r = signer(dir, args);
    assert_eq!(
        r.code, 3,
        "{args:?}\nstdout: {}\nstderr: {}",
        r.stdout, r.stderr
    );
    for s in says {
        assert!(r.stderr.contains(s), "expected {s:?} in: {}", r.stderr);
    }
    assert!(
        !r.stderr.contains("hashing"),
        "refused only after hashing: {}",
        r.stderr
    );
    assert!(!dir.join("fw.manifest.json").exists());
    r
}

/// A 1-of-1 root delegating `encoders` to one release key, and an image.
fn setup(dir: &Path) {
    for k in ["root1", "rel1"] {
        ok(dir, &["keygen", "--out", k]);
    }
    ok(
        dir,
        &[
            "root",
            "init",
            "--root-key",
            "root1.pub",
            "--threshold",
            "1",
            "--out",
            "root.v1.json",
        ],
    );
    ok(
        dir,
        &[
            "delegate",
            "--root",
            "root.v1.json",
            "--product-line",
            "encoders",
            "--key",
            "rel1.pub",
            "--threshold",
            "1",
        ],
    );
    ok(dir, &["root", "sign", "--key", "root1.key", "root.v1.json"]);
    fs::write(dir.join("fw.bin"), vec![0x5a; 100_000]).unwrap();
    fs::write(
        dir.join("advisory.json"),
        r#"{"summary": "Fixes a buffer overflow in the RTSP server.",
            "severity": "high",
            "action": "Install this update; until then block port 554.",
            "cves": ["CVE-2026-11111"]}"#,
    )
    .unwrap();
}

/// `sign` with the usual release fields and `extra` flags.
fn sign_args<'a>(extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "sign",
        "--key",
        "rel1.key",
        "--image",
        "fw.bin",
        "--product-line",
        "encoders",
        "--hw-id",
        "enc-4k-r2",
        "--channel",
        "stable",
        "--version",
        "2.1.1",
        "--manifest-version",
        "8",
        "--security-counter",
        "4",
        "--out",
        "fw.manifest.json",
    ];
    args.extend_from_slice(extra);
    args
}

fn verify(dir: &Path) -> Run {
    ok(
        dir,
        &[
            "verify",
            "--root",
            "root.v1.json",
            "--manifest",
            "fw.manifest.json",
            "--image",
            "fw.bin",
            "--product-line",
            "encoders",
        ],
    )
}

/// The signed payload, read back from the envelope.
fn signed_manifest(dir: &Path) -> Manifest {
    let bytes = fs::read(dir.join("fw.manifest.json")).unwrap();
    let env = Envelope::from_slice(
        &bytes,
        MAX_MANIFEST_BYTES,
        "manifest envelope",
        MANIFEST_PAYLOAD_TYPE,
    )
    .unwrap();
    Manifest::from_payload(&env.payload_bytes().unwrap()).unwrap()
}

#[test]
fn a_security_release_carries_its_signed_advisory_and_verifies() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    let sbom = br#"{"spdxVersion": "SPDX-2.3", "SPDXID": "SPDXRef-DOCUMENT", "packages": []}"#;
    fs::write(dir.join("sbom.spdx.json"), sbom).unwrap();
    let signed = ok(
        dir,
        &sign_args(&[
            "--kind",
            "security",
            "--advisory",
            "advisory.json",
            "--cve",
            "CVE-2026-22222",
            "--sbom",
            "sbom.spdx.json",
        ]),
    );
    assert!(
        signed
            .stdout
            .contains("kind security: severity high, fixes CVE-2026-11111, CVE-2026-22222"),
        "{}",
        signed.stdout
    );

    let m = signed_manifest(dir);
    assert_eq!(m.kind, Some(ReleaseKind::Security));
    assert_eq!(m.mixed_reason, None);
    let a = m.advisory.as_ref().expect("the advisory is signed");
    assert_eq!(a.summary, "Fixes a buffer overflow in the RTSP server.");
    assert_eq!(a.severity, Severity::High);
    assert_eq!(a.action, "Install this update; until then block port 554.");
    assert_eq!(a.cves, ["CVE-2026-11111", "CVE-2026-22222"]);
    let r = m.sbom.as_ref().expect("the SBOM reference is signed");
    assert_eq!(r.format, SbomFormat::Spdx);
    assert_eq!(r.length, sbom.len() as u64);
    assert_eq!(r.sha256, Sha256Digest::of(sbom));

    let v = verify(dir);
    assert!(v.stdout.starts_with("OK: encoders 2.1.1"), "{}", v.stdout);
    for line in [
        "\n  kind security: severity high, fixes CVE-2026-11111, CVE-2026-22222\n",
        "\n  advisory: Fixes a buffer overflow in the RTSP server.\n",
        "\n  action: Install this update; until then block port 554.\n",
        &format!(
            "\n  sbom spdx: {} bytes, sha256 {}\n",
            sbom.len(),
            Sha256Digest::of(sbom)
        ),
    ] {
        assert!(
            v.stdout.contains(line),
            "expected {line:?} in: {}",
            v.stdout
        );
    }
    assert!(!v.stdout.contains("mixed reason"), "{}", v.stdout);
}

#[test]
fn a_mixed_release_says_why_and_verify_prints_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    let without = sign_args(&["--kind", "mixed", "--advisory", "advisory.json"]);
    refused(dir, &without, &["--mixed-reason TEXT", "mixed"]);

    let reason = "The fix needs the new TLS stack of 2.1.";
    ok(
        dir,
        &sign_args(&[
            "--kind",
            "mixed",
            "--advisory",
            "advisory.json",
            "--mixed-reason",
            reason,
        ]),
    );
    let m = signed_manifest(dir);
    assert_eq!(m.kind, Some(ReleaseKind::Mixed));
    assert_eq!(m.mixed_reason.as_deref(), Some(reason));
    let v = verify(dir);
    assert!(
        v.stdout
            .contains("\n  kind mixed: severity high, fixes CVE-2026-11111\n"),
        "{}",
        v.stdout
    );
    assert!(
        v.stdout.contains(&format!("\n  mixed reason: {reason}\n")),
        "{}",
        v.stdout
    );
}

#[test]
fn a_security_release_without_advisory_is_refused_naming_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    refused(
        dir,
        &sign_args(&["--kind", "security"]),
        &["--kind security needs --advisory FILE", "advisory"],
    );
    refused(
        dir,
        &sign_args(&["--kind", "mixed", "--mixed-reason", "why"]),
        &["--kind mixed needs --advisory FILE"],
    );
    // CVE ids alone are no advisory.
    refused(
        dir,
        &sign_args(&["--kind", "security", "--cve", "CVE-2026-22222"]),
        &[
            "--cve needs --advisory FILE",
            "the CVE ids go with an advisory",
        ],
    );
}

#[test]
fn flags_that_do_not_fit_the_kind_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    refused(
        dir,
        &sign_args(&[
            "--kind",
            "security",
            "--advisory",
            "advisory.json",
            "--mixed-reason",
            "why",
        ]),
        &["--mixed-reason is for --kind mixed only", "--kind security"],
    );
    refused(
        dir,
        &sign_args(&["--mixed-reason", "why"]),
        &["--mixed-reason is for --kind mixed only", "no --kind"],
    );
    refused(
        dir,
        &sign_args(&["--advisory", "advisory.json"]),
        &[
            "--advisory is for --kind security or --kind mixed",
            "no --kind",
        ],
    );
    refused(
        dir,
        &sign_args(&["--kind", "feature", "--advisory", "advisory.json"]),
        &["--advisory is for --kind security", "--kind feature"],
    );
    // A duplicate id (file and --cve), and an id that is none.
    for (cve, says) in [
        ("CVE-2026-11111", "appears twice"),
        ("CVE-26-1", "is not a CVE id"),
    ] {
        refused(
            dir,
            &sign_args(&[
                "--kind",
                "security",
                "--advisory",
                "advisory.json",
                "--cve",
                cve,
            ]),
            &["invalid advisory (advisory.json and any --cve)", says],
        );
    }
    // Not for co-signing: the payload is never changed there.
    fs::write(dir.join("other.manifest.json"), b"{}").unwrap();
    let r = signer(
        dir,
        &[
            "sign",
            "--key",
            "rel1.key",
            "--cosign",
            "other.manifest.json",
            "--kind",
            "security",
        ],
    );
    assert_eq!(r.code, 2, "{}", r.stderr);
    let r = signer(dir, &sign_args(&["--kind", "hotfix"]));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(
        r.stderr.contains("security, feature, mixed"),
        "{}",
        r.stderr
    );
}

#[test]
fn advisory_files_are_strict_and_size_limited() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    let security = sign_args(&[
        "--kind",
        "security",
        "--advisory",
        "bad.json",
        "--cve",
        "CVE-2026-22222",
    ]);
    for (text, says) in [
        (
            r#"{"summary": "s", "severity": "high", "action": "a", "score": 9.8}"#,
            "unknown field `score`",
        ),
        (
            r#"{"summary": "s", "severity": "urgent", "action": "a"}"#,
            "unknown variant `urgent`",
        ),
        (
            r#"{"summary": "s", "severity": "high"}"#,
            "missing field `action`",
        ),
        (
            r#"{"summary": "s", "summary": "t", "severity": "high", "action": "a"}"#,
            "duplicate key",
        ),
        (r#"["s", "high", "a"]"#, "found an array"),
    ] {
        fs::write(dir.join("bad.json"), text).unwrap();
        refused(dir, &security, &["invalid advisory (bad.json)", says]);
    }
    fs::write(dir.join("bad.json"), vec![b' '; 16 * 1024 + 1]).unwrap();
    refused(dir, &security, &["bad.json", "over the limit of 16384"]);

    // Without `cves` in the file, --cve gives the ids.
    fs::write(
        dir.join("bad.json"),
        r#"{"summary": "s", "severity": "critical", "action": "a"}"#,
    )
    .unwrap();
    ok(dir, &security);
    let a = signed_manifest(dir).advisory.unwrap();
    assert_eq!(a.cves, ["CVE-2026-22222"]);
    assert_eq!(a.severity, Severity::Critical);
}

#[test]
fn an_sbom_of_either_format_is_detected_and_its_digest_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    let cases: [(&str, &[u8], SbomFormat); 2] = [
        (
            "bom.cdx.json",
            br#"{"bomFormat": "CycloneDX", "specVersion": "1.5", "version": 1, "components": []}"#,
            SbomFormat::Cyclonedx,
        ),
        (
            "bom.spdx.json",
            br#"{"SPDXID": "SPDXRef-DOCUMENT", "spdxVersion": "SPDX-2.3", "name": "fw"}"#,
            SbomFormat::Spdx,
        ),
    ];
    for (name, bytes, format) in cases {
        fs::write(dir.join(name), bytes).unwrap();
        // A feature release (no --kind) may carry an SBOM too.
        let r = ok(dir, &sign_args(&["--sbom", name, "--force"]));
        assert!(
            r.stdout.contains(&format!(
                "sbom {}: {} bytes, sha256 {}",
                format.as_str(),
                bytes.len(),
                Sha256Digest::of(bytes)
            )),
            "{}",
            r.stdout
        );
        let m = signed_manifest(dir);
        assert_eq!(m.kind, None, "no --kind leaves the kind unstated");
        let r = m.sbom.unwrap();
        assert_eq!(r.format, format, "{name}");
        assert_eq!(r.length, bytes.len() as u64);
        assert_eq!(r.sha256, Sha256Digest::of(bytes));
        let v = verify(dir);
        assert!(
            v.stdout.contains("\n  kind feature (not stated)\n"),
            "{}",
            v.stdout
        );
    }
}

#[test]
fn an_sbom_of_another_format_is_refused_before_hashing() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);
    for (text, says) in [
        (
            &b"SPDXVersion: SPDX-2.3\nDataLicense: CC0-1.0\n"[..],
            "not a JSON object",
        ),
        (br#"{"bomFormat": "SWID"}"#, "not \"CycloneDX\""),
        (br#"{"name": "fw", "packages": []}"#, "neither"),
    ] {
        fs::write(dir.join("sbom.txt"), text).unwrap();
        refused(
            dir,
            &sign_args(&["--sbom", "sbom.txt"]),
            &[
                "unknown SBOM format (sbom.txt)",
                says,
                "accepted: SPDX 2.x JSON",
                "CycloneDX JSON",
            ],
        );
    }
    refused(
        dir,
        &sign_args(&["--sbom", "missing.json"]),
        &["cannot read SBOM (missing.json)"],
    );
}
