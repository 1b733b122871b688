//! The one route table. Each controller module contributes its routes with
//! their OpenAPI descriptions; the merged document is served at
//! `/openapi.json`.

use axum::routing::get;
use axum::{Json, Router};
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;
use crate::controllers;

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
        .layer(CatchPanicLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(app)
}
