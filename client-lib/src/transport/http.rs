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
//! - **Bearer tokens** are only ever sent to the base URL's origin.
//! - **Redirects** are never followed automatically. `get_range` follows at
//!   most [`HttpConfig::max_redirects`] redirects whose target has the same
//!   origin (scheme, host and port) as the URL asked for, re-sending the
//!   same `Range`/`If-Range`; a redirect to another origin is
//!   [`Error::RedirectRefused`]. `get_json`/`post_json` follow none (a
//!   redirect there is a misconfigured base URL, and following it could
//!   leak the device token). Deploying a CDN means naming its absolute URL
//!   in the check answer, not redirecting to it.
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

use super::{JsonReply, RangeReply, Transport, parse_retry_after, read_capped, redact_url};
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
    /// Same-origin redirects `get_range` follows. Default 5.
    pub max_redirects: u32,
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
}

/// Scheme and authority, lowercased: what "same origin" compares.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    authority: String,
}

impl Origin {
    fn of(url: &str) -> Option<(Origin, &str)> {
        let (scheme, rest) = url.split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        if scheme != "http" && scheme != "https" {
            return None;
        }
        let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(end);
        let valid = !authority.is_empty()
            && !authority.bytes().any(|b| {
                b == b'@' || b == b'\\' || b.is_ascii_whitespace() || b.is_ascii_control()
            });
        valid.then(|| {
            (
                Origin {
                    scheme,
                    authority: authority.to_ascii_lowercase(),
                },
                tail,
            )
        })
    }

    fn join(&self, absolute_path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.authority, absolute_path)
    }
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
                reason: "requests with a token never follow redirects",
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
        let mut target = self.resolve(url)?;
        let mut hops = 0;
        loop {
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
                target = self.follow(&target, location(headers), hops)?;
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
            return Ok(reply);
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
    /// The next URL of a `get_range` redirect chain, if the policy allows it.
    fn follow(&self, from: &str, location: Option<String>, hops: u32) -> Result<String> {
        let refuse = |to: &str, reason: &'static str| Error::RedirectRefused {
            from: redact_url(from),
            to: redact_url(to),
            reason,
        };
        let Some(loc) = location else {
            return Err(refuse("(no Location)", "a redirect without a Location"));
        };
        if hops >= self.max_redirects {
            return Err(refuse(&loc, "too many redirects"));
        }
        let (from_origin, _) = Origin::of(from).ok_or_else(|| bad_url(from))?;
        let next = if loc.contains("://") {
            match Origin::of(&loc) {
                Some((o, _)) if o == from_origin => loc.clone(),
                _ => return Err(refuse(&loc, "redirects to another origin are not followed")),
            }
        } else if loc.starts_with('/') && !loc.starts_with("//") && !loc.contains('\\') {
            from_origin.join(&loc)
        } else {
            return Err(refuse(
                &loc,
                "only absolute paths or same-origin URLs are followed",
            ));
        };
        Ok(next)
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
        assert_eq!(
            t.follow(from, Some("/v1/images/cd".into()), 0).unwrap(),
            "http://server:8080/v1/images/cd"
        );
        assert_eq!(
            t.follow(from, Some("HTTP://SERVER:8080/x".into()), 0)
                .unwrap(),
            "HTTP://SERVER:8080/x"
        );
        for (loc, hops) in [
            ("http://evil:8080/x", 0),
            ("https://server:8080/x", 0),
            ("//evil/x", 0),
            ("relative/x", 0),
            ("/v1/x", 5),
        ] {
            let err = t.follow(from, Some(loc.into()), hops).unwrap_err();
            assert_eq!(err.code(), "redirect_refused", "{loc}");
            assert!(!err.to_string().contains("sig=s"));
        }
    }
}
