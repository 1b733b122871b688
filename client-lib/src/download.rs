//! Resumable download of one signed image into a work directory.
//!
//! [`Downloader::download`] fetches the image an [`ImageSpec`] describes
//! through any [`Transport`], surviving cut connections, restarts of the
//! device and hostile sources, and returns the path of a complete file whose
//! length and sha256 are the signed ones.
//!
//! How, and why:
//!
//! - **One partial file per image**, `<work_dir>/<sha256>.partial`, kept
//!   across attempts and runs, and renamed to `<work_dir>/<sha256>` once
//!   verified. It is locked (`flock`) while a download owns it, so two
//!   processes never interleave writes.
//! - **On start, the partial file is re-hashed** and the download resumes
//!   from its length. SHA-256's internal state cannot be saved portably
//!   (the `sha2` crate does not serialise it, and a state file would be one
//!   more thing to keep consistent with the data across power cuts), and
//!   re-reading a prefix from local flash is an order of magnitude cheaper
//!   than fetching it again over the network.
//! - **Resume** asks for `Range: bytes=<len>-` with
//!   `If-Range: "<sha256>"` (the server's strong ETag). A 206 is used only
//!   when its `Content-Range` starts exactly at `<len>`; otherwise it is
//!   [`Error::RangeMismatch`]: its body is not read, the partial file is
//!   kept, the request is tried once more, and a second mismatch in a row
//!   ends the download (retryable later: the bytes on disk are intact, the
//!   source is what misbehaved). A **200** answer to a range request means
//!   the source sends the whole image: the partial file is truncated and
//!   the hash restarted — never appended to (rustup#4710).
//! - **Capped at the signed length**: at most one byte past it is read, and
//!   a source sending more (or announcing more in `Content-Length` or
//!   `Content-Range`) is [`Error::ImageOversize`]. Nothing from such a source
//!   is kept: the partial file is removed.
//! - **A partial file that is already complete** (a crash before the
//!   rename) is verified without any request, so a 416 is never needed to
//!   learn that; a 416 for a shorter partial file means the source holds
//!   less than the signed image: [`Error::UnexpectedStatus`], not retried.
//! - **Final check** by [`ImageHasher::finish`]: exact length and sha256. A
//!   mismatch means the source served other bytes than the signed ones:
//!   the partial file is removed and the error is
//!   [`Error::ImageHashMismatch`], which is not retryable — resuming cannot
//!   repair bytes already on disk, and the next call starts from zero.
//! - **Retries** with exponential backoff and full jitter
//!   (delay = random in `[0, min(max_delay, base_delay * 2^n)]`), `n` being
//!   the failures in a row *without progress*: an attempt that leaves the
//!   partial file longer than it has ever been in this call resets `n`, so a
//!   poor link that cuts every few megabytes still finishes, while a source
//!   that never gets further (or restarts with a 200 and cuts again) runs out
//!   of [`RetryPolicy::max_stalled_attempts`]. A `Retry-After` is honoured
//!   as a minimum delay. When the budget runs out the error is
//!   [`Error::DownloadBudgetExhausted`] (retryable), carrying the last cause.
//!   Failures of the device itself (its disk) are returned at once.
//! - **A link that needs renewing** is not asked again: a 403
//!   `grant_expired` from the server, or a 400/403 from an allowed download
//!   origin the server redirected to (the object store refused its
//!   presigned URL: expired or tampered with;
//!   [`Error::PresignedUrlRefused`]), ends the call at once with that
//!   retryable error ([`Error::needs_fresh_grant`]). The caller's next
//!   update check hands out a fresh link, and the download resumes from the
//!   partial file. Other statuses from such an origin are judged like the
//!   server's.
//! - **Constant memory**: one [`CHUNK_BYTES`] buffer per call; the partial
//!   file is `fdatasync`ed every [`Downloader::with_sync_interval`] bytes and
//!   before verification, so a power cut loses little, and whatever it
//!   corrupts is caught by the final hash.
//!
//! This module must never return a path to bytes that did not pass the
//! signed length and sha256 check, and never append the body of a 200 to a
//! partial file.

use std::collections::hash_map::RandomState;
use std::fs::{self, File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::digest::Sha256Digest;
use crate::error::{Error, Result};
use crate::image::{CHUNK_BYTES, ImageHasher, verify_reader};
use crate::manifest::ImageSpec;
use crate::transport::{
    ContentRange, RoutedRangeReply, Transport, error_code_from_body, redact_url,
    store_error_code_from_body,
};

/// Where the downloader gets the time and how it waits. Injected so tests
/// can run backoff schedules without sleeping.
pub trait TimeSource: Send + Sync {
    /// The current instant.
    fn now(&self) -> Instant;
    /// Blocks for `duration`.
    fn sleep(&self, duration: Duration);
}

/// The real clock and [`std::thread::sleep`].
#[derive(Debug, Clone, Copy, Default)]
pub struct RealTime;

impl TimeSource for RealTime {
    fn now(&self) -> Instant {
        Instant::now()
    }
    fn sleep(&self, duration: Duration) {
        std::thread::sleep(duration);
    }
}

/// How long a download keeps trying. See the module documentation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in a row that fail without the partial file growing past
    /// its longest length in this call, after which the download gives up.
    /// Default 8.
    pub max_stalled_attempts: u32,
    /// No new attempt starts once this much time has passed since the call
    /// began (including the wait before it). `None`: no time limit.
    /// Default 6 hours.
    pub max_elapsed: Option<Duration>,
    /// Backoff unit. Default 1 s.
    pub base_delay: Duration,
    /// Longest backoff between two attempts (before `Retry-After`).
    /// Default 5 min.
    pub max_delay: Duration,
    /// Longest `Retry-After` waited for within a call; a source asking for
    /// more ends the call with [`Error::DownloadBudgetExhausted`] naming the
    /// wait, so the caller can schedule the next try. Default 30 min.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_stalled_attempts: 8,
            max_elapsed: Some(Duration::from_secs(6 * 3600)),
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(300),
            max_retry_after: Duration::from_secs(1800),
        }
    }
}

/// A progress report, given after every chunk written and whenever the
/// download restarts from zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes of the image on disk and hashed.
    pub done: u64,
    /// The signed length.
    pub total: u64,
    /// Current transfer rate, in bytes per second (measured over about a
    /// second; 0 until there is something to measure).
    pub rate_bytes_per_sec: u64,
}

/// What one call to [`Downloader::download`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DownloadStats {
    /// Requests made (0 when a complete, verified file was already there).
    pub attempts: u32,
    /// Bytes already on disk (and re-hashed) when the call started.
    pub resumed_from: u64,
    /// Body bytes read from the transport in this call.
    pub bytes_received: u64,
    /// 200 answers to a range request that restarted the file from zero.
    pub restarts: u32,
}

/// A complete image whose length and sha256 are the signed ones.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// The verified file, `<work_dir>/<sha256>`.
    pub path: PathBuf,
    /// Its sha256 (equal to the signed one).
    pub sha256: Sha256Digest,
    /// Its length (equal to the signed one).
    pub length: u64,
    /// What the call did.
    pub stats: DownloadStats,
}

/// Downloads signed images into a work directory; see the module
/// documentation.
///
/// ```
/// use firmup_client::{Downloader, FileTransport, ImageSpec, Sha256Digest};
///
/// # fn main() -> Result<(), Box<dyn std::error::Error>> {
/// # let tmp = std::env::temp_dir().join(format!("firmup-doc-{}", std::process::id()));
/// // An offline bundle holding the image, as a USB stick would.
/// let image = b"signed firmware bytes".to_vec();
/// let spec = ImageSpec {
///     name: "firmware.img".into(),
///     target: "rootfs".into(),
///     length: image.len() as u64,
///     sha256: Sha256Digest::of(&image),
/// };
/// std::fs::create_dir_all(tmp.join("bundle"))?;
/// std::fs::write(tmp.join("bundle/firmware.img"), &image)?;
///
/// let downloader = Downloader::new(tmp.join("work"));
/// let done = downloader.download(
///     &FileTransport::new(tmp.join("bundle")),
///     "firmware.img",
///     &spec,
///     |p| eprintln!("{}/{} bytes, {} B/s", p.done, p.total, p.rate_bytes_per_sec),
/// )?;
/// assert_eq!(std::fs::read(&done.path)?, image);
/// # std::fs::remove_dir_all(&tmp)?;
/// # Ok(())
/// # }
/// ```
#[derive(Clone)]
pub struct Downloader {
    work_dir: PathBuf,
    policy: RetryPolicy,
    time: Arc<dyn TimeSource>,
    sync_every_bytes: u64,
}

impl std::fmt::Debug for Downloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Downloader")
            .field("work_dir", &self.work_dir)
            .field("policy", &self.policy)
            .field("sync_every_bytes", &self.sync_every_bytes)
            .finish_non_exhaustive()
    }
}

/// Default interval between two `fdatasync`s of the partial file.
pub const DEFAULT_SYNC_INTERVAL_BYTES: u64 = 64 * 1024 * 1024;

impl Downloader {
    /// A downloader keeping its files in `work_dir` (created if missing),
    /// with the default [`RetryPolicy`] and the real clock.
    pub fn new(work_dir: impl Into<PathBuf>) -> Self {
        Downloader {
            work_dir: work_dir.into(),
            policy: RetryPolicy::default(),
            time: Arc::new(RealTime),
            sync_every_bytes: DEFAULT_SYNC_INTERVAL_BYTES,
        }
    }

    /// Uses `policy` for retries.
    pub fn with_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// Uses `time` for the clock and for waiting (tests).
    pub fn with_time_source(mut self, time: Arc<dyn TimeSource>) -> Self {
        self.time = time;
        self
    }

    /// Syncs the partial file to storage every `bytes` bytes (at least one
    /// chunk). Default [`DEFAULT_SYNC_INTERVAL_BYTES`].
    pub fn with_sync_interval(mut self, bytes: u64) -> Self {
        self.sync_every_bytes = bytes.max(1);
        self
    }

    /// The work directory.
    pub fn work_dir(&self) -> &Path {
        &self.work_dir
    }

    /// The retry policy in force.
    pub fn policy(&self) -> &RetryPolicy {
        &self.policy
    }

    /// Where the partial download of `spec` is kept.
    pub fn partial_path(&self, spec: &ImageSpec) -> PathBuf {
        self.work_dir
            .join(format!("{}.partial", spec.sha256.to_hex()))
    }

    /// Where the verified image of `spec` ends up.
    pub fn complete_path(&self, spec: &ImageSpec) -> PathBuf {
        self.work_dir.join(spec.sha256.to_hex())
    }

    /// Downloads the image `spec` describes from `url` through `transport`,
    /// resuming what earlier calls left, and returns the verified file.
    ///
    /// A complete file from an earlier call is re-verified and returned
    /// without any request. Errors: [`Error::ImageHashMismatch`] and
    /// [`Error::ImageOversize`] (source served other bytes; partial file
    /// removed), [`Error::RangeMismatch`] (twice in a row),
    /// [`Error::UnexpectedStatus`] for statuses that retrying cannot help
    /// (404, 403 `grant_expired`: check for a fresh URL),
    /// [`Error::PresignedUrlRefused`] (check for a fresh URL too),
    /// [`Error::DownloadBudgetExhausted`], and local storage errors.
    pub fn download(
        &self,
        transport: &dyn Transport,
        url: &str,
        spec: &ImageSpec,
        mut progress: impl FnMut(&Progress),
    ) -> Result<Downloaded> {
        let started = self.time.now();
        fs::create_dir_all(&self.work_dir)
            .map_err(|e| Error::storage_io(format!("creating {}", self.work_dir.display()), e))?;
        if let Some(done) = self.reuse_complete(spec)? {
            progress(&Progress {
                done: spec.length,
                total: spec.length,
                rate_bytes_per_sec: 0,
            });
            return Ok(done);
        }

        let partial_path = self.partial_path(spec);
        let (sha256, stats, part) =
            self.fetch_into(transport, url, spec, &partial_path, started, &mut progress)?;
        let complete = self.complete_path(spec);
        fs::rename(&partial_path, &complete).map_err(|e| {
            Error::storage_io(format!("renaming {} into place", partial_path.display()), e)
        })?;
        sync_dir(&self.work_dir)?;
        drop(part);
        Ok(Downloaded {
            path: complete,
            sha256,
            length: spec.length,
            stats,
        })
    }

    /// Downloads (or resumes) the image straight into `dest`, which is both
    /// the partial and the final file (for example an A/B slot file, see
    /// [`crate::flash::install_streamed`]): no copy, no rename. The same
    /// rules as [`Downloader::download`] apply; on a hash mismatch or an
    /// oversize answer `dest` is removed.
    pub fn download_to(
        &self,
        transport: &dyn Transport,
        url: &str,
        spec: &ImageSpec,
        dest: &Path,
        mut progress: impl FnMut(&Progress),
    ) -> Result<Downloaded> {
        let started = self.time.now();
        let (sha256, stats, part) =
            self.fetch_into(transport, url, spec, dest, started, &mut progress)?;
        drop(part);
        Ok(Downloaded {
            path: dest.to_path_buf(),
            sha256,
            length: spec.length,
            stats,
        })
    }

    /// The resumable loop: fills `path` up to the signed length and checks
    /// the sha256. Returns the open partial (it holds the lock) so the
    /// caller can move the file into place before releasing it.
    fn fetch_into(
        &self,
        transport: &dyn Transport,
        url: &str,
        spec: &ImageSpec,
        path: &Path,
        started: Instant,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<(Sha256Digest, DownloadStats, Partial)> {
        let mut part = Partial::open(path, spec, self.sync_every_bytes)?;
        let mut run = Run {
            transport,
            url,
            spec,
            stats: DownloadStats {
                resumed_from: part.len(),
                ..DownloadStats::default()
            },
            meter: RateMeter::new(started),
            buf: vec![0u8; CHUNK_BYTES],
            progress,
            time: self.time.as_ref(),
        };
        run.report(part.len());

        let mut high_water = part.len();
        let mut stalled = 0u32;
        let mut mismatches = 0u32;
        while part.len() < spec.length {
            run.stats.attempts = run.stats.attempts.saturating_add(1);
            let failure = match run.attempt(&mut part) {
                Ok(()) => continue,
                Err(f) => f,
            };
            if failure.local {
                return Err(failure.error);
            }
            if matches!(failure.error, Error::ImageOversize { .. }) {
                part.discard();
                return Err(failure.error);
            }
            // A failed read leaves the file and the hash in step (bytes are
            // hashed only once written); truncating to the hashed length
            // also undoes a write cut short by a full disk.
            part.resync()?;
            if matches!(failure.error, Error::RangeMismatch { .. }) {
                mismatches += 1;
                if mismatches >= 2 {
                    return Err(failure.error);
                }
            } else {
                mismatches = 0;
            }
            // An expired grant, or a presigned URL the store refused, is
            // retryable, but not by asking the same URL again: the caller's
            // next check hands out a fresh one.
            if !failure.error.retryable() || failure.error.needs_fresh_grant() {
                return Err(failure.error);
            }

            if part.len() > high_water {
                high_water = part.len();
                stalled = 0;
            } else {
                stalled += 1;
            }
            let exhausted = |retry_after: Option<Duration>, last: Error, stats: &DownloadStats| {
                Error::DownloadBudgetExhausted {
                    name: spec.name.clone(),
                    attempts: stats.attempts,
                    elapsed_ms: millis(self.time.now().saturating_duration_since(started)),
                    retry_after,
                    last: Box::new(last),
                }
            };
            if stalled >= self.policy.max_stalled_attempts {
                return Err(exhausted(failure.retry_after, failure.error, &run.stats));
            }
            let mut delay = full_jitter(self.backoff_cap(stalled));
            if let Some(wait) = failure.retry_after {
                if wait > self.policy.max_retry_after {
                    return Err(exhausted(Some(wait), failure.error, &run.stats));
                }
                delay = delay.max(wait);
            }
            if let Some(max) = self.policy.max_elapsed {
                let elapsed = self.time.now().saturating_duration_since(started);
                if elapsed.saturating_add(delay) > max {
                    return Err(exhausted(failure.retry_after, failure.error, &run.stats));
                }
            }
            self.time.sleep(delay);
            run.meter.restart(self.time.now());
        }

        let stats = run.stats;
        let sha256 = match part.finish() {
            Ok(d) => d,
            Err(e) => {
                // Only a hash mismatch can happen here (the length is
                // exact), and it condemns every byte on disk.
                part.discard();
                return Err(e);
            }
        };
        Ok((sha256, stats, part))
    }

    /// A complete file from an earlier call, re-verified. One that fails
    /// verification (corrupted at rest) is removed and downloaded again.
    fn reuse_complete(&self, spec: &ImageSpec) -> Result<Option<Downloaded>> {
        let path = self.complete_path(spec);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
        };
        match verify_reader(spec, file, |_| {}) {
            Ok(sha256) => Ok(Some(Downloaded {
                path,
                sha256,
                length: spec.length,
                stats: DownloadStats::default(),
            })),
            Err(e @ Error::Io { .. }) => Err(e),
            Err(_) => {
                fs::remove_file(&path)
                    .map_err(|e| Error::io(format!("removing {}", path.display()), e))?;
                Ok(None)
            }
        }
    }

    fn backoff_cap(&self, stalled: u32) -> Duration {
        let factor = 1u32 << stalled.min(20);
        self.policy
            .base_delay
            .saturating_mul(factor)
            .min(self.policy.max_delay)
    }
}

/// Why an attempt ended early.
struct Failure {
    error: Error,
    /// The source's `Retry-After`, if it sent one.
    retry_after: Option<Duration>,
    /// The device's own storage failed: retrying the source cannot help.
    local: bool,
}

impl Failure {
    fn remote(error: Error) -> Self {
        Failure {
            error,
            retry_after: None,
            local: false,
        }
    }
    fn local(error: Error) -> Self {
        Failure {
            error,
            retry_after: None,
            local: true,
        }
    }
}

/// The state of one `download` call shared by its attempts.
struct Run<'a, P: FnMut(&Progress) + ?Sized> {
    transport: &'a dyn Transport,
    url: &'a str,
    spec: &'a ImageSpec,
    stats: DownloadStats,
    meter: RateMeter,
    buf: Vec<u8>,
    progress: &'a mut P,
    time: &'a dyn TimeSource,
}

impl<P: FnMut(&Progress) + ?Sized> Run<'_, P> {
    fn report(&mut self, done: u64) {
        (self.progress)(&Progress {
            done,
            total: self.spec.length,
            rate_bytes_per_sec: self.meter.rate,
        });
    }

    fn oversize(&self) -> Failure {
        Failure::remote(Error::ImageOversize {
            name: self.spec.name.clone(),
            expected: self.spec.length,
        })
    }

    /// One request. `Ok` when the file is complete, or when the source
    /// ended a range exactly where its `Content-Range` said (a source that
    /// serves an image in pieces); the loop then asks for the next piece
    /// without waiting.
    fn attempt(&mut self, part: &mut Partial) -> std::result::Result<(), Failure> {
        let from = part.len();
        let length = self.spec.length;
        let etag = format!("\"{}\"", self.spec.sha256.to_hex());
        let RoutedRangeReply {
            mut reply,
            foreign_origin,
        } = self
            .transport
            .get_range_routed(self.url, from, Some(&etag))
            .map_err(Failure::remote)?;
        let mut announced_end = None;
        match reply.status {
            206 => match reply.parsed_content_range() {
                Some(ContentRange::Bytes { start, end, total }) if start == from => {
                    if total.is_some_and(|t| t > length) {
                        return Err(self.oversize());
                    }
                    announced_end = Some(end);
                }
                _ => {
                    return Err(Failure::remote(Error::RangeMismatch {
                        requested: from,
                        answered: reply
                            .content_range
                            .take()
                            .unwrap_or_else(|| "(none)".into()),
                    }));
                }
            },
            200 => {
                if reply.content_length.is_some_and(|l| l > length) {
                    return Err(self.oversize());
                }
                if from > 0 {
                    part.restart().map_err(Failure::local)?;
                    self.stats.restarts = self.stats.restarts.saturating_add(1);
                    self.report(0);
                }
            }
            status => {
                let error = match foreign_origin {
                    // The server checked the grant and redirected to a
                    // presigned URL, which the store refuses: expired (a
                    // slow download, a skewed clock) or tampered with.
                    Some(origin) if matches!(status, 400 | 403) => Error::PresignedUrlRefused {
                        origin,
                        status,
                        store_code: store_error_code_from_body(&mut reply.body),
                    },
                    Some(origin) => Error::UnexpectedStatus {
                        url: format!("{} (redirected to {origin})", redact_url(self.url)),
                        status,
                        server_code: None,
                    },
                    None => Error::UnexpectedStatus {
                        url: redact_url(self.url),
                        status,
                        server_code: error_code_from_body(&mut reply.body),
                    },
                };
                return Err(Failure {
                    error,
                    retry_after: reply.retry_after,
                    local: false,
                });
            }
        }

        let start = part.len();
        let remaining = length - start;
        // One byte more than fits, to tell "exactly the image" from "more".
        let mut body = reply.body.take(remaining.saturating_add(1));
        loop {
            let n = match body.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // The body comes from the network: a cut or a stall is
                    // the link's failure, not the device's storage.
                    return Err(Failure::remote(Error::Network {
                        context: format!("reading {}", redact_url(self.url)),
                        detail: e.to_string(),
                    }));
                }
            };
            self.stats.bytes_received = self.stats.bytes_received.saturating_add(n as u64);
            if part.len() + n as u64 > length {
                return Err(self.oversize());
            }
            part.append(&self.buf[..n]).map_err(Failure::local)?;
            self.meter.add(self.time.now(), n as u64);
            self.report(part.len());
        }
        let got = part.len();
        if got == length || (got > start && announced_end.is_some_and(|end| end + 1 == got)) {
            return Ok(());
        }
        Err(Failure::remote(Error::ImageTruncated {
            name: self.spec.name.clone(),
            expected: length,
            actual: got,
        }))
    }
}

/// The partial file, its lock, and the hash of exactly its bytes.
struct Partial {
    path: PathBuf,
    spec: ImageSpec,
    file: File,
    hasher: ImageHasher,
    synced: u64,
    sync_every: u64,
}

impl Partial {
    /// Opens (or creates) and locks the partial file, and hashes what it
    /// holds. A file longer than the signed length, or of exactly that
    /// length but not the signed bytes, cannot become the image: it is
    /// emptied.
    fn open(path: &Path, spec: &ImageSpec, sync_every: u64) -> Result<Partial> {
        let shown = path.display();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(|e| Error::storage_io(format!("opening {shown}"), e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::io(
                    format!("locking {shown}"),
                    io::Error::new(
                        io::ErrorKind::WouldBlock,
                        "another download of this image is running",
                    ),
                ));
            }
            Err(fs::TryLockError::Error(e)) => {
                return Err(Error::io(format!("locking {shown}"), e));
            }
        }
        let on_disk = file
            .metadata()
            .map_err(|e| Error::io(format!("reading metadata of {shown}"), e))?
            .len();
        let mut part = Partial {
            path: path.to_owned(),
            spec: spec.clone(),
            file,
            hasher: ImageHasher::new(spec),
            synced: 0,
            sync_every,
        };
        if on_disk > spec.length {
            part.restart()?;
            return Ok(part);
        }
        let mut buf = vec![0u8; CHUNK_BYTES];
        let mut reader = (&part.file).take(on_disk);
        loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(format!("re-hashing {shown}"), e)),
            };
            part.hasher.update(&buf[..n])?;
        }
        if part.len() == spec.length && part.hasher.clone().finish().is_err() {
            part.restart()?;
            return Ok(part);
        }
        part.synced = part.len();
        part.resync()?;
        Ok(part)
    }

    /// Bytes on disk and hashed.
    fn len(&self) -> u64 {
        self.hasher.position()
    }

    /// Empties the file and restarts the hash (a 200 answer, or unusable
    /// bytes on disk).
    fn restart(&mut self) -> Result<()> {
        self.file
            .set_len(0)
            .map_err(|e| Error::storage_io(format!("truncating {}", self.path.display()), e))?;
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(format!("seeking in {}", self.path.display()), e))?;
        self.hasher = ImageHasher::new(&self.spec);
        self.synced = 0;
        Ok(())
    }

    /// Writes then hashes `chunk`; the caller has checked it fits the
    /// signed length.
    fn append(&mut self, chunk: &[u8]) -> Result<()> {
        self.file
            .write_all(chunk)
            .map_err(|e| Error::storage_io(format!("writing {}", self.path.display()), e))?;
        self.hasher.update(chunk)?;
        if self.len() - self.synced >= self.sync_every {
            self.sync()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.file
            .sync_data()
            .map_err(|e| Error::storage_io(format!("syncing {}", self.path.display()), e))?;
        self.synced = self.len();
        Ok(())
    }

    /// Makes the file exactly the hashed bytes and positions at their end.
    fn resync(&mut self) -> Result<()> {
        let len = self.len();
        self.file
            .set_len(len)
            .map_err(|e| Error::storage_io(format!("truncating {}", self.path.display()), e))?;
        self.file
            .seek(SeekFrom::Start(len))
            .map_err(|e| Error::io(format!("seeking in {}", self.path.display()), e))?;
        Ok(())
    }

    /// Syncs, then checks length and sha256.
    fn finish(&mut self) -> Result<Sha256Digest> {
        self.sync()?;
        self.hasher.clone().finish()
    }

    /// Removes the file (its bytes are condemned). Best effort: a file that
    /// cannot be removed is emptied on the next call anyway, because its
    /// length or hash will not fit.
    fn discard(&mut self) {
        let _ = self.file.set_len(0);
        let _ = fs::remove_file(&self.path);
    }
}

/// Transfer rate over windows of about a second.
struct RateMeter {
    window_start: Instant,
    window_bytes: u64,
    rate: u64,
}

impl RateMeter {
    fn new(now: Instant) -> Self {
        RateMeter {
            window_start: now,
            window_bytes: 0,
            rate: 0,
        }
    }

    fn add(&mut self, now: Instant, bytes: u64) {
        self.window_bytes = self.window_bytes.saturating_add(bytes);
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= Duration::from_secs(1) {
            self.rate = (self.window_bytes as f64 / elapsed.as_secs_f64()) as u64;
            self.window_start = now;
            self.window_bytes = 0;
        }
    }

    /// A new window after a pause (the wait is not transfer time).
    fn restart(&mut self, now: Instant) {
        self.window_start = now;
        self.window_bytes = 0;
    }
}

/// A uniformly random delay in `[0, cap]` ("full jitter"), so that many
/// devices cut off by the same outage do not come back in lockstep.
fn full_jitter(cap: Duration) -> Duration {
    // std's RandomState is seeded from the OS and re-keyed per instance;
    // plenty for spreading retries, and no extra dependency.
    let mut h = RandomState::new().build_hasher();
    h.write_u64(0x6a09_e667_f3bc_c908);
    let unit = (h.finish() >> 11) as f64 / (1u64 << 53) as f64;
    cap.mul_f64(unit)
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::storage_io(format!("syncing directory {}", dir.display()), e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_the_cap() {
        let cap = Duration::from_secs(4);
        let delays: Vec<_> = (0..200).map(|_| full_jitter(cap)).collect();
        assert!(delays.iter().all(|d| *d <= cap));
        // Not constant: full jitter spreads devices out.
        assert!(delays.iter().any(|d| *d != delays[0]));
    }

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        let d = Downloader::new("/nonexistent").with_policy(RetryPolicy {
            base_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(10),
            ..RetryPolicy::default()
        });
        let caps: Vec<u64> = (0..6).map(|n| d.backoff_cap(n).as_secs()).collect();
        assert_eq!(caps, [1, 2, 4, 8, 10, 10]);
        assert_eq!(d.backoff_cap(u32::MAX), Duration::from_secs(10));
    }

    /// A clock that only moves when the downloader sleeps.
    #[derive(Default)]
    struct NoSleep {
        sleeps: std::sync::Mutex<Vec<Duration>>,
    }

    impl TimeSource for NoSleep {
        fn now(&self) -> Instant {
            Instant::now()
        }
        fn sleep(&self, duration: Duration) {
            self.sleeps.lock().unwrap().push(duration);
        }
    }

    /// The server checks the grant and redirects to a presigned URL on an
    /// allowed object store, which refuses it (expired): the download stops
    /// at once with a retryable error that asks for a fresh check, keeps the
    /// partial file, and the link of the next check resumes it.
    #[cfg(feature = "http")]
    #[test]
    fn a_presigned_url_refused_by_an_allowed_origin_falls_back_to_a_fresh_check() {
        use crate::transport::test_server::{answer, start};
        use crate::transport::{HttpConfig, HttpTransport};

        let image: Vec<u8> = (0..64 * 1024u32).map(|i| (i * 7 + i / 251) as u8).collect();
        let spec = ImageSpec {
            name: "firmware.img".into(),
            target: "rootfs".into(),
            length: image.len() as u64,
            sha256: Sha256Digest::of(&image),
        };
        let served = image.clone();
        let store = start(move |req| {
            if req.target.ends_with("Signature=fresh") {
                let from: usize = req
                    .header("range")
                    .and_then(|r| r.strip_prefix("bytes="))
                    .and_then(|r| r.strip_suffix('-'))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(0);
                let range = format!("bytes {from}-{}/{}", served.len() - 1, served.len());
                answer(
                    "206 Partial Content",
                    &[("content-range", range.as_str())],
                    &served[from..],
                )
            } else if req.target.ends_with("Signature=mangled") {
                answer(
                    "400 Bad Request",
                    &[("content-type", "application/xml")],
                    b"<Error><Code>AuthorizationQueryParametersError</Code></Error>",
                )
            } else {
                answer(
                    "403 Forbidden",
                    &[("content-type", "application/xml")],
                    b"<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>AccessDenied</Code>\
                      <Message>Request has expired</Message></Error>",
                )
            }
        });
        let store_origin = format!("http://127.0.0.1:{}", store.addr.port());
        let presigned = store_origin.clone();
        let server = start(move |req| {
            if req.target.contains("grant=forbidden") {
                return answer(
                    "403 Forbidden",
                    &[],
                    br#"{"error":{"code":"invalid_grant","message":"no"}}"#,
                );
            }
            let sig = if req.target.contains("grant=2") {
                "fresh"
            } else if req.target.contains("grant=3") {
                "mangled"
            } else {
                "expired"
            };
            let location = format!("{presigned}/bucket/images/ab?X-Amz-Signature={sig}");
            answer("302 Found", &[("location", location.as_str())], b"")
        });
        let transport = HttpTransport::with_config(
            &format!("http://{}", server.addr),
            HttpConfig {
                allowed_download_origins: vec![store_origin.clone()],
                ..HttpConfig::default()
            },
        )
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let time = Arc::new(NoSleep::default());
        let dl = Downloader::new(dir.path()).with_time_source(time.clone());
        // An earlier run got this far.
        std::fs::create_dir_all(dir.path()).unwrap();
        std::fs::write(dl.partial_path(&spec), &image[..20_000]).unwrap();
        let url = |grant: &str| format!("/v1/images/{}?sub=SN-1&exp=1&grant={grant}", spec.sha256);

        let err = dl
            .download(&transport, &url("1"), &spec, |_| {})
            .unwrap_err();
        assert!(
            matches!(&err, Error::PresignedUrlRefused { origin, status: 403, store_code: Some(c) }
                if *origin == store_origin && c == "AccessDenied"),
            "{err:?}"
        );
        assert!(err.retryable() && err.needs_fresh_grant(), "{err:?}");
        assert!(
            err.to_string().contains(&format!(
                "presigned download URL was refused by {store_origin}"
            )),
            "{err}"
        );
        // Not asked again, no backoff, nothing lost.
        assert_eq!((server.seen().len(), store.seen().len()), (1, 1));
        assert!(time.sleeps.lock().unwrap().is_empty());
        assert_eq!(
            std::fs::metadata(dl.partial_path(&spec)).unwrap().len(),
            20_000
        );

        // A 400 (a mangled signature) goes the same way.
        let err = dl
            .download(&transport, &url("3"), &spec, |_| {})
            .unwrap_err();
        assert!(
            matches!(&err, Error::PresignedUrlRefused { status: 400, .. }),
            "{err:?}"
        );
        assert!(err.needs_fresh_grant());

        // The server's own 403 is still the server's verdict, not a
        // presigned URL's.
        let err = dl
            .download(&transport, &url("forbidden"), &spec, |_| {})
            .unwrap_err();
        assert!(
            matches!(&err, Error::UnexpectedStatus { status: 403, server_code: Some(c), .. } if c == "invalid_grant"),
            "{err:?}"
        );
        assert!(!err.retryable());

        // The fresh check's link: the server redirects to a fresh presigned
        // URL and the download resumes where it stopped.
        let got = dl.download(&transport, &url("2"), &spec, |_| {}).unwrap();
        assert_eq!(std::fs::read(&got.path).unwrap(), image);
        assert_eq!((got.stats.resumed_from, got.stats.attempts), (20_000, 1));
        let last = store.seen().pop().unwrap();
        assert_eq!(last.header("range"), Some("bytes=20000-"));
        assert_eq!(last.header("authorization"), None);
        assert!(time.sleeps.lock().unwrap().is_empty());
    }

    #[test]
    fn rate_is_measured_over_a_second() {
        let t0 = Instant::now();
        let mut m = RateMeter::new(t0);
        m.add(t0 + Duration::from_millis(500), 1000);
        assert_eq!(m.rate, 0);
        m.add(t0 + Duration::from_millis(2000), 3000);
        assert_eq!(m.rate, 2000);
    }
}
