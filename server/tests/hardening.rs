//! Hostile-client behaviour at the router: roles are checked before a body
//! is read, rate limits answer 429 with `Retry-After`, the Authorization
//! header is read by the RFCs, unpublished images stay with release
//! engineers, and audit records carry the request id.

mod common;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::TestApp;
use serde_json::json;

/// A body that never yields a byte: reading it would hang the request.
fn endless_body() -> Body {
    Body::from_stream(futures_util::stream::pending::<
        Result<bytes::Bytes, std::io::Error>,
    >())
}

#[tokio::test]
async fn the_wrong_role_is_refused_before_the_body_is_read() {
    let t = TestApp::new().await;
    let device = t.device_token("SN-1").await;
    let cases: &[(Method, &str, &str)] = &[
        (Method::PUT, "/v1/admin/product-lines/encoders", &device),
        (Method::POST, "/v1/admin/devices", &device),
        (Method::POST, "/v1/admin/catalogue/import", &device),
        (Method::POST, "/v1/admin/tokens", &t.technician),
        (Method::POST, "/v1/trust/roots", &t.release_engineer),
        (
            Method::POST,
            "/v1/product-lines/encoders/releases",
            &t.technician,
        ),
        (
            Method::PUT,
            &format!("/v1/uploads/{}", "a".repeat(64)),
            &t.technician,
        ),
        (Method::POST, "/v1/device/check", &t.admin),
        (Method::POST, "/v1/device/reports", &t.technician),
    ];
    for (method, uri, token) in cases {
        let res = tokio::time::timeout(
            Duration::from_secs(5),
            t.send(
                method.clone(),
                uri,
                Some(token),
                &[("content-type", "application/json")],
                endless_body(),
            ),
        )
        .await
        .unwrap_or_else(|_| panic!("{method} {uri} waited for the body instead of refusing"));
        assert_eq!(res.status, StatusCode::FORBIDDEN, "{method} {uri}");
        assert_eq!(res.error_code(), "wrong_role", "{method} {uri}");
    }
}

#[tokio::test]
async fn serde_messages_never_describe_admin_shapes_to_others() {
    let t = TestApp::new().await;
    let device = t.device_token("SN-1").await;
    let res = t
        .put_json(
            "/v1/admin/product-lines/encoders",
            Some(&device),
            &json!({ "bogus": 1 }),
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    let text = String::from_utf8_lossy(&res.body);
    assert!(
        !text.contains("warranty_months") && !text.contains("bogus"),
        "{text}"
    );
}

#[tokio::test]
async fn a_token_over_its_rate_gets_429_with_retry_after() {
    let t = TestApp::with_config(|c| {
        c.token_rate_per_sec = 1;
        c.token_rate_burst = 3;
    })
    .await;
    let device = t.device_token("SN-1").await;
    let other = t.device_token("SN-2").await;
    let check = |serial: &'static str| {
        json!({ "serial": serial, "hw_id": "enc-4k-r2", "current_version": "2.0.0",
                "security_counter": 0, "root_version": 1 })
    };
    for _ in 0..3 {
        let res = t
            .post_json("/v1/device/check", Some(&device), &check("SN-1"))
            .await;
        assert_ne!(res.status, StatusCode::TOO_MANY_REQUESTS);
    }
    let res = t
        .post_json("/v1/device/check", Some(&device), &check("SN-1"))
        .await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(res.error_code(), "rate_limited_token");
    assert_eq!(res.header("retry-after"), Some("1"));
    // Reports share the device's budget; another token has its own.
    let res = t
        .post_json(
            "/v1/device/reports",
            Some(&device),
            &json!({ "serial": "SN-1", "version": "2.1.0", "stage": "downloading" }),
        )
        .await;
    assert_eq!(res.status, StatusCode::TOO_MANY_REQUESTS);
    let res = t
        .post_json("/v1/device/check", Some(&other), &check("SN-2"))
        .await;
    assert_ne!(res.status, StatusCode::TOO_MANY_REQUESTS);
    // Waiting as told is enough.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let res = t
        .post_json("/v1/device/check", Some(&device), &check("SN-1"))
        .await;
    assert_ne!(res.status, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn bearer_is_case_insensitive_and_two_authorization_headers_are_refused() {
    let t = TestApp::new().await;
    for scheme in ["bearer", "BEARER", "Bearer"] {
        let auth = format!("{scheme} {}", t.admin);
        let res = t
            .send(
                Method::GET,
                "/v1/admin/audit",
                None,
                &[("authorization", &auth)],
                Body::empty(),
            )
            .await;
        assert_eq!(res.status, StatusCode::OK, "{scheme}");
    }
    let auth = format!("Bearer {}", t.admin);
    let res = t
        .send(
            Method::GET,
            "/v1/admin/audit",
            None,
            &[("authorization", &auth), ("authorization", &auth)],
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.error_code(), "multiple_authorization_headers");
    let res = t
        .send(
            Method::GET,
            "/v1/admin/audit",
            None,
            &[("authorization", &format!("Basic {}", t.admin))],
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::UNAUTHORIZED);
    assert_eq!(res.error_code(), "malformed_authorization");
}

#[tokio::test]
async fn unpublished_images_are_for_release_engineers_only() {
    let t = TestApp::new().await;
    let bytes = b"an image nobody published".to_vec();
    let sha = firmup_client::Sha256Digest::of(&bytes).to_hex();
    let res = t
        .send(
            Method::PUT,
            &format!("/v1/uploads/{sha}"),
            Some(&t.release_engineer),
            &[("content-type", "application/octet-stream")],
            bytes.clone(),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    let uri = format!("/v1/images/{sha}");
    let res = t.get(&uri, Some(&t.technician)).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.error_code(), "unreleased_image");
    for token in [&t.release_engineer, &t.admin] {
        let res = t.get(&uri, Some(token)).await;
        assert_eq!(res.status, StatusCode::OK);
        assert_eq!(res.body.as_ref(), bytes.as_slice());
    }
}

#[tokio::test]
async fn audit_records_carry_the_request_id() {
    let t = TestApp::new().await;
    let res = t
        .send(
            Method::PUT,
            "/v1/admin/product-lines/encoders",
            Some(&t.admin),
            &[
                ("content-type", "application/json"),
                ("x-request-id", "req-42"),
            ],
            json!({ "name": "Encoders", "kind": "hardware" }).to_string(),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    assert_eq!(res.header("x-request-id"), Some("req-42"));
    // A hostile id is replaced by one the server makes.
    let res = t
        .send(
            Method::PUT,
            "/v1/admin/product-lines/decoders",
            Some(&t.admin),
            &[
                ("content-type", "application/json"),
                ("x-request-id", "bad id\twith tabs"),
            ],
            json!({ "name": "Decoders", "kind": "hardware" }).to_string(),
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    let made = res.header("x-request-id").unwrap().to_string();
    assert_eq!(made.len(), 36, "{made}");
    let audit = t.get("/v1/admin/audit", Some(&t.admin)).await.json();
    let ids: Vec<&str> = audit["entries"]
        .as_array()
        .or_else(|| audit.as_array())
        .expect("audit entries")
        .iter()
        .filter_map(|e| e["request_id"].as_str())
        .collect();
    assert!(ids.contains(&"req-42"), "{audit}");
    assert!(ids.contains(&made.as_str()), "{audit}");
}

#[tokio::test]
async fn strings_are_capped_and_control_characters_refused() {
    let t = TestApp::new().await;
    let device = t.device_token("SN-1").await;
    let huge = format!("2.0.0-{}", "a".repeat(1_900_000));
    let res = t
        .post_json(
            "/v1/device/check",
            Some(&device),
            &json!({ "serial": "SN-1", "hw_id": "enc-4k-r2", "current_version": huge,
                     "security_counter": 0, "root_version": 1 }),
        )
        .await;
    assert_eq!(res.status, StatusCode::BAD_REQUEST);
    assert_eq!(res.error_code(), "invalid_version");
    assert!(res.body.len() < 1000, "the answer echoes the version");

    for label in [
        "ops\r\nrole: admin",
        "\u{1b}[2Jops",
        "ops\u{202E}nimda",
        "nul\0",
    ] {
        let res = t
            .post_json(
                "/v1/admin/tokens",
                Some(&t.admin),
                &json!({ "role": "technician", "label": label }),
            )
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{label:?}");
        assert_eq!(res.error_code(), "invalid_label", "{label:?}");
    }
    let res = t
        .put_json(
            "/v1/admin/product-lines/encoders",
            Some(&t.admin),
            &json!({ "name": "Enc\u{1b}[31moders", "kind": "hardware" }),
        )
        .await;
    assert_eq!(res.error_code(), "invalid_display_name");
}

#[tokio::test]
async fn device_routes_ignore_unknown_fields_alike() {
    let t = TestApp::new().await;
    let device = t.device_token("SN-1").await;
    let res = t
        .post_json(
            "/v1/device/check",
            Some(&device),
            &json!({ "serial": "SN-1", "hw_id": "enc-4k-r2", "current_version": "2.0.0",
                     "security_counter": 0, "root_version": 1, "from_the_future": true }),
        )
        .await;
    // Not provisioned, so 404: the unknown field itself was no objection.
    assert_eq!(res.error_code(), "unknown_serial");
    let res = t
        .post_json(
            "/v1/device/reports",
            Some(&device),
            &json!({ "serial": "SN-1", "version": "2.1.0", "stage": "downloading",
                     "from_the_future": true }),
        )
        .await;
    assert_eq!(res.error_code(), "unknown_serial");
}

#[tokio::test]
async fn concurrent_uploads_of_one_image_are_stored_and_audited_once() {
    let t = TestApp::new().await;
    let bytes: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
    let sha = firmup_client::Sha256Digest::of(&bytes).to_hex();
    let uri = format!("/v1/uploads/{sha}");
    let uploads = (0..4).map(|_| {
        t.send(
            Method::PUT,
            &uri,
            Some(&t.release_engineer),
            &[("content-type", "application/octet-stream")],
            bytes.clone(),
        )
    });
    let statuses: Vec<StatusCode> = futures_util::future::join_all(uploads)
        .await
        .into_iter()
        .map(|r| r.status)
        .collect();
    assert!(
        statuses
            .iter()
            .all(|s| matches!(*s, StatusCode::CREATED | StatusCode::OK)),
        "{statuses:?}"
    );
    assert_eq!(
        statuses
            .iter()
            .filter(|s| **s == StatusCode::CREATED)
            .count(),
        1,
        "{statuses:?}"
    );
    let audit = t.get("/v1/admin/audit", Some(&t.admin)).await.json();
    let uploads = audit["entries"]
        .as_array()
        .or_else(|| audit.as_array())
        .expect("audit entries")
        .iter()
        .filter(|e| e["action"] == "image.upload")
        .count();
    assert_eq!(uploads, 1, "{audit}");
}
