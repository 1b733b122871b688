//! Liveness and readiness probes.

use axum::Json;
use axum::extract::State;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::error::{AppError, AppResult};

/// Probe answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// "ok".
    pub status: &'static str,
}

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(healthz))
        .routes(routes!(readyz))
        .routes(routes!(metrics))
}

/// Prometheus metrics in the text format (version 0.0.4): requests by
/// route and status with latency histograms, update checks by outcome,
/// bytes served and active downloads, publishes, database pool use, cache
/// lookups, device reports. Needs `metrics_token` or an admin token here;
/// `metrics_listen` serves it without one on a second address.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses(
        (status = 200, description = "the metrics", content_type = "text/plain; version=0.0.4"),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody)),
    security(("bearer" = [])))]
pub async fn metrics(
    State(app): State<AppState>,
    headers: axum::http::HeaderMap,
) -> AppResult<axum::response::Response> {
    let presented = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.get(..7)
                .filter(|p| p.eq_ignore_ascii_case("bearer "))
                .map(|_| &v[7..])
        });
    let by_metrics_token = match (&app.config.metrics_token, presented) {
        (Some(expected), Some(given)) => {
            // Compared as digests: timing says nothing about the token.
            use sha2::Digest as _;
            sha2::Sha256::digest(expected.as_bytes())
                == sha2::Sha256::digest(given.trim().as_bytes())
        }
        _ => false,
    };
    if !by_metrics_token {
        crate::auth::authenticate(&app, &headers)
            .await?
            .require(&[crate::domain::roles::Role::Admin])?;
    }
    Ok(render(&app))
}

/// The metrics page, with the pool gauges read now.
pub fn render(app: &crate::app::App) -> axum::response::Response {
    use axum::response::IntoResponse as _;
    let (open, idle) = app.db.pool_stats();
    crate::metrics::pool(open, idle, app.config.database_pool_size);
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        crate::metrics::handle().render(),
    )
        .into_response()
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The database and storage answer; a load balancer may send traffic.
#[utoipa::path(get, path = "/readyz", tag = "ops",
    responses((status = 200, body = Health), (status = 503, body = crate::error::ErrorBody)))]
pub async fn readyz(State(app): State<AppState>) -> AppResult<Json<Health>> {
    app.db.ready().await?;
    app.storage
        .ready()
        .await
        .map_err(|e| AppError::Unavailable(format!("storage: {e}")))?;
    Ok(Json(Health { status: "ok" }))
}
