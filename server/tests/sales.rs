//! Dates of sale in bulk through `POST /v1/admin/sales`: all or nothing,
//! one audit record, and the warranties then run from the dates of sale.

mod common;

use axum::http::StatusCode;
use common::{TestApp, TestResponse};
use common::{assert_error, assert_status};
use firmup_server::db;
use firmup_server::warranty::add_months;
use serde_json::{Value, json};
use time::{Date, Duration, OffsetDateTime};

fn fmt(d: Date) -> String {
    firmup_server::provisioning::format_date(d)
}

/// The last day a period of `months` from `from` covers.
fn last_day(from: Date, months: u32) -> String {
    fmt(add_months(from, months) - Duration::days(1))
}

/// An encoder line of 12 months (24 in the EU) and three units.
async fn shop() -> TestApp {
    let t = TestApp::new().await;
    let r = t
        .put_json(
            "/v1/admin/product-lines/encoders",
            Some(&t.admin),
            &json!({ "name": "Encoders", "kind": "hardware", "warranty_by_region": { "EU": 24 } }),
        )
        .await;
    assert_status(&r, StatusCode::CREATED);
    let r = t
        .put_json(
            "/v1/admin/models/E4K",
            Some(&t.admin),
            &json!({ "product_line": "encoders", "name": "E4K encoder", "hw_ids": ["enc-4k-r2"] }),
        )
        .await;
    assert_status(&r, StatusCode::CREATED);
    let devices: Vec<Value> = ["S-1", "S-2", "S-3"]
        .iter()
        .map(|s| json!({ "serial": s, "model_id": "E4K", "hw_id": "enc-4k-r2" }))
        .collect();
    let r = t
        .post_json(
            "/v1/admin/devices",
            Some(&t.admin),
            &json!({ "devices": devices, "issue_tokens": false }),
        )
        .await;
    assert_status(&r, StatusCode::CREATED);
    t
}

async fn sales(t: &TestApp, token: &str, sales: Value) -> TestResponse {
    t.post_json("/v1/admin/sales", Some(token), &json!({ "sales": sales }))
        .await
}

async fn device(t: &TestApp, serial: &str) -> Value {
    let r = t
        .get(&format!("/v1/devices/{serial}"), Some(&t.technician))
        .await;
    assert_status(&r, StatusCode::OK);
    r.json()
}

async fn audit_count(t: &TestApp, action: &str) -> i64 {
    let mut tx = t.app.db.begin().await.unwrap();
    db::audit::count_action(&mut tx, action).await.unwrap()
}

#[tokio::test]
async fn a_batch_records_dates_of_sale_and_the_warranty_runs_from_them() {
    let t = shop().await;
    let today = OffsetDateTime::now_utc().date();
    let before = device(&t, "S-1").await;
    assert_eq!(before["sale_date"], Value::Null);
    assert_eq!(before["warranty"]["start"], fmt(today), "{before}");
    // Cached facts of S-1, which the import must drop.
    assert!(
        firmup_server::snapshot::device_facts(&t.app.db, &t.app.caches, "S-1")
            .await
            .unwrap()
            .is_some()
    );
    assert!(t.app.caches.device_facts.contains_key("S-1"));

    let one = today - Duration::days(200);
    let two = today - Duration::days(45);
    let r = sales(
        &t,
        &t.admin,
        json!([
            { "serial": "S-1", "sale_date": fmt(one) },
            { "serial": "S-2", "sale_date": fmt(two), "region": "EU" },
        ]),
    )
    .await;
    assert_status(&r, StatusCode::OK);
    assert_eq!(r.json(), json!({ "count": 2, "serials": ["S-1", "S-2"] }));
    assert!(!t.app.caches.device_facts.contains_key("S-1"));

    let d = device(&t, "S-1").await;
    assert_eq!(d["sale_date"], fmt(one));
    assert_eq!(d["region"], Value::Null);
    assert_eq!(d["warranty"]["start"], fmt(one), "{d}");
    assert_eq!(d["warranty"]["standard_ends"], last_day(one, 12), "{d}");
    assert_eq!(d["warranty_ends"], last_day(one, 12), "{d}");
    let d = device(&t, "S-2").await;
    assert_eq!(d["sale_date"], fmt(two));
    assert_eq!(d["region"], "EU");
    assert_eq!(d["warranty"]["start"], fmt(two), "{d}");
    assert_eq!(d["warranty_ends"], last_day(two, 24), "the EU's 24 months");
    // S-3 was not in the batch.
    assert_eq!(device(&t, "S-3").await["sale_date"], Value::Null);

    // One audit record with the count and the serials.
    let log = t.get("/v1/admin/audit?limit=1000", Some(&t.admin)).await;
    let records: Vec<Value> = log
        .json()
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "device.sale_import")
        .cloned()
        .collect();
    assert_eq!(records.len(), 1, "{records:?}");
    let detail: Value = serde_json::from_str(records[0]["detail"].as_str().unwrap()).unwrap();
    assert_eq!(detail["count"], 2);
    assert_eq!(detail["serials"], json!(["S-1", "S-2"]));
    assert_eq!(detail["source"], "api");
    assert_eq!(records[0]["actor_role"], "admin");

    // A later batch replaces a date, and a region given before is cleared
    // when left out.
    let r = sales(
        &t,
        &t.admin,
        json!([{ "serial": "S-2", "sale_date": fmt(one), "region": null }]),
    )
    .await;
    assert_status(&r, StatusCode::OK);
    let d = device(&t, "S-2").await;
    assert_eq!(
        (d["sale_date"].clone(), d["region"].clone()),
        (json!(fmt(one)), Value::Null)
    );
    assert_eq!(audit_count(&t, "device.sale_import").await, 2);
}

#[tokio::test]
async fn a_bad_entry_changes_nothing_and_is_named() {
    let t = shop().await;
    let sold = fmt(OffsetDateTime::now_utc().date() - Duration::days(10));
    let r = sales(
        &t,
        &t.admin,
        json!([
            { "serial": "S-1", "sale_date": sold },
            { "serial": "S-2", "sale_date": sold },
            { "serial": "NOPE", "sale_date": sold },
        ]),
    )
    .await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "unknown_serial");
    let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(
        message.starts_with("sales[2] (serial \"NOPE\")"),
        "{message}"
    );

    for (body, status, code, at) in [
        (
            json!([{ "serial": "S-1", "sale_date": sold }, { "serial": "S-2", "sale_date": "2026-02-30" }]),
            StatusCode::BAD_REQUEST,
            "invalid_date",
            "sales[1] (serial \"S-2\")",
        ),
        (
            json!([{ "serial": "S-1", "sale_date": sold }, { "serial": "S-1", "sale_date": sold }]),
            StatusCode::BAD_REQUEST,
            "duplicate_serial",
            "sales[1] (serial \"S-1\")",
        ),
        (
            json!([{ "serial": "S-1", "sale_date": sold, "region": "no region" }]),
            StatusCode::BAD_REQUEST,
            "invalid_name",
            "sales[0] (serial \"S-1\")",
        ),
        (
            json!([{ "serial": "../S-1", "sale_date": sold }]),
            StatusCode::BAD_REQUEST,
            "invalid_name",
            "sales[0]",
        ),
        (json!([]), StatusCode::BAD_REQUEST, "no_sales", "the batch"),
    ] {
        let r = sales(&t, &t.admin, body).await;
        assert_error(&r, status, code);
        let message = r.json()["error"]["message"].as_str().unwrap().to_owned();
        assert!(message.starts_with(at), "{code}: {message}");
    }
    for serial in ["S-1", "S-2", "S-3"] {
        assert_eq!(
            device(&t, serial).await["sale_date"],
            Value::Null,
            "{serial}"
        );
    }
    assert_eq!(audit_count(&t, "device.sale_import").await, 0);

    // Admins only; more than the limit is refused before anything is read
    // from the database.
    let r = sales(
        &t,
        &t.technician,
        json!([{ "serial": "S-1", "sale_date": sold }]),
    )
    .await;
    assert_error(&r, StatusCode::FORBIDDEN, "wrong_role");
    let many: Vec<Value> = (0..=firmup_server::provisioning::MAX_SALES_PER_REQUEST)
        .map(|i| json!({ "serial": format!("S-{i}"), "sale_date": sold }))
        .collect();
    let r = sales(&t, &t.admin, Value::Array(many)).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "too_many_sales");
    assert_eq!(device(&t, "S-1").await["sale_date"], Value::Null);
}
