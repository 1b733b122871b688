//! The one route table. Each controller module contributes its routes with
//! their OpenAPI descriptions; the merged document is served at
//! `/openapi.json`.

use axum::Extension;
use axum::http::HeaderName;
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::request_id::{
    MakeRequestId, PropagateRequestIdLayer, RequestId, SetRequestIdLayer,
};
use tracing::Instrument as _;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;
use crate::controllers;
use crate::error::{AppError, ErrorBody, ErrorDetail};
use crate::extract::REQUEST_ID;

#[derive(OpenApi)]
#[openapi(
    info(title = "Firmup", description = "Firmware distribution and upgrade server. See docs/API.md."),
    modifiers(&BearerAuth),
    tags(
        (name = "ops", description = "Health and readiness"),
        (name = "trust", description = "Root documents"),
        (name = "admin", description = "Tokens and audit"),
        (name = "catalogue", description = "Product lines, models, devices, contracts"),
        (name = "releases", description = "Publishing, yanking, promoting"),
        (name = "images", description = "Image upload and resumable download"),
        (name = "device", description = "Update checks and reports"),
        (name = "repair", description = "The repair desk: RMAs, and pushes to devices under repair"),
        (name = "owner", description = "Owners: registering a unit with its verification code (no token)"),
        (name = "privacy", description = "Data-protection requests: export, erasure, restriction, rectification, retention"),
    )
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// All routes with their OpenAPI descriptions.
///
/// API calls are bounded by `request_timeout_secs`; image transfers, push
/// bundles, RMA attachments and bulk imports are not (their bodies are
/// large), and rely on the connection layer's progress rule instead (see
/// [`crate::conn`]). The
/// device routes and downloads are rate limited ([`crate::ratelimit`]).
pub fn api() -> OpenApiRouter<AppState> {
    let limited = || axum::middleware::from_fn(crate::ratelimit::limit);
    let timed = OpenApiRouter::new()
        .merge(controllers::health::routes())
        .merge(controllers::trust::routes())
        .merge(controllers::tokens::routes())
        .merge(controllers::audit::routes())
        .merge(controllers::catalogue::routes())
        .merge(controllers::release::routes())
        .merge(controllers::repair::routes())
        .merge(controllers::rollout::routes())
        .merge(controllers::owner::routes())
        .merge(controllers::privacy::routes())
        .merge(controllers::device::routes())
        .merge(controllers::device::device_routes().layer(limited()))
        .layer(axum::middleware::from_fn(request_timeout));
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(timed)
        .merge(controllers::catalogue::bulk_routes())
        .merge(controllers::repair::bundle_routes())
        .merge(controllers::repair::attachment_routes())
        .merge(controllers::images::routes())
        .merge(controllers::images::download_routes().layer(limited()))
}

/// Answers 503 `request_timeout` when a call outlives `request_timeout_secs`.
async fn request_timeout(
    Extension(app): Extension<AppState>,
    req: axum::extract::Request,
    next: Next,
) -> Response {
    let secs = app.config.request_timeout_secs;
    match tokio::time::timeout(std::time::Duration::from_secs(secs), next.run(req)).await {
        Ok(res) => res,
        Err(_) => AppError::TimedOut(secs).into_response(),
    }
}

/// The access log: one line per request at `info`, with the path but never
/// the query (download grants live there), and the request id that audit
/// records carry too. Tokens, bodies and client addresses are never
/// logged; serials in the path only with `log_serials`.
async fn access_log(req: axum::extract::Request, next: Next) -> Response {
    let started = std::time::Instant::now();
    let method = req.method().clone();
    let request_id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    // The route template, not the path: a bounded label for metrics.
    let matched = req
        .extensions()
        .get::<axum::extract::MatchedPath>()
        .map(|p| p.as_str().to_owned());
    let route = matched.clone().unwrap_or_else(|| "unmatched".to_owned());
    // Serials in the path are personal data: shown as `{serial}` unless
    // the operator chose `log_serials`.
    let log_serials = req
        .extensions()
        .get::<AppState>()
        .is_some_and(|a| a.config.log_serials);
    let path =
        crate::domain::privacy::path_for_log(matched.as_deref(), req.uri().path(), log_serials);
    let span = tracing::info_span!("request", %method, %path, %request_id);
    let res = next.run(req).instrument(span).await;
    crate::metrics::request(
        &route,
        method.as_str(),
        res.status().as_u16(),
        started.elapsed(),
    );
    let bytes = res
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    tracing::info!(
        target: "firmup_server::access",
        %method,
        %path,
        status = res.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        size_bytes = bytes,
        %request_id,
        "request"
    );
    res
}

/// Makes request ids: a client's own if short and printable, else a UUID.
#[derive(Debug, Clone, Copy, Default)]
struct MakeId;

impl MakeRequestId for MakeId {
    fn make_request_id<B>(&mut self, _req: &axum::http::Request<B>) -> Option<RequestId> {
        let id = uuid::Uuid::new_v4().to_string();
        axum::http::HeaderValue::from_str(&id)
            .ok()
            .map(RequestId::new)
    }
}

/// Drops a client's request id that is too long or not printable, so the
/// server makes its own (ids end up in logs and audit records).
async fn sanitise_request_id(mut req: axum::extract::Request, next: Next) -> Response {
    let ok = req.headers().get(REQUEST_ID).is_some_and(|v| {
        v.len() <= 64
            && v.as_bytes()
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
    });
    if !ok {
        req.headers_mut().remove(REQUEST_ID);
    }
    next.run(req).await
}

/// The router with middleware and the OpenAPI document.
pub fn build(app: AppState) -> Router {
    let (router, openapi) = api().split_for_parts();
    let openapi = std::sync::Arc::new(crate::openapi::complete(
        serde_json::to_value(&openapi).expect("the OpenAPI document serialises"),
    ));
    router
        .route(
            "/openapi.json",
            get(move || {
                let doc = openapi.clone();
                async move { Json(doc.as_ref().clone()) }
            }),
        )
        .fallback(unknown_route)
        .method_not_allowed_fallback(method_not_allowed)
        // A panic is a bug: answer with the envelope, never plain text.
        .layer(CatchPanicLayer::custom(|_| {
            AppError::Internal(anyhow::anyhow!("handler panicked")).into_response()
        }))
        .layer(PropagateRequestIdLayer::new(HeaderName::from_static(
            REQUEST_ID,
        )))
        .layer(axum::middleware::from_fn(access_log))
        .layer(SetRequestIdLayer::new(
            HeaderName::from_static(REQUEST_ID),
            MakeId,
        ))
        .layer(axum::middleware::from_fn(sanitise_request_id))
        .layer(Extension(app.rate_limits.clone()))
        .layer(Extension(app.clone()))
        .with_state(app)
}

async fn unknown_route() -> AppError {
    AppError::not_found(
        "unknown_route",
        "no such endpoint; /openapi.json lists them all",
    )
}

async fn method_not_allowed() -> Response {
    let body = ErrorBody {
        error: ErrorDetail {
            code: "method_not_allowed".into(),
            message: "this endpoint does not accept this HTTP method; /openapi.json lists the \
                      methods it does"
                .into(),
        },
    };
    (StatusCode::METHOD_NOT_ALLOWED, Json(body)).into_response()
}
