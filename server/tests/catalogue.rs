//! Catalogue, devices, provisioning, contracts and licences, in-process.

mod common;

use axum::http::{Method, StatusCode};
use common::{TestApp, TestResponse};
use common::{assert_error, assert_status};
use firmup_server::db;
use firmup_server::db::devices::load_device_facts;
use firmup_server::db::tokens::{TokenFilter, TokenRow};
use firmup_server::domain::roles::{Actor, Role};
use firmup_server::provisioning;
use firmup_server::warranty::add_months;
use serde_json::{Value, json};
use time::macros::date;

/// Sends DELETE with a token.
async fn delete(t: &TestApp, uri: &str, token: &str) -> TestResponse {
    t.send(Method::DELETE, uri, Some(token), &[], "").await
}

/// The audit records with `action`, oldest first, details parsed.
async fn audit(t: &TestApp, action: &str) -> Vec<Value> {
    let r = t.get("/v1/admin/audit?limit=1000", Some(&t.admin)).await;
    let mut out: Vec<Value> = r
        .json()
        .as_array()
        .expect("audit list")
        .iter()
        .filter(|e| e["action"] == action)
        .map(|e| {
            let mut e = e.clone();
            e["detail"] =
                serde_json::from_str(e["detail"].as_str().expect("detail")).expect("json");
            e
        })
        .collect();
    out.reverse();
    out
}

/// How many devices are provisioned.
async fn device_count(t: &TestApp) -> i64 {
    db::devices::count(&t.app.db).await.expect("count devices")
}

/// The device tokens, by serial.
async fn device_tokens(t: &TestApp) -> Vec<TokenRow> {
    let filter = TokenFilter {
        role: Some(Role::Device),
        ..TokenFilter::default()
    };
    let mut rows = db::tokens::list(&t.app.db, &filter, i64::MAX)
        .await
        .expect("list device tokens");
    assert!(rows.iter().all(|r| r.role == "device"));
    rows.sort_by(|a, b| a.serial.cmp(&b.serial));
    rows
}

/// How many device tokens exist.
async fn device_token_count(t: &TestApp) -> i64 {
    device_tokens(t).await.len() as i64
}

/// The encoders line with E4K (two hw ids) and E3 (discontinued), and the
/// StreamDesk software line with one edition.
async fn seed(t: &TestApp) {
    for (id, body) in [
        (
            "encoders",
            json!({ "name": "Encoders", "kind": "hardware" }),
        ),
        (
            "streamdesk",
            json!({ "name": "StreamDesk", "kind": "software", "warranty_months": 12 }),
        ),
    ] {
        let r = t
            .put_json(
                &format!("/v1/admin/product-lines/{id}"),
                Some(&t.admin),
                &body,
            )
            .await;
        assert_status(&r, StatusCode::CREATED);
    }
    for (id, body) in [
        (
            "E4K",
            json!({ "product_line": "encoders", "name": "E4K encoder",
                    "hw_ids": ["enc-4k-r1", "enc-4k-r2"], "launched": "2022-03-01" }),
        ),
        (
            "E3",
            json!({ "product_line": "encoders", "name": "E3 encoder",
                    "hw_ids": ["enc-hd-r1"], "launched": "2018-05-15", "eol": "2025-06-30" }),
        ),
        (
            "SD-PRO",
            json!({ "product_line": "streamdesk", "name": "StreamDesk Pro",
                    "hw_ids": ["streamdesk-x86_64"] }),
        ),
    ] {
        let r = t
            .put_json(&format!("/v1/admin/models/{id}"), Some(&t.admin), &body)
            .await;
        assert_status(&r, StatusCode::CREATED);
    }
}

/// Provisions devices; returns the response body.
async fn provision(t: &TestApp, devices: Value, issue_tokens: bool) -> TestResponse {
    t.post_json(
        "/v1/admin/devices",
        Some(&t.admin),
        &json!({ "devices": devices, "issue_tokens": issue_tokens }),
    )
    .await
}

#[tokio::test]
async fn product_lines_are_created_updated_and_listed_with_models() {
    let t = TestApp::new().await;
    let r = t
        .put_json(
            "/v1/admin/product-lines/encoders",
            Some(&t.admin),
            &json!({ "name": "Encoders", "kind": "hardware" }),
        )
        .await;
    assert_status(&r, StatusCode::CREATED);
    let body = r.json();
    assert_eq!(body["warranty_months"], 12, "default warranty");
    assert_eq!(body["registration_bonus_months"], 12);
    assert_eq!(body["service_class"], "repair", "default service class");

    let r = t
        .put_json(
            "/v1/admin/product-lines/encoders",
            Some(&t.admin),
            &json!({ "name": "Video encoders", "kind": "hardware", "warranty_months": 24 }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    assert_eq!(r.json()["name"], "Video encoders");
    let updates = audit(&t, "product_line.update").await;
    assert_eq!(updates.len(), 1);
    assert_eq!(updates[0]["detail"]["old"]["warranty_months"], 12);
    assert_eq!(updates[0]["detail"]["new"]["warranty_months"], 24);

    let r = t
        .put_json(
            "/v1/admin/models/E4K",
            Some(&t.admin),
            &json!({ "product_line": "encoders", "name": "E4K", "hw_ids": ["enc-4k-r2", "enc-4k-r1"] }),
        )
        .await;
    assert_status(&r, StatusCode::CREATED);

    // Readers: technicians and release engineers; devices never.
    for token in [&t.technician, &t.release_engineer, &t.admin] {
        let r = t.get("/v1/product-lines", Some(token)).await;
        assert_status(&r, StatusCode::OK);
        let lines = r.json();
        assert_eq!(lines[0]["id"], "encoders");
        assert_eq!(lines[0]["models"][0]["id"], "E4K");
        assert_eq!(
            lines[0]["models"][0]["hw_ids"],
            json!(["enc-4k-r1", "enc-4k-r2"])
        );
        assert!(lines[0]["models"][0]["eol"].is_null());
    }
    let device = t.device_token("SN-1").await;
    assert_error(
        &t.get("/v1/product-lines", Some(&device)).await,
        StatusCode::FORBIDDEN,
        "wrong_role",
    );

    // Writes: admins only; bad input named.
    let r = t
        .put_json(
            "/v1/admin/product-lines/x",
            Some(&t.technician),
            &json!({ "name": "X", "kind": "hardware" }),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "wrong_role");
    let r = t
        .put_json(
            "/v1/admin/product-lines/x",
            Some(&t.admin),
            &json!({ "name": "X", "kind": "firmware" }),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_kind");
    let r = t
        .put_json(
            "/v1/admin/product-lines/a%20b",
            Some(&t.admin),
            &json!({ "name": "X", "kind": "hardware" }),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_name");
    let r = t
        .put_json(
            "/v1/admin/product-lines/x",
            Some(&t.admin),
            &json!({ "name": "X", "kind": "hardware", "colour": "red" }),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json");
}

#[tokio::test]
async fn models_are_validated_and_hw_ids_name_one_model() {
    let t = TestApp::new().await;
    seed(&t).await;

    let r = t.get("/v1/models/E3", Some(&t.technician)).await;
    assert_status(&r, StatusCode::OK);
    let e3 = r.json();
    assert_eq!(e3["eol"], "2025-06-30");
    assert_eq!(e3["launched"], "2018-05-15");
    assert_eq!(e3["product_line"], "encoders");
    assert_error(
        &t.get("/v1/models/NOPE", Some(&t.technician)).await,
        StatusCode::NOT_FOUND,
        "unknown_model",
    );

    // Update: 200, and leaving `eol` out keeps it.
    let r = t
        .put_json(
            "/v1/admin/models/E3",
            Some(&t.admin),
            &json!({ "product_line": "encoders", "name": "E3 HD encoder", "hw_ids": ["enc-hd-r1", "enc-hd-r2"] }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    assert_eq!(r.json()["eol"], "2025-06-30");
    assert_eq!(r.json()["hw_ids"], json!(["enc-hd-r1", "enc-hd-r2"]));

    let r = t
        .put_json(
            "/v1/admin/models/E5",
            Some(&t.admin),
            &json!({ "product_line": "nope", "name": "E5", "hw_ids": ["e5"] }),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "unknown_product_line");

    let r = t
        .put_json(
            "/v1/admin/models/E5",
            Some(&t.admin),
            &json!({ "product_line": "encoders", "name": "E5", "hw_ids": ["e5"], "launched": "2025-13-01" }),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_date");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("YYYY-MM-DD")
    );

    let r = t
        .put_json(
            "/v1/admin/models/E5",
            Some(&t.admin),
            &json!({ "product_line": "encoders", "name": "E5", "hw_ids": ["e5", "enc-4k-r2"] }),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "hw_id_taken");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("E4K"),
        "names the other model: {}",
        r.json()
    );

    let r = t
        .put_json(
            "/v1/admin/models/E5",
            Some(&t.admin),
            &json!({ "product_line": "encoders", "name": "E5", "hw_ids": [] }),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "hw_ids_required");

    let r = t
        .put_json(
            "/v1/admin/models/E5",
            Some(&t.admin),
            &json!({ "product_line": "encoders", "name": "E5", "hw_ids": ["e5"],
                     "launched": "2025-01-01", "eol": "2024-01-01" }),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_period");

    // None of the refused requests left anything behind.
    assert_eq!(
        db::catalogue::find_model(&t.app.db, "E5").await.unwrap(),
        None
    );
    let hw_ids = db::catalogue::list_hw_ids(&t.app.db).await.unwrap();
    assert!(hw_ids.iter().all(|(_, hw_id)| hw_id != "e5"), "{hw_ids:?}");

    // A hardware id devices use cannot be taken away from their model.
    let r = provision(
        &t,
        json!([{ "serial": "SN-1", "model_id": "E4K", "hw_id": "enc-4k-r1" }]),
        false,
    )
    .await;
    assert_status(&r, StatusCode::CREATED);
    let r = t
        .put_json(
            "/v1/admin/models/E4K",
            Some(&t.admin),
            &json!({ "product_line": "encoders", "name": "E4K", "hw_ids": ["enc-4k-r2"] }),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "hw_id_in_use");
    let r = t
        .put_json(
            "/v1/admin/models/E4K",
            Some(&t.admin),
            &json!({ "product_line": "streamdesk", "name": "E4K", "hw_ids": ["enc-4k-r1", "enc-4k-r2"] }),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "model_has_devices");
}

#[tokio::test]
async fn eol_is_set_moved_and_cleared_with_old_and_new_audited() {
    let t = TestApp::new().await;
    seed(&t).await;
    let generation = t.app.catalogue.generation();

    let r = t
        .put_json(
            "/v1/admin/models/E4K/eol",
            Some(&t.admin),
            &json!({ "eol": "2030-12-31" }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    assert_eq!(r.json()["eol"], "2030-12-31");
    let r = t
        .put_json(
            "/v1/admin/models/E4K/eol",
            Some(&t.admin),
            &json!({ "eol": "2031-06-30" }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    let r = t
        .put_json(
            "/v1/admin/models/E4K/eol",
            Some(&t.admin),
            &json!({ "eol": null }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    assert!(r.json()["eol"].is_null());
    assert!(
        t.app.catalogue.generation() > generation,
        "the check path's snapshot is told"
    );

    let records = audit(&t, "model.eol").await;
    let moves: Vec<(Value, Value)> = records
        .iter()
        .map(|e| (e["detail"]["old"].clone(), e["detail"]["new"].clone()))
        .collect();
    assert_eq!(
        moves,
        vec![
            (Value::Null, json!("2030-12-31")),
            (json!("2030-12-31"), json!("2031-06-30")),
            (json!("2031-06-30"), Value::Null),
        ]
    );
    assert!(records.iter().all(|e| e["target"] == "model/E4K"));

    assert_error(
        &t.put_json("/v1/admin/models/E4K/eol", Some(&t.admin), &json!({}))
            .await,
        StatusCode::BAD_REQUEST,
        "missing_eol",
    );
    assert_error(
        &t.put_json(
            "/v1/admin/models/E4K/eol",
            Some(&t.admin),
            &json!({ "eol": "31/12/2030" }),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_date",
    );
    assert_error(
        &t.put_json(
            "/v1/admin/models/NOPE/eol",
            Some(&t.admin),
            &json!({ "eol": null }),
        )
        .await,
        StatusCode::NOT_FOUND,
        "unknown_model",
    );
    assert_error(
        &t.put_json(
            "/v1/admin/models/E4K/eol",
            Some(&t.release_engineer),
            &json!({ "eol": null }),
        )
        .await,
        StatusCode::FORBIDDEN,
        "wrong_role",
    );
}

#[tokio::test]
async fn provisioned_devices_get_working_tokens_and_one_audit_record() {
    let t = TestApp::new().await;
    seed(&t).await;
    let r = provision(
        &t,
        json!([
            { "serial": "SN-1", "model_id": "E4K", "hw_id": "enc-4k-r1" },
            { "serial": "SN-2", "model_id": "E4K", "hw_id": "enc-4k-r2", "channel": "beta" },
            { "serial": "SN-3", "model_id": "E3", "hw_id": "enc-hd-r1" },
        ]),
        true,
    )
    .await;
    assert_status(&r, StatusCode::CREATED);
    let body = r.json();
    let devices = body["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 3);
    assert_eq!(devices[1]["serial"], "SN-2");
    let token = devices[0]["token"].as_str().unwrap().to_string();
    assert!(token.starts_with("fu_"));

    // The token authenticates (403 wrong_role, not 401) and is bound to its
    // serial with the label the brief names.
    assert_error(
        &t.get("/v1/product-lines", Some(&token)).await,
        StatusCode::FORBIDDEN,
        "wrong_role",
    );
    let rows: Vec<(String, Option<String>, String)> = device_tokens(&t)
        .await
        .into_iter()
        .map(|r| (r.role, r.serial, r.label))
        .collect();
    assert_eq!(
        rows[0],
        ("device".into(), Some("SN-1".into()), "device SN-1".into())
    );
    assert_eq!(rows.len(), 3);

    let records = audit(&t, "device.provision").await;
    assert_eq!(records.len(), 1, "one record per request");
    assert_eq!(records[0]["detail"]["count"], 3);
    assert_eq!(
        records[0]["detail"]["serials"],
        json!(["SN-1", "SN-2", "SN-3"])
    );

    let r = t.get("/v1/devices/SN-2", Some(&t.technician)).await;
    assert_status(&r, StatusCode::OK);
    let d = r.json();
    assert_eq!(d["model"], "E4K");
    assert_eq!(d["product_line"], "encoders");
    assert_eq!(d["kind"], "hardware");
    assert_eq!(d["hw_id"], "enc-4k-r2");
    assert_eq!(d["channel"], "beta");
    for field in [
        "current_version",
        "security_counter",
        "root_version",
        "first_seen",
        "last_seen",
        "registered_at",
    ] {
        assert!(d[field].is_null(), "{field}: {d}");
    }
    assert_eq!(d["contracts"], json!([]));
    assert_eq!(d["licences"], json!([]));
    assert_eq!(
        t.get("/v1/devices/SN-3", Some(&t.technician)).await.json()["model_eol"],
        "2025-06-30"
    );

    // Without tokens: no secrets in the answer, none created.
    let r = provision(
        &t,
        json!([{ "serial": "SN-4", "model_id": "E4K", "hw_id": "enc-4k-r1" }]),
        false,
    )
    .await;
    assert_status(&r, StatusCode::CREATED);
    assert!(r.json()["devices"][0].get("token").is_none());
    assert_eq!(device_token_count(&t).await, 3);

    assert_error(
        &t.get("/v1/devices/NOPE", Some(&t.technician)).await,
        StatusCode::NOT_FOUND,
        "unknown_serial",
    );
    assert_error(
        &t.get("/v1/devices/SN-1", Some(&token)).await,
        StatusCode::FORBIDDEN,
        "wrong_role",
    );
    let r = t
        .post_json(
            "/v1/admin/devices",
            Some(&t.technician),
            &json!({ "devices": [{ "serial": "SN-9", "model_id": "E4K", "hw_id": "enc-4k-r1" }] }),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "wrong_role");
}

#[tokio::test]
async fn provisioning_is_all_or_nothing_and_names_the_bad_entry() {
    let t = TestApp::new().await;
    seed(&t).await;
    let good = |serial: &str| json!({ "serial": serial, "model_id": "E4K", "hw_id": "enc-4k-r1" });

    let cases = [
        (
            json!({ "serial": "SN-X", "model_id": "E9", "hw_id": "enc-4k-r1" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "unknown_model",
        ),
        (
            json!({ "serial": "SN-X", "model_id": "E4K", "hw_id": "enc-hd-r1" }),
            StatusCode::UNPROCESSABLE_ENTITY,
            "hw_id_not_in_model",
        ),
        (good("SN-1"), StatusCode::BAD_REQUEST, "duplicate_serial"),
        (
            json!({ "serial": "SN/X", "model_id": "E4K", "hw_id": "enc-4k-r1" }),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
    ];
    for (bad, status, code) in cases {
        let serial = bad["serial"].as_str().unwrap().to_string();
        let r = provision(&t, json!([good("SN-1"), good("SN-2"), bad]), true).await;
        assert_error(&r, status, code);
        let message = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(
            message.starts_with(&format!("devices[2] (serial {serial:?})")),
            "{message}"
        );
        assert_eq!(device_count(&t).await, 0, "{code}");
        assert_eq!(
            device_token_count(&t).await,
            0,
            "{code}: no token outlives a refused batch"
        );
    }
    assert!(audit(&t, "device.provision").await.is_empty());

    let r = provision(&t, json!([good("SN-1")]), true).await;
    assert_status(&r, StatusCode::CREATED);
    let r = provision(&t, json!([good("SN-5"), good("SN-1")]), true).await;
    assert_error(&r, StatusCode::CONFLICT, "serial_exists");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("devices[1] (serial \"SN-1\")")
    );
    assert_eq!(device_count(&t).await, 1);
    assert_eq!(device_token_count(&t).await, 1);

    let many: Vec<Value> = (0..10_001).map(|i| good(&format!("BULK-{i}"))).collect();
    let r = provision(&t, Value::Array(many), false).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "too_many_devices");
    assert_error(
        &provision(&t, json!([]), false).await,
        StatusCode::BAD_REQUEST,
        "no_devices",
    );
}

#[tokio::test]
async fn a_full_batch_of_ten_thousand_provisions() {
    let t = TestApp::new().await;
    seed(&t).await;
    let devices: Vec<Value> = (0..10_000)
        .map(|i| json!({ "serial": format!("BULK-{i:05}"), "model_id": "E4K", "hw_id": "enc-4k-r1" }))
        .collect();
    let r = provision(&t, Value::Array(devices), true).await;
    assert_status(&r, StatusCode::CREATED);
    assert_eq!(r.json()["devices"].as_array().unwrap().len(), 10_000);
    assert_eq!(device_count(&t).await, 10_000);
    let records = audit(&t, "device.provision").await;
    assert_eq!(records[0]["detail"]["count"], 10_000);
    assert_eq!(
        records[0]["detail"]["serials"].as_array().unwrap().len(),
        100
    );
    assert_eq!(records[0]["detail"]["serials_truncated"], true);
}

#[tokio::test]
async fn channel_and_registration_are_audited_and_extend_the_warranty() {
    let t = TestApp::new().await;
    seed(&t).await;
    let r = provision(
        &t,
        json!([{ "serial": "SN-1", "model_id": "E4K", "hw_id": "enc-4k-r1" }]),
        false,
    )
    .await;
    assert_status(&r, StatusCode::CREATED);
    let today = time::OffsetDateTime::now_utc().date();
    let fmt = |d: time::Date| d.to_string();
    // A period of N months covers every day before the same day N months
    // later.
    let last_day =
        |from: time::Date, months: u32| fmt(add_months(from, months) - time::Duration::days(1));
    let before = t.get("/v1/devices/SN-1", Some(&t.admin)).await.json();
    assert_eq!(before["warranty_ends"], last_day(today, 12));
    assert_eq!(before["warranty"]["state"], "in_warranty");
    assert!(
        before["warranty"]["explanation"]
            .as_str()
            .unwrap()
            .contains("provisioning"),
        "no date of sale yet: {}",
        before["warranty"]
    );

    let r = t
        .put_json(
            "/v1/admin/devices/SN-1/channel",
            Some(&t.admin),
            &json!({ "channel": "beta" }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    assert_eq!(r.json()["channel"], "beta");
    let records = audit(&t, "device.channel").await;
    assert_eq!(
        records[0]["detail"],
        json!({ "old": "stable", "new": "beta" })
    );
    assert_eq!(records[0]["target"], "device/SN-1");
    assert_eq!(
        load_device_facts(&t.app.db, "SN-1")
            .await
            .unwrap()
            .unwrap()
            .channel,
        "beta"
    );
    assert_error(
        &t.put_json(
            "/v1/admin/devices/SN-1/channel",
            Some(&t.admin),
            &json!({ "channel": "../x" }),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_name",
    );
    assert_error(
        &t.put_json(
            "/v1/admin/devices/NOPE/channel",
            Some(&t.admin),
            &json!({ "channel": "beta" }),
        )
        .await,
        StatusCode::NOT_FOUND,
        "unknown_serial",
    );

    let r = t
        .post_json(
            "/v1/admin/devices/SN-1/registration",
            Some(&t.admin),
            &json!({}),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    let d = r.json();
    assert!(d["registered_at"].is_string());
    assert_eq!(d["warranty_ends"], last_day(today, 24), "12 + 12 months");
    // Registering twice is refused and keeps the first registration.
    let again = t
        .post_json(
            "/v1/admin/devices/SN-1/registration",
            Some(&t.admin),
            &json!({}),
        )
        .await;
    assert_error(&again, StatusCode::CONFLICT, "already_registered");
    let kept = t.get("/v1/devices/SN-1", Some(&t.admin)).await.json();
    assert_eq!(kept["registered_at"], d["registered_at"], "kept");
    assert_eq!(audit(&t, "device.register").await.len(), 1);
    assert_error(
        &t.post_json(
            "/v1/admin/devices/NOPE/registration",
            Some(&t.admin),
            &json!({}),
        )
        .await,
        StatusCode::NOT_FOUND,
        "unknown_serial",
    );

    // A warranty extension contract is the paid extension: 12 months more,
    // when recorded within a month of the sale.
    let signed = fmt(today);
    let r = t
        .post_json(
            "/v1/admin/devices/SN-1/contracts",
            Some(&t.admin),
            &json!({ "id": "WX-1", "kind": "warranty_extension", "starts": signed, "ends": "2040-12-31" }),
        )
        .await;
    assert_status(&r, StatusCode::CREATED);
    assert_eq!(
        t.get("/v1/devices/SN-1", Some(&t.admin)).await.json()["warranty_ends"],
        last_day(today, 36)
    );

    // The date of sale decides: sold 60 days ago, the extension recorded
    // today came too late and is listed as not applied.
    let sold = today - time::Duration::days(60);
    let r = t
        .put_json(
            "/v1/admin/devices/SN-1/sale",
            Some(&t.admin),
            &json!({ "sale_date": fmt(sold), "region": "EU" }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    let d = r.json();
    assert_eq!(d["sale_date"], fmt(sold));
    assert_eq!(d["warranty_ends"], last_day(sold, 24));
    let ext = &d["warranty"]["extensions"];
    let paid = ext
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["contract_id"] == "WX-1")
        .unwrap_or_else(|| panic!("{ext}"));
    assert_eq!(paid["applied"], false, "{ext}");
    assert_eq!(paid["refusal"]["code"], "paid_extension_window_closed");
    assert_eq!(audit(&t, "device.sale").await.len(), 1);
    let r = t
        .post_json(
            "/v1/admin/devices/SN-1/contracts",
            Some(&t.admin),
            &json!({ "id": "WX-2", "kind": "warranty_extension", "starts": signed, "ends": "2040-12-31" }),
        )
        .await;
    assert_error(
        &r,
        StatusCode::UNPROCESSABLE_ENTITY,
        "paid_extension_window_closed",
    );
    let w = t
        .get(
            &format!(
                "/v1/devices/SN-1/warranty?fault_on={}",
                fmt(sold - time::Duration::days(1))
            ),
            Some(&t.technician),
        )
        .await;
    assert_status(&w, StatusCode::OK);
    assert_eq!(w.json()["fault"]["code"], "before_sale");
    let w = t
        .get(
            &format!("/v1/devices/SN-1/warranty?fault_on={}", fmt(sold)),
            Some(&t.technician),
        )
        .await
        .json();
    assert_eq!(w["fault"]["covered"], true, "{w}");
}

#[tokio::test]
async fn contracts_show_in_the_device_and_its_facts() {
    let t = TestApp::new().await;
    seed(&t).await;
    provision(
        &t,
        json!([{ "serial": "SN-1", "model_id": "E3", "hw_id": "enc-hd-r1" }]),
        false,
    )
    .await;
    let post = |body: Value| {
        let t = &t;
        async move {
            t.post_json("/v1/admin/devices/SN-1/contracts", Some(&t.admin), &body)
                .await
        }
    };

    let r = post(json!({ "id": "SC-1", "kind": "service_contract", "starts": "2026-01-01", "ends": "2026-12-31" })).await;
    assert_status(&r, StatusCode::CREATED);
    assert_eq!(r.json()["kind"], "service_contract");
    let r = post(json!({ "id": "WX-1", "kind": "warranty_extension", "starts": "2026-01-01", "ends": "2027-12-31" })).await;
    assert_status(&r, StatusCode::CREATED);

    assert_error(
        &post(json!({ "id": "SC-1", "kind": "service_contract", "starts": "2027-01-01", "ends": "2027-12-31" })).await,
        StatusCode::CONFLICT,
        "contract_exists",
    );
    assert_error(
        &post(json!({ "id": "SC-2", "kind": "service_contract", "starts": "2027-01-02", "ends": "2027-01-01" })).await,
        StatusCode::BAD_REQUEST,
        "invalid_period",
    );
    assert_error(
        &post(
            json!({ "id": "SC-2", "kind": "gold", "starts": "2027-01-01", "ends": "2027-01-02" }),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_kind",
    );
    assert_error(
        &post(json!({ "id": "SC-2", "kind": "service_contract", "starts": "2027-1-1", "ends": "2027-01-02" })).await,
        StatusCode::BAD_REQUEST,
        "invalid_date",
    );
    assert_error(
        &t.post_json(
            "/v1/admin/devices/NOPE/contracts",
            Some(&t.admin),
            &json!({ "id": "SC-2", "kind": "service_contract", "starts": "2027-01-01", "ends": "2027-01-02" }),
        )
        .await,
        StatusCode::NOT_FOUND,
        "unknown_serial",
    );

    let d = t.get("/v1/devices/SN-1", Some(&t.technician)).await.json();
    let ids: Vec<&str> = d["contracts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["SC-1", "WX-1"]);
    assert_eq!(d["contracts"][0]["starts"], "2026-01-01");
    assert_eq!(d["contracts"][0]["ends"], "2026-12-31");

    // Only service contracts bear on firmware.
    let facts = load_device_facts(&t.app.db, "SN-1").await.unwrap().unwrap();
    assert_eq!(facts.model_id, "E3");
    assert_eq!(facts.hw_id, "enc-hd-r1");
    assert_eq!(facts.channel, "stable");
    assert_eq!(facts.contracts.len(), 1);
    assert_eq!(facts.contracts[0].contract_id, "SC-1");
    assert_eq!(facts.contracts[0].starts, date!(2026 - 01 - 01));
    assert_eq!(facts.contracts[0].ends, date!(2026 - 12 - 31));
    assert_eq!(facts.licence, None);
    assert!(facts.grants.is_empty());
    assert_eq!(load_device_facts(&t.app.db, "NOPE").await.unwrap(), None);

    let created = audit(&t, "contract.create").await;
    assert_eq!(created.len(), 2);
    assert_eq!(created[0]["target"], "contract/SC-1");
    assert_eq!(created[0]["detail"]["serial"], "SN-1");

    assert_eq!(
        delete(&t, "/v1/admin/contracts/SC-1", &t.admin)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &delete(&t, "/v1/admin/contracts/SC-1", &t.admin).await,
        StatusCode::NOT_FOUND,
        "unknown_contract",
    );
    assert_error(
        &delete(&t, "/v1/admin/contracts/WX-1", &t.technician).await,
        StatusCode::FORBIDDEN,
        "wrong_role",
    );
    assert!(
        load_device_facts(&t.app.db, "SN-1")
            .await
            .unwrap()
            .unwrap()
            .contracts
            .is_empty()
    );
    assert_eq!(
        audit(&t, "contract.delete").await[0]["detail"]["ends"],
        "2026-12-31"
    );
}

#[tokio::test]
async fn licences_belong_to_software_installations() {
    let t = TestApp::new().await;
    seed(&t).await;
    let r = provision(
        &t,
        json!([
            { "serial": "INST-1", "model_id": "SD-PRO", "hw_id": "streamdesk-x86_64" },
            { "serial": "SN-1", "model_id": "E4K", "hw_id": "enc-4k-r1" },
        ]),
        false,
    )
    .await;
    assert_status(&r, StatusCode::CREATED);
    let post = |serial: &str, body: Value| {
        let t = &t;
        let uri = format!("/v1/admin/devices/{serial}/licences");
        async move { t.post_json(&uri, Some(&t.admin), &body).await }
    };

    let r = post(
        "INST-1",
        json!({ "id": "LIC-ANNUAL", "starts": "2024-01-01", "ends": "2025-01-01" }),
    )
    .await;
    assert_status(&r, StatusCode::CREATED);
    let facts = load_device_facts(&t.app.db, "INST-1")
        .await
        .unwrap()
        .unwrap();
    let licence = facts.licence.expect("licence");
    assert_eq!(
        (licence.licence_id.as_str(), licence.ends),
        ("LIC-ANNUAL", Some(date!(2025 - 01 - 01)))
    );

    let r = post(
        "INST-1",
        json!({ "id": "LIC-PERP", "starts": "2023-01-01", "ends": null }),
    )
    .await;
    assert_status(&r, StatusCode::CREATED);
    assert!(r.json()["ends"].is_null());
    let facts = load_device_facts(&t.app.db, "INST-1")
        .await
        .unwrap()
        .unwrap();
    let licence = facts.licence.expect("licence");
    assert_eq!(
        (licence.licence_id.as_str(), licence.ends),
        ("LIC-PERP", None),
        "a perpetual licence wins"
    );
    let d = t
        .get("/v1/devices/INST-1", Some(&t.technician))
        .await
        .json();
    assert_eq!(d["kind"], "software");
    assert_eq!(d["licences"].as_array().unwrap().len(), 2);

    assert_error(
        &post(
            "INST-1",
            json!({ "id": "LIC-PERP", "starts": "2023-01-01" }),
        )
        .await,
        StatusCode::CONFLICT,
        "licence_exists",
    );
    assert_error(
        &post("SN-1", json!({ "id": "LIC-X", "starts": "2023-01-01" })).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "not_software",
    );
    assert_error(
        &post(
            "INST-1",
            json!({ "id": "LIC-X", "starts": "2023-01-02", "ends": "2023-01-01" }),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "invalid_period",
    );
    assert_error(
        &post("NOPE", json!({ "id": "LIC-X", "starts": "2023-01-01" })).await,
        StatusCode::NOT_FOUND,
        "unknown_serial",
    );

    assert_eq!(
        delete(&t, "/v1/admin/licences/LIC-PERP", &t.admin)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_error(
        &delete(&t, "/v1/admin/licences/LIC-PERP", &t.admin).await,
        StatusCode::NOT_FOUND,
        "unknown_licence",
    );
    let facts = load_device_facts(&t.app.db, "INST-1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(facts.licence.unwrap().licence_id, "LIC-ANNUAL");
    assert_eq!(audit(&t, "licence.create").await.len(), 2);
    assert_eq!(audit(&t, "licence.delete").await.len(), 1);
}

#[tokio::test]
async fn csv_imports_are_all_or_nothing_and_name_the_line() {
    let t = TestApp::new().await;
    seed(&t).await;
    let db = &t.app.db;

    // Line 5 (after a blank line) has a hardware id of another model.
    let bad = "serial,model_id,hw_id,channel\nCSV-1,E4K,enc-4k-r1,\nCSV-2,E4K,enc-4k-r2,beta\n\nCSV-3,E4K,enc-hd-r1,\n";
    let e = provisioning::import_devices_csv(db, &Actor::cli(), bad.as_bytes(), true)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "hw_id_not_in_model");
    assert!(
        e.to_string().starts_with("line 5 (serial \"CSV-3\")"),
        "{e}"
    );
    assert_eq!(device_count(&t).await, 0);
    assert_eq!(device_token_count(&t).await, 0);

    let good = "serial,model_id,hw_id\nCSV-1,E4K,enc-4k-r1\nCSV-2,E3,enc-hd-r1\n";
    let done = provisioning::import_devices_csv(db, &Actor::cli(), good.as_bytes(), true)
        .await
        .unwrap();
    assert_eq!(done.len(), 2);
    let token = done[1].token.as_ref().unwrap().token.clone();
    assert_error(
        &t.get("/v1/product-lines", Some(&token)).await,
        StatusCode::FORBIDDEN,
        "wrong_role",
    );
    let records = audit(&t, "device.provision").await;
    assert_eq!(records[0]["detail"]["source"], "csv");
    assert_eq!(records[0]["actor_label"], "server-cli");

    let e = provisioning::import_devices_csv(db, &Actor::cli(), good.as_bytes(), true)
        .await
        .unwrap_err();
    assert_eq!(e.code(), "serial_exists");
    assert!(e.to_string().starts_with("line 2 "), "{e}");

    // Contracts: line 3 names an unknown serial; nothing is imported.
    let contracts = "id,serial,kind,starts,ends\nSC-1,CSV-1,service_contract,2026-01-01,2026-12-31\nSC-2,NOPE,service_contract,2026-01-01,2026-12-31\n";
    let e = provisioning::import_contracts_csv(db, &Actor::cli(), contracts.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "unknown_serial");
    assert!(e.to_string().starts_with("line 3 "), "{e}");
    assert_eq!(db::contracts::count_contracts(&t.app.db).await.unwrap(), 0);

    let contracts = "id,serial,kind,starts,ends\nSC-1,CSV-1,service_contract,2026-01-01,2026-12-31\nSC-1,CSV-2,service_contract,2026-01-01,2026-12-31\n";
    let e = provisioning::import_contracts_csv(db, &Actor::cli(), contracts.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "duplicate_contract");
    let contracts =
        "id,serial,kind,starts,ends\nSC-1,CSV-1,service_contract,2026-12-31,2026-01-01\n";
    let e = provisioning::import_contracts_csv(db, &Actor::cli(), contracts.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "invalid_period");
    assert!(e.to_string().starts_with("line 2 "), "{e}");

    let contracts = "id,serial,kind,starts,ends\nSC-1,CSV-1,service_contract,2026-01-01,2026-12-31\nWX-2,CSV-2,warranty_extension,2026-01-01,2028-12-31\n";
    let serials = provisioning::import_contracts_csv(db, &Actor::cli(), contracts.as_bytes())
        .await
        .unwrap();
    assert_eq!(serials, ["CSV-1", "CSV-2"]);
    let facts = load_device_facts(db, "CSV-1").await.unwrap().unwrap();
    assert_eq!(facts.contracts[0].contract_id, "SC-1");
    assert_eq!(audit(&t, "contract.import").await[0]["detail"]["count"], 2);
    let e = provisioning::import_contracts_csv(db, &Actor::cli(), contracts.as_bytes())
        .await
        .unwrap_err();
    assert_eq!(e.code(), "contract_exists");
}

#[tokio::test]
async fn the_sample_catalogue_imports_idempotently() {
    let t = TestApp::new().await;
    let sample = firmup_fixtures::catalogue::sample();
    let doc = sample.to_import_json();
    let r = t
        .post_json("/v1/admin/catalogue/import", Some(&t.admin), &doc)
        .await;
    assert_status(&r, StatusCode::OK);
    let summary = r.json();
    assert_eq!(
        summary["product_lines"]["created"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(summary["models"]["created"].as_array().unwrap().len(), 10);
    let skipped: Vec<&str> = summary["skipped"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(skipped, ["accessories", "batteries"]);

    // Every hardware or software model is there, with its dates.
    let lines = t.get("/v1/product-lines", Some(&t.technician)).await.json();
    for line in sample
        .product_lines
        .iter()
        .filter(|l| l.kind != firmup_fixtures::catalogue::ProductKind::Accessory)
    {
        let got = lines
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == line.id)
            .unwrap_or_else(|| panic!("{} imported", line.id));
        assert_eq!(got["warranty_months"], line.warranty_months);
        assert_eq!(
            got["registration_bonus_months"],
            line.registration_bonus_months
        );
        for m in &line.models {
            let view = t
                .get(&format!("/v1/models/{}", m.id), Some(&t.technician))
                .await
                .json();
            assert_eq!(view["product_line"], line.id);
            assert_eq!(view["eol"], json!(m.eol.map(|d| d.to_string())), "{}", m.id);
            assert_eq!(view["launched"], m.launched.to_string());
        }
    }

    // Again: nothing changes.
    let r = t
        .post_json("/v1/admin/catalogue/import", Some(&t.admin), &doc)
        .await;
    assert_status(&r, StatusCode::OK);
    let again = r.json();
    assert_eq!(
        again["product_lines"]["unchanged"]
            .as_array()
            .unwrap()
            .len(),
        6
    );
    assert_eq!(again["models"]["unchanged"].as_array().unwrap().len(), 10);
    assert!(again["models"]["created"].as_array().unwrap().is_empty());
    assert!(again["models"]["updated"].as_array().unwrap().is_empty());
    assert_eq!(
        audit(&t, "catalogue.import").await.len(),
        2,
        "one record per call"
    );

    // A bad entry aborts everything and is named.
    let mut bad = doc.clone();
    bad["product_lines"][0]["models"][1]["eol"] = json!("2025-02-30");
    bad["product_lines"][0]["name"] = json!("Renamed");
    let r = t
        .post_json("/v1/admin/catalogue/import", Some(&t.admin), &bad)
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_date");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("product_lines[0].models[1] (model \"E3\")"),
        "{}",
        r.json()
    );
    let lines = t.get("/v1/product-lines", Some(&t.technician)).await.json();
    assert_eq!(
        lines
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == "encoders")
            .unwrap()["name"],
        "Encoders"
    );

    let mut bad = doc;
    bad["product_lines"][0]["registration_bonus_months"] = json!(24);
    let r = t
        .post_json("/v1/admin/catalogue/import", Some(&t.admin), &bad)
        .await;
    assert_error(
        &r,
        StatusCode::BAD_REQUEST,
        "unsupported_registration_bonus",
    );
    assert_error(
        &t.post_json(
            "/v1/admin/catalogue/import",
            Some(&t.technician),
            &json!({ "product_lines": [] }),
        )
        .await,
        StatusCode::FORBIDDEN,
        "wrong_role",
    );
}

#[tokio::test]
async fn catalogue_routes_are_in_the_openapi_document() {
    let t = TestApp::new().await;
    let doc = t.get("/openapi.json", None).await.json();
    for path in [
        "/v1/admin/product-lines/{id}",
        "/v1/product-lines",
        "/v1/admin/models/{id}",
        "/v1/admin/models/{id}/eol",
        "/v1/models/{id}",
        "/v1/admin/devices",
        "/v1/devices/{serial}",
        "/v1/admin/devices/{serial}/channel",
        "/v1/admin/devices/{serial}/registration",
        "/v1/admin/devices/{serial}/contracts",
        "/v1/admin/contracts/{id}",
        "/v1/admin/devices/{serial}/licences",
        "/v1/admin/licences/{id}",
        "/v1/admin/catalogue/import",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} missing");
    }
}
