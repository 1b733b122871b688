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
//! the strong ETag (the sha256), `Accept-Ranges: bytes`, HEAD. A Range in a
//! unit other than `bytes` is ignored (section 14.2). Several ranges in one
//! request are refused with 416 rather than answered with multipart
//! bodies: no device needs them, and refusing keeps the path simple.
//! Bodies stream from storage in bounded chunks.
//!
//! `If-None-Match` (section 13.1.2) is evaluated before the Range, as
//! section 13.2.2 orders preconditions: `*` or any listed tag that weakly
//! matches the ETag answers 304.
//!
//! 200 and 206 answers carry `Content-Disposition: attachment;
//! filename="..."` with the name the releases give the image (see
//! [`download_filename`]), so download managers save, and resume, under
//! one stable name.

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::Response;
use futures_util::StreamExt as _;
use http_range_header::RangeUnsatisfiableError;
use serde::Deserialize;

use crate::app::AppState;
use crate::auth::authenticate;
use crate::config::Delivery;
use crate::db;
use crate::domain::parse_sha256;
use crate::domain::roles::{Role, STAFF};
use crate::error::{AppError, AppResult};
use crate::extract::{Path, Query};
use crate::grants::GrantParams;
use crate::storage::S3Store;
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
/// `len` bytes whose strong ETag is `etag`. A Range in a unit other than
/// `bytes` is ignored (the whole image); a malformed or unsatisfiable
/// byte range is 416.
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
    let Some((unit, set)) = text.split_once('=') else {
        return Err(unsatisfiable(
            "invalid_range",
            format!("cannot parse Range {text:?}; use the form bytes=START-[END]"),
        ));
    };
    // Range units are case-insensitive; one we do not know is ignored and
    // the whole image sent (RFC 9110 section 14.2).
    if !unit.trim().eq_ignore_ascii_case("bytes") {
        return Ok(RangePlan::Full);
    }
    let parsed = http_range_header::parse_range_header(&format!("bytes={set}")).map_err(|e| {
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

/// Whether the request's `If-None-Match` matches an existing image whose
/// strong ETag is `etag`: the field is `*`, or a comma-separated list of
/// entity tags (optional whitespace, empty elements allowed) one of which
/// equals `etag` by weak comparison (`W/"x"` matches `"x"`; RFC 9110
/// sections 8.8.3.2 and 13.1.2). Several field lines count as one list. A
/// malformed field line matches nothing.
pub fn if_none_match(headers: &HeaderMap, etag: &str) -> bool {
    let ours = etag.strip_prefix("W/").unwrap_or(etag);
    headers.get_all(header::IF_NONE_MATCH).iter().any(|value| {
        let text = String::from_utf8_lossy(value.as_bytes());
        match parse_tag_list(&text) {
            Some(TagList::Any) => true,
            Some(TagList::Tags(tags)) => tags.contains(&ours),
            None => false,
        }
    })
}

/// An `If-None-Match` field value.
#[derive(Debug, PartialEq, Eq)]
enum TagList<'a> {
    /// `*`.
    Any,
    /// Opaque tags, quotes kept, `W/` dropped.
    Tags(Vec<&'a str>),
}

fn parse_tag_list(text: &str) -> Option<TagList<'_>> {
    const OWS: [char; 2] = [' ', '\t'];
    let text = text.trim_matches(OWS);
    if text == "*" {
        return Some(TagList::Any);
    }
    let mut tags = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches([' ', '\t', ',']);
        if rest.is_empty() {
            break;
        }
        let tag_and_rest = rest.strip_prefix("W/").unwrap_or(rest);
        let inner = tag_and_rest.strip_prefix('"')?;
        let close = inner.find('"')?;
        if inner[..close].contains(OWS) {
            return None;
        }
        tags.push(&tag_and_rest[..close + 2]);
        rest = tag_and_rest[close + 2..].trim_start_matches(OWS);
        if !(rest.is_empty() || rest.starts_with(',')) {
            return None;
        }
    }
    Some(TagList::Tags(tags))
}

/// The file name a download is saved under: the name the releases give
/// the image when they all agree, made safe ([`safe_filename`]); otherwise
/// (several names, no release yet, nothing usable left) `<sha256>.bin`.
pub fn download_filename(release_name: Option<&str>, sha256: &str) -> String {
    release_name
        .and_then(safe_filename)
        .unwrap_or_else(|| format!("{sha256}.bin"))
}

/// A name reduced to a safe ASCII file name (RFC 6266 section 4.3): letters,
/// digits, `.`, `_`, `-` and `+` kept, anything else (path separators,
/// quotes, spaces, control and non-ASCII characters) made `_`; no leading
/// dot (hidden files, `..`); at most 128 characters. `None` when nothing
/// but separators would be left.
pub fn safe_filename(name: &str) -> Option<String> {
    let cleaned: String = name
        .chars()
        .take(128)
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+') {
                c
            } else {
                '_'
            }
        })
        .collect();
    let cleaned = cleaned.trim_start_matches('.');
    cleaned
        .chars()
        .any(|c| c.is_ascii_alphanumeric())
        .then(|| cleaned.to_string())
}

/// The release name of an image from the catalogue snapshot; the database
/// only for images the snapshot does not know (not published yet, or
/// published on another replica since its last reload). A failed lookup
/// only costs the nice name.
async fn release_name(app: &AppState, digest: &firmup_client::Sha256Digest) -> Option<String> {
    let catalogue = crate::snapshot::current(&app.db, &app.catalogue).await;
    if let Some(known) = catalogue.image_name(digest) {
        return known.map(str::to_owned);
    }
    match db::images::release_names(&app.db, &digest.to_hex()).await {
        Ok(names) if names.len() == 1 => names.into_iter().next(),
        Ok(_) => None,
        Err(e) => {
            tracing::warn!(error = %e, "image name lookup failed; using the digest as file name");
            None
        }
    }
}

/// Downloads an image (or part of it). `HEAD` answers the same headers
/// without a body.
#[utoipa::path(get, path = "/v1/images/{sha256}", tag = "images",
    params(("sha256" = String, Path, description = "sha256 of the image"), GrantQuery,
        ("Range" = Option<String>, Header, description = "one byte range, e.g. bytes=1048576-"),
        ("If-Range" = Option<String>, Header, description = "the ETag from an earlier answer"),
        ("If-None-Match" = Option<String>, Header, description = "`*` or a list of ETags; a match answers 304")),
    responses(
        (status = 200, description = "the whole image (Content-Disposition names the file)", content_type = "application/octet-stream"),
        (status = 206, description = "the requested range (Content-Disposition names the file)", content_type = "application/octet-stream"),
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
    // The length from the database: its row is written only once the
    // object is stored whole, and reading it costs the store nothing.
    let len = db::images::length(&app.db, &digest.to_hex())
        .await?
        .ok_or_else(|| {
            AppError::not_found(
                "unknown_image",
                format!("no image with sha256 {digest} is stored"),
            )
        })?;
    let etag = format!("\"{digest}\"");

    // Preconditions before the Range (RFC 9110 section 13.2.2).
    if if_none_match(&headers, &etag) {
        return response(StatusCode::NOT_MODIFIED, &etag, None, Body::empty());
    }
    if app.config.download_delivery == Delivery::Redirect
        && let Some(store) = app.storage.s3_store()
    {
        crate::metrics::download_redirected();
        return redirect(store, key, app.config.presigned_url_ttl_secs).await;
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
        // Active while the body streams; bytes counted as they leave.
        let active = crate::metrics::ActiveDownload::start();
        Body::from_stream(stream.map(move |chunk| {
            let _active = &active;
            if let Ok(c) = &chunk {
                crate::metrics::bytes_served(c.len() as u64);
            }
            chunk
        }))
    };
    let filename = download_filename(
        release_name(&app, &digest).await.as_deref(),
        &digest.to_hex(),
    );
    let mut res = response(status, &etag, content_range.as_deref(), body)?;
    let headers = res.headers_mut();
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    // `filename` holds only letters, digits and `._-+`: no quoting needed.
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{filename}\"")) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(res)
}

/// 307 to a presigned URL of the object: the grant (or staff token) was
/// checked, and the store (or a CDN in front of it) carries the bytes.
/// 307 keeps the method, so a `HEAD` stays a `HEAD`; the device re-sends
/// its `Range` to the new origin, which honours it. Not cacheable: the URL
/// expires.
async fn redirect(store: &S3Store, key: StorageKey, ttl_secs: u64) -> AppResult<Response> {
    let url = store
        .presigned_get(key, std::time::Duration::from_secs(ttl_secs))
        .await?;
    let location = HeaderValue::from_str(&url).map_err(|e| {
        AppError::Internal(anyhow::anyhow!("presigned URL is no header value: {e}"))
    })?;
    Response::builder()
        .status(StatusCode::TEMPORARY_REDIRECT)
        .header(header::LOCATION, location)
        .header(header::CACHE_CONTROL, "no-store")
        .body(Body::empty())
        .map_err(|e| AppError::Internal(e.into()))
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
        assert_eq!(code(plan(&["bytes"], None, 100)), "invalid_range");
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
    fn ranges_in_other_units_are_ignored() {
        for range in ["items=0-1", "rows=0-", "none=x"] {
            assert_eq!(
                plan(&[range], None, 100).unwrap(),
                RangePlan::Full,
                "{range}"
            );
        }
        // The unit's name is case-insensitive.
        assert_eq!(
            plan(&["Bytes=10-19"], None, 100).unwrap(),
            RangePlan::Partial { start: 10, end: 19 }
        );
    }

    fn inm(values: &[&str]) -> bool {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(header::IF_NONE_MATCH, HeaderValue::from_str(v).unwrap());
        }
        if_none_match(&h, "\"abc\"")
    }

    #[test]
    fn if_none_match_lists_weak_tags_and_star() {
        assert!(!inm(&[]));
        assert!(inm(&["\"abc\""]));
        assert!(inm(&["W/\"abc\""]));
        assert!(inm(&["*"]));
        assert!(inm(&[" * "]));
        assert!(inm(&["\"x\", \"abc\""]));
        assert!(inm(&["\"x\",W/\"abc\" ,\"y\""]));
        assert!(inm(&["\"x\",\t \"abc\""]));
        assert!(inm(&[", ,\"abc\","]));
        assert!(inm(&["\"x\"", "\"abc\""]), "two field lines are one list");
        assert!(inm(&["\"a,b\", \"abc\""]), "a comma inside a tag");
        assert!(!inm(&["\"x\", \"y\""]));
        assert!(!inm(&["\"ab\""]));
        assert!(!inm(&["abc"]), "unquoted");
        assert!(!inm(&["w/\"abc\""]), "W/ is case-sensitive");
        assert!(!inm(&["\"x\", *"]), "* is only valid alone");
        assert!(!inm(&["\"abc"]), "unterminated");
        assert!(!inm(&["\"abc\"junk"]));
    }

    #[test]
    fn download_file_names_are_safe() {
        let sha = "ab".repeat(32);
        assert_eq!(
            download_filename(Some("firmware.img"), &sha),
            "firmware.img"
        );
        assert_eq!(
            download_filename(Some("fw-1.2+b3_x.bin"), &sha),
            "fw-1.2+b3_x.bin"
        );
        assert_eq!(download_filename(None, &sha), format!("{sha}.bin"));
        assert_eq!(
            safe_filename("../etc/passwd").as_deref(),
            Some("_etc_passwd")
        );
        assert_eq!(safe_filename(".hidden").as_deref(), Some("hidden"));
        assert_eq!(safe_filename("a \"b\";\r\nx").as_deref(), Some("a__b____x"));
        assert_eq!(
            safe_filename("fïrmware.img").as_deref(),
            Some("f_rmware.img")
        );
        assert_eq!(safe_filename(&"a".repeat(300)).map(|s| s.len()), Some(128));
        for nothing in ["", "..", "...", "/", "__", "\u{202e}"] {
            assert_eq!(safe_filename(nothing), None, "{nothing:?}");
            assert_eq!(download_filename(Some(nothing), &sha), format!("{sha}.bin"));
        }
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
