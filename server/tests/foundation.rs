//! Health, auth, tokens, audit and the trust chain, in-process.

mod common;

use axum::http::{Method, StatusCode};
use common::TestApp;
use firmup_fixtures::RootBuilder;
use firmup_fixtures::keys::NEXT_ROOT_KEYS;

#[tokio::test]
async fn probes_and_openapi() {
    let t = TestApp::new().await;
    assert_eq!(t.get("/healthz", None).await.status, StatusCode::OK);
    assert_eq!(t.get("/readyz", None).await.status, StatusCode::OK);
    let doc = t.get("/openapi.json", None).await.json();
    assert!(doc["paths"]["/v1/trust/roots"].is_object(), "{doc}");
}

#[tokio::test]
async fn tokens_are_checked_and_roles_enforced() {
    let t = TestApp::new().await;
    let r = t.get("/v1/admin/audit", None).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::UNAUTHORIZED, "missing_token")
    );
    let r = t.get("/v1/admin/audit", Some("fu_nonsense")).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::UNAUTHORIZED, "invalid_token")
    );
    let r = t
        .send(
            Method::GET,
            "/v1/admin/audit",
            None,
            &[("authorization", "Basic abc")],
            "",
        )
        .await;
    assert_eq!(r.error_code(), "malformed_authorization");
    let r = t.get("/v1/admin/audit", Some(&t.technician)).await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::FORBIDDEN, "wrong_role")
    );
    assert_eq!(
        t.get("/v1/admin/audit", Some(&t.admin)).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn created_tokens_work_are_audited_and_can_be_revoked() {
    let t = TestApp::new().await;
    let r = t
        .post_json(
            "/v1/admin/tokens",
            Some(&t.admin),
            &serde_json::json!({ "role": "technician", "label": "bob", "expires_in_days": 1 }),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{:?}", r.body);
    let created = r.json();
    let secret = created["token"].as_str().unwrap().to_string();
    assert!(secret.starts_with("fu_"));

    // Device tokens must name a serial; others must not.
    let r = t
        .post_json(
            "/v1/admin/tokens",
            Some(&t.admin),
            &serde_json::json!({ "role": "device", "label": "d" }),
        )
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "serial_required")
    );
    let r = t
        .post_json(
            "/v1/admin/tokens",
            Some(&t.admin),
            &serde_json::json!({ "role": "device", "label": "d", "serial": "../x" }),
        )
        .await;
    assert_eq!(r.error_code(), "invalid_name");

    let audit = t.get("/v1/admin/audit", Some(&t.admin)).await.json();
    let entry = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["action"] == "token.create" && e["detail"].as_str().unwrap().contains("bob"))
        .expect("token creation is audited");
    assert_eq!(entry["actor_role"], "admin");

    // The stored form is a hash: the secret is nowhere in the database.
    let rows: Vec<(String,)> = sqlx::query_as("SELECT token_hash FROM tokens")
        .fetch_all(t.app.db.pool())
        .await
        .unwrap();
    assert!(rows.iter().all(|(h,)| h != &secret && h.len() == 64));

    let id = created["id"].as_str().unwrap();
    let r = t
        .send(
            Method::DELETE,
            &format!("/v1/admin/tokens/{id}"),
            Some(&t.admin),
            &[],
            "",
        )
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = t
        .send(
            Method::DELETE,
            &format!("/v1/admin/tokens/{id}"),
            Some(&t.admin),
            &[],
            "",
        )
        .await;
    assert_eq!(r.error_code(), "unknown_token");
    t.app.token_cache.invalidate_all();
    let r = t.get("/v1/trust/roots", Some(&secret)).await;
    assert_eq!(r.status, StatusCode::OK, "public endpoint ignores tokens");
    let r = t.get("/v1/admin/tokens", Some(&secret)).await;
    assert_eq!(r.error_code(), "invalid_token");
}

#[tokio::test]
async fn root_rotation_is_verified_and_served() {
    let t = TestApp::new().await;
    let chain = t.get("/v1/trust/roots", None).await.json();
    assert_eq!(chain["latest_version"], 1);
    assert_eq!(chain["roots"].as_array().unwrap().len(), 1);

    // Missing the old keys' signatures: refused with the engine's code.
    let bad = RootBuilder::standard()
        .next()
        .root_keys(&NEXT_ROOT_KEYS, 2)
        .signed_by(&["root-4", "root-5"])
        .build();
    let r = t
        .send(Method::POST, "/v1/trust/roots", Some(&t.admin), &[], bad)
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::UNPROCESSABLE_ENTITY, "threshold_not_met")
    );

    let good = RootBuilder::standard()
        .next()
        .root_keys(&NEXT_ROOT_KEYS, 2)
        .signed_by(&["root-1", "root-2", "root-4", "root-5"])
        .build();
    let r = t
        .send(
            Method::POST,
            "/v1/trust/roots",
            Some(&t.release_engineer),
            &[],
            good.clone(),
        )
        .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN);
    let r = t
        .send(
            Method::POST,
            "/v1/trust/roots",
            Some(&t.admin),
            &[],
            good.clone(),
        )
        .await;
    assert_eq!(
        r.status,
        StatusCode::CREATED,
        "{}",
        String::from_utf8_lossy(&r.body)
    );

    let after1 = t.get("/v1/trust/roots?after=1", None).await.json();
    assert_eq!(after1["latest_version"], 2);
    let served = after1["roots"][0].to_string();
    let original: serde_json::Value = serde_json::from_slice(&good).unwrap();
    assert_eq!(served, original.to_string());
    // Served byte-exact, so devices verify what was signed.
    let raw = t.get("/v1/trust/roots?after=1", None).await.body;
    let needle = std::str::from_utf8(&good).unwrap().trim_end();
    assert!(std::str::from_utf8(&raw).unwrap().contains(needle));

    // Replaying v2 is refused: only version 3 may follow.
    let r = t
        .send(Method::POST, "/v1/trust/roots", Some(&t.admin), &[], good)
        .await;
    assert_eq!(r.error_code(), "root_version_skip");
}

#[tokio::test]
async fn malformed_json_gets_the_error_envelope() {
    let t = TestApp::new().await;
    let r = t
        .send(
            Method::POST,
            "/v1/admin/tokens",
            Some(&t.admin),
            &[("content-type", "application/json")],
            "{\"role\": ",
        )
        .await;
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (StatusCode::BAD_REQUEST, "invalid_json")
    );
    let r = t
        .send(
            Method::POST,
            "/v1/admin/tokens",
            Some(&t.admin),
            &[("content-type", "application/json")],
            "{\"role\": \"wizard\", \"label\": \"x\"}",
        )
        .await;
    assert_eq!(r.error_code(), "invalid_json");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("wizard")
    );
    let r = t
        .send(Method::POST, "/v1/admin/tokens", Some(&t.admin), &[], "{}")
        .await;
    assert_eq!(r.error_code(), "missing_content_type");
}
