//! `GET`/`HEAD /v1/images/{sha256}`: resumable, streamed image downloads.
//!
//! Who may download: a device (or anyone it hands the URL to, such as a
//! download manager) holding a valid grant from an update check, or a
//! technician, release engineer or admin with a bearer token. A grant is
//! checked by HMAC and expiry alone, so range requests cost no database
//! lookup.
//!
//! Range support follows RFC 9110 for a single range: 206 with
//! `Content-Range`, 416 with `Content-Range: bytes */len`, `If-Range` with
//! the strong ETag (the sha256), `Accept-Ranges: bytes`, HEAD. Several
//! ranges in one request are refused with 416 rather than answered with
//! multipart bodies: no device needs them, and refusing keeps the path
//! simple. Bodies stream from storage in bounded chunks.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use http_range_header::RangeUnsatisfiableError;
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::{Role, STAFF, authenticate};
use crate::db;
use crate::domain::parse_sha256;
use crate::error::{AppError, AppResult};
use crate::extract::{Path, Query};
use crate::grants::GrantParams;
use crate::storage::StorageKey;

/// Grant parameters from an update check's download URL.
#[derive(Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct GrantQuery {
    /// Subject of the grant (the device serial).
    pub sub: Option<String>,
    /// Expiry, unix seconds.
    pub exp: Option<i64>,
    /// Signature.
    pub sig: Option<String>,
}

/// Which bytes to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangePlan {
    /// The whole image (200).
    Full,
    /// `start..=end` (206).
    Partial {
        /// First byte.
        start: u64,
        /// Last byte, inclusive.
        end: u64,
    },
}

/// Decides the response range from the request headers, for an image of
/// `len` bytes whose strong ETag is `etag`.
pub fn plan_range(headers: &HeaderMap, len: u64, etag: &str) -> AppResult<RangePlan> {
    let mut values = headers.get_all(header::RANGE).iter();
    let Some(value) = values.next() else {
        return Ok(RangePlan::Full);
    };
    let unsatisfiable = |code: &'static str, message: String| AppError::RangeNotSatisfiable {
        code,
        length: len,
        message,
    };
    if values.next().is_some() {
        return Err(unsatisfiable(
            "multiple_range_headers",
            "send at most one Range header".into(),
        ));
    }
    // If-Range: honour the Range only if the client's copy is this exact
    // representation. Our validator is the strong ETag; a date or a weak or
    // different tag means "send it all", which is always safe.
    if let Some(if_range) = headers.get(header::IF_RANGE)
        && if_range.as_bytes() != etag.as_bytes()
    {
        return Ok(RangePlan::Full);
    }
    let text = value
        .to_str()
        .map_err(|_| unsatisfiable("invalid_range", "the Range header is not ASCII".into()))?;
    let parsed = http_range_header::parse_range_header(text).map_err(|e| {
        unsatisfiable(
            "invalid_range",
            format!("cannot parse Range {text:?} ({e:?}); use the form bytes=START-[END]"),
        )
    })?;
    if parsed.ranges.len() > 1 {
        return Err(unsatisfiable(
            "multiple_ranges_unsupported",
            "only one byte range per request is supported; request the ranges one at a time".into(),
        ));
    }
    if len == 0 {
        return Err(unsatisfiable(
            "range_not_satisfiable",
            "the image is empty; request it without a Range header".into(),
        ));
    }
    match parsed.validate(len) {
        Ok(ranges) => {
            let r = ranges
                .first()
                .ok_or_else(|| unsatisfiable("invalid_range", "empty Range".into()))?;
            Ok(RangePlan::Partial {
                start: *r.start(),
                end: *r.end(),
            })
        }
        // A suffix longer than the image means the whole image (RFC 9110 14.1.2).
        Err(RangeUnsatisfiableError::FileSuffixOutOfBounds) => Ok(RangePlan::Partial {
            start: 0,
            end: len - 1,
        }),
        Err(e) => Err(unsatisfiable(
            "range_not_satisfiable",
            format!("Range {text:?} does not fit the image of {len} bytes ({e:?})"),
        )),
    }
}

/// Downloads an image (or part of it). `HEAD` answers the same headers
/// without a body.
#[utoipa::path(get, path = "/v1/images/{sha256}", tag = "images",
    params(("sha256" = String, Path, description = "sha256 of the image"), GrantQuery,
        ("Range" = Option<String>, Header, description = "one byte range, e.g. bytes=1048576-"),
        ("If-Range" = Option<String>, Header, description = "the ETag from an earlier answer")),
    responses(
        (status = 200, description = "the whole image", content_type = "application/octet-stream"),
        (status = 206, description = "the requested range", content_type = "application/octet-stream"),
        (status = 304, description = "If-None-Match matched"),
        (status = 400, body = crate::error::ErrorBody),
        (status = 401, body = crate::error::ErrorBody),
        (status = 403, body = crate::error::ErrorBody, description = "invalid_grant, grant_expired, wrong_role, unreleased_image"),
        (status = 404, body = crate::error::ErrorBody, description = "unknown_image"),
        (status = 416, body = crate::error::ErrorBody, description = "invalid_range, range_not_satisfiable, multiple_ranges_unsupported, multiple_range_headers"),
        (status = 429, body = crate::error::ErrorBody, description = "rate_limited_address (Retry-After)")),
    security((), ("bearer" = [])))]
pub async fn download(
    State(app): State<AppState>,
    Path(sha256): Path<String>,
    Query(grant): Query<GrantQuery>,
    method: Method,
    headers: HeaderMap,
) -> AppResult<Response> {
    let digest = parse_sha256(&sha256)?;
    match (grant.sub, grant.exp, grant.sig) {
        (Some(sub), Some(exp), Some(sig)) => {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            app.grants
                .verify(&digest, &GrantParams { sub, exp, sig }, now)?;
        }
        (None, None, None) => {
            let staff = authenticate(&app, &headers).await?;
            staff.require(STAFF)?;
            // An image no release lists yet (uploaded, not published) is
            // for the release engineers who publish it, not for everyone
            // who may read releases.
            if !matches!(staff.role, Role::Admin | Role::ReleaseEngineer)
                && !db::images::in_a_release(&app.db, &digest.to_hex()).await?
            {
                return Err(AppError::forbidden(
                    "unreleased_image",
                    "this image is in no published release yet; only release engineers and \
                     admins may download it",
                ));
            }
        }
        _ => {
            return Err(AppError::bad_request(
                "incomplete_grant",
                "a download grant needs all of sub, exp and sig; use the URL from the update check unchanged",
            ));
        }
    }

    let key = StorageKey::image(digest);
    let len = app.storage.len(key).await?.ok_or_else(|| {
        AppError::not_found(
            "unknown_image",
            format!("no image with sha256 {digest} is stored"),
        )
    })?;
    let etag = format!("\"{digest}\"");

    if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == etag.as_bytes())
    {
        return response(StatusCode::NOT_MODIFIED, &etag, None, Body::empty());
    }

    let plan = plan_range(&headers, len, &etag)?;
    let (status, start, count, content_range) = match plan {
        RangePlan::Full => (StatusCode::OK, 0, len, None),
        RangePlan::Partial { start, end } => (
            StatusCode::PARTIAL_CONTENT,
            start,
            end - start + 1,
            Some(format!("bytes {start}-{end}/{len}")),
        ),
    };
    let body = if method == Method::HEAD {
        Body::empty()
    } else {
        let stream = app.storage.read_range(key, start, count).await?;
        Body::from_stream(stream)
    };
    let mut res = response(status, &etag, content_range.as_deref(), body)?;
    res.headers_mut()
        .insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    Ok(res)
}

fn response(
    status: StatusCode,
    etag: &str,
    content_range: Option<&str>,
    body: Body,
) -> AppResult<Response> {
    let mut builder = Response::builder()
        .status(status)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, etag)
        // Content-addressed: the bytes behind this URL never change. Private,
        // because access is per device grant.
        .header(
            header::CACHE_CONTROL,
            "private, max-age=31536000, immutable",
        );
    if status != StatusCode::NOT_MODIFIED {
        builder = builder.header(header::CONTENT_TYPE, "application/octet-stream");
    }
    if let Some(cr) = content_range {
        builder = builder.header(header::CONTENT_RANGE, cr);
    }
    builder
        .body(body)
        .map_err(|e| AppError::Internal(anyhow::anyhow!("building response: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(range: &[&str], if_range: Option<&str>, len: u64) -> AppResult<RangePlan> {
        let mut h = HeaderMap::new();
        for r in range {
            h.append(header::RANGE, HeaderValue::from_str(r).unwrap());
        }
        if let Some(v) = if_range {
            h.insert(header::IF_RANGE, HeaderValue::from_str(v).unwrap());
        }
        plan_range(&h, len, "\"abc\"")
    }

    fn code(r: AppResult<RangePlan>) -> &'static str {
        r.unwrap_err().code()
    }

    #[test]
    fn single_ranges() {
        assert_eq!(plan(&[], None, 100).unwrap(), RangePlan::Full);
        assert_eq!(
            plan(&["bytes=10-19"], None, 100).unwrap(),
            RangePlan::Partial { start: 10, end: 19 }
        );
        assert_eq!(
            plan(&["bytes=90-"], None, 100).unwrap(),
            RangePlan::Partial { start: 90, end: 99 }
        );
        assert_eq!(
            plan(&["bytes=-10"], None, 100).unwrap(),
            RangePlan::Partial { start: 90, end: 99 }
        );
        // End past the image is clamped; a suffix past it means everything.
        assert_eq!(
            plan(&["bytes=50-1000"], None, 100).unwrap(),
            RangePlan::Partial { start: 50, end: 99 }
        );
        assert_eq!(
            plan(&["bytes=-1000"], None, 100).unwrap(),
            RangePlan::Partial { start: 0, end: 99 }
        );
    }

    #[test]
    fn bad_ranges_are_416_with_codes() {
        assert_eq!(
            code(plan(&["bytes=100-"], None, 100)),
            "range_not_satisfiable"
        );
        assert_eq!(
            code(plan(&["bytes=20-10"], None, 100)),
            "range_not_satisfiable"
        );
        assert_eq!(code(plan(&["items=0-1"], None, 100)), "invalid_range");
        assert_eq!(code(plan(&["bytes=abc"], None, 100)), "invalid_range");
        assert_eq!(
            code(plan(&["bytes=0-1,5-6"], None, 100)),
            "multiple_ranges_unsupported"
        );
        assert_eq!(
            code(plan(&["bytes=0-1", "bytes=5-6"], None, 100)),
            "multiple_range_headers"
        );
        let e = plan(&["bytes=100-"], None, 100).unwrap_err();
        assert_eq!(e.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    }

    #[test]
    fn if_range_needs_the_exact_strong_etag() {
        assert_eq!(
            plan(&["bytes=10-"], Some("\"abc\""), 100).unwrap(),
            RangePlan::Partial { start: 10, end: 99 }
        );
        assert_eq!(
            plan(&["bytes=10-"], Some("W/\"abc\""), 100).unwrap(),
            RangePlan::Full
        );
        assert_eq!(
            plan(&["bytes=10-"], Some("\"old\""), 100).unwrap(),
            RangePlan::Full
        );
        assert_eq!(
            plan(&["bytes=10-"], Some("Sat, 21 Nov 2026 00:00:00 GMT"), 100).unwrap(),
            RangePlan::Full
        );
    }
}
