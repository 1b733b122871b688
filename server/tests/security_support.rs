//! Security support under the Cyber Resilience Act (docs/CRA.md), through
//! the HTTP API on the configured database: support periods per line and
//! model with their rules, the `security_support` entitlement for a
//! discontinued model, the end of support per unit, the check's support
//! answer, signed kinds refused at publish when incomplete, and owners'
//! choices about automatic security updates counted per release.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use common::{assert_error, assert_status};
use firmup_client::ReleaseKind;
use firmup_client::manifest::MANIFEST_PAYLOAD_TYPE;
use firmup_fixtures::ReleaseBuilder;
use firmup_fixtures::release::{sign_raw, test_advisory};
use firmup_server::db;
use firmup_server::domain::support::{OnMarket, PolicySource, SupportPolicy, SupportWindow};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

const CVE: &str = "CVE-2026-41001";

fn days_ago(days: i64) -> String {
    firmup_server::provisioning::format_date(
        OffsetDateTime::now_utc().date() - Duration::days(days),
    )
}

/// The encoders line with model E4K discontinued a year ago, and units
/// sold `sold_days_ago`.
async fn discontinued(units: &[(&str, i64)]) -> TestApp {
    let t = TestApp::new().await;
    t.encoders_e4k().await;
    let r = t
        .put_json(
            "/v1/admin/models/E4K/eol",
            Some(&t.admin),
            &json!({ "eol": days_ago(365) }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    if units.is_empty() {
        return t;
    }
    let devices: Vec<Value> = units
        .iter()
        .map(|(serial, sold)| {
            json!({ "serial": serial, "model_id": "E4K", "hw_id": "enc-4k-r2",
                    "sale_date": days_ago(*sold) })
        })
        .collect();
    let r = t
        .post_json(
            "/v1/admin/devices",
            Some(&t.admin),
            &json!({ "issue_tokens": false, "devices": devices }),
        )
        .await;
    assert_status(&r, StatusCode::CREATED);
    t
}

/// A release of `version` with `manifest_version`, no upgrade path, and
/// its own image.
fn release(version: &str, manifest_version: u64) -> ReleaseBuilder {
    let mut b = ReleaseBuilder::standard().version(version);
    b.manifest.requires = None;
    b.manifest.manifest_version = manifest_version;
    b.image_seed = format!("security-support-{version}");
    b
}

async fn publish(t: &TestApp, b: ReleaseBuilder) {
    let r = t.publish_encoders(&b.build(), "").await;
    assert_status(&r, StatusCode::CREATED);
}

async fn check(t: &TestApp, serial: &str, current: &str) -> Value {
    let token = t.device_token(serial).await;
    let r = t
        .post_json(
            "/v1/device/check",
            Some(&token),
            &json!({ "serial": serial, "hw_id": "enc-4k-r2", "current_version": current,
                     "security_counter": 3, "root_version": 1 }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    r.json()
}

#[tokio::test]
async fn a_discontinued_model_is_offered_the_security_fix_and_refused_the_feature_release() {
    let t = discontinued(&[("SEC-1", 400)]).await;
    publish(&t, release("2.1.0", 7).security(&[CVE])).await;
    publish(&t, release("2.2.0", 8)).await;

    // From 2.0.0 the newest release it may have is the security fix.
    let answer = check(&t, "SEC-1", "2.0.0").await;
    assert_eq!(answer["status"], "update_available", "{answer}");
    assert_eq!(answer["update"]["version"], "2.1.0");
    assert_eq!(answer["update"]["entitlement"]["code"], "security_support");
    let window = SupportWindow::new(
        OnMarket::of(
            Some(OffsetDateTime::now_utc().date() - Duration::days(400)),
            OffsetDateTime::UNIX_EPOCH,
        ),
        SupportPolicy::resolve(None, None),
    );
    let ends = firmup_server::domain::support::fmt_date(window.ends);
    assert_eq!(answer["security_support"]["ends"], ends.as_str());
    assert!(
        answer["security_support"].get("warning").is_none(),
        "{answer}"
    );

    // The staff view (judged from 2.0.0) explains the decision with the support window.
    let r = t
        .get("/v1/devices/SEC-1/entitlement", Some(&t.technician))
        .await;
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert!(text.contains("security_support"), "{text}");
    assert!(
        text.contains(&format!("security support runs until {ends}")),
        "{text}"
    );

    // Having it, the feature release is refused as before.
    let answer = check(&t, "SEC-1", "2.1.0").await;
    assert_eq!(answer["status"], "not_entitled", "{answer}");
    assert_eq!(answer["entitlement"]["code"], "eol_no_contract");
}

#[tokio::test]
async fn security_support_ends_per_unit_and_the_feature_rules_decide_after_it() {
    // Sold over five years ago: support has ended for this unit only.
    let t = discontinued(&[("OLD-1", 5 * 366 + 10), ("NEW-1", 30)]).await;
    publish(&t, release("2.1.0", 7).security(&[CVE])).await;

    let old = check(&t, "OLD-1", "2.0.0").await;
    assert_eq!(old["status"], "not_entitled", "{old}");
    assert_eq!(old["entitlement"]["code"], "eol_no_contract");
    let warning = old["security_support"]["warning"].as_str().unwrap();
    assert!(warning.contains("ended on"), "{warning}");

    let new = check(&t, "NEW-1", "2.0.0").await;
    assert_eq!(new["update"]["entitlement"]["code"], "security_support");

    let r = t
        .get("/v1/devices/OLD-1/support", Some(&t.technician))
        .await;
    assert_status(&r, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["active"], false, "{v}");
    assert_eq!(v["start_source"], "sale");
    assert_eq!(v["policy_source"], "default");
    assert_eq!(v["months"], 60);
    assert!(
        v["explanation"].as_str().unwrap().contains("legal minimum"),
        "{v}"
    );
}

#[tokio::test]
async fn the_check_warns_within_the_configured_days_of_the_end() {
    let t = TestApp::with_config(|c| c.support_warning_days = 400).await;
    t.encoders_e4k().await;
    let r = t
        .post_json(
            "/v1/admin/devices",
            Some(&t.admin),
            &json!({ "issue_tokens": false, "devices": [
                { "serial": "WARN-1", "model_id": "E4K", "hw_id": "enc-4k-r2",
                  "sale_date": days_ago(5 * 365 - 200) }]}),
        )
        .await;
    assert_status(&r, StatusCode::CREATED);
    let answer = check(&t, "WARN-1", "2.0.0").await;
    let warning = answer["security_support"]["warning"].as_str().unwrap();
    assert!(warning.contains("ends on"), "{warning}");
}

#[tokio::test]
async fn support_periods_under_five_years_need_a_justification_and_models_override_lines() {
    let t = discontinued(&[("POL-1", 10)]).await;
    let before = t.get("/v1/models/E4K/support", Some(&t.technician)).await;
    assert_status(&before, StatusCode::OK);
    assert_eq!(before.json()["source"], "default");

    let r = t
        .put_json(
            "/v1/admin/product-lines/encoders/support",
            Some(&t.admin),
            &json!({ "months": 36 }),
        )
        .await;
    assert_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "support_period_too_short",
    );
    let after = t.get("/v1/models/E4K/support", Some(&t.technician)).await;
    assert_eq!(
        after.json(),
        before.json(),
        "a refused period changed nothing"
    );

    for bad in [
        json!({ "months": 0 }),
        json!({ "months": 601 }),
        json!({ "months": 36, "justification": " " }),
        json!({ "months": null, "justification": "why" }),
    ] {
        let r = t
            .put_json(
                "/v1/admin/product-lines/encoders/support",
                Some(&t.admin),
                &bad,
            )
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_support_period");
    }
    let r = t
        .put_json(
            "/v1/admin/product-lines/encoders/support",
            Some(&t.technician),
            &json!({ "months": 72 }),
        )
        .await;
    assert_status(&r, StatusCode::FORBIDDEN);

    let r = t
        .put_json(
            "/v1/admin/product-lines/encoders/support",
            Some(&t.admin),
            &json!({ "months": 36, "justification": "rental units, replaced after 3 years" }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    let v = t
        .get("/v1/models/E4K/support", Some(&t.technician))
        .await
        .json();
    assert_eq!(
        (v["months"].as_i64(), v["source"].as_str()),
        (Some(36), Some("product_line"))
    );
    assert_eq!(v["justification"], "rental units, replaced after 3 years");

    let r = t
        .put_json(
            "/v1/admin/models/E4K/support",
            Some(&t.admin),
            &json!({ "months": 84 }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    let v = r.json();
    assert_eq!(
        (v["months"].as_i64(), v["source"].as_str()),
        (Some(84), Some("model"))
    );
    let window = SupportWindow::new(
        OnMarket::of(
            Some(OffsetDateTime::now_utc().date() - Duration::days(10)),
            OffsetDateTime::UNIX_EPOCH,
        ),
        SupportPolicy {
            months: 84,
            justification: None,
            source: PolicySource::Model,
        },
    );
    let ends = firmup_server::domain::support::fmt_date(window.ends);
    assert_eq!(v["last_unit_ends"], ends.as_str());
    let d = t
        .get("/v1/devices/POL-1/support", Some(&t.technician))
        .await
        .json();
    assert_eq!(d["ends"], ends.as_str(), "{d}");
    assert_eq!(d["policy_source"], "model");
    // The check path's snapshot follows the declaration.
    let answer = check(&t, "POL-1", "2.0.0").await;
    assert_eq!(answer["security_support"]["ends"], ends.as_str());
    let r = t
        .put_json(
            "/v1/admin/models/NOPE/support",
            Some(&t.admin),
            &json!({ "months": 84 }),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "unknown_model");
}

/// Signs `manifest` as JSON without the library's checks, as a careless
/// or hostile tool might.
fn sign_unchecked(b: &ReleaseBuilder, edit: impl FnOnce(&mut Value)) -> Vec<u8> {
    let image = b.image();
    let m = b.complete_manifest(&image);
    let mut v = serde_json::to_value(&m).unwrap();
    edit(&mut v);
    sign_raw(
        MANIFEST_PAYLOAD_TYPE,
        &serde_json::to_vec(&v).unwrap(),
        &b.signers,
    )
}

/// A change to a manifest's JSON before it is signed.
type Edit = Box<dyn FnOnce(&mut Value)>;

#[tokio::test]
async fn incomplete_security_kinds_are_refused_at_publish_and_nothing_is_stored() {
    let t = discontinued(&[]).await;
    let b = release("2.1.0", 7);
    let cases: [(&str, Edit); 3] = [
        (
            "advisory_missing",
            Box::new(|v: &mut Value| v["kind"] = json!("security")),
        ),
        (
            "mixed_reason_missing",
            Box::new(|v: &mut Value| {
                v["kind"] = json!("mixed");
                v["advisory"] = serde_json::to_value(test_advisory(&[CVE])).unwrap();
            }),
        ),
        (
            "invalid_field",
            Box::new(|v: &mut Value| {
                v["kind"] = json!("security");
                v["advisory"] = serde_json::to_value(test_advisory(&["CVE-26-1"])).unwrap();
            }),
        ),
    ];
    for (code, edit) in cases {
        let envelope = sign_unchecked(&b, edit);
        let r = t
            .send(
                Method::POST,
                "/v1/product-lines/encoders/releases",
                Some(&t.release_engineer),
                &[("content-type", "application/json")],
                envelope,
            )
            .await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, code);
    }
    assert_eq!(db::releases::count(&t.app.db).await.unwrap(), 0);

    // Complete, it is stored with its kind and CVE ids.
    publish(&t, release("2.1.0", 7).mixed(&[CVE])).await;
    let row = db::releases::find(&t.app.db, "encoders", "stable", "2.1.0")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(row.kind, ReleaseKind::Mixed.as_str());
    assert!(row.mixed_reason.unwrap().contains("TEST-ONLY"));
    assert!(row.advisory.unwrap().contains(CVE));
}

#[tokio::test]
async fn owners_choices_about_automatic_security_updates_are_counted_per_release() {
    let t = discontinued(&[("OPT-1", 10), ("OPT-2", 10), ("OPT-3", 10)]).await;
    publish(&t, release("2.1.0", 7).security(&[CVE])).await;
    publish(&t, release("2.2.0", 8)).await;
    let until = (OffsetDateTime::now_utc() + Duration::days(14))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let report = |serial: &'static str, body: Value| {
        let t = &t;
        async move {
            let token = t.device_token(serial).await;
            let mut b = json!({ "serial": serial, "version": "2.1.0" });
            b.as_object_mut()
                .unwrap()
                .extend(body.as_object().unwrap().clone());
            t.post_json("/v1/device/reports", Some(&token), &b).await
        }
    };
    let r = report("OPT-1", json!({ "stage": "opted_out" })).await;
    assert_status(&r, StatusCode::CREATED);
    assert_eq!(r.json()["id"], Value::Null);
    // Reported again (a restart), still one device.
    let r = report("OPT-1", json!({ "stage": "opted_out" })).await;
    assert_status(&r, StatusCode::CREATED);
    let r = report(
        "OPT-2",
        json!({ "stage": "postponed", "postponed_until": until }),
    )
    .await;
    assert_status(&r, StatusCode::CREATED);
    let r = report("OPT-3", json!({ "stage": "postponed" })).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_postponed_until");
    let r = report(
        "OPT-3",
        json!({ "stage": "postponed", "postponed_until": "next week" }),
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_postponed_until");
    let r = report(
        "OPT-3",
        json!({ "stage": "installed", "postponed_until": until }),
    )
    .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_postponed_until");
    let token = t.device_token("OPT-3").await;
    let r = t
        .post_json(
            "/v1/device/reports",
            Some(&token),
            &json!({ "serial": "OPT-3", "version": "2.2.0", "stage": "opted_out" }),
        )
        .await;
    assert_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "not_a_security_release",
    );

    let r = t
        .get(
            "/v1/product-lines/encoders/releases/stable/2.1.0/reports",
            Some(&t.release_engineer),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    let v = r.json();
    assert_eq!(
        (v["opted_out"].as_i64(), v["postponed"].as_i64()),
        (Some(1), Some(1)),
        "{v}"
    );
    assert_eq!(v["installed"], 0);
}

async fn delete(t: &TestApp, version: &str) -> common::TestResponse {
    t.send(
        Method::DELETE,
        &format!("/v1/product-lines/encoders/releases/stable/{version}"),
        Some(&t.release_engineer),
        &[],
        Vec::new(),
    )
    .await
}

async fn yank(t: &TestApp, version: &str) {
    let r = t
        .post_json(
            &format!("/v1/product-lines/encoders/releases/stable/{version}/yank"),
            Some(&t.release_engineer),
            &json!({ "reason": "withdrawn" }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
}

async fn release_id(t: &TestApp, version: &str) -> Option<i64> {
    db::releases::find(&t.app.db, "encoders", "stable", version)
        .await
        .unwrap()
        .map(|r| r.id)
}

#[tokio::test]
async fn deleting_a_security_release_inside_its_retention_is_refused_and_nothing_changes() {
    // A unit sold 400 days ago: its support ends in about 3.9 years.
    let t = discontinued(&[("SEC-1", 400)]).await;
    publish(&t, release("2.1.0", 7).security(&[CVE])).await;
    let id = release_id(&t, "2.1.0").await.unwrap();

    // Inside ten years of publication: refused, yanked or not.
    let r = delete(&t, "2.1.0").await;
    assert_error(&r, StatusCode::CONFLICT, "retention_active");
    yank(&t, "2.1.0").await;
    let r = delete(&t, "2.1.0").await;
    assert_error(&r, StatusCode::CONFLICT, "retention_active");
    let ten_years =
        firmup_server::domain::support::retained_until(true, OffsetDateTime::now_utc(), None)
            .unwrap();
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert!(
        text.contains(&firmup_server::domain::support::fmt_date(ten_years)),
        "{text}"
    );

    // Published eleven years ago, it is still kept while the unit's
    // support runs: the later of the two ends retention.
    let eleven_years_ago = OffsetDateTime::now_utc() - Duration::days(11 * 366);
    db::releases::set_published_at(&t.app.db, id, eleven_years_ago)
        .await
        .unwrap();
    let r = delete(&t, "2.1.0").await;
    assert_error(&r, StatusCode::CONFLICT, "retention_active");
    let text = String::from_utf8_lossy(&r.body).to_string();
    let support = t.get("/v1/models/E4K/support", Some(&t.admin)).await.json();
    let last_unit_ends = support["last_unit_ends"].as_str().unwrap();
    assert!(text.contains(last_unit_ends), "{text} / {support}");

    // Nothing changed: the release, its manifest and its image are there.
    assert_eq!(release_id(&t, "2.1.0").await, Some(id));
    let r = t
        .get(
            "/v1/product-lines/encoders/releases/stable/2.1.0/manifest",
            Some(&t.technician),
        )
        .await;
    assert_status(&r, StatusCode::OK);
}

#[tokio::test]
async fn a_release_outside_retention_is_deleted_once_yanked_and_the_deletion_is_audited() {
    // No unit on the market: only the ten years count.
    let t = discontinued(&[]).await;
    publish(&t, release("2.1.0", 7).security(&[CVE])).await;
    publish(&t, release("2.2.0", 8)).await;

    // A feature release has no retention, but must be yanked first.
    let r = delete(&t, "2.2.0").await;
    assert_error(&r, StatusCode::CONFLICT, "release_not_yanked");
    assert!(release_id(&t, "2.2.0").await.is_some());
    yank(&t, "2.2.0").await;
    let r = delete(&t, "2.2.0").await;
    assert_status(&r, StatusCode::NO_CONTENT);
    assert_eq!(release_id(&t, "2.2.0").await, None);
    let r = delete(&t, "2.2.0").await;
    assert_error(&r, StatusCode::NOT_FOUND, "unknown_release");

    // A security release ten years and a day old, yanked: deleted.
    let id = release_id(&t, "2.1.0").await.unwrap();
    let old = OffsetDateTime::now_utc() - Duration::days(10 * 366);
    db::releases::set_published_at(&t.app.db, id, old)
        .await
        .unwrap();
    yank(&t, "2.1.0").await;
    let r = delete(&t, "2.1.0").await;
    assert_status(&r, StatusCode::NO_CONTENT);
    assert_eq!(release_id(&t, "2.1.0").await, None);
    let r = t
        .get("/v1/product-lines/encoders/releases", Some(&t.admin))
        .await;
    assert_eq!(r.json(), json!([]));

    let audit = t.get("/v1/admin/audit", Some(&t.admin)).await;
    let text = String::from_utf8_lossy(&audit.body).to_string();
    assert!(text.contains("encoders/stable/2.1.0"), "{text}");
    assert!(text.contains("encoders/stable/2.2.0"), "{text}");
}

async fn fetch(t: &TestApp, serial: &str, version: &str) -> common::TestResponse {
    let token = t.device_token(serial).await;
    t.post_json(
        "/v1/device/fetch",
        Some(&token),
        &json!({ "serial": serial, "hw_id": "enc-4k-r2", "version": version,
                 "root_version": 1 }),
    )
    .await
}

#[tokio::test]
async fn a_yanked_security_release_stays_downloadable_for_a_device_that_asks_for_its_version() {
    let t = discontinued(&[("SEC-1", 400)]).await;
    let fix = release("2.1.0", 7).security(&[CVE]);
    let image = fix.build().image;
    publish(&t, fix).await;
    publish(&t, release("2.2.0", 8)).await;
    yank(&t, "2.1.0").await;

    // Yanked, it is no longer offered.
    let answer = check(&t, "SEC-1", "2.0.0").await;
    assert_eq!(answer["status"], "not_entitled", "{answer}");

    // Asked for by version, it comes with its signed envelope and a
    // download grant, and the bytes download.
    let r = fetch(&t, "SEC-1", "2.1.0").await;
    assert_status(&r, StatusCode::OK);
    let body = r.json();
    assert_eq!(body["yanked"], true, "{body}");
    assert_eq!(body["update"]["version"], "2.1.0");
    assert_eq!(body["update"]["entitlement"]["code"], "security_support");
    let manifest = t
        .get(
            "/v1/product-lines/encoders/releases/stable/2.1.0/manifest",
            Some(&t.technician),
        )
        .await;
    assert_eq!(
        serde_json::to_vec(&body["update"]["manifest"]).unwrap(),
        serde_json::to_vec(&manifest.json()).unwrap()
    );
    let url = body["update"]["images"][0]["url"].as_str().unwrap();
    let r = t.get(url, None).await;
    assert_status(&r, StatusCode::OK);
    assert_eq!(r.body.as_ref(), image.as_slice());

    // A technician downloads the same bytes with a staff token.
    let sha = body["update"]["images"][0]["sha256"].as_str().unwrap();
    let r = t
        .get(&format!("/v1/images/{sha}"), Some(&t.technician))
        .await;
    assert_status(&r, StatusCode::OK);
    assert_eq!(r.body.as_ref(), image.as_slice());

    // The feature release stays refused to the discontinued unit, and an
    // unknown version is not found.
    let r = fetch(&t, "SEC-1", "2.2.0").await;
    assert_error(&r, StatusCode::FORBIDDEN, "not_entitled");
    let text = String::from_utf8_lossy(&r.body).to_string();
    assert!(text.contains("eol_no_contract"), "{text}");
    let r = fetch(&t, "SEC-1", "9.9.9").await;
    assert_error(&r, StatusCode::NOT_FOUND, "unknown_release");
}

#[tokio::test]
async fn fetching_a_release_for_other_hardware_is_refused() {
    let t = discontinued(&[("SEC-1", 400)]).await;
    let r = t
        .put_json(
            "/v1/admin/models/E4K1",
            Some(&t.admin),
            &json!({ "product_line": "encoders", "name": "E4K encoder, first revision",
                     "hw_ids": ["enc-4k-r1"] }),
        )
        .await;
    assert_status(&r, StatusCode::CREATED);
    let mut other = release("2.1.0", 7).security(&[CVE]);
    other.manifest.hw_compat = vec!["enc-4k-r1".into()];
    publish(&t, other).await;
    let r = fetch(&t, "SEC-1", "2.1.0").await;
    assert_error(&r, StatusCode::CONFLICT, "hw_incompatible");
    let token = t.device_token("SEC-1").await;
    let r = t
        .post_json(
            "/v1/device/fetch",
            Some(&token),
            &json!({ "serial": "SEC-1", "hw_id": "enc-4k-r9", "version": "2.1.0",
                     "root_version": 1 }),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "hw_id_mismatch");
}
