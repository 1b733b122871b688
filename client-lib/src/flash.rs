//! A/B flashing: write the inactive slot, prove what was written, boot it
//! once on trial, then commit or fall back.
//!
//! The [`Flasher`] trait is the device's slot manager (U-Boot's bootcount,
//! GRUB's `next_entry`, RAUC's slot states, ...). [`FileFlasher`] simulates
//! one in a directory (`slot-a.img`, `slot-b.img`, `boot.json`) for tests
//! and the agent. The lifecycle:
//!
//! 1. [`install_verified`] writes the plan's image into the inactive slot
//!    while hashing it, hashes it *again from the slot* and compares with
//!    the signed sha256 (RAUC CVE-2020-25860: what is marked bootable must
//!    be what was verified, not what was streamed), records the
//!    [`PendingUpdate`] in the trusted state, and only then marks the slot
//!    pending;
//! 2. [`Flasher::boot`] (a reboot) starts a pending slot exactly once: the
//!    "tried" mark is persisted before the slot runs, so if that boot never
//!    commits (crash, power cut, watchdog) the next boot falls back to the
//!    committed slot;
//! 3. the device runs its health check and calls [`finish_after_boot`],
//!    which commits the slot and *then* ratchets the trusted state (security
//!    counter, manifest_version, installed version), or rolls back and
//!    forgets the pending update. The ratchet never happens at
//!    mark-pending or boot time: raising the counter before the new slot
//!    proved itself would make the fallback slot unbootable by policy
//!    ("bricking through the counter", the AVB rule).
//!
//! Every step is idempotent across crashes: [`finish_after_boot`] looks at
//! what the flasher and the stored state say and finishes whichever step a
//! crash interrupted.
//!
//! One image per release, with target [`ROOTFS_TARGET`]: a release with any
//! other target (a bootloader, an FPGA bitstream, ...) is refused whole with
//! [`Error::UnsupportedTarget`] rather than installed in part.
//!
//! This module must never mark a slot bootable before its read-back digest
//! matched the signed one, never write into the committed slot or a slot on
//! trial, and never ratchet trusted state before a commit. It does no
//! networking and needs no async runtime.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write as _};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::digest::Sha256Digest;
use crate::error::{Error, Result};
use crate::image::{CHUNK_BYTES, ImageHasher};
use crate::manifest::{ImageSpec, Manifest};
use crate::state::{PendingUpdate, StateStore, TrustedState, atomic_write, remove_stale_temps};
use crate::verify::UpdatePlan;

/// The one image target this device installs: the root file system slot.
pub const ROOTFS_TARGET: &str = "rootfs";
/// File name of the simulated boot record in a [`FileFlasher`] directory.
pub const BOOT_FILE_NAME: &str = "boot.json";

/// One of the two root file system slots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Slot {
    /// Slot A.
    A,
    /// Slot B.
    B,
}

impl Slot {
    /// The other slot.
    pub fn other(self) -> Slot {
        match self {
            Slot::A => Slot::B,
            Slot::B => Slot::A,
        }
    }

    /// `"a"` or `"b"`.
    pub fn as_str(self) -> &'static str {
        match self {
            Slot::A => "a",
            Slot::B => "b",
        }
    }
}

impl fmt::Display for Slot {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The boot record: which slot is committed, which is pending, and which
/// runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotStatus {
    /// The committed slot: booted by default and the fallback.
    pub active: Slot,
    /// A slot marked to be tried on the next boot.
    pub pending: Option<Slot>,
    /// Whether the pending slot has used its one trial boot.
    pub tried: bool,
    /// The slot running now.
    pub running: Slot,
}

impl SlotStatus {
    /// The status of a fresh device: slot A committed and running.
    pub fn factory() -> Self {
        SlotStatus {
            active: Slot::A,
            pending: None,
            tried: false,
            running: Slot::A,
        }
    }

    /// Whether the running slot is a pending slot on its trial boot (the
    /// moment to run the health check and commit or roll back).
    pub fn on_trial(&self) -> bool {
        self.tried && self.pending == Some(self.running) && self.running != self.active
    }
}

/// What a (simulated) reboot started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootOutcome {
    /// The committed slot, as usual.
    Committed(Slot),
    /// The pending slot, on its one trial boot.
    Trial(Slot),
    /// The pending slot had used its trial boot without being committed:
    /// it was abandoned and the committed slot started.
    FellBack {
        /// The abandoned slot.
        failed: Slot,
        /// The committed slot that runs now.
        running: Slot,
    },
}

/// A device's A/B slot manager.
///
/// Implementations must keep their boot record crash-safe: after a power
/// cut at any point, [`Flasher::status`] describes a bootable device, and a
/// pending slot is started at most once before it is committed.
pub trait Flasher {
    /// The current boot record.
    fn status(&self) -> Result<SlotStatus>;

    /// The committed slot.
    fn active_slot(&self) -> Result<Slot> {
        Ok(self.status()?.active)
    }

    /// The slot an update is written to: the one that is not committed.
    fn inactive_slot(&self) -> Result<Slot> {
        Ok(self.status()?.active.other())
    }

    /// The file behind the inactive slot, prepared for writing (any pending
    /// mark on it cleared), when the slot is a file the downloader may
    /// stream into directly: that saves a copy and a hash pass (see
    /// [`install_streamed`]). `None` (the default) for slots that are not
    /// plain files; [`install_verified`] then writes through
    /// [`Flasher::write_inactive`].
    fn inactive_slot_file(&mut self, spec: &ImageSpec) -> Result<Option<PathBuf>> {
        let _ = spec;
        Ok(None)
    }

    /// Writes the image from `reader` into the inactive slot while hashing
    /// it, calling `progress` with the bytes written so far. Reads at most
    /// one byte past the signed length; fails with
    /// [`Error::ImageOversize`], [`Error::ImageTruncated`] or
    /// [`Error::ImageHashMismatch`]. Clears a pending mark on that slot
    /// *before* writing, and refuses while a slot is on trial or the running
    /// slot is not the committed one. Returns the digest of the bytes
    /// written.
    fn write_inactive(
        &mut self,
        reader: &mut dyn Read,
        spec: &ImageSpec,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Sha256Digest>;

    /// Hashes the first `len` bytes of `slot` as stored now (fewer if the
    /// slot holds fewer, which can then never match a signed digest).
    fn read_back_digest(&self, slot: Slot, len: u64) -> Result<Sha256Digest>;

    /// Marks `slot` to be tried once on the next boot. Refuses the
    /// committed slot and refuses while another slot is on trial.
    fn mark_pending(&mut self, slot: Slot) -> Result<()>;

    /// A reboot: starts a pending slot that has not been tried (recording
    /// the try first), abandons one that has, or starts the committed slot.
    fn boot(&mut self) -> Result<BootOutcome>;

    /// Makes the slot on trial the committed slot. Fails unless a pending
    /// slot is running on its trial boot.
    fn commit(&mut self) -> Result<()>;

    /// Abandons the pending slot (tried or not); the committed slot starts
    /// from the next boot on. Does nothing if nothing is pending.
    fn rollback(&mut self) -> Result<()>;
}

/// A simulated health check: is the image in this slot healthy?
pub type HealthCheck = Box<dyn Fn(Slot) -> bool + Send + Sync>;

/// A simulated, file-backed [`Flasher`]: `slot-a.img`, `slot-b.img` and
/// `boot.json` (a [`SlotStatus`], written with [`atomic_write`]) in one
/// directory.
///
/// Its [`health_check`](FileFlasher::health_check) says a slot is healthy
/// unless a flag file `unhealthy-<slot>` exists in the directory, or as a
/// closure set with [`FileFlasher::with_health_check`] decides.
pub struct FileFlasher {
    dir: PathBuf,
    status: SlotStatus,
    slot_capacity: Option<u64>,
    health: Option<HealthCheck>,
}

impl fmt::Debug for FileFlasher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileFlasher")
            .field("dir", &self.dir)
            .field("status", &self.status)
            .field("slot_capacity", &self.slot_capacity)
            .field("custom_health_check", &self.health.is_some())
            .finish()
    }
}

impl FileFlasher {
    /// Opens the slot directory `dir`, creating it with the factory boot
    /// record (slot A committed and running) if it has none. A boot record
    /// that cannot be read is [`Error::CorruptState`].
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        fs::create_dir_all(&dir).map_err(|e| {
            Error::storage_io(format!("creating slot directory {}", dir.display()), e)
        })?;
        let boot_path = dir.join(BOOT_FILE_NAME);
        remove_stale_temps(&boot_path)?;
        let status = match fs::read(&boot_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::CorruptState {
                path: boot_path.display().to_string(),
                detail: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let status = SlotStatus::factory();
                write_status(&boot_path, &status)?;
                status
            }
            Err(e) => return Err(Error::io(format!("reading {}", boot_path.display()), e)),
        };
        Ok(FileFlasher {
            dir,
            status,
            slot_capacity: None,
            health: None,
        })
    }

    /// Simulates slots of `bytes` each: larger images are refused before
    /// anything is written.
    pub fn with_slot_capacity(mut self, bytes: u64) -> Self {
        self.slot_capacity = Some(bytes);
        self
    }

    /// Replaces the flag-file health check with `check`.
    pub fn with_health_check(
        mut self,
        check: impl Fn(Slot) -> bool + Send + Sync + 'static,
    ) -> Self {
        self.health = Some(Box::new(check));
        self
    }

    /// The slot directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file that simulates `slot`.
    pub fn slot_path(&self, slot: Slot) -> PathBuf {
        self.dir.join(format!("slot-{slot}.img"))
    }

    /// The simulated health check of the running slot.
    pub fn health_check(&self) -> bool {
        let slot = self.status.running;
        match &self.health {
            Some(check) => check(slot),
            None => !self.dir.join(format!("unhealthy-{slot}")).exists(),
        }
    }

    /// Persists `next` and only then adopts it, so memory never runs ahead
    /// of the disk.
    fn set_status(&mut self, next: SlotStatus) -> Result<()> {
        write_status(&self.dir.join(BOOT_FILE_NAME), &next)?;
        self.status = next;
        Ok(())
    }
}

fn write_status(path: &Path, status: &SlotStatus) -> Result<()> {
    let mut bytes =
        serde_json::to_vec_pretty(status).map_err(|e| Error::malformed("boot record", e))?;
    bytes.push(b'\n');
    atomic_write(path, &bytes)
}

fn update_state(detail: impl Into<String>) -> Error {
    Error::UpdateState {
        detail: detail.into(),
    }
}

/// Turns a read error from an image stream into an [`Error`], keeping a
/// typed error the reader wrapped with `io::Error::other` (a download
/// adapter's verdict survives the trip through `Read`).
fn read_error(name: &str, e: std::io::Error) -> Error {
    if e.get_ref().is_some_and(|inner| inner.is::<Error>()) {
        if let Some(inner) = e.into_inner() {
            return match inner.downcast::<Error>() {
                Ok(typed) => *typed,
                Err(other) => Error::io(
                    format!("reading image {name:?}"),
                    std::io::Error::other(other),
                ),
            };
        }
        return Error::io(
            format!("reading image {name:?}"),
            std::io::ErrorKind::Other.into(),
        );
    }
    Error::io(format!("reading image {name:?}"), e)
}

impl FileFlasher {
    /// Checks the inactive slot may be written now and can hold `spec`, and
    /// clears any pending mark on it: a half-written slot must never stay
    /// marked bootable.
    fn prepare_inactive(&mut self, spec: &ImageSpec) -> Result<Slot> {
        let st = self.status;
        if st.running != st.active || (st.pending.is_some() && st.tried) {
            return Err(update_state(format!(
                "slot {} runs on trial (committed slot {}): commit or roll back and reboot before writing",
                st.running, st.active
            )));
        }
        if let Some(cap) = self.slot_capacity
            && spec.length > cap
        {
            return Err(Error::TooLarge {
                what: "image for a slot",
                limit: cap,
                actual: spec.length,
            });
        }
        let slot = st.active.other();
        if st.pending == Some(slot) {
            self.set_status(SlotStatus {
                pending: None,
                tried: false,
                ..st
            })?;
        }
        Ok(slot)
    }
}

impl Flasher for FileFlasher {
    fn status(&self) -> Result<SlotStatus> {
        Ok(self.status)
    }

    fn inactive_slot_file(&mut self, spec: &ImageSpec) -> Result<Option<PathBuf>> {
        let slot = self.prepare_inactive(spec)?;
        let path = self.slot_path(slot);
        // The downloader resumes from whatever the file holds, which is
        // only right if it holds the start of *this* image: a marker names
        // the image the slot is being filled with. Anything else (the old
        // firmware, another image) is emptied first, then the marker set.
        let marker = path.with_extension("target");
        let wanted = spec.sha256.to_hex();
        let current = std::fs::read_to_string(&marker).unwrap_or_default();
        if current.trim() != wanted {
            let ctx = || format!("preparing slot {slot} ({})", path.display());
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&path)
                .and_then(|f| f.sync_all())
                .map_err(|e| Error::storage_io(ctx(), e))?;
            atomic_write(&marker, wanted.as_bytes())?;
        }
        Ok(Some(path))
    }

    fn write_inactive(
        &mut self,
        reader: &mut dyn Read,
        spec: &ImageSpec,
        progress: &mut dyn FnMut(u64),
    ) -> Result<Sha256Digest> {
        let slot = self.prepare_inactive(spec)?;
        let path = self.slot_path(slot);
        // Rewritten from the start: a streaming marker no longer applies.
        let _ = std::fs::remove_file(path.with_extension("target"));
        let ctx = || format!("writing slot {slot} ({})", path.display());
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&path)
            .map_err(|e| Error::storage_io(ctx(), e))?;
        let mut hasher = ImageHasher::new(spec);
        let mut limited = reader.take(spec.length.saturating_add(1));
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            let n = match limited.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(read_error(&spec.name, e)),
            };
            // Checked before writing: an oversize stream never reaches the slot.
            hasher.update(&buf[..n])?;
            file.write_all(&buf[..n])
                .map_err(|e| Error::storage_io(ctx(), e))?;
            progress(hasher.position());
        }
        file.sync_all().map_err(|e| Error::storage_io(ctx(), e))?;
        hasher.finish()
    }

    fn read_back_digest(&self, slot: Slot, len: u64) -> Result<Sha256Digest> {
        let path = self.slot_path(slot);
        let ctx = || format!("reading back slot {slot} ({})", path.display());
        let file = match File::open(&path) {
            Ok(f) => f,
            // A slot never written reads as empty.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Sha256Digest::of(b""));
            }
            Err(e) => return Err(Error::io(ctx(), e)),
        };
        let mut limited = file.take(len);
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; CHUNK_BYTES];
        loop {
            match limited.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => hasher.update(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(Error::io(ctx(), e)),
            }
        }
        Ok(Sha256Digest(hasher.finalize().into()))
    }

    fn mark_pending(&mut self, slot: Slot) -> Result<()> {
        let st = self.status;
        if slot == st.active {
            return Err(update_state(format!(
                "slot {slot} is the committed slot; only the inactive slot can be marked pending"
            )));
        }
        if st.running != st.active || (st.pending.is_some() && st.tried) {
            return Err(update_state(format!(
                "slot {} runs on trial: commit or roll back before marking a slot pending",
                st.running
            )));
        }
        self.set_status(SlotStatus {
            pending: Some(slot),
            tried: false,
            ..st
        })
    }

    fn boot(&mut self) -> Result<BootOutcome> {
        let st = self.status;
        match st.pending {
            Some(p) if !st.tried => {
                // The try is on disk before the slot runs: a crash during
                // the trial cannot earn it a second one.
                self.set_status(SlotStatus {
                    tried: true,
                    running: p,
                    ..st
                })?;
                Ok(BootOutcome::Trial(p))
            }
            Some(p) => {
                self.set_status(SlotStatus {
                    pending: None,
                    tried: false,
                    running: st.active,
                    ..st
                })?;
                Ok(BootOutcome::FellBack {
                    failed: p,
                    running: st.active,
                })
            }
            None => {
                self.set_status(SlotStatus {
                    running: st.active,
                    ..st
                })?;
                Ok(BootOutcome::Committed(st.active))
            }
        }
    }

    fn commit(&mut self) -> Result<()> {
        let st = self.status;
        if !st.on_trial() {
            return Err(update_state(format!(
                "nothing to commit: no pending slot is running on its trial boot ({st:?})"
            )));
        }
        self.set_status(SlotStatus {
            active: st.running,
            pending: None,
            tried: false,
            running: st.running,
        })
    }

    fn rollback(&mut self) -> Result<()> {
        let st = self.status;
        if st.pending.is_none() {
            return Ok(());
        }
        self.set_status(SlotStatus {
            pending: None,
            tried: false,
            ..st
        })
    }
}

/// The image of `manifest` this device installs: exactly one, with target
/// [`ROOTFS_TARGET`]. Anything else is [`Error::UnsupportedTarget`], so a
/// release is never installed in part.
pub fn rootfs_image(manifest: &Manifest) -> Result<&ImageSpec> {
    let mut found: Option<&ImageSpec> = None;
    for image in &manifest.images {
        if image.target != ROOTFS_TARGET || found.is_some() {
            return Err(Error::UnsupportedTarget {
                name: image.name.clone(),
                target: image.target.clone(),
                supported: ROOTFS_TARGET,
            });
        }
        found = Some(image);
    }
    found.ok_or_else(|| Error::invalid("images", "the manifest lists no image"))
}

/// Installs an accepted plan into the inactive slot and marks it pending;
/// returns the update now in flight.
///
/// `plan` must come from [`crate::verify_manifest`] run against this
/// device's trusted state; `allow_downgrade` must be what that verification
/// was asked for (it lets the installed version go down at commit, never
/// the counter). `open_image` opens the image's bytes (a verified cache, a
/// download stream, a USB file: the bytes are checked here either way);
/// `progress` receives the bytes written.
///
/// In order: refuse unsupported targets, a device with an update in flight,
/// or a plan that would lower a committed value (before writing anything);
/// write while hashing; read the slot back and compare with the signed
/// sha256 ([`Error::ReadBackMismatch`] leaves nothing pending); record the
/// pending update in the trusted state; only then mark the slot pending. A
/// crash between the last two steps is resolved by [`finish_after_boot`]
/// (the slot was never bootable, so the pending record is dropped).
pub fn install_verified<F, P>(
    flasher: &mut dyn Flasher,
    store: &dyn StateStore,
    plan: &UpdatePlan,
    allow_downgrade: bool,
    mut open_image: F,
    mut progress: P,
) -> Result<PendingUpdate>
where
    F: FnMut(&ImageSpec) -> Result<Box<dyn Read>>,
    P: FnMut(&ImageSpec, u64),
{
    let (image, state, pending) = prepare_install(flasher, store, plan, allow_downgrade)?;
    let mut reader = open_image(image)?;
    flasher.write_inactive(&mut *reader, image, &mut |n| progress(image, n))?;
    finish_install(flasher, store, state, pending, image)
}

/// Like [`install_verified`], for flashers whose inactive slot is a file
/// ([`Flasher::inactive_slot_file`]): `stream` writes the image straight
/// into that file while hashing it (the resumable downloader does, with the
/// signed length and sha256), then the slot is read back and hashed again
/// before it is marked pending. One write and two hash passes instead of a
/// download, a copy and three. Returns `Ok(None)`, having written nothing,
/// when the flasher has no such file.
pub fn install_streamed<S>(
    flasher: &mut dyn Flasher,
    store: &dyn StateStore,
    plan: &UpdatePlan,
    allow_downgrade: bool,
    stream: S,
) -> Result<Option<PendingUpdate>>
where
    S: FnOnce(&ImageSpec, &Path) -> Result<Sha256Digest>,
{
    let (image, state, pending) = prepare_install(flasher, store, plan, allow_downgrade)?;
    let Some(path) = flasher.inactive_slot_file(image)? else {
        return Ok(None);
    };
    let written = stream(image, &path)?;
    if written != image.sha256 {
        return Err(Error::ImageHashMismatch {
            name: image.name.clone(),
            expected: image.sha256.to_hex(),
            actual: written.to_hex(),
        });
    }
    finish_install(flasher, store, state, pending, image).map(Some)
}

/// Checks before anything is written: a single rootfs image, a provisioned
/// device with no update in flight, and a plan the ratchet allows.
fn prepare_install<'p>(
    flasher: &mut dyn Flasher,
    store: &dyn StateStore,
    plan: &'p UpdatePlan,
    allow_downgrade: bool,
) -> Result<(&'p ImageSpec, TrustedState, PendingUpdate)> {
    let image = rootfs_image(&plan.manifest)?;
    let state = load_provisioned(store)?;
    if let Some(p) = state.pending() {
        return Err(update_state(format!(
            "update to {} in slot {} is still pending; finish it first",
            p.version, p.slot
        )));
    }
    let slot = flasher.inactive_slot()?;
    let m = &plan.manifest;
    let pending = PendingUpdate {
        version: m.version.clone(),
        channel: m.channel.clone(),
        security_counter: m.security_counter,
        manifest_version: m.manifest_version,
        slot,
        allow_downgrade,
        latest_known_time: plan.latest_known_time,
    };
    state.check_ratchet(&pending)?;
    Ok((image, state, pending))
}

/// After the slot is written: hash it again from the slot (RAUC
/// CVE-2020-25860), record the pending update, then mark the slot pending.
fn finish_install(
    flasher: &mut dyn Flasher,
    store: &dyn StateStore,
    mut state: TrustedState,
    pending: PendingUpdate,
    image: &ImageSpec,
) -> Result<PendingUpdate> {
    let slot = pending.slot;
    let read_back = flasher.read_back_digest(slot, image.length)?;
    if read_back != image.sha256 {
        return Err(Error::ReadBackMismatch {
            name: image.name.clone(),
            slot: slot.to_string(),
            expected: image.sha256.to_hex(),
            actual: read_back.to_hex(),
        });
    }
    state.set_pending(pending.clone())?;
    store.save(&state)?;
    if let Err(e) = flasher.mark_pending(slot) {
        // Best effort: finish_after_boot would drop the record anyway.
        state.clear_pending();
        let _ = store.save(&state);
        return Err(e);
    }
    Ok(pending)
}

/// How [`finish_after_boot`] left the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishOutcome {
    /// No update was in flight.
    Idle,
    /// The update is marked pending but has not been booted yet: reboot.
    AwaitingBoot(PendingUpdate),
    /// The update is committed and the trusted state ratcheted.
    Committed(PendingUpdate),
    /// The update was abandoned; the committed slot and state stand.
    RolledBack {
        /// The abandoned update.
        update: PendingUpdate,
        /// Why.
        reason: RollbackReason,
    },
}

/// Why an update was rolled back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollbackReason {
    /// The new slot booted but failed its health check.
    HealthCheckFailed,
    /// The new slot's trial boot ended without a commit (crash, power cut,
    /// watchdog), or it was never marked bootable; the committed slot runs.
    NotCommitted,
}

impl RollbackReason {
    /// A stable snake_case code, for reports.
    pub fn code(&self) -> &'static str {
        match self {
            RollbackReason::HealthCheckFailed => "health_check_failed",
            RollbackReason::NotCommitted => "boot_not_committed",
        }
    }
}

/// Finishes an update after a boot, given the result of the running slot's
/// health check; safe to call on every start.
///
/// - On trial and healthy: commit the slot, *then* ratchet and save the
///   trusted state. A crash in between is finished by the next call (the
///   flasher shows the pending slot committed, so the ratchet is applied).
/// - On trial and unhealthy: roll back and forget the pending update;
///   the committed values are untouched. Reboot to run the committed slot.
/// - The trial boot ended without a commit (the flasher fell back) or the
///   slot was never marked: forget the pending update.
/// - A slot pending in the flasher that the trusted state knows nothing
///   about is rolled back: what cannot be ratcheted is never committed.
///
/// `health_ok` matters only while a slot is on trial.
pub fn finish_after_boot(
    flasher: &mut dyn Flasher,
    store: &dyn StateStore,
    health_ok: bool,
) -> Result<FinishOutcome> {
    let mut state = load_provisioned(store)?;
    let st = flasher.status()?;
    let Some(p) = state.pending().cloned() else {
        if st.pending.is_some() {
            flasher.rollback()?;
        }
        return Ok(FinishOutcome::Idle);
    };

    if st.pending == Some(p.slot) && !st.tried {
        return Ok(FinishOutcome::AwaitingBoot(p));
    }
    if st.on_trial() && st.running == p.slot {
        if !health_ok {
            return roll_back(flasher, store, state, p, RollbackReason::HealthCheckFailed);
        }
        let mut next = state.clone();
        if let Err(e) = next.ratchet_after_commit(&p) {
            // Cannot happen if install_verified recorded it; never commit
            // what the state cannot ratchet to.
            roll_back(flasher, store, state, p, RollbackReason::HealthCheckFailed)?;
            return Err(e);
        }
        flasher.commit()?;
        store.save(&next)?;
        return Ok(FinishOutcome::Committed(p));
    }
    if st.pending.is_none() && st.active == p.slot {
        // The flasher committed (only ever done after a good health check)
        // but the state was not saved: finish the ratchet.
        state.ratchet_after_commit(&p)?;
        store.save(&state)?;
        return Ok(FinishOutcome::Committed(p));
    }
    roll_back(flasher, store, state, p, RollbackReason::NotCommitted)
}

fn roll_back(
    flasher: &mut dyn Flasher,
    store: &dyn StateStore,
    mut state: TrustedState,
    update: PendingUpdate,
    reason: RollbackReason,
) -> Result<FinishOutcome> {
    flasher.rollback()?;
    state.clear_pending();
    // A slot that booted and failed its check would fail again: remember it.
    // One that was never committed (power cut, watchdog) may be retried.
    if reason == RollbackReason::HealthCheckFailed {
        state.record_failed_release(&update);
    }
    store.save(&state)?;
    Ok(FinishOutcome::RolledBack { update, reason })
}

fn load_provisioned(store: &dyn StateStore) -> Result<TrustedState> {
    store
        .load()?
        .ok_or_else(|| update_state("the device has no trusted state (not provisioned)"))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;
    use std::rc::Rc;

    use super::*;
    use crate::state::test_support::provisioned;
    use crate::state::{FileStateStore, MemoryStateStore};

    fn image_bytes(len: usize, seed: u8) -> Vec<u8> {
        (0..len)
            .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
            .collect()
    }

    fn spec_of(bytes: &[u8]) -> ImageSpec {
        ImageSpec {
            name: "fw.bin".into(),
            target: ROOTFS_TARGET.into(),
            length: bytes.len() as u64,
            sha256: Sha256Digest::of(bytes),
        }
    }

    fn plan(images: Vec<ImageSpec>, version: &str, counter: u32, mv: u64) -> UpdatePlan {
        UpdatePlan {
            manifest: Manifest {
                spec_version: 1,
                product_line: "encoders".into(),
                hw_compat: vec!["enc-4k-r2".into()],
                channel: "stable".into(),
                version: version.parse().unwrap(),
                manifest_version: mv,
                security_counter: counter,
                requires: None,
                issued_at: time::macros::datetime!(2030-01-01 0:00 UTC),
                expires: time::macros::datetime!(2031-01-01 0:00 UTC),
                images,
                release_notes: None,
                release_notes_sha256: None,
                kind: None,
                mixed_reason: None,
                advisory: None,
                sbom: None,
                extensions: Default::default(),
            },
            payload: Vec::new(),
            signed_by: Vec::new(),
            root_version: 1,
            latest_known_time: Some(time::macros::datetime!(2030-01-01 0:00 UTC)),
        }
    }

    struct Device {
        dir: tempfile::TempDir,
        flasher: FileFlasher,
        store: FileStateStore,
    }

    impl Device {
        fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            let flasher = FileFlasher::open(dir.path().join("slots")).unwrap();
            fs::write(flasher.slot_path(Slot::A), b"factory image").unwrap();
            let store = FileStateStore::open(dir.path()).unwrap();
            store.save(&provisioned()).unwrap();
            Device {
                dir,
                flasher,
                store,
            }
        }

        /// A power cut: everything in memory is lost, the disk stays.
        fn power_cut(&mut self) {
            self.flasher = FileFlasher::open(self.dir.path().join("slots")).unwrap();
            self.store = FileStateStore::open(self.dir.path()).unwrap();
        }

        fn state(&self) -> TrustedState {
            self.store.load().unwrap().unwrap()
        }

        fn install(&mut self, bytes: &[u8], version: &str, counter: u32) -> Result<PendingUpdate> {
            let data = bytes.to_vec();
            let p = plan(vec![spec_of(bytes)], version, counter, 6);
            install_verified(
                &mut self.flasher,
                &self.store,
                &p,
                false,
                move |_| Ok(Box::new(std::io::Cursor::new(data.clone()))),
                |_, _| {},
            )
        }
    }

    #[test]
    fn full_a_b_cycle_commits_then_ratchets() {
        let mut dev = Device::new();
        let img = image_bytes(3 * CHUNK_BYTES + 5, 1);
        let p = dev.install(&img, "2.0.0", 7).unwrap();
        assert_eq!(p.slot, Slot::B);
        assert_eq!(fs::read(dev.flasher.slot_path(Slot::B)).unwrap(), img);

        let st = dev.flasher.status().unwrap();
        assert_eq!(
            (st.active, st.pending, st.tried),
            (Slot::A, Some(Slot::B), false)
        );
        // Pending is recorded, but nothing is ratcheted yet.
        let s = dev.state();
        assert_eq!(s.pending(), Some(&p));
        assert_eq!(s.security_counter(), 3);
        assert_eq!(
            finish_after_boot(&mut dev.flasher, &dev.store, true).unwrap(),
            FinishOutcome::AwaitingBoot(p.clone())
        );

        assert_eq!(dev.flasher.boot().unwrap(), BootOutcome::Trial(Slot::B));
        assert_eq!(dev.state().security_counter(), 3, "no ratchet at boot");
        assert!(dev.flasher.health_check());
        let out = finish_after_boot(&mut dev.flasher, &dev.store, true).unwrap();
        assert_eq!(out, FinishOutcome::Committed(p));

        let s = dev.state();
        assert_eq!(s.security_counter(), 7);
        assert_eq!(s.manifest_version("stable"), 6);
        assert_eq!(s.installed_version().to_string(), "2.0.0");
        assert_eq!(s.pending(), None);
        let st = dev.flasher.status().unwrap();
        assert_eq!(
            (st.active, st.pending, st.running),
            (Slot::B, None, Slot::B)
        );
        // Survives a power cut: B stays committed.
        dev.power_cut();
        assert_eq!(dev.flasher.boot().unwrap(), BootOutcome::Committed(Slot::B));
        assert_eq!(
            finish_after_boot(&mut dev.flasher, &dev.store, true).unwrap(),
            FinishOutcome::Idle
        );

        // The next update goes to A.
        let img2 = image_bytes(1000, 2);
        assert_eq!(dev.install(&img2, "2.1.0", 7).unwrap().slot, Slot::A);
    }

    /// Streams like the resumable downloader: appends what is missing to
    /// what the file already holds, and returns the digest of the whole.
    fn resume_into(bytes: &[u8], path: &Path) -> Result<Sha256Digest> {
        let have = fs::read(path).unwrap_or_default();
        let mut whole = have.clone();
        whole.extend_from_slice(&bytes[have.len().min(bytes.len())..]);
        fs::write(path, &whole).unwrap();
        Ok(Sha256Digest::of(&whole))
    }

    #[test]
    fn streamed_installs_never_resume_from_another_image() {
        let mut dev = Device::new();
        // The inactive slot holds bytes of something else (old firmware).
        fs::write(
            dev.flasher.slot_path(Slot::B),
            b"old firmware, not this image",
        )
        .unwrap();
        let img = image_bytes(2 * CHUNK_BYTES + 3, 4);
        let p = plan(vec![spec_of(&img)], "2.0.0", 7, 6);
        let pending = install_streamed(&mut dev.flasher, &dev.store, &p, false, |spec, path| {
            assert_eq!(spec.length, img.len() as u64);
            resume_into(&img, path)
        })
        .unwrap()
        .expect("file slots stream");
        assert_eq!(pending.slot, Slot::B);
        assert_eq!(fs::read(dev.flasher.slot_path(Slot::B)).unwrap(), img);

        // A cut download of the same image resumes from its own bytes.
        let mut dev = Device::new();
        let half = &img[..img.len() / 2];
        let p = plan(vec![spec_of(&img)], "2.0.0", 7, 6);
        let first = install_streamed(&mut dev.flasher, &dev.store, &p, false, |_, path| {
            fs::write(path, half).unwrap();
            Err(Error::io("cut", std::io::ErrorKind::ConnectionReset.into()))
        });
        assert!(matches!(first, Err(Error::Io { .. })), "{first:?}");
        let resumed_from = std::cell::Cell::new(0);
        install_streamed(&mut dev.flasher, &dev.store, &p, false, |_, path| {
            resumed_from.set(fs::metadata(path).unwrap().len());
            resume_into(&img, path)
        })
        .unwrap();
        assert_eq!(resumed_from.get(), half.len() as u64);
        assert_eq!(fs::read(dev.flasher.slot_path(Slot::B)).unwrap(), img);
    }

    #[test]
    fn failed_health_check_rolls_back_and_keeps_the_counter() {
        let mut dev = Device::new();
        let img = image_bytes(4096, 3);
        let p = dev.install(&img, "2.0.0", 7).unwrap();
        fs::write(dev.flasher.dir().join("unhealthy-b"), b"").unwrap();
        assert_eq!(dev.flasher.boot().unwrap(), BootOutcome::Trial(Slot::B));
        let healthy = dev.flasher.health_check();
        assert!(!healthy);

        let out = finish_after_boot(&mut dev.flasher, &dev.store, healthy).unwrap();
        assert_eq!(
            out,
            FinishOutcome::RolledBack {
                update: p,
                reason: RollbackReason::HealthCheckFailed
            }
        );
        let s = dev.state();
        assert_eq!(s.security_counter(), 3);
        assert_eq!(s.installed_version().to_string(), "1.0.0");
        assert_eq!(s.pending(), None);
        assert_eq!(dev.flasher.active_slot().unwrap(), Slot::A);
        assert_eq!(dev.flasher.boot().unwrap(), BootOutcome::Committed(Slot::A));
        assert_eq!(
            fs::read(dev.flasher.slot_path(Slot::A)).unwrap(),
            b"factory image"
        );
    }

    #[test]
    fn health_check_closure_decides_when_set() {
        let dir = tempfile::tempdir().unwrap();
        let f = FileFlasher::open(dir.path())
            .unwrap()
            .with_health_check(|slot| slot == Slot::B);
        assert!(!f.health_check(), "A runs and the closure says no");
    }

    #[test]
    fn power_cut_between_flash_and_commit_boots_the_old_slot() {
        let mut dev = Device::new();
        let img = image_bytes(10_000, 4);
        let p = dev.install(&img, "2.0.0", 7).unwrap();

        // Power cut right after mark_pending: the reboot is the trial.
        dev.power_cut();
        assert_eq!(dev.flasher.boot().unwrap(), BootOutcome::Trial(Slot::B));
        // Power cut (or crash) during the trial, before any commit.
        dev.power_cut();
        assert_eq!(dev.state().security_counter(), 3, "counter unchanged");
        assert_eq!(
            dev.flasher.boot().unwrap(),
            BootOutcome::FellBack {
                failed: Slot::B,
                running: Slot::A
            }
        );
        // Whatever the health check says now, nothing is committed.
        let out = finish_after_boot(&mut dev.flasher, &dev.store, true).unwrap();
        assert_eq!(
            out,
            FinishOutcome::RolledBack {
                update: p,
                reason: RollbackReason::NotCommitted
            }
        );
        let s = dev.state();
        assert_eq!(s.security_counter(), 3);
        assert_eq!(s.installed_version().to_string(), "1.0.0");
        assert_eq!(s.pending(), None);
        let st = dev.flasher.status().unwrap();
        assert_eq!(
            (st.active, st.pending, st.running),
            (Slot::A, None, Slot::A)
        );
    }

    #[test]
    fn panic_between_mark_pending_and_commit_changes_no_trusted_state() {
        let mut dev = Device::new();
        let img = image_bytes(2048, 5);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            dev.install(&img, "2.0.0", 7).unwrap();
            dev.flasher.boot().unwrap();
            panic!("agent crashed before the health check");
        }));
        assert!(caught.is_err());
        dev.power_cut();
        assert_eq!(dev.state().security_counter(), 3);
        assert!(matches!(
            dev.flasher.boot().unwrap(),
            BootOutcome::FellBack { .. }
        ));
        finish_after_boot(&mut dev.flasher, &dev.store, true).unwrap();
        assert_eq!(dev.state().security_counter(), 3);
        assert_eq!(dev.flasher.active_slot().unwrap(), Slot::A);
    }

    #[test]
    fn crash_between_commit_and_state_save_is_finished_on_next_start() {
        let mut dev = Device::new();
        let p = dev.install(&image_bytes(512, 6), "2.0.0", 7).unwrap();
        dev.flasher.boot().unwrap();
        dev.flasher.commit().unwrap(); // ... and the power goes
        dev.power_cut();
        assert_eq!(dev.state().security_counter(), 3);
        assert_eq!(dev.flasher.boot().unwrap(), BootOutcome::Committed(Slot::B));
        let out = finish_after_boot(&mut dev.flasher, &dev.store, true).unwrap();
        assert_eq!(out, FinishOutcome::Committed(p));
        assert_eq!(dev.state().security_counter(), 7);
        assert_eq!(dev.state().pending(), None);
    }

    #[test]
    fn crash_between_state_record_and_mark_pending_drops_the_record() {
        let mut dev = Device::new();
        let img = image_bytes(512, 7);
        let p = dev.install(&img, "2.0.0", 7).unwrap();
        // Undo only the mark, as if the crash came before it.
        dev.flasher.rollback().unwrap();
        dev.power_cut();
        assert_eq!(dev.flasher.boot().unwrap(), BootOutcome::Committed(Slot::A));
        let out = finish_after_boot(&mut dev.flasher, &dev.store, true).unwrap();
        assert_eq!(
            out,
            FinishOutcome::RolledBack {
                update: p,
                reason: RollbackReason::NotCommitted
            }
        );
        assert_eq!(dev.state().pending(), None);
    }

    /// Corrupts the slot between the write and the read-back (the
    /// check-then-flash race).
    struct RacingFlasher(FileFlasher);

    impl Flasher for RacingFlasher {
        fn status(&self) -> Result<SlotStatus> {
            self.0.status()
        }
        fn write_inactive(
            &mut self,
            reader: &mut dyn Read,
            spec: &ImageSpec,
            progress: &mut dyn FnMut(u64),
        ) -> Result<Sha256Digest> {
            let d = self.0.write_inactive(reader, spec, progress)?;
            let path = self.0.slot_path(self.0.inactive_slot()?);
            let mut bytes = fs::read(&path).unwrap();
            bytes[100] ^= 0x01;
            fs::write(&path, bytes).unwrap();
            Ok(d)
        }
        fn read_back_digest(&self, slot: Slot, len: u64) -> Result<Sha256Digest> {
            self.0.read_back_digest(slot, len)
        }
        fn mark_pending(&mut self, slot: Slot) -> Result<()> {
            self.0.mark_pending(slot)
        }
        fn boot(&mut self) -> Result<BootOutcome> {
            self.0.boot()
        }
        fn commit(&mut self) -> Result<()> {
            self.0.commit()
        }
        fn rollback(&mut self) -> Result<()> {
            self.0.rollback()
        }
    }

    #[test]
    fn read_back_mismatch_marks_nothing_pending() {
        let dev = Device::new();
        let mut racing = RacingFlasher(dev.flasher);
        let img = image_bytes(4096, 8);
        let data = img.clone();
        let err = install_verified(
            &mut racing,
            &dev.store,
            &plan(vec![spec_of(&img)], "2.0.0", 7, 6),
            false,
            move |_| Ok(Box::new(std::io::Cursor::new(data.clone()))),
            |_, _| {},
        )
        .unwrap_err();
        assert_eq!(err.code(), "read_back_mismatch", "{err}");
        assert!(!err.retryable());
        assert_eq!(racing.status().unwrap().pending, None);
        assert_eq!(dev.store.load().unwrap().unwrap().pending(), None);
        assert_eq!(racing.boot().unwrap(), BootOutcome::Committed(Slot::A));
    }

    #[test]
    fn oversize_truncated_and_tampered_images_are_typed_errors() {
        let mut dev = Device::new();
        let img = image_bytes(CHUNK_BYTES + 10, 9);
        let spec = spec_of(&img);

        let mut longer = img.clone();
        longer.push(0);
        let mut tampered = img.clone();
        tampered[7] ^= 0x80;
        let cases: [(&[u8], &str, bool); 3] = [
            (&longer, "image_oversize", false),
            (&img[..img.len() - 1], "image_truncated", true),
            (&tampered, "image_hash_mismatch", false),
        ];
        for (bytes, code, retryable) in cases {
            let mut reader = bytes;
            let err = dev
                .flasher
                .write_inactive(&mut reader, &spec, &mut |_| {})
                .unwrap_err();
            assert_eq!(err.code(), code);
            assert_eq!(err.retryable(), retryable, "{code}");
        }
        // Oversize never reaches the slot beyond the signed length.
        assert!(fs::metadata(dev.flasher.slot_path(Slot::B)).unwrap().len() <= spec.length);

        // An endless stream is cut one chunk in.
        let mut endless = std::io::repeat(1);
        let err = dev
            .flasher
            .write_inactive(&mut endless, &spec, &mut |_| {})
            .unwrap_err();
        assert_eq!(err.code(), "image_oversize");

        // Through install_verified: nothing pending, state untouched.
        let data = img[..100].to_vec();
        let err = install_verified(
            &mut dev.flasher,
            &dev.store,
            &plan(vec![spec.clone()], "2.0.0", 7, 6),
            false,
            move |_| Ok(Box::new(std::io::Cursor::new(data.clone()))),
            |_, _| {},
        )
        .unwrap_err();
        assert_eq!(err.code(), "image_truncated");
        assert_eq!(dev.flasher.status().unwrap().pending, None);
        assert_eq!(dev.state().pending(), None);
    }

    #[test]
    fn slot_capacity_is_checked_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = FileFlasher::open(dir.path())
            .unwrap()
            .with_slot_capacity(100);
        let img = image_bytes(101, 1);
        let err = f
            .write_inactive(&mut &img[..], &spec_of(&img), &mut |_| {})
            .unwrap_err();
        assert_eq!(err.code(), "too_large");
        assert!(!f.slot_path(Slot::B).exists());
    }

    #[test]
    fn typed_errors_from_the_reader_survive() {
        struct Failing;
        impl Read for Failing {
            fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
                Err(std::io::Error::other(Error::TooLarge {
                    what: "download",
                    limit: 1,
                    actual: 2,
                }))
            }
        }
        let dir = tempfile::tempdir().unwrap();
        let mut f = FileFlasher::open(dir.path()).unwrap();
        let err = f
            .write_inactive(&mut Failing, &spec_of(b"abc"), &mut |_| {})
            .unwrap_err();
        assert_eq!(err.code(), "too_large");
    }

    #[test]
    fn unsupported_targets_are_refused_before_writing() {
        let mut dev = Device::new();
        let img = image_bytes(64, 1);
        let mut boot = spec_of(&img);
        boot.name = "u-boot.bin".into();
        boot.target = "bootloader".into();
        let mut second = spec_of(&img);
        second.name = "fw2.bin".into();
        for images in [
            vec![boot.clone()],
            vec![spec_of(&img), boot],
            vec![spec_of(&img), second],
        ] {
            let opened = Rc::new(Cell::new(false));
            let seen = opened.clone();
            let err = install_verified(
                &mut dev.flasher,
                &dev.store,
                &plan(images, "2.0.0", 7, 6),
                false,
                move |_| {
                    seen.set(true);
                    Ok(Box::new(std::io::empty()))
                },
                |_, _| {},
            )
            .unwrap_err();
            assert_eq!(err.code(), "unsupported_target", "{err}");
            assert!(!opened.get(), "no image opened");
        }
        assert!(!dev.flasher.slot_path(Slot::B).exists());
    }

    #[test]
    fn plans_that_would_lower_the_counter_are_refused_before_writing() {
        let mut dev = Device::new();
        let err = dev.install(&image_bytes(64, 1), "2.0.0", 2).unwrap_err();
        assert_eq!(err.code(), "ratchet_backwards");
        assert!(!dev.flasher.slot_path(Slot::B).exists());
    }

    #[test]
    fn second_install_while_pending_is_refused() {
        let mut dev = Device::new();
        dev.install(&image_bytes(64, 1), "2.0.0", 7).unwrap();
        let err = dev.install(&image_bytes(64, 2), "2.1.0", 7).unwrap_err();
        assert_eq!(err.code(), "invalid_update_state");
        // And no writing into the slot on trial or the committed one.
        dev.flasher.boot().unwrap();
        let img = image_bytes(64, 3);
        let err = dev
            .flasher
            .write_inactive(&mut &img[..], &spec_of(&img), &mut |_| {})
            .unwrap_err();
        assert_eq!(err.code(), "invalid_update_state");
        assert_eq!(
            dev.flasher.mark_pending(Slot::A).unwrap_err().code(),
            "invalid_update_state"
        );
    }

    #[test]
    fn flasher_refuses_out_of_order_steps() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = FileFlasher::open(dir.path()).unwrap();
        assert_eq!(f.commit().unwrap_err().code(), "invalid_update_state");
        assert_eq!(
            f.mark_pending(Slot::A).unwrap_err().code(),
            "invalid_update_state"
        );
        f.rollback().unwrap();
        // Marked but not booted: cannot commit.
        f.mark_pending(Slot::B).unwrap();
        assert_eq!(f.commit().unwrap_err().code(), "invalid_update_state");
        // Rewriting a marked slot clears the mark first.
        let img = image_bytes(10, 1);
        let mut tampered = img.clone();
        tampered[0] ^= 1;
        f.write_inactive(&mut &tampered[..], &spec_of(&img), &mut |_| {})
            .unwrap_err();
        assert_eq!(f.status().unwrap().pending, None);
    }

    #[test]
    fn stray_flasher_pending_without_state_record_is_rolled_back() {
        let mut dev = Device::new();
        let img = image_bytes(64, 1);
        dev.flasher
            .write_inactive(&mut &img[..], &spec_of(&img), &mut |_| {})
            .unwrap();
        dev.flasher.mark_pending(Slot::B).unwrap();
        dev.flasher.boot().unwrap();
        let out = finish_after_boot(&mut dev.flasher, &dev.store, true).unwrap();
        assert_eq!(out, FinishOutcome::Idle);
        assert_eq!(dev.flasher.active_slot().unwrap(), Slot::A);
        assert_eq!(dev.state().security_counter(), 3);
    }

    #[test]
    fn corrupt_boot_record_is_a_typed_error() {
        let dir = tempfile::tempdir().unwrap();
        FileFlasher::open(dir.path()).unwrap();
        fs::write(dir.path().join(BOOT_FILE_NAME), b"{\"active\":").unwrap();
        let err = FileFlasher::open(dir.path()).unwrap_err();
        assert_eq!(err.code(), "corrupt_state");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn full_disk_while_writing_a_slot_is_storage_full() {
        if !Path::new("/dev/full").exists() {
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let mut f = FileFlasher::open(dir.path()).unwrap();
        std::os::unix::fs::symlink("/dev/full", f.slot_path(Slot::B)).unwrap();
        let img = image_bytes(4096, 1);
        let err = f
            .write_inactive(&mut &img[..], &spec_of(&img), &mut |_| {})
            .unwrap_err();
        assert_eq!(err.code(), "storage_full", "{err}");
        assert!(err.retryable());
    }

    #[test]
    fn not_provisioned_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let mut f = FileFlasher::open(dir.path()).unwrap();
        let store = MemoryStateStore::default();
        let err = finish_after_boot(&mut f, &store, true).unwrap_err();
        assert_eq!(err.code(), "invalid_update_state");
    }
}
