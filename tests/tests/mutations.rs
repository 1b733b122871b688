//! Property tests: a valid signed manifest envelope, mutated byte by byte
//! and field by field. No mutation may verify unless the signed bytes, their
//! payload type and so their meaning are unchanged.

use firmup_client::TrustedRoot;
use firmup_client::envelope::Envelope;
use firmup_client::manifest::{MANIFEST_PAYLOAD_TYPE, Manifest};
use firmup_client::verify::{Clock, InstalledState, VerifyRequest, verify_manifest};
use firmup_fixtures::release::FIXTURE_NOW;
use firmup_fixtures::{ReleaseBuilder, RootBuilder};
use proptest::prelude::*;
use serde_json::Value;

struct World {
    root: TrustedRoot,
    envelope: Vec<u8>,
    payload: Vec<u8>,
    manifest: Manifest,
}

fn world() -> World {
    let root = TrustedRoot::from_pinned(&RootBuilder::standard().build()).unwrap();
    let release = ReleaseBuilder::standard().build();
    let env =
        Envelope::from_slice(&release.envelope, u64::MAX, "t", MANIFEST_PAYLOAD_TYPE).unwrap();
    World {
        root,
        payload: env.payload_bytes().unwrap(),
        envelope: release.envelope,
        manifest: release.manifest,
    }
}

fn request() -> VerifyRequest {
    let mut req = VerifyRequest::for_product_line("encoders", Clock::Trusted(FIXTURE_NOW));
    req.hw_id = Some("enc-4k-r2".into());
    req.channel = Some("stable".into());
    req.installed = Some(InstalledState {
        version: "2.0.0".parse().unwrap(),
        security_counter: 3,
        manifest_version: 6,
    });
    req
}

/// The property: either refused, or exactly the signed bytes and meaning.
fn holds(w: &World, mutated: &[u8]) -> Result<(), TestCaseError> {
    if let Ok(plan) = verify_manifest(&w.root, &request(), mutated) {
        prop_assert_eq!(&plan.payload, &w.payload, "other signed bytes verified");
        prop_assert_eq!(&plan.manifest, &w.manifest);
        let env = Envelope::from_slice(mutated, u64::MAX, "t", MANIFEST_PAYLOAD_TYPE).unwrap();
        prop_assert_eq!(env.payload_type.as_str(), MANIFEST_PAYLOAD_TYPE);
    }
    Ok(())
}

#[test]
fn the_unmutated_envelope_verifies() {
    let w = world();
    assert!(verify_manifest(&w.root, &request(), &w.envelope).is_ok());
}

/// One structural change to the parsed envelope.
#[derive(Debug, Clone)]
enum Edit {
    PayloadType(String),
    /// Flip one bit of the decoded payload and re-encode it.
    PayloadBit(usize),
    DropSignature(usize),
    DuplicateSignature(usize),
    SignatureAsArray(usize),
    KeyId(usize, String),
    SigBit(usize, usize),
    UnknownField(String),
    WrapInArray,
    ReverseKeys,
    DuplicateTopKey,
}

fn edit() -> impl Strategy<Value = Edit> {
    prop_oneof![
        "[a-z/.+0-9-]{0,48}".prop_map(Edit::PayloadType),
        any::<usize>().prop_map(Edit::PayloadBit),
        any::<usize>().prop_map(Edit::DropSignature),
        any::<usize>().prop_map(Edit::DuplicateSignature),
        any::<usize>().prop_map(Edit::SignatureAsArray),
        (any::<usize>(), "[0-9a-f]{64}").prop_map(|(i, k)| Edit::KeyId(i, k)),
        (any::<usize>(), any::<usize>()).prop_map(|(i, b)| Edit::SigBit(i, b)),
        "[a-z_]{1,12}".prop_map(Edit::UnknownField),
        Just(Edit::WrapInArray),
        Just(Edit::ReverseKeys),
        Just(Edit::DuplicateTopKey),
    ]
}

fn b64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

fn unb64(s: &str) -> Vec<u8> {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.decode(s).unwrap()
}

fn apply(w: &World, e: &Edit) -> Vec<u8> {
    let mut v: Value = serde_json::from_slice(&w.envelope).unwrap();
    let sigs = v["signatures"].as_array().unwrap().len();
    match e {
        Edit::PayloadType(t) => v["payload_type"] = t.clone().into(),
        Edit::PayloadBit(i) => {
            let mut p = w.payload.clone();
            let bit = i % (p.len() * 8);
            p[bit / 8] ^= 1 << (bit % 8);
            v["payload"] = b64(&p).into();
        }
        Edit::DropSignature(i) => {
            v["signatures"].as_array_mut().unwrap().remove(i % sigs);
        }
        Edit::DuplicateSignature(i) => {
            let s = v["signatures"][i % sigs].clone();
            v["signatures"].as_array_mut().unwrap().push(s);
        }
        Edit::SignatureAsArray(i) => {
            let s = v["signatures"][i % sigs].clone();
            v["signatures"][i % sigs] = serde_json::json!([s["keyid"], s["sig"]]);
        }
        Edit::KeyId(i, k) => v["signatures"][i % sigs]["keyid"] = k.clone().into(),
        Edit::SigBit(i, b) => {
            let mut sig = unb64(v["signatures"][i % sigs]["sig"].as_str().unwrap());
            let bit = b % (sig.len() * 8);
            sig[bit / 8] ^= 1 << (bit % 8);
            v["signatures"][i % sigs]["sig"] = b64(&sig).into();
        }
        Edit::UnknownField(f) => v[f.as_str()] = "x".into(),
        Edit::WrapInArray => v = Value::Array(vec![v]),
        Edit::ReverseKeys => {
            let obj = v.as_object().unwrap();
            let mut text = String::from("{");
            for (n, (k, val)) in obj.iter().rev().enumerate() {
                if n > 0 {
                    text.push(',');
                }
                text.push_str(&format!("{}:{}", Value::from(k.as_str()), val));
            }
            text.push('}');
            return text.into_bytes();
        }
        Edit::DuplicateTopKey => {
            // The real payload first, another after it: last-wins readers
            // would see the second.
            let text = serde_json::to_string(&v).unwrap();
            let other = b64(b"{}");
            return format!("{},\"payload\":\"{other}\"}}", &text[..text.len() - 1]).into_bytes();
        }
    }
    serde_json::to_vec(&v).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn no_byte_mutation_verifies_other_bytes(index in any::<usize>(), byte in any::<u8>()) {
        let w = world();
        let mut m = w.envelope.clone();
        let i = index % m.len();
        m[i] = byte;
        holds(&w, &m)?;
    }

    #[test]
    fn no_field_mutation_verifies_other_bytes(e in edit()) {
        let w = world();
        let mutated = apply(&w, &e);
        holds(&w, &mutated)?;
        // Edits that change what is signed or how it is read never verify.
        let must_fail = matches!(
            e,
            Edit::PayloadBit(_) | Edit::WrapInArray | Edit::DuplicateTopKey | Edit::UnknownField(_)
        ) || matches!(&e, Edit::PayloadType(t) if t != MANIFEST_PAYLOAD_TYPE);
        if must_fail {
            prop_assert!(
                verify_manifest(&w.root, &request(), &mutated).is_err(),
                "{:?} verified", e
            );
        }
    }
}
