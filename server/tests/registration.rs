//! Owner registration through the HTTP API: the verification code from
//! factory data, one answer for unknown serials and wrong codes, the rate
//! limits, and the desk registering on an owner's behalf.

mod common;

use axum::http::StatusCode;
use common::assert_status;
use common::{TestApp, TestResponse};
use firmup_server::db;
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

fn fmt(d: time::Date) -> String {
    firmup_server::provisioning::format_date(d)
}

/// Encoders (hardware, 12 months) with units SN-1 and SN-2 carrying codes,
/// sold 100 days ago, and SN-3 without a code.
async fn world(tweak: impl FnOnce(&mut firmup_server::config::Config)) -> TestApp {
    let t = TestApp::with_config(tweak).await;
    let r = t
        .put_json(
            "/v1/admin/product-lines/encoders",
            Some(&t.admin),
            &json!({ "name": "Encoders", "kind": "hardware" }),
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
    assert_status(&r, StatusCode::CREATED);
    let sold = fmt(OffsetDateTime::now_utc().date() - Duration::days(100));
    let r = t
        .post_json(
            "/v1/admin/devices",
            Some(&t.admin),
            &json!({ "issue_tokens": false, "devices": [
                { "serial": "SN-1", "model_id": "E4K", "hw_id": "enc-4k-r2",
                  "verification_code": "7QX2-M9KD-41PA", "sale_date": sold, "region": "EU" },
                { "serial": "SN-2", "model_id": "E4K", "hw_id": "enc-4k-r2",
                  "verification_code": "ZZZZ-0000-1111" },
                { "serial": "SN-3", "model_id": "E4K", "hw_id": "enc-4k-r2" },
            ]}),
        )
        .await;
    assert_status(&r, StatusCode::CREATED);
    t
}

async fn register(t: &TestApp, serial: &str, code: &str) -> TestResponse {
    t.post_json(
        "/v1/registrations",
        None,
        &json!({ "serial": serial, "verification_code": code }),
    )
    .await
}

async fn device(t: &TestApp, serial: &str) -> Value {
    let r = t
        .get(&format!("/v1/devices/{serial}"), Some(&t.technician))
        .await;
    assert_status(&r, StatusCode::OK);
    r.json()
}

async fn registrations_audited(t: &TestApp) -> i64 {
    let mut tx = t.app.db.begin().await.unwrap();
    db::audit::count_action(&mut tx, "device.register")
        .await
        .unwrap()
}

#[tokio::test]
async fn an_owner_registers_with_the_printed_code_and_the_warranty_grows_by_a_year() {
    let t = world(|_| {}).await;
    let before = device(&t, "SN-1").await;
    assert_eq!(before["verification_code_on_file"], true);
    assert_eq!(
        before["sale_date"],
        fmt(OffsetDateTime::now_utc().date() - Duration::days(100))
    );
    assert_eq!(before["region"], "EU");
    assert_eq!(device(&t, "SN-3").await["verification_code_on_file"], false);
    // The code is never shown, nor its hash.
    let text = before.to_string().to_lowercase();
    assert!(!text.contains("7qx2") && !text.contains("hash"), "{before}");

    // Case, spaces and dashes do not matter.
    let r = register(&t, "SN-1", " 7qx2 m9kd-41pa ").await;
    assert_status(&r, StatusCode::OK);
    let v = r.json();
    assert_eq!(v["serial"], "SN-1");
    assert_eq!(v["warranty_state"], "in_warranty");
    let after = device(&t, "SN-1").await;
    assert!(after["registered_at"].is_string());
    let standard_end: time::Date = time::Date::parse(
        after["warranty"]["standard_ends"].as_str().unwrap(),
        &time::format_description::well_known::Iso8601::DATE,
    )
    .unwrap();
    assert_eq!(v["warranty_ends"], after["warranty"]["ends"]);
    assert_eq!(
        v["warranty_ends"].as_str().unwrap(),
        fmt(
            firmup_server::warranty::add_months(standard_end + Duration::days(1), 12)
                - Duration::days(1)
        )
    );
    assert_eq!(
        before["warranty"]["ends"],
        before["warranty"]["standard_ends"]
    );
    // One audit record, by the owner.
    assert_eq!(registrations_audited(&t).await, 1);
    let log = t.get("/v1/admin/audit", Some(&t.admin)).await.json();
    let entry = log
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "device.register")
        .unwrap()
        .clone();
    assert_eq!(entry["actor_label"], "owner", "{entry}");

    // Registering twice: 409, nothing changes.
    let r = register(&t, "SN-1", "7QX2M9KD41PA").await;
    assert_eq!(r.error_code(), "already_registered");
    assert_eq!(r.status, StatusCode::CONFLICT);
    assert_eq!(
        device(&t, "SN-1").await["registered_at"],
        after["registered_at"]
    );
    assert_eq!(registrations_audited(&t).await, 1);
}

#[tokio::test]
async fn unknown_serials_missing_codes_and_wrong_codes_get_one_answer() {
    let t = world(|_| {}).await;
    let mut answers: Vec<(StatusCode, String)> = Vec::new();
    for (serial, code) in [
        ("SN-1", "7QX2-M9KD-41PB"),   // wrong code
        ("SN-404", "7QX2-M9KD-41PA"), // no such unit
        ("SN-3", "7QX2-M9KD-41PA"),   // no code on file
        ("SN-2", "7QX2-M9KD-41PA"),   // another unit's code
    ] {
        let r = register(&t, serial, code).await;
        answers.push((r.status, String::from_utf8_lossy(&r.body).into_owned()));
    }
    for a in &answers {
        assert_eq!(a, &answers[0], "{answers:#?}");
    }
    assert_eq!(answers[0].0, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        answers[0].1.contains("registration_refused"),
        "{}",
        answers[0].1
    );
    assert!(!answers[0].1.contains("SN-"), "{}", answers[0].1);
    assert_eq!(registrations_audited(&t).await, 0);
    assert!(device(&t, "SN-1").await["registered_at"].is_null());

    // Malformed input is told apart: it says nothing about any unit.
    for (body, code) in [
        (
            json!({ "serial": "SN-1", "verification_code": "AB-CD" }),
            "invalid_verification_code",
        ),
        (
            json!({ "serial": "SN-1", "verification_code": "7QX2!M9KD" }),
            "invalid_verification_code",
        ),
        (
            json!({ "serial": "../etc", "verification_code": "7QX2M9KD41PA" }),
            "invalid_name",
        ),
        (json!({ "serial": "SN-1" }), "invalid_json"),
    ] {
        let r = t.post_json("/v1/registrations", None, &body).await;
        assert_eq!(
            (r.status, r.error_code().as_str()),
            (StatusCode::BAD_REQUEST, code),
            "{body}"
        );
    }
    // Provisioning refuses a code that could never be typed back.
    let r = t
        .post_json(
            "/v1/admin/devices",
            Some(&t.admin),
            &json!({ "issue_tokens": false, "devices": [
                { "serial": "SN-9", "model_id": "E4K", "hw_id": "enc-4k-r2", "verification_code": "12" },
            ]}),
        )
        .await;
    assert_eq!(r.error_code(), "invalid_verification_code");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("devices[0]")
    );
}

#[tokio::test]
async fn attempts_are_limited_per_serial_and_per_address() {
    let t = world(|c| {
        c.registration_per_serial_per_hour = 3;
        c.registration_per_address_per_minute = 5;
    })
    .await;
    // Three wrong guesses at SN-1 from three addresses; the fourth attempt,
    // even with the right code, waits.
    for i in 1..=3 {
        let peer = format!("198.51.100.{i}:4000").parse().unwrap();
        let r = t
            .post_json_from(
                peer,
                "/v1/registrations",
                &json!({ "serial": "SN-1", "verification_code": format!("WRONG{i}00") }),
            )
            .await;
        assert_eq!(r.error_code(), "registration_refused");
    }
    let r = register(&t, "SN-1", "7QX2-M9KD-41PA").await;
    assert_eq!(r.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(r.error_code(), "rate_limited_registration");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((60..=1200).contains(&wait), "{wait}");
    assert!(device(&t, "SN-1").await["registered_at"].is_null());
    // Another serial is not held back by SN-1's guesses.
    assert_status(&register(&t, "SN-2", "ZZZZ00001111").await, StatusCode::OK);

    // One address trying many serials is held back after five.
    let peer = "203.0.113.7:5000".parse().unwrap();
    let mut codes = Vec::new();
    for i in 0..7 {
        let r = t
            .post_json_from(
                peer,
                "/v1/registrations",
                &json!({ "serial": format!("SN-X{i}"), "verification_code": "7QX2M9KD41PA" }),
            )
            .await;
        codes.push(r.error_code());
    }
    assert_eq!(
        codes,
        [
            "registration_refused",
            "registration_refused",
            "registration_refused",
            "registration_refused",
            "registration_refused",
            "rate_limited_registration",
            "rate_limited_registration",
        ]
    );
    assert_eq!(registrations_audited(&t).await, 1);
}

#[tokio::test]
async fn the_desk_registers_for_an_owner_and_units_come_with_codes_from_csv() {
    let t = world(|_| {}).await;
    // Technicians and admins register on an owner's behalf, once.
    let uri = "/v1/admin/devices/SN-3/registration";
    assert_eq!(
        t.post_json(uri, Some(&t.release_engineer), &json!({}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let r = t.post_json(uri, Some(&t.technician), &json!({})).await;
    assert_status(&r, StatusCode::OK);
    assert!(r.json()["registered_at"].is_string());
    let r = t.post_json(uri, Some(&t.admin), &json!({})).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::CONFLICT, "already_registered")
    );
    assert_eq!(registrations_audited(&t).await, 1);

    // The factory's CSV carries codes, sale dates and regions.
    let csv = "serial,model_id,hw_id,channel,verification_code,sale_date,region\n\
               SN-10,E4K,enc-4k-r2,,AAAA-BBBB-CCCC,2026-03-01,US\n\
               SN-11,E4K,enc-4k-r2,beta,,,\n";
    let done = firmup_server::provisioning::import_devices_csv(
        &t.app.db,
        &firmup_server::domain::roles::Actor::cli(),
        csv.as_bytes(),
        false,
    )
    .await
    .unwrap();
    assert_eq!(done.len(), 2);
    let d = device(&t, "SN-10").await;
    assert_eq!(
        (
            d["verification_code_on_file"].as_bool(),
            d["sale_date"].as_str(),
            d["region"].as_str()
        ),
        (Some(true), Some("2026-03-01"), Some("US"))
    );
    let d = device(&t, "SN-11").await;
    assert_eq!(d["verification_code_on_file"], false);
    assert_eq!(d["channel"], "beta");
    assert_status(&register(&t, "SN-10", "aaaabbbbcccc").await, StatusCode::OK);
}
