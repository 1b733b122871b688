//! Every answer, even to a request no handler accepts, is the JSON error
//! envelope with a stable code.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;

#[tokio::test]
async fn unknown_routes_and_methods_get_the_envelope() {
    let t = TestApp::new().await;
    let r = t.get("/v1/nothing-here", None).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::NOT_FOUND, "unknown_route")
    );
    let r = t.send(Method::DELETE, "/healthz", None, &[], "").await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed")
    );
}

#[tokio::test]
async fn malformed_query_and_path_parameters_get_the_envelope() {
    let t = TestApp::new().await;
    let r = t.get("/v1/admin/audit?limit=lots", Some(&t.admin)).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid_query")
    );
    let sha = "a".repeat(64);
    let r = t
        .get(&format!("/v1/images/{sha}?sub=SN-1&exp=soon&sig=x"), None)
        .await;
    assert_eq!(r.error_code(), "invalid_query");
    let r = t.get("/v1/images/not-a-digest", Some(&t.technician)).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid_sha256")
    );
}

/// The served document describes every error code, and every secured
/// operation lists 401 and 403, every operation with parameters or a body
/// 400, every JSON body 413 and 415.
#[tokio::test]
async fn the_openapi_document_lists_every_code_and_the_common_statuses() {
    let t = TestApp::new().await;
    let doc = t.get("/openapi.json", None).await.json();
    let described = doc
        .pointer("/components/schemas/ErrorDetail/properties/code/description")
        .and_then(|d| d.as_str())
        .expect("ErrorDetail.code has a description");
    for c in firmup_server::codes::CODES {
        assert!(
            described.contains(&format!("`{}` ({})", c.code, c.status)),
            "the OpenAPI document does not describe {}",
            c.code
        );
    }
    let mut operations = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            operations += 1;
            let responses = op["responses"].as_object().unwrap();
            let has = |s: &str| responses.contains_key(s);
            let name = format!("{method} {path}");
            if op.get("security").is_some() {
                assert!(has("401") && has("403"), "{name} lacks 401 or 403");
                assert!(
                    responses["401"]["headers"]
                        .get("WWW-Authenticate")
                        .is_some(),
                    "{name}: 401 without WWW-Authenticate"
                );
            }
            if op
                .get("parameters")
                .is_some_and(|p| !p.as_array().unwrap().is_empty())
            {
                assert!(has("400"), "{name} lacks 400");
            }
            if op
                .pointer("/requestBody/content/application~1json")
                .is_some()
            {
                assert!(has("413") && has("415"), "{name} lacks 413 or 415");
            }
            if path != "/healthz" {
                assert!(has("503"), "{name} lacks 503");
            }
            for p in op["parameters"].as_array().into_iter().flatten() {
                if p["in"] == "path" {
                    assert!(
                        p["schema"].get("pattern").is_some()
                            || p["schema"].get("maxLength").is_some(),
                        "{name}: path parameter {} without a pattern or length",
                        p["name"]
                    );
                }
            }
        }
    }
    assert!(operations >= 38, "only {operations} operations");
    assert!(doc.pointer("/paths/~1v1~1images~1{sha256}/head").is_some());
}
