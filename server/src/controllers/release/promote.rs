//! Promotion between channels (release engineer), e.g. beta -> stable.
//!
//! The channel is inside the signed manifest, and devices check it against
//! the channel they follow, so the server cannot move a release to another
//! channel by relabelling it: that would be a manifest devices refuse (and
//! a server able to do it could push a beta build at stable devices). A
//! promotion therefore takes a manifest the release engineers signed for
//! the target channel, verifies it exactly like a publish, and checks it
//! describes the same build as the source release (same version, exactly
//! the same images by name, sha256 and length), so "promote" can never
//! smuggle in different bytes.

use axum::Json;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;
use bytes::Bytes;

use super::publish::{PublishOutcome, store_release, verify_submission};
use super::{ReleaseKey, ReleasePath, find_release, manifest_body};
use crate::app::AppState;
use crate::auth::{Caller, ReleaseEngineers};
use crate::db;
use crate::error::{AppError, AppResult};
use crate::extract::Path;

/// Promotes the release at the path to the channel named in the submitted
/// manifest (release engineer). The body is a manifest envelope signed for
/// the target channel (`firmup-signer sign --channel stable ...` with the
/// same images and version, and a manifest_version greater than every
/// release's on the target channel). Idempotent like a publish: the same
/// signed payload again answers 200 `already_exists`.
#[utoipa::path(post, path = "/v1/product-lines/{line}/releases/{channel}/{version}/promote",
    tag = "releases", params(ReleasePath),
    request_body(content = Object, content_type = "application/json",
        description = "manifest envelope signed for the target channel"),
    responses(
        (status = 201, description = "promoted", body = PublishOutcome),
        (status = 200, description = "already promoted with this signed payload", body = PublishOutcome),
        (status = 403, body = crate::error::ErrorBody),
        (status = 404, description = "unknown_release, unknown_product_line", body = crate::error::ErrorBody),
        (status = 409, description = "release_yanked, version_exists, manifest_version_not_increasing", body = crate::error::ErrorBody),
        (status = 413, description = "manifest_too_large", body = crate::error::ErrorBody),
        (status = 422, description = "promotion_mismatch, no_trust_root, image_missing, or the engine's code", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn promote(
    State(app): State<AppState>,
    principal: Caller<ReleaseEngineers>,
    Path(path): Path<ReleasePath>,
    body: Result<Bytes, BytesRejection>,
) -> AppResult<(StatusCode, Json<PublishOutcome>)> {
    let key = ReleaseKey::parse(&path)?;
    let envelope = manifest_body(body)?;
    let source = find_release(&app.db, &key).await?;
    let plan = verify_submission(&app, &key.line, &envelope).await?;
    let m = &plan.manifest;

    if m.version != key.version {
        return Err(mismatch(format!(
            "the submitted manifest is for version {}, but the release being promoted is {}",
            m.version, key.version
        )));
    }
    if m.channel == key.channel.as_str() {
        return Err(mismatch(format!(
            "the submitted manifest is signed for channel {}, the channel the release is already \
             on; sign it for the target channel (--channel)",
            m.channel
        )));
    }
    let mut signed: Vec<(String, String, u64)> = m
        .images
        .iter()
        .map(|i| (i.name.clone(), i.sha256.to_hex(), i.length))
        .collect();
    signed.sort();
    let mut current: Vec<(String, String, u64)> = db::releases::images_of(&app.db, source.id)
        .await?
        .into_iter()
        .map(|i| (i.name, i.sha256, i.length.max(0) as u64))
        .collect();
    current.sort();
    if signed != current {
        return Err(mismatch(format!(
            "the submitted manifest's images ({}) differ from those of {} ({}); a promotion \
             must ship exactly the same images",
            describe(&signed),
            key.target(),
            describe(&current)
        )));
    }
    if let Some(yanked_at) = source.yanked_at {
        return Err(AppError::conflict(
            "release_yanked",
            format!(
                "{} was yanked at {yanked_at} ({}); un-yank it before promoting it",
                key.target(),
                source.yank_reason.as_deref().unwrap_or("no reason given")
            ),
        ));
    }

    store_release(
        &app,
        &principal,
        &key.line,
        &envelope,
        &plan,
        source.free_for_all,
        Some(key.channel.as_str()),
        None,
        "release.promote",
        serde_json::json!({ "from_channel": key.channel.as_str() }),
    )
    .await
}

fn mismatch(message: String) -> AppError {
    AppError::unprocessable("promotion_mismatch", message)
}

fn describe(images: &[(String, String, u64)]) -> String {
    images
        .iter()
        .map(|(name, sha, len)| format!("{name} sha256 {sha} {len} bytes"))
        .collect::<Vec<_>>()
        .join(", ")
}
