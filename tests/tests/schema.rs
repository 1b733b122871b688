//! The JSON schema documents in docs/ describe the formats the code
//! actually reads: same properties, same required set. A field added to a
//! struct without the schema (or the other way round) fails here.

use std::collections::BTreeSet;

use firmup_fixtures::{ReleaseBuilder, RootBuilder};

fn schema(name: &str) -> serde_json::Value {
    let path = format!("{}/../docs/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn keys(v: &serde_json::Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

fn required(v: &serde_json::Value) -> BTreeSet<String> {
    v["required"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn manifest_schema_matches_the_manifest_type() {
    let s = schema("manifest.v1.schema.json");
    // A mixed release carries every optional field: kind, mixed_reason,
    // advisory; the SBOM reference is added.
    let mut b = ReleaseBuilder::standard().mixed(&["CVE-2026-12345"]);
    b.manifest.sbom = Some(firmup_client::SbomRef {
        format: firmup_client::SbomFormat::Spdx,
        length: 3,
        sha256: firmup_client::Sha256Digest::of(b"abc"),
    });
    b.manifest.release_notes_sha256 = Some(firmup_client::Sha256Digest::of(b"TEST-ONLY release."));
    b.manifest.extensions.insert("x".into(), 1.into());
    let full = serde_json::to_value(b.build().manifest).unwrap();
    assert_eq!(keys(&s["properties"]), keys(&full));
    assert_eq!(s["additionalProperties"], false);

    let mut minimal = b.build().manifest;
    minimal.requires = None;
    minimal.release_notes = None;
    minimal.release_notes_sha256 = None;
    minimal.extensions.clear();
    minimal.kind = None;
    minimal.mixed_reason = None;
    minimal.advisory = None;
    minimal.sbom = None;
    assert_eq!(required(&s), keys(&serde_json::to_value(minimal).unwrap()));

    let image = &full["images"][0];
    assert_eq!(keys(&s["$defs"]["image"]["properties"]), keys(image));
    assert_eq!(
        keys(&s["$defs"]["advisory"]["properties"]),
        keys(&full["advisory"])
    );
    assert_eq!(keys(&s["$defs"]["sbom"]["properties"]), keys(&full["sbom"]));
}

#[test]
fn root_schema_matches_the_root_type() {
    let s = schema("root.v1.schema.json");
    let doc = serde_json::to_value(RootBuilder::standard().document()).unwrap();
    assert_eq!(keys(&s["properties"]), keys(&doc));
    let mut without = doc.clone();
    without.as_object_mut().unwrap().remove("delegations");
    assert_eq!(required(&s), keys(&without));
}

#[test]
fn envelope_schema_matches_the_envelope_type() {
    let s = schema("envelope.v1.schema.json");
    let env: serde_json::Value =
        serde_json::from_slice(&ReleaseBuilder::standard().build().envelope).unwrap();
    assert_eq!(keys(&s["properties"]), keys(&env));
    assert_eq!(required(&s), keys(&env));
    let types: Vec<_> = s["properties"]["payload_type"]["enum"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert!(types.contains(&firmup_client::manifest::MANIFEST_PAYLOAD_TYPE));
    assert!(types.contains(&firmup_client::root::ROOT_PAYLOAD_TYPE));
}
