//! The resumable downloader against a hostile HTTP server and an offline
//! bundle.
//!
//! The server is written here, on `std::net::TcpListener` at
//! `127.0.0.1:0` with a thread per connection and hand-written HTTP/1.1
//! answers, so each test can misbehave exactly one way: answer a range with
//! 200, misplace a Content-Range, cut connections, tamper with a byte, send
//! an endless body, ask to retry later. Each test asserts the exact outcome:
//! the verified bytes, or the typed error and what is left on disk.
//! Backoff waits go through a fake clock, so no test sleeps.

use std::io::{BufRead, BufReader, Read as _, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use firmup_client::download::{Downloaded, Downloader, Progress, RetryPolicy, TimeSource};
use firmup_client::transport::{ContentRange, FileTransport, HttpConfig, HttpTransport, Transport};
use firmup_client::{Error, ImageSpec, Sha256Digest};

// ---------------------------------------------------------------- fixtures

/// Deterministic pseudo-random bytes (xorshift), so images do not compress
/// or repeat.
fn image(len: usize) -> Vec<u8> {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15 ^ len as u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn spec_of(bytes: &[u8]) -> ImageSpec {
    ImageSpec {
        name: "firmware.img".into(),
        target: "rootfs".into(),
        length: bytes.len() as u64,
        sha256: Sha256Digest::of(bytes),
    }
}

fn url_of(spec: &ImageSpec) -> String {
    format!("/v1/images/{}?sub=SN-0001&exp=1&sig=grant", spec.sha256)
}

fn etag_of(spec: &ImageSpec) -> String {
    format!("\"{}\"", spec.sha256)
}

/// A clock that only moves when the downloader sleeps.
#[derive(Debug)]
struct FakeTime {
    base: Instant,
    offset: Mutex<Duration>,
    sleeps: Mutex<Vec<Duration>>,
}

impl FakeTime {
    fn new() -> Arc<Self> {
        Arc::new(FakeTime {
            base: Instant::now(),
            offset: Mutex::new(Duration::ZERO),
            sleeps: Mutex::new(Vec::new()),
        })
    }
    fn sleeps(&self) -> Vec<Duration> {
        self.sleeps.lock().unwrap().clone()
    }
}

impl TimeSource for FakeTime {
    fn now(&self) -> Instant {
        self.base + *self.offset.lock().unwrap()
    }
    fn sleep(&self, d: Duration) {
        self.sleeps.lock().unwrap().push(d);
        *self.offset.lock().unwrap() += d;
    }
}

fn downloader(dir: &Path, time: &Arc<FakeTime>) -> Downloader {
    Downloader::new(dir).with_time_source(time.clone())
}

fn http(server: &Hostile) -> HttpTransport {
    HttpTransport::with_config(
        &format!("http://{}", server.addr),
        HttpConfig {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(5),
            ..HttpConfig::default()
        },
    )
    .unwrap()
}

// ---------------------------------------------------------- hostile server

/// What the server saw of one request.
#[derive(Debug, Clone)]
struct Seen {
    path: String,
    range_from: Option<u64>,
    if_range: Option<String>,
}

/// One connection: the request seen, and a way to answer it by hand.
struct Conn {
    stream: TcpStream,
    body_bytes: Arc<AtomicU64>,
}

impl Conn {
    fn head(&mut self, status: &str, headers: &[(&str, String)]) {
        let mut out = format!("HTTP/1.1 {status}\r\nconnection: close\r\n");
        for (k, v) in headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        let _ = self.stream.write_all(out.as_bytes());
    }

    /// Writes body bytes (counted); false once the client has gone.
    fn body(&mut self, bytes: &[u8]) -> bool {
        let ok = self.stream.write_all(bytes).is_ok();
        if ok {
            self.body_bytes
                .fetch_add(bytes.len() as u64, Ordering::SeqCst);
        }
        ok
    }

    /// A complete answer with a Content-Length.
    fn answer(&mut self, status: &str, headers: &[(&str, String)], body: &[u8]) {
        let mut h = headers.to_vec();
        h.push(("content-length", body.len().to_string()));
        self.head(status, &h);
        self.body(body);
    }

    /// An honest range-capable server (the real one's semantics), sending
    /// at most `cut_after` body bytes before dropping the connection.
    fn serve(&mut self, img: &[u8], seen: &Seen, etag: &str, cut_after: Option<usize>) {
        let len = img.len() as u64;
        let range_ok = seen.if_range.as_deref().is_none_or(|t| t == etag);
        let (status, from, mut headers) = match seen.range_from {
            Some(f) if range_ok && f >= len => {
                return self.answer(
                    "416 Range Not Satisfiable",
                    &[("content-range", format!("bytes */{len}"))],
                    br#"{"error":{"code":"range_not_satisfiable","message":"x"}}"#,
                );
            }
            Some(f) if range_ok => (
                "206 Partial Content",
                f,
                vec![("content-range", format!("bytes {f}-{}/{len}", len - 1))],
            ),
            _ => ("200 OK", 0, vec![]),
        };
        let body = &img[from as usize..];
        headers.push(("etag", etag.to_owned()));
        headers.push(("accept-ranges", "bytes".into()));
        headers.push(("content-length", body.len().to_string()));
        self.head(status, &headers);
        let n = cut_after.map_or(body.len(), |c| c.min(body.len()));
        self.body(&body[..n]);
    }
}

type Handler = dyn Fn(usize, &Seen, &mut Conn) + Send + Sync;

/// The test server: records every request, counts body bytes sent.
struct Hostile {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    body_bytes: Arc<AtomicU64>,
}

impl Hostile {
    /// `handler(n, request, conn)` answers the n-th request (from 0).
    fn start(handler: impl Fn(usize, &Seen, &mut Conn) + Send + Sync + 'static) -> Hostile {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let body_bytes = Arc::new(AtomicU64::new(0));
        let handler: Arc<Handler> = Arc::new(handler);
        let counter = Arc::new(AtomicUsize::new(0));
        let (seen2, bytes2) = (seen.clone(), body_bytes.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let (handler, seen, bytes, counter) = (
                    handler.clone(),
                    seen2.clone(),
                    bytes2.clone(),
                    counter.clone(),
                );
                thread::spawn(move || {
                    let Some(req) = read_request(&stream) else {
                        return;
                    };
                    let n = counter.fetch_add(1, Ordering::SeqCst);
                    seen.lock().unwrap().push(req.clone());
                    let mut conn = Conn {
                        stream,
                        body_bytes: bytes,
                    };
                    handler(n, &req, &mut conn);
                    let _ = conn.stream.flush();
                });
            }
        });
        Hostile {
            addr,
            seen,
            body_bytes,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    fn range_starts(&self) -> Vec<Option<u64>> {
        self.seen().iter().map(|s| s.range_from).collect()
    }

    fn body_bytes(&self) -> u64 {
        self.body_bytes.load(Ordering::SeqCst)
    }
}

fn read_request(stream: &TcpStream) -> Option<Seen> {
    let mut r = BufReader::new(stream);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    let path = line.split_whitespace().nth(1)?.to_owned();
    let (mut range_from, mut if_range) = (None, None);
    for _ in 0..100 {
        line.clear();
        r.read_line(&mut line).ok()?;
        let l = line.trim_end();
        if l.is_empty() {
            return Some(Seen {
                path,
                range_from,
                if_range,
            });
        }
        let (k, v) = l.split_once(':')?;
        match k.to_ascii_lowercase().as_str() {
            "range" => {
                let v = v.trim().strip_prefix("bytes=")?;
                range_from = v.strip_suffix('-')?.parse().ok();
            }
            "if-range" => if_range = Some(v.trim().to_owned()),
            _ => {}
        }
    }
    None
}

fn assert_verified(got: &Downloaded, img: &[u8]) {
    assert_eq!(got.sha256, Sha256Digest::of(img));
    assert_eq!(got.length, img.len() as u64);
    assert_eq!(std::fs::read(&got.path).unwrap(), img);
}

const KIB: usize = 1024;

// ------------------------------------------------------------------ tests

#[test]
fn range_answered_with_200_restarts_from_zero() {
    let img = image(300 * KIB);
    let spec = spec_of(&img);
    let dir = tempfile::tempdir().unwrap();
    let time = FakeTime::new();
    let dl = downloader(dir.path(), &time);
    // 100 KiB left by an earlier run, here garbage: appending the 200's body
    // would give 400 KiB; keeping it would fail the hash.
    std::fs::write(dl.partial_path(&spec), vec![0xAA; 100 * KIB]).unwrap();
    let served = img.clone();
    // A server that ignores Range (a cache that dropped it, say).
    let server = Hostile::start(move |_, _, c| c.answer("200 OK", &[], &served));

    let mut dones = Vec::new();
    let got = dl
        .download(&http(&server), &url_of(&spec), &spec, |p: &Progress| {
            dones.push(p.done)
        })
        .unwrap();

    assert_verified(&got, &img);
    let seen = server.seen();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].range_from, Some(100 * KIB as u64));
    assert_eq!(seen[0].if_range.as_deref(), Some(etag_of(&spec).as_str()));
    assert_eq!(got.stats.restarts, 1);
    assert_eq!(got.stats.resumed_from, 100 * KIB as u64);
    // Progress went back to zero before counting up to the full length.
    assert_eq!(dones.first(), Some(&(100 * KIB as u64)));
    assert!(dones.contains(&0));
    assert_eq!(dones.last(), Some(&(img.len() as u64)));
    assert!(!dl.partial_path(&spec).exists());
}

#[test]
fn content_range_start_mismatch_is_refused() {
    let img = image(300 * KIB);
    let spec = spec_of(&img);
    let dir = tempfile::tempdir().unwrap();
    let time = FakeTime::new();
    let dl = downloader(dir.path(), &time);
    let prefix = &img[..100 * KIB];
    std::fs::write(dl.partial_path(&spec), prefix).unwrap();
    let served = img.clone();
    // 206, but the body starts at 0 and says so: appending would corrupt.
    let server = Hostile::start(move |_, _, c| {
        let len = served.len();
        c.answer(
            "206 Partial Content",
            &[("content-range", format!("bytes 0-{}/{len}", len - 1))],
            &served,
        )
    });

    let err = dl
        .download(&http(&server), &url_of(&spec), &spec, |_| {})
        .unwrap_err();

    assert_eq!(err.code(), "range_mismatch", "{err}");
    assert!(err.retryable());
    assert!(matches!(
        &err,
        Error::RangeMismatch { requested, answered }
            if *requested == 100 * KIB as u64 && answered == &format!("bytes 0-{}/{}", img.len() - 1, img.len())
    ));
    // Tried once more, then gave up; nothing on disk was touched.
    assert_eq!(server.range_starts(), [Some(100 * KIB as u64); 2]);
    assert_eq!(std::fs::read(dl.partial_path(&spec)).unwrap(), prefix);
    assert!(!dl.complete_path(&spec).exists());
}

#[test]
fn missing_or_garbled_content_range_on_206_is_a_mismatch() {
    let img = image(64 * KIB);
    let spec = spec_of(&img);
    for header in [None, Some("bytes zero-ten/64")] {
        let dir = tempfile::tempdir().unwrap();
        let time = FakeTime::new();
        let served = img.clone();
        let server = Hostile::start(move |_, _, c| {
            let h: Vec<_> = header
                .map(|v| ("content-range", v.to_owned()))
                .into_iter()
                .collect();
            c.answer("206 Partial Content", &h, &served)
        });
        let err = downloader(dir.path(), &time)
            .download(&http(&server), &url_of(&spec), &spec, |_| {})
            .unwrap_err();
        assert_eq!(err.code(), "range_mismatch", "{header:?}: {err}");
        assert_eq!(server.seen().len(), 2);
    }
}

#[test]
fn cut_connections_resume_to_the_exact_sha256() {
    let img = image(1024 * KIB);
    let spec = spec_of(&img);
    let dir = tempfile::tempdir().unwrap();
    let time = FakeTime::new();
    let served = img.clone();
    let etag = etag_of(&spec);
    // The first four connections are cut after 200 KiB of body each.
    let server = Hostile::start(move |n, seen, c| {
        let cut = (n < 4).then_some(200 * KIB);
        c.serve(&served, seen, &etag, cut)
    });

    let got = downloader(dir.path(), &time)
        .download(&http(&server), &url_of(&spec), &spec, |_| {})
        .unwrap();

    assert_verified(&got, &img);
    let step = 200 * KIB as u64;
    assert_eq!(
        server.range_starts(),
        [0, step, 2 * step, 3 * step, 4 * step].map(Some)
    );
    assert!(
        server
            .seen()
            .iter()
            .all(|s| s.if_range.as_deref() == Some(etag_of(&spec).as_str()))
    );
    assert!(
        server.body_bytes() < img.len() as u64 * 3 / 2,
        "{}",
        server.body_bytes()
    );
    assert_eq!(got.stats.attempts, 5);
    assert_eq!(got.stats.bytes_received, img.len() as u64);
    // Each cut made progress, so each wait stayed within one backoff unit.
    let sleeps = time.sleeps();
    assert_eq!(sleeps.len(), 4);
    assert!(
        sleeps
            .iter()
            .all(|d| *d <= RetryPolicy::default().base_delay)
    );
}

#[test]
fn tampered_byte_is_refused_and_partial_removed() {
    let img = image(300 * KIB);
    let spec = spec_of(&img);
    let dir = tempfile::tempdir().unwrap();
    let time = FakeTime::new();
    let dl = downloader(dir.path(), &time);
    let mut tampered = img.clone();
    tampered[1000] ^= 0x01;
    let etag = etag_of(&spec);
    let bad = Hostile::start(move |_, seen, c| c.serve(&tampered, seen, &etag, None));

    let err = dl
        .download(&http(&bad), &url_of(&spec), &spec, |_| {})
        .unwrap_err();

    assert_eq!(err.code(), "image_hash_mismatch", "{err}");
    assert!(!err.retryable());
    assert_eq!(bad.seen().len(), 1, "a hash verdict is not retried");
    assert!(!dl.partial_path(&spec).exists());
    assert!(!dl.complete_path(&spec).exists());

    // The next call starts from zero and, from an honest source, succeeds.
    let served = img.clone();
    let etag = etag_of(&spec);
    let good = Hostile::start(move |_, seen, c| c.serve(&served, seen, &etag, None));
    let got = dl
        .download(&http(&good), &url_of(&spec), &spec, |_| {})
        .unwrap();
    assert_verified(&got, &img);
    assert_eq!(got.stats.resumed_from, 0);
    assert_eq!(good.range_starts(), [Some(0)]);
}

#[test]
fn endless_body_is_capped_at_signed_length() {
    let img = image(300 * KIB);
    let spec = spec_of(&img);
    let dir = tempfile::tempdir().unwrap();
    let time = FakeTime::new();
    let dl = downloader(dir.path(), &time);
    let served = img.clone();
    // The image, then garbage without end (no Content-Length: the body
    // ends when the connection does, which is never).
    let server = Hostile::start(move |_, _, c| {
        c.head("200 OK", &[]);
        if !c.body(&served) {
            return;
        }
        let junk = vec![0x5A; 64 * KIB];
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline && c.body(&junk) {}
    });

    let mut last = 0;
    let err = dl
        .download(&http(&server), &url_of(&spec), &spec, |p| last = p.done)
        .unwrap_err();

    assert_eq!(err.code(), "image_oversize", "{err}");
    assert!(!err.retryable());
    assert_eq!(server.seen().len(), 1);
    // Read up to the signed length, refused the chunk that went past it.
    let len = img.len() as u64;
    assert!(last <= len && last + 256 * KIB as u64 >= len, "{last}");
    assert!(!dl.partial_path(&spec).exists());
    assert!(!dl.complete_path(&spec).exists());

    // An announced oversize is refused before a byte is read.
    let served = img.clone();
    let announced = Hostile::start(move |_, _, c| {
        c.head(
            "200 OK",
            &[("content-length", (served.len() + 1).to_string())],
        );
        c.body(&served);
    });
    let err = dl
        .download(&http(&announced), &url_of(&spec), &spec, |_| {})
        .unwrap_err();
    assert_eq!(err.code(), "image_oversize");
    assert!(!dl.partial_path(&spec).exists());
}

#[test]
fn truncated_final_body_resumes() {
    let img = image(300 * KIB);
    let spec = spec_of(&img);
    let dir = tempfile::tempdir().unwrap();
    let time = FakeTime::new();
    let served = img.clone();
    let etag = etag_of(&spec);
    let short = img.len() - 10;
    // First answer: close-delimited (no Content-Length) and 10 bytes short,
    // so the client sees a clean end of body, not an error.
    let server = Hostile::start(move |n, seen, c| {
        if n == 0 {
            c.head("200 OK", &[("etag", etag.clone())]);
            c.body(&served[..short]);
        } else {
            c.serve(&served, seen, &etag, None)
        }
    });

    let got = downloader(dir.path(), &time)
        .download(&http(&server), &url_of(&spec), &spec, |_| {})
        .unwrap();

    assert_verified(&got, &img);
    assert_eq!(server.range_starts(), [Some(0), Some(short as u64)]);
    assert_eq!(got.stats.bytes_received, img.len() as u64);
    assert_eq!(got.stats.restarts, 0);
}

#[test]
fn retry_after_is_honoured() {
    let img = image(64 * KIB);
    let spec = spec_of(&img);
    let dir = tempfile::tempdir().unwrap();
    let time = FakeTime::new();
    let served = img.clone();
    let etag = etag_of(&spec);
    let server = Hostile::start(move |n, seen, c| {
        if n < 2 {
            c.answer(
                "503 Service Unavailable",
                &[
                    ("retry-after", "7".into()),
                    ("content-type", "application/json".into()),
                ],
                br#"{"error":{"code":"unavailable","message":"try later"}}"#,
            )
        } else {
            c.serve(&served, seen, &etag, None)
        }
    });

    let got = downloader(dir.path(), &time)
        .download(&http(&server), &url_of(&spec), &spec, |_| {})
        .unwrap();

    assert_verified(&got, &img);
    // Backoff alone would wait at most 2 s, then 4 s: Retry-After wins.
    assert_eq!(time.sleeps(), [Duration::from_secs(7); 2]);
    assert_eq!(got.stats.attempts, 3);
}

#[test]
fn retry_after_beyond_the_budget_ends_the_call_at_once() {
    let img = image(64 * KIB);
    let spec = spec_of(&img);
    let dir = tempfile::tempdir().unwrap();
    let time = FakeTime::new();
    let server = Hostile::start(|_, _, c| {
        c.answer(
            "429 Too Many Requests",
            &[("retry-after", "86400".into())],
            b"",
        )
    });

    let err = downloader(dir.path(), &time)
        .download(&http(&server), &url_of(&spec), &spec, |_| {})
        .unwrap_err();

    assert_eq!(err.code(), "download_budget_exhausted", "{err}");
    assert!(err.retryable());
    let Error::DownloadBudgetExhausted {
        attempts,
        retry_after,
        last,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    assert_eq!(*attempts, 1);
    assert_eq!(*retry_after, Some(Duration::from_secs(86400)));
    assert!(matches!(
        **last,
        Error::UnexpectedStatus { status: 429, .. }
    ));
    assert!(time.sleeps().is_empty(), "no pointless wait");
}

#[test]
fn budget_exhausted_is_typed_and_retryable() {
    let img = image(256 * KIB);
    let spec = spec_of(&img);
    let dir = tempfile::tempdir().unwrap();
    let time = FakeTime::new();
    let served = img.clone();
    let etag = etag_of(&spec);
    // 100 KiB once, then only 503s.
    let server = Hostile::start(move |n, seen, c| {
        if n == 0 {
            c.serve(&served, seen, &etag, Some(100 * KIB))
        } else {
            c.answer(
                "503 Service Unavailable",
                &[],
                br#"{"error":{"code":"unavailable","message":"down"}}"#,
            )
        }
    });
    let policy = RetryPolicy {
        max_stalled_attempts: 4,
        ..RetryPolicy::default()
    };
    let dl = downloader(dir.path(), &time).with_policy(policy.clone());

    let err = dl
        .download(&http(&server), &url_of(&spec), &spec, |_| {})
        .unwrap_err();

    assert_eq!(err.code(), "download_budget_exhausted", "{err}");
    assert!(err.retryable());
    let Error::DownloadBudgetExhausted {
        attempts,
        last,
        elapsed_ms,
        ..
    } = &err
    else {
        panic!("{err:?}")
    };
    // 1 attempt with progress, then 4 without.
    assert_eq!(*attempts, 5);
    assert!(matches!(
        &**last,
        Error::UnexpectedStatus { status: 503, server_code: Some(c), .. } if c == "unavailable"
    ));
    assert!(!err.to_string().contains("sig=grant"), "{err}");
    let sleeps = time.sleeps();
    assert_eq!(sleeps.len(), 4);
    let total: Duration = sleeps.iter().sum();
    assert_eq!(*elapsed_ms, total.as_millis() as u64);
    // Full jitter within a doubling cap: 1 s, then 2, 4, 8 s.
    for (i, d) in sleeps.iter().enumerate() {
        let cap = if i == 0 { 1 } else { 1 << i };
        assert!(*d <= Duration::from_secs(cap), "sleep {i}: {d:?}");
    }
    // The 100 KiB survive for the next call, which resumes from them.
    assert_eq!(
        std::fs::read(dl.partial_path(&spec)).unwrap(),
        &img[..100 * KIB]
    );
    let served = img.clone();
    let etag = etag_of(&spec);
    let good = Hostile::start(move |_, seen, c| c.serve(&served, seen, &etag, None));
    let got = dl
        .download(&http(&good), &url_of(&spec), &spec, |_| {})
        .unwrap();
    assert_verified(&got, &img);
    assert_eq!(got.stats.resumed_from, 100 * KIB as u64);
    assert_eq!(good.range_starts(), [Some(100 * KIB as u64)]);
    assert_eq!(good.body_bytes(), (img.len() - 100 * KIB) as u64);
}

#[test]
fn time_budget_is_enforced_too() {
    let img = image(64 * KIB);
    let spec = spec_of(&img);
    let dir = tempfile::tempdir().unwrap();
    let time = FakeTime::new();
    let server = Hostile::start(|_, _, c| c.answer("502 Bad Gateway", &[], b""));
    let policy = RetryPolicy {
        max_stalled_attempts: 1000,
        max_elapsed: Some(Duration::from_secs(60)),
        ..RetryPolicy::default()
    };
    let err = downloader(dir.path(), &time)
        .with_policy(policy)
        .download(&http(&server), &url_of(&spec), &spec, |_| {})
        .unwrap_err();
    assert_eq!(err.code(), "download_budget_exhausted", "{err}");
    let total: Duration = time.sleeps().iter().sum();
    assert!(total <= Duration::from_secs(60), "{total:?}");
}

#[test]
fn final_statuses_are_not_retried() {
    let img = image(64 * KIB);
    let spec = spec_of(&img);
    let dir = tempfile::tempdir().unwrap();
    let time = FakeTime::new();
    let server = Hostile::start(|_, _, c| {
        c.answer(
            "403 Forbidden",
            &[],
            br#"{"error":{"code":"forbidden","message":"no"}}"#,
        )
    });
    let err = downloader(dir.path(), &time)
        .download(&http(&server), &url_of(&spec), &spec, |_| {})
        .unwrap_err();
    assert!(
        matches!(&err, Error::UnexpectedStatus { status: 403, server_code: Some(c), .. } if c == "forbidden"),
        "{err:?}"
    );
    assert!(!err.retryable());
    assert_eq!(server.seen().len(), 1);
    assert!(time.sleeps().is_empty());
}

#[test]
fn an_expired_download_grant_is_retryable() {
    // The grant ran out during a slow download: the caller checks again for
    // a fresh link and resumes from the partial file.
    let img = image(64 * KIB);
    let spec = spec_of(&img);
    let dir = tempfile::tempdir().unwrap();
    let time = FakeTime::new();
    let server = Hostile::start(|_, _, c| {
        c.answer(
            "403 Forbidden",
            &[],
            br#"{"error":{"code":"grant_expired","message":"check again"}}"#,
        )
    });
    let err = downloader(dir.path(), &time)
        .download(&http(&server), &url_of(&spec), &spec, |_| {})
        .unwrap_err();
    let last = match &err {
        Error::DownloadBudgetExhausted { last, .. } => last.as_ref(),
        other => other,
    };
    assert!(
        matches!(last, Error::UnexpectedStatus { status: 403, server_code: Some(c), .. } if c == "grant_expired"),
        "{err:?}"
    );
    assert!(err.retryable(), "{err:?}");
}

#[test]
fn stalled_body_times_out_and_resumes() {
    let img = image(300 * KIB);
    let spec = spec_of(&img);
    let dir = tempfile::tempdir().unwrap();
    let time = FakeTime::new();
    let served = img.clone();
    let etag = etag_of(&spec);
    let server = Hostile::start(move |n, seen, c| {
        if n == 0 {
            // Headers promise everything, 100 KiB arrive, then silence.
            c.head(
                "200 OK",
                &[
                    ("content-length", served.len().to_string()),
                    ("etag", etag.clone()),
                ],
            );
            c.body(&served[..100 * KIB]);
            thread::sleep(Duration::from_secs(3));
        } else {
            c.serve(&served, seen, &etag, None)
        }
    });
    let transport = HttpTransport::with_config(
        &format!("http://{}", server.addr),
        HttpConfig {
            idle_timeout: Duration::from_millis(300),
            ..HttpConfig::default()
        },
    )
    .unwrap();

    let started = Instant::now();
    let got = downloader(dir.path(), &time)
        .download(&transport, &url_of(&spec), &spec, |_| {})
        .unwrap();

    assert_verified(&got, &img);
    assert_eq!(server.range_starts(), [Some(0), Some(100 * KIB as u64)]);
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "idle timeout, not the stall"
    );
}

#[test]
fn complete_file_is_reverified_without_a_request() {
    let img = image(64 * KIB);
    let spec = spec_of(&img);
    let dir = tempfile::tempdir().unwrap();
    let time = FakeTime::new();
    let dl = downloader(dir.path(), &time);
    let served = img.clone();
    let etag = etag_of(&spec);
    let server = Hostile::start(move |_, seen, c| c.serve(&served, seen, &etag, None));
    let first = dl
        .download(&http(&server), &url_of(&spec), &spec, |_| {})
        .unwrap();
    let again = dl
        .download(&http(&server), &url_of(&spec), &spec, |_| {})
        .unwrap();
    assert_eq!(again.path, first.path);
    assert_eq!(again.stats.attempts, 0);
    assert_eq!(server.seen().len(), 1);

    // A complete file corrupted at rest is not trusted: downloaded again.
    let mut bad = img.clone();
    bad[7] ^= 0xFF;
    std::fs::write(&first.path, &bad).unwrap();
    let third = dl
        .download(&http(&server), &url_of(&spec), &spec, |_| {})
        .unwrap();
    assert_verified(&third, &img);
    assert_eq!(server.seen().len(), 2);
}

#[test]
fn complete_partial_is_verified_without_a_request() {
    let img = image(64 * KIB);
    let spec = spec_of(&img);
    let dir = tempfile::tempdir().unwrap();
    let time = FakeTime::new();
    let dl = downloader(dir.path(), &time);
    // Every byte arrived, then the device lost power before the rename.
    std::fs::write(dl.partial_path(&spec), &img).unwrap();
    let server = Hostile::start(|_, _, c| c.answer("500 Internal Server Error", &[], b""));
    let got = dl
        .download(&http(&server), &url_of(&spec), &spec, |_| {})
        .unwrap();
    assert_verified(&got, &img);
    assert_eq!(got.stats.attempts, 0);
    assert!(server.seen().is_empty());

    // The same length with other bytes cannot become the image: restarted.
    std::fs::remove_file(&got.path).unwrap();
    let mut bad = img.clone();
    bad[0] ^= 1;
    std::fs::write(dl.partial_path(&spec), &bad).unwrap();
    let served = img.clone();
    let etag = etag_of(&spec);
    let good = Hostile::start(move |_, seen, c| c.serve(&served, seen, &etag, None));
    let got = dl
        .download(&http(&good), &url_of(&spec), &spec, |_| {})
        .unwrap();
    assert_verified(&got, &img);
    assert_eq!(good.range_starts(), [Some(0)]);
}

#[test]
fn redirects_stay_on_the_origin() {
    let img = image(64 * KIB);
    let spec = spec_of(&img);
    let served = img.clone();
    let etag = etag_of(&spec);
    let server = Hostile::start(move |_, seen, c| {
        if seen.path.starts_with("/elsewhere") {
            c.answer(
                "302 Found",
                &[("location", "http://127.0.0.2:9/v1/images/x?sig=leak".into())],
                b"",
            )
        } else if seen.path.starts_with("/old") {
            c.answer(
                "301 Moved Permanently",
                &[("location", "/v1/images/x".into())],
                b"",
            )
        } else {
            c.serve(&served, seen, &etag, None)
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let time = FakeTime::new();
    let dl = downloader(dir.path(), &time);

    let got = dl
        .download(&http(&server), "/old/x", &spec, |_| {})
        .unwrap();
    assert_verified(&got, &img);
    assert_eq!(server.seen()[1].path, "/v1/images/x");

    std::fs::remove_file(&got.path).unwrap();
    let err = dl
        .download(&http(&server), "/elsewhere/x", &spec, |_| {})
        .unwrap_err();
    assert_eq!(err.code(), "redirect_refused", "{err}");
    assert!(!err.retryable());
    assert!(!err.to_string().contains("leak"));
}

// ------------------------------------------------------- offline bundles

fn bundle(img: &[u8], spec: &ImageSpec) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let images = dir.path().join("v1/images");
    std::fs::create_dir_all(&images).unwrap();
    std::fs::write(images.join(spec.sha256.to_hex()), img).unwrap();
    std::fs::write(dir.path().join("manifest.json"), br#"{"x":1}"#).unwrap();
    dir
}

#[test]
fn file_transport_answers_like_a_range_server() {
    let img = image(10 * KIB);
    let spec = spec_of(&img);
    let root = bundle(&img, &spec);
    let t = FileTransport::new(root.path());
    let url = url_of(&spec);
    let len = img.len() as u64;

    let mut r = t.get_range(&url, 0, None).unwrap();
    assert_eq!((r.status, r.content_length), (200, Some(len)));
    let mut body = Vec::new();
    r.body.read_to_end(&mut body).unwrap();
    assert_eq!(body, img);

    let mut r = t.get_range(&url, 4000, Some("\"x\"")).unwrap();
    assert_eq!(r.status, 206);
    assert_eq!(
        r.parsed_content_range(),
        Some(ContentRange::Bytes {
            start: 4000,
            end: len - 1,
            total: Some(len)
        })
    );
    let mut body = Vec::new();
    r.body.read_to_end(&mut body).unwrap();
    assert_eq!(body, &img[4000..]);

    let r = t.get_range(&url, len, None).unwrap();
    assert_eq!(r.status, 416);
    assert_eq!(
        r.parsed_content_range(),
        Some(ContentRange::Unsatisfied { total: len })
    );
    assert_eq!(
        t.get_range("/v1/images/nothing", 0, None).unwrap().status,
        404
    );

    let doc = t.get_json("manifest.json", None, 1024).unwrap();
    assert_eq!((doc.status, doc.body.as_slice()), (200, &br#"{"x":1}"#[..]));
    assert_eq!(
        t.get_json("manifest.json", None, 3).unwrap_err().code(),
        "too_large"
    );
    assert_eq!(t.get_json("nothing.json", None, 1024).unwrap().status, 404);
    assert_eq!(
        t.post_json("/v1/device/reports", Some("tok"), b"{}", 1024)
            .unwrap_err()
            .code(),
        "unsupported"
    );
    for bad in ["../etc/passwd", "/v1/../../etc/passwd", "a\\b"] {
        assert_eq!(
            t.get_range(bad, 0, None).unwrap_err().code(),
            "invalid_field",
            "{bad}"
        );
    }
}

#[test]
fn file_transport_download_resumes_and_verifies() {
    let img = image(700 * KIB);
    let spec = spec_of(&img);
    let root = bundle(&img, &spec);
    let dir = tempfile::tempdir().unwrap();
    let time = FakeTime::new();
    let dl = downloader(dir.path(), &time);
    std::fs::write(dl.partial_path(&spec), &img[..300 * KIB]).unwrap();

    let got = dl
        .download(
            &FileTransport::new(root.path()),
            &url_of(&spec),
            &spec,
            |_| {},
        )
        .unwrap();

    assert_verified(&got, &img);
    assert_eq!(got.stats.resumed_from, 300 * KIB as u64);
    assert_eq!(got.stats.bytes_received, 400 * KIB as u64);

    // A bundle whose image was altered is refused like a tampering server.
    let mut bad = img.clone();
    bad[699 * KIB] ^= 0x80;
    std::fs::write(
        root.path().join("v1/images").join(spec.sha256.to_hex()),
        &bad,
    )
    .unwrap();
    std::fs::remove_file(&got.path).unwrap();
    let err = dl
        .download(
            &FileTransport::new(root.path()),
            &url_of(&spec),
            &spec,
            |_| {},
        )
        .unwrap_err();
    assert_eq!(err.code(), "image_hash_mismatch");
    assert!(!dl.partial_path(&spec).exists());
}

#[test]
fn a_partial_file_is_owned_by_one_download_at_a_time() {
    let img = image(64 * KIB);
    let spec = spec_of(&img);
    let root = bundle(&img, &spec);
    let dir = tempfile::tempdir().unwrap();
    let time = FakeTime::new();
    let dl = downloader(dir.path(), &time);
    let holder = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dl.partial_path(&spec))
        .unwrap();
    holder.lock().unwrap();
    let err = dl
        .download(
            &FileTransport::new(root.path()),
            &url_of(&spec),
            &spec,
            |_| {},
        )
        .unwrap_err();
    assert_eq!(err.code(), "io");
    assert!(err.retryable());
    drop(holder);
    let got = dl
        .download(
            &FileTransport::new(root.path()),
            &url_of(&spec),
            &spec,
            |_| {},
        )
        .unwrap();
    assert_verified(&got, &img);
}
