//! catalogue routes (in progress).

use utoipa_axum::router::OpenApiRouter;

use crate::app::AppState;

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
