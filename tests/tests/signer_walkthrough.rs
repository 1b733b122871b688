//! The README walkthrough, run through the real `firmup-signer` binary:
//! a 2-of-3 root, a product line delegated to two release keys with
//! threshold 2, a 64 MiB image signed by both engineers, verification, a
//! rotation to root version 2, and the failures a user must see: one
//! signature short, a flipped image byte, a rotation without the old keys,
//! a loosely permissioned key, and bad input that leaves no output behind.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::process::{Command, Output};

use firmup_fixtures::images::{LARGE, write_image};
use firmup_tests::bin;

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
    } = Command::new(bin("firmup-signer", "firmup-signer"))
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

const VERIFY_V1: &[&str] = &[
    "verify",
    "--root",
    "root.v1.json",
    "--manifest",
    "fw.manifest.json",
    "--image",
    "fw.bin",
    "--hw-id",
    "enc-4k-r2",
    "--channel",
    "stable",
];

/// `VERIFY_V1` with root v2 as the rotation chain.
fn verify_with_chain_args() -> Vec<&'static str> {
    let mut args = VERIFY_V1.to_vec();
    args.extend(["--root", "root.v2.json"]);
    args
}

/// Sets up keys, a signed 2-of-3 root v1 and the 64 MiB image.
fn setup(dir: &Path) {
    for k in ["root1", "root2", "root3", "root4", "rel1", "rel2"] {
        let r = ok(dir, &["keygen", "--out", k]);
        assert!(r.stdout.contains("key id"), "{}", r.stdout);
        let mode = fs::metadata(dir.join(format!("{k}.key")))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{k}.key must be private");
    }
    ok(
        dir,
        &[
            "root",
            "init",
            "--root-key",
            "root1.pub",
            "--root-key",
            "root2.pub",
            "--root-key",
            "root3.pub",
            "--threshold",
            "2",
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
            "--key",
            "rel2.pub",
            "--threshold",
            "2",
        ],
    );
    ok(
        dir,
        &[
            "root",
            "sign",
            "--key",
            "root1.key",
            "--key",
            "root2.key",
            "root.v1.json",
        ],
    );
    write_image(
        "walkthrough",
        LARGE,
        fs::File::create(dir.join("fw.bin")).unwrap(),
    )
    .unwrap();
}

fn sign_release(dir: &Path, key: &str) -> Run {
    signer(
        dir,
        &[
            "sign",
            "--key",
            key,
            "--image",
            "rootfs=fw.bin",
            "--product-line",
            "encoders",
            "--hw-id",
            "enc-4k-r1",
            "--hw-id",
            "enc-4k-r2",
            "--channel",
            "stable",
            "--version",
            "2.1.0",
            "--manifest-version",
            "7",
            "--security-counter",
            "3",
            "--requires",
            "2.0.0",
            "--out",
            "fw.manifest.json",
        ],
    )
}

#[test]
fn release_engineer_walkthrough() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    setup(dir);

    // One engineer signs: not enough for a 2-of-2 delegation.
    assert_eq!(sign_release(dir, "rel1.key").code, 0);
    let r = signer(dir, VERIFY_V1);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(
        r.stdout.starts_with("REJECTED (threshold_not_met)"),
        "{}",
        r.stdout
    );

    // The second engineer co-signs: accepted.
    ok(
        dir,
        &["sign", "--key", "rel2.key", "--cosign", "fw.manifest.json"],
    );
    let r = ok(dir, VERIFY_V1);
    assert!(r.stdout.starts_with("OK: encoders 2.1.0"), "{}", r.stdout);
    assert!(r.stdout.contains("67108864 bytes"), "{}", r.stdout);

    // Rotate to root v2: root3 leaves, root4 joins. Signed by the new keys
    // only, devices that trust v1 must refuse it.
    ok(
        dir,
        &[
            "root",
            "rotate",
            "--from",
            "root.v1.json",
            "--out",
            "root.v2.json",
            "--remove-key",
            "root3.pub",
            "--add-key",
            "root4.pub",
        ],
    );
    ok(
        dir,
        &[
            "root",
            "sign",
            "--key",
            "root3.key",
            "--key",
            "root4.key",
            "root.v2.json",
        ],
    );
    let r = signer(dir, &verify_with_chain_args());
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    assert!(r.stdout.contains("threshold_not_met"), "{}", r.stdout);
    assert!(r.stdout.contains("keys of root version 1"), "{}", r.stdout);

    // With a threshold of the old keys too, the chain verifies.
    ok(
        dir,
        &[
            "root",
            "sign",
            "--key",
            "root1.key",
            "--key",
            "root2.key",
            "root.v2.json",
        ],
    );
    let r = ok(dir, &verify_with_chain_args());
    assert!(r.stdout.contains("root version 2"), "{}", r.stdout);

    // One flipped byte in the 64 MiB image is caught.
    let path = dir.join("fw.bin");
    let mut bytes = fs::read(&path).unwrap();
    bytes[LARGE as usize / 3] ^= 0x80;
    fs::write(&path, bytes).unwrap();
    let r = signer(dir, &verify_with_chain_args());
    assert_eq!(r.code, 1);
    assert!(
        r.stdout.starts_with("REJECTED (image_hash_mismatch)"),
        "{}",
        r.stdout
    );
}

#[test]
fn bad_input_is_named_and_leaves_nothing_behind() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    for k in ["root1", "rel1"] {
        ok(dir, &["keygen", "--out", k]);
    }

    // A private key readable by others is refused, with the fix.
    fs::set_permissions(dir.join("rel1.key"), fs::Permissions::from_mode(0o644)).unwrap();
    fs::write(dir.join("fw.bin"), b"firmware").unwrap();
    let r = sign_release(dir, "rel1.key");
    assert_eq!(r.code, 3, "{}", r.stderr);
    assert!(
        r.stderr.contains("rel1.key") && r.stderr.contains("chmod 600"),
        "{}",
        r.stderr
    );
    assert!(!dir.join("fw.manifest.json").exists());
    fs::set_permissions(dir.join("rel1.key"), fs::Permissions::from_mode(0o600)).unwrap();

    // A missing image: one line naming the file, no output.
    fs::remove_file(dir.join("fw.bin")).unwrap();
    let r = sign_release(dir, "rel1.key");
    assert_eq!(r.code, 3);
    assert!(r.stderr.contains("fw.bin"), "{}", r.stderr);
    assert_eq!(r.stderr.trim().lines().count(), 1, "{}", r.stderr);
    assert!(!dir.join("fw.manifest.json").exists());

    // Invalid semver is named.
    fs::write(dir.join("fw.bin"), b"firmware").unwrap();
    let r = signer(
        dir,
        &[
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
            "2.1",
            "--manifest-version",
            "1",
            "--security-counter",
            "1",
            "--out",
            "fw.manifest.json",
        ],
    );
    assert_ne!(r.code, 0);
    assert!(r.stderr.contains("2.1"), "{}", r.stderr);
    assert!(!dir.join("fw.manifest.json").exists());

    // Malformed JSON, bad base64 and oversize manifests are rejected with
    // their codes; no temporary files are left in the directory.
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
            "root.json",
        ],
    );
    ok(
        dir,
        &[
            "delegate",
            "--root",
            "root.json",
            "--product-line",
            "encoders",
            "--key",
            "rel1.pub",
            "--threshold",
            "1",
        ],
    );
    ok(dir, &["root", "sign", "--key", "root1.key", "root.json"]);
    let verify = |manifest: &[u8]| {
        fs::write(dir.join("m.json"), manifest).unwrap();
        signer(
            dir,
            &[
                "verify",
                "--root",
                "root.json",
                "--manifest",
                "m.json",
                "--image",
                "fw.bin",
                "--product-line",
                "encoders",
            ],
        )
    };
    let r = verify(b"{\"payload_type\": ");
    assert_eq!(
        (r.code, r.stdout.starts_with("REJECTED (malformed)")),
        (1, true),
        "{}",
        r.stdout
    );
    let r = verify(
        br#"{"payload_type":"application/vnd.firmup.manifest.v1+json","payload":"%%%","signatures":[]}"#,
    );
    assert!(r.stdout.starts_with("REJECTED (malformed)"), "{}", r.stdout);
    let r = verify(&vec![b' '; 64 * 1024 + 1]);
    assert!(
        r.stdout.starts_with("REJECTED (too_large)"),
        "{}{}",
        r.stdout,
        r.stderr
    );

    let leftovers: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| {
            ![
                "root1.key",
                "root1.pub",
                "rel1.key",
                "rel1.pub",
                "fw.bin",
                "root.json",
                "m.json",
            ]
            .contains(&n.as_str())
        })
        .collect();
    assert!(leftovers.is_empty(), "unexpected files: {leftovers:?}");
}
