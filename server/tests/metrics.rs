//! `GET /metrics`: the Prometheus text format, behind a token, with the
//! counters the operator's alerts use moving as requests are served.

mod common;

use axum::body::Body;
use axum::http::{Method, StatusCode};
use common::TestApp;
use firmup_client::Sha256Digest;

/// The value of the first sample whose line starts with `prefix`.
fn sample(page: &str, prefix: &str) -> Option<f64> {
    page.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_need_a_token_and_count_what_is_served() {
    let t = TestApp::with_config(|c| c.metrics_token = Some("scrape-secret-123".into())).await;
    assert_eq!(
        t.get("/metrics", None).await.status,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        t.get("/metrics", Some(&t.technician)).await.status,
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        t.get("/metrics", Some("wrong-secret")).await.status,
        StatusCode::UNAUTHORIZED
    );

    let image = vec![3u8; 10_000];
    let sha = Sha256Digest::of(&image).to_hex();
    let up = t
        .send(
            Method::PUT,
            &format!("/v1/uploads/{sha}"),
            Some(&t.release_engineer),
            &[("content-length", "10000")],
            image.clone(),
        )
        .await;
    assert!(up.status.is_success(), "{up:?}");
    let before = t.get("/metrics", Some("scrape-secret-123")).await;
    assert_eq!(before.status, StatusCode::OK);
    assert!(
        before
            .header("content-type")
            .unwrap()
            .starts_with("text/plain; version=0.0.4")
    );
    let before = String::from_utf8(before.body.to_vec()).unwrap();
    let bytes_before = sample(&before, "firmup_download_bytes_total").unwrap_or(0.0);

    let dl = t
        .send(
            Method::GET,
            &format!("/v1/images/{sha}"),
            Some(&t.release_engineer),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(dl.status, StatusCode::OK);
    assert_eq!(t.get("/healthz", None).await.status, StatusCode::OK);

    let page = t.get("/metrics", Some(&t.admin)).await;
    assert_eq!(page.status, StatusCode::OK, "admin tokens work too");
    let page = String::from_utf8(page.body.to_vec()).unwrap();
    let bytes_after = sample(&page, "firmup_download_bytes_total").unwrap();
    assert!(
        bytes_after >= bytes_before + 10_000.0,
        "{bytes_before} -> {bytes_after}"
    );
    // Routes are labelled by template, never by the raw path.
    assert!(page.contains(r#"route="/v1/images/{sha256}""#), "{page}");
    assert!(!page.contains(&sha), "no digest in a label");
    assert!(
        page.contains(r#"firmup_http_requests_total{route="/healthz",method="GET",status="200"}"#)
    );
    assert!(page.contains("firmup_http_request_duration_seconds_bucket{"));
    assert!(page.contains(r#"firmup_cache_lookups_total{cache="tokens",result="#));
    assert!(page.contains(r#"firmup_db_pool_connections{state="open"}"#));
    assert!(page.contains("firmup_downloads_active"));
    assert!(!page.contains("scrape-secret-123"));
}
