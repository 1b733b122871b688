//! Every adversarial case of the security brief, one named test each,
//! through the device-side verification pipeline.
//!
//! Each test asserts the exact stable error code (and, where two failures
//! share a code, a fragment of the message), so removing the check that
//! stops an attack makes its test fail: the case is either accepted or
//! caught later by a different check with a different code.

use firmup_fixtures::adversarial::{self, Case};

fn assert_case(case: Case) {
    let outcome = case.run();
    match (case.expect, outcome) {
        (None, Ok(plan)) => {
            assert_eq!(plan.manifest.product_line, "encoders");
        }
        (None, Err(e)) => panic!("{}: expected acceptance, got {} ({e})", case.name, e.code()),
        (Some(code), Ok(_)) => panic!("{}: expected rejection {code}, was accepted", case.name),
        (Some(code), Err(e)) => {
            assert_eq!(e.code(), code, "{}: wrong rejection: {e}", case.name);
            assert!(
                !e.retryable() || code == "image_truncated",
                "{}: {e}",
                case.name
            );
            if let Some(fragment) = case.expect_message {
                assert!(
                    e.to_string().contains(fragment),
                    "{}: message {:?} lacks {fragment:?}",
                    case.name,
                    e.to_string()
                );
            }
        }
    }
}

macro_rules! cases {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                assert_case(adversarial::$name());
            }
        )*
    };
}

cases!(
    baseline,
    root_rotation_good,
    tampered_payload,
    tampered_image_byte,
    truncated_image,
    oversize_image,
    threshold_not_met,
    duplicate_signature_same_key,
    unknown_key,
    key_for_other_product_line,
    wrong_product_line,
    weak_key,
    wrong_hardware_id,
    downgrade,
    lower_security_counter,
    replayed_manifest_version,
    expired_manifest,
    root_rotation_missing_new_signatures,
    root_rotation_missing_old_signatures,
    root_rotation_skipped_version,
    empty_signature_list,
    oversize_manifest,
    root_served_as_manifest,
    expired_root,
    revoked_release_key,
    duplicate_key_under_two_ids,
    root_chain_too_long,
    unknown_critical_field,
    requires_stepping_stone,
    wrong_channel,
    positional_envelope,
    positional_signature_entries,
    positional_manifest_payload,
    positional_image_entry,
    duplicate_delegation_in_root,
    duplicate_keyid_in_root_keys,
    appended_unreadable_signature_entries,
    build_metadata_is_not_newer,
    requires_ignores_build_metadata,
    pinned_root_not_version_1,
    release_notes_digest_mismatch,
);

/// Every case in `adversarial::all()` has a test above (the list and the
/// macro cannot drift apart silently) and every name is unique.
#[test]
fn every_case_is_named_once() {
    let all = adversarial::all();
    let mut names: Vec<_> = all.iter().map(|c| c.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), all.len(), "duplicate case names");
    assert_eq!(all.len(), 41, "update the cases! list when adding a case");
}

/// A technician's signed-off downgrade passes the version check but never
/// the security counter.
#[test]
fn allowed_downgrade_still_respects_the_counter() {
    let mut case = adversarial::downgrade();
    case.request.allow_downgrade = true;
    assert!(
        case.run().is_ok(),
        "downgrade with the same counter is allowed"
    );

    let mut case = adversarial::lower_security_counter();
    case.request.allow_downgrade = true;
    assert_eq!(case.run().unwrap_err().code(), "security_counter_rollback");
}

/// The offline (USB) path skips only the expiry check.
#[test]
fn offline_install_skips_only_expiry() {
    let mut expired = adversarial::expired_manifest();
    expired.request.clock = firmup_client::Clock::OfflineNoExpiry;
    assert!(expired.run().is_ok());

    for mut case in [
        adversarial::downgrade(),
        adversarial::lower_security_counter(),
        adversarial::replayed_manifest_version(),
    ] {
        case.request.clock = firmup_client::Clock::OfflineNoExpiry;
        assert_eq!(
            case.run().unwrap_err().code(),
            case.expect.unwrap_or("accepted")
        );
    }
}

/// A device without a clock judges expiry by the latest signed time it has
/// seen, and moves that time forward with each accepted manifest.
#[test]
fn latest_known_time_ratchets_forward() {
    let mut case = adversarial::baseline();
    let known = time::macros::datetime!(2026-04-01 00:00 UTC);
    case.request.clock = firmup_client::Clock::LatestKnown(known);
    let plan = case.run().unwrap();
    assert_eq!(plan.latest_known_time, Some(plan.manifest.issued_at));

    let mut expired = adversarial::expired_manifest();
    expired.request.clock =
        firmup_client::Clock::LatestKnown(time::macros::datetime!(2026-02-01 00:00 UTC));
    assert_eq!(expired.run().unwrap_err().code(), "expired");
}

/// Re-offering the installed version (2.0.0) is not an upgrade.
#[test]
fn same_version_is_not_newer() {
    let mut b = firmup_fixtures::release::ReleaseBuilder::standard().version("2.0.0");
    b.manifest.requires = None;
    let mut case = adversarial::baseline();
    let r = b.build();
    case.manifest = r.envelope;
    case.image = r.image;
    assert_eq!(case.run().unwrap_err().code(), "downgrade");
}

/// An unsigned, unparsable payload is refused by the signature check,
/// never reaching the JSON parser (verify before parse).
#[test]
fn unsigned_garbage_manifest_fails_on_signatures_not_parsing() {
    let mut case = adversarial::baseline();
    let mut env: firmup_client::Envelope = serde_json::from_slice(&case.manifest).unwrap();
    let sigs = env.signatures.clone();
    env = firmup_client::Envelope::new(
        firmup_client::manifest::MANIFEST_PAYLOAD_TYPE,
        b"{\"not\": json",
    );
    env.signatures = sigs;
    case.manifest = env.to_json_bytes();
    assert_eq!(case.run().unwrap_err().code(), "threshold_not_met");
}

/// A root chain entry with an unparsable payload fails on the old root's
/// signatures before its payload is parsed.
#[test]
fn unsigned_garbage_root_fails_on_old_keys_not_parsing() {
    let mut case = adversarial::baseline();
    let env = firmup_client::Envelope::new(firmup_client::root::ROOT_PAYLOAD_TYPE, b"{garbage");
    let mut env = env;
    env.signatures = serde_json::from_slice::<firmup_client::Envelope>(&case.pinned_root)
        .unwrap()
        .signatures;
    case.root_chain = vec![env.to_json_bytes()];
    let err = case.run().unwrap_err();
    assert_eq!(err.code(), "threshold_not_met", "{err}");
    assert!(err.to_string().contains("keys of root version 1"), "{err}");
}
