//! Root documents and pinned root envelopes: never panic; a document that
//! parses round-trips.
#![no_main]

use firmup_client::TrustedRoot;
use firmup_client::root::RootDocument;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(doc) = RootDocument::from_payload(data) {
        let bytes = doc.to_payload().expect("a valid root serialises");
        assert_eq!(
            RootDocument::from_payload(&bytes).expect("and parses again"),
            doc
        );
    }
    let _ = TrustedRoot::from_pinned(data);
});
