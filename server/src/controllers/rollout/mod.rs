//! Staged rollouts of releases (`rollouts`) and the device groups they and
//! maintenance windows apply to (`groups`).
//!
//! These handlers parse, check the role and call [`crate::rollouts`] or the
//! database layer; after any change they mark the catalogue changed, since
//! rollouts, groups and windows live in the check path's snapshot.

pub mod groups;
pub mod rollouts;

use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;

/// Routes of this module.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(rollouts::start, rollouts::list))
        .routes(routes!(rollouts::get))
        .routes(routes!(rollouts::advance))
        .routes(routes!(rollouts::pause))
        .routes(routes!(rollouts::resume))
        .routes(routes!(rollouts::abort))
        .routes(routes!(rollouts::finish))
        .routes(routes!(groups::create, groups::list))
        .routes(routes!(groups::get, groups::delete))
        .routes(routes!(groups::members))
        .routes(routes!(groups::set_window, groups::clear_window))
        .routes(routes!(groups::set_tags))
}
