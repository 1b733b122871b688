//! The `firmup-device` agent against a real `firmup-server` process: an
//! operator sets up the catalogue and a device, a release engineer
//! publishes a signed release, and the agent provisions, checks, updates
//! into slot B (or rolls back when the health check fails), shows its
//! status and reports, which the server's report summary counts. Also the
//! offline bundle path without any server.

use std::path::Path;
use std::process::{Command, Output};

use firmup_fixtures::{ReleaseBuilder, RootBuilder, SignedRelease};
use firmup_tests::{Server, bin};
use reqwest::Method;
use serde_json::Value;

struct World {
    dir: tempfile::TempDir,
    server: Server,
    device_token: String,
    root: std::path::PathBuf,
}

/// Catalogue, a registered device, and a published 2.1.0 release
/// (security counter `counter`).
fn world(counter: u32) -> (World, SignedRelease) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.v1.json");
    std::fs::write(&root, RootBuilder::standard().build()).unwrap();
    let server = Server::start(dir.path(), &root);
    let device_token = server.seed_encoder_device("SN-0001");

    let mut builder = ReleaseBuilder::standard();
    builder.image_len = firmup_fixtures::images::MEDIUM;
    builder.manifest.security_counter = counter;
    let release = builder.build();
    let releng = server.cli_token("release_engineer", None);
    assert!(
        server.publish(&releng, "encoders", &release.image, &release.envelope),
        "the image is new to this server"
    );
    (
        World {
            dir,
            server,
            device_token,
            root,
        },
        release,
    )
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

fn provision(state_dir: &Path, server: &str, token: &str, root: &Path) {
    let out = agent(
        state_dir,
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
            "--channel",
            "stable",
            "--token",
            token,
            "--root",
            root.to_str().unwrap(),
            "--version",
            "2.0.0",
            "--security-counter",
            "3",
        ],
    );
    assert!(ok(&out).contains("provisioned SN-0001 at 2.0.0"));
}

fn status(state_dir: &Path) -> Value {
    serde_json::from_str(&ok(&agent(state_dir, &["status", "--json"]))).unwrap()
}

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
fn agent_provisions_checks_updates_to_slot_b_and_reports_installed() {
    let (w, release) = world(3);
    let dev = w.dir.path().join("device");
    provision(&dev, &w.server.url, &w.device_token, &w.root);
    let st = status(&dev);
    assert_eq!(
        (st["version"].as_str(), st["active_slot"].as_str()),
        (Some("2.0.0"), Some("a"))
    );

    let out = ok(&agent(&dev, &["check"]));
    assert!(out.contains("update available: 2.1.0"), "{out}");
    assert!(out.contains("entitlement (in_production)"), "{out}");

    let out = ok(&agent(&dev, &["update"]));
    assert!(out.contains("installed 2.1.0 on slot b"), "{out}");
    assert_eq!(
        std::fs::read(dev.join("slots/slot-b.img")).unwrap(),
        release.image
    );

    let st = status(&dev);
    assert_eq!(st["version"], "2.1.0");
    assert_eq!(st["active_slot"], "b");
    assert_eq!(st["running_slot"], "b");
    assert_eq!(st["manifest_versions"]["stable"], 7);
    assert_eq!(st["pending"], Value::Null);
    assert_eq!(st["queued_reports"], 0);
    let text = ok(&agent(&dev, &["status"]));
    assert!(
        text.contains("version: 2.1.0") && text.contains("slot: b"),
        "{text}"
    );

    let sum = summary(&w);
    assert_eq!(sum["installed"], 1, "{sum}");
    assert_eq!(sum["failed"], 0, "{sum}");

    // The poll loop: nothing newer, two cycles, no waiting in the test.
    let out = ok(&agent(
        &dev,
        &["run", "--max-cycles", "2", "--max-sleep-secs", "0"],
    ));
    assert_eq!(out.matches("up to date").count(), 2, "{out}");
    // The server recorded the new running version.
    let (_, device) = w
        .server
        .json(Method::GET, "/v1/devices/SN-0001", &w.server.admin, None);
    assert_eq!(device["current_version"], "2.1.0", "{device}");
}

#[test]
fn failed_health_check_rolls_back_keeps_slot_a_and_reports_rolled_back() {
    let (w, _release) = world(5);
    let dev = w.dir.path().join("device");
    provision(&dev, &w.server.url, &w.device_token, &w.root);
    std::fs::write(dev.join("unhealthy"), b"").unwrap();

    let out = agent(&dev, &["update"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("health_check_failed"),
        "{out:?}"
    );
    let st = status(&dev);
    assert_eq!(st["version"], "2.0.0");
    assert_eq!(st["security_counter"], 3, "the counter did not move");
    assert_eq!(st["active_slot"], "a");
    assert_eq!(st["running_slot"], "a");
    let sum = summary(&w);
    assert_eq!(sum["rolled_back"], 1, "{sum}");
    assert_eq!(sum["failures_by_reason"]["health_check_failed"], 1, "{sum}");
}

#[test]
fn offline_bundle_installs_without_a_server_and_queues_its_reports() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.v1.json");
    std::fs::write(&root, RootBuilder::standard().build()).unwrap();
    let release = ReleaseBuilder::standard().build();
    let bundle = dir.path().join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    std::fs::write(bundle.join("manifest.json"), &release.envelope).unwrap();
    std::fs::write(bundle.join("firmware.img"), &release.image).unwrap();

    let dev = dir.path().join("device");
    // Nothing listens on port 9 of loopback: the server is unreachable.
    provision(&dev, "http://127.0.0.1:9", "device-token", &root);
    let out = ok(&agent(
        &dev,
        &["install", "--bundle", bundle.to_str().unwrap()],
    ));
    assert!(out.contains("installed 2.1.0 on slot b"), "{out}");
    let st = status(&dev);
    assert_eq!(st["version"], "2.1.0");
    assert!(st["queued_reports"].as_u64().unwrap() >= 2, "{st}");

    // The same bundle again is refused: not newer than what runs.
    let out = agent(&dev, &["install", "--bundle", bundle.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("downgrade"),
        "{out:?}"
    );

    // An older release installs only with the bench technician's consent,
    // and never below the anti-rollback counter.
    let older = |version: &str, counter: u32| {
        let mut b = ReleaseBuilder::standard().version(version);
        b.manifest.manifest_version = 8;
        b.manifest.security_counter = counter;
        let r = b.build();
        let path = dir.path().join(format!("bundle-{version}"));
        std::fs::create_dir(&path).unwrap();
        std::fs::write(path.join("manifest.json"), &r.envelope).unwrap();
        std::fs::write(path.join("firmware.img"), &r.image).unwrap();
        path
    };
    let below_counter = older("2.0.4", 2);
    let out = agent(
        &dev,
        &[
            "install",
            "--bundle",
            below_counter.to_str().unwrap(),
            "--allow-downgrade",
        ],
    );
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("rollback"),
        "{out:?}"
    );
    let downgrade = older("2.0.5", 3);
    let out = agent(&dev, &["install", "--bundle", downgrade.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("downgrade"),
        "{out:?}"
    );
    let out = ok(&agent(
        &dev,
        &[
            "install",
            "--bundle",
            downgrade.to_str().unwrap(),
            "--allow-downgrade",
        ],
    ));
    assert!(out.contains("installed 2.0.5"), "{out}");
    let st = status(&dev);
    assert_eq!(st["version"], "2.0.5");
    assert_eq!(st["security_counter"], 3, "the counter never goes down");
    // Not provisioned: a local error.
    let out = agent(&dir.path().join("nowhere"), &["status"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}

#[test]
fn a_push_bundle_downloads_as_one_file_and_installs_offline_through_the_same_checks() {
    let (w, release) = world(3);
    let tech = w.server.cli_token("technician", None);
    let (code, rma) = w.server.json(
        Method::POST,
        "/v1/rmas",
        &tech,
        Some(&serde_json::json!({
            "serial": "SN-0001", "fault": "no video",
            "customer": { "name": "Ana Duarte", "email": "ana@example.com" },
        })),
    );
    assert_eq!(code, 201, "{rma}");
    let rma = rma["number"].as_str().unwrap().to_owned();
    let bundle_url = format!("{}/v1/devices/SN-0001/push/bundle", w.server.url);
    let get = |token: &str| {
        reqwest::blocking::Client::new()
            .get(&bundle_url)
            .bearer_auth(token)
            .send()
            .unwrap()
    };
    // No push, no bundle.
    let r = get(&tech);
    assert_eq!(r.status().as_u16(), 404);
    assert!(r.text().unwrap().contains("no_active_push"));
    let (code, push) = w.server.json(
        Method::POST,
        "/v1/devices/SN-0001/push",
        &tech,
        Some(&serde_json::json!({ "version": "2.1.0", "rma": rma, "reason": "bench flash" })),
    );
    assert_eq!(code, 201, "{push}");
    // Technicians download it; devices and release engineers may not.
    assert_eq!(get(&w.device_token).status().as_u16(), 403);
    let releng = w.server.cli_token("release_engineer", None);
    assert_eq!(get(&releng).status().as_u16(), 403);
    let r = get(&tech);
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/x-tar");
    let announced: u64 = r.headers()["content-length"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("firmup-bundle-SN-0001-2.1.0.tar")
    );
    let bytes = r.bytes().unwrap();
    assert_eq!(bytes.len() as u64, announced);
    let file = w.dir.path().join("bundle.tar");
    std::fs::write(&file, &bytes).unwrap();
    // The manifest exactly as signed, the root chain, the image.
    let mut names = Vec::new();
    let mut archive = tar::Archive::new(std::fs::File::open(&file).unwrap());
    for e in archive.entries().unwrap() {
        let mut e = e.unwrap();
        let name = e.path().unwrap().to_str().unwrap().to_owned();
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut e, &mut data).unwrap();
        match name.as_str() {
            "manifest.json" => assert_eq!(data, release.envelope),
            "root.v1.json" => assert_eq!(data, std::fs::read(&w.root).unwrap()),
            _ => assert_eq!(data, release.image, "{name}"),
        }
        names.push(name);
    }
    assert_eq!(names.len(), 3, "{names:?}");
    let (_, audit) = w
        .server
        .json(Method::GET, "/v1/admin/audit", &w.server.admin, None);
    assert!(
        audit
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "device.push_bundle"),
        "{audit}"
    );

    // A tampered copy is refused; the bundle as served installs with no
    // server reachable.
    let dev = w.dir.path().join("bench-device");
    provision(&dev, "http://127.0.0.1:9", "device-token", &w.root);
    let mut tampered = bytes.to_vec();
    let at = tampered.len() - 2048;
    tampered[at] ^= 1;
    let bad = w.dir.path().join("tampered.tar");
    std::fs::write(&bad, &tampered).unwrap();
    let out = agent(&dev, &["install", "--bundle", bad.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert_eq!(status(&dev)["version"], "2.0.0");
    let out = ok(&agent(
        &dev,
        &["install", "--bundle", file.to_str().unwrap()],
    ));
    assert!(out.contains("installed 2.1.0 on slot b"), "{out}");
    assert_eq!(status(&dev)["version"], "2.1.0");
    // Nothing unpacked is left in the state directory.
    assert!(std::fs::read_dir(&dev).unwrap().all(|e| {
        !e.unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with("bundle-")
    }));
    // A file that is not a bundle is a local error.
    let out = agent(&dev, &["install", "--bundle", w.root.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
}

#[test]
fn one_agent_per_state_directory_and_config_is_private() {
    let (w, _release) = world(3);
    let dev = w.dir.path().join("device");
    provision(&dev, &w.server.url, &w.device_token, &w.root);
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dev.join("config.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(
            mode & 0o077,
            0,
            "config.json holds the token: mode {mode:o}"
        );
    }
    // Another process holds the device: a second agent refuses, exit 3.
    let held = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dev.join("lock"))
        .unwrap();
    held.lock().unwrap();
    let out = agent(&dev, &["update"]);
    assert_eq!(
        out.status.code(),
        Some(3),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("another firmup-device"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    drop(held);
    // Released. A process another test forks at this instant holds a copy
    // of the descriptor (and so the lock) until it execs: retry briefly.
    let mut out = agent(&dev, &["update"]);
    for _ in 0..50 {
        if !String::from_utf8_lossy(&out.stderr).contains("another firmup-device") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
        out = agent(&dev, &["update"]);
    }
    let out = ok(&out);
    assert!(out.contains("installed 2.1.0 on slot b"), "{out}");
}
