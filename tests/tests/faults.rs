//! Fault injection end to end: a real `firmup-server` process, a signed
//! 32 MiB release published over HTTP, and the device library
//! (`Downloader` + `HttpTransport`, `verify_manifest`) talking to it through
//! the fault-injecting proxy of `firmup_tests::proxy`, which cuts, stalls,
//! answers a range with 200, misplaces a Content-Range, flips a byte or
//! replays an older manifest. Each test asserts the exact outcome: the
//! signed sha256 and length, or the typed error code and what is (not) left
//! on disk. Backoff waits go through a fake clock, so no test sleeps for
//! them.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use firmup_client::download::{DownloadStats, TimeSource};
use firmup_client::transport::{HttpConfig, HttpTransport, Transport};
use firmup_client::{
    Clock, Downloader, Error, ImageSpec, InstalledState, RetryPolicy, Sha256Digest, TrustedRoot,
    VerifyRequest, verify_manifest,
};
use firmup_fixtures::release::FIXTURE_NOW;
use firmup_fixtures::{ReleaseBuilder, RootBuilder};
use firmup_tests::Server;
use firmup_tests::proxy::{At, ConnLog, Plan, Proxy, Rng};
use reqwest::Method;
use semver::Version;
use serde_json::json;
use sha2::{Digest, Sha256};

const IMAGE_LEN: u64 = 32 * 1024 * 1024;
const MIB: u64 = 1024 * 1024;
const CHECK_PATH: &str = "/v1/device/check";
const IMAGES_PATH: &str = "/v1/images/";

// ------------------------------------------------------------------ world

struct World {
    _dir: tempfile::TempDir,
    server: Server,
    root: Vec<u8>,
    device_token: String,
    spec: ImageSpec,
    /// The image path and grant from the check answer (`/v1/images/...`).
    url: String,
    check_body: Vec<u8>,
    check: serde_json::Value,
}

/// Catalogue, a device, a published 32 MiB release, and one update check.
fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let root_path = dir.path().join("root.v1.json");
    let root = RootBuilder::standard().build();
    std::fs::write(&root_path, &root).unwrap();
    let server = Server::start(dir.path(), &root_path);
    let device_token = server.seed_encoder_device("SN-0001");

    let mut builder = ReleaseBuilder::standard();
    builder.image_len = IMAGE_LEN;
    let release = builder.build();
    let spec = release.manifest.images[0].clone();
    assert_eq!(spec.length, IMAGE_LEN);
    assert_eq!(spec.sha256, Sha256Digest::of(&release.image));
    let releng = server.cli_token("release_engineer", None);
    assert!(
        server.publish(&releng, "encoders", &release.image, &release.envelope),
        "the image is new to this server"
    );

    let check_body = serde_json::to_vec(&check_request()).unwrap();
    let (s, check) = server.json(
        Method::POST,
        CHECK_PATH,
        &device_token,
        Some(&check_request()),
    );
    assert_eq!(s, 200, "{check}");
    assert_eq!(check["status"], "update_available", "{check}");
    let url = check["update"]["images"][0]["url"]
        .as_str()
        .unwrap()
        .to_string();
    World {
        _dir: dir,
        server,
        root,
        device_token,
        spec,
        url,
        check_body,
        check,
    }
}

fn check_request() -> serde_json::Value {
    json!({ "serial": "SN-0001", "hw_id": "enc-4k-r2", "current_version": "2.0.0",
            "security_counter": 3, "channel": "stable", "root_version": 1,
            "manifest_version": 6 })
}

/// What the device has committed: 2.0.0, counter 3, manifest_version 6.
fn device_request() -> VerifyRequest {
    VerifyRequest {
        product_line: "encoders".into(),
        hw_id: Some("enc-4k-r2".into()),
        channel: Some("stable".into()),
        installed: Some(InstalledState {
            version: Version::new(2, 0, 0),
            security_counter: 3,
            manifest_version: 6,
        }),
        clock: Clock::Trusted(FIXTURE_NOW),
        allow_downgrade: false,
    }
}

// ----------------------------------------------------------------- device

/// A clock that only moves when the downloader sleeps.
struct FakeTime {
    base: Instant,
    offset: Mutex<Duration>,
}

impl TimeSource for FakeTime {
    fn now(&self) -> Instant {
        self.base + *self.offset.lock().unwrap()
    }
    fn sleep(&self, d: Duration) {
        *self.offset.lock().unwrap() += d;
    }
}

fn downloader(work: &Path, max_stalled_attempts: u32) -> Downloader {
    Downloader::new(work)
        .with_policy(RetryPolicy {
            max_stalled_attempts,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(2),
            ..RetryPolicy::default()
        })
        .with_time_source(Arc::new(FakeTime {
            base: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
        }))
        // The final sync before verification is enough for these tests.
        .with_sync_interval(u64::MAX)
}

fn transport(proxy: &Proxy, idle: Duration) -> HttpTransport {
    HttpTransport::with_config(
        &proxy.url(),
        HttpConfig {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(10),
            idle_timeout: idle,
            ..HttpConfig::default()
        },
    )
    .unwrap()
}

fn download(
    w: &World,
    proxy: &Proxy,
    work: &Path,
    max_stalled: u32,
) -> firmup_client::Result<firmup_client::Downloaded> {
    downloader(work, max_stalled).download(
        &transport(proxy, Duration::from_secs(10)),
        &w.url,
        &w.spec,
        |_| {},
    )
}

fn sha256_file(path: &Path) -> (u64, Sha256Digest) {
    let mut f = std::fs::File::open(path).unwrap();
    let mut h = Sha256::new();
    let n = std::io::copy(&mut f, &mut h).unwrap();
    let d = Sha256Digest(h.finalize().into());
    (n, d)
}

/// The downloaded file has exactly the signed length and sha256.
fn assert_exact(w: &World, done: &firmup_client::Downloaded) {
    assert_eq!(done.sha256, w.spec.sha256);
    assert_eq!(done.length, w.spec.length);
    assert_eq!(sha256_file(&done.path), (w.spec.length, w.spec.sha256));
}

/// The partial file holds exactly the first `len` bytes of the image.
fn assert_prefix(w: &World, dl: &Downloader, len: u64) {
    let bytes = std::fs::read(dl.partial_path(&w.spec)).unwrap();
    assert_eq!(bytes.len() as u64, len, "partial file length");
    let image = image_prefix(len);
    assert!(bytes == image, "partial file is not the image's prefix");
}

fn image_prefix(len: u64) -> Vec<u8> {
    let mut b = ReleaseBuilder::standard();
    b.image_len = len;
    b.image()
}

/// The log of the image requests, in connection order, once `n` have
/// finished on the proxy's side.
fn image_log(proxy: &Proxy, n: usize) -> Vec<ConnLog> {
    let log: Vec<_> = proxy
        .wait_logged(n)
        .into_iter()
        .filter(|c| c.path.starts_with(IMAGES_PATH))
        .collect();
    assert_eq!(log.len(), n, "image requests seen by the proxy");
    log
}

/// Each request resumed exactly where the bytes forwarded so far ended.
fn assert_resumes_exactly(log: &[ConnLog]) {
    let mut had = 0;
    for c in log {
        assert_eq!(c.range.as_deref(), Some(format!("bytes={had}-").as_str()));
        had += c.forwarded;
    }
    assert_eq!(had, IMAGE_LEN);
}

// ------------------------------------------------------------------ tests

#[test]
fn fifty_cut_downloads_complete_exactly() {
    const DOWNLOADS: usize = 50;
    const WORKERS: usize = 3;
    let w = world();
    let next = AtomicUsize::new(0);
    let totals = Mutex::new((0u64, 0usize));
    let started = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..WORKERS {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= DOWNLOADS {
                        break;
                    }
                    let seed = 0xf1_2000 + i as u64;
                    let cuts = 3 + Rng::new(seed).range(0, 3) as usize;
                    let proxy = Proxy::start(
                        &w.server.url,
                        seed,
                        vec![Plan::pass().cut(At::Random); cuts],
                    );
                    let work = tempfile::tempdir().unwrap();
                    let done = download(&w, &proxy, work.path(), 8)
                        .unwrap_or_else(|e| panic!("download {i}: {e}"));
                    assert_exact(&w, &done);
                    let log = image_log(&proxy, cuts + 1);
                    assert_eq!(done.stats.attempts as usize, cuts + 1);
                    assert!(log[..cuts].iter().all(|c| c.cut_at.is_some()));
                    assert!(log[cuts].cut_at.is_none());
                    assert_resumes_exactly(&log);
                    let mut t = totals.lock().unwrap();
                    t.0 += proxy.bytes_for(IMAGES_PATH);
                    t.1 += cuts;
                }
            });
        }
    });
    let elapsed = started.elapsed();
    let (bytes, cuts) = *totals.lock().unwrap();
    let ideal = DOWNLOADS as u64 * IMAGE_LEN;
    let ratio = bytes as f64 / ideal as f64;
    println!(
        "{DOWNLOADS} downloads of {} MiB, {cuts} cut connections: {bytes} body bytes \
         forwarded, {ratio:.4}x the image bytes, in {:.1} s",
        IMAGE_LEN / MIB,
        elapsed.as_secs_f64()
    );
    assert!(
        bytes * 2 < ideal * 3,
        "transferred {ratio:.4}x the image bytes"
    );
}

#[test]
fn range_answered_with_200_never_appends() {
    let w = world();

    // Cut at 20 MiB; the resume gets a full 200, cut at 8 MiB; with a
    // budget of one attempt without progress the call stops there.
    let proxy = Proxy::start(
        &w.server.url,
        1,
        vec![
            Plan::pass().cut(At::Fixed(20 * MIB)),
            Plan::pass().drop_range().cut(At::Fixed(8 * MIB)),
        ],
    );
    let work = tempfile::tempdir().unwrap();
    let err = download(&w, &proxy, work.path(), 1).unwrap_err();
    assert_eq!(err.code(), "download_budget_exhausted", "{err}");
    let Error::DownloadBudgetExhausted { last, .. } = &err else {
        unreachable!()
    };
    // A connection closed mid-body is the network's failure.
    assert_eq!(last.code(), "network", "{last}");
    let log = image_log(&proxy, 2);
    assert_eq!(log[1].range.as_deref(), Some("bytes=20971520-"));
    assert_eq!(log[1].status, 200);
    // The 200 restarted the file: its first 8 MiB, not 20 MiB + 8 MiB.
    let dl = downloader(work.path(), 1);
    assert_prefix(&w, &dl, 8 * MIB);

    // The next call resumes from 8 MiB to the exact image.
    let done = download(&w, &proxy, work.path(), 1).unwrap();
    assert_exact(&w, &done);
    assert_eq!(done.stats.resumed_from, 8 * MIB);
    assert_eq!(done.stats.restarts, 0);

    // And a 200 that runs to the end is the whole image, once.
    let proxy = Proxy::start(
        &w.server.url,
        2,
        vec![Plan::pass().cut(At::Random), Plan::pass().drop_range()],
    );
    let work = tempfile::tempdir().unwrap();
    let done = download(&w, &proxy, work.path(), 8).unwrap();
    assert_exact(&w, &done);
    let log = image_log(&proxy, 2);
    assert_eq!(log[1].status, 200);
    assert_eq!(
        done.stats,
        DownloadStats {
            attempts: 2,
            resumed_from: 0,
            bytes_received: log[0].forwarded + IMAGE_LEN,
            restarts: 1,
        }
    );
}

#[test]
fn wrong_content_range_is_refused() {
    let w = world();
    let proxy = Proxy::start(
        &w.server.url,
        3,
        vec![
            Plan::pass().cut(At::Random),
            Plan::pass().shift_content_range(-4096),
            Plan::pass().shift_content_range(1),
        ],
    );
    let work = tempfile::tempdir().unwrap();
    let err = download(&w, &proxy, work.path(), 8).unwrap_err();
    let log = image_log(&proxy, 3);
    let had = log[0].forwarded;
    match &err {
        Error::RangeMismatch {
            requested,
            answered,
        } => {
            assert_eq!(*requested, had);
            assert_eq!(
                answered,
                &format!("bytes {}-{}/{IMAGE_LEN}", had + 1, IMAGE_LEN)
            );
        }
        other => panic!("expected range_mismatch, got {} ({other})", other.code()),
    }
    assert_eq!(err.code(), "range_mismatch");
    assert!(err.retryable());
    // Nothing of the misplaced bodies was kept.
    let dl = downloader(work.path(), 8);
    assert_prefix(&w, &dl, had);
    assert!(!dl.complete_path(&w.spec).exists());

    // A well-behaved source then completes the same partial file.
    let done = download(&w, &proxy, work.path(), 8).unwrap();
    assert_exact(&w, &done);
    assert_eq!(done.stats.resumed_from, had);
    assert_eq!(done.stats.bytes_received, IMAGE_LEN - had);
}

#[test]
fn tampered_byte_is_refused() {
    let w = world();
    let proxy = Proxy::start(
        &w.server.url,
        4,
        vec![Plan::pass().cut(At::Random), Plan::pass().flip(At::Random)],
    );
    let work = tempfile::tempdir().unwrap();
    let err = download(&w, &proxy, work.path(), 8).unwrap_err();
    assert_eq!(err.code(), "image_hash_mismatch", "{err}");
    assert!(!err.retryable());
    let log = image_log(&proxy, 2);
    assert!(log[1].flipped_at.is_some());
    assert_eq!(log[0].forwarded + log[1].forwarded, IMAGE_LEN);
    // Neither a partial file with the wrong byte nor a "complete" one.
    let dl = downloader(work.path(), 8);
    assert!(!dl.partial_path(&w.spec).exists());
    assert!(!dl.complete_path(&w.spec).exists());

    // The next call starts from zero and gets the signed bytes.
    let done = download(&w, &proxy, work.path(), 8).unwrap();
    assert_exact(&w, &done);
    assert_eq!(done.stats.resumed_from, 0);
    assert_eq!(image_log(&proxy, 3)[2].range.as_deref(), Some("bytes=0-"));
}

#[test]
fn stalled_connection_resumes() {
    let w = world();
    let idle = Duration::from_millis(1000);
    // A stall longer than the read timeout: the client gives up on the
    // connection and resumes; a stall shorter than it: the transfer goes on.
    let proxy = Proxy::start(
        &w.server.url,
        5,
        vec![
            Plan::pass().stall(At::Random, Duration::from_millis(2500)),
            Plan::pass().stall(At::Random, Duration::from_millis(300)),
        ],
    );
    let work = tempfile::tempdir().unwrap();
    let done = downloader(work.path(), 8)
        .download(&transport(&proxy, idle), &w.url, &w.spec, |_| {})
        .unwrap();
    assert_exact(&w, &done);
    assert_eq!(done.stats.attempts, 2);
    let log = image_log(&proxy, 2);
    // The first connection delivered exactly up to its stall before the
    // client timed out; the second resumed there and ran to the end.
    // (The proxy's own count for it includes what it wrote into the
    // socket after the client had gone.)
    let stalled = log[0].stalled_at.expect("first connection stalled");
    assert!(stalled < IMAGE_LEN);
    assert_eq!(
        log[1].range.as_deref(),
        Some(format!("bytes={stalled}-").as_str())
    );
    assert!(log[1].stalled_at.is_some());
    assert_eq!(log[1].forwarded, IMAGE_LEN - stalled);
    assert_eq!(done.stats.bytes_received, IMAGE_LEN);
}

#[test]
fn older_manifest_is_refused() {
    let w = world();
    let root = TrustedRoot::from_pinned(&w.root).unwrap();

    // An older release, properly signed: manifest_version 5, below the 6
    // the device has committed.
    let mut older = ReleaseBuilder::standard();
    older.manifest.manifest_version = 5;
    let older = older.build();
    let mut replay = w.check.clone();
    replay["update"]["manifest"] = serde_json::from_slice(&older.envelope).unwrap();

    let check_through = |proxy: &Proxy| -> firmup_client::Result<()> {
        let t = transport(proxy, Duration::from_secs(10));
        let reply = t
            .post_json(CHECK_PATH, Some(&w.device_token), &w.check_body, 1 << 20)
            .unwrap();
        assert_eq!(reply.status, 200);
        let answer: serde_json::Value = serde_json::from_slice(&reply.body).unwrap();
        let manifest = serde_json::to_vec(&answer["update"]["manifest"]).unwrap();
        let plan = verify_manifest(&root, &device_request(), &manifest)?;
        // Only an accepted manifest leads to a download.
        let spec = &plan.manifest.images[0];
        let url = answer["update"]["images"][0]["url"].as_str().unwrap();
        let work = tempfile::tempdir().unwrap();
        let done = downloader(work.path(), 8).download(&t, url, spec, |_| {})?;
        assert_exact(&w, &done);
        Ok(())
    };

    // Control: the genuine answer through the same kind of proxy installs.
    let honest = Proxy::start(&w.server.url, 6, Vec::new());
    check_through(&honest).unwrap();
    honest.wait_logged(2);
    assert_eq!(honest.bytes_for(IMAGES_PATH), IMAGE_LEN);

    let hostile = Proxy::start(&w.server.url, 7, Vec::new());
    hostile.replace_body(CHECK_PATH, serde_json::to_vec(&replay).unwrap());
    let err = check_through(&hostile).unwrap_err();
    let log = hostile.wait_logged(1);
    assert_eq!(log.len(), 1, "only the check was made: {log:?}");
    assert_eq!(log[0].path, CHECK_PATH);
    match err {
        Error::ManifestReplay { accepted, offered } => {
            assert_eq!((accepted, offered), (6, 5));
        }
        other => panic!("expected manifest_replay, got {} ({other})", other.code()),
    }
    assert!(hostile.bytes_for(CHECK_PATH) > 0);
    assert_eq!(hostile.bytes_for(IMAGES_PATH), 0, "nothing is downloaded");
}
