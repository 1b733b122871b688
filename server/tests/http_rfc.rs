//! HTTP by the RFCs, in-process: 401 challenges (RFC 9110 section 11.6.1,
//! RFC 6750 section 3), conditional and range downloads (RFC 9110
//! sections 13 and 14), Content-Disposition (RFC 6266), 415 for bodies
//! that are not JSON, and error messages that never name the server's
//! Rust types.

mod common;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::{TestApp, TestResponse};
use firmup_client::Sha256Digest;
use firmup_fixtures::ReleaseBuilder;
use firmup_server::db;
use serde_json::json;

const NO_TOKEN: &str = "Bearer realm=\"firmup\"";
const BAD_TOKEN: &str = "Bearer realm=\"firmup\", error=\"invalid_token\"";

/// Routes of several kinds (admin, staff, device, download) that all need
/// a token.
fn protected() -> Vec<(Method, String)> {
    vec![
        (Method::GET, "/v1/admin/audit".into()),
        (Method::GET, "/v1/admin/tokens".into()),
        (Method::DELETE, "/v1/admin/tokens/tok-1".into()),
        (Method::GET, "/v1/product-lines".into()),
        (Method::GET, "/v1/devices/SN-1".into()),
        (Method::POST, "/v1/device/check".into()),
        (Method::POST, "/v1/device/reports".into()),
        (Method::GET, format!("/v1/images/{}", "a".repeat(64))),
        (Method::HEAD, format!("/v1/images/{}", "a".repeat(64))),
        (Method::PUT, format!("/v1/uploads/{}", "a".repeat(64))),
    ]
}

async fn call(t: &TestApp, method: &Method, uri: &str, auth: Option<&str>) -> TestResponse {
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = auth {
        headers.push(("authorization", a));
    }
    t.send(method.clone(), uri, None, &headers, "{}").await
}

fn assert_challenge(res: &TestResponse, want: &str, what: &str) {
    assert_eq!(res.status, StatusCode::UNAUTHORIZED, "{what}");
    assert_eq!(res.header("www-authenticate"), Some(want), "{what}");
}

#[tokio::test]
async fn every_401_carries_a_bearer_challenge() {
    let t = TestApp::new().await;
    // A token that was valid, then revoked; one that has expired.
    let made = t
        .post_json(
            "/v1/admin/tokens",
            Some(&t.admin),
            &json!({ "role": "technician", "label": "soon revoked" }),
        )
        .await
        .json();
    let revoked = made["token"].as_str().unwrap().to_string();
    let res = t
        .send(
            Method::DELETE,
            &format!("/v1/admin/tokens/{}", made["id"].as_str().unwrap()),
            Some(&t.admin),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::NO_CONTENT);
    let made = t
        .post_json(
            "/v1/admin/tokens",
            Some(&t.admin),
            &json!({ "role": "technician", "label": "expired", "expires_in_days": 1 }),
        )
        .await
        .json();
    let expired = made["token"].as_str().unwrap().to_string();
    // Expired an hour ago (the API only makes tokens that expire later).
    let mut tx = t.app.db.begin().await.unwrap();
    let an_hour_ago = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    assert!(
        db::tokens::set_expires_at(&mut tx, made["id"].as_str().unwrap(), Some(an_hour_ago))
            .await
            .unwrap()
    );
    tx.commit().await.unwrap();

    let unknown = format!("Bearer fu_{}", "x".repeat(43));
    let revoked = format!("Bearer {revoked}");
    let expired = format!("Bearer {expired}");
    let basic = format!("Basic {}", t.admin);
    let cases: &[(Option<&str>, &str, &str)] = &[
        (None, "missing_token", NO_TOKEN),
        (Some(&basic), "malformed_authorization", NO_TOKEN),
        (Some("Bearer "), "malformed_authorization", NO_TOKEN),
        (Some(&unknown), "invalid_token", BAD_TOKEN),
        (Some(&revoked), "invalid_token", BAD_TOKEN),
        (Some(&expired), "expired_token", BAD_TOKEN),
    ];
    for (method, uri) in protected() {
        for (auth, code, challenge) in cases {
            let what = format!("{method} {uri} with {auth:?}");
            let res = call(&t, &method, &uri, *auth).await;
            assert_challenge(&res, challenge, &what);
            if method != Method::HEAD {
                assert_eq!(res.error_code(), *code, "{what}");
            }
        }
    }
}

#[tokio::test]
async fn other_refusals_carry_no_challenge() {
    let t = TestApp::new().await;
    let device = t.device_token("SN-1").await;
    let res = t.get("/v1/admin/audit", Some(&device)).await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.header("www-authenticate"), None);
    let res = t.get("/v1/nothing-here", None).await;
    assert_eq!(res.header("www-authenticate"), None);
    // A tampered grant is 403, not a challenge for a token.
    let res = t
        .get(
            &format!(
                "/v1/images/{}?sub=SN-1&exp=99999999999&sig=AAAA",
                "a".repeat(64)
            ),
            None,
        )
        .await;
    assert_eq!(res.status, StatusCode::FORBIDDEN);
    assert_eq!(res.header("www-authenticate"), None);
}

/// A server with one published release; returns it and its image's URI.
async fn published() -> (TestApp, firmup_fixtures::release::SignedRelease, String) {
    let t = TestApp::new().await;
    let mut tx = t.app.db.begin().await.unwrap();
    db::catalogue::upsert_product_line(
        &mut tx,
        "encoders",
        &db::catalogue::LineTerms::new("Encoders", "hardware", 12),
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    let r = ReleaseBuilder::standard().build();
    let sha = Sha256Digest::of(&r.image).to_hex();
    let up = t
        .send(
            Method::PUT,
            &format!("/v1/uploads/{sha}"),
            Some(&t.release_engineer),
            &[("content-length", r.image.len().to_string().as_str())],
            r.image.clone(),
        )
        .await;
    assert!(up.status.is_success(), "{up:?}");
    let p = t
        .send(
            Method::POST,
            "/v1/product-lines/encoders/releases",
            Some(&t.release_engineer),
            &[("content-type", "application/json")],
            r.envelope.clone(),
        )
        .await;
    assert_eq!(p.status, StatusCode::CREATED, "{p:?}");
    (t, r, format!("/v1/images/{sha}"))
}

async fn download(
    t: &TestApp,
    method: Method,
    uri: &str,
    headers: &[(&str, &str)],
) -> TestResponse {
    t.send(method, uri, Some(&t.technician), headers, Body::empty())
        .await
}

#[tokio::test]
async fn if_none_match_answers_304_for_each_form() {
    let (t, r, uri) = published().await;
    let sha = Sha256Digest::of(&r.image).to_hex();
    let etag = format!("\"{sha}\"");
    let matching = [
        etag.clone(),
        format!("W/{etag}"),
        "*".to_string(),
        format!("\"other\", {etag}"),
        format!("\"other\",W/{etag} , \"third\""),
        format!("\"other\",\t{etag}"),
    ];
    for value in &matching {
        for method in [Method::GET, Method::HEAD] {
            let res = download(&t, method.clone(), &uri, &[("if-none-match", value)]).await;
            assert_eq!(res.status, StatusCode::NOT_MODIFIED, "{method} {value}");
            assert!(res.body.is_empty(), "{value}");
            assert_eq!(res.header("etag"), Some(etag.as_str()));
            assert_eq!(
                res.header("cache-control"),
                Some("private, max-age=31536000, immutable")
            );
            assert_eq!(res.header("content-disposition"), None);
        }
    }
    // If-None-Match is evaluated before Range and If-Range.
    let res = download(
        &t,
        Method::GET,
        &uri,
        &[
            ("if-none-match", "*"),
            ("range", "bytes=0-9"),
            ("if-range", &etag),
        ],
    )
    .await;
    assert_eq!(res.status, StatusCode::NOT_MODIFIED);
    let res = download(
        &t,
        Method::GET,
        &uri,
        &[("if-none-match", &etag), ("range", "bytes=999999999-")],
    )
    .await;
    assert_eq!(res.status, StatusCode::NOT_MODIFIED, "not 416");
    // A list without our tag, or a tag that only looks alike, gets the image.
    for value in ["\"other\", \"third\"", "W/\"other\"", "\"abc\"", "garbage"] {
        let res = download(&t, Method::GET, &uri, &[("if-none-match", value)]).await;
        assert_eq!(res.status, StatusCode::OK, "{value}");
        assert_eq!(res.body.as_ref(), r.image.as_slice(), "{value}");
    }
    // `*` matches only an image that exists.
    let res = t
        .send(
            Method::GET,
            &format!("/v1/images/{}", "b".repeat(64)),
            Some(&t.release_engineer),
            &[("if-none-match", "*")],
            Body::empty(),
        )
        .await;
    assert_eq!(res.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn a_range_in_another_unit_is_ignored() {
    let (t, r, uri) = published().await;
    for range in ["items=0-5", "Items=0-5", "lines=1-"] {
        let res = download(&t, Method::GET, &uri, &[("range", range)]).await;
        assert_eq!(res.status, StatusCode::OK, "{range}");
        assert_eq!(res.body.as_ref(), r.image.as_slice(), "{range}");
        assert_eq!(res.header("content-range"), None);
    }
    let res = download(&t, Method::GET, &uri, &[("range", "bytes=0-5")]).await;
    assert_eq!(res.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.body.as_ref(), &r.image[..6]);
}

#[tokio::test]
async fn downloads_name_their_file() {
    let (t, r, uri) = published().await;
    let want = Some("attachment; filename=\"firmware.img\"");
    let res = download(&t, Method::GET, &uri, &[]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("content-disposition"), want);
    let res = download(&t, Method::GET, &uri, &[("range", "bytes=10-")]).await;
    assert_eq!(res.status, StatusCode::PARTIAL_CONTENT);
    assert_eq!(res.header("content-disposition"), want);
    assert_eq!(res.body.as_ref(), &r.image[10..]);
    let res = download(&t, Method::HEAD, &uri, &[]).await;
    assert_eq!(res.status, StatusCode::OK);
    assert_eq!(res.header("content-disposition"), want);

    // An image no release names yet is saved under its digest.
    let bytes = b"an image nobody published".to_vec();
    let sha = Sha256Digest::of(&bytes).to_hex();
    let res = t
        .send(
            Method::PUT,
            &format!("/v1/uploads/{sha}"),
            Some(&t.release_engineer),
            &[],
            bytes,
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
    let res = t
        .get(&format!("/v1/images/{sha}"), Some(&t.release_engineer))
        .await;
    assert_eq!(res.status, StatusCode::OK);
    let want = format!("attachment; filename=\"{sha}.bin\"");
    assert_eq!(res.header("content-disposition"), Some(want.as_str()));
}

#[tokio::test]
async fn json_bodies_of_another_media_type_get_415() {
    let t = TestApp::new().await;
    let device = t.device_token("SN-1").await;
    let body = json!({ "role": "technician", "label": "x" }).to_string();
    for content_type in [
        None,
        Some("text/plain"),
        Some("application/x-www-form-urlencoded"),
    ] {
        let headers: Vec<(&str, &str)> = content_type
            .map(|c| vec![("content-type", c)])
            .unwrap_or_default();
        for (uri, token) in [
            ("/v1/admin/tokens", &t.admin),
            ("/v1/device/check", &device),
        ] {
            let res = t
                .send(Method::POST, uri, Some(token), &headers, body.clone())
                .await;
            assert_eq!(
                res.status,
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "{uri} {content_type:?}"
            );
            assert_eq!(res.error_code(), "unsupported_media_type");
            let message = res.json()["error"]["message"].as_str().unwrap().to_string();
            assert!(
                message.contains("Content-Type: application/json"),
                "{message}"
            );
        }
    }
    // A JSON media type with parameters is fine.
    let res = t
        .send(
            Method::POST,
            "/v1/admin/tokens",
            Some(&t.admin),
            &[("content-type", "application/json; charset=utf-8")],
            body,
        )
        .await;
    assert_eq!(res.status, StatusCode::CREATED);
}

/// What no client-visible message may contain.
const FORBIDDEN: &[&str] = &[
    "struct ",
    "u64",
    "i64",
    "u32",
    "usize",
    "Option<",
    "Vec<",
    "enum ",
    "::",
    "Failed to deserialize",
    "Cannot parse",
    "target type",
    // Our own types.
    "NewToken",
    "CheckRequest",
    "ReportRequest",
    "ProvisionRequest",
    "ModelInput",
    "ProductLineInput",
    "AuditQuery",
    "ListQuery",
    "GrantQuery",
    "AfterQuery",
    "PublishQuery",
    "OffsetDateTime",
    "Role",
];

#[tokio::test]
async fn rejection_messages_never_name_rust_types() {
    let t = TestApp::new().await;
    let device = t.device_token("SN-1").await;
    let bodies: &[(Method, &str, &str, &[&str])] = &[
        (
            Method::POST,
            "/v1/admin/tokens",
            &t.admin,
            &[
                "[]",
                "\"x\"",
                "5",
                "null",
                r#"{"role": 5, "label": "x"}"#,
                r#"{"role": "admin", "label": "x", "expires_in_days": "ten"}"#,
                r#"{"role": "admin", "label": "x", "expires_in_days": -1}"#,
                r#"{"role": "admin", "label": "x", "expires_in_days": 1.5}"#,
                r#"{"role": "admin", "label": ["x"]}"#,
                r#"{"role": "admin""#,
            ],
        ),
        (
            Method::POST,
            "/v1/device/check",
            &device,
            &[
                r#"{"serial": 5}"#,
                r#"[1, 2, 3]"#,
                r#"{"serial": "SN-1", "hw_id": "x", "current_version": "1.0.0", "security_counter": "x", "root_version": 1}"#,
                r#"{"serial": "SN-1", "hw_id": "x", "current_version": "1.0.0", "security_counter": -3, "root_version": 1}"#,
                r#"{"serial": "SN-1", "hw_id": "x", "current_version": "1.0.0", "security_counter": 0, "root_version": 99999999999999999999}"#,
            ],
        ),
        (
            Method::POST,
            "/v1/device/reports",
            &device,
            &[
                r#"{"serial": "SN-1", "version": "1.0.0", "stage": 7}"#,
                r#"{"serial": "SN-1", "version": {}, "stage": "installed"}"#,
            ],
        ),
        (
            Method::POST,
            "/v1/admin/devices",
            &t.admin,
            &[
                r#"{"devices": {}}"#,
                r#"{"devices": [5]}"#,
                r#"{"devices": [{"serial": "a", "model_id": "m", "hw_id": ["x"]}]}"#,
                r#"{"devices": [], "issue_tokens": "yes"}"#,
            ],
        ),
        (
            Method::PUT,
            "/v1/admin/models/m",
            &t.admin,
            &[
                r#"{"product_line": "p", "name": "n", "hw_ids": "x"}"#,
                r#"{"product_line": "p", "name": "n", "hw_ids": ["x"], "launched": 5}"#,
            ],
        ),
        (
            Method::PUT,
            "/v1/admin/product-lines/p",
            &t.admin,
            &[
                r#"{"name": "n", "kind": "hardware", "warranty_months": "a"}"#,
                r#"{"name": "n", "kind": ["hardware"]}"#,
            ],
        ),
    ];
    let mut seen = 0;
    for (method, uri, token, cases) in bodies {
        for body in *cases {
            let res = t
                .send(
                    method.clone(),
                    uri,
                    Some(token),
                    &[("content-type", "application/json")],
                    body.to_string(),
                )
                .await;
            assert_eq!(res.status, StatusCode::BAD_REQUEST, "{uri} {body}");
            assert_eq!(res.error_code(), "invalid_json", "{uri} {body}");
            assert_plain(&res, &format!("{uri} {body}"));
            seen += 1;
        }
    }
    let queries: &[(&str, &str)] = &[
        ("/v1/admin/audit?limit=lots", &t.admin),
        ("/v1/admin/audit?limit=1.5", &t.admin),
        ("/v1/admin/audit?before=yesterday", &t.admin),
        ("/v1/admin/tokens?limit=x", &t.admin),
        ("/v1/admin/tokens?before=yesterday", &t.admin),
        ("/v1/admin/tokens?role=wizard", &t.admin),
        ("/v1/trust/roots?after=-1", &t.admin),
        ("/v1/trust/roots?after=", &t.admin),
        (
            "/v1/devices/SN-1/entitlement?channel=stable&channel=beta",
            &t.admin,
        ),
    ];
    let sha = "a".repeat(64);
    let grant = format!("/v1/images/{sha}?sub=SN-1&exp=soon&sig=x");
    let publish = "/v1/product-lines/encoders/releases?free_for_all=maybe".to_string();
    let more = [
        (grant.as_str(), t.technician.as_str()),
        (publish.as_str(), t.release_engineer.as_str()),
    ];
    for (uri, token) in queries.iter().copied().chain(more) {
        let res = t
            .send(
                if uri.contains("/releases") {
                    Method::POST
                } else {
                    Method::GET
                },
                uri,
                Some(token),
                &[("content-type", "application/json")],
                "{}",
            )
            .await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(res.error_code(), "invalid_query", "{uri}");
        assert_plain(&res, uri);
        seen += 1;
    }
    for uri in [
        "/v1/models/%FF",
        "/v1/devices/%C3%28",
        "/v1/product-lines/%FF/releases",
    ] {
        let res = t.get(uri, Some(&t.admin)).await;
        assert_eq!(res.status, StatusCode::BAD_REQUEST, "{uri}");
        assert_eq!(res.error_code(), "invalid_path", "{uri}");
        assert_plain(&res, uri);
        seen += 1;
    }
    assert!(seen > 30);
}

fn assert_plain(res: &TestResponse, what: &str) {
    let message = res.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(!message.is_empty(), "{what}");
    for word in FORBIDDEN {
        assert!(
            !message.contains(word),
            "{what}: {word:?} in the message {message:?}"
        );
    }
}

#[tokio::test]
async fn rejection_messages_keep_the_field_and_say_what_was_expected() {
    let t = TestApp::new().await;
    let res = t
        .post_json(
            "/v1/admin/tokens",
            Some(&t.admin),
            &json!({ "role": "admin", "label": "x", "expires_in_days": "ten" }),
        )
        .await;
    let message = res.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains("`expires_in_days`"), "{message}");
    assert!(
        message.contains("expected a") && message.contains("number") && message.contains("\"ten\""),
        "{message}"
    );
    let res = t.get("/v1/admin/audit?limit=lots", Some(&t.admin)).await;
    let message = res.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("`limit`") && message.contains("expected a whole number"),
        "{message}"
    );
    let res = t
        .send(
            Method::POST,
            "/v1/admin/devices",
            Some(&t.admin),
            &[("content-type", "application/json")],
            r#"{"devices": {}}"#,
        )
        .await;
    let message = res.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(
        message.contains("`devices`") && message.contains("expected a list, found an object"),
        "{message}"
    );
}
