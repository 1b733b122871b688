//! Release routes: publish a signed manifest, list and inspect releases,
//! yank and un-yank, mark free for all, promote to another channel, and
//! delete outside the retention of security releases.
//!
//! Every manifest that becomes a release has passed the client library's
//! engine with the server's latest trust root ([`crate::publish_check`]),
//! and its envelope is kept byte for byte: devices verify the signed bytes
//! themselves and trust nothing else the server says. These handlers must
//! never re-serialise, edit or sign a manifest.

pub mod delete;
pub mod free_for_all;
pub mod list;
pub mod promote;
pub mod publish;
pub mod yank;

use axum::extract::DefaultBodyLimit;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use bytes::Bytes;
use firmup_client::manifest::MAX_MANIFEST_BYTES;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::AppState;
use crate::db::{self, releases::ReleaseImageRow, releases::ReleaseRow};
use crate::domain::{Name, parse_version};
use crate::error::{AppError, AppResult};

/// Routes of this module. Every body these routes take is a manifest
/// envelope or a small JSON object, so one streamed limit of
/// [`MAX_MANIFEST_BYTES`] covers them all: a larger body is refused while
/// it is read, never buffered whole.
pub fn routes() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(publish::publish, list::list))
        .routes(routes!(list::detail, delete::delete))
        .routes(routes!(list::manifest))
        .routes(routes!(yank::yank, yank::unyank))
        .routes(routes!(free_for_all::set_free_for_all))
        .routes(routes!(promote::promote))
        .layer(DefaultBodyLimit::max(MAX_MANIFEST_BYTES as usize))
}

/// Path of one release.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Path)]
pub struct ReleasePath {
    /// Product line id, e.g. `encoders`.
    pub line: String,
    /// Channel, e.g. `stable`.
    pub channel: String,
    /// Semver version, e.g. `2.1.0`.
    pub version: String,
}

/// One image of a release.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReleaseImage {
    /// Image name from the manifest.
    pub name: String,
    /// Target slot or component.
    pub target: String,
    /// sha256 (hex); the download URL is `/v1/images/{sha256}`.
    pub sha256: String,
    /// Signed length in bytes.
    pub length: i64,
}

/// A release as listed and shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ReleaseInfo {
    /// Product line.
    pub product_line: String,
    /// Channel (signed).
    pub channel: String,
    /// Version (signed).
    pub version: String,
    /// Replay counter (signed).
    pub manifest_version: i64,
    /// Anti-rollback counter (signed).
    pub security_counter: i64,
    /// Minimum installed version (signed), if any.
    pub requires: Option<String>,
    /// Hardware ids the release fits (signed).
    pub hw_compat: Vec<String>,
    /// Images the release installs (signed).
    pub images: Vec<ReleaseImage>,
    /// sha256 of the signed payload: the release's identity.
    pub payload_sha256: String,
    /// Inline release notes (signed), if any.
    pub release_notes: Option<String>,
    /// When it was published.
    #[serde(with = "time::serde::rfc3339")]
    pub published_at: OffsetDateTime,
    /// Label of the token that published it.
    pub published_by: String,
    /// Offered to every device regardless of entitlement (for example a
    /// critical security fix).
    pub free_for_all: bool,
    /// When it was yanked; yanked releases are no longer offered.
    #[serde(with = "time::serde::rfc3339::option")]
    pub yanked_at: Option<OffsetDateTime>,
    /// Why it was yanked.
    pub yank_reason: Option<String>,
}

/// Builds the API view of a release from its row and image rows.
pub fn release_info(row: ReleaseRow, images: Vec<ReleaseImageRow>) -> AppResult<ReleaseInfo> {
    let hw_compat: Vec<String> = serde_json::from_str(&row.hw_compat).map_err(|e| {
        AppError::Internal(anyhow::anyhow!("release {}: stored hw_compat: {e}", row.id))
    })?;
    Ok(ReleaseInfo {
        product_line: row.product_line,
        channel: row.channel,
        version: row.version,
        manifest_version: row.manifest_version,
        security_counter: row.security_counter,
        requires: row.requires,
        hw_compat,
        images: images
            .into_iter()
            .map(|i| ReleaseImage {
                name: i.name,
                target: i.target,
                sha256: i.sha256,
                length: i.length,
            })
            .collect(),
        payload_sha256: row.payload_sha256,
        release_notes: row.release_notes,
        published_at: row.published_at,
        published_by: row.published_by,
        free_for_all: row.free_for_all,
        yanked_at: row.yanked_at,
        yank_reason: row.yank_reason,
    })
}

/// A release path parsed into domain types.
#[derive(Debug, Clone)]
pub struct ReleaseKey {
    /// Product line.
    pub line: Name,
    /// Channel.
    pub channel: Name,
    /// Version.
    pub version: semver::Version,
}

impl ReleaseKey {
    /// Parses a release path.
    pub fn parse(p: &ReleasePath) -> AppResult<Self> {
        Ok(ReleaseKey {
            line: Name::parse("product line", &p.line)?,
            channel: Name::parse("channel", &p.channel)?,
            version: parse_version("version", &p.version)?,
        })
    }

    /// `line/channel/version`, as audit targets name releases.
    pub fn target(&self) -> String {
        audit_target(self.line.as_str(), self.channel.as_str(), &self.version)
    }
}

/// The audit target of a release: `encoders/stable/2.1.0`.
pub fn audit_target(line: &str, channel: &str, version: &semver::Version) -> String {
    format!("{line}/{channel}/{version}")
}

/// The stored release at `key`, or 404 `unknown_release`. Inside a write
/// transaction (`&mut tx`), for changes that depend on what they read,
/// nothing can change it before the commit.
pub async fn find_release(
    exec: impl Into<db::Exec<'_>>,
    key: &ReleaseKey,
) -> AppResult<ReleaseRow> {
    let found = db::releases::find(
        exec,
        key.line.as_str(),
        key.channel.as_str(),
        &key.version.to_string(),
    )
    .await?;
    found.ok_or_else(|| unknown_release(key))
}

fn unknown_release(key: &ReleaseKey) -> AppError {
    {
        AppError::not_found(
            "unknown_release",
            format!(
                "no release {} on channel {} of product line {}; \
                 GET /v1/product-lines/{}/releases lists them",
                key.version, key.channel, key.line, key.line
            ),
        )
    }
}

/// The API view of a stored release, with its images.
pub async fn load_info(app: &AppState, row: ReleaseRow) -> AppResult<ReleaseInfo> {
    let images = db::releases::images_of(&app.db, row.id).await?;
    release_info(row, images)
}

/// A manifest body read under the route's streamed limit; the limit's
/// rejection becomes the API's `manifest_too_large`.
pub fn manifest_body(body: Result<Bytes, BytesRejection>) -> AppResult<Bytes> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            AppError::PayloadTooLarge {
                code: "manifest_too_large",
                message: format!(
                    "the manifest envelope is larger than {MAX_MANIFEST_BYTES} bytes, the most \
                     devices accept; sign a smaller manifest (move long release notes out and \
                     reference them by release_notes_sha256)"
                ),
            }
        } else {
            AppError::bad_request(
                "unreadable_body",
                format!(
                    "the request body could not be read: {}",
                    rejection.body_text()
                ),
            )
        }
    })
}
