//! The download route's Range and If-Range handling: never panics, and a
//! planned range always lies inside the image.
#![no_main]

use firmup_server::controllers::images::download::{RangePlan, plan_range};
use http::{HeaderMap, HeaderValue, header};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 9 {
        return;
    }
    let len = u64::from_le_bytes(data[..8].try_into().expect("8 bytes")) % (1 << 40);
    let if_range = data[8] & 1 == 1;
    let mut headers = HeaderMap::new();
    for part in data[9..].split(|b| *b == b'\n') {
        if let Ok(v) = HeaderValue::from_bytes(part) {
            headers.append(header::RANGE, v);
        }
    }
    if if_range {
        headers.insert(header::IF_RANGE, HeaderValue::from_static("\"etag\""));
    }
    if let Ok(RangePlan::Partial { start, end }) = plan_range(&headers, len, "\"etag\"") {
        assert!(start <= end && end < len, "{start}-{end} of {len}");
    }
});
