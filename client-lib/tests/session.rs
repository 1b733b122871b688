//! The update session against an in-process fake server (a `Transport`
//! that answers like `firmup-server` and records what the device sent):
//! the whole cycle, rollback, replay refused before any download, reports
//! queued while the server is unreachable, and automatic security updates
//! (opted out, postponed, the consent hook for feature releases), and a
//! release fetched by version verified like any offer.

use std::collections::HashMap;
use std::io::Cursor;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use firmup_client::flash::FinishOutcome;
use firmup_client::protocol::{CHECK_PATH, FETCH_PATH, REPORTS_PATH};
use firmup_client::session::{
    CheckOutcome, ClockPolicy, CycleOutcome, DeviceConfig, SecurityUpdates, UpdateAction,
    UpdateNotice, UpdateSession,
};
use firmup_client::transport::{JsonReply, RangeReply};
use firmup_client::{
    Error, FileFlasher, FileStateStore, Flasher, PendingUpdate, QueuedReport, ReleaseKind,
    ReportStage, Result, Severity, Slot, StateStore, Transport, TrustedRoot, TrustedState,
};
use firmup_fixtures::{ReleaseBuilder, RootBuilder, SignedRelease};
use semver::Version;
use serde_json::{Value, json};

/// A fake `firmup-server`: one check answer, images by URL, recorded
/// reports, and a switch that makes it unreachable.
#[derive(Default)]
struct FakeServer {
    check_answer: Mutex<Value>,
    images: Mutex<HashMap<String, Vec<u8>>>,
    reports: Mutex<Vec<Value>>,
    checks: Mutex<Vec<Value>>,
    image_requests: AtomicUsize,
    down: AtomicBool,
    /// When set, the status and body every report POST is answered with.
    report_answer: Mutex<Option<(u16, Value)>>,
}

impl FakeServer {
    fn offering(release: &SignedRelease) -> FakeServer {
        let server = FakeServer::default();
        let spec = &release.manifest.images[0];
        let url = format!("/v1/images/{}?sub=SN-0001&exp=1&sig=x", spec.sha256);
        let manifest: Value = serde_json::from_slice(&release.envelope).unwrap();
        *server.check_answer.lock().unwrap() = json!({
            "status": "update_available",
            "poll_after_secs": 3600,
            "root_chain": [],
            "update": {
                "version": release.manifest.version.to_string(),
                "channel": "stable",
                "stepping_stone": false,
                "manifest": manifest,
                "images": [{ "name": spec.name, "target": spec.target, "length": spec.length,
                             "sha256": spec.sha256.to_hex(), "url": url }],
                "entitlement": { "code": "in_production", "summary": "Free upgrade." },
                "a_field_from_a_newer_server": true
            }
        });
        server
            .images
            .lock()
            .unwrap()
            .insert(url, release.image.clone());
        server
    }

    fn stages(&self) -> Vec<String> {
        self.reports
            .lock()
            .unwrap()
            .iter()
            .map(|r| r["stage"].as_str().unwrap().to_string())
            .collect()
    }

    fn unreachable(&self) -> Error {
        Error::Network {
            context: "fake server".into(),
            detail: "connection refused".into(),
        }
    }
}

impl Transport for FakeServer {
    fn get_range(&self, url: &str, from: u64, _if_range: Option<&str>) -> Result<RangeReply> {
        if self.down.load(Ordering::SeqCst) {
            return Err(self.unreachable());
        }
        self.image_requests.fetch_add(1, Ordering::SeqCst);
        let Some(bytes) = self.images.lock().unwrap().get(url).cloned() else {
            return Ok(RangeReply {
                status: 404,
                content_range: None,
                content_length: None,
                etag: None,
                retry_after: None,
                body: Box::new(std::io::empty()),
            });
        };
        let len = bytes.len() as u64;
        let (status, content_range) = if from == 0 {
            (200, None)
        } else {
            (206, Some(format!("bytes {from}-{}/{len}", len - 1)))
        };
        Ok(RangeReply {
            status,
            content_range,
            content_length: Some(len - from),
            etag: None,
            retry_after: None,
            body: Box::new(Cursor::new(bytes[from as usize..].to_vec())),
        })
    }

    fn get_json(&self, _url: &str, _bearer: Option<&str>, _max: u64) -> Result<JsonReply> {
        Ok(JsonReply {
            status: 404,
            retry_after: None,
            body: Vec::new(),
        })
    }

    fn post_json(
        &self,
        url: &str,
        bearer: Option<&str>,
        body: &[u8],
        _max: u64,
    ) -> Result<JsonReply> {
        if self.down.load(Ordering::SeqCst) {
            return Err(self.unreachable());
        }
        assert_eq!(bearer, Some("device-token"));
        let body: Value = serde_json::from_slice(body).unwrap();
        let answer = match url {
            CHECK_PATH => {
                self.checks.lock().unwrap().push(body);
                self.check_answer.lock().unwrap().clone()
            }
            // A fetch by version is answered with the release on offer,
            // yanked: which version was asked for is recorded, so a test
            // can also see a device refuse an answer about another one.
            FETCH_PATH => {
                self.checks.lock().unwrap().push(body);
                let offer = self.check_answer.lock().unwrap()["update"].clone();
                json!({ "root_chain": [], "update": offer, "yanked": true })
            }
            REPORTS_PATH => {
                if let Some((status, answer)) = self.report_answer.lock().unwrap().clone() {
                    return Ok(JsonReply {
                        status,
                        retry_after: None,
                        body: serde_json::to_vec(&answer).unwrap(),
                    });
                }
                self.reports.lock().unwrap().push(body);
                json!({ "id": 1 })
            }
            other => panic!("unexpected POST {other}"),
        };
        Ok(JsonReply {
            status: if url == REPORTS_PATH { 201 } else { 200 },
            retry_after: None,
            body: serde_json::to_vec(&answer).unwrap(),
        })
    }
}

struct Device {
    dir: tempfile::TempDir,
    store: FileStateStore,
    flasher: FileFlasher,
}

impl Device {
    /// Provisioned at 2.0.0, security counter 3, root version 1.
    fn new() -> Device {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStateStore::open(dir.path().join("state")).unwrap();
        let root = TrustedRoot::from_pinned(&RootBuilder::standard().build()).unwrap();
        store
            .save(&TrustedState::new(&root, Version::new(2, 0, 0), 3))
            .unwrap();
        let flasher = FileFlasher::open(dir.path().join("slots")).unwrap();
        std::fs::write(flasher.slot_path(Slot::A), b"factory").unwrap();
        Device {
            dir,
            store,
            flasher,
        }
    }

    fn session<'a>(&'a mut self, server: &'a FakeServer) -> UpdateSession<'a> {
        let config = DeviceConfig {
            server: "http://fake.invalid".into(),
            serial: "SN-0001".into(),
            hw_id: "enc-4k-r2".into(),
            product_line: "encoders".into(),
            channel: "stable".into(),
            token: "device-token".into(),
        };
        let work = self.dir.path().join("work");
        UpdateSession::new(config, server, &self.store, &mut self.flasher, work)
    }

    fn state(&self) -> TrustedState {
        self.store.load().unwrap().unwrap()
    }
}

fn installed(cycle: CycleOutcome) -> PendingUpdate {
    match cycle {
        CycleOutcome::Installed(p) => p,
        other => panic!("expected an installation, got {other:?}"),
    }
}

#[test]
fn happy_path_installs_into_slot_b_and_commits_after_the_health_check() {
    let release = ReleaseBuilder::standard().build();
    let server = FakeServer::offering(&release);
    let mut dev = Device::new();
    let mut session = dev.session(&server);

    let mut last_progress = 0;
    let cycle = session.update(|p| last_progress = p.done).unwrap();
    assert_eq!(cycle.poll_after_secs, 3600);
    let pending = installed(cycle.outcome);
    assert_eq!(pending.slot, Slot::B);
    assert_eq!(last_progress, release.image.len() as u64);

    session.flasher_mut().boot().unwrap();
    let out = session.finish_after_boot(true).unwrap();
    assert_eq!(out, FinishOutcome::Committed(pending));
    drop(session);

    let s = dev.state();
    assert_eq!(s.installed_version().to_string(), "2.1.0");
    assert_eq!(s.security_counter(), 3);
    assert_eq!(s.manifest_version("stable"), 7);
    assert!(s.queued_reports().is_empty());
    assert_eq!(
        std::fs::read(dev.flasher.slot_path(Slot::B)).unwrap(),
        release.image
    );
    assert_eq!(dev.flasher.status().unwrap().active, Slot::B);
    assert_eq!(
        server.stages(),
        ["downloading", "verifying", "installing", "installed"]
    );
    let check = &server.checks.lock().unwrap()[0];
    assert_eq!(check["current_version"], "2.0.0");
    assert_eq!(check["security_counter"], 3);
    assert_eq!(check["root_version"], 1);
    assert_eq!(check["channel"], "stable");
}

#[test]
fn failed_health_check_rolls_back_and_keeps_the_counter() {
    let mut builder = ReleaseBuilder::standard();
    builder.manifest.security_counter = 5;
    let release = builder.build();
    let server = FakeServer::offering(&release);
    let mut dev = Device::new();
    let mut session = dev.session(&server);

    installed(session.update(|_| {}).unwrap().outcome);
    session.flasher_mut().boot().unwrap();
    match session.finish_after_boot(false).unwrap() {
        FinishOutcome::RolledBack { reason, .. } => {
            assert_eq!(reason.code(), "health_check_failed")
        }
        other => panic!("expected a rollback, got {other:?}"),
    }
    session.flasher_mut().boot().unwrap();
    drop(session);

    let s = dev.state();
    assert_eq!(s.security_counter(), 3, "the counter never moved");
    assert_eq!(s.installed_version().to_string(), "2.0.0");
    assert_eq!(s.pending(), None);
    let st = dev.flasher.status().unwrap();
    assert_eq!(
        (st.active, st.running, st.pending),
        (Slot::A, Slot::A, None)
    );
    let last = server.reports.lock().unwrap().last().cloned().unwrap();
    assert_eq!(last["stage"], "rolled_back");
    assert_eq!(last["reason_code"], "health_check_failed");
    assert_eq!(last["version"], "2.1.0");

    // Offered again, the release that failed is not installed again (it
    // would fail the same way, once per poll), and nothing is reported.
    let reports_before = server.reports.lock().unwrap().len();
    let mut session = dev.session(&server);
    let err = session.update(|_| {}).unwrap_err();
    assert_eq!(err.code(), "failed_before", "{err}");
    assert!(!err.retryable());
    drop(session);
    assert_eq!(server.reports.lock().unwrap().len(), reports_before);
    assert_eq!(dev.flasher.status().unwrap().pending, None);
}

#[test]
fn replayed_older_manifest_is_refused_before_any_download() {
    let release = ReleaseBuilder::standard().build(); // manifest_version 7
    let server = FakeServer::offering(&release);
    let mut dev = Device::new();
    // The device already committed manifest_version 8 on stable.
    let mut s = dev.state();
    s.ratchet_after_commit(&PendingUpdate {
        version: Version::new(2, 0, 0),
        channel: "stable".into(),
        security_counter: 3,
        manifest_version: 8,
        slot: Slot::A,
        allow_downgrade: false,
        latest_known_time: None,
    })
    .unwrap();
    dev.store.save(&s).unwrap();

    let mut session = dev.session(&server);
    let err = session.update(|_| {}).unwrap_err();
    assert_eq!(err.code(), "manifest_replay");
    assert!(!err.retryable());
    drop(session);

    assert_eq!(server.image_requests.load(Ordering::SeqCst), 0);
    assert!(!dev.dir.path().join("work").exists(), "nothing downloaded");
    assert_eq!(dev.flasher.status().unwrap().pending, None);
    let reports = server.reports.lock().unwrap();
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0]["stage"], "failed");
    assert_eq!(reports[0]["reason_code"], "manifest_replay");
}

#[test]
fn only_the_servers_own_429_drops_a_report() {
    let server = FakeServer::default();
    let mut dev = Device::new();
    let mut s = dev.state();
    s.queue_report(QueuedReport::new(
        Version::new(2, 1, 0),
        ReportStage::Installed,
        time::OffsetDateTime::now_utc(),
    ));
    dev.store.save(&s).unwrap();

    // A proxy's rate limit (no code, or another code): kept for later.
    for answer in [
        json!("Too Many Requests"),
        json!({ "error": { "code": "rate_limited", "message": "slow down" } }),
    ] {
        *server.report_answer.lock().unwrap() = Some((429, answer));
        let stats = dev.session(&server).flush_reports().unwrap();
        assert_eq!((stats.sent, stats.dropped, stats.remaining), (0, 0, 1));
    }

    // The server's own refusal: dropped so it does not block the queue.
    *server.report_answer.lock().unwrap() = Some((
        429,
        json!({ "error": { "code": "too_many_reports", "message": "quota" } }),
    ));
    let stats = dev.session(&server).flush_reports().unwrap();
    assert_eq!((stats.sent, stats.dropped, stats.remaining), (0, 1, 0));
    assert!(dev.state().queued_reports().is_empty());
}

#[test]
fn reports_are_queued_while_the_server_is_unreachable_and_sent_on_the_next_run() {
    let release = ReleaseBuilder::standard().build();
    let server = FakeServer::offering(&release);
    let mut dev = Device::new();
    let mut session = dev.session(&server);
    installed(session.update(|_| {}).unwrap().outcome);

    // The network goes away during the reboot: the update still commits.
    server.down.store(true, Ordering::SeqCst);
    session.flasher_mut().boot().unwrap();
    assert!(matches!(
        session.finish_after_boot(true).unwrap(),
        FinishOutcome::Committed(_)
    ));
    drop(session);
    let s = dev.state();
    assert_eq!(s.installed_version().to_string(), "2.1.0");
    assert_eq!(s.queued_reports().len(), 1);
    assert_eq!(server.stages(), ["downloading", "verifying", "installing"]);

    // Next start, server back: the queue is delivered, in order, once.
    server.down.store(false, Ordering::SeqCst);
    let mut session = dev.session(&server);
    assert_eq!(
        session.finish_after_boot(true).unwrap(),
        FinishOutcome::Idle
    );
    drop(session);
    assert!(dev.state().queued_reports().is_empty());
    assert_eq!(
        server.stages(),
        ["downloading", "verifying", "installing", "installed"]
    );
}

#[test]
fn an_offer_naming_other_bytes_than_the_manifest_is_refused() {
    let release = ReleaseBuilder::standard().build();
    let server = FakeServer::offering(&release);
    server.check_answer.lock().unwrap()["update"]["images"][0]["sha256"] = json!("00".repeat(32));
    let mut dev = Device::new();
    let err = dev.session(&server).check().unwrap_err();
    assert_eq!(err.code(), "offer_mismatch");
    assert_eq!(server.image_requests.load(Ordering::SeqCst), 0);
}

#[test]
fn declined_consent_downloads_nothing_and_other_answers_parse() {
    let release = ReleaseBuilder::standard().build();
    let server = FakeServer::offering(&release);
    let mut dev = Device::new();
    let mut session = dev
        .session(&server)
        .with_consent(|offer| offer.stepping_stone);
    assert!(matches!(
        session.update(|_| {}).unwrap().outcome,
        CycleOutcome::Declined(_)
    ));
    assert_eq!(server.image_requests.load(Ordering::SeqCst), 0);

    *server.check_answer.lock().unwrap() = json!({
        "status": "not_entitled", "poll_after_secs": 10, "root_chain": [],
        "entitlement": { "code": "eol_no_contract", "summary": "Discontinued." } });
    match session.check().unwrap().outcome {
        CheckOutcome::NotEntitled(e) => assert_eq!(e.code, "eol_no_contract"),
        other => panic!("{other:?}"),
    }
    *server.check_answer.lock().unwrap() =
        json!({ "status": "up_to_date", "poll_after_secs": 10, "root_chain": [] });
    assert!(matches!(
        session.check().unwrap().outcome,
        CheckOutcome::UpToDate
    ));
}

#[test]
fn server_errors_are_typed_and_say_whether_to_retry() {
    let release = ReleaseBuilder::standard().build();
    let server = FakeServer::offering(&release);
    server.down.store(true, Ordering::SeqCst);
    let mut dev = Device::new();
    let err = dev.session(&server).check().unwrap_err();
    assert_eq!(err.code(), "network");
    assert!(err.retryable());

    server.down.store(false, Ordering::SeqCst);
    *server.check_answer.lock().unwrap() = json!({ "status": "something_new" });
    let err = dev.session(&server).check().unwrap_err();
    assert_eq!(err.code(), "malformed");
}

/// A flasher whose slots are not plain files (like a raw partition): it
/// wraps a `FileFlasher` but does not offer the slot file for streaming.
struct RawSlots<'a>(&'a mut FileFlasher);

impl Flasher for RawSlots<'_> {
    fn status(&self) -> Result<firmup_client::SlotStatus> {
        self.0.status()
    }
    fn write_inactive(
        &mut self,
        reader: &mut dyn std::io::Read,
        spec: &firmup_client::ImageSpec,
        progress: &mut dyn FnMut(u64),
    ) -> Result<firmup_client::Sha256Digest> {
        self.0.write_inactive(reader, spec, progress)
    }
    fn read_back_digest(&self, slot: Slot, len: u64) -> Result<firmup_client::Sha256Digest> {
        self.0.read_back_digest(slot, len)
    }
    fn mark_pending(&mut self, slot: Slot) -> Result<()> {
        self.0.mark_pending(slot)
    }
    fn boot(&mut self) -> Result<firmup_client::BootOutcome> {
        self.0.boot()
    }
    fn commit(&mut self) -> Result<()> {
        self.0.commit()
    }
    fn rollback(&mut self) -> Result<()> {
        self.0.rollback()
    }
}

#[test]
fn file_slots_are_streamed_into_and_other_slots_go_through_the_work_directory() {
    let release = ReleaseBuilder::standard().build();
    let sha = firmup_client::Sha256Digest::of(&release.image).to_hex();

    // File slots: the image goes straight into slot B; no copy is kept.
    let server = FakeServer::offering(&release);
    let mut dev = Device::new();
    installed(dev.session(&server).update(|_| {}).unwrap().outcome);
    assert_eq!(
        std::fs::read(dev.flasher.slot_path(Slot::B)).unwrap(),
        release.image
    );
    let work = dev.dir.path().join("work");
    assert!(!work.join(&sha).exists(), "streamed installs keep no copy");

    // Raw slots: downloaded into the work directory, then written.
    let server = FakeServer::offering(&release);
    let mut dev = Device::new();
    let config = DeviceConfig {
        server: "http://fake.invalid".into(),
        serial: "SN-0001".into(),
        hw_id: "enc-4k-r2".into(),
        product_line: "encoders".into(),
        channel: "stable".into(),
        token: "device-token".into(),
    };
    let work = dev.dir.path().join("work");
    let mut raw = RawSlots(&mut dev.flasher);
    let mut session = UpdateSession::new(config, &server, &dev.store, &mut raw, work.clone());
    let pending = installed(session.update(|_| {}).unwrap().outcome);
    assert_eq!(pending.slot, Slot::B);
    drop(session);
    assert_eq!(
        std::fs::read(dev.flasher.slot_path(Slot::B)).unwrap(),
        release.image
    );
    assert!(
        work.join(&sha).exists(),
        "the verified download is in the work directory"
    );
    assert_eq!(server.stages(), ["downloading", "verifying", "installing"]);
}

/// A notice hook's view of one cycle.
type Notices = std::rc::Rc<std::cell::RefCell<Vec<UpdateNotice>>>;

#[test]
fn a_security_release_installs_without_the_consent_hook_being_called() {
    for builder in [
        ReleaseBuilder::standard().security(&["CVE-2026-1001"]),
        ReleaseBuilder::standard().mixed(&["CVE-2026-1001"]),
    ] {
        let release = builder.build();
        let server = FakeServer::offering(&release);
        let mut dev = Device::new();
        let asked = AtomicUsize::new(0);
        let notices = Notices::default();
        let seen = notices.clone();
        let mut session = dev
            .session(&server)
            .with_consent(|_| {
                asked.fetch_add(1, Ordering::SeqCst);
                false
            })
            .with_notice(move |n, _| seen.borrow_mut().push(n.clone()));
        assert_eq!(session.security_updates(), SecurityUpdates::Automatic);
        installed(session.update(|_| {}).unwrap().outcome);
        drop(session);
        assert_eq!(
            asked.load(Ordering::SeqCst),
            0,
            "{:?}",
            release.manifest.kind
        );
        assert_eq!(server.stages(), ["downloading", "verifying", "installing"]);
        let notices = notices.borrow();
        assert_eq!(notices.len(), 1);
        assert_eq!(notices[0].kind, release.manifest.kind());
        assert_eq!(notices[0].action, UpdateAction::Install);
        let advisory = notices[0].advisory.as_ref().unwrap();
        assert_eq!(advisory.cves, ["CVE-2026-1001"]);
        assert_eq!(advisory.severity, Severity::High);
        assert!(!advisory.summary.is_empty());
    }
}

#[test]
fn a_feature_release_still_asks_for_consent_whatever_the_security_policy() {
    for policy in [
        SecurityUpdates::Automatic,
        SecurityUpdates::OptedOut,
        SecurityUpdates::PostponedUntil(in_days(30)),
    ] {
        let release = ReleaseBuilder::standard().build();
        let server = FakeServer::offering(&release);
        let mut dev = Device::new();
        let asked = AtomicUsize::new(0);
        let notices = Notices::default();
        let seen = notices.clone();
        let mut session = dev
            .session(&server)
            .with_security_updates(policy)
            .with_consent(|_| {
                asked.fetch_add(1, Ordering::SeqCst);
                false
            })
            .with_notice(move |n, _| seen.borrow_mut().push(n.clone()));
        assert!(matches!(
            session.update(|_| {}).unwrap().outcome,
            CycleOutcome::Declined(_)
        ));
        drop(session);
        assert_eq!(asked.load(Ordering::SeqCst), 1, "{policy:?}");
        assert_eq!(server.image_requests.load(Ordering::SeqCst), 0);
        assert!(server.stages().is_empty(), "{:?}", server.stages());
        let n = &notices.borrow()[0];
        assert_eq!(
            (n.kind, n.action, n.advisory.is_none()),
            (ReleaseKind::Feature, UpdateAction::AskConsent, true)
        );
    }
}

#[test]
fn the_release_kind_comes_from_the_signed_manifest_not_the_servers_json() {
    // A feature release the server's unsigned answer calls a security fix.
    let release = ReleaseBuilder::standard().build();
    let server = FakeServer::offering(&release);
    {
        let mut answer = server.check_answer.lock().unwrap();
        answer["update"]["kind"] = json!("security");
        answer["update"]["advisory"] = json!({ "summary": "x", "cves": ["CVE-2026-1001"],
                                               "severity": "critical", "action": "y" });
    }
    let mut dev = Device::new();
    let asked = AtomicUsize::new(0);
    let mut session = dev.session(&server).with_consent(|_| {
        asked.fetch_add(1, Ordering::SeqCst);
        false
    });
    assert!(matches!(
        session.update(|_| {}).unwrap().outcome,
        CycleOutcome::Declined(_)
    ));
    drop(session);
    assert_eq!(asked.load(Ordering::SeqCst), 1);
    assert_eq!(server.image_requests.load(Ordering::SeqCst), 0);
}

#[test]
fn opted_out_security_release_is_not_installed_and_opted_out_is_queued_once() {
    let release = ReleaseBuilder::standard()
        .security(&["CVE-2026-1001"])
        .build();
    let server = FakeServer::offering(&release);
    let mut dev = Device::new();
    let notices = Notices::default();
    let seen = notices.clone();
    let mut session = dev
        .session(&server)
        .with_security_updates(SecurityUpdates::OptedOut)
        .with_notice(move |n, _| seen.borrow_mut().push(n.clone()));
    // Unreachable at first: the report waits in the queue, once however
    // often the device polls.
    server.down.store(true, Ordering::SeqCst);
    assert!(
        session.update(|_| {}).is_err(),
        "the check needs the server"
    );
    server.down.store(false, Ordering::SeqCst);
    *server.report_answer.lock().unwrap() = Some((503, json!({})));
    for _ in 0..3 {
        match session.update(|_| {}).unwrap().outcome {
            CycleOutcome::OptedOut(offer) => assert_eq!(offer.version(), &release.manifest.version),
            other => panic!("expected opted out, got {other:?}"),
        }
    }
    drop(session);
    let queued = dev.state().queued_reports().to_vec();
    assert_eq!(queued.len(), 1, "{queued:?}");
    assert_eq!(queued[0].stage, ReportStage::OptedOut);
    assert_eq!(queued[0].version, release.manifest.version);
    assert_eq!(queued[0].channel.as_deref(), Some("stable"));
    assert_eq!(queued[0].postponed_until, None);

    // Server back: delivered once, and not again on the next polls.
    *server.report_answer.lock().unwrap() = None;
    let mut session = dev
        .session(&server)
        .with_security_updates(SecurityUpdates::OptedOut);
    for _ in 0..2 {
        assert!(matches!(
            session.update(|_| {}).unwrap().outcome,
            CycleOutcome::OptedOut(_)
        ));
    }
    drop(session);
    assert_eq!(server.stages(), ["opted_out"]);
    let report = &server.reports.lock().unwrap()[0];
    assert_eq!(report["version"], "2.1.0");
    assert_eq!(report["channel"], "stable");
    assert!(report.get("postponed_until").is_none(), "{report}");
    assert!(dev.state().queued_reports().is_empty());
    assert_eq!(server.image_requests.load(Ordering::SeqCst), 0);
    assert_eq!(dev.flasher.status().unwrap().pending, None);
    assert_eq!(dev.state().installed_version().to_string(), "2.0.0");
    assert!(
        notices
            .borrow()
            .iter()
            .all(|n| n.action == UpdateAction::OptedOut && n.kind == ReleaseKind::Security)
    );
}

#[test]
fn opted_out_with_a_consent_hook_lets_the_owner_decide() {
    let release = ReleaseBuilder::standard()
        .security(&["CVE-2026-1001"])
        .build();
    let server = FakeServer::offering(&release);
    let mut dev = Device::new();
    let answers = Mutex::new(vec![true, false, false]);
    let mut session = dev
        .session(&server)
        .with_security_updates(SecurityUpdates::OptedOut)
        .with_consent(|_| answers.lock().unwrap().pop().unwrap());
    // The owner says no twice: declined, opted_out reported once.
    for _ in 0..2 {
        assert!(matches!(
            session.update(|_| {}).unwrap().outcome,
            CycleOutcome::Declined(_)
        ));
    }
    assert_eq!(server.stages(), ["opted_out"]);
    // Then yes: installed like any consented update.
    installed(session.update(|_| {}).unwrap().outcome);
    drop(session);
    assert_eq!(
        server.stages(),
        ["opted_out", "downloading", "verifying", "installing"]
    );
}

fn in_days(days: i64) -> time::OffsetDateTime {
    let t = time::OffsetDateTime::now_utc() + time::Duration::days(days);
    t.replace_nanosecond(0).unwrap()
}

#[test]
fn postponed_until_a_future_date_is_not_installed_and_reported_with_the_date() {
    let release = ReleaseBuilder::standard()
        .security(&["CVE-2026-1001"])
        .build();
    let server = FakeServer::offering(&release);
    let mut dev = Device::new();
    let until = in_days(14);
    let asked = AtomicUsize::new(0);
    let mut session = dev
        .session(&server)
        .with_security_updates(SecurityUpdates::PostponedUntil(until))
        .with_consent(|_| {
            asked.fetch_add(1, Ordering::SeqCst);
            true
        });
    for _ in 0..2 {
        match session.update(|_| {}).unwrap().outcome {
            CycleOutcome::Postponed { offer, until: u } => {
                assert_eq!(u, until);
                assert_eq!(offer.version(), &release.manifest.version);
            }
            other => panic!("expected postponed, got {other:?}"),
        }
    }
    drop(session);
    assert_eq!(
        asked.load(Ordering::SeqCst),
        0,
        "a postponement is not asked"
    );
    assert_eq!(server.image_requests.load(Ordering::SeqCst), 0);
    assert_eq!(server.stages(), ["postponed"]);
    let report = server.reports.lock().unwrap()[0].clone();
    assert_eq!(report["version"], "2.1.0");
    assert_eq!(
        report["postponed_until"].as_str(),
        Some(firmup_client::format_time(until).as_str()),
        "{report}"
    );

    // A later date is a new choice: reported again, once.
    let later = in_days(28);
    let mut session = dev
        .session(&server)
        .with_security_updates(SecurityUpdates::PostponedUntil(later));
    for _ in 0..2 {
        assert!(matches!(
            session.update(|_| {}).unwrap().outcome,
            CycleOutcome::Postponed { .. }
        ));
    }
    drop(session);
    assert_eq!(server.stages(), ["postponed", "postponed"]);
    assert_eq!(
        server.reports.lock().unwrap()[1]["postponed_until"].as_str(),
        Some(firmup_client::format_time(later).as_str())
    );
    assert_eq!(dev.state().installed_version().to_string(), "2.0.0");
}

#[test]
fn postponed_until_a_past_date_installs_without_asking() {
    let release = ReleaseBuilder::standard().mixed(&["CVE-2026-1001"]).build();
    let server = FakeServer::offering(&release);
    let mut dev = Device::new();
    let asked = AtomicUsize::new(0);
    let mut session = dev
        .session(&server)
        .with_security_updates(SecurityUpdates::PostponedUntil(in_days(-1)))
        .with_consent(|_| {
            asked.fetch_add(1, Ordering::SeqCst);
            false
        });
    installed(session.update(|_| {}).unwrap().outcome);
    drop(session);
    assert_eq!(asked.load(Ordering::SeqCst), 0);
    assert_eq!(server.stages(), ["downloading", "verifying", "installing"]);
}

#[test]
fn without_a_trusted_clock_a_postponement_passes_once_a_signed_time_is_later() {
    // The fixture manifest is issued 2026-05-01: a device without a trusted
    // clock knows at least that much time has passed.
    let release = ReleaseBuilder::standard()
        .security(&["CVE-2026-1001"])
        .build();
    let issued = release.manifest.issued_at;
    for (until, installs) in [
        (issued + time::Duration::days(1), false),
        (issued - time::Duration::days(1), true),
    ] {
        let server = FakeServer::offering(&release);
        let mut dev = Device::new();
        let mut session = dev
            .session(&server)
            .with_clock(ClockPolicy::LatestKnown)
            .with_security_updates(SecurityUpdates::PostponedUntil(until));
        let outcome = session.update(|_| {}).unwrap().outcome;
        assert_eq!(
            matches!(outcome, CycleOutcome::Installed(_)),
            installs,
            "{until}: {outcome:?}"
        );
    }
}

#[test]
fn the_security_support_end_is_passed_on_from_the_check_answer() {
    let release = ReleaseBuilder::standard().build();
    let server = FakeServer::offering(&release);
    let mut dev = Device::new();
    assert_eq!(dev.session(&server).check().unwrap().security_support, None);
    server.check_answer.lock().unwrap()["security_support"] = json!({
        "ends": "2031-06-30",
        "warning": "Security support for this unit ends on 2031-06-30." });
    let checked = dev.session(&server).check().unwrap();
    let support = checked.security_support.unwrap();
    assert_eq!(support.ends, "2031-06-30");
    assert!(support.warning.unwrap().contains("ends on 2031-06-30"));
    let cycle = dev.session(&server).update(|_| {}).unwrap();
    assert_eq!(cycle.security_support.unwrap().ends, "2031-06-30");
}

#[test]
fn a_release_fetched_by_version_is_verified_like_an_offer_and_installs() {
    let release = ReleaseBuilder::standard()
        .security(&["CVE-2026-1001"])
        .build();
    let server = FakeServer::offering(&release);
    let mut dev = Device::new();
    let mut session = dev.session(&server);
    let fetched = session.fetch(&Version::new(2, 1, 0)).unwrap();
    assert!(fetched.yanked);
    assert_eq!(fetched.offer.version().to_string(), "2.1.0");
    let pending = session
        .download_and_install(&fetched.offer, |_| {})
        .unwrap();
    session.flasher_mut().boot().unwrap();
    assert_eq!(
        session.finish_after_boot(true).unwrap(),
        FinishOutcome::Committed(pending)
    );
    drop(session);
    assert_eq!(dev.state().installed_version().to_string(), "2.1.0");
    let asked = &server.checks.lock().unwrap()[0];
    assert_eq!(asked["version"], "2.1.0");
    assert_eq!(asked["root_version"], 1);
    assert_eq!(asked["hw_id"], "enc-4k-r2");
}

#[test]
fn a_fetch_answered_with_another_version_is_refused_before_any_download() {
    let release = ReleaseBuilder::standard().build();
    let server = FakeServer::offering(&release);
    let mut dev = Device::new();
    let mut session = dev.session(&server);
    let err = session.fetch(&Version::new(2, 2, 0)).unwrap_err();
    assert!(matches!(err, Error::OfferMismatch { .. }), "{err:?}");
    assert_eq!(server.image_requests.load(Ordering::SeqCst), 0);
}

#[test]
fn a_fetched_older_release_is_refused_as_a_downgrade() {
    let mut b = ReleaseBuilder::standard().version("1.9.0");
    b.manifest.requires = None;
    let release = b.build();
    let server = FakeServer::offering(&release);
    let mut dev = Device::new();
    let mut session = dev.session(&server);
    let err = session.fetch(&Version::new(1, 9, 0)).unwrap_err();
    assert_eq!(err.code(), "downgrade", "{err:?}");
    assert_eq!(server.image_requests.load(Ordering::SeqCst), 0);
    drop(session);
    assert_eq!(dev.state().installed_version().to_string(), "2.0.0");
}
