//! The connection layer: accepts TCP connections, caps how many are open,
//! and closes those that would otherwise hold a slot for ever.
//!
//! hyper parses HTTP; this module decides how long a connection may live:
//! - **idle**: a connection with no request in flight that sends nothing
//!   for `idle_timeout_secs` (a fresh one included) is closed;
//! - **slow headers**: once the first byte of a request has arrived, the
//!   whole head must follow within `header_read_timeout_secs`;
//! - **stalled transfers**: while a request is in flight, the connection
//!   must move at least `min_transfer_bytes_per_sec` (reads and writes
//!   together) averaged over each `stall_window_secs`, so a download or
//!   upload that stops is cut while a slow one that moves continues. Plain
//!   API calls are bounded by the request timeout as well (see
//!   [`crate::router`]);
//! - **the cap**: at most `max_connections` are open. At the cap, the
//!   connection idle longest is closed to make room, so new clients (a
//!   health check, a device) are still served while idle sockets fill the
//!   server; when every connection is busy, accepting waits for one to end.
//!
//! These rules are written here rather than taken from hyper because hyper
//! has only a header timeout that starts when it begins waiting for a head
//! (so it cannot tell an idle keep-alive connection from a slow client) and
//! no cap or progress rule; a tower layer cannot see a socket at all.
//!
//! Every close is counted; a summary goes to the log once a minute.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use bytes::Bytes;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt as _;

/// How long connections may live, and how many may be open.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Most open connections.
    pub max_connections: usize,
    /// Time allowed for a request's head once its first byte arrived.
    pub header_read_timeout: Duration,
    /// Time a connection without a request in flight may send nothing.
    pub idle_timeout: Duration,
    /// Least bytes per second a connection with a request in flight moves,
    /// averaged over `stall_window`.
    pub min_transfer_bytes_per_sec: u64,
    /// The window the progress rule averages over.
    pub stall_window: Duration,
}

impl Limits {
    /// How often each connection's watchdog looks at it: a quarter of the
    /// shortest limit, between 100 ms and 1 s.
    fn tick(&self) -> Duration {
        let shortest = self
            .header_read_timeout
            .min(self.idle_timeout)
            .min(self.stall_window);
        (shortest / 4).clamp(Duration::from_millis(100), Duration::from_secs(1))
    }
}

/// Why a connection was closed by this layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CloseReason {
    Idle,
    SlowHeader,
    Stalled,
    Evicted,
}

/// Counters of closes, for the periodic log summary.
#[derive(Debug, Default)]
struct Counters {
    idle: AtomicU64,
    slow_header: AtomicU64,
    stalled: AtomicU64,
    evicted: AtomicU64,
    at_cap: AtomicU64,
}

impl Counters {
    fn count(&self, reason: CloseReason) {
        let c = match reason {
            CloseReason::Idle => &self.idle,
            CloseReason::SlowHeader => &self.slow_header,
            CloseReason::Stalled => &self.stalled,
            CloseReason::Evicted => &self.evicted,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }
}

/// What the watchdog and the cap know about one connection.
#[derive(Debug)]
struct ConnState {
    /// Bytes read from the socket.
    read: AtomicU64,
    /// Bytes written to the socket.
    written: AtomicU64,
    /// Requests being answered (their response bodies not yet dropped).
    in_flight: AtomicUsize,
    /// Requests started, so the watchdog notices one that began and ended
    /// between two of its looks.
    started: AtomicU64,
    /// When the connection last had no request in flight, in ms since
    /// the server started; the cap evicts the smallest.
    idle_since_ms: AtomicU64,
    /// Set by the cap when this connection must make room.
    evict: AtomicBool,
    evicted: Notify,
}

impl ConnState {
    fn new(now_ms: u64) -> Self {
        ConnState {
            read: AtomicU64::new(0),
            written: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            started: AtomicU64::new(0),
            idle_since_ms: AtomicU64::new(now_ms),
            evict: AtomicBool::new(false),
            evicted: Notify::new(),
        }
    }
}

/// The open connections, for the cap.
#[derive(Debug)]
struct Registry {
    epoch: Instant,
    conns: Mutex<HashMap<u64, Arc<ConnState>>>,
    /// Signalled whenever a connection ends.
    ended: Notify,
    counters: Counters,
}

impl Registry {
    fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Arc<ConnState>>> {
        // The map is only inserted into and removed from; a panic while it
        // was held cannot leave it half-changed.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks the connection idle longest to close. False if every open
    /// connection has a request in flight (or is already leaving).
    fn evict_one(&self) -> bool {
        let conns = self.lock();
        let victim = conns
            .values()
            .filter(|c| {
                c.in_flight.load(Ordering::Acquire) == 0 && !c.evict.load(Ordering::Acquire)
            })
            .min_by_key(|c| c.idle_since_ms.load(Ordering::Acquire));
        match victim {
            Some(c) => {
                c.evict.store(true, Ordering::Release);
                c.evicted.notify_one();
                true
            }
            None => false,
        }
    }
}

/// Counts a request in flight on its connection until dropped: it lives in
/// the handler's future and then in the response body, so it ends when the
/// last byte was sent or the request was abandoned.
#[derive(Debug)]
struct InFlight {
    conn: Arc<ConnState>,
    registry: Arc<Registry>,
}

impl InFlight {
    fn enter(conn: &Arc<ConnState>, registry: &Arc<Registry>) -> Self {
        conn.started.fetch_add(1, Ordering::AcqRel);
        conn.in_flight.fetch_add(1, Ordering::AcqRel);
        InFlight {
            conn: conn.clone(),
            registry: registry.clone(),
        }
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if self.conn.in_flight.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.conn
                .idle_since_ms
                .store(self.registry.now_ms(), Ordering::Release);
        }
    }
}

/// A response body that holds its request's [`InFlight`] guard.
struct GuardedBody {
    inner: Body,
    _guard: InFlight,
}

impl http_body::Body for GuardedBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, axum::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> http_body::SizeHint {
        self.inner.size_hint()
    }
}

/// A socket that counts the bytes it moves.
struct Metered {
    stream: TcpStream,
    conn: Arc<ConnState>,
}

impl AsyncRead for Metered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let res = Pin::new(&mut self.stream).poll_read(cx, buf);
        let n = buf.filled().len() - before;
        if n > 0 {
            self.conn.read.fetch_add(n as u64, Ordering::Relaxed);
        }
        res
    }
}

impl AsyncWrite for Metered {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.stream).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &res {
            self.conn.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let res = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        if let Poll::Ready(Ok(n)) = &res {
            self.conn.written.fetch_add(*n as u64, Ordering::Relaxed);
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

/// What the watchdog remembers between two looks at a connection.
struct Watch {
    started: u64,
    /// Waiting for a request: since when, and the bytes read by then.
    waiting: Option<(Instant, u64)>,
    /// The first byte of the next head arrived (seen) at this instant.
    head_started: Option<Instant>,
    /// Progress window of a busy connection: start and bytes moved by then.
    window: Option<(Instant, u64)>,
}

impl Watch {
    fn new(now: Instant) -> Self {
        Watch {
            started: 0,
            waiting: Some((now, 0)),
            head_started: None,
            window: None,
        }
    }

    /// Looks at the connection at `now`; `Some` if it must close.
    fn look(&mut self, c: &ConnState, limits: &Limits, now: Instant) -> Option<CloseReason> {
        let read = c.read.load(Ordering::Relaxed);
        let moved = read + c.written.load(Ordering::Relaxed);
        let started = c.started.load(Ordering::Acquire);
        let busy = c.in_flight.load(Ordering::Acquire) > 0;
        if started != self.started {
            // A request began since the last look: every clock restarts.
            self.started = started;
            self.waiting = None;
            self.head_started = None;
            self.window = None;
        }
        if busy {
            self.waiting = None;
            self.head_started = None;
            let (since, mark) = *self.window.get_or_insert((now, moved));
            let elapsed = now.duration_since(since);
            if elapsed >= limits.stall_window {
                let needed = limits.min_transfer_bytes_per_sec as f64 * elapsed.as_secs_f64();
                if ((moved - mark) as f64) < needed {
                    return Some(CloseReason::Stalled);
                }
                self.window = Some((now, moved));
            }
            return None;
        }
        self.window = None;
        let (since, mark) = *self.waiting.get_or_insert((now, read));
        if self.head_started.is_none() && read > mark {
            self.head_started = Some(now);
        }
        match self.head_started {
            Some(t) if now.duration_since(t) >= limits.header_read_timeout => {
                Some(CloseReason::SlowHeader)
            }
            None if now.duration_since(since) >= limits.idle_timeout => Some(CloseReason::Idle),
            _ => None,
        }
    }
}

/// Serves `router` on `listener` under `limits` until `shutdown` is
/// cancelled, then lets in-flight requests finish (stalled ones are still
/// cut) and returns when every connection has closed.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let registry = Arc::new(Registry {
        epoch: Instant::now(),
        conns: Mutex::new(HashMap::new()),
        ended: Notify::new(),
        counters: Counters::default(),
    });
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        // The watchdog owns header and idle timing (see the module docs).
        .header_read_timeout(None)
        .max_buf_size(64 * 1024);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(64)
        .max_header_list_size(64 * 1024);
    let builder = Arc::new(builder);
    let tracker = TaskTracker::new();
    tracker.spawn(log_summaries(registry.clone(), shutdown.clone()));
    let mut next_id: u64 = 0;
    let mut cap_logged: Option<Instant> = None;
    loop {
        // Make room before accepting: at the cap, the longest-idle
        // connection goes; if all are busy, wait for one to end.
        let mut counted = false;
        loop {
            let ended = registry.ended.notified();
            if registry.lock().len() < limits.max_connections {
                break;
            }
            if !counted {
                counted = true;
                registry.counters.at_cap.fetch_add(1, Ordering::Relaxed);
            }
            if cap_logged.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                cap_logged = Some(Instant::now());
                tracing::warn!(
                    max_connections = limits.max_connections,
                    "connection limit reached: closing the longest-idle connection for each new \
                     one, or waiting while all are busy (max_connections)"
                );
            }
            let evicting = registry.evict_one();
            tokio::select! {
                _ = ended => {}
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(Duration::from_millis(if evicting { 50 } else { 1000 })) => {}
            }
        }
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors, or the peer gave up before
                    // accept: never spin on it.
                    tracing::warn!(error = %e, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        let _ = stream.set_nodelay(true);
        next_id += 1;
        let id = next_id;
        let conn = Arc::new(ConnState::new(registry.now_ms()));
        registry.lock().insert(id, conn.clone());
        tracker.spawn(connection(
            stream,
            peer,
            id,
            conn,
            registry.clone(),
            builder.clone(),
            router.clone(),
            limits.clone(),
            shutdown.clone(),
        ));
    }
    tracker.close();
    tracker.wait().await;
}

#[allow(clippy::too_many_arguments)] // one task's whole context, passed once
async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    id: u64,
    conn: Arc<ConnState>,
    registry: Arc<Registry>,
    builder: Arc<hyper_util::server::conn::auto::Builder<TokioExecutor>>,
    router: Router,
    limits: Limits,
    shutdown: CancellationToken,
) {
    let io = TokioIo::new(Metered {
        stream,
        conn: conn.clone(),
    });
    let svc_conn = conn.clone();
    let svc_registry = registry.clone();
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            let guard = InFlight::enter(&svc_conn, &svc_registry);
            req.extensions_mut().insert(ConnectInfo(peer));
            let router = router.clone();
            async move {
                let res = router.oneshot(req.map(Body::new)).await;
                res.map(|r| {
                    r.map(|b| {
                        Body::new(GuardedBody {
                            inner: b,
                            _guard: guard,
                        })
                    })
                })
            }
        });
    let http = builder.serve_connection(io, service);
    tokio::pin!(http);
    let mut watch = Watch::new(Instant::now());
    let mut tick = tokio::time::interval(limits.tick());
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut draining = false;
    let reason = loop {
        tokio::select! {
            res = http.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!(error = %e, "connection ended with an error");
                }
                break None;
            }
            _ = conn.evicted.notified() => break Some(CloseReason::Evicted),
            _ = shutdown.cancelled(), if !draining => {
                draining = true;
                http.as_mut().graceful_shutdown();
            }
            _ = tick.tick() => {
                if let Some(reason) = watch.look(&conn, &limits, Instant::now()) {
                    break Some(reason);
                }
            }
        }
    };
    if let Some(reason) = reason {
        registry.counters.count(reason);
        tracing::debug!(?reason, "closing connection");
    }
    // Dropping the hyper connection closes the socket.
    registry.lock().remove(&id);
    registry.ended.notify_waiters();
}

/// Logs, once a minute, how many connections were closed and why.
async fn log_summaries(registry: Arc<Registry>, shutdown: CancellationToken) {
    let mut every = tokio::time::interval(Duration::from_secs(60));
    every.tick().await;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = every.tick() => {}
        }
        let c = &registry.counters;
        let take = |a: &AtomicU64| a.swap(0, Ordering::Relaxed);
        let (idle, slow, stalled, evicted, at_cap) = (
            take(&c.idle),
            take(&c.slow_header),
            take(&c.stalled),
            take(&c.evicted),
            take(&c.at_cap),
        );
        if idle + slow + stalled + evicted + at_cap > 0 {
            tracing::info!(
                open = registry.lock().len(),
                closed_idle = idle,
                closed_slow_header = slow,
                closed_stalled = stalled,
                closed_for_room = evicted,
                accepts_at_cap = at_cap,
                "connections closed by the limits in the last minute"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_connections: 10,
            header_read_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(5),
            min_transfer_bytes_per_sec: 100,
            stall_window: Duration::from_secs(10),
        }
    }

    #[test]
    fn a_silent_connection_is_idle_after_the_idle_timeout() {
        let t0 = Instant::now();
        let c = ConnState::new(0);
        let mut w = Watch::new(t0);
        assert_eq!(w.look(&c, &limits(), t0 + Duration::from_secs(4)), None);
        assert_eq!(
            w.look(&c, &limits(), t0 + Duration::from_secs(5)),
            Some(CloseReason::Idle)
        );
    }

    #[test]
    fn a_trickled_head_is_cut_at_the_header_timeout() {
        let t0 = Instant::now();
        let c = ConnState::new(0);
        let mut w = Watch::new(t0);
        c.read.store(3, Ordering::Relaxed);
        assert_eq!(w.look(&c, &limits(), t0 + Duration::from_secs(1)), None);
        c.read.store(9, Ordering::Relaxed);
        assert_eq!(w.look(&c, &limits(), t0 + Duration::from_secs(2)), None);
        assert_eq!(
            w.look(&c, &limits(), t0 + Duration::from_secs(3)),
            Some(CloseReason::SlowHeader)
        );
    }

    #[test]
    fn a_slow_transfer_continues_and_a_stalled_one_is_cut() {
        let t0 = Instant::now();
        let c = ConnState::new(0);
        let mut w = Watch::new(t0);
        c.started.store(1, Ordering::Relaxed);
        c.in_flight.store(1, Ordering::Relaxed);
        assert_eq!(w.look(&c, &limits(), t0), None);
        // 1 000 bytes in 10 s is the minimum: it continues.
        c.written.store(1_000, Ordering::Relaxed);
        assert_eq!(w.look(&c, &limits(), t0 + Duration::from_secs(10)), None);
        // Then 999 in the next 10 s: cut.
        c.written.store(1_999, Ordering::Relaxed);
        assert_eq!(
            w.look(&c, &limits(), t0 + Duration::from_secs(20)),
            Some(CloseReason::Stalled)
        );
    }

    #[test]
    fn a_request_between_two_looks_restarts_the_idle_clock() {
        let t0 = Instant::now();
        let c = ConnState::new(0);
        let mut w = Watch::new(t0);
        assert_eq!(w.look(&c, &limits(), t0 + Duration::from_secs(4)), None);
        // A whole request came and went before the next look.
        c.started.store(1, Ordering::Relaxed);
        c.read.store(200, Ordering::Relaxed);
        assert_eq!(w.look(&c, &limits(), t0 + Duration::from_secs(6)), None);
        assert_eq!(w.look(&c, &limits(), t0 + Duration::from_secs(10)), None);
        assert_eq!(
            w.look(&c, &limits(), t0 + Duration::from_secs(11)),
            Some(CloseReason::Idle)
        );
    }
}
