//! Envelope parsing: never panics; whatever parses yields its payload or a
//! typed error.
#![no_main]

use firmup_client::envelope::Envelope;
use firmup_client::manifest::{MANIFEST_PAYLOAD_TYPE, MAX_MANIFEST_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(env) = Envelope::from_slice(data, MAX_MANIFEST_BYTES, "fuzz", MANIFEST_PAYLOAD_TYPE) {
        let _ = env.payload_bytes();
        // What was read can be written again and read back the same.
        let again = Envelope::from_slice(
            &env.to_json_bytes(),
            u64::MAX,
            "fuzz",
            MANIFEST_PAYLOAD_TYPE,
        )
        .expect("a serialised envelope parses");
        assert_eq!(again.payload, env.payload);
    }
});
