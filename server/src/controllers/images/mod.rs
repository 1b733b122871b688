//! Image routes: upload (release engineers) and resumable download
//! (devices with a grant, technicians).

pub mod download;
pub mod upload;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(download::download))
        .routes(routes!(upload::put_image, upload::head_upload))
}
