//! `TestApp`: the real router and state over a temporary data directory,
//! driven in-process (no sockets), with one token per role.
//!
//! The trust root is the fixtures' standard root, so releases built with
//! `firmup_fixtures::ReleaseBuilder` publish as they would in production.

#![allow(dead_code)]

use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use bytes::Bytes;
use firmup_fixtures::RootBuilder;
use firmup_server::app::{App, AppState};
use firmup_server::config::Config;
use firmup_server::domain::roles::{Actor, Role};
use firmup_server::tokens::{NewToken, create_token};
use http_body_util::BodyExt as _;
use tower::ServiceExt as _;

/// A server under test.
pub struct TestApp {
    /// Keeps the data directory alive.
    pub dir: tempfile::TempDir,
    /// The shared state (for direct db access in assertions).
    pub app: AppState,
    /// The router.
    pub router: Router,
    /// Admin token.
    pub admin: String,
    /// Release engineer token.
    pub release_engineer: String,
    /// Technician token.
    pub technician: String,
}

/// A response, fully read.
#[derive(Debug)]
pub struct TestResponse {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: Bytes,
}

impl TestResponse {
    /// The body as JSON.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!(
                "body is not JSON ({e}): {}",
                String::from_utf8_lossy(&self.body)
            )
        })
    }

    /// The stable error code of an error response.
    pub fn error_code(&self) -> String {
        self.json()["error"]["code"]
            .as_str()
            .unwrap_or_else(|| panic!("not an error body: {}", String::from_utf8_lossy(&self.body)))
            .to_string()
    }

    /// A header as text.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Asserts the status of `r`, showing its body otherwise.
pub fn assert_status(r: &TestResponse, status: StatusCode) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
}

/// Asserts that `r` is the error `code` with `status`, and that its message
/// says something a person can act on (more than a few words).
pub fn assert_error(r: &TestResponse, status: StatusCode, code: &str) {
    assert_eq!(
        (r.status, r.error_code().as_str()),
        (status, code),
        "{}",
        String::from_utf8_lossy(&r.body)
    );
    let message = r.json()["error"]["message"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(message.len() > 20, "{code}: {message}");
}

impl TestApp {
    /// A server with the standard fixture root as its pinned trust root.
    pub async fn new() -> TestApp {
        Self::with_config(|_| {}).await
    }

    /// A server whose configuration `tweak` may adjust.
    pub async fn with_config(tweak: impl FnOnce(&mut Config)) -> TestApp {
        let dir = tempfile::tempdir().expect("temp dir");
        let root_path = dir.path().join("root.v1.json");
        std::fs::write(&root_path, RootBuilder::standard().build()).expect("write root");
        let mut config = Config {
            data_dir: dir.path().join("data"),
            trust_root: Some(root_path),
            // Tests send many requests with one token; the limits have
            // their own tests (`with_config` turns them back on).
            token_rate_per_sec: 0,
            address_rate_per_sec: 0,
            ..Config::default()
        };
        // On PostgreSQL (see `firmup_fixtures::database`), a database of its
        // own; a test's tweak may still choose another.
        config.database_url = firmup_fixtures::database::fresh_url();
        // With an object store to test against, a prefix of its own there.
        config.storage_url = firmup_fixtures::storage::fresh_url();
        tweak(&mut config);
        let app = App::build(config).await.expect("app builds");
        let router = firmup_server::router::build(app.clone());
        let admin = Self::token_for(&app, Role::Admin, None).await;
        let release_engineer = Self::token_for(&app, Role::ReleaseEngineer, None).await;
        let technician = Self::token_for(&app, Role::Technician, None).await;
        TestApp {
            dir,
            app,
            router,
            admin,
            release_engineer,
            technician,
        }
    }

    async fn token_for(app: &Arc<App>, role: Role, serial: Option<&str>) -> String {
        create_token(
            &app.db,
            &Actor::cli(),
            NewToken {
                role,
                label: format!("test-{}", role.as_str()),
                serial: serial.map(str::to_string),
                expires_in_days: None,
            },
        )
        .await
        .expect("token")
        .token
    }

    /// The product line `encoders` (hardware) and its model `E4K`
    /// (hardware id `enc-4k-r2`), as the fixtures' standard release expects.
    pub async fn encoders_e4k(&self) {
        let r = self
            .put_json(
                "/v1/admin/product-lines/encoders",
                Some(&self.admin),
                &serde_json::json!({ "name": "Encoders", "kind": "hardware" }),
            )
            .await;
        assert_status(&r, StatusCode::CREATED);
        let r = self
            .put_json(
                "/v1/admin/models/E4K",
                Some(&self.admin),
                &serde_json::json!({ "product_line": "encoders", "name": "E4K encoder",
                                     "hw_ids": ["enc-4k-r2"] }),
            )
            .await;
        assert_status(&r, StatusCode::CREATED);
    }

    /// Uploads the image of `signed` as the release engineer and publishes
    /// its envelope to `encoders` with the query `query` (`""` or
    /// `"?rollout=..."`); the publish's answer.
    pub async fn publish_encoders(
        &self,
        signed: &firmup_fixtures::SignedRelease,
        query: &str,
    ) -> TestResponse {
        let len = signed.image.len().to_string();
        let up = self
            .send(
                Method::PUT,
                &format!(
                    "/v1/uploads/{}",
                    firmup_client::Sha256Digest::of(&signed.image).to_hex()
                ),
                Some(&self.release_engineer),
                &[("content-length", len.as_str())],
                signed.image.clone(),
            )
            .await;
        assert!(
            up.status.is_success(),
            "{}",
            String::from_utf8_lossy(&up.body)
        );
        self.send(
            Method::POST,
            &format!("/v1/product-lines/encoders/releases{query}"),
            Some(&self.release_engineer),
            &[("content-type", "application/json")],
            signed.envelope.clone(),
        )
        .await
    }

    /// A device token bound to `serial`.
    pub async fn device_token(&self, serial: &str) -> String {
        Self::token_for(&self.app, Role::Device, Some(serial)).await
    }

    /// Sends a request with optional bearer token, extra headers and body.
    pub async fn send(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> TestResponse {
        self.send_from(None, method, uri, token, headers, body)
            .await
    }

    /// POST JSON without a token, as if from the client address `peer` (as
    /// the connection layer records it for requests over TCP).
    pub async fn post_json_from(
        &self,
        peer: std::net::SocketAddr,
        uri: &str,
        json: &serde_json::Value,
    ) -> TestResponse {
        self.send_from(
            Some(peer),
            Method::POST,
            uri,
            None,
            &[("content-type", "application/json")],
            json.to_string(),
        )
        .await
    }

    /// [`TestApp::send`], with the client address `peer` if given.
    pub async fn send_from(
        &self,
        peer: Option<std::net::SocketAddr>,
        method: Method,
        uri: &str,
        token: Option<&str>,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> TestResponse {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(peer) = peer {
            req = req.extension(axum::extract::ConnectInfo(peer));
        }
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let response = self
            .router
            .clone()
            .oneshot(req.body(body.into()).expect("request"))
            .await
            .expect("router is infallible");
        let status = response.status();
        let headers = response.headers().clone();
        let body = response
            .into_body()
            .collect()
            .await
            .expect("body")
            .to_bytes();
        TestResponse {
            status,
            headers,
            body,
        }
    }

    /// GET with a token.
    pub async fn get(&self, uri: &str, token: Option<&str>) -> TestResponse {
        self.send(Method::GET, uri, token, &[], Body::empty()).await
    }

    /// POST JSON with a token.
    pub async fn post_json(
        &self,
        uri: &str,
        token: Option<&str>,
        json: &serde_json::Value,
    ) -> TestResponse {
        self.send(
            Method::POST,
            uri,
            token,
            &[("content-type", "application/json")],
            json.to_string(),
        )
        .await
    }

    /// PUT JSON with a token.
    pub async fn put_json(
        &self,
        uri: &str,
        token: Option<&str>,
        json: &serde_json::Value,
    ) -> TestResponse {
        self.send(
            Method::PUT,
            uri,
            token,
            &[("content-type", "application/json")],
            json.to_string(),
        )
        .await
    }
}
