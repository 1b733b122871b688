//! Image routes: upload (release engineers) and resumable download
//! (devices with a grant, technicians).

pub mod download;
pub mod upload;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(upload::put_image, upload::head_upload))
}

/// The download route, which devices reach with their grants (rate
/// limited by address in [`crate::router`]).
pub fn download_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(download::download))
}
