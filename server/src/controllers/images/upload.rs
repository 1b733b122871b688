//! Image upload (release engineers): `PUT /v1/uploads/{sha256}` streams the
//! body into storage, which hashes it on the way and makes it visible only
//! once the digest and length check out; `HEAD` says whether an image is
//! already there, so the signer can skip uploads.
//!
//! Uploads are content-addressed and idempotent: the URL names the digest,
//! so uploading the same bytes twice is harmless, and an image that is
//! already stored is answered without reading the body.
//!
//! This handler must never buffer the body: images are gigabytes, and the
//! server's memory must not grow with them.

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::app::AppState;
use crate::auth::{Caller, ReleaseEngineers};
use crate::db;
use crate::domain::parse_sha256;
use crate::domain::roles::Principal;
use crate::error::{AppError, AppResult};
use crate::extract::Path;
use crate::storage::{PutOutcome, StorageError, StorageKey};

/// Answer to an upload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Uploaded {
    /// The image's sha256 (hex).
    pub sha256: String,
    /// Its length in bytes.
    pub length: u64,
    /// True if this request stored it; false if it was already stored.
    pub created: bool,
}

/// Uploads an image (release engineer). The body is the raw image bytes;
/// send `Content-Length` so oversize uploads are refused before any byte is
/// read. The bytes must hash to the sha256 in the path.
#[utoipa::path(put, path = "/v1/uploads/{sha256}", tag = "images",
    params(("sha256" = String, Path, description = "sha256 of the image, 64 lowercase hex digits")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "the image bytes, streamed"),
    responses(
        (status = 201, description = "stored now", body = Uploaded),
        (status = 200, description = "already stored; the body was not read", body = Uploaded),
        (status = 400, description = "invalid_sha256, invalid_content_length, length_mismatch, upload_interrupted", body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody),
        (status = 413, description = "image_too_large", body = crate::error::ErrorBody),
        (status = 422, description = "image_digest_mismatch", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn put_image(
    State(app): State<AppState>,
    principal: Caller<ReleaseEngineers>,
    Path(sha256): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> AppResult<(StatusCode, Json<Uploaded>)> {
    let digest = parse_sha256(&sha256)?;
    let hex = digest.to_hex();
    let max = app.config.max_image_bytes;
    let announced = content_length(&headers)?;
    if let Some(len) = announced
        && len > max
    {
        return Err(too_large(len, max));
    }

    // Already stored: answer without reading a byte of the body.
    if let Some(length) = app.storage.len(StorageKey::image(digest)).await? {
        // Stored before this request: 200 even if the row is written now.
        record(&app, &principal, &hex, length, false).await?;
        return Ok((
            StatusCode::OK,
            Json(Uploaded {
                sha256: hex,
                length,
                created: false,
            }),
        ));
    }

    let outcome = app
        .storage
        .put_image(digest, announced, max, body.into_data_stream())
        .await
        .map_err(|e| upload_error(e, announced, max))?;
    let (length, stored) = match outcome {
        PutOutcome::Created { length } => (length, true),
        // Another request stored the same bytes meanwhile.
        PutOutcome::AlreadyExists { length } => (length, false),
    };
    // Of concurrent uploads of the same bytes, the one whose row insert
    // wins is the one that created the image (201): a store without a
    // create-if-absent copy (S3) may have let several write the object.
    let created = record(&app, &principal, &hex, length, stored).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    tracing::info!(sha256 = %hex, size_bytes = length, created, "image uploaded");
    Ok((
        status,
        Json(Uploaded {
            sha256: hex,
            length,
            created,
        }),
    ))
}

/// Says whether an image is stored (release engineer): 200 with its
/// `Content-Length`, or 404. The signer uses it to skip uploads.
#[utoipa::path(head, path = "/v1/uploads/{sha256}", tag = "images",
    params(("sha256" = String, Path, description = "sha256 of the image, 64 lowercase hex digits")),
    responses(
        (status = 200, description = "stored; Content-Length is its length"),
        (status = 404, description = "not uploaded (no body: this is HEAD)"),
    ),
    security(("bearer" = [])))]
pub async fn head_upload(
    State(app): State<AppState>,
    _principal: Caller<ReleaseEngineers>,
    Path(sha256): Path<String>,
) -> AppResult<Response> {
    let digest = parse_sha256(&sha256)?;
    // Both must hold: the row is what publishing checks, the blob is what
    // devices download. If either is missing, a new upload repairs it.
    let row = db::images::length(&app.db, &digest.to_hex()).await?;
    let stored = app.storage.len(StorageKey::image(digest)).await?;
    match (row, stored) {
        (Some(length), Some(_)) => Ok((
            StatusCode::OK,
            [(header::CONTENT_LENGTH, length.to_string())],
        )
            .into_response()),
        _ => Ok(StatusCode::NOT_FOUND.into_response()),
    }
}

/// Writes the `images` row (if absent) and the audit record, in one
/// transaction; true if this call inserted the row. A blob already in
/// storage without its row (a crash between the two) gets its row here too.
async fn record(
    app: &AppState,
    principal: &Principal,
    sha256: &str,
    length: u64,
    created: bool,
) -> AppResult<bool> {
    let mut tx = app.db.begin().await?;
    let inserted = db::images::insert_if_absent(&mut tx, sha256, length).await?;
    // The row's insert is where concurrent uploads of the same bytes are
    // serialised: exactly one of them inserts it and writes the record.
    if created && !inserted {
        tracing::info!(sha256, "image bytes stored again for an existing row");
    }
    if inserted {
        db::audit::record(
            &mut tx,
            &principal.actor(),
            "image.upload",
            &format!("image/{sha256}"),
            serde_json::json!({ "sha256": sha256, "length": length }),
        )
        .await?;
    }
    tx.commit().await?;
    Ok(inserted)
}

/// The request's `Content-Length`, if it sent one; 400
/// `invalid_content_length` when it is not a number of bytes.
pub(crate) fn content_length(headers: &HeaderMap) -> AppResult<Option<u64>> {
    let Some(value) = headers.get(header::CONTENT_LENGTH) else {
        return Ok(None);
    };
    value
        .to_str()
        .ok()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(Some)
        .ok_or_else(|| {
            AppError::bad_request(
                "invalid_content_length",
                "Content-Length must be a number of bytes",
            )
        })
}

fn too_large(length: u64, max: u64) -> AppError {
    AppError::PayloadTooLarge {
        code: "image_too_large",
        message: format!(
            "the image is {length} bytes; this server accepts images up to {max} bytes \
             (max_image_bytes)"
        ),
    }
}

fn upload_error(e: StorageError, announced: Option<u64>, max: u64) -> AppError {
    match e {
        StorageError::TooLarge { limit } => AppError::PayloadTooLarge {
            code: "image_too_large",
            message: format!(
                "the upload passed {limit} bytes, the largest image this server accepts \
                 (max_image_bytes); nothing was stored"
            ),
        },
        StorageError::DigestMismatch { expected, actual } => AppError::unprocessable(
            "image_digest_mismatch",
            format!(
                "the uploaded bytes have sha256 {actual}, but the URL names {expected}; \
                 nothing was stored. Upload the file whose sha256 is in the URL"
            ),
        ),
        StorageError::LengthMismatch { expected, actual } => AppError::bad_request(
            "length_mismatch",
            format!(
                "Content-Length announced {expected} bytes but {actual} arrived; nothing was \
                 stored. Retry the upload"
            ),
        ),
        StorageError::Interrupted(detail) => {
            tracing::info!(detail = %detail, announced_bytes = ?announced, max_bytes = max, "upload interrupted");
            AppError::bad_request(
                "upload_interrupted",
                "the upload was interrupted before the last byte; nothing was stored. Retry it",
            )
        }
        other => other.into(),
    }
}
