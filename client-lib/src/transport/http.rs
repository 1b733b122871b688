//! [`HttpTransport`]: blocking HTTP/1.1 to the Firmup server and mirrors.
//!
//! Why `ureq` (3.x, rustls with ring, Mozilla roots from `webpki-roots`):
//! it is a small, well-kept, blocking client with no async runtime, so the
//! device library stays free of tokio and its thread pools; it streams
//! bodies through `std::io::Read` (constant memory for images of any size);
//! it has per-phase timeouts, including a per-read (idle) timeout, so a
//! large download never needs an overall deadline; and rustls avoids a
//! dependency on the device's OpenSSL. Its dependency tree is a fraction of
//! reqwest's (no hyper, no tokio). gzip/brotli are not enabled: image bytes
//! must arrive exactly as stored, and a range of a compressed body would not
//! be a range of the image.
//!
//! Policies, each chosen because the device must treat every source as
//! untrusted transport:
//!
//! - **Timeouts**: DNS + connect + TLS ([`HttpConfig::connect_timeout`]),
//!   waiting for the answer's headers ([`HttpConfig::response_timeout`]),
//!   and an idle timeout on every read and write
//!   ([`HttpConfig::idle_timeout`]). There is deliberately no overall
//!   timeout: a 1 GiB image on a slow link may take hours and is fine as
//!   long as bytes keep flowing; a stalled one fails within the idle time.
//! - **URLs**: an absolute `http(s)://` URL is used as given (a check
//!   answer may name a mirror or CDN; its bytes are verified anyway); a path
//!   starting with `/` is joined to the base URL's origin; any other
//!   relative reference is appended to the base URL (with a `/` between).
//!   URLs with user information (`user@host`) or scheme-relative URLs
//!   (`//host/...`) are refused.
//! - **Bearer tokens** are only ever sent to the base URL's origin, and
//!   only by `get_json`/`post_json`. `get_range` sends no credentials at
//!   all (no `Authorization` header, no token): a download grant travels
//!   in the image URL's query, to the server that issued it.
//! - **Redirects** are never followed automatically. `get_range` follows at
//!   most [`HttpConfig::max_redirects`] redirects, re-sending the same
//!   `Range`/`If-Range` on every hop, whose target is on the origin of the
//!   URL asked for or on one of [`HttpConfig::allowed_download_origins`]:
//!   the object store or CDN the server redirects image downloads to, with
//!   a short-lived presigned URL, once it has checked the download grant.
//!   Origins compare exactly: scheme, host (case-insensitively) and port
//!   (the scheme's default filled in), so listing `https://cdn.example.com`
//!   does not allow `http://cdn.example.com`: a redirect from https to
//!   http needs the http origin listed on purpose. Any other target is
//!   [`Error::RedirectRefused`], naming the origin and the setting that
//!   would allow it. Following these redirects is safe because of what
//!   crosses to the other origin: the bytes are judged only by the length
//!   and sha256 the manifest signs, wherever they come from, and no
//!   credential goes along (the device token never leaves the server's
//!   origin, and the grant stays in the server's URL; the store gets only
//!   its own presigned URL). The list is explicit, and empty by default, so
//!   that a redirect (from a misconfigured proxy, or an open redirect on
//!   the server's origin) cannot send devices to any host it likes. When
//!   an allowed origin answered, [`Transport::get_range_routed`] says
//!   which, so a 400/403 there (an expired or tampered presigned URL) is
//!   told apart from the server's own refusal of the grant.
//!   `get_json`/`post_json` follow no redirect (a redirect there is a
//!   misconfigured base URL, and following it could leak the device token).
//! - **Proxies**: only the one in [`HttpConfig::proxy`]. Environment
//!   variables (`HTTP_PROXY`, ...) are not consulted: a device's
//!   environment is not its configuration.
//! - **Statuses** are returned, never turned into errors: the caller decides.
//! - **TLS** is not required: image and manifest integrity come from
//!   signatures, not from the channel. Device tokens and download grants do
//!   need it, so production base URLs should be `https://`.

use std::io::Read;
use std::time::Duration;

use time::OffsetDateTime;
use ureq::http::{HeaderMap, Response};

use super::{
    JsonReply, RangeReply, RoutedRangeReply, Transport, parse_retry_after, read_capped, redact_url,
};
use crate::error::{Error, Result};

/// Settings of an [`HttpTransport`]. The defaults suit a device on a slow or
/// lossy link.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Budget for DNS resolution, and separately for TCP connect + TLS
    /// handshake. Default 15 s.
    pub connect_timeout: Duration,
    /// Budget for sending the request and receiving the answer's headers.
    /// Default 30 s.
    pub response_timeout: Duration,
    /// Longest wait for any single read or write on the connection, body
    /// included; restarts with every read. Default 60 s.
    pub idle_timeout: Duration,
    /// Redirects `get_range` follows for one request, within the origin
    /// asked and to or within [`HttpConfig::allowed_download_origins`]
    /// alike. Default 5.
    pub max_redirects: u32,
    /// Origins other than the one of the URL asked for that `get_range`
    /// follows redirects to: the object store or CDN the server's presigned
    /// download URLs point at. Each is a URL with a scheme (`http` or
    /// `https`), a host and an optional port, and no path (other than `/`),
    /// query, fragment or user information: `https://cdn.example.com`,
    /// `http://127.0.0.1:3900`. Checked by [`HttpTransport::with_config`].
    /// Default empty: no redirect leaves the origin asked.
    pub allowed_download_origins: Vec<String>,
    /// An HTTP(S)/SOCKS proxy URL, e.g. `http://proxy:3128`. Default none.
    pub proxy: Option<String>,
    /// The `User-Agent` header. Default `firmup-client/<version>`.
    pub user_agent: String,
}

impl Default for HttpConfig {
    fn default() -> Self {
        HttpConfig {
            connect_timeout: Duration::from_secs(15),
            response_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_redirects: 5,
            allowed_download_origins: Vec::new(),
            proxy: None,
            user_agent: concat!("firmup-client/", env!("CARGO_PKG_VERSION")).to_owned(),
        }
    }
}

/// Blocking HTTP(S) transport; see the module documentation for its
/// policies. Cheap to share: connections are pooled per transport.
#[derive(Debug, Clone)]
pub struct HttpTransport {
    base: String,
    origin: Origin,
    agent: ureq::Agent,
    max_redirects: u32,
    allowed_origins: Vec<Origin>,
}

/// Scheme, host and port: what "same origin" compares (RFC 6454). Scheme
/// and host are lowercased; a missing port is the scheme's default, so
/// `https://Host` and `https://host:443` are the same origin.
#[derive(Debug, Clone)]
struct Origin {
    scheme: String,
    /// The authority as written, lowercased: what paths are joined to.
    authority: String,
    /// The host, IPv6 literals in brackets.
    host: String,
    port: u16,
}

impl PartialEq for Origin {
    fn eq(&self, other: &Origin) -> bool {
        self.scheme == other.scheme && self.host == other.host && self.port == other.port
    }
}

impl Eq for Origin {}

/// `scheme://host`, with `:port` unless it is the scheme's default.
impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        if Some(self.port) != default_port(&self.scheme) {
            write!(f, ":{}", self.port)?;
        }
        Ok(())
    }
}

fn default_port(scheme: &str) -> Option<u16> {
    match scheme {
        "http" => Some(80),
        "https" => Some(443),
        _ => None,
    }
}

impl Origin {
    fn of(url: &str) -> Option<(Origin, &str)> {
        let (scheme, rest) = url.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default = default_port(&scheme)?;
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let valid = !authority.is_empty()
            && !authority.bytes().any(|b| {
                b == b'@' || b == b'\\' || b.is_ascii_whitespace() || b.is_ascii_control()
            });
        if !valid {
            return None;
        }
        let authority = authority.to_ascii_lowercase();
        let (host, port) = split_host_port(&authority, default)?;
        Some((
            Origin {
                scheme,
                authority,
                host,
                port,
            },
            tail,
        ))
    }

    fn join(&self, absolute_path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.authority, absolute_path)
    }
}

/// Splits `host[:port]` or `[ipv6][:port]`; an empty or missing port is
/// `default`. `None` for a port that is not a number below 65536, an empty
/// host, or a colon in a host outside brackets.
fn split_host_port(authority: &str, default: u16) -> Option<(String, u16)> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(rest) => {
            let (inside, after) = rest.split_once(']')?;
            let literal = !inside.is_empty()
                && inside
                    .bytes()
                    .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            if !literal {
                return None;
            }
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':')?),
            };
            (format!("[{inside}]"), port)
        }
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        },
    };
    if host.is_empty() || (!host.starts_with('[') && host.contains([':', '[', ']'])) {
        return None;
    }
    let port = match port {
        None | Some("") => default,
        Some(p) if p.bytes().all(|b| b.is_ascii_digit()) => p.parse().ok()?,
        Some(_) => return None,
    };
    Some((host, port))
}

/// Parses one entry of [`HttpConfig::allowed_download_origins`].
fn allowed_origin(url: &str) -> Result<Origin> {
    let url = url.trim();
    let bad = |why: String| {
        Error::invalid(
            "allowed_download_origins",
            format!(
                "{:?} {why}; an allowed download origin is a scheme, a host and an optional \
                 port only, such as https://cdn.example.com or http://127.0.0.1:3900",
                shown_origin_url(url)
            ),
        )
    };
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(bad("is not an http:// or https:// URL".into()));
    };
    if default_port(&scheme.to_ascii_lowercase()).is_none() {
        return Err(bad(format!(
            "has the scheme {scheme:?}; only http and https are allowed"
        )));
    }
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    if authority.contains('@') {
        return Err(bad(
            "carries user information; no credentials are ever sent to a download origin".into(),
        ));
    }
    if tail.contains('?') {
        return Err(bad("carries a query".into()));
    }
    if tail.contains('#') {
        return Err(bad("carries a fragment".into()));
    }
    if !tail.is_empty() && tail != "/" {
        return Err(bad(format!(
            "has the path {tail:?}; the whole origin is allowed or none of it"
        )));
    }
    match Origin::of(url) {
        Some((origin, _)) => Ok(origin),
        None => Err(bad("has no valid host and port".into())),
    }
}

/// A candidate origin URL as an error may show it: no user information,
/// no query, no fragment.
fn shown_origin_url(url: &str) -> String {
    let url = url.split_once('#').map_or(url, |(u, _)| u);
    let url = match url.split_once("://") {
        Some((scheme, rest)) => {
            let end = rest.find(['/', '?']).unwrap_or(rest.len());
            let (authority, tail) = rest.split_at(end);
            match authority.rsplit_once('@') {
                Some((_, host)) => format!("{scheme}://<user>@{host}{tail}"),
                None => url.to_owned(),
            }
        }
        None => url.to_owned(),
    };
    redact_url(&url)
}

impl HttpTransport {
    /// A transport for the server at `base_url` (`http://host:port` or
    /// `https://host/prefix/`), with default settings.
    pub fn new(base_url: &str) -> Result<Self> {
        Self::with_config(base_url, HttpConfig::default())
    }

    /// A transport for the server at `base_url` with `config`.
    pub fn with_config(base_url: &str, config: HttpConfig) -> Result<Self> {
        let (origin, _) = Origin::of(base_url).ok_or_else(|| {
            Error::invalid(
                "base_url",
                format!(
                    "{:?} is not an http:// or https:// URL with a host",
                    redact_url(base_url)
                ),
            )
        })?;
        if base_url.contains(['?', '#']) {
            return Err(Error::invalid(
                "base_url",
                "must not carry a query or fragment",
            ));
        }
        let allowed_origins = config
            .allowed_download_origins
            .iter()
            .map(|u| allowed_origin(u))
            .collect::<Result<Vec<_>>>()?;
        let proxy = match config.proxy.as_deref() {
            None => None,
            Some(p) => {
                Some(ureq::Proxy::new(p).map_err(|e| Error::invalid("proxy", e.to_string()))?)
            }
        };
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(proxy)
            .timeout_resolve(Some(config.connect_timeout))
            .timeout_connect(Some(config.connect_timeout))
            .timeout_send_request(Some(config.response_timeout))
            .timeout_recv_response(Some(config.response_timeout))
            .timeout_per_read(Some(config.idle_timeout))
            .timeout_per_write(Some(config.idle_timeout))
            .user_agent(config.user_agent.as_str())
            .accept_encoding("identity")
            .build()
            .into();
        Ok(HttpTransport {
            base: base_url.to_owned(),
            origin,
            agent,
            max_redirects: config.max_redirects,
            allowed_origins,
        })
    }

    /// The base URL requests are resolved against.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The absolute URL a request for `url` goes to (see the module
    /// documentation for the rules).
    pub fn resolve(&self, url: &str) -> Result<String> {
        if url.contains("://") {
            return match Origin::of(url) {
                Some(_) => Ok(url.to_owned()),
                None => Err(bad_url(url)),
            };
        }
        if url.starts_with("//") || url.contains('\\') {
            return Err(bad_url(url));
        }
        if url.starts_with('/') {
            return Ok(self.origin.join(url));
        }
        let sep = if self.base.ends_with('/') { "" } else { "/" };
        Ok(format!("{}{sep}{url}", self.base))
    }

    /// Sends the bearer only to the base origin.
    fn check_bearer_target(&self, target: &str, bearer: Option<&str>) -> Result<()> {
        if bearer.is_some() && Origin::of(target).map(|(o, _)| o) != Some(self.origin.clone()) {
            return Err(Error::invalid(
                "url",
                format!(
                    "{} is not on the configured server; a bearer token is only sent there",
                    redact_url(target)
                ),
            ));
        }
        Ok(())
    }

    fn small_reply(
        &self,
        method: &str,
        target: &str,
        res: std::result::Result<Response<ureq::Body>, ureq::Error>,
        max_response: u64,
    ) -> Result<JsonReply> {
        let res = res.map_err(|e| map_err(e, method, target))?;
        let status = res.status().as_u16();
        if (300..400).contains(&status) {
            return Err(Error::RedirectRefused {
                from: redact_url(target),
                to: location(res.headers())
                    .map_or_else(|| "(no Location)".to_owned(), |l| redact_url(&l)),
                reason: "requests with a token never follow redirects".into(),
            });
        }
        let retry_after = retry_after(res.headers());
        let mut body = res.into_body().into_reader();
        // A failure reading the answer is on the network side (a reset, an
        // idle timeout), not the device's storage.
        let body = read_capped(&mut body, max_response, "server answer").map_err(|e| match e {
            Error::Io { context, source } => Error::Network {
                context: format!("{method} {}: {context}", redact_url(target)),
                detail: source.to_string(),
            },
            other => other,
        })?;
        Ok(JsonReply {
            status,
            retry_after,
            body,
        })
    }
}

fn bad_url(url: &str) -> Error {
    Error::invalid(
        "url",
        format!(
            "{:?} is neither a path nor an http(s) URL with a plain host",
            redact_url(url)
        ),
    )
}

/// Maps a ureq failure (no answer had) to the crate's error. Everything on
/// the network side (connect, DNS, timeouts, resets, TLS, a protocol error)
/// is [`Error::Network`], which is retryable; [`Error::Io`] stays reserved
/// for the device's own storage. A URL or header that cannot be sent is not
/// retryable.
fn map_err(err: ureq::Error, method: &str, url: &str) -> Error {
    let context = format!("{method} {}", redact_url(url));
    match err {
        ureq::Error::Io(e) => Error::Network {
            context,
            detail: e.to_string(),
        },
        ureq::Error::BadUri(_) => bad_url(url),
        ureq::Error::Http(e) => Error::invalid("request", format!("{context}: {e}")),
        other => Error::Network {
            context,
            detail: other.to_string(),
        },
    }
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get(name)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
}

fn location(headers: &HeaderMap) -> Option<String> {
    header(headers, "location")
}

fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    header(headers, "retry-after").and_then(|v| parse_retry_after(&v, OffsetDateTime::now_utc()))
}

fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

impl Transport for HttpTransport {
    fn get_range(&self, url: &str, from: u64, if_range: Option<&str>) -> Result<RangeReply> {
        self.get_range_routed(url, from, if_range)
            .map(|routed| routed.reply)
    }

    fn get_range_routed(
        &self,
        url: &str,
        from: u64,
        if_range: Option<&str>,
    ) -> Result<RoutedRangeReply> {
        let mut target = self.resolve(url)?;
        let (asked, _) = Origin::of(&target).ok_or_else(|| bad_url(&target))?;
        let mut at = asked.clone();
        let mut hops = 0;
        loop {
            // Only Range and If-Range, on every hop: never a token or any
            // other credential, so a redirect to another origin carries
            // nothing but the URL the server chose.
            let mut req = self
                .agent
                .get(&target)
                .header("range", format!("bytes={from}-"));
            if let Some(tag) = if_range {
                req = req.header("if-range", tag);
            }
            let res = req.call().map_err(|e| map_err(e, "GET", &target))?;
            let status = res.status().as_u16();
            let headers = res.headers();
            if is_redirect(status) {
                (target, at) = self.follow(&asked, &target, location(headers), hops)?;
                hops += 1;
                continue;
            }
            let reply = RangeReply {
                status,
                content_range: header(headers, "content-range"),
                content_length: header(headers, "content-length")
                    .and_then(|v| v.trim().parse().ok()),
                etag: header(headers, "etag"),
                retry_after: retry_after(headers),
                body: Box::new(res.into_body().into_reader()) as Box<dyn Read + Send>,
            };
            return Ok(RoutedRangeReply {
                reply,
                foreign_origin: (at != asked).then(|| at.to_string()),
            });
        }
    }

    fn get_json(&self, url: &str, bearer: Option<&str>, max_response: u64) -> Result<JsonReply> {
        let target = self.resolve(url)?;
        self.check_bearer_target(&target, bearer)?;
        let mut req = self.agent.get(&target).header("accept", "application/json");
        if let Some(token) = bearer {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        self.small_reply("GET", &target, req.call(), max_response)
    }

    fn post_json(
        &self,
        url: &str,
        bearer: Option<&str>,
        body: &[u8],
        max_response: u64,
    ) -> Result<JsonReply> {
        let target = self.resolve(url)?;
        self.check_bearer_target(&target, bearer)?;
        let mut req = self
            .agent
            .post(&target)
            .header("accept", "application/json")
            .content_type("application/json");
        if let Some(token) = bearer {
            req = req.header("authorization", format!("Bearer {token}"));
        }
        self.small_reply("POST", &target, req.send(body), max_response)
    }
}

impl HttpTransport {
    /// The next URL of a `get_range` redirect chain and its origin, if the
    /// policy allows it: a target on `asked` (the origin of the URL the
    /// chain started from) or on an allowed download origin. `from`, the
    /// URL that answered with the redirect, is always on one of those, so
    /// an absolute path stays within them.
    fn follow(
        &self,
        asked: &Origin,
        from: &str,
        location: Option<String>,
        hops: u32,
    ) -> Result<(String, Origin)> {
        let refuse = |to: &str, reason: String| Error::RedirectRefused {
            from: redact_url(from),
            to: redact_url(to),
            reason,
        };
        let Some(loc) = location else {
            return Err(refuse(
                "(no Location)",
                "a redirect without a Location".into(),
            ));
        };
        if hops >= self.max_redirects {
            return Err(refuse(&loc, "too many redirects".into()));
        }
        let (from_origin, _) = Origin::of(from).ok_or_else(|| bad_url(from))?;
        if loc.starts_with('/') && !loc.starts_with("//") && !loc.contains('\\') {
            return Ok((from_origin.join(&loc), from_origin));
        }
        if !loc.contains("://") {
            return Err(refuse(
                &loc,
                "only absolute paths or http(s) URLs are followed".into(),
            ));
        }
        let Some((to, _)) = Origin::of(&loc) else {
            return Err(refuse(
                &loc,
                "the target is not an http(s) URL with a plain host".into(),
            ));
        };
        if to == *asked || self.allowed_origins.contains(&to) {
            return Ok((loc, to));
        }
        Err(refuse(&loc, self.not_allowed(asked, &to)))
    }

    /// Why a redirect to `to` is refused, and how to allow it.
    fn not_allowed(&self, asked: &Origin, to: &Origin) -> String {
        let https_only = to.scheme == "http"
            && std::iter::once(asked)
                .chain(&self.allowed_origins)
                .any(|o| o.scheme == "https" && o.host == to.host);
        let downgrade = if https_only {
            " (https is, for that host; a downgrade to http must be allowed on its own)"
        } else {
            ""
        };
        format!(
            "{to} is not an allowed download origin{downgrade}; to follow redirects there, \
             add {to} to allowed_download_origins in the device configuration"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_resolve_against_the_base() {
        let t = HttpTransport::new("http://Server:8080").unwrap();
        assert_eq!(
            t.resolve("/v1/images/ab?sig=x").unwrap(),
            "http://server:8080/v1/images/ab?sig=x"
        );
        assert_eq!(
            t.resolve("v1/device/check").unwrap(),
            "http://Server:8080/v1/device/check"
        );
        assert_eq!(
            t.resolve("https://cdn.example/ab").unwrap(),
            "https://cdn.example/ab"
        );
        let prefixed = HttpTransport::new("https://host/firmup/").unwrap();
        assert_eq!(
            prefixed.resolve("v1/device/check").unwrap(),
            "https://host/firmup/v1/device/check"
        );
        for bad in [
            "//evil/x",
            "ftp://host/x",
            "http://user@evil/x",
            "http:///x",
        ] {
            assert_eq!(t.resolve(bad).unwrap_err().code(), "invalid_field", "{bad}");
        }
        for bad in ["server:8080", "ftp://x", "http://a@b", "http://h/?q=1"] {
            assert!(HttpTransport::new(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn bearer_tokens_only_go_to_the_base_origin() {
        let t = HttpTransport::new("http://server:8080").unwrap();
        let err = t
            .post_json(
                "http://elsewhere:8080/v1/device/check",
                Some("secret"),
                b"{}",
                1024,
            )
            .unwrap_err();
        assert_eq!(err.code(), "invalid_field");
        assert!(!err.to_string().contains("secret"));
    }

    #[test]
    fn network_failures_are_network_errors_not_io() {
        use std::io::Write as _;
        use std::net::TcpListener;

        // Connection refused: nothing listens on the port any more.
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let t = HttpTransport::new(&format!("http://127.0.0.1:{port}")).unwrap();
        let err = t.get_json("/v1/x?sig=s", None, 1024).unwrap_err();
        assert_eq!(err.code(), "network", "{err:?}");
        assert!(err.retryable());
        assert!(!err.to_string().contains("sig=s"));
        let err = t.get_range("/v1/images/ab", 0, None).err().unwrap();
        assert_eq!(err.code(), "network", "{err:?}");

        // The answer is cut mid-body.
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut buf = [0u8; 4096];
            let _ = conn.read(&mut buf);
            let _ = conn.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n{\"a\":",
            );
        });
        let t = HttpTransport::new(&format!("http://{addr}")).unwrap();
        let err = t
            .post_json("/v1/device/check", None, b"{}", 1024)
            .unwrap_err();
        server.join().unwrap();
        assert_eq!(err.code(), "network", "{err:?}");
        assert!(err.retryable());
    }

    #[test]
    fn redirects_stay_on_the_origin() {
        let t = HttpTransport::new("http://server:8080").unwrap();
        let from = "http://server:8080/v1/images/ab?sig=s";
        let (asked, _) = Origin::of(from).unwrap();
        let next = |loc: &str, hops| t.follow(&asked, from, Some(loc.into()), hops);
        assert_eq!(
            next("/v1/images/cd", 0).unwrap().0,
            "http://server:8080/v1/images/cd"
        );
        assert_eq!(
            next("HTTP://SERVER:8080/x", 0).unwrap().0,
            "HTTP://SERVER:8080/x"
        );
        for (loc, hops) in [
            ("http://evil:8080/x", 0),
            ("https://server:8080/x", 0),
            ("http://server:8081/x", 0),
            ("//evil/x", 0),
            ("relative/x", 0),
            ("http://user@server:8080/x", 0),
            ("/v1/x", 5),
        ] {
            let err = next(loc, hops).unwrap_err();
            assert_eq!(err.code(), "redirect_refused", "{loc}");
            assert!(!err.to_string().contains("sig=s"));
        }
        let err = t.follow(&asked, from, None, 0).unwrap_err();
        assert_eq!(err.code(), "redirect_refused");
    }

    #[test]
    fn origins_compare_scheme_host_and_port_with_defaults() {
        let of = |u: &str| Origin::of(u).unwrap().0;
        assert_eq!(
            of("https://CDN.example.com/x"),
            of("https://cdn.example.com:443")
        );
        assert_eq!(of("http://h:80/"), of("http://h"));
        assert_eq!(of("http://h:/"), of("http://h"));
        assert_eq!(of("http://[::1]:3900/b"), of("http://[::1]:3900"));
        assert_ne!(of("http://h"), of("https://h"));
        assert_ne!(of("https://h"), of("https://h:8443"));
        assert_eq!(
            of("https://CDN.example.com:443/x").to_string(),
            "https://cdn.example.com"
        );
        assert_eq!(
            of("http://127.0.0.1:3900/b?q").to_string(),
            "http://127.0.0.1:3900"
        );
        for bad in [
            "http://h:99999/",
            "http://h:8o/",
            "http://::1/",
            "http://[::1/",
            "http://[zz]/",
            "http://:80/",
        ] {
            assert!(Origin::of(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn https_to_http_downgrade_needs_an_explicit_http_origin() {
        let with = |allowed: &[&str]| {
            HttpTransport::with_config(
                "https://updates.example.com",
                HttpConfig {
                    allowed_download_origins: allowed.iter().map(|s| s.to_string()).collect(),
                    ..HttpConfig::default()
                },
            )
            .unwrap()
        };
        let from = "https://updates.example.com/v1/images/ab?sub=SN-1&exp=1&sig=grant";
        let (asked, _) = Origin::of(from).unwrap();
        let t = with(&["https://cdn.example.com"]);
        let next = |t: &HttpTransport, loc: &str| t.follow(&asked, from, Some(loc.into()), 0);

        // The listed origin, however it is spelled.
        for loc in [
            "https://cdn.example.com/images/ab?X-Amz-Signature=s",
            "https://CDN.Example.com:443/images/ab",
        ] {
            let (url, origin) = next(&t, loc).unwrap();
            assert_eq!(url, loc);
            assert_eq!(origin.to_string(), "https://cdn.example.com");
        }
        // The same host over http, or on another port: refused, and the
        // error names the origin and the setting.
        let err = next(&t, "http://cdn.example.com/images/ab?X-Amz-Signature=s").unwrap_err();
        assert_eq!(err.code(), "redirect_refused");
        let msg = err.to_string();
        assert!(
            msg.contains("http://cdn.example.com is not an allowed download origin"),
            "{msg}"
        );
        assert!(msg.contains("downgrade to http"), "{msg}");
        assert!(
            msg.contains("add http://cdn.example.com to allowed_download_origins"),
            "{msg}"
        );
        assert!(
            !msg.contains("X-Amz-Signature") && !msg.contains("grant"),
            "{msg}"
        );
        assert!(next(&t, "https://cdn.example.com:8443/images/ab").is_err());
        // Nor the server's own host over http.
        let err = next(&t, "http://updates.example.com/v1/images/ab").unwrap_err();
        assert!(err.to_string().contains("downgrade to http"), "{err}");

        // Listing the http origin on purpose allows it.
        let t = with(&["https://cdn.example.com", "http://cdn.example.com"]);
        let (_, origin) = next(&t, "http://cdn.example.com/images/ab").unwrap();
        assert_eq!(origin.to_string(), "http://cdn.example.com");
    }

    #[test]
    fn allowed_origin_with_path_or_query_is_rejected() {
        let build = |origin: &str| {
            HttpTransport::with_config(
                "http://server:8080",
                HttpConfig {
                    allowed_download_origins: vec![origin.to_owned()],
                    ..HttpConfig::default()
                },
            )
        };
        for good in [
            "https://cdn.example.com",
            "https://cdn.example.com/",
            "http://127.0.0.1:3900",
            "HTTP://127.0.0.1:3900/",
            "http://[::1]:3900",
        ] {
            assert!(build(good).is_ok(), "{good}");
        }
        for (bad, why) in [
            ("https://cdn.example.com/bucket", "has the path \"/bucket\""),
            ("https://cdn.example.com/bucket/", "has the path"),
            (
                "https://cdn.example.com?X-Amz-Signature=secret",
                "carries a query",
            ),
            (
                "https://cdn.example.com/?X-Amz-Signature=secret",
                "carries a query",
            ),
            ("https://cdn.example.com#secret", "carries a fragment"),
            (
                "https://user:secret@cdn.example.com",
                "carries user information",
            ),
            ("ftp://cdn.example.com", "only http and https"),
            ("cdn.example.com", "is not an http:// or https:// URL"),
            ("https://", "no valid host"),
            ("https://cdn.example.com:99999", "no valid host"),
        ] {
            let err = build(bad).unwrap_err();
            assert!(
                matches!(
                    &err,
                    Error::InvalidField {
                        field: "allowed_download_origins",
                        ..
                    }
                ),
                "{bad}: {err:?}"
            );
            let msg = err.to_string();
            assert!(msg.contains(why), "{bad}: {msg}");
            assert!(msg.contains("such as https://cdn.example.com"), "{msg}");
            assert!(!msg.contains("secret"), "{bad}: {msg}");
        }
    }

    #[test]
    fn redirect_to_allowed_origin_is_followed_without_credentials() {
        let store = test_server::start(|_| {
            test_server::answer(
                "206 Partial Content",
                &[("content-range", "bytes 5-9/10"), ("etag", "\"md5\"")],
                b"56789",
            )
        });
        let store_origin = format!("http://127.0.0.1:{}", store.addr.port());
        let location = format!("{store_origin}/bucket/images/ab?X-Amz-Signature=sig");
        let server = test_server::start(move |_| {
            test_server::answer("302 Found", &[("location", location.as_str())], b"")
        });
        let t = HttpTransport::with_config(
            &format!("http://{}", server.addr),
            HttpConfig {
                allowed_download_origins: vec![format!("{store_origin}/")],
                ..HttpConfig::default()
            },
        )
        .unwrap();

        let mut routed = t
            .get_range_routed("/v1/images/ab?sub=SN-1&exp=1&sig=grant", 5, Some("\"ab\""))
            .unwrap();
        assert_eq!(routed.reply.status, 206);
        assert_eq!(routed.reply.content_range.as_deref(), Some("bytes 5-9/10"));
        assert_eq!(
            routed.foreign_origin.as_deref(),
            Some(store_origin.as_str())
        );
        let mut body = Vec::new();
        routed.reply.body.read_to_end(&mut body).unwrap();
        assert_eq!(body, b"56789");

        let (at_server, at_store) = (server.seen(), store.seen());
        assert_eq!((at_server.len(), at_store.len()), (1, 1));
        for req in [&at_server[0], &at_store[0]] {
            assert_eq!(req.header("range"), Some("bytes=5-"), "{req:?}");
            assert_eq!(req.header("if-range"), Some("\"ab\""), "{req:?}");
            assert_eq!(req.header("authorization"), None, "{req:?}");
            assert_eq!(req.header("cookie"), None, "{req:?}");
        }
        // The grant stays with the server: the store gets only its own URL.
        assert_eq!(
            at_server[0].target,
            "/v1/images/ab?sub=SN-1&exp=1&sig=grant"
        );
        assert_eq!(at_store[0].target, "/bucket/images/ab?X-Amz-Signature=sig");

        // The plain `get_range` follows the same way.
        let reply = t.get_range("/v1/images/ab?sig=grant", 5, None).unwrap();
        assert_eq!(reply.status, 206);
        assert_eq!(store.seen()[1].header("if-range"), None);
    }

    #[test]
    fn redirect_to_unlisted_origin_is_refused() {
        let store = test_server::start(|_| test_server::answer("200 OK", &[], b"bytes"));
        let store_origin = format!("http://127.0.0.1:{}", store.addr.port());
        let location = format!("{store_origin}/bucket/images/ab?X-Amz-Signature=secret");
        let server = test_server::start(move |_| {
            test_server::answer(
                "307 Temporary Redirect",
                &[("location", location.as_str())],
                b"",
            )
        });
        // Another port on the same host is another origin.
        let t = HttpTransport::with_config(
            &format!("http://{}", server.addr),
            HttpConfig {
                allowed_download_origins: vec![format!(
                    "http://127.0.0.1:{}",
                    server.addr.port().wrapping_add(1)
                )],
                ..HttpConfig::default()
            },
        )
        .unwrap();
        let err = t
            .get_range("/v1/images/ab?sub=SN-1&sig=grant", 0, None)
            .unwrap_err();
        assert_eq!(err.code(), "redirect_refused", "{err:?}");
        assert!(!err.retryable());
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("{store_origin} is not an allowed download origin")),
            "{msg}"
        );
        assert!(msg.contains("allowed_download_origins"), "{msg}");
        assert!(!msg.contains("secret") && !msg.contains("grant"), "{msg}");
        assert_eq!(server.seen().len(), 1);
        assert!(
            store.seen().is_empty(),
            "nothing may reach an unlisted origin"
        );

        // Today's behaviour by default: no origin is allowed.
        let t = HttpTransport::new(&format!("http://{}", server.addr)).unwrap();
        let err = t.get_range("/v1/images/ab", 0, None).unwrap_err();
        assert_eq!(err.code(), "redirect_refused", "{err:?}");
        assert!(store.seen().is_empty());
    }

    #[test]
    fn redirect_from_allowed_origin_to_unlisted_origin_is_refused() {
        let elsewhere = test_server::start(|_| test_server::answer("200 OK", &[], b"bytes"));
        let elsewhere_origin = format!("http://127.0.0.1:{}", elsewhere.addr.port());
        let onward = format!("{elsewhere_origin}/steal?token=secret");
        let store = test_server::start(move |req| {
            if req.target.starts_with("/first") {
                // A hop within the allowed origin is followed...
                test_server::answer(
                    "302 Found",
                    &[("location", "/second?X-Amz-Signature=s")],
                    b"",
                )
            } else {
                // ...one leaving it for an unlisted origin is not.
                test_server::answer("302 Found", &[("location", onward.as_str())], b"")
            }
        });
        let store_origin = format!("http://127.0.0.1:{}", store.addr.port());
        let location = format!("{store_origin}/first?X-Amz-Signature=s");
        let server = test_server::start(move |_| {
            test_server::answer("302 Found", &[("location", location.as_str())], b"")
        });
        let t = HttpTransport::with_config(
            &format!("http://{}", server.addr),
            HttpConfig {
                allowed_download_origins: vec![store_origin.clone()],
                ..HttpConfig::default()
            },
        )
        .unwrap();
        let err = t
            .get_range("/v1/images/ab?sig=grant", 7, Some("\"ab\""))
            .unwrap_err();
        assert_eq!(err.code(), "redirect_refused", "{err:?}");
        let msg = err.to_string();
        assert!(
            msg.contains(&format!(
                "{elsewhere_origin} is not an allowed download origin"
            )),
            "{msg}"
        );
        assert!(!msg.contains("secret"), "{msg}");
        let at_store = store.seen();
        assert_eq!(at_store.len(), 2);
        assert!(at_store[1].target.starts_with("/second"));
        assert!(
            at_store
                .iter()
                .all(|r| r.header("range") == Some("bytes=7-"))
        );
        assert!(at_store.iter().all(|r| r.header("authorization").is_none()));
        assert!(elsewhere.seen().is_empty());

        // Hops within and between allowed origins count against the limit.
        let t = HttpTransport::with_config(
            &format!("http://{}", server.addr),
            HttpConfig {
                allowed_download_origins: vec![store_origin, elsewhere_origin],
                max_redirects: 2,
                ..HttpConfig::default()
            },
        )
        .unwrap();
        let err = t.get_range("/v1/images/ab", 0, None).unwrap_err();
        assert_eq!(err.code(), "redirect_refused", "{err:?}");
        assert!(err.to_string().contains("too many redirects"), "{err}");
        assert!(elsewhere.seen().is_empty());
    }
}

/// A tiny HTTP/1.1 server for tests, on `127.0.0.1:0`: one thread, one
/// request per connection, answers written by hand, and every request head
/// it saw kept for the test to inspect.
#[cfg(test)]
pub(crate) mod test_server {
    use std::io::{BufRead, BufReader, Write};
    use std::net::{SocketAddr, TcpListener};
    use std::sync::{Arc, Mutex};

    /// What the server saw of one request.
    #[derive(Debug, Clone)]
    pub(crate) struct Seen {
        /// The request target (path and query).
        pub(crate) target: String,
        /// Header names lowercased, values trimmed.
        pub(crate) headers: Vec<(String, String)>,
    }

    impl Seen {
        /// The value of header `name` (lowercase), if sent.
        pub(crate) fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.as_str())
        }
    }

    /// A running server.
    pub(crate) struct TestServer {
        /// Where it listens.
        pub(crate) addr: SocketAddr,
        seen: Arc<Mutex<Vec<Seen>>>,
    }

    impl TestServer {
        /// The requests answered so far, in order.
        pub(crate) fn seen(&self) -> Vec<Seen> {
            self.seen.lock().unwrap().clone()
        }
    }

    /// An answer with `connection: close` and a `content-length`.
    pub(crate) fn answer(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
        let mut out = format!(
            "HTTP/1.1 {status}\r\nconnection: close\r\ncontent-length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        out.extend_from_slice(body);
        out
    }

    /// Starts a server answering every request with `respond`. Its thread
    /// lives as long as the test process.
    pub(crate) fn start(respond: impl Fn(&Seen) -> Vec<u8> + Send + 'static) -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let mut reader = BufReader::new(conn.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let target = line.split_whitespace().nth(1).unwrap_or("").to_owned();
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_owned()));
                    }
                }
                let req = Seen { target, headers };
                log.lock().unwrap().push(req.clone());
                // A panic in `respond` (a failed assertion) shows up as a
                // cut connection in the test, and its message on stderr.
                let out = respond(&req);
                let _ = conn.write_all(&out);
                let _ = conn.flush();
            }
        });
        TestServer { addr, seen }
    }
}
