//! The one route table. Each controller module contributes its routes with
//! their OpenAPI descriptions; the merged document is served at
//! `/openapi.json`.

use axum::http::StatusCode;
use axum::response::{IntoResponse as _, Response};
use axum::routing::get;
use axum::{Json, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;
use crate::controllers;
use crate::error::{AppError, ErrorBody, ErrorDetail};

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
pub fn api() -> OpenApiRouter<AppState> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(controllers::health::routes())
        .merge(controllers::trust::routes())
        .merge(controllers::tokens::routes())
        .merge(controllers::audit::routes())
        .merge(controllers::catalogue::routes())
        .merge(controllers::release::routes())
        .merge(controllers::images::routes())
        .merge(controllers::device::routes())
}

/// The router with middleware and the OpenAPI document.
pub fn build(app: AppState) -> Router {
    let (router, openapi) = api().split_for_parts();
    let openapi = std::sync::Arc::new(openapi);
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
        .layer(TraceLayer::new_for_http())
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
