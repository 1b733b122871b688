//! The HTTP side of `firmup`: one client for the server's staff API, and
//! the one error type of this crate, [`Failure`], whose kinds are the exit
//! codes.
//!
//! Answers are kept as `serde_json::Value`: this CLI prints what the server
//! says (and `--json` passes it through unchanged), so it does not depend
//! on the server crate's types, and a field the server adds later shows up
//! in `--json` output without a new release of the CLI.

use std::fmt;
use std::io::{self, Read as _};
use std::path::Path;
use std::time::Duration;

use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::RETRY_AFTER;
use reqwest::{Method, StatusCode, Url};
use serde_json::Value;

/// How much of an error answer is read.
const MAX_ERROR_BODY: u64 = 64 * 1024;

/// Why a command failed, by what the user can do about it.
#[derive(Debug)]
pub enum Failure {
    /// The server refused the request (a 4xx answer): its stable code and
    /// message, and the whole error body for `--json`. Exit 1.
    Refused {
        /// HTTP status.
        status: u16,
        /// The server's stable error code.
        code: String,
        /// The server's message.
        message: String,
        /// The error answer as sent.
        body: Value,
    },
    /// Bad input found before anything was sent (a file that cannot be
    /// read, say), or an answer this CLI cannot read. Exit 3.
    Local(String),
    /// Worth trying again later: the server is unreachable, overloaded
    /// (429, with how long to wait) or failing (5xx). Exit 4.
    Unavailable(String),
    /// A command over several units of which the server refused some (each
    /// refusal was printed). Exit 1, as a refusal.
    Partial(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused {
                status,
                code,
                message,
                ..
            } => write!(f, "refused ({status} {code}): {message}"),
            Failure::Local(m) | Failure::Partial(m) => write!(f, "{m}"),
            Failure::Unavailable(m) => write!(f, "try again later: {m}"),
        }
    }
}

impl Failure {
    /// The process exit code for this failure.
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Refused { .. } | Failure::Partial(_) => 1,
            Failure::Local(_) => 3,
            Failure::Unavailable(_) => 4,
        }
    }
}

/// The result of a command.
pub type Outcome<T> = Result<T, Failure>;

/// An API token; its `Debug` output is redacted so it cannot leak through
/// a debug print.
#[derive(Clone)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

impl Token {
    /// A token from the command line or the environment.
    pub fn parse(s: &str) -> Result<Token, String> {
        let t = s.trim();
        if t.is_empty() {
            return Err("the token is empty".into());
        }
        Ok(Token(t.to_string()))
    }
}

/// Checks a server base URL and drops a trailing slash.
pub fn parse_server(s: &str) -> Result<String, String> {
    let url = reqwest::Url::parse(s)
        .map_err(|e| format!("{s:?} is not a URL like https://firmup.example.com: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{s:?} must start with https:// (or http://)"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("put the token in FIRMUP_TOKEN, not in the URL".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{s:?} must be a base URL, without ?query or #fragment"
        ));
    }
    Ok(url.as_str().trim_end_matches('/').to_string())
}

/// The staff API of one server, called with one token.
pub struct Api {
    base: Url,
    token: Token,
    http: Client,
}

impl Api {
    /// A client for the server at `base` (checked by [`parse_server`]).
    pub fn new(base: String, token: Token) -> Outcome<Api> {
        let base = Url::parse(&base)
            .map_err(|e| Failure::Local(format!("{base:?} is not a server URL: {e}")))?;
        let http = Client::builder()
            .user_agent(concat!("firmup/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(15))
            // A redirect could carry the token to another host.
            .redirect(reqwest::redirect::Policy::none())
            // Bundles and attachments take as long as they take; short calls
            // set their own timeout.
            .timeout(None::<Duration>)
            .build()
            .map_err(|e| Failure::Local(format!("cannot set up the HTTP client: {e}")))?;
        Ok(Api { base, token, http })
    }

    /// The URL of the API path `segments` (each one escaped as a path
    /// segment, so a serial cannot change the route) with `query`.
    pub fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }

    fn request(&self, method: Method, url: &Url) -> RequestBuilder {
        self.http
            .request(method, url.clone())
            .bearer_auth(&self.token.0)
    }

    /// Sends a JSON API call (a body for POST and PUT) and gives the JSON
    /// answer (`null` for an empty one).
    pub fn call(&self, method: Method, url: &Url, body: Option<&Value>) -> Outcome<Value> {
        let mut req = self.request(method, url).timeout(Duration::from_secs(60));
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = self.send(req, url)?;
        read_json(res, url)
    }

    /// `GET url`.
    pub fn get(&self, url: &Url) -> Outcome<Value> {
        self.call(Method::GET, url, None)
    }

    /// `POST url` with a JSON body.
    pub fn post(&self, url: &Url, body: &Value) -> Outcome<Value> {
        self.call(Method::POST, url, Some(body))
    }

    /// Streams the answer of `GET path` into the file `out`: written to a
    /// temporary file beside it and renamed into place once complete, so
    /// an interrupted download never leaves a partial file under that
    /// name. Gives the number of bytes written.
    pub fn download(&self, url: &Url, out: &Path) -> Outcome<u64> {
        let mut res = self.send(self.request(Method::GET, url), url)?;
        let path = url.path();
        // Read before the body: afterwards it tells what is left to read.
        let announced = res.content_length();
        let dir = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        let local = |e: io::Error| Failure::Local(format!("cannot write {}: {e}", out.display()));
        let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(local)?;
        let written = io::copy(&mut res, tmp.as_file_mut())
            .map_err(|e| Failure::Unavailable(format!("the download of {path} broke off: {e}")))?;
        if let Some(expected) = announced
            && expected != written
        {
            return Err(Failure::Unavailable(format!(
                "the download of {path} ended after {written} of {expected} bytes"
            )));
        }
        tmp.as_file().sync_all().map_err(local)?;
        tmp.persist(out).map_err(|e| local(e.error))?;
        Ok(written)
    }

    /// `POST url` with the file at `path` as the raw body, streamed from
    /// disk with its `Content-Length` (so the server can refuse an
    /// oversize file before a byte is sent) and `content_type`; gives the
    /// JSON answer.
    pub fn upload(&self, url: &Url, path: &Path, content_type: &str) -> Outcome<Value> {
        let local = |e: io::Error| Failure::Local(format!("cannot read {}: {e}", path.display()));
        let file = std::fs::File::open(path).map_err(local)?;
        let len = file.metadata().map_err(local)?.len();
        let req = self
            .request(Method::POST, url)
            .header(reqwest::header::CONTENT_TYPE, content_type)
            .header(reqwest::header::CONTENT_LENGTH, len)
            .body(reqwest::blocking::Body::sized(file, len));
        // A server that refuses an upload before reading it (too large,
        // say) answers at once and closes the connection; this client,
        // still sending, sees the connection break rather than the answer.
        let res = req.send().map_err(|e| {
            if e.is_connect() || e.is_timeout() {
                Failure::Unavailable(format!("cannot reach the server at {}: {e}", self.base))
            } else {
                Failure::Local(format!(
                    "the server closed the connection before all of {} ({len} bytes) was sent, \
                     so it refused the file without reading it: most likely it is larger than \
                     the server accepts, or this token may not upload ({e})",
                    path.display()
                ))
            }
        })?;
        read_json(checked(res, url)?, url)
    }

    /// Sends `req`; a 2xx answer is given back, anything else becomes the
    /// [`Failure`] it means.
    fn send(&self, req: RequestBuilder, url: &Url) -> Outcome<Response> {
        let res = req.send().map_err(|e| {
            Failure::Unavailable(format!("cannot reach the server at {}: {e}", self.base))
        })?;
        checked(res, url)
    }
}

/// A 2xx answer as it came; anything else as the [`Failure`] it means.
fn checked(res: Response, url: &Url) -> Outcome<Response> {
    if res.status().is_success() {
        return Ok(res);
    }
    Err(failure_of(res, url.path()))
}

fn read_json(res: Response, url: &Url) -> Outcome<Value> {
    let path = url.path();
    let text = res
        .text()
        .map_err(|e| Failure::Unavailable(format!("the answer to {path} broke off: {e}")))?;
    if text.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_str(&text)
        .map_err(|e| Failure::Local(format!("the answer to {path} is not JSON: {e}")))
}

fn failure_of(res: Response, path: &str) -> Failure {
    let status = res.status();
    let retry_after = res
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let mut bytes = Vec::new();
    // An unreadable error body leaves the status as the only detail.
    let _ = res.take(MAX_ERROR_BODY).read_to_end(&mut bytes);
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let code = body["error"]["code"]
        .as_str()
        .map_or_else(|| format!("http_{}", status.as_u16()), str::to_owned);
    let message = body["error"]["message"].as_str().map_or_else(
        || {
            status
                .canonical_reason()
                .unwrap_or("no message")
                .to_string()
        },
        str::to_owned,
    );
    if status == StatusCode::TOO_MANY_REQUESTS {
        let wait = retry_after.map_or_else(String::new, |s| format!(" (retry after {s} s)"));
        return Failure::Unavailable(format!("{message}{wait}"));
    }
    if status.is_server_error() {
        return Failure::Unavailable(format!(
            "the server answered {} to {path}: {message} ({code})",
            status.as_u16()
        ));
    }
    if status == StatusCode::NOT_FOUND && code == "unknown_route" {
        return Failure::Local(format!(
            "no Firmup API at this address (404 for {path}); check --server / FIRMUP_SERVER"
        ));
    }
    Failure::Refused {
        status: status.as_u16(),
        code,
        message,
        body,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_checked() {
        assert_eq!(
            parse_server("http://127.0.0.1:8080/").unwrap(),
            "http://127.0.0.1:8080"
        );
        assert!(parse_server("ftp://x").is_err());
        assert!(parse_server("https://u:p@x").is_err());
        assert!(parse_server("https://x/?a=1").is_err());
        assert!(parse_server("not a url").is_err());
    }

    #[test]
    fn segments_and_query_values_are_escaped() {
        let api = Api::new(
            parse_server("https://x.example/base/").unwrap(),
            Token::parse("t").unwrap(),
        )
        .unwrap();
        let url = api.url(&["v1", "devices", "a/b c"], &[("state", "shipped&x=1")]);
        assert_eq!(
            url.as_str(),
            "https://x.example/base/v1/devices/a%2Fb%20c?state=shipped%26x%3D1"
        );
        assert_eq!(
            api.url(&["v1", "rmas"], &[]).as_str(),
            "https://x.example/base/v1/rmas"
        );
    }

    #[test]
    fn tokens_are_redacted_and_not_empty() {
        assert!(Token::parse("  ").is_err());
        let t = Token::parse("fu_secret").unwrap();
        assert!(!format!("{t:?}").contains("secret"));
    }
}
