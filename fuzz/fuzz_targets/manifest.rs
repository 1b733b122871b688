//! Manifest payload parsing: never panics, and a manifest that parses
//! round-trips through its own serialisation unchanged.
#![no_main]

use firmup_client::manifest::Manifest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = Manifest::from_payload(data) {
        let bytes = m.to_payload().expect("a valid manifest serialises");
        assert_eq!(Manifest::from_payload(&bytes).expect("and parses again"), m);
    }
});
