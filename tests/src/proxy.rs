//! A fault-injecting HTTP/1.1 proxy for end-to-end tests.
//!
//! It sits on a loopback port between a client and a real server, one
//! thread per connection, and handles exactly one request per connection
//! (it forces `Connection: close` both ways). Each connection gets a
//! [`Plan`] from a script (connection `i` gets `script[i]`, later ones
//! pass through), and every random choice (where to cut, which byte to
//! flip) comes from a xorshift generator seeded with `(seed, i)`, so a run
//! is reproducible.
//!
//! It parses just enough HTTP: the request head and a `Content-Length`
//! request body, and the response head with its `Content-Length` (the body
//! is otherwise read until the server closes). Body bytes written to the
//! client are counted per path (query removed).

use std::collections::BTreeMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// A tiny deterministic generator (xorshift64*).
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, zero included).
    pub fn new(seed: u64) -> Self {
        let mut r = Rng(seed ^ 0x9e37_79b9_7f4a_7c15);
        if r.0 == 0 {
            r.0 = 1;
        }
        r.next_u64();
        r
    }

    /// The next value.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..hi` (`lo` when the range is empty).
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            lo
        } else {
            lo + self.next_u64() % (hi - lo)
        }
    }
}

/// A body offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// This many body bytes into the answer.
    Fixed(u64),
    /// Uniform in `1..content_length` of the answer.
    Random,
}

/// What the proxy does to one connection. [`Plan::pass`] changes nothing;
/// the builder methods add one fault each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Plan {
    /// Close the connection after this many body bytes.
    pub cut: Option<At>,
    /// Pause this long after this many body bytes, then go on.
    pub stall: Option<(At, Duration)>,
    /// Remove `Range` and `If-Range` from the request: the server then
    /// answers a range request with a full 200.
    pub drop_range: bool,
    /// Add this to the start of the answer's `Content-Range`.
    pub shift_content_range: Option<i64>,
    /// Flip (xor 0xff) the body byte at this offset.
    pub flip: Option<At>,
}

impl Plan {
    /// Passes the connection through unchanged.
    pub fn pass() -> Self {
        Plan::default()
    }
    /// Cuts the connection after `at` body bytes.
    pub fn cut(mut self, at: At) -> Self {
        self.cut = Some(at);
        self
    }
    /// Stalls `pause` after `at` body bytes.
    pub fn stall(mut self, at: At, pause: Duration) -> Self {
        self.stall = Some((at, pause));
        self
    }
    /// Drops the request's `Range` and `If-Range` headers.
    pub fn drop_range(mut self) -> Self {
        self.drop_range = true;
        self
    }
    /// Moves the start of the answer's `Content-Range` by `delta`.
    pub fn shift_content_range(mut self, delta: i64) -> Self {
        self.shift_content_range = Some(delta);
        self
    }
    /// Flips the body byte at `at`.
    pub fn flip(mut self, at: At) -> Self {
        self.flip = Some(at);
        self
    }
}

/// What happened on one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnLog {
    /// Connection index (accept order).
    pub index: usize,
    /// Request method.
    pub method: String,
    /// Request path, without query.
    pub path: String,
    /// The request's `Range` header as the client sent it.
    pub range: Option<String>,
    /// The answer's status.
    pub status: u16,
    /// Body bytes written to the client.
    pub forwarded: u64,
    /// Where the connection was cut, if it was.
    pub cut_at: Option<u64>,
    /// Which body offset was flipped, if one was.
    pub flipped_at: Option<u64>,
    /// Where the connection stalled, if it did.
    pub stalled_at: Option<u64>,
}

#[derive(Debug, Default)]
struct State {
    script: Vec<Plan>,
    replacements: Vec<(String, Vec<u8>)>,
    /// When set, the script applies only to requests whose path starts
    /// with this prefix, counted among themselves.
    script_path: Option<String>,
    path_next: usize,
    next: usize,
    per_path: BTreeMap<String, u64>,
    log: Vec<ConnLog>,
}

/// A running proxy; stops accepting when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl Proxy {
    /// Starts a proxy on `127.0.0.1:0` in front of `upstream` (a base URL
    /// such as `http://127.0.0.1:4000`, or `host:port`).
    pub fn start(upstream: &str, seed: u64, script: Vec<Plan>) -> Proxy {
        let upstream = upstream
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_string();
        let listener = TcpListener::bind("127.0.0.1:0").expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let state = Arc::new(Mutex::new(State {
            script,
            ..State::default()
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, sp) = (state.clone(), stop.clone());
        thread::spawn(move || {
            for conn in listener.incoming() {
                if sp.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(client) = conn else { continue };
                let (index, plan, replacements) = {
                    let mut s = st.lock().unwrap();
                    let i = s.next;
                    s.next += 1;
                    let plan = if s.script_path.is_some() {
                        Plan::pass()
                    } else {
                        s.script.get(i).cloned().unwrap_or_default()
                    };
                    (i, plan, s.replacements.clone())
                };
                let up = upstream.clone();
                let st = st.clone();
                let rng = Rng::new(seed.wrapping_mul(1_000_003).wrapping_add(index as u64));
                thread::spawn(move || {
                    let mut handler = Handler {
                        index,
                        plan,
                        rng,
                        replacements,
                        state: st,
                    };
                    // A failed connection is what fault injection is for;
                    // the client sees it, the proxy has nothing to report.
                    let _ = handler.run(client, &up);
                });
            }
        });
        Proxy { addr, state, stop }
    }

    /// Like [`Proxy::start`], but the script applies only to requests whose
    /// path starts with `path_prefix`: the `i`-th such request gets
    /// `script[i]`; every other request (and later matching ones) passes
    /// through. For clients that interleave other requests (reports)
    /// with the ones under test.
    pub fn start_on_path(upstream: &str, seed: u64, path_prefix: &str, script: Vec<Plan>) -> Proxy {
        let proxy = Proxy::start(upstream, seed, Vec::new());
        {
            let mut s = proxy.state.lock().unwrap();
            s.script = script;
            s.script_path = Some(path_prefix.to_string());
        }
        proxy
    }

    /// Base URL of the proxy, e.g. `http://127.0.0.1:40123`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Answers requests whose path starts with `path_prefix` with `body`
    /// instead of the server's body (status and other headers kept,
    /// `Content-Length` fixed), from the next connection on.
    pub fn replace_body(&self, path_prefix: &str, body: Vec<u8>) {
        self.state
            .lock()
            .unwrap()
            .replacements
            .push((path_prefix.to_string(), body));
    }

    /// Body bytes forwarded to clients, all paths.
    pub fn total_bytes(&self) -> u64 {
        self.state.lock().unwrap().per_path.values().sum()
    }

    /// Body bytes forwarded to clients for paths starting with `prefix`.
    pub fn bytes_for(&self, prefix: &str) -> u64 {
        let s = self.state.lock().unwrap();
        s.per_path
            .iter()
            .filter(|(p, _)| p.starts_with(prefix))
            .map(|(_, n)| n)
            .sum()
    }

    /// What each finished connection did, in completion order.
    pub fn log(&self) -> Vec<ConnLog> {
        self.state.lock().unwrap().log.clone()
    }

    /// Waits (up to 30 s) until `n` connections have finished on the
    /// proxy's side, which may be a little after the client has read the
    /// whole answer, and returns the log in connection order.
    pub fn wait_logged(&self, n: usize) -> Vec<ConnLog> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let mut log = self.log();
            if log.len() >= n || std::time::Instant::now() > deadline {
                log.sort_by_key(|c| c.index);
                return log;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

struct Handler {
    index: usize,
    plan: Plan,
    rng: Rng,
    replacements: Vec<(String, Vec<u8>)>,
    state: Arc<Mutex<State>>,
}

/// A parsed message head: first line and headers in order.
struct Head {
    first: String,
    headers: Vec<(String, String)>,
}

impl Head {
    fn read(r: &mut impl BufRead) -> io::Result<Head> {
        let mut first = String::new();
        if r.read_line(&mut first)? == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "no head"));
        }
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            if r.read_line(&mut line)? == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "cut head"));
            }
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                break;
            }
            if let Some((k, v)) = line.split_once(':') {
                headers.push((k.trim().to_string(), v.trim().to_string()));
            }
        }
        Ok(Head {
            first: first.trim_end_matches(['\r', '\n']).to_string(),
            headers,
        })
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn remove(&mut self, name: &str) {
        self.headers.retain(|(k, _)| !k.eq_ignore_ascii_case(name));
    }

    fn set(&mut self, name: &str, value: String) {
        self.remove(name);
        self.headers.push((name.to_string(), value));
    }

    fn content_length(&self) -> Option<u64> {
        self.get("content-length").and_then(|v| v.parse().ok())
    }

    fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.first);
        for (k, v) in &self.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

/// `bytes S-E/T` with S (and E) moved by `delta`.
fn shift_range(value: &str, delta: i64) -> String {
    let parsed = value.strip_prefix("bytes ").and_then(|rest| {
        let (range, total) = rest.split_once('/')?;
        let (s, e) = range.split_once('-')?;
        Some((s.parse::<i64>().ok()?, e.parse::<i64>().ok()?, total))
    });
    match parsed {
        Some((s, e, total)) => {
            let s = (s + delta).max(0);
            let e = (e + delta).max(s);
            format!("bytes {s}-{e}/{total}")
        }
        None => value.to_string(),
    }
}

impl Handler {
    fn offset(&mut self, at: At, len: Option<u64>) -> u64 {
        match at {
            At::Fixed(n) => n,
            At::Random => self.rng.range(1, len.unwrap_or(2).max(2)),
        }
    }

    fn run(&mut self, client: TcpStream, upstream: &str) -> io::Result<()> {
        let timeout = Some(Duration::from_secs(60));
        client.set_read_timeout(timeout)?;
        client.set_write_timeout(timeout)?;
        let mut from_client = BufReader::new(client.try_clone()?);
        let mut to_client = client;

        let mut req = Head::read(&mut from_client)?;
        let mut parts = req.first.split_whitespace();
        let method = parts.next().unwrap_or_default().to_string();
        let target = parts.next().unwrap_or_default().to_string();
        let path = target.split('?').next().unwrap_or_default().to_string();
        let range = req.get("range").map(str::to_string);
        {
            let mut s = self.state.lock().unwrap();
            if s.script_path
                .as_ref()
                .is_some_and(|p| path.starts_with(p.as_str()))
            {
                let i = s.path_next;
                s.path_next += 1;
                self.plan = s.script.get(i).cloned().unwrap_or_default();
            }
        }
        let mut req_body = vec![0u8; req.content_length().unwrap_or(0) as usize];
        from_client.read_exact(&mut req_body)?;
        if self.plan.drop_range {
            req.remove("range");
            req.remove("if-range");
        }
        req.set("Connection", "close".into());

        let server = TcpStream::connect(upstream)?;
        server.set_read_timeout(timeout)?;
        let mut to_server = server.try_clone()?;
        to_server.write_all(&req.to_bytes())?;
        to_server.write_all(&req_body)?;
        let mut from_server = BufReader::with_capacity(64 * 1024, server);

        let mut res = Head::read(&mut from_server)?;
        let status = res
            .first
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        res.set("Connection", "close".into());
        if let Some(delta) = self.plan.shift_content_range
            && let Some(cr) = res.get("content-range").map(str::to_string)
        {
            res.set("Content-Range", shift_range(&cr, delta));
        }
        let len = res.content_length();
        let replacement = self
            .replacements
            .iter()
            .find(|(p, _)| path.starts_with(p.as_str()))
            .map(|(_, b)| b.clone());
        let mut body: Box<dyn Read> = match (replacement, len) {
            (Some(new), _) => {
                let mut old = Vec::new();
                match len {
                    Some(n) => (&mut from_server).take(n).read_to_end(&mut old)?,
                    None => from_server.read_to_end(&mut old)?,
                };
                res.remove("transfer-encoding");
                res.set("Content-Length", new.len().to_string());
                Box::new(io::Cursor::new(new))
            }
            (None, Some(n)) => Box::new(from_server.take(n)),
            (None, None) => Box::new(from_server),
        };
        let len = res.content_length();

        let cut = self.plan.cut.map(|a| self.offset(a, len));
        let stall = self.plan.stall.map(|(a, d)| (self.offset(a, len), d));
        let flip = self.plan.flip.map(|a| self.offset(a, len));
        to_client.write_all(&res.to_bytes())?;

        let mut log = ConnLog {
            index: self.index,
            method,
            path,
            range,
            status,
            forwarded: 0,
            cut_at: None,
            flipped_at: None,
            stalled_at: None,
        };
        let result = self.copy(&mut body, &mut to_client, cut, stall, flip, &mut log);
        if cut.is_some_and(|c| log.forwarded >= c) {
            log.cut_at = Some(log.forwarded);
        }
        let _ = to_client.shutdown(Shutdown::Both);
        let mut s = self.state.lock().unwrap();
        *s.per_path.entry(log.path.clone()).or_default() += log.forwarded;
        s.log.push(log);
        result
    }

    fn copy(
        &mut self,
        body: &mut dyn Read,
        out: &mut TcpStream,
        cut: Option<u64>,
        mut stall: Option<(u64, Duration)>,
        flip: Option<u64>,
        log: &mut ConnLog,
    ) -> io::Result<()> {
        let mut buf = vec![0u8; 64 * 1024];
        let mut pos = 0u64;
        loop {
            // The most bytes this write may carry before the next event.
            let mut limit = buf.len() as u64;
            if let Some(c) = cut {
                if pos >= c {
                    return Ok(());
                }
                limit = limit.min(c - pos);
            }
            if let Some((s, pause)) = stall {
                if pos >= s {
                    log.stalled_at = Some(pos);
                    out.flush()?;
                    thread::sleep(pause);
                    stall = None;
                } else {
                    limit = limit.min(s - pos);
                }
            }
            let n = body.read(&mut buf[..limit as usize])?;
            if n == 0 {
                return Ok(());
            }
            let chunk = &mut buf[..n];
            if let Some(f) = flip
                && f >= pos
                && f < pos + n as u64
            {
                chunk[(f - pos) as usize] ^= 0xff;
                log.flipped_at = Some(f);
            }
            out.write_all(chunk)?;
            pos += n as u64;
            log.forwarded = pos;
        }
    }
}
