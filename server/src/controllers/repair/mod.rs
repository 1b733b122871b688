//! The repair desk: RMAs track units sent in for repair (`rmas`) with the
//! files the customer sent (`attachments`), and technicians push a release
//! to a device under repair (`pushes`).
//!
//! A push is a repair grant the entitlement rules judge like any other
//! fact (code `repair_grant`); these handlers only check that the push is
//! one the device can take, keep at most one active per device, and tell
//! the update-check caches (`App::device_changed`) when one starts or
//! ends. What the device sees never names the technician or the RMA.

pub mod attachments;
pub mod bundle;
pub mod pushes;
pub mod rmas;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;

/// The bundle download: a large transfer, so outside the API calls'
/// request timeout (the connection layer's progress rule bounds it).
pub fn bundle_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(bundle::download))
}

/// RMA attachments: files up to `max_attachment_bytes` streamed in and
/// out, so outside the API calls' request timeout too.
pub fn attachment_routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(attachments::upload))
        .routes(routes!(attachments::download))
}

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(pushes::create, pushes::cancel))
        .routes(routes!(pushes::history))
        .routes(routes!(rmas::open, rmas::list))
        .routes(routes!(rmas::get))
        .routes(routes!(rmas::set_state))
        .routes(routes!(rmas::set_tracking))
        .routes(routes!(rmas::decide_coverage))
        .routes(routes!(rmas::replace_part))
        .routes(routes!(rmas::replace_unit))
}
