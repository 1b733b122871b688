//! Data-protection requests through the HTTP API (docs/PRIVACY.md): an
//! erasure leaves the serial, the owner's email and the client address in
//! no table (checked by dumping every table, not a list of columns), the
//! audit trail shows the pseudonym; exports hold everything; retention
//! prunes exactly what is past its period on the job's clock; a
//! restricted unit is not recorded; contacts are corrected; logs carry no
//! serial, token, grant or verification code.

mod common;

use std::io::Write as _;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::TestApp;
use common::{assert_error, assert_status};
use firmup_client::Sha256Digest;
use firmup_fixtures::ReleaseBuilder;
use firmup_server::db;
use firmup_server::domain::privacy::Retention;
use firmup_server::storage::StorageKey;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

const SERIAL: &str = "PRIV-7781";
const OTHER: &str = "KEEP-5512";
const CODE: &str = "7QX2-M9KD-41PA";
const EMAIL: &str = "ana.privata@example.com";
const NAME: &str = "Ana Privata";
const PHONE: &str = "+351 21 555 0199";
const ADDRESS: &str = "203.0.113.77";

/// One product line, one model, the unit the owner asks about and another
/// that must stay as it is; 2.1.0 published.
async fn world() -> TestApp {
    let t = TestApp::new().await;
    t.encoders_e4k().await;
    let sold = firmup_server::provisioning::format_date(
        OffsetDateTime::now_utc().date() - Duration::days(100),
    );
    let r = t
        .post_json(
            "/v1/admin/devices",
            Some(&t.admin),
            &json!({ "issue_tokens": false, "devices": [
                { "serial": SERIAL, "model_id": "E4K", "hw_id": "enc-4k-r2",
                  "verification_code": CODE, "sale_date": sold, "region": "EU" },
                { "serial": OTHER, "model_id": "E4K", "hw_id": "enc-4k-r2" },
            ]}),
        )
        .await;
    assert_status(&r, StatusCode::CREATED);
    let mut b = ReleaseBuilder::standard().version("2.1.0");
    b.manifest.requires = None;
    b.image_seed = "privacy-2.1.0".into();
    let r = t.publish_encoders(&b.build(), "").await;
    assert!(
        r.status.is_success(),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    t
}

fn check_body(serial: &str) -> Value {
    json!({ "serial": serial, "hw_id": "enc-4k-r2", "current_version": "2.0.0",
            "security_counter": 3, "root_version": 1 })
}

/// Everything a unit's life leaves behind: registration from an address,
/// checks, reports naming the serial, tags, a contract, an RMA with the
/// owner's contact and a file. Returns the device token, the RMA number
/// and the file's sha256.
async fn history(t: &TestApp) -> (String, String, Sha256Digest) {
    let token = t.device_token(SERIAL).await;
    let r = t
        .post_json_from(
            format!("{ADDRESS}:40000").parse().unwrap(),
            "/v1/registrations",
            &json!({ "serial": SERIAL, "verification_code": CODE }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    let r = t
        .post_json("/v1/device/check", Some(&token), &check_body(SERIAL))
        .await;
    assert_status(&r, StatusCode::OK);
    assert_eq!(r.json()["update"]["version"], "2.1.0");
    t.app.last_seen.flush().await.unwrap();
    for (stage, detail) in [
        ("failed", format!("{SERIAL}: watchdog fired during install")),
        ("installed", "ok".to_owned()),
    ] {
        let mut body = json!({ "serial": SERIAL, "version": "2.1.0", "stage": stage,
                               "detail": detail });
        if stage == "failed" {
            body["reason_code"] = json!("boot_timeout");
        }
        let r = t.post_json("/v1/device/reports", Some(&token), &body).await;
        assert_status(&r, StatusCode::CREATED);
    }
    let r = t
        .put_json(
            &format!("/v1/admin/devices/{SERIAL}/tags"),
            Some(&t.admin),
            &json!({ "tags": ["lab"] }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    let r = t
        .post_json(
            &format!("/v1/admin/devices/{SERIAL}/contracts"),
            Some(&t.admin),
            &json!({ "id": "C-PRIV-1", "kind": "service_contract",
                     "starts": "2026-01-01", "ends": "2030-12-31" }),
        )
        .await;
    assert_status(&r, StatusCode::CREATED);
    let r = t
        .post_json(
            "/v1/rmas",
            Some(&t.technician),
            &json!({
                "serial": SERIAL,
                "customer": { "name": NAME, "email": EMAIL, "phone": PHONE },
                "fault": format!("{NAME} says {SERIAL} shows no video"),
            }),
        )
        .await;
    assert_status(&r, StatusCode::CREATED);
    let number = r.json()["number"].as_str().unwrap().to_owned();
    let file = format!("bench notes for {SERIAL}, call {PHONE}").into_bytes();
    let sha = Sha256Digest::of(&file);
    let r = t
        .send(
            Method::POST,
            &format!("/v1/rmas/{number}/attachments?name=notes.txt"),
            Some(&t.technician),
            &[],
            file,
        )
        .await;
    assert_status(&r, StatusCode::CREATED);
    (token, number, sha)
}

/// Cancels the RMA `number`, as the desk does before an erasure.
async fn cancel(t: &TestApp, number: &str) {
    let r = t
        .post_json(
            &format!("/v1/rmas/{number}/state"),
            Some(&t.technician),
            &json!({ "state": "cancelled" }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
}

/// `GET /v1/privacy/export?{query}` with `token`.
async fn export(t: &TestApp, query: &str, token: &str) -> common::TestResponse {
    t.get(&format!("/v1/privacy/export?{query}"), Some(token))
        .await
}

/// Every table's rows as text, per table.
async fn dump(t: &TestApp) -> Vec<(String, Vec<String>)> {
    db::privacy::dump_every_table(&t.app.db).await.unwrap()
}

/// The tables whose rows differ between two dumps, other than the
/// background jobs' claims (`job_runs`), which tick on their own.
fn changed(a: &[(String, Vec<String>)], b: &[(String, Vec<String>)]) -> Vec<String> {
    let mut out = vec![];
    for ((ta, ra), (tb, rb)) in a.iter().zip(b) {
        assert_eq!(ta, tb, "the same tables");
        if ra != rb && ta != "job_runs" {
            out.push(format!("{ta}: {ra:?} -> {rb:?}"));
        }
    }
    assert_eq!(a.len(), b.len());
    out
}

/// The tables and rows in which `needle` appears.
fn holding(dump: &[(String, Vec<String>)], needle: &str) -> Vec<String> {
    dump.iter()
        .flat_map(|(table, rows)| {
            rows.iter()
                .filter(|r| r.contains(needle))
                .map(move |r| format!("{table}: {r}"))
        })
        .collect()
}

async fn erase(t: &TestApp, serial: &str, token: &str) -> common::TestResponse {
    t.post_json(
        &format!("/v1/privacy/devices/{serial}/erase"),
        Some(token),
        &json!({ "reason": format!("owner's request of 2026-11-30 about {serial}") }),
    )
    .await
}

#[tokio::test]
async fn erasure_leaves_no_serial_email_or_address_in_any_table() {
    let t = world().await;
    let (token, number, sha) = history(&t).await;
    // An export by email leaves an audit record, which must not keep it.
    let r = export(&t, &format!("email={EMAIL}"), &t.admin).await;
    assert_status(&r, StatusCode::OK);
    let before = dump(&t).await;
    // The dump sees what there is to erase (else the test below proves
    // nothing).
    for needle in [SERIAL, EMAIL, NAME] {
        assert!(
            !holding(&before, needle).is_empty(),
            "{needle} is held before"
        );
    }
    for table in [
        "devices",
        "reports",
        "rmas",
        "audit_log",
        "tokens",
        "contracts",
        "device_tags",
    ] {
        assert!(
            before
                .iter()
                .any(|(t, rows)| t == table && !rows.is_empty()),
            "{table} has rows"
        );
    }

    // Refusals change nothing.
    let r = erase(&t, SERIAL, &t.technician).await;
    assert_error(&r, StatusCode::FORBIDDEN, "wrong_role");
    let r = erase(&t, "NO-SUCH-1", &t.admin).await;
    assert_error(&r, StatusCode::NOT_FOUND, "unknown_serial");
    let r = erase(&t, SERIAL, &t.admin).await;
    assert_error(&r, StatusCode::CONFLICT, "rma_open");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&number)
    );
    assert_eq!(
        changed(&before, &dump(&t).await),
        Vec::<String>::new(),
        "refused erasures change nothing"
    );

    cancel(&t, &number).await;
    let r = erase(&t, SERIAL, &t.admin).await;
    assert_status(&r, StatusCode::OK);
    let answer = r.json();
    assert_eq!(answer["outcome"], "erased");
    let pseudonym = answer["pseudonym"].as_str().unwrap().to_owned();
    assert!(pseudonym.starts_with("erased-"), "{pseudonym}");
    assert_eq!(answer["changed"]["rmas"], 1);
    assert_eq!(answer["changed"]["attachments_deleted"], 1);
    assert_eq!(answer["changed"]["reports"], 2);
    assert!(answer["changed"]["tokens_revoked"].as_u64().unwrap() >= 1);

    let after = dump(&t).await;
    for needle in [SERIAL, EMAIL, NAME, PHONE, ADDRESS, "203.0.113."] {
        assert_eq!(
            holding(&after, needle),
            Vec::<String>::new(),
            "{needle} is gone"
        );
    }
    // The other unit is untouched; history stays under the pseudonym.
    assert!(!holding(&after, OTHER).is_empty());
    let audit_targets: Vec<String> = after
        .iter()
        .filter(|(t, _)| t == "audit_log")
        .flat_map(|(_, rows)| rows.iter())
        .filter_map(|r| serde_json::from_str::<Value>(r).ok())
        .map(|r| r["target"].as_str().unwrap_or_default().to_owned())
        .collect();
    let device_target = format!("device/{pseudonym}");
    for action in [
        "device.register",
        "contract.create",
        "device.tags",
        "privacy.erase",
    ] {
        let hits = after
            .iter()
            .filter(|(t, _)| t == "audit_log")
            .flat_map(|(_, rows)| rows.iter())
            .filter(|r| r.contains(action) && r.contains(&pseudonym))
            .count();
        assert!(hits >= 1, "the audit record {action} names the pseudonym");
    }
    assert!(audit_targets.contains(&device_target), "{audit_targets:?}");
    let row = db::devices::find(&t.app.db, &pseudonym).await.unwrap();
    let row = row
        .expect("the unit's row stays under its pseudonym")
        .device;
    assert_eq!(row.model_id, "E4K");
    assert!(row.registered_at.is_none(), "the registration is deleted");
    assert!(
        row.verification_hash.is_none(),
        "the verification code is removed"
    );
    let reports: usize = after
        .iter()
        .filter(|(t, _)| t == "reports")
        .map(|(_, rows)| rows.iter().filter(|r| r.contains(&pseudonym)).count())
        .sum();
    assert_eq!(reports, 2, "fleet statistics keep the reports");

    // The file's bytes are gone; the token no longer works.
    assert_eq!(
        t.app
            .storage
            .len(StorageKey::attachment(sha))
            .await
            .unwrap(),
        None
    );
    let r = t
        .post_json("/v1/device/check", Some(&token), &check_body(SERIAL))
        .await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED);

    // Again: answered clearly, nothing changes.
    let r = erase(&t, SERIAL, &t.admin).await;
    assert_status(&r, StatusCode::OK);
    assert_eq!(r.json()["outcome"], "already_erased");
    assert_eq!(r.json()["pseudonym"], pseudonym.as_str());
    let r = erase(&t, &pseudonym, &t.admin).await;
    assert_eq!(r.json()["outcome"], "already_erased");
    assert_eq!(
        changed(&after, &dump(&t).await),
        Vec::<String>::new(),
        "a second erasure changes nothing"
    );
    let r = export(&t, &format!("serial={SERIAL}"), &t.admin).await;
    assert_error(&r, StatusCode::NOT_FOUND, "device_erased");
}

#[tokio::test]
async fn an_export_holds_everything_about_a_unit_or_an_owner() {
    let t = world().await;
    let (_token, number, _) = history(&t).await;
    let r = export(&t, &format!("serial={SERIAL}"), &t.technician).await;
    assert_error(&r, StatusCode::FORBIDDEN, "wrong_role");
    let r = export(&t, "", &t.admin).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_query");
    let r = export(&t, "email=nobody@example.com", &t.admin).await;
    assert_error(&r, StatusCode::NOT_FOUND, "unknown_owner");
    let r = export(&t, "serial=NO-SUCH-1", &t.admin).await;
    assert_error(&r, StatusCode::NOT_FOUND, "unknown_serial");

    let r = export(&t, &format!("serial={SERIAL}"), &t.admin).await;
    assert_status(&r, StatusCode::OK);
    let doc = r.json();
    assert_eq!(doc["format"], "firmup-personal-data/1");
    let d = &doc["devices"][0];
    assert_eq!(d["device"]["serial"], SERIAL);
    assert_eq!(d["device"]["region"], "EU");
    assert!(d["device"]["registered_at"].is_string());
    assert_eq!(d["reports"].as_array().unwrap().len(), 2);
    assert_eq!(d["rmas"][0]["customer_email"], EMAIL);
    assert_eq!(d["rmas"][0]["number"], number.as_str());
    assert!(!d["rma_events"].as_array().unwrap().is_empty());
    assert_eq!(d["rma_attachments"][0]["name"], "notes.txt");
    assert_eq!(d["contracts"][0]["id"], "C-PRIV-1");
    assert_eq!(d["tags"][0]["tag"], "lab");
    let tokens = d["tokens"].as_array().unwrap();
    assert!(!tokens.is_empty());
    assert!(
        tokens.iter().all(|t| t.get("token_hash").is_none()),
        "no secrets"
    );
    let actions: Vec<&str> = d["audit"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|a| a["action"].as_str())
        .collect();
    for a in [
        "device.register",
        "rma.open",
        "contract.create",
        "device.tags",
    ] {
        assert!(actions.contains(&a), "{a} in {actions:?}");
    }
    // Nothing of the other unit.
    assert!(!r.json().to_string().contains(OTHER));

    // By the owner's email (any case): the same unit.
    let r = export(&t, &format!("email={}", EMAIL.to_uppercase()), &t.admin).await;
    assert_status(&r, StatusCode::OK);
    assert_eq!(r.json()["devices"][0]["device"]["serial"], SERIAL);
    let mut tx = t.app.db.begin().await.unwrap();
    assert_eq!(
        db::audit::count_action(&mut tx, "privacy.export")
            .await
            .unwrap(),
        2,
        "each export is audited"
    );
}

#[tokio::test]
async fn retention_prunes_exactly_what_is_past_its_period() {
    let t = world().await;
    let (_token, number, _) = history(&t).await;
    cancel(&t, &number).await;
    let now = OffsetDateTime::now_utc();
    // Two more reports, 40 and 20 days old.
    let release_id = db::reports::release_id(&t.app.db, "encoders", "stable", "2.1.0")
        .await
        .unwrap()
        .unwrap();
    let mut tx = t.app.db.begin().await.unwrap();
    for days in [40, 20] {
        db::reports::insert(
            &mut tx,
            &db::reports::NewReport {
                serial: OTHER,
                release_id,
                version: "2.1.0",
                stage: "downloading",
                reason_code: None,
                detail: None,
                at: now - Duration::days(days),
            },
        )
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    let periods = Retention {
        reports_days: 30,
        check_ins_days: 365,
        audit_details_days: 1095,
        rma_contacts_days: 1095,
    };
    let prune = |at: OffsetDateTime| firmup_server::retention::prune(&t.app.db, at, periods);

    // Now: only the 40-day-old report is past 30 days.
    let p = prune(now).await.unwrap();
    assert_eq!(
        (p.reports, p.check_ins, p.audit_details, p.rma_contacts),
        (1, 0, 0, 0)
    );
    assert_eq!(db::reports::count(&t.app.db).await.unwrap(), 3);
    // Again at the same time: nothing more.
    assert_eq!(prune(now).await.unwrap(), Default::default());

    // 364 days on: the other reports are past their period, the check-in
    // record is not yet.
    let p = prune(now + Duration::days(364)).await.unwrap();
    assert_eq!((p.reports, p.check_ins), (3, 0));
    let d = db::devices::find(&t.app.db, SERIAL)
        .await
        .unwrap()
        .unwrap()
        .device;
    assert!(d.last_seen.is_some());
    // 366 days on: the check-in record goes.
    let p = prune(now + Duration::days(366)).await.unwrap();
    assert_eq!(p.check_ins, 1, "one unit has a check-in record");
    let d = db::devices::find(&t.app.db, SERIAL)
        .await
        .unwrap()
        .unwrap()
        .device;
    assert!(d.last_seen.is_none() && d.first_seen.is_none());
    assert_eq!(
        d.current_version.as_deref(),
        Some("2.1.0"),
        "firmware state stays"
    );

    // 1096 days on: audit details and the cancelled RMA's contact go; the
    // records themselves stay.
    let audits_before = db::audit::list(&t.app.db, 1000, None).await.unwrap().len();
    let p = prune(now + Duration::days(1096)).await.unwrap();
    assert!(p.audit_details > 0);
    assert_eq!(p.rma_contacts, 1);
    let audits = db::audit::list(&t.app.db, 1000, None).await.unwrap();
    assert_eq!(audits.len(), audits_before);
    assert!(audits.iter().all(|a| a.detail == "{}"));
    let rma = db::rmas::find(&t.app.db, &number).await.unwrap().unwrap();
    assert_eq!(rma.customer_email, "[erased]");
    assert_eq!(rma.customer_phone, None);
    assert!(
        !dump(&t)
            .await
            .iter()
            .any(|(_, rows)| rows.iter().any(|r| r.contains(EMAIL)))
    );
}

#[tokio::test]
async fn a_restricted_unit_is_updated_but_not_recorded() {
    let t = world().await;
    let token = t.device_token(SERIAL).await;
    let restrict = |on: bool, who: String| {
        let t = &t;
        async move {
            t.put_json(
                &format!("/v1/privacy/devices/{SERIAL}/restriction"),
                Some(&who),
                &json!({ "restricted": on }),
            )
            .await
        }
    };
    let r = restrict(true, t.technician.clone()).await;
    assert_error(&r, StatusCode::FORBIDDEN, "wrong_role");
    let r = restrict(true, t.admin.clone()).await;
    assert_status(&r, StatusCode::OK);
    assert_eq!(r.json()["restricted"], true);

    let r = t
        .post_json("/v1/device/check", Some(&token), &check_body(SERIAL))
        .await;
    assert_status(&r, StatusCode::OK);
    assert_eq!(r.json()["update"]["version"], "2.1.0", "updates go on");
    t.app.last_seen.flush().await.unwrap();
    let r = t
        .post_json(
            "/v1/device/reports",
            Some(&token),
            &json!({ "serial": SERIAL, "version": "2.1.0", "stage": "failed",
                     "reason_code": "boot_timeout", "detail": "x" }),
        )
        .await;
    assert_status(&r, StatusCode::CREATED);
    assert!(r.json()["id"].is_null());
    let d = db::devices::find(&t.app.db, SERIAL)
        .await
        .unwrap()
        .unwrap()
        .device;
    assert!(d.last_seen.is_none() && d.current_version.is_none());
    assert_eq!(db::reports::count(&t.app.db).await.unwrap(), 0);

    let r = restrict(false, t.admin.clone()).await;
    assert_eq!(r.json()["restricted"], false);
    let r = t
        .post_json("/v1/device/check", Some(&token), &check_body(SERIAL))
        .await;
    assert_status(&r, StatusCode::OK);
    t.app.last_seen.flush().await.unwrap();
    let d = db::devices::find(&t.app.db, SERIAL)
        .await
        .unwrap()
        .unwrap()
        .device;
    assert!(d.last_seen.is_some(), "recorded again once lifted");
    let r = t
        .put_json(
            "/v1/privacy/devices/NO-SUCH-1/restriction",
            Some(&t.admin),
            &json!({ "restricted": true }),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "unknown_serial");
}

#[tokio::test]
async fn an_owner_contact_is_corrected_on_every_rma() {
    let t = world().await;
    let contact = json!({ "name": "Ana P. Silva", "email": "ana.silva@example.org" });
    let r = t
        .put_json(
            &format!("/v1/privacy/devices/{SERIAL}/contact"),
            Some(&t.admin),
            &contact,
        )
        .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "no_contact_held");
    let (_token, number, _) = history(&t).await;
    let r = t
        .put_json(
            &format!("/v1/privacy/devices/{SERIAL}/contact"),
            Some(&t.admin),
            &json!({ "name": "x", "email": "not an email" }),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_email");
    let r = t
        .put_json(
            &format!("/v1/privacy/devices/{SERIAL}/contact"),
            Some(&t.admin),
            &contact,
        )
        .await;
    assert_status(&r, StatusCode::OK);
    assert_eq!(r.json()["rmas"], 1);
    let rma = db::rmas::find(&t.app.db, &number).await.unwrap().unwrap();
    assert_eq!(rma.customer_email, "ana.silva@example.org");
    assert_eq!(rma.customer_phone, None);
    let audits = db::audit::list(&t.app.db, 10, None).await.unwrap();
    let rectified = audits
        .iter()
        .find(|a| a.action == "privacy.rectify")
        .unwrap();
    assert!(
        !rectified.detail.contains("example.org"),
        "{}",
        rectified.detail
    );
}

/// A writer the test's subscriber logs into.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test]
async fn logs_carry_no_serial_address_token_grant_or_code() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::new("info"))
        .with_ansi(false)
        .with_writer(move || writer.clone())
        .finish();
    // Global, not per thread: callsites other tests' threads hit first
    // would otherwise stay cached as disabled. The other tests of this
    // file log here too, and must not leak the serial either.
    tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
    tracing::info!("capture works");

    let t = world().await;
    let (token, number, _) = history(&t).await;
    let r = t
        .post_json("/v1/device/check", Some(&token), &check_body(SERIAL))
        .await;
    let url = r.json()["update"]["images"][0]["url"]
        .as_str()
        .unwrap()
        .to_owned();
    let sig = url.split("sig=").nth(1).unwrap().to_owned();
    let r = t
        .send(
            Method::GET,
            &url,
            None,
            &[("range", "bytes=0-15")],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::PARTIAL_CONTENT, "{url}");
    for uri in [
        format!("/v1/devices/{SERIAL}"),
        format!("/v1/devices/{SERIAL}/entitlement"),
        format!("/v1/rmas/{number}"),
    ] {
        let r = t.get(&uri, Some(&t.technician)).await;
        assert_status(&r, StatusCode::OK);
    }
    let r = t
        .post_json_from(
            format!("{ADDRESS}:40001").parse().unwrap(),
            "/v1/registrations",
            &json!({ "serial": OTHER, "verification_code": "WRONG-CODE-1" }),
        )
        .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    let r = t
        .put_json(
            &format!("/v1/privacy/devices/{SERIAL}/contact"),
            Some(&t.admin),
            &json!({ "name": NAME, "email": EMAIL }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    std::io::stderr().flush().ok();

    let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    assert!(logs.contains("capture works"));
    assert!(
        logs.contains("{serial}"),
        "paths show the template:\n{logs}"
    );
    assert!(
        logs.contains("erased-"),
        "serials show as pseudonyms:\n{logs}"
    );
    for secret in [
        SERIAL,
        OTHER,
        ADDRESS,
        CODE,
        "WRONG-CODE-1",
        EMAIL,
        token.as_str(),
        t.technician.as_str(),
        t.admin.as_str(),
        sig.as_str(),
    ] {
        assert!(!logs.contains(secret), "the logs hold {secret:?}:\n{logs}");
    }
}
