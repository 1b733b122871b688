//! The update check, device reports, rollout summaries and the entitlement
//! view, in-process. The catalogue is seeded through the database layer
//! (product lines, models, devices, and releases built and signed by the
//! fixtures, with the publication time each test needs), then
//! `catalogue_changed()` is called the way the publish path does.

mod common;

use axum::http::StatusCode;
use common::{TestApp, TestResponse};
use firmup_client::{Clock, InstalledState, Sha256Digest, TrustedRoot, VerifyRequest};
use firmup_fixtures::keys::NEXT_ROOT_KEYS;
use firmup_fixtures::release::FIXTURE_NOW;
use firmup_fixtures::{ReleaseBuilder, RootBuilder};
use firmup_server::db;
use firmup_server::db::catalogue::ModelRow;
use firmup_server::db::contracts::{ContractRow, LicenceRow};
use firmup_server::db::devices::NewDevice;
use firmup_server::db::releases::{NewRelease, NewReleaseImage, Stored};
use firmup_server::grants::GrantParams;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use time::{Date, Duration, OffsetDateTime};

// ---- seeding ----------------------------------------------------------

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn today() -> Date {
    now().date()
}

/// The discontinued model's EOL: 200 days ago.
fn eol() -> Date {
    today() - Duration::days(200)
}

/// Published well before the EOL.
fn before_eol() -> OffsetDateTime {
    now() - Duration::days(400)
}

/// Published after the EOL.
fn after_eol() -> OffsetDateTime {
    now() - Duration::days(30)
}

/// Product lines, models and hardware ids:
/// - `encoders` (hardware): `enc-4k` in production (hw `enc-4k-r2`),
///   `enc-hd` discontinued 200 days ago (hw `enc-hd-r1`);
/// - `studio` (software, "StudioSuite"): `studio-pro` (hw `studio-x86`).
async fn seed_catalogue(t: &TestApp) {
    let mut tx = t.app.db.begin().await.unwrap();
    for (id, name, kind) in [
        ("encoders", "Encoders", "hardware"),
        ("studio", "StudioSuite", "software"),
    ] {
        // 12 months: the schema's default warranty.
        db::catalogue::upsert_product_line(
            &mut tx,
            id,
            &db::catalogue::LineTerms::new(name, kind, 12),
        )
        .await
        .unwrap();
    }
    for (id, line, name, eol, hw) in [
        ("enc-4k", "encoders", "Encoder 4K", None, "enc-4k-r2"),
        ("enc-hd", "encoders", "Encoder HD", Some(eol()), "enc-hd-r1"),
        (
            "studio-pro",
            "studio",
            "StudioSuite Pro",
            None,
            "studio-x86",
        ),
    ] {
        let model = ModelRow {
            id: id.into(),
            product_line: line.into(),
            name: name.into(),
            launched: None,
            eol,
        };
        db::catalogue::upsert_model(&mut tx, &model).await.unwrap();
        db::catalogue::set_hw_ids(&mut tx, id, &[hw.to_string()])
            .await
            .unwrap();
    }
    tx.commit().await.unwrap();
    t.app.catalogue_changed();
}

async fn device(t: &TestApp, serial: &str, model: &str, hw_id: &str, channel: &str) {
    let mut tx = t.app.db.begin().await.unwrap();
    let new = NewDevice {
        serial,
        model_id: model,
        hw_id,
        channel,
    };
    db::devices::insert(&mut tx, new, now()).await.unwrap();
    tx.commit().await.unwrap();
}

/// A release to seed.
struct Rel {
    line: &'static str,
    hw_ids: Vec<&'static str>,
    channel: &'static str,
    version: &'static str,
    requires: Option<&'static str>,
    security_counter: u32,
    manifest_version: u64,
    published_at: OffsetDateTime,
    free_for_all: bool,
}

impl Rel {
    fn enc(version: &'static str) -> Rel {
        Rel {
            line: "encoders",
            hw_ids: vec!["enc-4k-r2", "enc-hd-r1"],
            channel: "stable",
            version,
            requires: None,
            security_counter: 3,
            manifest_version: 7,
            published_at: before_eol(),
            free_for_all: false,
        }
    }

    fn studio(version: &'static str) -> Rel {
        Rel {
            line: "studio",
            hw_ids: vec!["studio-x86"],
            ..Rel::enc(version)
        }
    }
}

/// Signs a release with the fixtures and stores it as the publish path
/// would, but published at `r.published_at`; returns the release id and
/// the envelope bytes as stored.
async fn release(t: &TestApp, r: Rel) -> (i64, Vec<u8>) {
    let mut b = ReleaseBuilder::for_line(r.line, r.hw_ids[0]).version(r.version);
    b.manifest.hw_compat = r.hw_ids.iter().map(|s| s.to_string()).collect();
    b.manifest.channel = r.channel.into();
    b.manifest.requires = r.requires.map(|v| v.parse().unwrap());
    b.manifest.security_counter = r.security_counter;
    b.manifest.manifest_version = r.manifest_version;
    b.image_seed = format!("{}-{}-{}", r.line, r.channel, r.version);
    let signed = b.build();
    let m = &signed.manifest;
    let payload = m.to_payload().unwrap();
    let version = m.version.to_string();
    let requires = m.requires.as_ref().map(ToString::to_string);
    let hw_compat = serde_json::to_string(&m.hw_compat).unwrap();
    let payload_sha256 = Sha256Digest::of(&payload).to_string();
    let digests: Vec<String> = m.images.iter().map(|i| i.sha256.to_string()).collect();
    let images: Vec<NewReleaseImage<'_>> = m
        .images
        .iter()
        .zip(&digests)
        .map(|(img, sha256)| NewReleaseImage {
            name: &img.name,
            target: &img.target,
            sha256,
            length: img.length as i64,
        })
        .collect();

    let mut tx = t.app.db.begin().await.unwrap();
    for img in &images {
        // Shared by releases of the same seed: absent or already there.
        db::images::insert_if_absent(&mut tx, img.sha256, img.length as u64)
            .await
            .unwrap();
    }
    let new = NewRelease {
        product_line: r.line,
        channel: r.channel,
        version: &version,
        manifest_version: m.manifest_version as i64,
        security_counter: i64::from(m.security_counter),
        requires: requires.as_deref(),
        hw_compat: &hw_compat,
        envelope: &signed.envelope,
        payload_sha256: &payload_sha256,
        release_notes: None,
        free_for_all: r.free_for_all,
        published_at: r.published_at,
        published_by: "test",
        kind: m.kind().as_str(),
        advisory: None,
        cves: &[],
        mixed_reason: None,
        sbom: None,
    };
    let id = match db::releases::store(&mut tx, &new, &images).await.unwrap() {
        Stored::Inserted(id) => id,
        other => panic!("{}/{}/{version} not inserted: {other:?}", r.line, r.channel),
    };
    tx.commit().await.unwrap();
    t.app.catalogue_changed();
    (id, signed.envelope)
}

/// Yanks a stored release directly in the database (as the yank handler
/// does, without its audit record); the caller reloads the catalogue.
async fn yank(t: &TestApp, release_id: i64, at: OffsetDateTime, reason: &str) {
    let mut tx = t.app.db.begin().await.unwrap();
    assert!(
        db::releases::yank(&mut tx, release_id, at, reason)
            .await
            .unwrap(),
        "release {release_id} was not yanked before"
    );
    tx.commit().await.unwrap();
}

async fn contract(t: &TestApp, id: &str, serial: &str, kind: &str, starts: Date, ends: Date) {
    let mut tx = t.app.db.begin().await.unwrap();
    let row = ContractRow {
        id: id.into(),
        serial: serial.into(),
        kind: kind.into(),
        starts,
        ends,
        created_at: now(),
    };
    db::contracts::insert_contract(&mut tx, &row).await.unwrap();
    tx.commit().await.unwrap();
    t.app.device_changed(serial);
}

async fn licence(t: &TestApp, id: &str, serial: &str, ends: Option<Date>) {
    let mut tx = t.app.db.begin().await.unwrap();
    let row = LicenceRow {
        id: id.into(),
        serial: serial.into(),
        starts: today() - Duration::days(1000),
        ends,
    };
    db::contracts::insert_licence(&mut tx, &row).await.unwrap();
    tx.commit().await.unwrap();
    t.app.device_changed(serial);
}

// ---- requests ---------------------------------------------------------

fn body(serial: &str, hw_id: &str, current: &str) -> Value {
    json!({
        "serial": serial,
        "hw_id": hw_id,
        "current_version": current,
        "security_counter": 3,
        "root_version": 1,
    })
}

async fn check(t: &TestApp, token: &str, body: &Value) -> TestResponse {
    t.post_json("/v1/device/check", Some(token), body).await
}

/// A check that must answer 200; returns the JSON.
async fn check_ok(t: &TestApp, token: &str, body: &Value) -> Value {
    let r = check(t, token, body).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()
}

fn offered(answer: &Value) -> (&str, &str) {
    assert_eq!(answer["status"], "update_available", "{answer}");
    (
        answer["update"]["version"].as_str().unwrap(),
        answer["update"]["entitlement"]["code"].as_str().unwrap(),
    )
}

fn refused(answer: &Value) -> &str {
    assert_eq!(answer["status"], "not_entitled", "{answer}");
    assert!(answer.get("update").is_none(), "{answer}");
    answer["entitlement"]["code"].as_str().unwrap()
}

/// A world with the catalogue seeded and one device per model.
async fn world() -> (TestApp, Tokens) {
    let t = TestApp::with_config(|c| {
        // Flushes happen only when a test asks.
        c.last_seen_flush_ms = 3_600_000;
        c.poll_interval_secs = 1000;
        c.poll_jitter_percent = 10;
    })
    .await;
    seed_catalogue(&t).await;
    device(&t, "SN-4K", "enc-4k", "enc-4k-r2", "stable").await;
    device(&t, "SN-HD", "enc-hd", "enc-hd-r1", "stable").await;
    device(&t, "SN-SW", "studio-pro", "studio-x86", "stable").await;
    let tokens = Tokens {
        k4: t.device_token("SN-4K").await,
        hd: t.device_token("SN-HD").await,
        sw: t.device_token("SN-SW").await,
    };
    (t, tokens)
}

struct Tokens {
    k4: String,
    hd: String,
    sw: String,
}

// ---- the check --------------------------------------------------------

#[tokio::test]
async fn in_production_and_before_eol_are_offered() {
    let (t, tok) = world().await;
    release(&t, Rel::enc("2.1.0")).await;

    let a = check_ok(&t, &tok.k4, &body("SN-4K", "enc-4k-r2", "2.0.0")).await;
    assert_eq!(offered(&a), ("2.1.0", "in_production"));
    let u = &a["update"];
    assert_eq!(u["channel"], "stable");
    assert_eq!(u["stepping_stone"], false);
    assert!(u.get("target_version").is_none(), "{a}");
    assert!(
        u["entitlement"]["summary"]
            .as_str()
            .unwrap()
            .starts_with("Free upgrade")
    );
    assert!(u["entitlement"].get("explanation").is_none());
    let img = &u["images"][0];
    assert_eq!(img["name"], "firmware.img");
    assert_eq!(img["target"], "rootfs");
    assert_eq!(img["length"], 4096);
    let poll = a["poll_after_secs"].as_u64().unwrap();
    assert!((900..=1100).contains(&poll), "{poll}");
    assert_eq!(a["root_chain"], json!([]));

    let a = check_ok(&t, &tok.hd, &body("SN-HD", "enc-hd-r1", "2.0.0")).await;
    assert_eq!(offered(&a), ("2.1.0", "published_before_eol"));

    // Nothing newer than what runs.
    let a = check_ok(&t, &tok.k4, &body("SN-4K", "enc-4k-r2", "2.1.0")).await;
    assert_eq!(a["status"], "up_to_date");
    assert!(a.get("update").is_none() && a.get("entitlement").is_none());
}

#[tokio::test]
async fn after_eol_needs_an_active_service_contract() {
    let (t, tok) = world().await;
    release(
        &t,
        Rel {
            published_at: after_eol(),
            ..Rel::enc("2.2.0")
        },
    )
    .await;
    let req = body("SN-HD", "enc-hd-r1", "2.0.0");

    let a = check_ok(&t, &tok.hd, &req).await;
    assert_eq!(refused(&a), "eol_no_contract");
    let text = a.to_string();
    assert!(!text.contains("explanation"), "{text}");

    // Expired contracts and warranty extensions do not entitle.
    let old_start = today() - Duration::days(800);
    contract(
        &t,
        "SC-OLD",
        "SN-HD",
        "service_contract",
        old_start,
        today() - Duration::days(1),
    )
    .await;
    contract(
        &t,
        "WE-1",
        "SN-HD",
        "warranty_extension",
        old_start,
        today() + Duration::days(300),
    )
    .await;
    let a = check_ok(&t, &tok.hd, &req).await;
    assert_eq!(refused(&a), "eol_no_contract");
    assert!(
        !a.to_string().contains("SC-OLD"),
        "contract ids stay private"
    );

    contract(
        &t,
        "SC-1",
        "SN-HD",
        "service_contract",
        today() - Duration::days(10),
        today() + Duration::days(355),
    )
    .await;
    let a = check_ok(&t, &tok.hd, &req).await;
    assert_eq!(offered(&a), ("2.2.0", "service_contract"));
    assert!(!a.to_string().contains("SC-1"), "contract ids stay private");
}

#[tokio::test]
async fn eol_device_falls_back_to_the_newest_release_it_may_have() {
    let (t, tok) = world().await;
    release(&t, Rel::enc("2.1.0")).await;
    release(
        &t,
        Rel {
            published_at: after_eol(),
            ..Rel::enc("2.2.0")
        },
    )
    .await;
    let a = check_ok(&t, &tok.hd, &body("SN-HD", "enc-hd-r1", "2.0.0")).await;
    assert_eq!(offered(&a), ("2.1.0", "published_before_eol"));
    let a = check_ok(&t, &tok.k4, &body("SN-4K", "enc-4k-r2", "2.0.0")).await;
    assert_eq!(offered(&a), ("2.2.0", "in_production"));
}

#[tokio::test]
async fn free_for_all_is_offered_after_eol() {
    let (t, tok) = world().await;
    let (id, _) = release(
        &t,
        Rel {
            published_at: after_eol(),
            ..Rel::enc("2.2.0")
        },
    )
    .await;
    let req = body("SN-HD", "enc-hd-r1", "2.0.0");
    assert_eq!(
        refused(&check_ok(&t, &tok.hd, &req).await),
        "eol_no_contract"
    );

    // Marked free for all after publication: the snapshot reloads.
    let mut tx = t.app.db.begin().await.unwrap();
    db::releases::set_free_for_all(&mut tx, id, true)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    t.app.catalogue_changed();
    let a = check_ok(&t, &tok.hd, &req).await;
    assert_eq!(offered(&a), ("2.2.0", "free_for_all"));
}

#[tokio::test]
async fn software_licence_decides() {
    let (t, tok) = world().await;
    release(&t, Rel::studio("5.0.0")).await;
    let req = body("SN-SW", "studio-x86", "4.0.0");

    assert_eq!(refused(&check_ok(&t, &tok.sw, &req).await), "no_licence");

    // A licence that ended before the release was published.
    licence(&t, "LIC-OLD", "SN-SW", Some(today() - Duration::days(500))).await;
    let a = check_ok(&t, &tok.sw, &req).await;
    assert_eq!(refused(&a), "licence_expired");
    assert!(!a.to_string().contains("LIC-OLD"));

    // A licence running until next year covers it.
    licence(&t, "LIC-NEW", "SN-SW", Some(today() + Duration::days(365))).await;
    let a = check_ok(&t, &tok.sw, &req).await;
    assert_eq!(offered(&a), ("5.0.0", "licence_covers"));

    // A perpetual licence wins.
    licence(&t, "LIC-PERP", "SN-SW", None).await;
    let a = check_ok(&t, &tok.sw, &req).await;
    assert_eq!(offered(&a), ("5.0.0", "licence_perpetual"));
}

#[tokio::test]
async fn stepping_stone_leads_to_the_target() {
    let (t, tok) = world().await;
    release(&t, Rel::enc("2.0.0")).await;
    release(
        &t,
        Rel {
            requires: Some("2.0.0"),
            ..Rel::enc("3.0.0")
        },
    )
    .await;

    let a = check_ok(&t, &tok.k4, &body("SN-4K", "enc-4k-r2", "1.0.0")).await;
    assert_eq!(offered(&a).0, "2.0.0");
    assert_eq!(a["update"]["stepping_stone"], true);
    assert_eq!(a["update"]["target_version"], "3.0.0");

    let a = check_ok(&t, &tok.k4, &body("SN-4K", "enc-4k-r2", "2.0.0")).await;
    assert_eq!(offered(&a).0, "3.0.0");
    assert_eq!(a["update"]["stepping_stone"], false);
}

#[tokio::test]
async fn channels_are_kept_apart() {
    let (t, tok) = world().await;
    release(&t, Rel::enc("2.1.0")).await;
    release(
        &t,
        Rel {
            channel: "beta",
            ..Rel::enc("3.0.0-beta.1")
        },
    )
    .await;
    let stable = body("SN-4K", "enc-4k-r2", "2.0.0");
    let a = check_ok(&t, &tok.k4, &stable).await;
    assert_eq!(offered(&a).0, "2.1.0", "beta is not offered on stable");

    let mut beta = stable.clone();
    beta["channel"] = json!("beta");
    let a = check_ok(&t, &tok.k4, &beta).await;
    assert_eq!(offered(&a).0, "3.0.0-beta.1");
    assert_eq!(a["update"]["channel"], "beta");

    // A device registered on beta follows it without saying so.
    device(&t, "SN-BETA", "enc-4k", "enc-4k-r2", "beta").await;
    let token = t.device_token("SN-BETA").await;
    let a = check_ok(&t, &token, &body("SN-BETA", "enc-4k-r2", "2.0.0")).await;
    assert_eq!(offered(&a).0, "3.0.0-beta.1");
}

#[tokio::test]
async fn security_counter_and_hardware_filter_candidates() {
    let (t, tok) = world().await;
    release(&t, Rel::enc("2.1.0")).await;
    release(
        &t,
        Rel {
            hw_ids: vec!["enc-4k-r2"],
            ..Rel::enc("2.2.0")
        },
    )
    .await;
    // 2.2.0 is not signed for the HD model.
    let a = check_ok(&t, &tok.hd, &body("SN-HD", "enc-hd-r1", "2.0.0")).await;
    assert_eq!(offered(&a).0, "2.1.0");
    // A device whose counter is already above the releases' gets nothing.
    let mut req = body("SN-4K", "enc-4k-r2", "2.0.0");
    req["security_counter"] = json!(4);
    assert_eq!(check_ok(&t, &tok.k4, &req).await["status"], "up_to_date");
    // Nor one that has accepted a newer manifest version.
    let mut req = body("SN-4K", "enc-4k-r2", "2.0.0");
    req["manifest_version"] = json!(8);
    assert_eq!(check_ok(&t, &tok.k4, &req).await["status"], "up_to_date");
    req["manifest_version"] = json!(7);
    assert_eq!(offered(&check_ok(&t, &tok.k4, &req).await).0, "2.2.0");
}

#[tokio::test]
async fn yanked_release_is_no_longer_offered() {
    let (t, tok) = world().await;
    let (older, _) = release(&t, Rel::enc("2.1.0")).await;
    let (newer, _) = release(&t, Rel::enc("2.2.0")).await;
    let req = body("SN-4K", "enc-4k-r2", "2.0.0");
    assert_eq!(offered(&check_ok(&t, &tok.k4, &req).await).0, "2.2.0");

    yank(&t, newer, now(), "bricks").await;
    t.app.catalogue_changed();
    assert_eq!(offered(&check_ok(&t, &tok.k4, &req).await).0, "2.1.0");

    yank(
        &t,
        older,
        time::macros::datetime!(2026-01-01 00:00 UTC),
        "test",
    )
    .await;
    t.app.catalogue_changed();
    assert_eq!(check_ok(&t, &tok.k4, &req).await["status"], "up_to_date");
}

#[tokio::test]
async fn root_chain_brings_devices_up_to_the_latest_root() {
    let (t, tok) = world().await;
    let v2 = RootBuilder::standard()
        .next()
        .root_keys(&NEXT_ROOT_KEYS, 2)
        .signed_by(&["root-1", "root-2", "root-4", "root-5"])
        .build();
    let r = t
        .send(
            axum::http::Method::POST,
            "/v1/trust/roots",
            Some(&t.admin),
            &[],
            v2.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED);

    let r = check(&t, &tok.k4, &body("SN-4K", "enc-4k-r2", "2.0.0")).await;
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        root_chain: Vec<&'a RawValue>,
    }
    let a: Answer = serde_json::from_slice(&r.body).unwrap();
    assert_eq!(a.root_chain.len(), 1);
    assert_eq!(
        a.root_chain[0].get(),
        std::str::from_utf8(&v2).unwrap().trim_end(),
        "the root is served byte for byte"
    );

    let mut req = body("SN-4K", "enc-4k-r2", "2.0.0");
    req["root_version"] = json!(2);
    assert_eq!(check_ok(&t, &tok.k4, &req).await["root_chain"], json!([]));
}

#[tokio::test]
async fn manifest_is_served_byte_for_byte_and_verifies_on_the_device() {
    let (t, tok) = world().await;
    let (_, envelope) = release(&t, Rel::enc("2.1.0")).await;
    let r = check(&t, &tok.k4, &body("SN-4K", "enc-4k-r2", "2.0.0")).await;
    assert_eq!(r.status, StatusCode::OK);

    #[derive(serde::Deserialize)]
    struct Update<'a> {
        #[serde(borrow)]
        manifest: &'a RawValue,
    }
    #[derive(serde::Deserialize)]
    struct Answer<'a> {
        #[serde(borrow)]
        update: Update<'a>,
    }
    let a: Answer = serde_json::from_slice(&r.body).unwrap();
    let served = a.update.manifest.get();
    assert_eq!(served, std::str::from_utf8(&envelope).unwrap().trim_end());

    // The device's own engine accepts exactly what was served.
    let root = TrustedRoot::from_pinned(&RootBuilder::standard().build()).unwrap();
    let request = VerifyRequest {
        product_line: "encoders".into(),
        hw_id: Some("enc-4k-r2".into()),
        channel: Some("stable".into()),
        installed: Some(InstalledState {
            version: semver::Version::new(2, 0, 0),
            security_counter: 3,
            manifest_version: 7,
        }),
        clock: Clock::Trusted(FIXTURE_NOW),
        allow_downgrade: false,
    };
    let plan = firmup_client::verify_manifest(&root, &request, served.as_bytes()).unwrap();
    assert_eq!(plan.manifest.version.to_string(), "2.1.0");
}

#[tokio::test]
async fn image_urls_carry_a_grant_for_the_device() {
    let (t, tok) = world().await;
    release(&t, Rel::enc("2.1.0")).await;
    let a = check_ok(&t, &tok.k4, &body("SN-4K", "enc-4k-r2", "2.0.0")).await;
    let img = &a["update"]["images"][0];
    let sha: Sha256Digest = img["sha256"].as_str().unwrap().parse().unwrap();
    let url = img["url"].as_str().unwrap();
    let (path, query) = url.split_once('?').unwrap();
    assert_eq!(path, format!("/v1/images/{sha}"));
    let mut sub = None;
    let mut exp = None;
    let mut sig = None;
    for pair in query.split('&') {
        let (k, v) = pair.split_once('=').unwrap();
        match k {
            "sub" => sub = Some(v.to_string()),
            "exp" => exp = Some(v.parse::<i64>().unwrap()),
            "sig" => sig = Some(v.to_string()),
            other => panic!("unexpected parameter {other}"),
        }
    }
    let grant = GrantParams {
        sub: sub.unwrap(),
        exp: exp.unwrap(),
        sig: sig.unwrap(),
    };
    assert_eq!(grant.sub, "SN-4K");
    let now = now().unix_timestamp();
    assert!(
        (grant.exp - now - t.app.config.grant_ttl_secs as i64).abs() <= 5,
        "grant_ttl_secs from now"
    );
    t.app.grants.verify(&sha, &grant, now).unwrap();
    // Bound to this device's serial.
    let other = GrantParams {
        sub: "SN-HD".into(),
        ..grant
    };
    assert!(t.app.grants.verify(&sha, &other, now).is_err());
}

#[tokio::test]
async fn last_seen_is_written_on_flush_not_per_check() {
    let (t, tok) = world().await;
    type Row = (
        Option<OffsetDateTime>,
        Option<OffsetDateTime>,
        Option<String>,
        Option<i64>,
        Option<i64>,
    );
    async fn row(t: &TestApp) -> Row {
        let d = db::devices::find(&t.app.db, "SN-4K")
            .await
            .unwrap()
            .expect("SN-4K is provisioned")
            .device;
        (
            d.first_seen,
            d.last_seen,
            d.current_version,
            d.security_counter,
            d.root_version,
        )
    }
    let started = now() - Duration::milliseconds(1);
    let mut req = body("SN-4K", "enc-4k-r2", "2.0.0");
    check_ok(&t, &tok.k4, &req).await;
    assert_eq!(
        row(&t).await,
        (None, None, None, None, None),
        "no write per check"
    );

    assert_eq!(t.app.last_seen.flush().await.unwrap(), 1);
    let (first, last, version, counter, root) = row(&t).await;
    let first = first.expect("first_seen set");
    assert!(first >= started && last == Some(first));
    assert_eq!(
        (version.as_deref(), counter, root),
        (Some("2.0.0"), Some(3), Some(1))
    );

    // Two more checks coalesce into one write; first_seen stays.
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    req["current_version"] = json!("2.0.1");
    check_ok(&t, &tok.k4, &req).await;
    req["current_version"] = json!("2.0.2");
    req["security_counter"] = json!(5);
    check_ok(&t, &tok.k4, &req).await;
    assert_eq!(row(&t).await.2.as_deref(), Some("2.0.0"));
    assert_eq!(t.app.last_seen.flush().await.unwrap(), 1);
    let (first2, last2, version, counter, _) = row(&t).await;
    assert_eq!(first2, Some(first));
    assert!(last2.unwrap() > first);
    assert_eq!((version.as_deref(), counter), (Some("2.0.2"), Some(5)));
    assert_eq!(t.app.last_seen.dropped(), 0);
    assert_eq!(t.app.last_seen.flush().await.unwrap(), 0, "nothing left");
}

#[tokio::test]
async fn warm_check_reads_no_database() {
    // The guarantee behind "no SELECT on the hot path": with warm caches
    // the check answers even with the database gone.
    let (t, tok) = world().await;
    release(&t, Rel::enc("2.1.0")).await;
    let req = body("SN-4K", "enc-4k-r2", "2.0.0");
    let warm = check_ok(&t, &tok.k4, &req).await;
    t.app.db.close().await;
    let cold_db = check_ok(&t, &tok.k4, &req).await;
    assert_eq!(offered(&cold_db), offered(&warm));
    // A catalogue change while the database is down: the reload fails and
    // checks keep answering from the last good snapshot.
    t.app.catalogue_changed();
    let stale = check_ok(&t, &tok.k4, &req).await;
    assert_eq!(offered(&stale), offered(&warm));
}

#[tokio::test]
async fn check_errors_have_stable_codes() {
    let (t, tok) = world().await;
    let req = body("SN-4K", "enc-4k-r2", "2.0.0");

    let r = t.post_json("/v1/device/check", None, &req).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::UNAUTHORIZED, "missing_token")
    );

    let r = check(&t, &t.technician, &req).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::FORBIDDEN, "wrong_role")
    );
    let r = check(&t, &t.admin, &req).await;
    assert_eq!(r.error_code(), "wrong_role", "admins do not act as devices");

    let r = check(&t, &tok.hd, &req).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::FORBIDDEN, "token_serial_mismatch")
    );

    let r = check(&t, &tok.k4, &body("SN-4K", "enc-4k-r2", "two")).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid_version")
    );

    let r = check(&t, &tok.k4, &body("SN-4K", "enc-hd-r1", "2.0.0")).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::CONFLICT, "hw_id_mismatch")
    );

    let ghost = t.device_token("SN-GHOST").await;
    let r = check(&t, &ghost, &body("SN-GHOST", "enc-4k-r2", "2.0.0")).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::NOT_FOUND, "unknown_serial")
    );
}

// ---- reports ----------------------------------------------------------

async fn report(t: &TestApp, token: &str, body: Value) -> TestResponse {
    t.post_json("/v1/device/reports", Some(token), &body).await
}

#[tokio::test]
async fn reports_are_stored_and_summarised() {
    let (t, tok) = world().await;
    release(&t, Rel::enc("2.1.0")).await;
    let mut tokens = vec![
        (String::from("SN-4K"), tok.k4.clone()),
        ("SN-HD".into(), tok.hd.clone()),
    ];
    for i in 0..3 {
        let serial = format!("SN-R{i}");
        device(&t, &serial, "enc-4k", "enc-4k-r2", "stable").await;
        let token = t.device_token(&serial).await;
        tokens.push((serial, token));
    }
    let send = |i: usize, stage: &str, reason: Option<&str>| {
        let (serial, token) = tokens[i].clone();
        let mut b = json!({ "serial": serial, "version": "2.1.0", "stage": stage });
        if let Some(r) = reason {
            b["reason_code"] = json!(r);
        }
        let t = &t;
        async move { report(t, &token, b).await }
    };
    // Device 0 installs; 1 fails then installs; 2 fails; 3 rolls back; 4 is downloading.
    for (i, stage, reason) in [
        (0, "downloading", None),
        (0, "installing", None),
        (0, "installed", None),
        (1, "failed", Some("image_hash_mismatch")),
        (1, "installed", None),
        (2, "failed", Some("image_hash_mismatch")),
        (3, "installed", None),
        (3, "rolled_back", Some("boot_failed")),
        (4, "downloading", None),
    ] {
        let r = send(i, stage, reason).await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&r.body)
        );
        assert!(r.json()["id"].as_i64().unwrap() > 0);
    }

    // `installed` records the running version right away.
    let v = db::reports::reported_state(&t.app.db, "SN-4K")
        .await
        .unwrap()
        .expect("SN-4K is provisioned")
        .current_version;
    assert_eq!(v.as_deref(), Some("2.1.0"));
    let stored = db::reports::count(&t.app.db).await.unwrap();
    assert_eq!(stored, 9);
    // The whole audit log (the page is not full, so nothing is left out).
    let limit = 1000;
    let log = t
        .get(&format!("/v1/admin/audit?limit={limit}"), Some(&t.admin))
        .await
        .json();
    let log = log.as_array().expect("audit list");
    assert!(log.len() < limit, "{} records", log.len());
    let audited = log
        .iter()
        .filter(|e| e["action"].as_str().unwrap().contains("report"))
        .count();
    assert_eq!(audited, 0, "device telemetry is not audited");

    let uri = "/v1/product-lines/encoders/releases/stable/2.1.0/reports";
    for token in [&t.release_engineer, &t.technician, &t.admin] {
        let r = t.get(uri, Some(token)).await;
        assert_eq!(r.status, StatusCode::OK);
    }
    let s = t.get(uri, Some(&t.release_engineer)).await.json();
    assert_eq!(
        (
            &s["installed"],
            &s["failed"],
            &s["rolled_back"],
            &s["in_progress"]
        ),
        (&json!(2), &json!(1), &json!(1), &json!(1)),
        "{s}"
    );
    assert_eq!(
        s["by_stage"],
        json!({"downloading": 2, "installing": 1, "installed": 3, "failed": 2, "rolled_back": 1})
    );
    assert_eq!(
        s["failures_by_reason"],
        json!({"image_hash_mismatch": 2, "boot_failed": 1})
    );

    let r = t.get(uri, Some(&tok.k4)).await;
    assert_eq!(r.error_code(), "wrong_role");
    let r = t
        .get(
            "/v1/product-lines/encoders/releases/stable/9.9.9/reports",
            Some(&t.admin),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::NOT_FOUND, "unknown_release")
    );
    let r = t
        .get(
            "/v1/product-lines/encoders/releases/stable/nine/reports",
            Some(&t.admin),
        )
        .await;
    assert_eq!(r.error_code(), "invalid_version");
}

#[tokio::test]
async fn report_errors_have_stable_codes() {
    let (t, tok) = world().await;
    let (id, _) = release(&t, Rel::enc("2.1.0")).await;
    let ok = json!({ "serial": "SN-4K", "version": "2.1.0", "stage": "installing" });

    let mut b = ok.clone();
    b["stage"] = json!("failed");
    let r = report(&t, &tok.k4, b.clone()).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "reason_code_required")
    );
    b["stage"] = json!("rolled_back");
    assert_eq!(
        report(&t, &tok.k4, b.clone()).await.error_code(),
        "reason_code_required"
    );
    b["reason_code"] = json!("Boot-Failed");
    assert_eq!(
        report(&t, &tok.k4, b.clone()).await.error_code(),
        "invalid_reason_code"
    );
    b["reason_code"] = json!("x".repeat(65));
    assert_eq!(
        report(&t, &tok.k4, b.clone()).await.error_code(),
        "invalid_reason_code"
    );

    let mut b = ok.clone();
    b["detail"] = json!("d".repeat(1001));
    assert_eq!(
        report(&t, &tok.k4, b.clone()).await.error_code(),
        "detail_too_long"
    );
    b["detail"] = json!("é".repeat(1000));
    assert_eq!(
        report(&t, &tok.k4, b).await.status,
        StatusCode::CREATED,
        "1000 characters fit"
    );

    let mut b = ok.clone();
    b["stage"] = json!("done");
    assert_eq!(report(&t, &tok.k4, b).await.error_code(), "invalid_stage");

    let mut b = ok.clone();
    b["version"] = json!("2.1");
    assert_eq!(report(&t, &tok.k4, b).await.error_code(), "invalid_version");

    let mut b = ok.clone();
    b["version"] = json!("2.5.0");
    let r = report(&t, &tok.k4, b).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::NOT_FOUND, "unknown_release")
    );
    let mut b = ok.clone();
    b["channel"] = json!("beta");
    assert_eq!(report(&t, &tok.k4, b).await.error_code(), "unknown_release");

    let r = report(&t, &tok.hd, ok.clone()).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::FORBIDDEN, "token_serial_mismatch")
    );
    let r = report(&t, &t.technician, ok.clone()).await;
    assert_eq!(r.error_code(), "wrong_role");
    let ghost = t.device_token("SN-GHOST").await;
    let mut b = ok.clone();
    b["serial"] = json!("SN-GHOST");
    assert_eq!(report(&t, &ghost, b).await.error_code(), "unknown_serial");

    // Yanked releases still take reports.
    yank(
        &t,
        id,
        time::macros::datetime!(2026-01-01 00:00 UTC),
        "test",
    )
    .await;
    t.app.catalogue_changed();
    assert_eq!(report(&t, &tok.k4, ok).await.status, StatusCode::CREATED);
}

#[tokio::test]
async fn installed_report_is_not_undone_by_an_older_queued_check() {
    let (t, tok) = world().await;
    release(&t, Rel::enc("2.1.0")).await;
    // Checked on 2.0.0 (queued), then installed 2.1.0 before the flush.
    check_ok(&t, &tok.k4, &body("SN-4K", "enc-4k-r2", "2.0.0")).await;
    let r = report(
        &t,
        &tok.k4,
        json!({ "serial": "SN-4K", "version": "2.1.0", "stage": "installed" }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    t.app.last_seen.flush().await.unwrap();
    let state = db::reports::reported_state(&t.app.db, "SN-4K")
        .await
        .unwrap()
        .expect("SN-4K is provisioned");
    let (version, last) = (state.current_version, state.last_seen);
    assert_eq!(version.as_deref(), Some("2.1.0"));
    assert!(last.is_some());
}

// ---- the technician's view ---------------------------------------------

#[tokio::test]
async fn entitlement_view_explains_every_release() {
    let (t, tok) = world().await;
    release(&t, Rel::enc("2.1.0")).await;
    release(
        &t,
        Rel {
            published_at: after_eol(),
            ..Rel::enc("2.2.0")
        },
    )
    .await;
    release(
        &t,
        Rel {
            channel: "beta",
            ..Rel::enc("3.0.0-beta.1")
        },
    )
    .await;
    contract(
        &t,
        "SC-OLD",
        "SN-HD",
        "service_contract",
        today() - Duration::days(800),
        today() - Duration::days(400),
    )
    .await;
    // The device has checked in on 2.0.0.
    check_ok(&t, &tok.hd, &body("SN-HD", "enc-hd-r1", "2.0.0")).await;
    t.app.last_seen.flush().await.unwrap();

    let v = t
        .get("/v1/devices/SN-HD/entitlement", Some(&t.technician))
        .await;
    assert_eq!(
        v.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&v.body)
    );
    let v = v.json();
    assert_eq!(v["channel"], "stable");
    assert_eq!(v["current_version"], "2.0.0");
    assert_eq!(v["eol"], eol().to_string());
    assert_eq!(
        (&v["status"], &v["version"]),
        (&json!("update_available"), &json!("2.1.0"))
    );
    let rs = v["releases"].as_array().unwrap();
    assert_eq!(rs.len(), 2, "{v}");
    let (newest, older) = (&rs[0], &rs[1]);
    assert_eq!(newest["version"], "2.2.0");
    assert_eq!(newest["offered"], false);
    assert_eq!(newest["decision"]["code"], "eol_no_contract");
    let why = newest["decision"]["explanation"].as_str().unwrap();
    assert!(
        why.contains("SC-OLD") && why.contains("Encoder HD"),
        "{why}"
    );
    assert_eq!(older["version"], "2.1.0");
    assert_eq!(older["offered"], true);
    assert_eq!(older["decision"]["code"], "published_before_eol");

    let v = t
        .get("/v1/devices/SN-HD/entitlement?channel=beta", Some(&t.admin))
        .await
        .json();
    assert_eq!(v["releases"][0]["version"], "3.0.0-beta.1");

    let r = t.get("/v1/devices/SN-HD/entitlement", Some(&tok.hd)).await;
    assert_eq!(
        r.error_code(),
        "wrong_role",
        "explanations are not for devices"
    );
    let r = t
        .get("/v1/devices/SN-HD/entitlement", Some(&t.release_engineer))
        .await;
    assert_eq!(r.error_code(), "wrong_role");
    let r = t
        .get("/v1/devices/NOPE/entitlement", Some(&t.technician))
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::NOT_FOUND, "unknown_serial")
    );
}

// ---- through the real publish and download paths -------------------------

#[tokio::test]
async fn published_release_is_offered_downloadable_and_withdrawn_by_yank() {
    let (t, tok) = world().await;
    let signed = ReleaseBuilder::standard().build();
    let sha = Sha256Digest::of(&signed.image);
    let len = signed.image.len().to_string();
    let up = t
        .send(
            axum::http::Method::PUT,
            &format!("/v1/uploads/{sha}"),
            Some(&t.release_engineer),
            &[("content-length", len.as_str())],
            signed.image.clone(),
        )
        .await;
    assert!(
        up.status.is_success(),
        "{}",
        String::from_utf8_lossy(&up.body)
    );
    let p = t
        .send(
            axum::http::Method::POST,
            "/v1/product-lines/encoders/releases",
            Some(&t.release_engineer),
            &[("content-type", "application/json")],
            signed.envelope.clone(),
        )
        .await;
    assert_eq!(
        p.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&p.body)
    );

    // The publish path bumps the generation; the next check sees it.
    let req = body("SN-4K", "enc-4k-r2", "2.0.0");
    let a = check_ok(&t, &tok.k4, &req).await;
    assert_eq!(offered(&a), ("2.1.0", "in_production"));

    // The granted URL downloads the signed image, without a token, and resumes.
    let url = a["update"]["images"][0]["url"].as_str().unwrap();
    let r = t.get(url, None).await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(&r.body[..], &signed.image[..]);
    let r = t
        .send(
            axum::http::Method::GET,
            url,
            None,
            &[("range", "bytes=1000-")],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(&r.body[..], &signed.image[1000..]);

    let y = t
        .post_json(
            "/v1/product-lines/encoders/releases/stable/2.1.0/yank",
            Some(&t.release_engineer),
            &json!({ "reason": "bricks units" }),
        )
        .await;
    assert_eq!(
        y.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&y.body)
    );
    assert_eq!(check_ok(&t, &tok.k4, &req).await["status"], "up_to_date");
}

#[tokio::test]
async fn a_device_cannot_flood_reports() {
    let (t, tok) = world().await;
    release(&t, Rel::enc("2.1.0")).await;
    let body = json!({ "serial": "SN-4K", "version": "2.1.0", "stage": "downloading" });
    for _ in 0..firmup_server::controllers::device::report::MAX_REPORTS_PER_RELEASE {
        assert_eq!(
            report(&t, &tok.k4, body.clone()).await.status,
            StatusCode::CREATED
        );
    }
    let r = report(&t, &tok.k4, body).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::TOO_MANY_REQUESTS, "too_many_reports")
    );
}

// ---- repair pushes ----------------------------------------------------

async fn push(t: &TestApp, token: &str, serial: &str, body: Value) -> TestResponse {
    t.post_json(&format!("/v1/devices/{serial}/push"), Some(token), &body)
        .await
}

/// Opens an RMA for `serial` at the desk; its number.
async fn open_rma(t: &TestApp, serial: &str) -> String {
    let r = t
        .post_json(
            "/v1/rmas",
            Some(&t.technician),
            &json!({
                "serial": serial,
                "customer": { "name": "Ana Duarte", "email": "ana@example.com" },
                "fault": "no video after power loss",
            }),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()["number"].as_str().unwrap().to_owned()
}

/// The number of the first RMA a test opens (numbers run per year).
fn first_rma() -> String {
    format!("RMA-{}-000001", now().year())
}

fn push_body(version: Option<&str>) -> Value {
    let mut b = json!({ "rma": first_rma(), "reason": "no video after power loss" });
    if let Some(v) = version {
        b["version"] = json!(v);
    }
    b
}

async fn pushes_of(t: &TestApp, serial: &str) -> Value {
    let r = t
        .get(&format!("/v1/devices/{serial}/pushes"), Some(&t.technician))
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    r.json()["pushes"].clone()
}

#[tokio::test]
async fn a_push_offers_a_discontinued_device_a_release_until_it_is_installed() {
    let (t, tok) = world().await;
    assert_eq!(open_rma(&t, "SN-HD").await, first_rma());
    release(&t, Rel::enc("2.1.0")).await;
    release(
        &t,
        Rel {
            published_at: after_eol(),
            ..Rel::enc("2.2.0")
        },
    )
    .await;
    release(
        &t,
        Rel {
            published_at: after_eol(),
            ..Rel::enc("2.3.0")
        },
    )
    .await;
    let req = body("SN-HD", "enc-hd-r1", "2.1.0");
    assert_eq!(
        refused(&check_ok(&t, &tok.hd, &req).await),
        "eol_no_contract"
    );

    let r = push(&t, &t.technician, "SN-HD", push_body(Some("2.2.0"))).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let p = r.json();
    assert_eq!(p["state"], "active");
    assert_eq!(p["version"], "2.2.0");
    assert_eq!(p["technician"], "test-technician");
    assert_eq!(p["rma"], first_rma().as_str());
    let push_id = p["id"].as_str().unwrap().to_owned();
    let expires = OffsetDateTime::parse(
        p["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let ttl = expires - now();
    assert!(ttl > Duration::days(7) - Duration::minutes(1) && ttl <= Duration::days(7));

    // The pushed release, not the newer 2.3.0, and nothing that names who
    // pushed it or why.
    let a = check_ok(&t, &tok.hd, &req).await;
    assert_eq!(offered(&a), ("2.2.0", "repair_grant"));
    let text = a.to_string();
    for private in ["RMA-", "test-technician", push_id.as_str(), "power loss"] {
        assert!(!text.contains(private), "{private} leaked: {text}");
    }
    // Technicians see the reasoning, the device view shows the push.
    let e = t
        .get("/v1/devices/SN-HD/entitlement", Some(&t.technician))
        .await
        .json();
    assert!(e.to_string().contains(&push_id), "{e}");
    let v = t.get("/v1/devices/SN-HD", Some(&t.technician)).await.json();
    assert_eq!(v["active_push"]["id"], push_id.as_str());
    assert_eq!(v["model_eol"], eol().to_string());
    // The view carries the same reasoning for every release.
    assert_eq!(v["entitlement"]["status"], "update_available");
    assert_eq!(v["entitlement"]["version"], "2.2.0");
    assert_eq!(v["entitlement"]["releases"], e["releases"], "{v}");
    let codes: Vec<&str> = e["releases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["decision"]["code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"repair_grant"), "{codes:?}");
    // A release engineer sees the device, not the reasoning.
    let v = t
        .get("/v1/devices/SN-HD", Some(&t.release_engineer))
        .await
        .json();
    assert_eq!(v["serial"], "SN-HD");
    assert!(v["entitlement"].is_null(), "{v}");

    // One active push per device.
    let again = push(&t, &t.technician, "SN-HD", push_body(None)).await;
    assert_eq!(again.status, StatusCode::CONFLICT);
    assert_eq!(again.error_code(), "push_exists");

    // The device installs it: the push is done, and nothing beyond what the
    // device may have is offered any more.
    let r = report(
        &t,
        &tok.hd,
        json!({ "serial": "SN-HD", "version": "2.2.0", "stage": "installed" }),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED);
    let list = pushes_of(&t, "SN-HD").await;
    assert_eq!(list[0]["state"], "done", "{list}");
    assert_eq!(list[0]["done_version"], "2.2.0");
    assert_eq!(list[0]["ended_by"], "device");
    let a = check_ok(&t, &tok.hd, &body("SN-HD", "enc-hd-r1", "2.2.0")).await;
    assert_eq!(refused(&a), "eol_no_contract");
    let v = t.get("/v1/devices/SN-HD", Some(&t.technician)).await.json();
    assert!(v["active_push"].is_null(), "{v}");
    assert_eq!(v["reports"][0]["stage"], "installed");

    let mut tx = t.app.db.begin().await.unwrap();
    assert_eq!(
        db::audit::count_action(&mut tx, "device.push")
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn a_push_of_the_newest_release_takes_any_newer_one() {
    let (t, tok) = world().await;
    assert_eq!(open_rma(&t, "SN-HD").await, first_rma());
    for v in ["2.2.0", "2.3.0"] {
        release(
            &t,
            Rel {
                published_at: after_eol(),
                ..Rel::enc(v)
            },
        )
        .await;
    }
    let r = push(&t, &t.technician, "SN-HD", push_body(None)).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert!(r.json()["version"].is_null());
    let a = check_ok(&t, &tok.hd, &body("SN-HD", "enc-hd-r1", "2.0.0")).await;
    assert_eq!(offered(&a), ("2.3.0", "repair_grant"));
}

#[tokio::test]
async fn a_cancelled_or_expired_push_entitles_nothing() {
    let (t, tok) = world().await;
    assert_eq!(open_rma(&t, "SN-HD").await, first_rma());
    release(
        &t,
        Rel {
            published_at: after_eol(),
            ..Rel::enc("2.2.0")
        },
    )
    .await;
    let req = body("SN-HD", "enc-hd-r1", "2.0.0");
    assert_eq!(
        push(&t, &t.technician, "SN-HD", push_body(Some("2.2.0")))
            .await
            .status,
        StatusCode::CREATED
    );
    assert_eq!(
        offered(&check_ok(&t, &tok.hd, &req).await).1,
        "repair_grant"
    );

    let r = t
        .send(
            axum::http::Method::DELETE,
            "/v1/devices/SN-HD/push",
            Some(&t.technician),
            &[],
            axum::body::Body::empty(),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    assert_eq!(r.json()["state"], "cancelled");
    assert_eq!(r.json()["ended_by"], "test-technician");
    assert_eq!(
        refused(&check_ok(&t, &tok.hd, &req).await),
        "eol_no_contract"
    );
    let r = t
        .send(
            axum::http::Method::DELETE,
            "/v1/devices/SN-HD/push",
            Some(&t.technician),
            &[],
            axum::body::Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
    assert_eq!(r.error_code(), "no_active_push");

    // A push that runs out stops entitling at once, and a new one may be made.
    assert_eq!(
        push(&t, &t.technician, "SN-HD", push_body(Some("2.2.0")))
            .await
            .status,
        StatusCode::CREATED
    );
    let mut tx = t.app.db.begin().await.unwrap();
    db::pushes::set_expiry(&mut tx, "SN-HD", now() - Duration::seconds(1))
        .await
        .unwrap();
    tx.commit().await.unwrap();
    t.app.device_changed("SN-HD");
    let a = check_ok(&t, &tok.hd, &req).await;
    assert_eq!(refused(&a), "eol_no_contract");
    assert_eq!(pushes_of(&t, "SN-HD").await[0]["state"], "expired");
    let r = push(&t, &t.technician, "SN-HD", push_body(Some("2.2.0"))).await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let states: Vec<String> = pushes_of(&t, "SN-HD")
        .await
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["state"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(states, ["active", "expired", "cancelled"]);
    let mut tx = t.app.db.begin().await.unwrap();
    assert_eq!(
        db::audit::count_action(&mut tx, "device.push_cancel")
            .await
            .unwrap(),
        1
    );
}

#[tokio::test]
async fn push_refusals_have_stable_codes_and_change_nothing() {
    let (t, tok) = world().await;
    assert_eq!(open_rma(&t, "SN-HD").await, first_rma());
    release(&t, Rel::enc("2.1.0")).await;
    release(
        &t,
        Rel {
            hw_ids: vec!["enc-4k-r2"],
            published_at: after_eol(),
            ..Rel::enc("2.2.0")
        },
    )
    .await;
    release(
        &t,
        Rel {
            security_counter: 1,
            published_at: after_eol(),
            ..Rel::enc("2.3.0")
        },
    )
    .await;
    let (yanked, _) = release(
        &t,
        Rel {
            published_at: after_eol(),
            ..Rel::enc("2.4.0")
        },
    )
    .await;
    yank(&t, yanked, now(), "bricks the decoder").await;
    release(
        &t,
        Rel {
            channel: "beta",
            published_at: after_eol(),
            ..Rel::enc("2.5.0-beta.1")
        },
    )
    .await;
    // The device reports 2.1.0 with counter 3.
    check_ok(&t, &tok.hd, &body("SN-HD", "enc-hd-r1", "2.1.0")).await;
    t.app.last_seen.flush().await.unwrap();

    // An RMA of another unit, and one of this unit that was cancelled.
    let other_rma = open_rma(&t, "SN-4K").await;
    let cancelled_rma = open_rma(&t, "SN-HD").await;
    let r = t
        .post_json(
            &format!("/v1/rmas/{cancelled_rma}/state"),
            Some(&t.technician),
            &json!({ "state": "cancelled" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK);

    let cases: Vec<(&str, Value, StatusCode, &str)> = vec![
        (
            "SN-NONE",
            push_body(Some("2.1.0")),
            StatusCode::NOT_FOUND,
            "unknown_serial",
        ),
        (
            "SN-HD",
            push_body(Some("9.9.9")),
            StatusCode::NOT_FOUND,
            "unknown_release",
        ),
        (
            "SN-HD",
            push_body(Some("2.2.0")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "push_hw_incompatible",
        ),
        (
            "SN-HD",
            push_body(Some("2.3.0")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "push_below_security_counter",
        ),
        (
            "SN-HD",
            push_body(Some("2.4.0")),
            StatusCode::CONFLICT,
            "release_yanked",
        ),
        (
            "SN-HD",
            push_body(Some("2.1.0")),
            StatusCode::UNPROCESSABLE_ENTITY,
            "push_not_newer",
        ),
        (
            "SN-HD",
            push_body(None),
            StatusCode::UNPROCESSABLE_ENTITY,
            "push_nothing_newer",
        ),
        (
            "SN-HD",
            json!({ "version": "2.5.0-beta.1", "channel": "beta", "rma": first_rma(), "reason": "x" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "push_wrong_channel",
        ),
        (
            "SN-HD",
            json!({ "version": "2.1.0", "product_line": "studio", "rma": first_rma(), "reason": "x" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "push_wrong_product_line",
        ),
        (
            "SN-HD",
            json!({ "version": "2.2.0", "rma": "", "reason": "x" }),
            StatusCode::BAD_REQUEST,
            "invalid_rma",
        ),
        (
            "SN-HD",
            json!({ "version": "2.2.0", "rma": "RMA-1", "reason": "x" }),
            StatusCode::BAD_REQUEST,
            "invalid_rma",
        ),
        (
            "SN-HD",
            json!({ "version": "2.2.0", "rma": format!("RMA-{}-000099", now().year()), "reason": "x" }),
            StatusCode::NOT_FOUND,
            "unknown_rma",
        ),
        (
            "SN-HD",
            json!({ "version": "2.2.0", "rma": other_rma, "reason": "x" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "rma_other_device",
        ),
        (
            "SN-HD",
            json!({ "version": "2.2.0", "rma": cancelled_rma, "reason": "x" }),
            StatusCode::CONFLICT,
            "rma_finished",
        ),
        (
            "SN-HD",
            json!({ "version": "2.2.0", "rma": first_rma(), "reason": "\u{202e}x" }),
            StatusCode::BAD_REQUEST,
            "invalid_reason",
        ),
        (
            "SN-HD",
            push_body(Some("two")),
            StatusCode::BAD_REQUEST,
            "invalid_version",
        ),
    ];
    for (serial, body, status, code) in cases {
        let r = push(&t, &t.technician, serial, body.clone()).await;
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (status, code),
            "{body}"
        );
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.len() > 20, "{code}: {message}");
    }
    // Pushing is for technicians (and admins), never devices or release
    // engineers.
    for token in [&tok.hd, &t.release_engineer] {
        let r = push(&t, token, "SN-HD", push_body(Some("2.1.0"))).await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(pushes_of(&t, "SN-HD").await, json!([]));
    let mut tx = t.app.db.begin().await.unwrap();
    assert_eq!(
        db::audit::count_action(&mut tx, "device.push")
            .await
            .unwrap(),
        0
    );
}
