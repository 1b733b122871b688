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
