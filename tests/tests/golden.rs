//! Golden vectors: signed documents made once from the TEST-ONLY fixture
//! keys and committed under `fixtures/golden/`, with the verdict each must
//! get in `fixtures/golden/expected.json`. Devices in the field depend on
//! this wire format; if today's code reads a committed vector differently,
//! or the fixtures no longer produce the committed bytes, a test fails.
//!
//! After a deliberate format change, regenerate with
//! `FIRMUP_REGENERATE_GOLDEN=1 cargo test -p firmup-tests --test golden`
//! and review the diff.

use std::collections::BTreeMap;
use std::path::PathBuf;

use firmup_client::manifest::MANIFEST_PAYLOAD_TYPE;
use firmup_client::verify::{Clock, InstalledState, VerifyRequest, verify_manifest};
use firmup_client::{Sha256Digest, TrustedRoot};
use firmup_fixtures::keys::release_keys;
use firmup_fixtures::release::{FIXTURE_ISSUED, FIXTURE_NOW, sign_raw};
use firmup_fixtures::{ReleaseBuilder, RootBuilder};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/golden")
}

/// Every vector: file name, bytes, and the verdict (`ok` or an error code)
/// that `manifest.*` files get against root v2 reached from root v1.
fn vectors() -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let standard = ReleaseBuilder::standard();
    let image = standard.image();
    let valid = standard.build();

    let one_key = ReleaseBuilder::standard()
        .signed_by(&[release_keys("encoders")[0].as_str()])
        .build();

    let mut expired = ReleaseBuilder::standard();
    expired.manifest.expires = FIXTURE_ISSUED + time::Duration::days(1);
    let expired = expired.build();

    let mut older = ReleaseBuilder::standard().version("1.9.0");
    older.manifest.requires = None;
    let older = older.build();

    let mut other_hw = ReleaseBuilder::standard();
    other_hw.manifest.hw_compat = vec!["enc-hd-r1".into()];
    let other_hw = other_hw.build();

    // The valid payload, re-encoded as a positional array and signed: a
    // verifier that reads schemas refuses it, and so must this one.
    let m = standard.complete_manifest(&image);
    let positional = serde_json::json!([
        m.spec_version,
        m.product_line,
        m.hw_compat,
        m.channel,
        m.version.to_string(),
        m.manifest_version,
        m.security_counter,
        m.requires.map(|r| r.to_string()),
        "2026-05-01T00:00:00Z",
        "2036-05-01T00:00:00Z",
        [[
            "firmware.img",
            "rootfs",
            image.len(),
            Sha256Digest::of(&image).to_hex()
        ]],
    ]);
    let positional = sign_raw(
        MANIFEST_PAYLOAD_TYPE,
        positional.to_string().as_bytes(),
        &release_keys("encoders"),
    );

    // One byte of the signed payload changed after signing.
    let mut tampered: serde_json::Value = serde_json::from_slice(&valid.envelope).unwrap();
    let payload = tampered["payload"].as_str().unwrap().to_string();
    let mut raw = base64_decode(&payload);
    let at = raw.iter().position(|b| *b == b'7').unwrap();
    raw[at] = b'9';
    tampered["payload"] = base64_encode(&raw).into();
    let mut tampered = serde_json::to_vec_pretty(&tampered).unwrap();
    tampered.push(b'\n');

    vec![
        ("root.v1.json", RootBuilder::standard().build(), "root"),
        (
            "root.v2.json",
            RootBuilder::standard().next().build(),
            "root",
        ),
        ("firmware.img", image, "image"),
        ("manifest.valid.json", valid.envelope, "ok"),
        (
            "manifest.one-signature.json",
            one_key.envelope,
            "threshold_not_met",
        ),
        (
            "manifest.tampered-payload.json",
            tampered,
            "threshold_not_met",
        ),
        ("manifest.expired.json", expired.envelope, "expired"),
        ("manifest.downgrade.json", older.envelope, "downgrade"),
        (
            "manifest.other-hardware.json",
            other_hw.envelope,
            "wrong_hardware",
        ),
        ("manifest.positional.json", positional, "malformed"),
    ]
}

fn base64_decode(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn base64_encode(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(b)
}

#[test]
fn the_fixtures_still_make_the_committed_vectors() {
    let regenerate = std::env::var_os("FIRMUP_REGENERATE_GOLDEN").is_some();
    let mut expected = BTreeMap::new();
    for (name, bytes, verdict) in vectors() {
        let path = dir().join(name);
        if regenerate {
            std::fs::create_dir_all(dir()).unwrap();
            std::fs::write(&path, &bytes).unwrap();
        }
        let committed = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            committed == bytes,
            "{name} is no longer what the fixtures make: the wire format or the fixtures \
             changed (regenerate deliberately, see the module docs)"
        );
        if name.starts_with("manifest.") {
            expected.insert(name, verdict);
        }
    }
    let index = serde_json::to_string_pretty(&expected).unwrap() + "\n";
    let path = dir().join("expected.json");
    if regenerate {
        std::fs::write(&path, &index).unwrap();
    }
    assert_eq!(std::fs::read_to_string(&path).unwrap(), index);
}

/// Reads only the committed files: today's engine must give each manifest
/// exactly its recorded verdict.
#[test]
fn committed_vectors_verify_as_recorded() {
    let read = |name: &str| std::fs::read(dir().join(name)).unwrap();
    let v1 = TrustedRoot::from_pinned(&read("root.v1.json")).expect("root v1 is pinned");
    let root = v1.rotate(&read("root.v2.json")).expect("root v2 follows");
    assert_eq!(root.version(), 2);
    let image = read("firmware.img");
    let expected: BTreeMap<String, String> =
        serde_json::from_slice(&read("expected.json")).unwrap();
    assert!(expected.len() >= 7, "{expected:?}");
    for (name, verdict) in &expected {
        let mut req = VerifyRequest::for_product_line("encoders", Clock::Trusted(FIXTURE_NOW));
        req.hw_id = Some("enc-4k-r2".into());
        req.channel = Some("stable".into());
        req.installed = Some(InstalledState {
            version: "2.0.0".parse().unwrap(),
            security_counter: 3,
            manifest_version: 6,
        });
        match verify_manifest(&root, &req, &read(name)) {
            Ok(plan) => {
                assert_eq!(verdict, "ok", "{name} verified");
                let spec = &plan.manifest.images[0];
                assert_eq!(spec.length, image.len() as u64);
                assert_eq!(spec.sha256, Sha256Digest::of(&image));
            }
            Err(e) => assert_eq!(e.code(), verdict, "{name}: {e}"),
        }
    }
}
