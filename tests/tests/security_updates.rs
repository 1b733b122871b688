//! Automatic security updates through the `firmup-device` agent against a
//! real `firmup-server` process: a release signed as a security fix is
//! installed without anyone's consent by default; with the owner's opt-out
//! (or a postponement) stored in the agent's state directory it is not
//! installed, and the server counts the owner's choice for the release.
//! The check answer's end of security support is shown by `check` and
//! `status`. A yanked security release is installed by version
//! (`update --version`) when the owner asks for it.

use std::path::Path;
use std::process::{Command, Output};

use firmup_fixtures::{ReleaseBuilder, RootBuilder};
use firmup_tests::proxy::Proxy;
use firmup_tests::{Server, bin};
use reqwest::Method;
use serde_json::Value;

struct World {
    dir: tempfile::TempDir,
    server: Server,
    device_token: String,
    root: std::path::PathBuf,
}

/// Catalogue, a registered device, and a published security release 2.1.0
/// fixing CVE-2026-1001.
fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.v1.json");
    std::fs::write(&root, RootBuilder::standard().build()).unwrap();
    // One device makes many requests in a few seconds here: no per-token
    // rate limit, so every report is delivered in the cycle that made it.
    let server = Server::start_with(dir.path(), &root, &[("FIRMUP_TOKEN_RATE_PER_SEC", "0")]);
    let device_token = server.seed_encoder_device("SN-0001");
    let release = ReleaseBuilder::standard()
        .security(&["CVE-2026-1001"])
        .build();
    let releng = server.cli_token("release_engineer", None);
    server.publish(&releng, "encoders", &release.image, &release.envelope);
    World {
        dir,
        server,
        device_token,
        root,
    }
}

fn agent(state_dir: &Path, args: &[&str]) -> Output {
    Command::new(bin("firmup-device", "firmup-device"))
        .arg("--state-dir")
        .arg(state_dir)
        .args(args)
        .env_remove("FIRMUP_DEVICE_TOKEN")
        .output()
        .expect("firmup-device runs")
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// Provisions the device at 2.0.0 against `server` (the world's server, or
/// a proxy in front of it).
fn provision(w: &World, server: &str) -> std::path::PathBuf {
    let dev = w.dir.path().join("device");
    let out = agent(
        &dev,
        &[
            "provision",
            "--server",
            server,
            "--serial",
            "SN-0001",
            "--hw-id",
            "enc-4k-r2",
            "--product-line",
            "encoders",
            "--token",
            &w.device_token,
            "--root",
            w.root.to_str().unwrap(),
            "--version",
            "2.0.0",
            "--security-counter",
            "3",
        ],
    );
    assert!(ok(&out).contains("provisioned SN-0001 at 2.0.0"));
    dev
}

fn status(dev: &Path) -> Value {
    serde_json::from_str(&ok(&agent(dev, &["status", "--json"]))).unwrap()
}

/// The server's rollout summary of the security release.
fn summary(w: &World) -> Value {
    let (s, b) = w.server.json(
        Method::GET,
        "/v1/product-lines/encoders/releases/stable/2.1.0/reports",
        &w.server.admin,
        None,
    );
    assert_eq!(s, 200, "{b}");
    b
}

#[test]
fn a_security_release_is_installed_by_the_agent_without_consent() {
    let w = world();
    let dev = provision(&w, &w.server.url);
    assert_eq!(status(&dev)["security_updates"], "automatic");

    let out = ok(&agent(&dev, &["check"]));
    assert!(out.contains("update available: 2.1.0"), "{out}");
    assert!(
        out.contains("kind: security (severity high, CVE-2026-1001)"),
        "{out}"
    );
    assert!(
        out.contains("automatic security updates are on: it installs without asking"),
        "{out}"
    );
    assert!(out.contains("security support ends: "), "{out}");

    let out = ok(&agent(&dev, &["update"]));
    assert!(
        out.contains("security update available: 2.1.0 (security release, severity high"),
        "{out}"
    );
    assert!(out.contains("installed 2.1.0 on slot b"), "{out}");
    let st = status(&dev);
    assert_eq!(st["version"], "2.1.0");
    assert_eq!(st["queued_reports"], 0);
    // What the last check said about the end of support, for `status`.
    let ends = st["security_support"]["ends"].as_str().unwrap();
    assert_eq!(ends.len(), 10, "a day: {ends}");
    let text = ok(&agent(&dev, &["status"]));
    assert!(
        text.contains(&format!("security support ends: {ends}")),
        "{text}"
    );

    let sum = summary(&w);
    assert_eq!(sum["installed"], 1, "{sum}");
    assert_eq!(sum["opted_out"], 0, "{sum}");
}

#[test]
fn with_the_opt_out_set_the_agent_does_not_install_it_and_the_server_has_the_opted_out_report() {
    let w = world();
    // A pass-through proxy counts what the agent sends.
    let proxy = Proxy::start(&w.server.url, 0, Vec::new());
    let dev = provision(&w, &proxy.url());
    let out = ok(&agent(&dev, &["security-updates", "off"]));
    assert!(out.contains("security updates: off"), "{out}");
    assert_eq!(status(&dev)["security_updates"], "opted_out");

    let out = ok(&agent(&dev, &["update"]));
    assert!(
        out.contains("security update 2.1.0 not installed: automatic security updates are off"),
        "{out}"
    );
    // More polls change nothing, and the choice is reported once.
    let out = ok(&agent(
        &dev,
        &["run", "--max-cycles", "2", "--max-sleep-secs", "0"],
    ));
    let held_back = "security update 2.1.0 not installed";
    assert_eq!(out.matches(held_back).count(), 2, "{out}");
    // Three checks and one report: wait until the proxy logged them all.
    let log = proxy.wait_logged(4);
    let posts = |path: &str| {
        log.iter()
            .filter(|c| c.method == "POST" && c.path.ends_with(path))
            .count()
    };
    assert_eq!(posts("/v1/device/check"), 3);
    assert_eq!(posts("/v1/device/reports"), 1);
    assert_eq!(
        log.iter().filter(|c| c.method == "GET").count(),
        0,
        "no image was downloaded"
    );
    let st = status(&dev);
    assert_eq!(st["version"], "2.0.0");
    assert_eq!(st["active_slot"], "a");
    assert_eq!(st["queued_reports"], 0, "the choice was delivered");

    let sum = summary(&w);
    assert_eq!(sum["opted_out"], 1, "{sum}");
    assert_eq!(sum["postponed"], 0, "{sum}");
    assert_eq!(sum["installed"], 0, "{sum}");
    assert_eq!(sum["in_progress"], 0, "nothing was downloaded: {sum}");

    // Postponed to a day ahead: still not installed, and the server now
    // counts the postponement (the latest choice wins).
    let out = ok(&agent(
        &dev,
        &["security-updates", "postpone", "2999-01-01"],
    ));
    assert!(
        out.contains("postponed until 2999-01-01T00:00:00Z"),
        "{out}"
    );
    let out = ok(&agent(&dev, &["update"]));
    assert!(
        out.contains("security update 2.1.0 postponed until 2999-01-01T00:00:00Z"),
        "{out}"
    );
    let sum = summary(&w);
    assert_eq!(
        (sum["opted_out"].as_i64(), sum["postponed"].as_i64()),
        (Some(0), Some(1)),
        "{sum}"
    );
    assert_eq!(status(&dev)["version"], "2.0.0");

    // Back to automatic: the next cycle installs it.
    ok(&agent(&dev, &["security-updates", "auto"]));
    let out = ok(&agent(&dev, &["update"]));
    assert!(out.contains("installed 2.1.0 on slot b"), "{out}");
    let st = status(&dev);
    assert_eq!(
        (st["version"].as_str(), st["queued_reports"].as_u64()),
        (Some("2.1.0"), Some(0)),
        "{st}"
    );
    let sum = summary(&w);
    assert_eq!(sum["installed"], 1, "{sum}");
}

#[test]
fn a_yanked_security_release_is_installed_by_version_when_the_owner_asks_for_it() {
    let w = world();
    let (s, b) = w.server.json(
        Method::POST,
        "/v1/product-lines/encoders/releases/stable/2.1.0/yank",
        &w.server.admin,
        Some(&serde_json::json!({ "reason": "regression on another board" })),
    );
    assert_eq!(s, 200, "{b}");
    let dev = provision(&w, &w.server.url);

    // Yanked, it is no longer offered.
    let out = ok(&agent(&dev, &["update"]));
    assert!(out.contains("up to date"), "{out}");
    assert_eq!(status(&dev)["version"], "2.0.0");

    // Asked for by version, it is fetched, verified and installed.
    let out = ok(&agent(&dev, &["update", "--version", "2.1.0"]));
    assert!(
        out.contains("fetched 2.1.0 (security release, withdrawn from offers)"),
        "{out}"
    );
    assert!(out.contains("installed 2.1.0 on slot b"), "{out}");
    assert_eq!(status(&dev)["version"], "2.1.0");

    // A version that does not exist is the server's refusal, nothing else.
    let out = agent(&dev, &["update", "--version", "9.9.9"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unknown_release"), "{err}");
    assert_eq!(status(&dev)["version"], "2.1.0");
}
