//! The repair desk through the HTTP API: RMAs, their states, the coverage
//! decision of the after-sales policy (section 2), replaced parts and
//! replaced units, and the files attached to RMAs.

mod common;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::{TestApp, TestResponse};
use common::{assert_error, assert_status};
use firmup_client::Sha256Digest;
use firmup_server::config::Config;
use firmup_server::db;
use firmup_server::storage::StorageKey;
use serde_json::{Value, json};
use time::{Date, Duration, OffsetDateTime};

fn today() -> Date {
    OffsetDateTime::now_utc().date()
}

fn fmt(d: Date) -> String {
    firmup_server::provisioning::format_date(d)
}

/// Two product lines (encoders, repaired; batteries, exchanged), three
/// models, and the units the tests use.
async fn desk() -> TestApp {
    desk_with(|_| {}).await
}

/// [`desk`] with its configuration adjusted by `tweak`.
async fn desk_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let t = TestApp::with_config(tweak).await;
    for (id, body) in [
        (
            "encoders",
            json!({ "name": "Encoders", "kind": "hardware" }),
        ),
        (
            "batteries",
            json!({ "name": "Batteries", "kind": "hardware", "service_class": "exchange" }),
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
            json!({ "product_line": "encoders", "name": "E4K encoder", "hw_ids": ["enc-4k-r2"] }),
        ),
        (
            "E3",
            json!({ "product_line": "encoders", "name": "E3 encoder", "hw_ids": ["enc-hd-r1"],
                    "eol": "2025-06-30" }),
        ),
        (
            "BP-1",
            json!({ "product_line": "batteries", "name": "BP-1 battery", "hw_ids": ["bp-1"] }),
        ),
    ] {
        let r = t
            .put_json(&format!("/v1/admin/models/{id}"), Some(&t.admin), &body)
            .await;
        assert_status(&r, StatusCode::CREATED);
    }
    let devices = json!([
        { "serial": "U-1", "model_id": "E4K", "hw_id": "enc-4k-r2" },
        { "serial": "U-2", "model_id": "E4K", "hw_id": "enc-4k-r2" },
        { "serial": "U-3", "model_id": "E3", "hw_id": "enc-hd-r1" },
        { "serial": "U-NEW", "model_id": "E4K", "hw_id": "enc-4k-r2" },
        { "serial": "B-1", "model_id": "BP-1", "hw_id": "bp-1" },
    ]);
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

async fn sold(t: &TestApp, serial: &str, on: Date) {
    let r = t
        .put_json(
            &format!("/v1/admin/devices/{serial}/sale"),
            Some(&t.admin),
            &json!({ "sale_date": fmt(on) }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
}

async fn open(t: &TestApp, body: Value) -> TestResponse {
    t.post_json("/v1/rmas", Some(&t.technician), &body).await
}

fn open_body(serial: &str) -> Value {
    json!({
        "serial": serial,
        "customer": { "name": "Ana Duarte", "email": "ana@example.com", "phone": "+351 21 000 0000" },
        "fault": "no video on SDI out after a power cut",
    })
}

async fn open_ok(t: &TestApp, body: Value) -> Value {
    let r = open(t, body).await;
    assert_status(&r, StatusCode::CREATED);
    r.json()
}

async fn move_to(t: &TestApp, number: &str, body: Value) -> TestResponse {
    t.post_json(
        &format!("/v1/rmas/{number}/state"),
        Some(&t.technician),
        &body,
    )
    .await
}

async fn decide(t: &TestApp, number: &str, body: Value) -> Value {
    let r = t
        .post_json(
            &format!("/v1/rmas/{number}/coverage"),
            Some(&t.technician),
            &body,
        )
        .await;
    assert_status(&r, StatusCode::OK);
    r.json()["coverage"].clone()
}

async fn get(t: &TestApp, uri: &str) -> Value {
    let r = t.get(uri, Some(&t.technician)).await;
    assert_status(&r, StatusCode::OK);
    r.json()
}

async fn audit_count(t: &TestApp, action: &str) -> i64 {
    let mut tx = t.app.db.begin().await.unwrap();
    db::audit::count_action(&mut tx, action).await.unwrap()
}

#[tokio::test]
async fn an_rma_is_numbered_walks_its_states_and_records_who_and_when() {
    let t = desk().await;
    let year = today().year();
    let a = open_ok(&t, open_body("U-1")).await;
    assert_eq!(a["number"], format!("RMA-{year}-000001"));
    assert_eq!(a["state"], "received");
    assert_eq!(a["next_states"], json!(["diagnosing", "cancelled"]));
    assert_eq!(a["customer"]["email"], "ana@example.com");
    assert_eq!(a["fault_on"], fmt(today()));
    assert_eq!(a["opened_by"], "test-technician");
    assert_eq!(a["events"][0]["kind"], "opened");
    let mut b = open_body("U-2");
    b["tracking_in"] = json!("1Z999AA10123456784");
    let b = open_ok(&t, b).await;
    assert_eq!(b["number"], format!("RMA-{year}-000002"));
    assert_eq!(b["tracking_in"], "1Z999AA10123456784");
    let number = a["number"].as_str().unwrap().to_owned();

    // The flow, with a failed test sent back to repair.
    for state in ["diagnosing", "repairing", "testing", "repairing", "testing"] {
        let r = move_to(&t, &number, json!({ "state": state, "note": "bench" })).await;
        assert_status(&r, StatusCode::OK);
        assert_eq!(r.json()["state"], state);
    }
    // A forbidden change names the allowed ones and changes nothing.
    let before = get(&t, &format!("/v1/rmas/{number}")).await;
    for bad in ["received", "diagnosing", "closed", "testing"] {
        let r = move_to(&t, &number, json!({ "state": bad })).await;
        assert_error(&r, StatusCode::CONFLICT, "rma_state_forbidden");
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("repairing, shipped, cancelled"),
            "{}",
            r.json()
        );
    }
    assert_eq!(get(&t, &format!("/v1/rmas/{number}")).await, before);

    let r = move_to(
        &t,
        &number,
        json!({ "state": "shipped", "tracking_out": "JJD0099999999" }),
    )
    .await;
    assert_status(&r, StatusCode::OK);
    assert_eq!(r.json()["tracking_out"], "JJD0099999999");
    // Shipped: it can no longer be cancelled, only closed.
    let r = move_to(&t, &number, json!({ "state": "cancelled" })).await;
    assert_error(&r, StatusCode::CONFLICT, "rma_state_forbidden");
    let r = move_to(&t, &number, json!({ "state": "closed" })).await;
    assert_status(&r, StatusCode::OK);
    let closed = r.json();
    assert_eq!(closed["next_states"], json!([]));
    let r = move_to(&t, &number, json!({ "state": "received" })).await;
    assert_error(&r, StatusCode::CONFLICT, "rma_state_forbidden");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("final")
    );

    // Each change is an event with its actor, time and states.
    let events = closed["events"].as_array().unwrap();
    let moves: Vec<(&str, &str)> = events
        .iter()
        .filter(|e| e["kind"] == "state")
        .map(|e| {
            (
                e["from_state"].as_str().unwrap(),
                e["to_state"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        [
            ("received", "diagnosing"),
            ("diagnosing", "repairing"),
            ("repairing", "testing"),
            ("testing", "repairing"),
            ("repairing", "testing"),
            ("testing", "shipped"),
            ("shipped", "closed"),
        ]
    );
    assert!(events.iter().all(|e| e["actor"] == "test-technician"));
    assert!(events.iter().all(|e| e["at"].as_str().is_some()));
    assert_eq!(audit_count(&t, "rma.state").await, 7);
    assert_eq!(audit_count(&t, "rma.open").await, 2);
    // The audit log never holds the customer's contact.
    let log = t
        .get("/v1/admin/audit?limit=1000", Some(&t.admin))
        .await
        .json()
        .to_string();
    assert!(!log.contains("ana@example.com") && !log.contains("Duarte"));

    // Lists filter by state, model, unit and age.
    let rmas = |v: Value| -> Vec<String> {
        v["rmas"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["number"].as_str().unwrap().to_owned())
            .collect()
    };
    let b_number = b["number"].as_str().unwrap().to_owned();
    assert_eq!(
        rmas(get(&t, "/v1/rmas").await),
        [b_number.as_str(), number.as_str()]
    );
    assert_eq!(
        rmas(get(&t, "/v1/rmas?state=open").await),
        [b_number.as_str()]
    );
    assert_eq!(
        rmas(get(&t, "/v1/rmas?state=closed,cancelled").await),
        [number.as_str()]
    );
    assert_eq!(
        rmas(get(&t, "/v1/rmas?serial=U-2").await),
        [b_number.as_str()]
    );
    assert_eq!(rmas(get(&t, "/v1/rmas?model=E4K").await).len(), 2);
    assert!(rmas(get(&t, "/v1/rmas?model=E3").await).is_empty());
    assert!(rmas(get(&t, "/v1/rmas?older_than_days=1").await).is_empty());
    assert_eq!(get(&t, "/v1/rmas").await["rmas"][0]["age_days"], 0);
    // The device view lists its open RMAs.
    let d = get(&t, "/v1/devices/U-2").await;
    assert_eq!(d["open_rmas"][0]["number"], b_number.as_str());
    assert_eq!(get(&t, "/v1/devices/U-1").await["open_rmas"], json!([]));

    // Tracking numbers can be set later, but not on a closed RMA.
    let r = t
        .put_json(
            &format!("/v1/rmas/{b_number}/tracking"),
            Some(&t.technician),
            &json!({ "tracking_out": "JJD0011" }),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    assert_eq!(r.json()["tracking_in"], "1Z999AA10123456784");
    assert_eq!(r.json()["tracking_out"], "JJD0011");
    let r = t
        .put_json(
            &format!("/v1/rmas/{number}/tracking"),
            Some(&t.technician),
            &json!({ "tracking_in": "X1" }),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "rma_finished");
}

#[tokio::test]
async fn the_coverage_decision_follows_the_after_sales_policy() {
    let t = desk().await;
    let day = |n: i64| today() - Duration::days(n);
    // Received 10 days ago, a fault not caused by the customer: return or
    // exchange.
    sold(&t, "U-1", day(12)).await;
    let mut b = open_body("U-1");
    b["received_on"] = json!(fmt(day(10)));
    let n1 = open_ok(&t, b).await["number"].as_str().unwrap().to_owned();
    let c = decide(&t, &n1, json!({ "cause": "no_customer_fault" })).await;
    assert_eq!(c["code"], "return_or_exchange", "{c}");
    assert_eq!(c["covered"], true);
    // Damaged in transport without the carrier's proof: no return, but the
    // warranty repairs it.
    let c = decide(&t, &n1, json!({ "cause": "transport_to_customer" })).await;
    assert_eq!(c["code"], "warranty_repair", "{c}");
    assert!(
        c["explanation"]
            .as_str()
            .unwrap()
            .contains("carrier's proof")
    );
    // The decision is the latest one, and each is recorded.
    let v = get(&t, &format!("/v1/rmas/{n1}")).await;
    assert_eq!(v["coverage"]["code"], "warranty_repair");
    assert_eq!(
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "coverage")
            .count(),
        2
    );

    // Sold 200 days ago: warranty repair; dropped: not covered, exclusion
    // named.
    sold(&t, "U-2", day(200)).await;
    let n2 = open_ok(&t, open_body("U-2")).await["number"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = decide(&t, &n2, json!({ "cause": "no_customer_fault" })).await;
    assert_eq!(
        (c["code"].as_str(), c["covered"].as_bool()),
        (Some("warranty_repair"), Some(true))
    );
    let c = decide(&t, &n2, json!({ "cause": "human_damage" })).await;
    assert_eq!(c["code"], "not_covered");
    assert_eq!(c["exclusion"], "human_damage");
    assert_eq!(c["covered"], false);

    // Sold three years ago, never registered: a paid repair.
    sold(&t, "U-3", day(3 * 365)).await;
    let n3 = open_ok(&t, open_body("U-3")).await["number"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = decide(&t, &n3, json!({ "cause": "no_customer_fault" })).await;
    assert_eq!(
        (c["code"].as_str(), c["covered"].as_bool()),
        (Some("paid_repair"), Some(false))
    );

    // A battery within its 6 months is exchanged.
    sold(&t, "B-1", day(90)).await;
    let n4 = open_ok(&t, open_body("B-1")).await["number"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = decide(&t, &n4, json!({ "cause": "no_customer_fault" })).await;
    assert_eq!(c["code"], "warranty_exchange", "{c}");

    // Unknown causes are refused; a finished RMA takes no decision.
    let r = t
        .post_json(
            &format!("/v1/rmas/{n4}/coverage"),
            Some(&t.technician),
            &json!({ "cause": "gremlins" }),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "invalid_cause");
    assert_status(
        &move_to(&t, &n4, json!({ "state": "cancelled" })).await,
        StatusCode::OK,
    );
    let r = t
        .post_json(
            &format!("/v1/rmas/{n4}/coverage"),
            Some(&t.technician),
            &json!({ "cause": "no_customer_fault" }),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "rma_finished");
    assert_eq!(audit_count(&t, "rma.coverage").await, 6);
}

#[tokio::test]
async fn parts_and_whole_units_are_replaced_with_their_own_warranties() {
    let t = desk().await;
    let day = |n: i64| today() - Duration::days(n);
    sold(&t, "U-1", day(340)).await;
    let r = t
        .post_json(
            "/v1/admin/devices/U-1/registration",
            Some(&t.admin),
            &json!({}),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    let r = t
        .post_json(
            "/v1/admin/devices/U-1/contracts",
            Some(&t.admin),
            &json!({ "id": "SC-1", "kind": "service_contract", "starts": fmt(day(300)),
                     "ends": fmt(today() + Duration::days(400)) }),
        )
        .await;
    assert_status(&r, StatusCode::CREATED);
    let number = open_ok(&t, open_body("U-1")).await["number"]
        .as_str()
        .unwrap()
        .to_owned();
    let part = |body: Value| {
        let t = &t;
        let uri = format!("/v1/rmas/{number}/parts");
        async move { t.post_json(&uri, Some(&t.technician), &body).await }
    };
    let replace = |serial: &str| {
        let t = &t;
        let uri = format!("/v1/rmas/{number}/replacement");
        let body = json!({ "serial": serial });
        async move { t.post_json(&uri, Some(&t.technician), &body).await }
    };
    // Nothing is replaced before the coverage is decided.
    assert_error(
        &part(json!({ "part": "power supply" })).await,
        StatusCode::CONFLICT,
        "coverage_not_decided",
    );
    assert_error(
        &replace("U-NEW").await,
        StatusCode::CONFLICT,
        "coverage_not_decided",
    );

    // Under warranty: the part is covered for the unit's remaining warranty
    // (registered: 12 + 12 months from the sale), which is longer than 90
    // days.
    decide(&t, &number, json!({ "cause": "no_customer_fault" })).await;
    let unit = get(&t, "/v1/devices/U-1").await;
    let r = part(json!({ "part": "power supply" })).await;
    assert_status(&r, StatusCode::CREATED);
    let p = r.json();
    assert_eq!(p["under_warranty"], true);
    assert_eq!(p["replaced_on"], fmt(today()));
    assert_eq!(p["warranty_ends"], unit["warranty"]["ends"], "{p} {unit}");
    let unit = get(&t, "/v1/devices/U-1").await;
    assert_eq!(unit["warranty"]["parts"][0]["part"], "power supply");
    assert_eq!(get(&t, &format!("/v1/rmas/{number}")).await["parts"][0], p);

    // Replacement units must be stock of the same product line.
    assert_error(
        &replace("U-1").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "replacement_same_unit",
    );
    assert_error(
        &replace("B-1").await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "replacement_wrong_product_line",
    );
    assert_error(
        &replace("U-404").await,
        StatusCode::NOT_FOUND,
        "unknown_serial",
    );
    open_ok(&t, open_body("U-2")).await;
    assert_error(
        &replace("U-2").await,
        StatusCode::CONFLICT,
        "replacement_in_use",
    );
    assert_eq!(audit_count(&t, "device.replace").await, 0);

    // The new unit takes over owner and contracts with a fresh warranty.
    let r = replace("U-NEW").await;
    assert_status(&r, StatusCode::OK);
    let old = get(&t, "/v1/devices/U-1").await;
    assert_eq!(old["replaced_by"], "U-NEW");
    assert_eq!(old["replaced_on"], fmt(today()));
    assert_eq!(old["contracts"], json!([]));
    let new = get(&t, "/v1/devices/U-NEW").await;
    assert_eq!(new["replaces"], "U-1");
    assert_eq!(new["contracts"][0]["id"], "SC-1");
    assert!(new["registered_at"].is_string(), "{new}");
    assert_eq!(new["warranty"]["start"], fmt(today()), "{new}");
    assert_eq!(new["warranty"]["state"], "in_warranty");
    assert!(
        new["warranty"]["explanation"]
            .as_str()
            .unwrap()
            .contains("U-1"),
        "{new}"
    );
    assert_eq!(audit_count(&t, "device.replace").await, 1);
    // A replaced unit is replaced once, and gets no new RMA.
    assert_error(&replace("U-3").await, StatusCode::CONFLICT, "unit_replaced");
    assert_error(
        &open(&t, open_body("U-1")).await,
        StatusCode::CONFLICT,
        "unit_replaced",
    );
    let events: Vec<String> = get(&t, &format!("/v1/rmas/{number}")).await["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(events, ["opened", "coverage", "part", "replacement"]);
}

#[tokio::test]
async fn an_out_of_warranty_part_has_ninety_days_and_no_unit_is_replaced() {
    let t = desk().await;
    sold(&t, "U-3", today() - Duration::days(3 * 365)).await;
    let number = open_ok(&t, open_body("U-3")).await["number"]
        .as_str()
        .unwrap()
        .to_owned();
    let c = decide(&t, &number, json!({ "cause": "human_damage" })).await;
    assert_eq!(c["covered"], false);
    let r = t
        .post_json(
            &format!("/v1/rmas/{number}/replacement"),
            Some(&t.technician),
            &json!({ "serial": "U-NEW" }),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "replacement_not_covered");
    let r = t
        .post_json(
            &format!("/v1/rmas/{number}/parts"),
            Some(&t.technician),
            &json!({ "part": "fan" }),
        )
        .await;
    assert_status(&r, StatusCode::CREATED);
    let p = r.json();
    assert_eq!(p["under_warranty"], false);
    assert_eq!(p["warranty_ends"], fmt(today() + Duration::days(89)), "{p}");
    assert_eq!(get(&t, "/v1/devices/U-NEW").await["replaces"], Value::Null);
}

#[tokio::test]
async fn rma_bad_input_has_stable_codes_and_changes_nothing() {
    let t = desk().await;
    let tomorrow = fmt(today() + Duration::days(1));
    let with = |f: &dyn Fn(&mut Value)| {
        let mut b = open_body("U-1");
        f(&mut b);
        b
    };
    let cases: Vec<(Value, StatusCode, &str)> = vec![
        (
            with(&|b| b["serial"] = json!("U-404")),
            StatusCode::NOT_FOUND,
            "unknown_serial",
        ),
        (
            with(&|b| b["serial"] = json!("../x")),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
        (
            with(&|b| b["customer"]["email"] = json!("ana at example")),
            StatusCode::BAD_REQUEST,
            "invalid_email",
        ),
        (
            with(&|b| b["customer"]["name"] = json!(" ")),
            StatusCode::BAD_REQUEST,
            "invalid_customer",
        ),
        (
            with(&|b| b["customer"]["phone"] = json!("call me")),
            StatusCode::BAD_REQUEST,
            "invalid_phone",
        ),
        (
            with(&|b| b["fault"] = json!("x".repeat(4001))),
            StatusCode::BAD_REQUEST,
            "invalid_fault",
        ),
        (
            with(&|b| b["fault_on"] = json!(tomorrow.clone())),
            StatusCode::BAD_REQUEST,
            "invalid_date",
        ),
        (
            with(&|b| b["received_on"] = json!("2026-02-30")),
            StatusCode::BAD_REQUEST,
            "invalid_date",
        ),
        (
            with(&|b| b["tracking_in"] = json!("\u{202e}1Z")),
            StatusCode::BAD_REQUEST,
            "invalid_tracking",
        ),
        (
            with(&|b| b["priority"] = json!("high")),
            StatusCode::BAD_REQUEST,
            "invalid_json",
        ),
    ];
    for (body, status, code) in cases {
        let r = open(&t, body.clone()).await;
        assert_error(&r, status, code);
    }
    assert!(
        get(&t, "/v1/rmas").await["rmas"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    assert_eq!(audit_count(&t, "rma.open").await, 0);

    // Roles: the desk opens and changes RMAs; release engineers may read
    // them; devices may do neither.
    let device_token = t.device_token("U-1").await;
    for token in [&device_token, &t.release_engineer] {
        let r = t
            .post_json("/v1/rmas", Some(token), &open_body("U-1"))
            .await;
        assert_eq!(r.status, StatusCode::FORBIDDEN);
    }
    assert_eq!(
        t.get("/v1/rmas", Some(&t.release_engineer)).await.status,
        StatusCode::OK
    );
    assert_eq!(
        t.get("/v1/rmas", Some(&device_token)).await.status,
        StatusCode::FORBIDDEN
    );

    // Numbers, states and causes.
    let year = today().year();
    let missing = format!("RMA-{year}-000042");
    for (uri, status, code) in [
        (
            format!("/v1/rmas/{missing}"),
            StatusCode::NOT_FOUND,
            "unknown_rma",
        ),
        (
            "/v1/rmas/RMA-42".to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid_rma",
        ),
        (
            "/v1/rmas?state=lost".to_owned(),
            StatusCode::BAD_REQUEST,
            "invalid_state",
        ),
    ] {
        let r = t.get(&uri, Some(&t.technician)).await;
        assert_error(&r, status, code);
    }
    let r = move_to(&t, &missing, json!({ "state": "diagnosing" })).await;
    assert_error(&r, StatusCode::NOT_FOUND, "unknown_rma");
    let number = open_ok(&t, open_body("U-1")).await["number"]
        .as_str()
        .unwrap()
        .to_owned();
    for (body, status, code) in [
        (
            json!({ "state": "lost" }),
            StatusCode::BAD_REQUEST,
            "invalid_state",
        ),
        (
            json!({ "state": "diagnosing", "tracking_out": "X" }),
            StatusCode::BAD_REQUEST,
            "invalid_tracking",
        ),
        (
            json!({ "state": "diagnosing", "note": "" }),
            StatusCode::BAD_REQUEST,
            "invalid_note",
        ),
    ] {
        assert_error(&move_to(&t, &number, body).await, status, code);
    }
    // A body is an object: an array of no fields is not an empty update.
    for body in [json!([]), json!(["X1", "X2"]), json!(null)] {
        let r = t
            .put_json(
                &format!("/v1/rmas/{number}/tracking"),
                Some(&t.technician),
                &body,
            )
            .await;
        assert_error(&r, StatusCode::BAD_REQUEST, "invalid_json");
    }
    let v = get(&t, &format!("/v1/rmas/{number}")).await;
    assert_eq!(v["state"], "received");
    assert_eq!(v["events"].as_array().unwrap().len(), 1);
}

/// Uploads `body` as the file `name` of RMA `number`, with the extra
/// headers (a Content-Type, a Content-Length).
async fn attach(
    t: &TestApp,
    number: &str,
    query: &str,
    headers: &[(&str, &str)],
    body: impl Into<Body>,
) -> TestResponse {
    t.send(
        Method::POST,
        &format!("/v1/rmas/{number}/attachments?{query}"),
        Some(&t.technician),
        headers,
        body,
    )
    .await
}

#[tokio::test]
async fn files_are_attached_listed_and_streamed_back_as_they_came() {
    let t = desk().await;
    let number = open_ok(&t, open_body("U-1")).await["number"]
        .as_str()
        .unwrap()
        .to_owned();
    // A photo of 300 000 bytes, more than one read chunk, with its digest.
    let photo: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let digest = Sha256Digest::of(&photo).to_hex();
    let length = photo.len().to_string();
    let r = attach(
        &t,
        &number,
        &format!("name=front%20panel.jpg&sha256={digest}"),
        &[("content-type", "image/jpeg"), ("content-length", &length)],
        photo.clone(),
    )
    .await;
    assert_status(&r, StatusCode::CREATED);
    let a = r.json();
    assert_eq!(a["name"], "front panel.jpg");
    assert_eq!(a["content_type"], "image/jpeg");
    assert_eq!(a["length"], 300_000);
    assert_eq!(a["sha256"], digest.as_str());
    assert_eq!(a["uploaded_by"], "test-technician");
    let id = a["id"].as_str().unwrap().to_owned();
    assert!(id.starts_with("att_"), "{id}");

    // A log, streamed without Content-Length, Content-Type or digest.
    let log = b"2026-03-01 10:00 boot\n2026-03-01 10:01 SDI lost\n".to_vec();
    let r = attach(&t, &number, "name=bench.log", &[], log.clone()).await;
    assert_status(&r, StatusCode::CREATED);
    let log_id = r.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(r.json()["content_type"], "application/octet-stream");
    assert_eq!(r.json()["length"], log.len());

    // The RMA lists them, oldest first, and records who attached what.
    let v = get(&t, &format!("/v1/rmas/{number}")).await;
    let listed: Vec<&str> = v["attachments"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [id.as_str(), log_id.as_str()]);
    assert_eq!(v["attachments"][0], a);
    let events: Vec<&Value> = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "attachment")
        .collect();
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["detail"]["name"], "front panel.jpg");
    assert_eq!(events[0]["detail"]["sha256"], digest.as_str());
    assert_eq!(events[0]["actor"], "test-technician");
    assert_eq!(audit_count(&t, "rma.attachment").await, 2);

    // Streamed back byte for byte, to every staff role.
    for token in [&t.technician, &t.release_engineer, &t.admin] {
        let r = t
            .get(&format!("/v1/rmas/{number}/attachments/{id}"), Some(token))
            .await;
        assert_status(&r, StatusCode::OK);
        assert!(r.body == photo, "the bytes differ");
        assert_eq!(r.header("content-type"), Some("image/jpeg"));
        assert_eq!(r.header("content-length"), Some(length.as_str()));
        assert_eq!(
            r.header("content-disposition"),
            Some("attachment; filename=\"front_panel.jpg\"; filename*=UTF-8''front%20panel.jpg")
        );
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
    }
    let r = t
        .get(
            &format!("/v1/rmas/{number}/attachments/{log_id}"),
            Some(&t.technician),
        )
        .await;
    assert_status(&r, StatusCode::OK);
    assert!(r.body == log);
    // Content-addressed: the same bytes again are a second attachment of
    // the one stored object.
    let r = attach(&t, &number, "name=again.log", &[], log.clone()).await;
    assert_status(&r, StatusCode::CREATED);
    assert_eq!(r.json()["sha256"], Sha256Digest::of(&log).to_hex());
    assert_eq!(
        t.app
            .storage
            .len(StorageKey::attachment(Sha256Digest::of(&log)))
            .await
            .unwrap(),
        Some(log.len() as u64)
    );
    assert_eq!(t.app.storage.staged_count().await.unwrap(), 0);
}

#[tokio::test]
async fn refused_files_leave_nothing_recorded() {
    let t = desk_with(|c| c.max_attachment_bytes = 1000).await;
    let number = open_ok(&t, open_body("U-1")).await["number"]
        .as_str()
        .unwrap()
        .to_owned();
    let big = vec![b'x'; 1001];
    let big_digest = Sha256Digest::of(&big);
    let small = b"a small log".to_vec();
    let other = Sha256Digest::of(b"something else").to_hex();
    let year = today().year();
    let missing = format!("RMA-{year}-000042");
    /// RMA, query, headers, body, and the answer.
    type Case<'a> = (
        &'a str,
        String,
        Vec<(&'a str, &'a str)>,
        Vec<u8>,
        StatusCode,
        &'a str,
    );
    let cases: Vec<Case> = vec![
        // Too large, announced: refused before a byte is read.
        (
            number.as_str(),
            "name=big.bin".into(),
            vec![("content-length", "1001")],
            big.clone(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "attachment_too_large",
        ),
        // Too large, found while streaming.
        (
            number.as_str(),
            "name=big.bin".into(),
            vec![],
            big.clone(),
            StatusCode::PAYLOAD_TOO_LARGE,
            "attachment_too_large",
        ),
        (
            number.as_str(),
            format!("name=log.txt&sha256={other}"),
            vec![],
            small.clone(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "attachment_digest_mismatch",
        ),
        (
            number.as_str(),
            "name=log.txt".into(),
            vec![("content-length", "50")],
            small.clone(),
            StatusCode::BAD_REQUEST,
            "length_mismatch",
        ),
        (
            missing.as_str(),
            "name=log.txt".into(),
            vec![],
            small.clone(),
            StatusCode::NOT_FOUND,
            "unknown_rma",
        ),
        (
            number.as_str(),
            "name=..%2Fetc%2Fpasswd".into(),
            vec![],
            small.clone(),
            StatusCode::BAD_REQUEST,
            "invalid_file_name",
        ),
        (
            number.as_str(),
            "name=a%5Cb.txt".into(),
            vec![],
            small.clone(),
            StatusCode::BAD_REQUEST,
            "invalid_file_name",
        ),
        (
            number.as_str(),
            "name=%20".into(),
            vec![],
            small.clone(),
            StatusCode::BAD_REQUEST,
            "invalid_file_name",
        ),
        (
            number.as_str(),
            format!("name={}", "x".repeat(201)),
            vec![],
            small.clone(),
            StatusCode::BAD_REQUEST,
            "invalid_file_name",
        ),
        (
            number.as_str(),
            "name=log.txt&sha256=ABC".into(),
            vec![],
            small.clone(),
            StatusCode::BAD_REQUEST,
            "invalid_sha256",
        ),
        (
            number.as_str(),
            "name=log.txt".into(),
            vec![("content-type", "text")],
            small.clone(),
            StatusCode::BAD_REQUEST,
            "invalid_content_type",
        ),
        (
            number.as_str(),
            "sha256=".into(),
            vec![],
            small.clone(),
            StatusCode::BAD_REQUEST,
            "invalid_query",
        ),
        (
            "RMA-42",
            "name=log.txt".into(),
            vec![],
            small.clone(),
            StatusCode::BAD_REQUEST,
            "invalid_rma",
        ),
    ];
    for (rma, query, headers, body, status, code) in cases {
        let r = attach(&t, rma, &query, &headers, body).await;
        assert_error(&r, status, code);
    }
    // A body that breaks off mid-way.
    let cut = futures_util::stream::iter(vec![
        Ok(bytes::Bytes::from_static(b"first half")),
        Err(std::io::Error::other("connection reset")),
    ]);
    let r = attach(&t, &number, "name=cut.log", &[], Body::from_stream(cut)).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "upload_interrupted");

    let v = get(&t, &format!("/v1/rmas/{number}")).await;
    assert_eq!(v["attachments"], json!([]));
    assert!(
        v["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["kind"] != "attachment")
    );
    assert_eq!(audit_count(&t, "rma.attachment").await, 0);
    assert_eq!(
        t.app
            .storage
            .len(StorageKey::attachment(big_digest))
            .await
            .unwrap(),
        None,
        "nothing of the oversize file is stored"
    );
    assert_eq!(t.app.storage.staged_count().await.unwrap(), 0);

    // Exactly the limit is fine; release engineers read but do not attach.
    let r = attach(&t, &number, "name=max.bin", &[], vec![b'y'; 1000]).await;
    assert_status(&r, StatusCode::CREATED);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let r = t
        .send(
            Method::POST,
            &format!("/v1/rmas/{number}/attachments?name=x.txt"),
            Some(&t.release_engineer),
            &[],
            small.clone(),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "wrong_role");

    // Downloads: an unknown RMA or attachment is 404.
    for (uri, status, code) in [
        (
            format!("/v1/rmas/{missing}/attachments/{id}"),
            StatusCode::NOT_FOUND,
            "unknown_rma",
        ),
        (
            format!("/v1/rmas/{number}/attachments/att_0"),
            StatusCode::NOT_FOUND,
            "unknown_attachment",
        ),
        (
            format!("/v1/rmas/{number}/attachments/..%2Fx"),
            StatusCode::BAD_REQUEST,
            "invalid_name",
        ),
    ] {
        let r = t.get(&uri, Some(&t.technician)).await;
        assert_error(&r, status, code);
    }
    // Another RMA's attachment is not this one's.
    let other_rma = open_ok(&t, open_body("U-2")).await["number"]
        .as_str()
        .unwrap()
        .to_owned();
    let r = t
        .get(
            &format!("/v1/rmas/{other_rma}/attachments/{id}"),
            Some(&t.technician),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "unknown_attachment");

    // A cancelled RMA takes no more files.
    let r = move_to(&t, &other_rma, json!({ "state": "cancelled" })).await;
    assert_status(&r, StatusCode::OK);
    let r = attach(&t, &other_rma, "name=late.jpg", &[], small.clone()).await;
    assert_error(&r, StatusCode::CONFLICT, "rma_finished");
    assert_eq!(
        get(&t, &format!("/v1/rmas/{other_rma}")).await["attachments"],
        json!([])
    );
    assert_eq!(audit_count(&t, "rma.attachment").await, 1);

    // The served document states the upload's rules on its parameters.
    let doc = t.get("/openapi.json", None).await.json();
    let op = &doc["paths"]["/v1/rmas/{number}/attachments"]["post"];
    let param = |name: &str| {
        op["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("no parameter {name}: {op}"))
            .clone()
    };
    assert_eq!(param("name")["required"], true);
    assert_eq!(param("name")["schema"]["maxLength"], 200);
    assert!(param("name")["schema"]["pattern"].is_string());
    assert_eq!(
        param("sha256")["schema"]["pattern"],
        firmup_server::openapi::SHA256_PATTERN
    );
    for status in ["201", "404", "409", "413", "422"] {
        assert!(op["responses"].get(status).is_some(), "{status}: {op}");
    }
}
