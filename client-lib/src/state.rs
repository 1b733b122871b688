//! The device's trusted state and its crash-safe persistence.
//!
//! [`TrustedState`] is everything a device must remember to stay safe
//! across reboots: the root it trusts, what it has *committed* (installed
//! version, security counter, manifest_version per channel), the latest
//! signed time it has seen, the update that is in flight ([`PendingUpdate`])
//! and a bounded queue of reports not yet delivered ([`QueuedReport`]).
//! It is stored through the small [`StateStore`] trait; [`FileStateStore`]
//! keeps it in one file.
//!
//! The rules live in the methods, so a caller cannot break them by
//! accident: the fields are private, the committed values only move forward
//! ([`TrustedState::ratchet_after_commit`]), and a new root is accepted
//! only by walking the rotation chain from the root already trusted
//! ([`TrustedState::accept_root_chain`]).
//!
//! # On disk
//!
//! `state.json` is one header line `firmup-state sha256=<hex>` followed by
//! the JSON body the digest covers. Writes go through [`atomic_write`]:
//! temporary file in the same directory, `fsync`, rename over the target,
//! `fsync` of the directory. After a crash the file is therefore either
//! the previous complete state or the new one. Leftover temporary files are
//! never read and are removed when the store is opened. The checksum turns
//! media corruption that still happens to parse (a flipped digit in a
//! counter) into [`Error::CorruptState`].
//!
//! There is deliberately **no `.bak` fallback**. With atomic renames a
//! crash cannot corrupt the file, so a corrupt file means failing storage
//! or tampering, and falling back to an older copy would quietly lower the
//! security counter and manifest_versions: exactly the rollback the state
//! exists to prevent. A corrupt state is a typed, non-retryable error; the
//! device keeps running its committed slot and refuses to update until it
//! is serviced.
//!
//! This module must never lower a committed value, never replace a corrupt
//! or missing state with a default one, and never accept a root that was
//! not reached from the stored root by valid rotations. It does no
//! networking and needs no async runtime.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use semver::Version;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::digest::Sha256Digest;
use crate::error::{Error, Result};
use crate::flash::Slot;
use crate::root::TrustedRoot;
use crate::verify::InstalledState;

/// Format version of the state body this build writes and reads.
pub const STATE_SPEC_VERSION: u32 = 1;
/// Most reports kept while the server is unreachable; the oldest are
/// dropped first.
pub const MAX_QUEUED_REPORTS: usize = 256;
/// Longest report detail kept, in characters (the server's limit).
pub const MAX_REPORT_DETAIL_CHARS: usize = 1000;
/// Largest state file read, in bytes. A root envelope (at most 256 KiB,
/// base64-encoded) plus a full report queue fits well below it.
pub const MAX_STATE_BYTES: u64 = 4 * 1024 * 1024;
/// File name of the state inside a [`FileStateStore`] directory.
pub const STATE_FILE_NAME: &str = "state.json";

const HEADER_PREFIX: &str = "firmup-state sha256=";

/// Installation stages a device reports (the server's `stage` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportStage {
    /// Fetching images.
    Downloading,
    /// Checking signatures and hashes.
    Verifying,
    /// Writing the images.
    Installing,
    /// Running the new version (final).
    Installed,
    /// The installation failed (final; carries a reason code).
    Failed,
    /// The new version was rolled back (final; carries a reason code).
    RolledBack,
    /// A security release the device does not install automatically: its
    /// owner turned automatic security updates off.
    OptedOut,
    /// A security release the device does not install before
    /// [`QueuedReport::postponed_until`]: its owner postponed it.
    Postponed,
}

impl ReportStage {
    /// The name the server expects.
    pub fn as_str(&self) -> &'static str {
        match self {
            ReportStage::Downloading => "downloading",
            ReportStage::Verifying => "verifying",
            ReportStage::Installing => "installing",
            ReportStage::Installed => "installed",
            ReportStage::Failed => "failed",
            ReportStage::RolledBack => "rolled_back",
            ReportStage::OptedOut => "opted_out",
            ReportStage::Postponed => "postponed",
        }
    }
}

/// A report waiting to be delivered to `POST /v1/device/reports`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueuedReport {
    /// The release version the report is about.
    pub version: Version,
    /// The channel of that release, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The stage reached.
    pub stage: ReportStage,
    /// Why it failed or was rolled back: an [`Error::code`] or another
    /// snake_case code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    /// Free text, at most [`MAX_REPORT_DETAIL_CHARS`] characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// When it happened (device time).
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
    /// Until when the owner postponed the release (with
    /// [`ReportStage::Postponed`] only).
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub postponed_until: Option<OffsetDateTime>,
}

impl QueuedReport {
    /// A progress report without a reason.
    pub fn new(version: Version, stage: ReportStage, at: OffsetDateTime) -> Self {
        QueuedReport {
            version,
            channel: None,
            stage,
            reason_code: None,
            detail: None,
            at,
            postponed_until: None,
        }
    }

    /// A failure report: the error's stable code is the reason, its message
    /// the detail.
    pub fn failure(version: Version, stage: ReportStage, err: &Error, at: OffsetDateTime) -> Self {
        QueuedReport {
            reason_code: Some(err.code().to_string()),
            detail: Some(err.to_string()),
            ..QueuedReport::new(version, stage, at)
        }
    }
}

/// The update in flight: recorded before its slot is marked bootable, and
/// turned into committed state only after that slot booted and passed its
/// health check (cleared instead on rollback).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingUpdate {
    /// The release version written to the slot.
    pub version: Version,
    /// The channel the manifest was accepted on.
    pub channel: String,
    /// The manifest's security counter.
    pub security_counter: u32,
    /// The manifest's manifest_version.
    pub manifest_version: u64,
    /// The slot that holds it.
    pub slot: Slot,
    /// A technician's signed-off downgrade: the installed version may go
    /// down at commit (the counter and manifest_version still may not).
    #[serde(default)]
    pub allow_downgrade: bool,
    /// The latest signed time known after this manifest, if any.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub latest_known_time: Option<OffsetDateTime>,
}

/// Everything the device trusts and has committed. See the module docs for
/// the rules its methods enforce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TrustedState {
    spec_version: u32,
    /// The current trusted root envelope, exactly as received (base64).
    #[serde(with = "b64")]
    root_envelope: Vec<u8>,
    installed_version: Version,
    security_counter: u32,
    #[serde(default)]
    manifest_versions: BTreeMap<String, u64>,
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    latest_known_time: Option<OffsetDateTime>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<PendingUpdate>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    reports: Vec<QueuedReport>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    failed_release: Option<FailedRelease>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    reported_choices: Vec<ReportedChoice>,
}

/// Most owner's choices about security releases remembered
/// ([`TrustedState::record_choice`]); the oldest are forgotten first.
pub const MAX_REPORTED_CHOICES: usize = 16;

/// What the device last reported about not installing a security release
/// automatically (`opted_out`, or `postponed` until a date), so the same
/// choice is reported once per release and not on every poll.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportedChoice {
    /// The release version.
    pub version: Version,
    /// The channel it was offered on.
    pub channel: String,
    /// [`ReportStage::OptedOut`] or [`ReportStage::Postponed`].
    pub stage: ReportStage,
    /// The postponement date, for [`ReportStage::Postponed`].
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub postponed_until: Option<OffsetDateTime>,
}

/// A release whose slot booted but failed its health check. The device does
/// not install it again (it would fail the same way, once per poll) until a
/// release with a higher manifest_version is committed or offered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FailedRelease {
    /// The release version.
    pub version: Version,
    /// The channel it was offered on.
    pub channel: String,
    /// Its manifest_version.
    pub manifest_version: u64,
}

impl TrustedState {
    /// The state a device is provisioned with at manufacture: its pinned
    /// root, the factory version and the factory security counter.
    pub fn new(pinned: &TrustedRoot, installed_version: Version, security_counter: u32) -> Self {
        TrustedState {
            spec_version: STATE_SPEC_VERSION,
            root_envelope: pinned.envelope_bytes().to_vec(),
            installed_version,
            security_counter,
            manifest_versions: BTreeMap::new(),
            latest_known_time: None,
            pending: None,
            reports: Vec::new(),
            failed_release: None,
            reported_choices: Vec::new(),
        }
    }

    /// Remembers `choice` as reported and returns `true`, unless it is
    /// exactly what was last recorded for the same release (version and
    /// channel), which returns `false` and changes nothing. A different
    /// choice for that release (another date, or opted out after a
    /// postponement) replaces the earlier one. At most
    /// [`MAX_REPORTED_CHOICES`] releases are remembered.
    pub fn record_choice(&mut self, choice: ReportedChoice) -> bool {
        let same_release =
            |c: &ReportedChoice| c.version == choice.version && c.channel == choice.channel;
        if self.reported_choices.contains(&choice) {
            return false;
        }
        self.reported_choices.retain(|c| !same_release(c));
        self.reported_choices.push(choice);
        let excess = self
            .reported_choices
            .len()
            .saturating_sub(MAX_REPORTED_CHOICES);
        self.reported_choices.drain(..excess);
        true
    }

    /// The choices about security releases reported so far, oldest first.
    pub fn reported_choices(&self) -> &[ReportedChoice] {
        &self.reported_choices
    }

    /// Remembers that `update` failed its health check after booting.
    pub fn record_failed_release(&mut self, update: &PendingUpdate) {
        self.failed_release = Some(FailedRelease {
            version: update.version.clone(),
            channel: update.channel.clone(),
            manifest_version: update.manifest_version,
        });
    }

    /// The release that last failed its health check, if no newer release
    /// was committed since.
    pub fn failed_release(&self) -> Option<&FailedRelease> {
        self.failed_release.as_ref()
    }

    /// The trusted root, checked again from the stored envelope (its own
    /// keys must meet their threshold, as for any root). The stored root
    /// may be any version: rotations replace it.
    pub fn trusted_root(&self) -> Result<TrustedRoot> {
        TrustedRoot::from_stored(&self.root_envelope)
    }

    /// The stored root envelope, exactly as received.
    pub fn root_envelope(&self) -> &[u8] {
        &self.root_envelope
    }

    /// Walks `chain` (root envelopes N+1, N+2, ... as the server sends them)
    /// from the stored root and, if it ends on a newer root, stores that
    /// one. Returns the root to verify manifests with. An empty chain
    /// returns the stored root.
    ///
    /// This takes envelopes rather than a [`TrustedRoot`] on purpose: a
    /// `TrustedRoot` only proves it is self-signed, not that the stored
    /// root's keys approved it, so only the walk from the stored root may
    /// decide what is stored.
    pub fn accept_root_chain<I, B>(&mut self, chain: I) -> Result<TrustedRoot>
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let current = self.trusted_root()?;
        let next = current.walk(chain)?;
        if next.version() > current.version() {
            self.root_envelope = next.envelope_bytes().to_vec();
        }
        Ok(next)
    }

    /// The committed version.
    pub fn installed_version(&self) -> &Version {
        &self.installed_version
    }

    /// The committed security counter.
    pub fn security_counter(&self) -> u32 {
        self.security_counter
    }

    /// The highest manifest_version committed on `channel` (0 if none).
    pub fn manifest_version(&self, channel: &str) -> u64 {
        self.manifest_versions.get(channel).copied().unwrap_or(0)
    }

    /// The highest manifest_version committed per channel.
    pub fn manifest_versions(&self) -> &BTreeMap<String, u64> {
        &self.manifest_versions
    }

    /// The latest signed time the device has accepted, if any.
    pub fn latest_known_time(&self) -> Option<OffsetDateTime> {
        self.latest_known_time
    }

    /// Raises the latest known time to `t` (never lowers it).
    pub fn raise_latest_known_time(&mut self, t: OffsetDateTime) {
        self.latest_known_time = Some(self.latest_known_time.map_or(t, |old| old.max(t)));
    }

    /// What the verification engine must check offers against on `channel`.
    pub fn installed_state(&self, channel: &str) -> InstalledState {
        InstalledState {
            version: self.installed_version.clone(),
            security_counter: self.security_counter,
            manifest_version: self.manifest_version(channel),
        }
    }

    /// The update in flight, if any.
    pub fn pending(&self) -> Option<&PendingUpdate> {
        self.pending.as_ref()
    }

    /// Records the update about to be marked bootable. Fails if another
    /// update is in flight, or if committing `p` later would lower a
    /// committed value (checked now so nothing is flashed that could never
    /// be committed).
    pub fn set_pending(&mut self, p: PendingUpdate) -> Result<()> {
        if let Some(old) = &self.pending {
            return Err(Error::UpdateState {
                detail: format!(
                    "update to {} in slot {} is still pending; commit or roll it back first",
                    old.version, old.slot
                ),
            });
        }
        self.check_ratchet(&p)?;
        self.pending = Some(p);
        Ok(())
    }

    /// Forgets the update in flight (after a rollback or a failed install)
    /// and returns it. Committed values are untouched.
    pub fn clear_pending(&mut self) -> Option<PendingUpdate> {
        self.pending.take()
    }

    /// Fails with [`Error::RatchetBackwards`] if committing `p` would lower
    /// the security counter, the channel's manifest_version or (without a
    /// signed-off downgrade) the installed version.
    pub fn check_ratchet(&self, p: &PendingUpdate) -> Result<()> {
        if p.security_counter < self.security_counter {
            return Err(Error::RatchetBackwards {
                field: "security_counter",
                committed: self.security_counter.to_string(),
                requested: p.security_counter.to_string(),
            });
        }
        let mv = self.manifest_version(&p.channel);
        if p.manifest_version < mv {
            return Err(Error::RatchetBackwards {
                field: "manifest_version",
                committed: mv.to_string(),
                requested: p.manifest_version.to_string(),
            });
        }
        if p.version.cmp_precedence(&self.installed_version).is_lt() && !p.allow_downgrade {
            return Err(Error::RatchetBackwards {
                field: "installed_version",
                committed: self.installed_version.to_string(),
                requested: p.version.to_string(),
            });
        }
        Ok(())
    }

    /// Makes `committed` the committed state: raises the security counter,
    /// the channel's manifest_version and the latest known time, sets the
    /// installed version, and clears the pending update if it is this one.
    ///
    /// Call this only after the flasher committed the slot (the new version
    /// booted and passed its health check): ratcheting earlier would make
    /// the A/B fallback slot unbootable by policy (the AVB rule). Nothing
    /// is changed if a value would go down ([`Self::check_ratchet`]).
    pub fn ratchet_after_commit(&mut self, committed: &PendingUpdate) -> Result<()> {
        self.check_ratchet(committed)?;
        self.security_counter = committed.security_counter;
        self.manifest_versions
            .insert(committed.channel.clone(), committed.manifest_version);
        self.installed_version = committed.version.clone();
        if let Some(t) = committed.latest_known_time {
            self.raise_latest_known_time(t);
        }
        if self.pending.as_ref() == Some(committed) {
            self.pending = None;
        }
        self.failed_release = None;
        Ok(())
    }

    /// Queues a report for delivery. The detail is cut to
    /// [`MAX_REPORT_DETAIL_CHARS`]; beyond [`MAX_QUEUED_REPORTS`] the oldest
    /// reports are dropped. Returns how many were dropped.
    pub fn queue_report(&mut self, mut report: QueuedReport) -> usize {
        if let Some(d) = &mut report.detail
            && d.chars().count() > MAX_REPORT_DETAIL_CHARS
        {
            *d = d.chars().take(MAX_REPORT_DETAIL_CHARS).collect();
        }
        self.reports.push(report);
        let excess = self.reports.len().saturating_sub(MAX_QUEUED_REPORTS);
        self.reports.drain(..excess);
        excess
    }

    /// Reports not yet delivered, oldest first.
    pub fn queued_reports(&self) -> &[QueuedReport] {
        &self.reports
    }

    /// Removes the `n` oldest reports, after they were delivered in order.
    pub fn remove_sent_reports(&mut self, n: usize) {
        let n = n.min(self.reports.len());
        self.reports.drain(..n);
    }

    /// Encodes the state as the file format described in the module docs.
    pub fn to_file_bytes(&self) -> Result<Vec<u8>> {
        let mut body =
            serde_json::to_vec_pretty(self).map_err(|e| Error::malformed("trusted state", e))?;
        body.push(b'\n');
        let mut out = format!("{HEADER_PREFIX}{}\n", Sha256Digest::of(&body)).into_bytes();
        out.extend_from_slice(&body);
        Ok(out)
    }

    /// Decodes the file format; `path` names the file in errors. Anything
    /// that is not exactly a state this build wrote is
    /// [`Error::CorruptState`] (or [`Error::UnsupportedSpecVersion`]).
    pub fn from_file_bytes(bytes: &[u8], path: &Path) -> Result<Self> {
        let corrupt = |detail: String| Error::CorruptState {
            path: path.display().to_string(),
            detail,
        };
        let nl = bytes
            .iter()
            .position(|b| *b == b'\n')
            .ok_or_else(|| corrupt("no header line".into()))?;
        let header = std::str::from_utf8(&bytes[..nl])
            .ok()
            .and_then(|h| h.strip_prefix(HEADER_PREFIX))
            .ok_or_else(|| corrupt("the header line is not a firmup-state header".into()))?;
        let expected: Sha256Digest = header
            .parse()
            .map_err(|e| corrupt(format!("header: {e}")))?;
        let body = &bytes[nl + 1..];
        let actual = Sha256Digest::of(body);
        if actual != expected {
            return Err(corrupt(format!(
                "checksum mismatch (header {expected}, body {actual}): truncated or damaged"
            )));
        }
        let state: TrustedState =
            serde_json::from_slice(body).map_err(|e| corrupt(format!("body: {e}")))?;
        if state.spec_version != STATE_SPEC_VERSION {
            return Err(Error::UnsupportedSpecVersion {
                what: "trusted state",
                found: state.spec_version,
                supported: STATE_SPEC_VERSION,
            });
        }
        Ok(state)
    }
}

/// Where the trusted state is kept.
pub trait StateStore {
    /// The stored state, or `None` if the device was never provisioned.
    /// A state that exists but cannot be read is an error, never `None`.
    fn load(&self) -> Result<Option<TrustedState>>;
    /// Replaces the stored state, atomically: after a crash `load` returns
    /// either the previous state or this one.
    fn save(&self, state: &TrustedState) -> Result<()>;
}

/// The trusted state in `<dir>/state.json`, written with [`atomic_write`].
#[derive(Debug, Clone)]
pub struct FileStateStore {
    path: PathBuf,
}

impl FileStateStore {
    /// Opens (creating if needed) the state directory `dir` and removes
    /// temporary files a crash left behind. One process at a time may own
    /// the directory.
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        fs::create_dir_all(dir).map_err(|e| {
            Error::storage_io(format!("creating state directory {}", dir.display()), e)
        })?;
        let path = dir.join(STATE_FILE_NAME);
        remove_stale_temps(&path)?;
        Ok(FileStateStore { path })
    }

    /// The state file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl StateStore for FileStateStore {
    fn load(&self) -> Result<Option<TrustedState>> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("opening {}", self.path.display()), e)),
        };
        let mut bytes = Vec::new();
        file.take(MAX_STATE_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| Error::io(format!("reading {}", self.path.display()), e))?;
        if bytes.len() as u64 > MAX_STATE_BYTES {
            return Err(Error::CorruptState {
                path: self.path.display().to_string(),
                detail: format!("larger than {MAX_STATE_BYTES} bytes"),
            });
        }
        TrustedState::from_file_bytes(&bytes, &self.path).map(Some)
    }

    fn save(&self, state: &TrustedState) -> Result<()> {
        atomic_write(&self.path, &state.to_file_bytes()?)
    }
}

/// The trusted state in memory: for tests and for devices that keep their
/// state elsewhere and copy it in and out.
#[derive(Debug, Default)]
pub struct MemoryStateStore {
    state: Mutex<Option<TrustedState>>,
}

impl MemoryStateStore {
    /// A store holding `state`.
    pub fn new(state: Option<TrustedState>) -> Self {
        MemoryStateStore {
            state: Mutex::new(state),
        }
    }
}

impl StateStore for MemoryStateStore {
    fn load(&self) -> Result<Option<TrustedState>> {
        Ok(self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone())
    }

    fn save(&self, state: &TrustedState) -> Result<()> {
        *self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(state.clone());
        Ok(())
    }
}

/// Replaces `path` with `bytes` so that a crash at any point leaves either
/// the old file or the new one, complete: the bytes go to a new temporary
/// file in the same directory, which is `fsync`ed, renamed over `path`, and
/// then the directory is `fsync`ed so the rename itself is durable.
///
/// A full disk is [`Error::StorageFull`] (retryable); the temporary file is
/// removed on any failure. Shared by the state store and the simulated
/// flasher's boot record.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with_mode(path, bytes, None)
}

/// [`atomic_write`] for a file holding a secret (for example the agent's
/// configuration with its device token): on unix the temporary file is
/// created with mode `0600` from the start, so neither it nor the renamed
/// file is ever readable by group or others, whatever the umask. On other
/// platforms it is the same as [`atomic_write`].
pub fn atomic_write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    atomic_write_with_mode(path, bytes, Some(0o600))
}

/// The one implementation of [`atomic_write`] and [`atomic_write_private`]:
/// `mode` (unix only) is the permission the temporary file is created with;
/// `None` leaves it to the umask.
fn atomic_write_with_mode(path: &Path, bytes: &[u8], mode: Option<u32>) -> Result<()> {
    let tmp = temp_path(path)?;
    let written = (|| {
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        if let Some(mode) = mode {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(mode);
        }
        #[cfg(not(unix))]
        let _ = mode;
        let mut f = options.open(&tmp)?;
        f.write_all(bytes)?;
        // Data on disk before the rename: otherwise a crash could leave the
        // new name pointing at an empty or partial file.
        f.sync_all()
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(Error::storage_io(format!("writing {}", tmp.display()), e));
    }
    if let Err(e) = fs::rename(&tmp, path) {
        let _ = fs::remove_file(&tmp);
        return Err(Error::storage_io(
            format!("renaming {} to {}", tmp.display(), path.display()),
            e,
        ));
    }
    sync_dir(&parent_dir(path))
}

/// Removes temporary files [`atomic_write`] left next to `path` when a
/// crash interrupted it. They are never read: only a renamed file counts.
pub fn remove_stale_temps(path: &Path) -> Result<()> {
    let dir = parent_dir(path);
    let prefix = temp_prefix(path)?;
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(format!("listing {}", dir.display()), e)),
    };
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        if entry.file_name().to_string_lossy().starts_with(&prefix) {
            match fs::remove_file(entry.path()) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => {
                    return Err(Error::io(
                        format!("removing stale {}", entry.path().display()),
                        e,
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `.<name>.tmp-`: what every temporary file for `path` starts with.
fn temp_prefix(path: &Path) -> Result<String> {
    let name = path.file_name().ok_or_else(|| {
        Error::io(
            format!("{} has no file name", path.display()),
            std::io::ErrorKind::InvalidInput.into(),
        )
    })?;
    Ok(format!(".{}.tmp-", name.to_string_lossy()))
}

/// A fresh temporary path next to `path` (unique per process and call, so
/// two writers never share one).
pub(crate) fn temp_path(path: &Path) -> Result<PathBuf> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, Ordering::Relaxed);
    let name = format!("{}{}-{seq}", temp_prefix(path)?, std::process::id());
    Ok(parent_dir(path).join(name))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::storage_io(format!("syncing directory {}", dir.display()), e))
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> Result<()> {
    // Directories cannot be opened for syncing here; the rename is still
    // atomic, only its durability is up to the file system.
    Ok(())
}

/// Base64 (standard alphabet) for byte fields in the state file.
mod b64 {
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// Builders shared by the state and flash tests.
#[cfg(test)]
pub(crate) mod test_support {
    use std::collections::BTreeMap;

    use ed25519_dalek::SigningKey;

    use crate::envelope::Envelope;
    use crate::keys::PublicKey;
    use crate::root::{ROOT_PAYLOAD_TYPE, ROOT_SPEC_VERSION, RoleKeys, RootDocument, TrustedRoot};

    use super::TrustedState;

    /// Root `version` with one root key (seed `root_seed`), self-signed and,
    /// for rotations, also signed by `previous_seed`'s key.
    pub fn root_envelope(version: u64, root_seed: u8, previous_seed: Option<u8>) -> Vec<u8> {
        let sk = SigningKey::from_bytes(&[root_seed; 32]);
        let pk = PublicKey::from_verifying_key(&sk.verifying_key()).unwrap();
        let mut doc = RootDocument {
            spec_version: ROOT_SPEC_VERSION,
            version,
            expires: time::macros::datetime!(2040-01-01 0:00 UTC),
            keys: BTreeMap::new(),
            root: RoleKeys {
                keyids: vec![],
                threshold: 1,
            },
            delegations: BTreeMap::new(),
        };
        let id = doc.add_key(&pk);
        doc.root.keyids = vec![id.clone()];
        doc.delegations.insert(
            "encoders".into(),
            RoleKeys {
                keyids: vec![id],
                threshold: 1,
            },
        );
        let mut env = Envelope::new(ROOT_PAYLOAD_TYPE, &doc.to_payload().unwrap());
        env.sign(&sk).unwrap();
        if let Some(prev) = previous_seed {
            env.sign(&SigningKey::from_bytes(&[prev; 32])).unwrap();
        }
        env.to_json_bytes()
    }

    /// A provisioned state: root v1, version 1.0.0, counter 3, manifest_version 5 on stable.
    pub fn provisioned() -> TrustedState {
        let root = TrustedRoot::from_pinned(&root_envelope(1, 1, None)).unwrap();
        let mut s = TrustedState::new(&root, "1.0.0".parse().unwrap(), 3);
        s.manifest_versions.insert("stable".into(), 5);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::{provisioned, root_envelope};
    use super::*;

    fn pending(version: &str, counter: u32, mv: u64) -> PendingUpdate {
        PendingUpdate {
            version: version.parse().unwrap(),
            channel: "stable".into(),
            security_counter: counter,
            manifest_version: mv,
            slot: Slot::B,
            allow_downgrade: false,
            latest_known_time: Some(time::macros::datetime!(2030-05-01 0:00 UTC)),
        }
    }

    #[test]
    fn round_trip_through_the_file_store() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStateStore::open(dir.path()).unwrap();
        assert_eq!(store.load().unwrap(), None, "never provisioned");

        let mut s = provisioned();
        s.set_pending(pending("1.1.0", 4, 6)).unwrap();
        s.raise_latest_known_time(time::macros::datetime!(2030-01-01 0:00 UTC));
        s.queue_report(QueuedReport::new(
            "1.1.0".parse().unwrap(),
            ReportStage::Installing,
            time::macros::datetime!(2030-01-02 0:00 UTC),
        ));
        store.save(&s).unwrap();
        let back = store.load().unwrap().unwrap();
        assert_eq!(back, s);
        assert_eq!(back.trusted_root().unwrap().version(), 1);
        assert_eq!(back.installed_state("stable").manifest_version, 5);
        assert_eq!(back.installed_state("beta").manifest_version, 0);

        // No temporary file survives a successful save.
        let names: Vec<_> = fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from(STATE_FILE_NAME)]);
    }

    #[test]
    fn crash_mid_write_leaves_the_previous_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStateStore::open(dir.path()).unwrap();
        let good = provisioned();
        store.save(&good).unwrap();

        // A crash while writing the next state: a partial temporary file.
        let mut next = good.clone();
        next.ratchet_after_commit(&pending("2.0.0", 9, 9)).unwrap();
        let bytes = next.to_file_bytes().unwrap();
        let tmp = temp_path(store.path()).unwrap();
        fs::write(&tmp, &bytes[..bytes.len() / 2]).unwrap();

        assert_eq!(
            store.load().unwrap().unwrap(),
            good,
            "temp file is never read"
        );
        let reopened = FileStateStore::open(dir.path()).unwrap();
        assert!(!tmp.exists(), "stale temp file removed on open");
        assert_eq!(reopened.load().unwrap().unwrap(), good);
    }

    #[test]
    fn truncated_or_damaged_state_is_a_typed_error_never_a_default() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStateStore::open(dir.path()).unwrap();
        store.save(&provisioned()).unwrap();
        let bytes = fs::read(store.path()).unwrap();

        let cut = &bytes[..bytes.len() - 10];
        fs::write(store.path(), cut).unwrap();
        let err = store.load().unwrap_err();
        assert_eq!(err.code(), "corrupt_state", "{err}");
        assert!(!err.retryable());

        // A flipped digit that still parses as JSON: the checksum catches it.
        let text = String::from_utf8(bytes.clone()).unwrap();
        let flipped = text.replace("\"security_counter\": 3", "\"security_counter\": 0");
        assert_ne!(flipped, text);
        fs::write(store.path(), flipped).unwrap();
        assert_eq!(store.load().unwrap_err().code(), "corrupt_state");

        for junk in [&b""[..], b"{}", b"\x00\x00\x00"] {
            fs::write(store.path(), junk).unwrap();
            assert_eq!(store.load().unwrap_err().code(), "corrupt_state");
        }
    }

    #[test]
    fn ratchet_never_lowers() {
        let mut s = provisioned();
        let before = s.clone();
        for (p, field) in [
            (pending("2.0.0", 2, 9), "security_counter"),
            (pending("2.0.0", 9, 4), "manifest_version"),
            (pending("0.9.0", 9, 9), "installed_version"),
        ] {
            let err = s.ratchet_after_commit(&p).unwrap_err();
            assert_eq!(err.code(), "ratchet_backwards", "{err}");
            assert!(err.to_string().contains(field), "{err}");
            assert_eq!(s, before, "nothing changed");
            assert_eq!(s.set_pending(p).unwrap_err().code(), "ratchet_backwards");
        }

        // Raising works; equal values hold.
        s.ratchet_after_commit(&pending("1.0.0", 3, 5)).unwrap();
        s.ratchet_after_commit(&pending("1.2.0", 4, 7)).unwrap();
        assert_eq!(s.security_counter(), 4);
        assert_eq!(s.manifest_version("stable"), 7);
        assert_eq!(s.installed_version().to_string(), "1.2.0");
        assert_eq!(
            s.latest_known_time(),
            Some(time::macros::datetime!(2030-05-01 0:00 UTC))
        );
        // An older signed time never moves the clock back.
        s.raise_latest_known_time(time::macros::datetime!(2029-01-01 0:00 UTC));
        assert_eq!(
            s.latest_known_time(),
            Some(time::macros::datetime!(2030-05-01 0:00 UTC))
        );

        // A signed-off downgrade may lower the version, never the counter.
        let mut down = pending("1.1.0", 4, 8);
        down.allow_downgrade = true;
        s.ratchet_after_commit(&down).unwrap();
        assert_eq!(s.installed_version().to_string(), "1.1.0");
        down.security_counter = 3;
        assert_eq!(
            s.ratchet_after_commit(&down).unwrap_err().code(),
            "ratchet_backwards"
        );
    }

    #[test]
    fn commit_clears_the_matching_pending_update() {
        let mut s = provisioned();
        let p = pending("1.1.0", 3, 6);
        s.set_pending(p.clone()).unwrap();
        let second = s.set_pending(pending("1.2.0", 3, 7)).unwrap_err();
        assert_eq!(second.code(), "invalid_update_state");
        s.ratchet_after_commit(&p).unwrap();
        assert_eq!(s.pending(), None);
    }

    #[test]
    fn root_is_accepted_only_through_the_chain() {
        let mut s = provisioned();
        let v2 = root_envelope(2, 2, Some(1));
        let root = s.accept_root_chain([&v2]).unwrap();
        assert_eq!(root.version(), 2);
        assert_eq!(s.trusted_root().unwrap().version(), 2);
        assert_eq!(s.root_envelope(), &v2[..]);

        // v3 without v2's signature: refused, stored root unchanged.
        let bad_v3 = root_envelope(3, 3, None);
        let err = s.accept_root_chain([&bad_v3]).unwrap_err();
        assert_eq!(err.code(), "threshold_not_met", "{err}");
        assert_eq!(s.trusted_root().unwrap().version(), 2);

        // A self-signed "v1" from someone else cannot replace it either.
        let stranger = root_envelope(1, 7, None);
        assert!(s.accept_root_chain([&stranger]).is_err());
        // An empty chain keeps what is stored.
        assert_eq!(s.accept_root_chain::<_, &[u8]>([]).unwrap().version(), 2);
    }

    #[test]
    fn report_queue_is_bounded_and_drops_the_oldest() {
        let mut s = provisioned();
        let at = time::macros::datetime!(2030-01-01 0:00 UTC);
        let mut dropped = 0;
        for i in 0..(MAX_QUEUED_REPORTS as u64 + 10) {
            let mut r = QueuedReport::new(Version::new(1, 0, i), ReportStage::Downloading, at);
            r.detail = Some("x".repeat(MAX_REPORT_DETAIL_CHARS + 50));
            dropped += s.queue_report(r);
        }
        assert_eq!(dropped, 10);
        assert_eq!(s.queued_reports().len(), MAX_QUEUED_REPORTS);
        assert_eq!(s.queued_reports()[0].version, Version::new(1, 0, 10));
        assert_eq!(
            s.queued_reports()[0]
                .detail
                .as_ref()
                .unwrap()
                .chars()
                .count(),
            MAX_REPORT_DETAIL_CHARS
        );
        s.remove_sent_reports(5);
        assert_eq!(s.queued_reports()[0].version, Version::new(1, 0, 15));
        s.remove_sent_reports(usize::MAX);
        assert!(s.queued_reports().is_empty());

        let err = Error::RatchetBackwards {
            field: "security_counter",
            committed: "3".into(),
            requested: "2".into(),
        };
        let r = QueuedReport::failure(Version::new(2, 0, 0), ReportStage::Failed, &err, at);
        assert_eq!(r.reason_code.as_deref(), Some("ratchet_backwards"));
    }

    #[test]
    fn a_choice_is_recorded_once_per_release_and_again_when_it_changes() {
        let mut s = provisioned();
        let choice = |version: &str, stage, until| ReportedChoice {
            version: version.parse().unwrap(),
            channel: "stable".into(),
            stage,
            postponed_until: until,
        };
        let july = Some(time::macros::datetime!(2030-07-01 0:00 UTC));
        let august = Some(time::macros::datetime!(2030-08-01 0:00 UTC));
        assert!(s.record_choice(choice("2.1.0", ReportStage::OptedOut, None)));
        assert!(!s.record_choice(choice("2.1.0", ReportStage::OptedOut, None)));
        // Another release, the same choice: new.
        assert!(s.record_choice(choice("2.1.1", ReportStage::OptedOut, None)));
        // A changed choice for a release replaces the earlier one.
        assert!(s.record_choice(choice("2.1.0", ReportStage::Postponed, july)));
        assert!(!s.record_choice(choice("2.1.0", ReportStage::Postponed, july)));
        assert!(s.record_choice(choice("2.1.0", ReportStage::Postponed, august)));
        assert_eq!(s.reported_choices().len(), 2);
        assert_eq!(s.reported_choices()[1].postponed_until, august);
        for i in 0..(MAX_REPORTED_CHOICES as u64 + 3) {
            let v = format!("3.0.{i}");
            assert!(s.record_choice(choice(&v, ReportStage::OptedOut, None)));
        }
        assert_eq!(s.reported_choices().len(), MAX_REPORTED_CHOICES);
        assert_eq!(s.reported_choices()[0].version, Version::new(3, 0, 3));

        // Kept across a save.
        let dir = tempfile::tempdir().unwrap();
        let store = FileStateStore::open(dir.path()).unwrap();
        store.save(&s).unwrap();
        assert_eq!(store.load().unwrap().unwrap(), s);
    }

    #[test]
    fn a_state_file_written_before_choices_and_postponements_still_loads() {
        // The body an earlier build wrote: a queued report without
        // postponed_until, no reported_choices.
        let mut s = provisioned();
        s.queue_report(QueuedReport::new(
            "2.1.0".parse().unwrap(),
            ReportStage::Installed,
            time::macros::datetime!(2030-01-02 0:00 UTC),
        ));
        let mut body: serde_json::Value = serde_json::to_value(&s).unwrap();
        assert!(body.get("reported_choices").is_none());
        assert!(body["reports"][0].get("postponed_until").is_none());
        body.as_object_mut().unwrap().remove("reported_choices");
        let mut bytes = serde_json::to_vec_pretty(&body).unwrap();
        bytes.push(b'\n');
        let mut file = format!("{HEADER_PREFIX}{}\n", Sha256Digest::of(&bytes)).into_bytes();
        file.extend_from_slice(&bytes);
        let back = TrustedState::from_file_bytes(&file, Path::new("state.json")).unwrap();
        assert_eq!(back, s);
        assert!(back.reported_choices().is_empty());
        assert_eq!(back.queued_reports()[0].postponed_until, None);
    }

    #[test]
    fn full_disk_maps_to_a_retryable_typed_error() {
        use std::io::ErrorKind;
        for source in [
            std::io::Error::from(ErrorKind::StorageFull),
            std::io::Error::from(ErrorKind::QuotaExceeded),
            #[cfg(target_os = "linux")]
            std::io::Error::from_raw_os_error(28), // ENOSPC
            #[cfg(target_os = "linux")]
            std::io::Error::from_raw_os_error(122), // EDQUOT
        ] {
            let err = Error::storage_io("writing state.json", source);
            assert_eq!(err.code(), "storage_full", "{err}");
            assert!(err.retryable());
        }
        let other = Error::storage_io(
            "writing state.json",
            std::io::Error::from(ErrorKind::PermissionDenied),
        );
        assert_eq!(other.code(), "io");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn writing_to_a_full_device_is_storage_full() {
        // /dev/full answers every write with ENOSPC.
        if !Path::new("/dev/full").exists() {
            return;
        }
        let mut f = OpenOptions::new().write(true).open("/dev/full").unwrap();
        let e = f.write_all(b"state").and_then(|()| f.flush()).unwrap_err();
        assert_eq!(Error::storage_io("test", e).code(), "storage_full");
    }

    #[cfg(unix)]
    #[test]
    fn private_writes_are_owner_only_whatever_the_umask() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("agent.toml");
        // An existing world-readable file is replaced, not chmod-ed in place.
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        atomic_write_private(&path, b"token = \"secret\"").unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "mode is {mode:o}");
        assert_eq!(fs::read(&path).unwrap(), b"token = \"secret\"");
    }

    #[test]
    fn unknown_state_version_is_refused() {
        let mut s = provisioned();
        s.spec_version = 99;
        let bytes = s.to_file_bytes().unwrap();
        let err = TrustedState::from_file_bytes(&bytes, Path::new("state.json")).unwrap_err();
        assert_eq!(err.code(), "unsupported_spec_version");
    }
}
