//! The update check request as the server reads it: JSON into the request
//! type, then every field parsed. Never panics.
#![no_main]

use firmup_server::controllers::device::check::CheckRequest;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = serde_json::from_slice::<CheckRequest>(data) {
        let _ = req.parse();
    }
});
