//! Files attached to an RMA: the photos and logs a customer sent, or the
//! desk's own. `POST /v1/rmas/{number}/attachments?name=FILE` streams the
//! raw body into storage (`StorageKey::Attachment`, keyed by the sha256 of
//! what arrived), and only once storage has verified it are its row, the
//! RMA event `attachment` and the audit record `rma.attachment` written, in
//! one transaction: a refused or cut upload leaves nothing any answer
//! shows. `GET /v1/rmas/{number}/attachments/{id}` streams the bytes back.
//!
//! These handlers must never buffer a body: the size limit
//! (`max_attachment_bytes`) is enforced while the bytes stream, and both
//! routes sit outside the API calls' request timeout (the connection
//! layer's progress rule bounds them).

use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use super::rmas::{event_and_audit, finished, parse_number, stored_state, unknown_rma};
use crate::app::AppState;
use crate::auth::{Caller, Staff, Technicians};
use crate::controllers::images::download::safe_filename;
use crate::controllers::images::upload::content_length;
use crate::db::rmas::{AttachmentRow, RmaRow};
use crate::db::{self};
use crate::domain::rma::RmaState;
use crate::domain::{Name, check_text, parse_sha256};
use crate::error::{AppError, AppResult};
use crate::extract::{Path, Query};
use crate::storage::{StorageError, StorageKey};

/// Longest file name of an attachment, in characters.
pub const MAX_FILE_NAME_CHARS: usize = 200;
/// Longest media type recorded for an attachment, in characters.
pub const MAX_CONTENT_TYPE_CHARS: usize = 255;
/// The media type of an upload sent without `Content-Type`.
const DEFAULT_CONTENT_TYPE: &str = "application/octet-stream";

/// A file attached to an RMA.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct AttachmentView {
    /// Id, `att_<32 hex>`; `GET /v1/rmas/{number}/attachments/{id}` gives
    /// the bytes.
    pub id: String,
    /// The file name as given.
    pub name: String,
    /// The media type it was uploaded with.
    pub content_type: String,
    /// Length in bytes.
    pub length: u64,
    /// sha256 of the bytes (hex).
    pub sha256: String,
    /// Who uploaded it.
    pub uploaded_by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub uploaded_at: OffsetDateTime,
}

/// The view of a stored attachment.
pub fn attachment_view(r: AttachmentRow) -> AttachmentView {
    AttachmentView {
        id: r.id,
        name: r.name,
        content_type: r.content_type,
        length: u64::try_from(r.length).unwrap_or(0),
        sha256: r.sha256,
        uploaded_by: r.uploaded_by,
        uploaded_at: r.uploaded_at,
    }
}

/// What an upload names.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub struct UploadQuery {
    /// The file name (1-200 characters, no `/` or `\`, not `.` or `..`),
    /// e.g. `front-panel.jpg`.
    pub name: String,
    /// The sha256 of the file (64 lowercase hex digits); when given, bytes
    /// that hash otherwise are refused and nothing is recorded.
    pub sha256: Option<String>,
}

/// Attaches a file to an RMA (technician): a photo or log the customer
/// sent. The body is the raw file, streamed; its `Content-Type` is recorded
/// (default `application/octet-stream`). Send `Content-Length` so an
/// oversize file is refused before any byte is read. Closed and cancelled
/// RMAs take no more files. An RMA event `attachment` and the audit record
/// `rma.attachment` name the file, its length and sha256.
#[utoipa::path(post, path = "/v1/rmas/{number}/attachments", tag = "repair",
    params(("number" = String, Path, description = "RMA number"), UploadQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream",
        description = "the file's bytes, streamed; any media type, recorded as the attachment's"),
    responses(
        (status = 201, body = AttachmentView),
        (status = 400, description = "invalid_rma, invalid_file_name, invalid_sha256, invalid_content_type, invalid_content_length, length_mismatch, upload_interrupted, invalid_query", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_rma", body = crate::error::ErrorBody),
        (status = 409, description = "rma_finished", body = crate::error::ErrorBody),
        (status = 413, description = "attachment_too_large", body = crate::error::ErrorBody),
        (status = 422, description = "attachment_digest_mismatch", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn upload(
    State(app): State<AppState>,
    principal: Caller<Technicians>,
    Path(number): Path<String>,
    Query(q): Query<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> AppResult<(StatusCode, Json<AttachmentView>)> {
    let number = parse_number(&number)?;
    let name = file_name(&q.name)?;
    let expected = q.sha256.as_deref().map(parse_sha256).transpose()?;
    let content_type = content_type(&headers)?;
    let max = app.config.max_attachment_bytes;
    let announced = content_length(&headers)?;
    if let Some(len) = announced
        && len > max
    {
        return Err(too_large(format!("the file is {len} bytes"), max));
    }
    // Refused before a byte of the body is read. No transaction is held
    // while the body streams: the RMA is checked again before the write.
    let rma = db::rmas::find(&app.db, number)
        .await?
        .ok_or_else(|| unknown_rma(number))?;
    takes_files(&rma)?;

    let stored = app
        .storage
        .put_attachment(expected, announced, max, body.into_data_stream())
        .await
        .map_err(|e| upload_error(e, max))?;
    let now = OffsetDateTime::now_utc();
    let actor = principal.actor();
    let row = AttachmentRow {
        id: format!("att_{}", uuid::Uuid::new_v4().simple()),
        rma: number.to_owned(),
        name: name.to_owned(),
        content_type,
        length: i64::try_from(stored.length).unwrap_or(i64::MAX),
        sha256: stored.sha256.to_hex(),
        uploaded_by: actor.label.clone(),
        uploaded_at: now,
    };
    let mut tx = app.db.begin().await?;
    let rma = db::rmas::find(&mut tx, number)
        .await?
        .ok_or_else(|| unknown_rma(number))?;
    takes_files(&rma)?;
    db::rmas::insert_attachment(&mut tx, &row).await?;
    db::rmas::touch(&mut tx, number, now).await?;
    let detail = serde_json::json!({
        "id": row.id,
        "name": row.name,
        "content_type": row.content_type,
        "length": stored.length,
        "sha256": row.sha256,
    });
    event_and_audit(
        &mut tx,
        &actor,
        number,
        now,
        "attachment",
        "rma.attachment",
        detail,
    )
    .await?;
    tx.commit().await?;
    tracing::info!(rma = %number, id = %row.id, size_bytes = stored.length, "file attached");
    // As stored (the database keeps microseconds), as the RMA lists it.
    let row = db::rmas::find_attachment(&app.db, number, &row.id)
        .await?
        .unwrap_or(row);
    Ok((StatusCode::CREATED, Json(attachment_view(row))))
}

/// Downloads a file attached to an RMA (admin, release engineer,
/// technician): the bytes as uploaded, with their `Content-Type`,
/// `Content-Length` and a `Content-Disposition` naming the file.
#[utoipa::path(get, path = "/v1/rmas/{number}/attachments/{id}", tag = "repair",
    params(
        ("number" = String, Path, description = "RMA number"),
        ("id" = String, Path, description = "attachment id, as the RMA lists it"),
    ),
    responses(
        (status = 200, description = "the file, streamed (its own media type)", content_type = "application/octet-stream"),
        (status = 400, description = "invalid_rma, invalid_name", body = crate::error::ErrorBody),
        (status = 403, description = "wrong_role", body = crate::error::ErrorBody),
        (status = 404, description = "unknown_rma, unknown_attachment", body = crate::error::ErrorBody),
    ),
    security(("bearer" = [])))]
pub async fn download(
    State(app): State<AppState>,
    _principal: Caller<Staff>,
    Path((number, id)): Path<(String, String)>,
) -> AppResult<Response> {
    let number = parse_number(&number)?;
    let id = Name::parse("attachment id", &id)?;
    let row = match db::rmas::find_attachment(&app.db, number, id.as_str()).await? {
        Some(row) => row,
        None if db::rmas::find(&app.db, number).await?.is_none() => {
            return Err(unknown_rma(number));
        }
        None => {
            return Err(AppError::not_found(
                "unknown_attachment",
                format!(
                    "{number} has no attachment {id}; GET /v1/rmas/{number} lists its attachments"
                ),
            ));
        }
    };
    let digest = parse_sha256(&row.sha256)?;
    let length = u64::try_from(row.length).unwrap_or(0);
    let stream = app
        .storage
        .read_range(StorageKey::attachment(digest), 0, length)
        .await
        .map_err(|e| match e {
            StorageError::NotFound => AppError::Internal(anyhow::anyhow!(
                "attachment {} of {number} is recorded but its bytes are not stored",
                row.id
            )),
            other => other.into(),
        })?;
    let mut res = Response::new(Body::from_stream(stream));
    *res.status_mut() = StatusCode::OK;
    let h = res.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_str(&row.content_type)
            .unwrap_or_else(|_| HeaderValue::from_static(DEFAULT_CONTENT_TYPE)),
    );
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(length));
    if let Ok(v) = HeaderValue::from_str(&disposition(&row.name, &row.id)) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    // Customer files are personal data, and never rendered as a page of
    // this origin.
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    Ok(res)
}

/// Whether the RMA takes files: 409 `rma_finished` once closed or
/// cancelled (a shipped unit's RMA still takes the customer's photos).
fn takes_files(rma: &RmaRow) -> AppResult<()> {
    let state = stored_state(rma);
    if matches!(state, RmaState::Closed | RmaState::Cancelled) {
        return Err(finished(&rma.number, state));
    }
    Ok(())
}

/// Checks an attachment's file name: 1-200 characters of plain text, no
/// path (`/`, `\`, `.` or `..`). 400 `invalid_file_name`.
pub fn file_name(value: &str) -> AppResult<&str> {
    let name = check_text(
        "invalid_file_name",
        "name",
        value,
        MAX_FILE_NAME_CHARS,
        false,
    )?;
    if name.contains(['/', '\\']) || name == "." || name == ".." {
        return Err(AppError::bad_request(
            "invalid_file_name",
            "name is a file name without a path: no / or \\, and not . or ..",
        ));
    }
    Ok(name)
}

/// The upload's media type: its `Content-Type`, `type/subtype` with
/// optional parameters, or `application/octet-stream` when it sent none.
/// 400 `invalid_content_type`.
fn content_type(headers: &HeaderMap) -> AppResult<String> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(DEFAULT_CONTENT_TYPE.to_owned());
    };
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$&^_.+-".contains(&b))
    };
    let text = value.to_str().ok().map(str::trim).filter(|t| {
        let essence = t.split(';').next().unwrap_or_default().trim();
        t.len() <= MAX_CONTENT_TYPE_CHARS
            && t.bytes().all(|b| b == b' ' || b.is_ascii_graphic())
            && essence
                .split_once('/')
                .is_some_and(|(ty, sub)| token(ty) && token(sub))
    });
    text.map(str::to_owned).ok_or_else(|| {
        AppError::bad_request(
            "invalid_content_type",
            format!(
                "Content-Type must be a media type such as image/jpeg or text/plain, of at most \
                 {MAX_CONTENT_TYPE_CHARS} characters"
            ),
        )
    })
}

/// `Content-Disposition` of a download (RFC 6266): an ASCII `filename`
/// reduced to safe characters, and the name as given in `filename*`.
fn disposition(name: &str, id: &str) -> String {
    let plain = safe_filename(name).unwrap_or_else(|| id.to_owned());
    let mut encoded = String::new();
    for b in name.bytes() {
        // RFC 8187 attr-char; everything else percent-encoded.
        if b.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&b) {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    format!("attachment; filename=\"{plain}\"; filename*=UTF-8''{encoded}")
}

fn too_large(what: String, max: u64) -> AppError {
    AppError::PayloadTooLarge {
        code: "attachment_too_large",
        message: format!(
            "{what}; this server takes attachments of up to {max} bytes \
             (max_attachment_bytes); nothing was recorded"
        ),
    }
}

fn upload_error(e: StorageError, max: u64) -> AppError {
    match e {
        StorageError::TooLarge { limit } => {
            too_large(format!("the upload passed {limit} bytes"), max)
        }
        StorageError::DigestMismatch { expected, actual } => AppError::unprocessable(
            "attachment_digest_mismatch",
            format!(
                "the uploaded bytes have sha256 {actual}, but the sha256 parameter names \
                 {expected}; nothing was recorded. Upload the file again"
            ),
        ),
        StorageError::LengthMismatch { expected, actual } => AppError::bad_request(
            "length_mismatch",
            format!(
                "Content-Length announced {expected} bytes but {actual} arrived; nothing was \
                 recorded. Retry the upload"
            ),
        ),
        StorageError::Interrupted(detail) => {
            tracing::info!(detail = %detail, "attachment upload interrupted");
            AppError::bad_request(
                "upload_interrupted",
                "the upload was interrupted before the last byte; nothing was recorded. Retry it",
            )
        }
        other => other.into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_have_no_path() {
        for ok in ["front.jpg", "log 2026-03-01.txt", "ação.png", ".bashrc"] {
            assert_eq!(file_name(ok).unwrap(), ok);
        }
        assert_eq!(file_name("  a.txt ").unwrap(), "a.txt");
        for bad in [
            "",
            "  ",
            "a/b.jpg",
            "..\\x",
            ".",
            "..",
            "a\u{0}b",
            "a\u{202e}b",
        ] {
            assert_eq!(
                file_name(bad).unwrap_err().code(),
                "invalid_file_name",
                "{bad:?}"
            );
        }
        assert!(file_name(&"x".repeat(MAX_FILE_NAME_CHARS)).is_ok());
        assert!(file_name(&"x".repeat(MAX_FILE_NAME_CHARS + 1)).is_err());
    }

    #[test]
    fn media_types_are_recorded_when_shaped_like_one() {
        let of = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, HeaderValue::from_str(v).unwrap());
            content_type(&h)
        };
        assert_eq!(
            content_type(&HeaderMap::new()).unwrap(),
            DEFAULT_CONTENT_TYPE
        );
        assert_eq!(of("image/jpeg").unwrap(), "image/jpeg");
        assert_eq!(
            of("text/plain; charset=utf-8").unwrap(),
            "text/plain; charset=utf-8"
        );
        for bad in ["jpeg", "image/", "/jpeg", "image/jp eg", "a/b\"c"] {
            assert_eq!(of(bad).unwrap_err().code(), "invalid_content_type", "{bad}");
        }
    }

    #[test]
    fn dispositions_name_the_file_safely() {
        assert_eq!(
            disposition("front.jpg", "att_1"),
            "attachment; filename=\"front.jpg\"; filename*=UTF-8''front.jpg"
        );
        assert_eq!(
            disposition("ação \"x\".png", "att_1"),
            "attachment; filename=\"a__o__x_.png\"; filename*=UTF-8''a%C3%A7%C3%A3o%20%22x%22.png"
        );
        assert_eq!(
            disposition("***", "att_1"),
            "attachment; filename=\"att_1\"; filename*=UTF-8''%2A%2A%2A"
        );
    }
}
