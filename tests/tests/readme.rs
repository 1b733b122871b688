//! The README's shell blocks, run as written, in order, in one shell, in a
//! temporary directory, without `$USER`: the walkthroughs from keys to a
//! verified release, from a server to a device's check and download, the
//! operator's commands, the device agent, the repair desk, staged
//! rollouts, data-protection requests and security support. If the README drifts from
//! what the tools do, this fails.
//!
//! What the test changes, and why (nothing else is touched):
//! - `cargo build --release ...` is left out and `target/release` on the
//!   `PATH` becomes this build's binaries: the suite has built them already,
//!   and a release build would take minutes more;
//! - `/tmp/firmup-demo` becomes a fresh temporary directory, and the
//!   walkthrough's port 8080 a free port (`FIRMUP_LISTEN` for the server, the
//!   same address in the commands), so runs never meet each other;
//! - on the suite's PostgreSQL run, `FIRMUP_DATABASE_URL` is exported with
//!   a fresh database, as the README says an operator may do
//!   (`firmup_fixtures::database`), and on its Garage run
//!   `FIRMUP_STORAGE_URL` with a fresh prefix in the test bucket
//!   (`firmup_fixtures::storage`).
//!
//! Blocks in other sections are not run; [`NOT_RUN`] names those sections
//! and why, and a block in a section that is in neither list fails the test.

use std::path::Path;
use std::process::Command;

use firmup_tests::{bin, free_port};

/// Sections whose blocks run, in README order.
const RUN: &[&str] = &[
    "Walkthrough: from keys to a verified release",
    "Walkthrough: serve a release to a device",
    "Operating the server",
    "Running the agent against a local server",
    "Repair desk",
    "Staged rollouts",
    "Data-protection requests",
    "Security support",
];

/// Sections whose blocks are not run here, with the reason.
const NOT_RUN: &[(&str, &str)] = &[
    (
        "The two commands",
        "the suite itself, and the server the walkthrough starts",
    ),
    (
        "Fuzzing and soak",
        "minutes-long runs with scripts of their own",
    ),
    ("Benchmarks", "measurements, with scripts of their own"),
    (
        "Running at scale: PostgreSQL, S3 and replicas",
        "needs a PostgreSQL server and an object store; the suite's PostgreSQL + Garage \
         run runs the walkthroughs with FIRMUP_DATABASE_URL and FIRMUP_STORAGE_URL set, \
         and the storage and end-to-end suites cover redirects",
    ),
];

/// The `sh` blocks of a Markdown text with the heading they are under.
fn sh_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut heading = String::new();
    let mut current: Option<String> = None;
    for line in markdown.lines() {
        match &mut current {
            Some(block) if line.trim_start().starts_with("```") => {
                blocks.push((heading.clone(), std::mem::take(block)));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None if line.trim_start() == "```sh" => current = Some(String::new()),
            None if line.starts_with('#') => {
                heading = line.trim_start_matches('#').trim().to_owned();
            }
            None => {}
        }
    }
    blocks
}

#[test]
fn every_sh_block_is_run_or_has_a_reason_not_to_be() {
    let readme = std::fs::read_to_string(readme_path()).unwrap();
    let blocks = sh_blocks(&readme);
    assert!(blocks.len() >= 15, "found only {} sh blocks", blocks.len());
    for (heading, _) in &blocks {
        assert!(
            RUN.contains(&heading.as_str()) || NOT_RUN.iter().any(|(h, _)| h == heading),
            "the README section {heading:?} has a sh block that this test neither runs nor \
             names in NOT_RUN"
        );
    }
}

fn readme_path() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md")
}

#[test]
fn the_readme_runs_as_written() {
    let readme = std::fs::read_to_string(readme_path()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let demo = dir.path().join("firmup-demo");
    let port = free_port();
    let bin_dir = bin("firmup-server", "firmup-server")
        .parent()
        .unwrap()
        .to_path_buf();
    // The other two tools must have been built alongside.
    bin("firmup-signer", "firmup-signer");
    bin("firmup-device", "firmup-device");

    let mut script = String::from(
        "set -uo pipefail\n\
         # Every failing command is named on stderr; the test compares the list\n\
         # with the one failure the README shows on purpose.\n\
         trap 'echo \"README-FAILED[$?]: $BASH_COMMAND\" >&2' ERR\n\
         trap 'kill $(jobs -p) 2>/dev/null; wait 2>/dev/null' EXIT\n",
    );
    let mut ran = 0;
    for (heading, block) in sh_blocks(&readme) {
        if !RUN.contains(&heading.as_str()) {
            continue;
        }
        ran += 1;
        script.push_str(&format!("\necho '=== {heading}'\n"));
        for line in block.lines() {
            if line.starts_with("cargo build --release") {
                continue;
            }
            let line = line
                .replace("$PWD/target/release", &bin_dir.display().to_string())
                .replace("/tmp/firmup-demo", &demo.display().to_string())
                .replace("127.0.0.1:8080", &format!("127.0.0.1:{port}"));
            script.push_str(&line);
            script.push('\n');
        }
    }
    assert!(ran >= 12, "ran only {ran} blocks");

    let mut bash = Command::new("bash");
    bash.arg("-c")
        .arg(&script)
        .current_dir(dir.path())
        .env_remove("USER")
        .env_remove("LOGNAME");
    for (key, _) in std::env::vars().filter(|(k, _)| k.starts_with("FIRMUP_")) {
        bash.env_remove(key);
    }
    if let Some(url) = firmup_fixtures::database::fresh_url() {
        bash.env("FIRMUP_DATABASE_URL", url);
    }
    if let Some(url) = firmup_fixtures::storage::fresh_url() {
        bash.env("FIRMUP_STORAGE_URL", url);
    }
    let out = bash
        .env("FIRMUP_LISTEN", format!("127.0.0.1:{port}"))
        .output()
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let report = format!("--- stdout\n{stdout}\n--- stderr\n{stderr}");

    // The one failure the README shows: the tampered image is refused.
    let failures: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("README-FAILED"))
        .collect();
    assert_eq!(failures.len(), 1, "{failures:#?}\n{report}");
    assert!(
        failures[0].starts_with("README-FAILED[1]: firmup-signer verify"),
        "{failures:#?}\n{report}"
    );

    // What the README says each step prints.
    for expected in [
        "OK: encoders 2.1.0 (channel stable, manifest_version 7, security_counter 3)",
        "root version 2",
        "REJECTED (image_hash_mismatch)",
        "published encoders 2.2.0 (stable)",
        "\"status\": \"update_available\"",
        "\"version\": \"2.2.0\"",
        "\"code\": \"in_production\"",
    ] {
        assert!(
            stdout.contains(expected) || stderr.contains(expected),
            "the README says {expected:?} appears\n{report}"
        );
    }
    // `sha256sum download.bin fw-2.2.0.bin`: identical.
    let sums: Vec<&str> = stdout
        .lines()
        .filter(|l| l.ends_with("  download.bin") || l.ends_with("  fw-2.2.0.bin"))
        .map(|l| l.split_whitespace().next().unwrap())
        .collect();
    assert_eq!(sums.len(), 2, "{report}");
    assert_eq!(sums[0], sums[1], "the download differs\n{report}");
    // The operator's bulk import wrote the new device's token.
    assert!(
        std::fs::read_to_string(demo.join("device-tokens.csv"))
            .unwrap()
            .contains("SN-1001,"),
        "{report}"
    );
    // The device agent installed and committed the release.
    assert!(stdout.contains("2.2.0"), "{report}");
    // The repair desk: not entitled after the EOL, offered by the push,
    // installed, and the push done.
    for expected in [
        "not entitled (eol_no_contract)",
        "next check: not_entitled 2.3.0",
        "release: 2.3.0 not entitled (eol_no_contract)",
        "published encoders 2.3.0 (stable)",
        " covered (",
        " bench-notes.txt (text/plain, 37 bytes) by bench-2 at ",
        "pushed: push_",
        "update available: 2.3.0",
        "entitlement (repair_grant)",
        "version: 2.3.0",
        "root.v2.json\nfw-2.3.0.bin",
    ] {
        assert!(
            stdout.contains(expected),
            "the README says {expected:?} appears\n{report}"
        );
    }
    // Staged rollouts: published with its rollout, paused by three
    // failures in its first phase.
    for expected in [
        "published encoders 2.4.0 (stable)\nrollout ro_",
        " running: phase 1/2 (50%)",
        "state: paused\n",
        "paused reason: failure rate 100.0% (3 of 3 installs failed or rolled back) is over the threshold of 20% in phase 1",
    ] {
        assert!(
            stdout.contains(expected),
            "the README says {expected:?} appears\n{report}"
        );
    }
    // Data-protection requests: exported, refused while the RMA is open,
    // erased once, then recognised; the RMA keeps the pseudonym only.
    for expected in [
        "exported 1 unit(s) to ana.json",
        "SN-0002: 1 RMA, ",
        "contact corrected on 1 RMA(s) of SN-0002",
        "refused (409 rma_open)",
        "erased SN-0002: now erased-",
        "nothing changed",
        "refused (404 unknown_serial)",
        "unit: erased-",
        "customer: [erased] <[erased]>",
        "SN-0001: processing restricted since ",
        "pruned: 0 reports, ",
    ] {
        assert!(
            stdout.contains(expected) || stderr.contains(expected),
            "the README says {expected:?} appears\n{report}"
        );
    }
    // Security support: the discontinued model's new unit is offered the
    // security fix (security_support), the owner's opt-out is counted, the
    // fix installs once automatic updates are back on, and the feature
    // release is refused (eol_no_contract); yanked, the fix cannot be
    // deleted and is still fetched by version.
    let security = stdout
        .split_once("=== Security support")
        .map(|(_, s)| s)
        .unwrap_or_default();
    for expected in [
        "security support runs until ",
        "published encoders 2.5.0 (stable)",
        "published encoders 2.6.0 (stable)",
        "update available: 2.5.0 (channel stable, manifest_version 11,",
        "entitlement (security_support): Free security update",
        "kind: security (severity high, CVE-2026-41001)",
        "security update 2.5.0 not installed: automatic security updates are off",
        "\"opted_out\": 1",
        "wrote 2.5.0 to slot ",
        "not entitled (eol_no_contract)",
        "\"code\":\"retention_active\"",
        "{\"version\":\"2.5.0\",\"yanked\":true,\"code\":\"security_support\"}",
    ] {
        assert!(
            security.contains(expected),
            "the README says {expected:?} appears\n{report}"
        );
    }
    let rma = format!("RMA-{}-000001", time::OffsetDateTime::now_utc().year());
    assert!(stdout.lines().any(|l| l == rma), "{report}");
    assert!(stdout.lines().any(|l| l == "done"), "{report}");
    assert!(out.status.success(), "{report}");
}
