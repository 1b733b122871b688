//! Reading releases (any role but device): the list of a product line,
//! one release, and its manifest envelope byte for byte.
//!
//! Lists are sorted by semver in Rust, newest first: SQL text ordering
//! would put 2.9.0 above 2.10.0.

use std::cmp::Reverse;
use std::collections::HashMap;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};

use super::publish::LinePath;
use super::{ReleaseInfo, ReleaseKey, ReleasePath, find_release, load_info, release_info};
use crate::app::AppState;
use crate::auth::{Caller, Staff};
use crate::db;
use crate::domain::Name;
use crate::error::{AppError, AppResult};
use crate::extract::Path;

/// Lists the releases of a product line, newest version first, yanked ones
/// included (with `yanked_at`).
#[utoipa::path(get, path = "/v1/product-lines/{line}/releases", tag = "releases",
    params(LinePath),
    responses(
        (status = 200, body = Vec<ReleaseInfo>),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, description = "unknown_product_line", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<AppState>,
    _principal: Caller<Staff>,
    Path(path): Path<LinePath>,
) -> AppResult<Json<Vec<ReleaseInfo>>> {
    let line = Name::parse("product line", &path.line)?;
    if !db::releases::product_line_exists(&app.db, line.as_str()).await? {
        return Err(AppError::not_found(
            "unknown_product_line",
            format!("product line {line:?} does not exist"),
        ));
    }
    let rows = db::releases::list(&app.db, line.as_str()).await?;
    let mut images: HashMap<i64, Vec<_>> = HashMap::new();
    for image in db::releases::images_of_line(&app.db, line.as_str()).await? {
        images.entry(image.release_id).or_default().push(image);
    }
    let mut releases = rows
        .into_iter()
        .map(|row| {
            let imgs = images.remove(&row.id).unwrap_or_default();
            let version = semver::Version::parse(&row.version).ok();
            release_info(row, imgs).map(|info| (version, info))
        })
        .collect::<AppResult<Vec<_>>>()?;
    // Newest first; a stored version that does not parse (never written by
    // this server) sorts last rather than failing the whole list.
    releases.sort_by(|(va, a), (vb, b)| {
        Reverse(va)
            .cmp(&Reverse(vb))
            .then_with(|| a.channel.cmp(&b.channel))
    });
    Ok(Json(releases.into_iter().map(|(_, info)| info).collect()))
}

/// One release.
#[utoipa::path(get, path = "/v1/product-lines/{line}/releases/{channel}/{version}",
    tag = "releases", params(ReleasePath),
    responses(
        (status = 200, body = ReleaseInfo),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, description = "unknown_release", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn detail(
    State(app): State<AppState>,
    _principal: Caller<Staff>,
    Path(path): Path<ReleasePath>,
) -> AppResult<Json<ReleaseInfo>> {
    let key = ReleaseKey::parse(&path)?;
    let row = find_release(&app.db, &key).await?;
    Ok(Json(load_info(&app, row).await?))
}

/// The release's manifest envelope, exactly as it was signed and submitted
/// (verify it with `firmup-signer verify`).
#[utoipa::path(get, path = "/v1/product-lines/{line}/releases/{channel}/{version}/manifest",
    tag = "releases", params(ReleasePath),
    responses(
        (status = 200, content_type = "application/json", body = Object,
            description = "the envelope bytes as stored"),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, description = "unknown_release", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn manifest(
    State(app): State<AppState>,
    _principal: Caller<Staff>,
    Path(path): Path<ReleasePath>,
) -> AppResult<Response> {
    let key = ReleaseKey::parse(&path)?;
    let row = find_release(&app.db, &key).await?;
    let envelope = db::releases::envelope(&app.db, row.id)
        .await?
        .ok_or_else(|| anyhow::anyhow!("release {} vanished", key.target()))?;
    Ok(([(header::CONTENT_TYPE, "application/json")], envelope).into_response())
}
