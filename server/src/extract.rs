//! Request extractors that answer bad input with the API's error envelope.
//!
//! axum's own `Json`, `Path` and `Query` reject malformed input with plain
//! text; every client of this API instead gets `{"error": {"code",
//! "message"}}` with a stable code, whatever the handler. Handlers import
//! these instead of axum's.
//!
//! The messages name the field that is wrong and what was expected in
//! plain words ("expected a whole number, found the string \"lots\""),
//! never the server's Rust types: serde's own texts ("expected struct
//! CheckRequest", "expected u64") are rewritten by [`plain_message`].
//!
//! The headers more than one layer reads are parsed here too: the bearer
//! token ([`bearer_token`]) and the request id ([`REQUEST_ID`]).

use axum::body::Bytes;
use axum::extract::rejection::PathRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderMap, StatusCode, header};
use serde::de::DeserializeOwned;

use crate::error::{AppError, AppResult};

/// The most characters of a client's value echoed back in a message.
const ECHO_CHARS: usize = 64;

/// The request id header: taken from the client if it sent one of sane
/// length, otherwise made by the router, and echoed in the answer.
pub const REQUEST_ID: &str = "x-request-id";

/// The token in `Authorization: Bearer <token>`: the scheme is matched
/// case-insensitively (RFC 9110 section 11.1); a request with two
/// Authorization headers is refused, since the two could be judged
/// differently by a proxy and by this server.
pub fn bearer_token(headers: &HeaderMap) -> AppResult<Option<&str>> {
    let mut values = headers.get_all(axum::http::header::AUTHORIZATION).iter();
    let Some(header) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(AppError::bad_request(
            "multiple_authorization_headers",
            "send exactly one Authorization header",
        ));
    }
    let malformed = || {
        AppError::unauthorized(
            "malformed_authorization",
            "the Authorization header must be `Bearer <token>`",
        )
    };
    let value = header.to_str().map_err(|_| malformed())?;
    let (scheme, token) = value.split_once(' ').ok_or_else(malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() {
        return Err(malformed());
    }
    Ok(Some(token))
}

/// A JSON request body. Rejections become:
/// - 400 `invalid_json`: not JSON, or JSON of the wrong shape (the message
///   names the field and what was expected);
/// - 415 `unsupported_media_type`: no `Content-Type: application/json`
///   (or `application/*+json`);
/// - 413 `body_too_large`: over the route's body limit;
/// - 400 `unreadable_body`: the body broke off before its end.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonBody<T>(pub T);

impl<T, S> FromRequest<S> for JsonBody<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppError> {
        check_json_content_type(req.headers())?;
        let bytes = Bytes::from_request(req, state).await.map_err(|e| {
            if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
                AppError::PayloadTooLarge {
                    code: "body_too_large",
                    message: "the request body is larger than this endpoint accepts; split it \
                              into several requests"
                        .into(),
                }
            } else {
                AppError::bad_request(
                    "unreadable_body",
                    "the request body could not be read to its end; send it again",
                )
            }
        })?;
        // Every request body of the API is an object. serde also reads a
        // struct from an array of its fields in order, so `[]` would pass
        // as a body whose fields are all optional: refuse it here.
        if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
            return Err(AppError::bad_request(
                "invalid_json",
                "the body must be a JSON object (`{...}`); see docs/API.md for its fields",
            ));
        }
        parse_json(&bytes).map(JsonBody)
    }
}

/// Fails with 415 unless `Content-Type` is `application/json` or an
/// `application/*+json` type (parameters such as `charset` are allowed).
fn check_json_content_type(headers: &HeaderMap) -> Result<(), AppError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(AppError::UnsupportedMediaType {
            code: "unsupported_media_type",
            message: "this endpoint takes a JSON body; send it with \
                      `Content-Type: application/json`"
                .into(),
        });
    };
    let text = String::from_utf8_lossy(value.as_bytes());
    let essence = text.split(';').next().unwrap_or_default().trim();
    let is_json = essence.split_once('/').is_some_and(|(kind, sub)| {
        let sub = sub.to_ascii_lowercase();
        kind.eq_ignore_ascii_case("application") && (sub == "json" || sub.ends_with("+json"))
    });
    if is_json {
        return Ok(());
    }
    Err(AppError::UnsupportedMediaType {
        code: "unsupported_media_type",
        message: format!(
            "this endpoint takes a JSON body, not {}; send it with \
             `Content-Type: application/json`",
            echo(essence)
        ),
    })
}

/// Parses a whole body as one JSON value of type `T`.
fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, AppError> {
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        // serde_json reports a value of the wrong kind for an enum (a
        // number where a name belongs) as a syntax error; if the body is
        // valid JSON, it is its shape that is wrong.
        if inner.is_syntax() && serde_json::from_slice::<serde::de::IgnoredAny>(bytes).is_ok() {
            return AppError::bad_request(
                "invalid_json",
                format!(
                    "the JSON body has the wrong shape at `{path}`: expected a value of another \
                     kind (line {}, column {})",
                    inner.line(),
                    inner.column()
                ),
            );
        }
        json_error(&path, &inner)
    })?;
    de.end().map_err(|e| json_error(".", &e))?;
    Ok(value)
}

/// The 400 `invalid_json` for a serde_json error at `path` ("." for the
/// whole body).
fn json_error(path: &str, e: &serde_json::Error) -> AppError {
    let full = e.to_string();
    let location = format!(" at line {} column {}", e.line(), e.column());
    let bare = full.strip_suffix(&location).unwrap_or(&full);
    let at = if e.line() > 0 {
        format!(" (line {}, column {})", e.line(), e.column())
    } else {
        String::new()
    };
    let message = match e.classify() {
        serde_json::error::Category::Data => match path {
            "." | "" => format!(
                "the JSON body has the wrong shape: {}{at}",
                plain_message(bare)
            ),
            path => format!(
                "the JSON body has the wrong shape at `{path}`: {}{at}",
                plain_message(bare)
            ),
        },
        _ => format!("the body is not valid JSON: {}{at}", plain_message(bare)),
    };
    AppError::bad_request("invalid_json", message)
}

/// The client's address (the TCP peer), when the connection layer recorded
/// one; in-process callers have none.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peer(pub Option<std::net::IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for Peer {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        Ok(Peer(
            parts
                .extensions
                .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
                .map(|c| c.0.ip()),
        ))
    }
}

/// Path parameters; a malformed one is 400 `invalid_path` in the envelope.
#[derive(Debug, Clone, Copy, Default)]
pub struct Path<T>(pub T);

impl<T, S> FromRequestParts<S> for Path<T>
where
    T: DeserializeOwned + Send,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, AppError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(v)) => Ok(Path(v)),
            Err(e) => Err(path_rejection(e)),
        }
    }
}

/// A path rejection in plain words. A route whose parameters do not fit
/// its handler's type is our bug (500), not the client's.
fn path_rejection(e: PathRejection) -> AppError {
    use axum::extract::path::ErrorKind;
    let kind = match e {
        PathRejection::FailedToDeserializePathParams(e) => e.into_kind(),
        other => {
            return AppError::Internal(anyhow::anyhow!("path extraction: {}", other.body_text()));
        }
    };
    let message = match kind {
        ErrorKind::ParseErrorAtKey {
            key,
            value,
            expected_type,
        } => format!(
            "the path parameter `{key}` is {}; expected {}",
            echo(&value),
            plain_expected(expected_type)
        ),
        ErrorKind::ParseError {
            value,
            expected_type,
        } => format!(
            "the path parameter {} is not valid; expected {}",
            echo(&value),
            plain_expected(expected_type)
        ),
        ErrorKind::ParseErrorAtIndex {
            index,
            value,
            expected_type,
        } => format!(
            "path parameter {} is {}; expected {}",
            index + 1,
            echo(&value),
            plain_expected(expected_type)
        ),
        ErrorKind::DeserializeError {
            key,
            value,
            message,
        } => format!(
            "the path parameter `{key}` is {}: {}",
            echo(&value),
            plain_message(&message)
        ),
        ErrorKind::InvalidUtf8InPathParam { key } => {
            format!("the path parameter `{key}` is not valid UTF-8 once percent-decoded")
        }
        ErrorKind::Message(m) => format!("a path parameter is not valid: {}", plain_message(&m)),
        other => {
            return AppError::Internal(anyhow::anyhow!("path extraction: {other}"));
        }
    };
    AppError::bad_request("invalid_path", message)
}

/// Query parameters; a malformed one is 400 `invalid_query` in the envelope.
#[derive(Debug, Clone, Copy, Default)]
pub struct Query<T>(pub T);

impl<T, S> FromRequestParts<S> for Query<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, AppError> {
        parse_query(parts.uri.query().unwrap_or_default()).map(Query)
    }
}

/// Parses a query string (without the `?`) into `T`.
fn parse_query<T: DeserializeOwned>(query: &str) -> Result<T, AppError> {
    let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let message = plain_message(&e.into_inner().to_string());
        let message = match path.as_str() {
            "." | "" => format!("the query string is not valid: {message}"),
            path => format!("the query parameter `{path}` is not valid: {message}"),
        };
        AppError::bad_request("invalid_query", message)
    })
}

/// A client's value, quoted and cut to [`ECHO_CHARS`] characters.
fn echo(value: &str) -> String {
    let mut cut: String = value.chars().take(ECHO_CHARS).collect();
    if cut.len() < value.len() {
        cut.push_str("...");
    }
    format!("{cut:?}")
}

/// Rewrites a serde (or integer/bool parse) error message into plain words
/// that name no Rust type: "invalid type: string \"x\", expected u64"
/// becomes "expected a whole number (0 or more), found the string \"x\"".
/// Messages that are already plain (`missing field `serial``, our own
/// validation texts) pass unchanged; one that still looks like a type
/// description is replaced by a generic sentence.
pub fn plain_message(message: &str) -> String {
    let translated = translate(message);
    if looks_technical(&translated) {
        "the value has the wrong form for this field".to_string()
    } else {
        translated
    }
}

fn translate(message: &str) -> String {
    for prefix in ["invalid type: ", "invalid value: "] {
        if let Some(rest) = message.strip_prefix(prefix)
            && let Some((found, expected)) = rest.rsplit_once(", expected ")
        {
            return format!(
                "expected {}, found {}",
                plain_expected(expected),
                plain_unexpected(found)
            );
        }
    }
    if let Some(rest) = message.strip_prefix("invalid length ")
        && let Some((len, expected)) = rest.split_once(", expected ")
    {
        let found = match len {
            "1" => "a list of 1 value".to_string(),
            n => format!("a list of {n} values"),
        };
        return format!("expected {}, found {found}", plain_expected(expected));
    }
    if let Some(rest) = message.strip_prefix("unknown variant ") {
        return format!("unknown value {rest}");
    }
    // `time`'s parse errors ("the 'year' component could not be parsed").
    if message.starts_with("the '") && message.contains("' component ") {
        return format!("expected a date and time such as 2026-01-31T12:00:00Z; {message}");
    }
    match message {
        "invalid digit found in string" => "expected a whole number".into(),
        "cannot parse integer from empty string" => "expected a whole number, found nothing".into(),
        "number too large to fit in target type" => "the number is too large".into(),
        "number too small to fit in target type" => "the number is too small".into(),
        "provided string was not `true` or `false`" => "expected true or false".into(),
        "invalid float literal" => "expected a number".into(),
        other => other.to_string(),
    }
}

/// What serde says it expected (a visitor's `expecting`, or a type name
/// such as axum's path errors give), in plain words.
fn plain_expected(expected: &str) -> String {
    let expected = expected.trim();
    let plain = match expected.rsplit("::").next().unwrap_or(expected) {
        "u8" | "u16" | "u32" | "u64" | "u128" | "usize" => "a whole number (0 or more)",
        "i8" | "i16" | "i32" | "i64" | "i128" | "isize" => "a whole number",
        "f32" | "f64" => "a number",
        "bool" | "a boolean" => "true or false",
        "char" | "a character" => "a single character",
        "String" | "str" | "&str" | "a string" | "a borrowed string" | "path string" => "a string",
        "a sequence" => "a list",
        "a map" => "an object",
        "option" => "a value or null",
        "unit" => "null",
        "variant identifier" => "one of the allowed values",
        "field identifier" => "a field name",
        "semver version" => "a version such as 1.2.3",
        "any valid JSON value" => "a JSON value",
        _ => "",
    };
    if !plain.is_empty() {
        return plain.to_string();
    }
    if let Some(rest) = expected.strip_prefix("a nonzero ")
        && rest.starts_with('u')
    {
        return "a whole number (1 or more)".into();
    }
    if let Some(n) = expected.strip_prefix("a tuple of size ") {
        return format!("a list of {n} values");
    }
    if expected.starts_with("struct ") || expected.starts_with("struct variant ") {
        return "an object".into();
    }
    if expected.starts_with("tuple struct ") || expected.starts_with("tuple variant ") {
        return "a list".into();
    }
    if expected.starts_with("unit struct ") {
        return "null".into();
    }
    if expected.starts_with("enum ") {
        return "one of the allowed values".into();
    }
    if expected.contains("RFC3339") {
        return "a date and time such as 2026-01-31T12:00:00Z".into();
    }
    if looks_technical(expected) {
        "a value of another kind".into()
    } else {
        expected.to_string()
    }
}

/// What serde says it found (`serde::de::Unexpected` as text), in plain
/// words; the client's own values are quoted, cut to [`ECHO_CHARS`].
fn plain_unexpected(found: &str) -> String {
    let ticked = |prefix: &str| {
        found
            .strip_prefix(prefix)
            .and_then(|r| r.strip_prefix('`'))
            .and_then(|r| r.strip_suffix('`'))
            .map(str::to_owned)
    };
    if let Some(b) = ticked("boolean ") {
        return b;
    }
    if let Some(n) = ticked("integer ").or_else(|| ticked("floating point ")) {
        return format!("the number {n}");
    }
    if let Some(c) = ticked("character ") {
        return format!("the character {c:?}");
    }
    if let Some(s) = found.strip_prefix("string ") {
        let inner = s
            .strip_prefix('"')
            .and_then(|r| r.strip_suffix('"'))
            .unwrap_or(s);
        let cut: String = inner.chars().take(ECHO_CHARS).collect();
        let dots = if cut.len() < inner.len() { "..." } else { "" };
        return format!("the string \"{cut}{dots}\"");
    }
    match found {
        "null" | "unit value" => "null".into(),
        "Option value" => "a value".into(),
        "sequence" => "a list".into(),
        "map" => "an object".into(),
        "byte array" => "bytes".into(),
        other if looks_technical(other) => "a value of another kind".into(),
        "newtype struct" | "unit variant" | "enum" | "newtype variant" | "tuple variant"
        | "struct variant" => "a value of another kind".into(),
        other => other.to_string(),
    }
}

/// Whether `text` reads like a Rust type description: a path (`::`), a
/// generic (`<`), `struct `/`enum `, a primitive's name, a standard
/// container's name or a CamelCase identifier.
fn looks_technical(text: &str) -> bool {
    const WORDS: &[&str] = &[
        "u8", "u16", "u32", "u64", "u128", "usize", "i8", "i16", "i32", "i64", "i128", "isize",
        "f32", "f64", "Option", "Vec", "String", "Box", "Arc", "HashMap", "BTreeMap", "HashSet",
        "BTreeSet", "struct", "enum",
    ];
    if text.contains("::") || text.contains('<') {
        return true;
    }
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .any(|w| WORDS.contains(&w) || is_camel_case(w))
}

/// `CheckRequest`, `OffsetDateTime`: an upper-case start, a lower-case
/// letter and a later upper-case letter.
fn is_camel_case(word: &str) -> bool {
    let mut chars = word.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && word.chars().any(|c| c.is_ascii_lowercase())
        && word.chars().skip(1).any(|c| c.is_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    /// Words that must never reach a client.
    const FORBIDDEN: &[&str] = &[
        "struct ", "u64", "i64", "u32", "usize", "Option<", "Vec<", "enum ", "::",
    ];

    fn assert_plain(message: &str) {
        for word in FORBIDDEN {
            assert!(!message.contains(word), "{word:?} in {message:?}");
        }
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        count: u64,
        #[serde(default)]
        tags: Vec<String>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Kind {
        Hardware,
        Software,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Outer {
        name: String,
        inner: Inner,
        kind: Option<Kind>,
        offset: Option<i64>,
        list: Option<Vec<u32>>,
        pair: Option<(u8, u8)>,
        flag: Option<bool>,
    }

    fn json_message(body: &str) -> String {
        match parse_json::<Outer>(body.as_bytes()) {
            Ok(v) => panic!("{body} parsed: {v:?}"),
            Err(e) => {
                assert_eq!(e.code(), "invalid_json", "{body}");
                e.to_string()
            }
        }
    }

    #[test]
    fn serde_texts_become_plain_words() {
        let cases: &[(&str, &str)] = &[
            (
                "invalid type: string \"x\", expected u64",
                "expected a whole number (0 or more), found the string \"x\"",
            ),
            (
                "invalid type: sequence, expected struct CheckRequest",
                "expected an object, found a list",
            ),
            (
                "invalid type: map, expected a sequence",
                "expected a list, found an object",
            ),
            (
                "invalid type: null, expected a string",
                "expected a string, found null",
            ),
            (
                "invalid value: integer `-1`, expected u64",
                "expected a whole number (0 or more), found the number -1",
            ),
            (
                "invalid type: floating point `1.5`, expected i64",
                "expected a whole number, found the number 1.5",
            ),
            (
                "invalid type: boolean `true`, expected enum Kind",
                "expected one of the allowed values, found true",
            ),
            (
                "invalid length 1, expected a tuple of size 2",
                "expected a list of 2 values, found a list of 1 value",
            ),
            (
                "unknown variant `wizard`, expected one of `admin`, `device`",
                "unknown value `wizard`, expected one of `admin`, `device`",
            ),
            ("missing field `serial`", "missing field `serial`"),
            ("invalid digit found in string", "expected a whole number"),
            (
                "invalid type: string \"x\", expected an RFC3339-formatted `OffsetDateTime`",
                "expected a date and time such as 2026-01-31T12:00:00Z, found the string \"x\"",
            ),
            (
                "invalid type: Option value, expected tuple struct Wrapper",
                "expected a list, found a value",
            ),
            (
                "invalid type: newtype struct, expected alloc::vec::Vec<u8>",
                "expected a value of another kind, found a value of another kind",
            ),
            (
                "the 'year' component could not be parsed",
                "expected a date and time such as 2026-01-31T12:00:00Z; the 'year' component \
                 could not be parsed",
            ),
            (
                "something about Box<dyn Error>",
                "the value has the wrong form for this field",
            ),
        ];
        for (serde, plain) in cases {
            assert_eq!(plain_message(serde), *plain, "{serde}");
            assert_plain(&plain_message(serde));
        }
    }

    #[test]
    fn type_names_from_path_errors_are_plain() {
        assert_eq!(plain_expected("u64"), "a whole number (0 or more)");
        assert_eq!(plain_expected("alloc::string::String"), "a string");
        assert_eq!(plain_expected("bool"), "true or false");
        assert_eq!(
            plain_expected("firmup_server::Thing"),
            "a value of another kind"
        );
    }

    #[test]
    fn bad_json_bodies_get_plain_messages_with_the_field_path() {
        let m = json_message(r#"{"name": "a", "inner": {"count": "lots"}}"#);
        assert!(m.contains("`inner.count`"), "{m}");
        assert!(m.contains("expected a whole number"), "{m}");
        assert!(m.contains("line 1"), "{m}");
        let m = json_message(r#""text""#);
        assert!(
            m.contains("wrong shape: expected an object, found the string \"text\""),
            "{m}"
        );
        let m = json_message(r#"{"name": "a", "inner": {"count": 1, "tags": {}}}"#);
        assert!(m.contains("`inner.tags`: expected a list"), "{m}");
        let m = json_message(r#"{"name": "a", "inner": {"count": 1}, "kind": "wizard"}"#);
        assert!(m.contains("unknown value `wizard`"), "{m}");
        let m = json_message(r#"{"name": "a", "inner": {"count": 1}, "list": [1, -2]}"#);
        assert!(m.contains("`list[1]`"), "{m}");
        let m = json_message(r#"{"name": "a", "inner": {"count": 1}, "pair": [1]}"#);
        assert!(m.contains("a list of 2 values"), "{m}");
        let m = json_message(r#"{"name": "a", "inner": 5}"#);
        assert!(m.contains("expected an object, found the number 5"), "{m}");
        let m = json_message(r#"{"name": 5, "inner": {"count": 1}}"#);
        assert!(m.contains("expected a string"), "{m}");
        let m = json_message(r#"{"name": "a", "inner": {"count": 1, "extra": 1}}"#);
        assert!(m.contains("unknown field `extra`"), "{m}");
        let m = json_message(r#"{"name": "a", "inner": {"count": 1}, "flag": "yes"}"#);
        assert!(m.contains("expected true or false"), "{m}");
        let m = json_message(r#"{"name": "a", "inner": {"count": 1}, "kind": 5}"#);
        assert!(
            m.starts_with("the JSON body has the wrong shape at `kind`: expected a value"),
            "{m}"
        );
        let m = json_message(r#"{"name": "a""#);
        assert!(m.starts_with("the body is not valid JSON"), "{m}");
        let m = json_message(r#"{"name": "a", "inner": {"count": 1}} trailing"#);
        assert!(m.starts_with("the body is not valid JSON"), "{m}");
        for body in [
            r#"{"name": "a", "inner": {"count": "lots"}}"#,
            r#"[1, 2]"#,
            r#""text""#,
            r#"{"name": "a", "inner": {"count": 1}, "offset": 1.5}"#,
            r#"{"name": "a", "inner": {"count": 1}, "list": "x"}"#,
            r#"{"name": "a", "inner": {"count": 1}, "kind": 3}"#,
            r#"{"name": "a", "inner": {"count": 18446744073709551616}}"#,
        ] {
            assert_plain(&json_message(body));
        }
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Params {
        limit: Option<u32>,
        before: Option<i64>,
        all: Option<bool>,
    }

    #[test]
    fn bad_queries_get_plain_messages() {
        for (query, want) in [
            (
                "limit=lots",
                "`limit` is not valid: expected a whole number",
            ),
            ("limit=-1", "`limit` is not valid: expected a whole number"),
            (
                "limit=99999999999",
                "`limit` is not valid: the number is too large",
            ),
            (
                "before=",
                "`before` is not valid: expected a whole number, found nothing",
            ),
            ("all=maybe", "`all` is not valid: expected true or false"),
        ] {
            let e = parse_query::<Params>(query).unwrap_err();
            assert_eq!(e.code(), "invalid_query");
            let m = e.to_string();
            assert!(m.contains(want), "{query}: {m}");
            assert_plain(&m);
        }
        assert!(parse_query::<Params>("limit=5&other=1").is_ok());
    }

    #[test]
    fn content_types() {
        let with = |ct: &str| {
            let mut h = HeaderMap::new();
            h.insert(header::CONTENT_TYPE, ct.parse().unwrap());
            check_json_content_type(&h)
        };
        for ok in [
            "application/json",
            "application/json; charset=utf-8",
            "Application/JSON",
            "application/merge-patch+json",
        ] {
            assert!(with(ok).is_ok(), "{ok}");
        }
        for bad in ["text/json", "text/plain", "application/jsonx", "json", ""] {
            let e = with(bad).unwrap_err();
            assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE, "{bad}");
            assert_eq!(e.code(), "unsupported_media_type");
        }
        let e = check_json_content_type(&HeaderMap::new()).unwrap_err();
        assert_eq!(e.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        assert!(e.to_string().contains("Content-Type: application/json"));
    }
}
