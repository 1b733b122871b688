//! The verification engine on hostile manifest envelopes, against the
//! fixtures' root: never panics, and nothing verifies unless the fixtures'
//! release keys signed it (the fuzzer cannot forge ed25519, so an accepted
//! input must carry a payload they signed: one of the seeds).
#![no_main]

use std::sync::OnceLock;

use firmup_client::TrustedRoot;
use firmup_client::verify::{Clock, InstalledState, VerifyRequest, verify_manifest};
use firmup_fixtures::{ReleaseBuilder, RootBuilder};
use libfuzzer_sys::fuzz_target;

struct World {
    root: TrustedRoot,
    signed_payload: Vec<u8>,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let root =
            TrustedRoot::from_pinned(&RootBuilder::standard().build()).expect("fixture root");
        let release = ReleaseBuilder::standard().build();
        let env = firmup_client::envelope::Envelope::from_slice(
            &release.envelope,
            u64::MAX,
            "seed",
            firmup_client::manifest::MANIFEST_PAYLOAD_TYPE,
        )
        .expect("fixture envelope");
        World {
            root,
            signed_payload: env.payload_bytes().expect("fixture payload"),
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let w = world();
    let now = time::OffsetDateTime::now_utc();
    let mut req = VerifyRequest::for_product_line("encoders", Clock::Trusted(now));
    req.hw_id = Some("enc-4k-r2".into());
    req.channel = Some("stable".into());
    req.installed = Some(InstalledState {
        version: "1.0.0".parse().expect("a version"),
        security_counter: 0,
        manifest_version: 0,
    });
    if let Ok(plan) = verify_manifest(&w.root, &req, data) {
        assert_eq!(plan.payload, w.signed_payload, "only signed bytes verify");
    }
});
