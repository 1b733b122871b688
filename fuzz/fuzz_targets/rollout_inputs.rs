//! What release engineers type into rollouts and groups: phases, group
//! filters and maintenance windows never panic, whatever the text, and a
//! parsed filter or window can always be judged.
#![no_main]

use firmup_server::domain::group::{Subject, parse_filter};
use firmup_server::domain::rollout::parse_phases_text;
use firmup_server::domain::window::{Window, WindowSpec};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_phases_text(text);
    if let Ok(filter) = parse_filter(text) {
        let tags = vec!["studio".to_string()];
        let version = semver::Version::new(2, 1, 0);
        let _ = filter.matches(&Subject {
            model: "E4K",
            hw_id: "enc-4k-r2",
            channel: "stable",
            region: Some("EU"),
            tags: &tags,
            version: Some(&version),
        });
    }
    if let Ok(spec) = serde_json::from_str::<WindowSpec>(text)
        && let Ok(window) = Window::parse(spec)
    {
        let now = time::OffsetDateTime::from_unix_timestamp(1_795_000_000).unwrap();
        let _ = window.next_opening(now);
        let _ = window.is_open(now);
    }
});
