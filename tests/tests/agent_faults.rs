//! Fault injection against the real agent: a real `firmup-server` process
//! with a signed 4 MiB release, and the `firmup-device` binary provisioned
//! with the fault-injecting proxy's URL as its server, so every request the
//! agent makes (check, reports, image) crosses the proxy. Each test scripts
//! one fault on the image (or check) requests and asserts what the agent
//! did (exit code, the typed error code it prints, installed message) and
//! what the device holds afterwards (`firmup-device status --json` and the
//! slot files): either exactly the signed image committed on slot B, or the
//! current slot untouched, the committed version, counter and manifest
//! version unchanged, and nothing pending.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use firmup_client::Sha256Digest;
use firmup_fixtures::{ReleaseBuilder, RootBuilder, SignedRelease};
use firmup_tests::proxy::{At, ConnLog, Plan, Proxy};
use firmup_tests::{Server, bin};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const MIB: u64 = 1024 * 1024;
const IMAGE_LEN: u64 = 4 * MIB;
const CHECK_PATH: &str = "/v1/device/check";
const IMAGES_PATH: &str = "/v1/images/";
/// What `provision` writes into slot A.
const FACTORY_SLOT_A: &[u8] = b"factory firmware 2.0.0\n";

// ------------------------------------------------------------------ world

struct World {
    dir: tempfile::TempDir,
    server: Server,
    device_token: String,
    root: PathBuf,
    release: SignedRelease,
}

/// Catalogue, a registered device and a published, signed 4 MiB 2.1.0
/// release (manifest_version 7).
fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.v1.json");
    std::fs::write(&root, RootBuilder::standard().build()).unwrap();
    let server = Server::start(dir.path(), &root);
    let device_token = server.seed_encoder_device("SN-0001");

    let mut builder = ReleaseBuilder::standard();
    builder.image_len = IMAGE_LEN;
    let release = builder.build();
    assert_eq!(release.manifest.images[0].length, IMAGE_LEN);
    let releng = server.cli_token("release_engineer", None);
    assert!(
        server.publish(&releng, "encoders", &release.image, &release.envelope),
        "the image is new to this server"
    );
    World {
        dir,
        server,
        device_token,
        root,
        release,
    }
}

// ----------------------------------------------------------------- device

fn agent(state_dir: &Path, args: &[&str]) -> Output {
    Command::new(bin("firmup-device", "firmup-device"))
        .arg("--state-dir")
        .arg(state_dir)
        .args(args)
        .env_remove("FIRMUP_DEVICE_TOKEN")
        .output()
        .expect("firmup-device runs")
}

fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn ok(out: &Output) -> String {
    let (stdout, stderr) = text(out);
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {stdout}\nstderr: {stderr}",
        out.status.code()
    );
    stdout
}

/// The agent failed with exit code `code` and printed the typed error
/// `error_code` (`error (<code>): ...` on stderr).
fn assert_refused(out: &Output, code: i32, error_code: &str) {
    let (stdout, stderr) = text(out);
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert!(
        stderr.contains(&format!("error ({error_code}):")),
        "expected {error_code}\nstdout: {stdout}\nstderr: {stderr}"
    );
    assert!(!stdout.contains("installed"), "{stdout}");
}

/// A device provisioned at 2.0.0 (counter 3, slot A) whose server is the
/// proxy.
fn provision(w: &World, proxy: &Proxy) -> PathBuf {
    let dev = w.dir.path().join("device");
    let out = agent(
        &dev,
        &[
            "provision",
            "--server",
            &proxy.url(),
            "--serial",
            "SN-0001",
            "--hw-id",
            "enc-4k-r2",
            "--product-line",
            "encoders",
            "--channel",
            "stable",
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
    assert_factory(&dev);
    dev
}

fn status(dev: &Path) -> Value {
    serde_json::from_str(&ok(&agent(dev, &["status", "--json"]))).unwrap()
}

fn slot(dev: &Path, name: &str) -> PathBuf {
    dev.join("slots").join(format!("slot-{name}.img"))
}

fn sha256_file(path: &Path) -> (u64, Sha256Digest) {
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = Sha256::new();
    let n = std::io::copy(&mut f, &mut h).unwrap();
    (n, Sha256Digest(h.finalize().into()))
}

/// The device is as provisioned: 2.0.0, counter 3, no manifest accepted,
/// slot A committed and running with the factory image, nothing pending.
fn assert_factory(dev: &Path) {
    let st = status(dev);
    assert_eq!(st["version"], "2.0.0", "{st}");
    assert_eq!(st["security_counter"], 3, "{st}");
    assert_eq!(st["manifest_versions"], json!({}), "{st}");
    assert_eq!(st["active_slot"], "a", "{st}");
    assert_eq!(st["running_slot"], "a", "{st}");
    assert_eq!(st["pending_slot"], Value::Null, "{st}");
    assert_eq!(st["pending"], Value::Null, "{st}");
    assert_eq!(std::fs::read(slot(dev, "a")).unwrap(), FACTORY_SLOT_A);
}

/// The device committed 2.1.0 on slot B, and slot B holds exactly the
/// signed image (length and sha256 of the manifest's image entry); slot A
/// still holds the factory image as the fallback.
fn assert_installed(w: &World, dev: &Path) {
    let st = status(dev);
    let m = &w.release.manifest;
    assert_eq!(st["version"], "2.1.0", "{st}");
    assert_eq!(st["security_counter"], m.security_counter, "{st}");
    assert_eq!(
        st["manifest_versions"]["stable"], m.manifest_version,
        "{st}"
    );
    assert_eq!(st["active_slot"], "b", "{st}");
    assert_eq!(st["running_slot"], "b", "{st}");
    assert_eq!(st["pending_slot"], Value::Null, "{st}");
    assert_eq!(st["pending"], Value::Null, "{st}");
    let spec = &m.images[0];
    assert_eq!(spec.sha256, Sha256Digest::of(&w.release.image));
    assert_eq!(sha256_file(&slot(dev, "b")), (spec.length, spec.sha256));
    assert_eq!(std::fs::read(slot(dev, "a")).unwrap(), FACTORY_SLOT_A);
}

/// Runs `update` and expects the signed image committed on slot B.
fn update_installs(w: &World, dev: &Path) {
    let out = ok(&agent(dev, &["update"]));
    assert!(
        out.contains("installed 2.1.0 on slot b (committed)"),
        "{out}"
    );
    assert_installed(w, dev);
}

/// Files left in the agent's download directory.
fn work_files(dev: &Path) -> Vec<String> {
    match std::fs::read_dir(dev.join("work")) {
        Ok(rd) => rd
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// The image requests, in connection order, once `n` of them have
/// finished on the proxy's side (which may be a little after the agent
/// has exited).
fn image_log(proxy: &Proxy, n: usize) -> Vec<ConnLog> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let mut log: Vec<_> = proxy
            .log()
            .into_iter()
            .filter(|c| c.path.starts_with(IMAGES_PATH))
            .collect();
        if log.len() >= n || std::time::Instant::now() > deadline {
            log.sort_by_key(|c| c.index);
            assert_eq!(log.len(), n, "image requests seen by the proxy: {log:?}");
            return log;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
}

/// Each image request resumed exactly where the bytes forwarded so far
/// ended, and together they carried the image once.
fn assert_resumes_exactly(log: &[ConnLog]) {
    let mut had = 0;
    for c in log {
        assert_eq!(
            c.range.as_deref(),
            Some(format!("bytes={had}-").as_str()),
            "{log:?}"
        );
        assert_eq!(c.status, 206, "{log:?}");
        had += c.forwarded;
    }
    assert_eq!(had, IMAGE_LEN, "{log:?}");
}

// ------------------------------------------------------------------ tests

#[test]
fn agent_survives_cut_connections() {
    let w = world();
    let proxy = Proxy::start_on_path(
        &w.server.url,
        0xa6_0001,
        IMAGES_PATH,
        vec![Plan::pass().cut(At::Random); 3],
    );
    let dev = provision(&w, &proxy);
    update_installs(&w, &dev);

    let log = image_log(&proxy, 4);
    assert!(log[..3].iter().all(|c| c.cut_at.is_some()), "{log:?}");
    assert!(log[3].cut_at.is_none(), "{log:?}");
    assert_resumes_exactly(&log);
    assert_eq!(proxy.bytes_for(IMAGES_PATH), IMAGE_LEN);
}

#[test]
fn agent_refuses_tampered_image() {
    let w = world();
    let proxy = Proxy::start_on_path(
        &w.server.url,
        0xa6_0002,
        IMAGES_PATH,
        vec![Plan::pass().flip(At::Random)],
    );
    let dev = provision(&w, &proxy);
    let out = agent(&dev, &["update"]);
    assert_refused(&out, 1, "image_hash_mismatch");

    // One request: a hash mismatch is not retried.
    let log = image_log(&proxy, 1);
    assert!(log[0].flipped_at.is_some(), "{log:?}");
    assert_eq!(log[0].forwarded, IMAGE_LEN);
    // Slot A intact, nothing pending, and no bytes of the tampered image
    // kept for a later run to resume from.
    assert_factory(&dev);
    assert_eq!(work_files(&dev), Vec::<String>::new());
    assert!(
        !slot(&dev, "b").exists(),
        "the tampered bytes were removed from slot b"
    );
}

#[test]
fn agent_restarts_range_answered_with_200_instead_of_appending() {
    let w = world();
    let proxy = Proxy::start_on_path(
        &w.server.url,
        0xa6_0003,
        IMAGES_PATH,
        vec![
            Plan::pass().cut(At::Fixed(3 * MIB)),
            Plan::pass().drop_range(),
        ],
    );
    let dev = provision(&w, &proxy);
    update_installs(&w, &dev);

    let log = image_log(&proxy, 2);
    assert_eq!(log[0].cut_at, Some(3 * MIB), "{log:?}");
    // The resume asked for the rest, got the whole image with a 200, and
    // the slot holds the image, not 3 MiB of it followed by all of it.
    let resume = format!("bytes={}-", 3 * MIB);
    assert_eq!(log[1].range.as_deref(), Some(resume.as_str()), "{log:?}");
    assert_eq!(log[1].status, 200, "{log:?}");
    assert_eq!(log[1].forwarded, IMAGE_LEN, "{log:?}");
}

#[test]
fn agent_refuses_wrong_content_range() {
    let w = world();
    let proxy = Proxy::start_on_path(
        &w.server.url,
        0xa6_0004,
        IMAGES_PATH,
        vec![
            Plan::pass().cut(At::Random),
            Plan::pass().shift_content_range(-4096),
            Plan::pass().shift_content_range(1),
        ],
    );
    let dev = provision(&w, &proxy);
    // Two misplaced ranges in a row: the downloader gives up with
    // range_mismatch, which is "try again later" (exit 4).
    let out = agent(&dev, &["update"]);
    assert_refused(&out, 4, "range_mismatch");
    let log = image_log(&proxy, 3);
    let had = log[0].cut_at.expect("first connection cut");
    assert!(had > 0 && had < IMAGE_LEN);
    let resume = format!("bytes={had}-");
    for c in &log[1..] {
        assert_eq!(c.range.as_deref(), Some(resume.as_str()), "{log:?}");
    }
    // Nothing of the misplaced bodies was kept: the image streams into the
    // inactive slot (never marked bootable), which holds exactly the
    // image's first `had` bytes, and no copy is kept in the work directory.
    assert_eq!(work_files(&dev), Vec::<String>::new());
    let partial = std::fs::read(slot(&dev, "b")).unwrap();
    assert!(
        partial == w.release.image[..had as usize],
        "slot b ({} bytes) is not the image's first {had} bytes",
        partial.len()
    );
    assert_factory(&dev);

    // The next run resumes the same partial file from where the good bytes
    // ended and installs exactly the signed image.
    update_installs(&w, &dev);
    let log = image_log(&proxy, 4);
    assert_eq!(log[3].range.as_deref(), Some(resume.as_str()), "{log:?}");
    assert_eq!(log[3].forwarded, IMAGE_LEN - had, "{log:?}");
}

#[test]
fn agent_refuses_older_manifest() {
    let w = world();
    let proxy = Proxy::start(&w.server.url, 0xa6_0005, Vec::new());
    let dev = provision(&w, &proxy);
    // The device first takes 2.1.0 (manifest_version 7) honestly, so it
    // has a manifest_version that an older signed manifest is below.
    update_installs(&w, &dev);
    let without_reports = |mut st: Value| {
        st.as_object_mut().unwrap().remove("queued_reports");
        st
    };
    let before = without_reports(status(&dev));
    let image_bytes = proxy.bytes_for(IMAGES_PATH);
    assert_eq!(image_bytes, IMAGE_LEN);
    let seen = proxy.log().len();

    // A genuine update_available answer, with its manifest swapped for an
    // older release that is properly signed (manifest_version 5).
    let (s, mut replay) = w.server.json(
        Method::POST,
        CHECK_PATH,
        &w.device_token,
        Some(
            &json!({ "serial": "SN-0001", "hw_id": "enc-4k-r2", "current_version": "2.0.0",
                      "security_counter": 3, "channel": "stable", "root_version": 1,
                      "manifest_version": 0 }),
        ),
    );
    assert_eq!(s, 200, "{replay}");
    assert_eq!(replay["status"], "update_available", "{replay}");
    let mut older = ReleaseBuilder::standard();
    older.manifest.manifest_version = 5;
    older.image_len = IMAGE_LEN;
    let older = older.build();
    replay["update"]["manifest"] = serde_json::from_slice(&older.envelope).unwrap();
    proxy.replace_body(CHECK_PATH, serde_json::to_vec(&replay).unwrap());

    let out = agent(&dev, &["update"]);
    assert_refused(&out, 1, "manifest_replay");
    let (_, stderr) = text(&out);
    assert!(stderr.contains('7') && stderr.contains('5'), "{stderr}");

    // The check was answered with the replay; no image was requested.
    let mut log = proxy.log();
    log.sort_by_key(|c| c.index);
    let after: Vec<_> = log.iter().filter(|c| c.index >= seen).collect();
    assert!(
        after.iter().any(|c| c.path == CHECK_PATH),
        "the check went through the proxy: {after:?}"
    );
    assert!(
        after.iter().all(|c| !c.path.starts_with(IMAGES_PATH)),
        "no image requested: {after:?}"
    );
    assert_eq!(proxy.bytes_for(IMAGES_PATH), image_bytes);

    // The running slot and everything committed are untouched.
    assert_eq!(without_reports(status(&dev)), before);
    assert_installed(&w, &dev);
}
