//! How the device reaches the server, a mirror or an offline bundle.
//!
//! [`Transport`] is the small seam between the device logic (the resumable
//! downloader in [`crate::download`], the update session) and the bytes'
//! source. Two implementations ship:
//!
//! - `HttpTransport` (cargo feature `http`): blocking HTTP/1.1 over
//!   `ureq` with rustls, for the server and mirrors;
//! - [`FileTransport`]: a directory, for USB and offline bundles. It answers
//!   range requests the way a range-capable HTTP server would, so the
//!   downloader has one code path.
//!
//! A transport moves bytes; it never decides whether they are trustworthy.
//! Every source, including the configured server, is untrusted transport:
//! images are judged only by their signed length and sha256
//! ([`crate::image`]), manifests only by the verification engine. So a
//! transport must never verify, cache, decompress or otherwise transform a
//! body, and must never put a bearer token or a download grant into an
//! error message or a log line ([`redact_url`]).
//!
//! The pure helpers here (`Content-Range`, `Retry-After`, the server's error
//! code) are shared by every implementation and unit-tested.

use std::io::Read;
use std::time::Duration;

use time::OffsetDateTime;

use crate::error::{Error, Result};

mod file;
#[cfg(feature = "http")]
mod http;

pub use file::FileTransport;
#[cfg(all(test, feature = "http"))]
pub(crate) use http::test_server;
#[cfg(feature = "http")]
pub use http::{HttpConfig, HttpTransport};

/// Largest error body read to find the server's error code. Error answers
/// are small JSON envelopes; anything longer is not read further.
pub const MAX_ERROR_BODY_BYTES: u64 = 4 * 1024;

/// Where bytes come from: an HTTP server, a mirror, or a bundle directory.
///
/// `url` is what the server's update-check answer names (for example
/// `/v1/images/<sha256>?sub=...&exp=...&sig=...`): implementations resolve
/// it against their base (a base URL, a directory).
///
/// Implementations answer with the status the source gave, including error
/// statuses: deciding what a status means (resume, restart, retry, give up)
/// is the caller's job. They return `Err` only when no answer was had at all
/// (connection refused, timeout, unreadable file) or the request could not
/// be made (bad URL, a policy refusal such as a redirect to another host).
pub trait Transport: Send + Sync {
    /// Requests the bytes of `url` from offset `from` to the end
    /// (`Range: bytes=<from>-`). With `if_range`, the range is only to be
    /// honoured for that exact strong ETag (`If-Range`); a source whose
    /// representation differs answers 200 with the whole body.
    ///
    /// The body is streamed: nothing is buffered beyond the transport's own
    /// I/O buffer, and nothing limits its length. The caller caps it.
    fn get_range(&self, url: &str, from: u64, if_range: Option<&str>) -> Result<RangeReply>;

    /// [`Transport::get_range`], also saying which origin answered when a
    /// redirect led away from the origin of `url` (to an allowed download
    /// origin: an object store or CDN serving a presigned URL). The
    /// downloader uses it to tell "the server refused the grant" from "the
    /// store refused its presigned URL".
    ///
    /// The default answers with [`Transport::get_range`] and no foreign
    /// origin, which is right for every transport that never follows a
    /// redirect to another origin.
    fn get_range_routed(
        &self,
        url: &str,
        from: u64,
        if_range: Option<&str>,
    ) -> Result<RoutedRangeReply> {
        Ok(RoutedRangeReply {
            reply: self.get_range(url, from, if_range)?,
            foreign_origin: None,
        })
    }

    /// GETs a small document (a JSON answer, a root chain, a bundle's
    /// manifest), reading at most `max_response` bytes of body: a longer
    /// body is [`Error::TooLarge`], whatever the status.
    fn get_json(&self, url: &str, bearer: Option<&str>, max_response: u64) -> Result<JsonReply>;

    /// POSTs a JSON `body` and reads at most `max_response` bytes of the
    /// answer: a longer body is [`Error::TooLarge`], whatever the status.
    /// A `bearer` token is sent as `Authorization: Bearer ...`.
    fn post_json(
        &self,
        url: &str,
        bearer: Option<&str>,
        body: &[u8],
        max_response: u64,
    ) -> Result<JsonReply>;
}

/// The answer to [`Transport::get_range`]: status, the headers resuming
/// needs, and the body as a stream.
pub struct RangeReply {
    /// HTTP status (a [`FileTransport`] answers 200, 206, 404 or 416).
    pub status: u16,
    /// The `Content-Range` header as sent, if any. Parse it with
    /// [`ContentRange::parse`]; a header that does not parse is kept here so
    /// that an error can show it.
    pub content_range: Option<String>,
    /// The `Content-Length` header, if present and a number.
    pub content_length: Option<u64>,
    /// The `ETag` header, if any.
    pub etag: Option<String>,
    /// How long the source asked to wait before the next request
    /// (`Retry-After`, already converted to a delay).
    pub retry_after: Option<Duration>,
    /// The body, unbounded: the caller must cap what it reads.
    pub body: Box<dyn Read + Send>,
}

impl RangeReply {
    /// The parsed `Content-Range`, if there is one and it parses.
    pub fn parsed_content_range(&self) -> Option<ContentRange> {
        self.content_range.as_deref().and_then(ContentRange::parse)
    }
}

impl std::fmt::Debug for RangeReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RangeReply")
            .field("status", &self.status)
            .field("content_range", &self.content_range)
            .field("content_length", &self.content_length)
            .field("etag", &self.etag)
            .field("retry_after", &self.retry_after)
            .finish_non_exhaustive()
    }
}

/// The answer to [`Transport::get_range_routed`]: the answer, and which
/// origin gave it when that is not the origin of the URL asked for.
#[derive(Debug)]
pub struct RoutedRangeReply {
    /// The answer, whoever gave it.
    pub reply: RangeReply,
    /// The origin (`scheme://host[:port]`) that gave `reply` after a
    /// redirect to another origin than the URL's; `None` when the URL's own
    /// origin answered.
    pub foreign_origin: Option<String>,
}

/// The answer to [`Transport::get_json`] or [`Transport::post_json`]: a
/// status and a body that is already size-capped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JsonReply {
    /// HTTP status.
    pub status: u16,
    /// `Retry-After`, converted to a delay.
    pub retry_after: Option<Duration>,
    /// The body, at most the `max_response` the caller asked for.
    pub body: Vec<u8>,
}

impl JsonReply {
    /// The server's stable error code from a JSON error envelope
    /// (`{"error":{"code":"..."}}`), if the body is one.
    pub fn error_code(&self) -> Option<String> {
        error_code_from_json(&self.body)
    }
}

/// A parsed `Content-Range` header (RFC 9110 section 14.4), bytes only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentRange {
    /// `bytes START-END/TOTAL` or `bytes START-END/*`: the body holds bytes
    /// `start..=end` of a representation of `total` bytes (if known).
    Bytes {
        /// First byte position of the body.
        start: u64,
        /// Last byte position of the body (inclusive).
        end: u64,
        /// Complete length, when the source knows it.
        total: Option<u64>,
    },
    /// `bytes */TOTAL`, sent with a 416: the range asked for is not
    /// satisfiable; the representation has `total` bytes.
    Unsatisfied {
        /// Complete length.
        total: u64,
    },
}

impl ContentRange {
    /// Parses a header value strictly: the unit must be `bytes`, numbers
    /// plain decimal digits, `start <= end < total`. Anything else is `None`,
    /// which a caller treats as "the start cannot be trusted".
    pub fn parse(value: &str) -> Option<ContentRange> {
        let value = value.trim();
        let (unit, rest) = value.split_once(' ')?;
        if !unit.eq_ignore_ascii_case("bytes") {
            return None;
        }
        let (range, total) = rest.trim_start().split_once('/')?;
        if range == "*" {
            return Some(ContentRange::Unsatisfied {
                total: parse_digits(total)?,
            });
        }
        let (start, end) = range.split_once('-')?;
        let (start, end) = (parse_digits(start)?, parse_digits(end)?);
        let total = match total {
            "*" => None,
            t => Some(parse_digits(t)?),
        };
        if start > end || total.is_some_and(|t| end >= t) {
            return None;
        }
        Some(ContentRange::Bytes { start, end, total })
    }
}

/// Decimal digits only (no sign, no spaces, no empty string), without
/// overflow.
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

/// Parses `Retry-After` (RFC 9110 section 10.2.3): delay-seconds, or an
/// HTTP date (IMF-fixdate) converted to a delay from `now`. A date in the
/// past means "now" (zero). Anything else is `None` (ignored, the caller's
/// own backoff applies). No cap is applied here; callers decide how long
/// they are willing to wait.
pub fn parse_retry_after(value: &str, now: OffsetDateTime) -> Option<Duration> {
    let value = value.trim();
    if let Some(secs) = parse_digits(value) {
        return Some(Duration::from_secs(secs));
    }
    let format = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    let at = time::PrimitiveDateTime::parse(value, &format)
        .ok()?
        .assume_utc();
    let delta = at - now;
    if delta.is_negative() {
        return Some(Duration::ZERO);
    }
    Duration::try_from(delta).ok()
}

/// Extracts `error.code` from a JSON error envelope, if it is a plausible
/// stable code (snake_case, at most 64 characters). Anything else is
/// `None`, so a hostile body cannot smuggle text into logs as a "code".
pub fn error_code_from_json(body: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(body).ok()?;
    let code = v.get("error")?.get("code")?.as_str()?;
    let plausible = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    plausible.then(|| code.to_owned())
}

/// Reads at most [`MAX_ERROR_BODY_BYTES`] of an error answer's body and
/// returns the server's error code, if any. Read errors are ignored: the
/// status alone already says what happened.
pub fn error_code_from_body(body: &mut dyn Read) -> Option<String> {
    let mut buf = Vec::new();
    body.take(MAX_ERROR_BODY_BYTES).read_to_end(&mut buf).ok()?;
    error_code_from_json(&buf)
}

/// Reads at most [`MAX_ERROR_BODY_BYTES`] of an object store's or CDN's
/// error answer and returns its error code: the `<Code>` of an S3-style XML
/// error (`AccessDenied`, `SignatureDoesNotMatch`, ...), or `error.code` of
/// a JSON envelope. Only a plausible code (1 to 64 ASCII letters, digits,
/// `_`, `-` or `.`) is returned, so a hostile body cannot smuggle text into
/// logs.
pub(crate) fn store_error_code_from_body(body: &mut dyn Read) -> Option<String> {
    let mut buf = Vec::new();
    body.take(MAX_ERROR_BODY_BYTES).read_to_end(&mut buf).ok()?;
    if let Some(code) = error_code_from_json(&buf) {
        return Some(code);
    }
    let text = std::str::from_utf8(&buf).ok()?;
    let (_, rest) = text.split_once("<Code>")?;
    let (code, _) = rest.split_once("</Code>")?;
    let code = code.trim();
    let plausible = !code.is_empty()
        && code.len() <= 64
        && code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    plausible.then(|| code.to_owned())
}

/// Reads a whole body, refusing one longer than `max` bytes (reading at
/// most one byte past it).
pub(crate) fn read_capped(body: &mut dyn Read, max: u64, what: &'static str) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    body.take(max.saturating_add(1))
        .read_to_end(&mut buf)
        .map_err(|e| Error::io(format!("reading {what}"), e))?;
    if buf.len() as u64 > max {
        return Err(Error::TooLarge {
            what,
            limit: max,
            actual: buf.len() as u64,
        });
    }
    Ok(buf)
}

/// A URL as it may appear in an error message or a log line: the query
/// (download grants: `sub`, `exp`, `sig`) is replaced by `?<redacted>`.
pub fn redact_url(url: &str) -> String {
    match url.split_once('?') {
        Some((path, _)) => format!("{path}?<redacted>"),
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses_strictly() {
        assert_eq!(
            ContentRange::parse("bytes 100-199/1000"),
            Some(ContentRange::Bytes {
                start: 100,
                end: 199,
                total: Some(1000)
            })
        );
        assert_eq!(
            ContentRange::parse("Bytes 0-0/*"),
            Some(ContentRange::Bytes {
                start: 0,
                end: 0,
                total: None
            })
        );
        assert_eq!(
            ContentRange::parse("bytes */1000"),
            Some(ContentRange::Unsatisfied { total: 1000 })
        );
        for bad in [
            "",
            "bytes",
            "bytes 100-199",
            "items 0-1/2",
            "bytes 200-100/1000",
            "bytes 0-1000/1000",
            "bytes -1-5/10",
            "bytes +1-5/10",
            "bytes 1 -5/10",
            "bytes 0-18446744073709551616/*",
            "bytes */*",
            "bytes 0x1-5/10",
        ] {
            assert_eq!(ContentRange::parse(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = time::macros::datetime!(2026-03-01 12:00:00 UTC);
        assert_eq!(
            parse_retry_after("120", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("Sun, 01 Mar 2026 12:01:30 GMT", now),
            Some(Duration::from_secs(90))
        );
        assert_eq!(
            parse_retry_after("Sun, 01 Mar 2026 11:00:00 GMT", now),
            Some(Duration::ZERO)
        );
        for bad in ["-5", "1.5", "soon", "", "Sun, 01 Mar 2026 12:01:30 CET"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn error_codes_must_look_like_codes() {
        let ok = br#"{"error":{"code":"grant_expired","message":"check again"}}"#;
        assert_eq!(error_code_from_json(ok).as_deref(), Some("grant_expired"));
        assert_eq!(
            error_code_from_body(&mut &ok[..]).as_deref(),
            Some("grant_expired")
        );
        assert_eq!(
            error_code_from_json(br#"{"error":{"code":"Bad Code"}}"#),
            None
        );
        assert_eq!(error_code_from_json(b"<html>oops</html>"), None);
        let long = format!(r#"{{"error":{{"code":"{}"}}}}"#, "a".repeat(65));
        assert_eq!(error_code_from_json(long.as_bytes()), None);
    }

    #[test]
    fn store_error_codes_come_from_s3_xml_or_json_and_must_look_like_codes() {
        let s3 = br#"<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>"#;
        assert_eq!(
            store_error_code_from_body(&mut &s3[..]).as_deref(),
            Some("AccessDenied")
        );
        let json = br#"{"error":{"code":"grant_expired"}}"#;
        assert_eq!(
            store_error_code_from_body(&mut &json[..]).as_deref(),
            Some("grant_expired")
        );
        for bad in [
            &b"<Error><Code>Access Denied; rm -rf</Code></Error>"[..],
            b"<Error><Code></Code></Error>",
            b"<Error><Code>AccessDenied",
            b"Forbidden",
        ] {
            assert_eq!(store_error_code_from_body(&mut &bad[..]), None);
        }
    }

    #[test]
    fn capped_reads_refuse_one_byte_more() {
        assert_eq!(read_capped(&mut &b"abc"[..], 3, "answer").unwrap(), b"abc");
        let err = read_capped(&mut std::io::repeat(b'x'), 3, "answer").unwrap_err();
        assert_eq!(err.code(), "too_large");
    }

    #[test]
    fn urls_lose_their_query_in_messages() {
        assert_eq!(
            redact_url("/v1/images/ab?sub=SN-1&exp=1&sig=secret"),
            "/v1/images/ab?<redacted>"
        );
        assert_eq!(redact_url("/v1/images/ab"), "/v1/images/ab");
    }
}
