//! The update session a device vendor embeds: check → consent → download →
//! verify → flash → (reboot) → commit or roll back → report.
//!
//! [`UpdateSession`] ties the pieces together over any [`Transport`], any
//! [`StateStore`] and any [`Flasher`], so the safe order is the only one
//! available:
//!
//! 1. [`UpdateSession::check`] asks `POST /v1/device/check`, walks the root
//!    chain of the answer from the stored root
//!    ([`TrustedState::accept_root_chain`]) and verifies the offered manifest
//!    with the device's identity, committed state, channel and clock
//!    ([`verify_manifest`]) *before* anything is downloaded. The server's
//!    offer must name exactly the image the manifest signs.
//! 2. The signed manifest's kind decides who says yes
//!    ([`UpdateSession::with_security_updates`]): a security fix (a
//!    `security` or `mixed` release) installs without asking while
//!    automatic security updates are on (the default, as the EU Cyber
//!    Resilience Act asks), and is held back when the owner opted out or
//!    postponed it; a feature release asks the optional consent hook
//!    ([`UpdateSession::with_consent`]: a user prompt, a maintenance
//!    window). An optional notice hook ([`UpdateSession::with_notice`])
//!    hears of every verified offer first, with the signed advisory of a
//!    security fix and what the session will do about it
//!    ([`UpdateNotice`]), so a user interface can show it.
//! 3. [`UpdateSession::download`] fetches the image with the resumable
//!    [`Downloader`] (length and sha256 checked on the stream).
//! 4. [`UpdateSession::install`] writes it into the inactive slot and marks
//!    it pending ([`install_verified`]); the device then reboots.
//! 5. On every start, [`UpdateSession::finish_after_boot`] commits (and only
//!    then ratchets the trusted state) or rolls back.
//!
//! Every stage is reported to `POST /v1/device/reports`. Reports go through
//! the queue in the trusted state first, so an unreachable server never
//! blocks or fails an update: undelivered reports are sent, in order, by
//! the next [`UpdateSession::flush_reports`] (every report call tries).
//!
//! ```no_run
//! use firmup_client::session::{DeviceConfig, UpdateSession};
//! use firmup_client::{FileFlasher, FileStateStore, HttpTransport};
//!
//! # fn maintenance_window_open() -> bool { true }
//! fn main() -> Result<(), firmup_client::Error> {
//!     let config = DeviceConfig {
//!         server: "https://updates.example.com".into(),
//!         serial: "SN-0001".into(),
//!         hw_id: "enc-4k-r2".into(),
//!         product_line: "encoders".into(),
//!         channel: "stable".into(),
//!         token: "device-token".into(),
//!     };
//!     let transport = HttpTransport::new(&config.server)?;
//!     let store = FileStateStore::open("/var/lib/firmup")?;
//!     let mut flasher = FileFlasher::open("/var/lib/firmup/slots")?;
//!     let healthy = flasher.health_check();
//!     let mut session = UpdateSession::new(config, &transport, &store, &mut flasher, "/var/lib/firmup/work")
//!         .with_consent(|_offer| maintenance_window_open()); // or ask the user
//!     session.finish_after_boot(healthy)?; // commit or roll back what the last boot tried
//!     let cycle = session.update(|p| eprintln!("{:?} {}/{}", p.phase, p.done, p.total))?;
//!     println!("{:?}; next check in {} s", cycle.outcome, cycle.poll_after_secs);
//!     Ok(()) // if an update was installed: reboot, then finish_after_boot again
//! }
//! ```
//!
//! # Security updates
//!
//! [`SecurityUpdates`] is the owner's choice for security fixes, read only
//! from the *verified* manifest's kind ([`crate::Manifest::kind`]), never
//! from anything else the server sends:
//!
//! | policy | security or mixed release | feature release |
//! |--------|---------------------------|-----------------|
//! | [`SecurityUpdates::Automatic`] (default) | installs, no consent asked | consent hook |
//! | [`SecurityUpdates::PostponedUntil`] a later date | not installed; `postponed` reported | consent hook |
//! | [`SecurityUpdates::PostponedUntil`] a date passed | installs, no consent asked | consent hook |
//! | [`SecurityUpdates::OptedOut`] | consent hook; **not installed** without one; `opted_out` reported unless installed | consent hook |
//!
//! "Consent hook" means: installs without asking when none is set, as
//! before. An opted-out security fix is the one exception on purpose: the
//! owner turned automatic installation off, so with no hook to ask there
//! is nobody who said yes, and installing anyway would ignore the opt-out.
//! Leaving it uninstalled is also what an owner who opted out expects; the
//! `opted_out` report tells the vendor the unit still runs the vulnerable
//! version. Each `opted_out` or `postponed` choice is reported once per
//! release (and again only when the choice changes), through the report
//! queue, not on every poll.
//!
//! This module must never download before the manifest is verified, never
//! flash bytes that did not pass the signed length and sha256, never let
//! a report failure change the outcome of an update, and never take a
//! security decision from anything but the verified manifest.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use semver::Version;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::download::{Downloaded, Downloader, Progress, RetryPolicy};
use crate::error::{Error, Result};
use crate::flash::{FinishOutcome, Flasher, install_streamed, install_verified, rootfs_image};
use crate::manifest::{Advisory, ImageSpec, MAX_MANIFEST_BYTES, ReleaseKind};
use crate::protocol::{
    CHECK_PATH, CheckRequest, CheckResponse, CheckStatus, DeviceEntitlement, FETCH_PATH,
    FetchRequest, FetchResponse, MAX_CHECK_RESPONSE_BYTES, MAX_REPORT_RESPONSE_BYTES, REPORTS_PATH,
    ReportRequest, SecuritySupport,
};
use crate::root::{MAX_ROOT_BYTES, MAX_ROOT_ROTATIONS, TrustedRoot};
use crate::state::{
    PendingUpdate, QueuedReport, ReportStage, ReportedChoice, StateStore, TrustedState,
};
use crate::transport::{FileTransport, Transport, error_code_from_json};
use crate::verify::{Clock, UpdatePlan, VerifyRequest, verify_manifest};

/// File name of the manifest envelope in an offline bundle.
pub const BUNDLE_MANIFEST: &str = "manifest.json";

/// Who the device is and where it asks; the agent keeps it in
/// `config.json`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceConfig {
    /// Base URL of the update server.
    pub server: String,
    /// The device's serial.
    pub serial: String,
    /// The device's hardware id.
    pub hw_id: String,
    /// The product line whose release keys must sign its firmware.
    pub product_line: String,
    /// The channel it follows.
    pub channel: String,
    /// Its device token (bound to `serial`). Never logged.
    pub token: String,
}

impl std::fmt::Debug for DeviceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeviceConfig")
            .field("server", &self.server)
            .field("serial", &self.serial)
            .field("hw_id", &self.hw_id)
            .field("product_line", &self.product_line)
            .field("channel", &self.channel)
            .field("token", &"<redacted>")
            .finish()
    }
}

/// What the device may believe about time when judging expiry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClockPolicy {
    /// The system clock is trustworthy (NTS, RTC with a good battery).
    #[default]
    System,
    /// No trustworthy clock: the latest signed `issued_at` accepted so far
    /// stands in for "now" ([`Clock::LatestKnown`]).
    LatestKnown,
}

/// A verified offer: what the signed manifest says to install, and where
/// the server says the bytes are.
#[derive(Debug, Clone)]
pub struct Offer {
    /// The accepted manifest (verified for this device).
    pub plan: UpdatePlan,
    /// The one image to install, as signed.
    pub image: ImageSpec,
    /// Where to fetch it (untrusted transport).
    pub url: String,
    /// The server offers this release as a step towards `target_version`.
    pub stepping_stone: bool,
    /// Where the steps lead.
    pub target_version: Option<String>,
    /// Why the device may have it.
    pub entitlement: DeviceEntitlement,
}

impl Offer {
    /// The offered version (from the signed manifest).
    pub fn version(&self) -> &Version {
        &self.plan.manifest.version
    }

    /// What the release is, from the signed manifest.
    pub fn kind(&self) -> ReleaseKind {
        self.plan.manifest.kind()
    }

    /// The signed advisory of a security or mixed release.
    pub fn advisory(&self) -> Option<&Advisory> {
        self.plan.manifest.advisory.as_ref()
    }
}

/// The owner's choice for releases that fix vulnerabilities (`security`
/// and `mixed`); see the module documentation for what each does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityUpdates {
    /// Security fixes install as soon as they are offered, without asking
    /// the consent hook (the default).
    #[default]
    Automatic,
    /// The owner decides each security fix through the consent hook; with
    /// no hook, security fixes are not installed.
    OptedOut,
    /// Security fixes are not installed before this instant, and then
    /// automatically.
    PostponedUntil(OffsetDateTime),
}

/// What the session does with a verified offer, decided from the signed
/// manifest's kind and the [`SecurityUpdates`] policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateAction {
    /// Installs now without asking: a security fix under automatic
    /// security updates (or a postponement that has passed), or a feature
    /// release with no consent hook set.
    Install,
    /// Installs if the consent hook says yes: a feature release, or a
    /// security fix whose owner opted out of automatic installation.
    AskConsent,
    /// Not installed: a security fix whose owner opted out, and no consent
    /// hook to ask.
    OptedOut,
    /// Not installed before this instant: a security fix the owner
    /// postponed.
    PostponedUntil(OffsetDateTime),
}

/// An update is available: what a user interface shows before anything is
/// downloaded. Everything here comes from the verified manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdateNotice {
    /// The offered version.
    pub version: Version,
    /// Its channel.
    pub channel: String,
    /// Security, feature or mixed.
    pub kind: ReleaseKind,
    /// The signed advisory (summary, CVEs, severity, action) of a security
    /// or mixed release; `None` for feature releases.
    pub advisory: Option<Advisory>,
    /// What the session does about it.
    pub action: UpdateAction,
}

/// What a check found.
#[derive(Debug, Clone)]
pub enum CheckOutcome {
    /// A verified release to install.
    Update(Box<Offer>),
    /// Nothing newer.
    UpToDate,
    /// Newer releases exist but the device may not have them.
    NotEntitled(DeviceEntitlement),
}

/// The answer to [`UpdateSession::check`].
#[derive(Debug, Clone)]
pub struct Checked {
    /// Seconds the server asks the device to wait before the next check.
    pub poll_after_secs: u64,
    /// What was found.
    pub outcome: CheckOutcome,
    /// When the unit's security support ends, as the server says
    /// (untrusted, for display).
    pub security_support: Option<SecuritySupport>,
}

/// The answer to [`UpdateSession::fetch`]: the release asked for, verified.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The release, verified like any offer.
    pub offer: Offer,
    /// The server says it is withdrawn from offers (untrusted, for
    /// display).
    pub yanked: bool,
}

/// How one [`UpdateSession::update`] cycle ended.
#[derive(Debug, Clone)]
pub enum CycleOutcome {
    /// Nothing newer.
    UpToDate,
    /// Newer releases exist but the device may not have them.
    NotEntitled(DeviceEntitlement),
    /// The consent hook said "not now"; nothing was downloaded.
    Declined(Box<Offer>),
    /// A security fix not installed because the owner opted out of
    /// automatic security updates and no consent hook is set; reported as
    /// `opted_out` (once per release). Nothing was downloaded.
    OptedOut(Box<Offer>),
    /// A security fix the owner postponed: not installed before `until`;
    /// reported as `postponed` (once per release and date). Nothing was
    /// downloaded.
    Postponed {
        /// The offer held back.
        offer: Box<Offer>,
        /// When it installs automatically.
        until: OffsetDateTime,
    },
    /// Written and marked pending: reboot, then call
    /// [`UpdateSession::finish_after_boot`].
    Installed(PendingUpdate),
}

/// The result of [`UpdateSession::update`].
#[derive(Debug, Clone)]
pub struct Cycle {
    /// Seconds the server asks the device to wait before the next check.
    pub poll_after_secs: u64,
    /// How the cycle ended.
    pub outcome: CycleOutcome,
    /// When the unit's security support ends, as the server says
    /// (untrusted, for display).
    pub security_support: Option<SecuritySupport>,
}

/// Which part of an update a progress report is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Fetching the image.
    Download,
    /// Writing it into the inactive slot.
    Flash,
}

/// Progress of a download or a flash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StepProgress {
    /// What is progressing.
    pub phase: Phase,
    /// Bytes done.
    pub done: u64,
    /// The signed length.
    pub total: u64,
    /// Transfer rate in bytes per second (downloads; 0 when flashing).
    pub rate_bytes_per_sec: u64,
}

/// What [`UpdateSession::flush_reports`] did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Reports the server accepted.
    pub sent: usize,
    /// Reports the server refused for good (a 4xx that no retry can fix);
    /// dropped so they do not block the queue.
    pub dropped: usize,
    /// Reports still queued (the server could not be reached).
    pub remaining: usize,
}

type ConsentHook<'a> = Box<dyn FnMut(&Offer) -> bool + 'a>;
type NoticeHook<'a> = Box<dyn FnMut(&UpdateNotice, &Offer) + 'a>;

/// One device's update session; see the module documentation.
pub struct UpdateSession<'a> {
    config: DeviceConfig,
    transport: &'a dyn Transport,
    store: &'a dyn StateStore,
    flasher: &'a mut dyn Flasher,
    downloader: Downloader,
    clock: ClockPolicy,
    consent: Option<ConsentHook<'a>>,
    notice: Option<NoticeHook<'a>>,
    security_updates: SecurityUpdates,
}

impl std::fmt::Debug for UpdateSession<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpdateSession")
            .field("config", &self.config)
            .field("downloader", &self.downloader)
            .field("clock", &self.clock)
            .field("consent", &self.consent.is_some())
            .field("notice", &self.notice.is_some())
            .field("security_updates", &self.security_updates)
            .finish_non_exhaustive()
    }
}

impl<'a> UpdateSession<'a> {
    /// A session for the device `config`, talking through `transport`,
    /// keeping its trusted state in `store`, flashing with `flasher` and
    /// keeping downloads in `work_dir`.
    pub fn new(
        config: DeviceConfig,
        transport: &'a dyn Transport,
        store: &'a dyn StateStore,
        flasher: &'a mut dyn Flasher,
        work_dir: impl Into<PathBuf>,
    ) -> Self {
        UpdateSession {
            config,
            transport,
            store,
            flasher,
            downloader: Downloader::new(work_dir),
            clock: ClockPolicy::default(),
            consent: None,
            notice: None,
            security_updates: SecurityUpdates::default(),
        }
    }

    /// Judges expiry with `clock` (default [`ClockPolicy::System`]).
    pub fn with_clock(mut self, clock: ClockPolicy) -> Self {
        self.clock = clock;
        self
    }

    /// Retries downloads with `policy`.
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.downloader = self.downloader.with_policy(policy);
        self
    }

    /// Uses `downloader` (its work directory, policy and clock) for images.
    pub fn with_downloader(mut self, downloader: Downloader) -> Self {
        self.downloader = downloader;
        self
    }

    /// Asks `consent` before downloading a verified feature release (and a
    /// security fix the owner opted out of automatic installation for);
    /// `false` ends the cycle with [`CycleOutcome::Declined`]. Security
    /// fixes under automatic security updates do not ask it.
    pub fn with_consent(mut self, consent: impl FnMut(&Offer) -> bool + 'a) -> Self {
        self.consent = Some(Box::new(consent));
        self
    }

    /// Handles security fixes with `policy` (default
    /// [`SecurityUpdates::Automatic`]); see the module documentation.
    pub fn with_security_updates(mut self, policy: SecurityUpdates) -> Self {
        self.security_updates = policy;
        self
    }

    /// Calls `notice` in [`Self::update`] for every verified offer, before
    /// consent is asked or anything is downloaded: that an update is
    /// available, its advisory, and what the session does about it.
    pub fn with_notice(mut self, notice: impl FnMut(&UpdateNotice, &Offer) + 'a) -> Self {
        self.notice = Some(Box::new(notice));
        self
    }

    /// Changes the security updates policy for the next cycles (the owner
    /// changed their choice while the session lives).
    pub fn set_security_updates(&mut self, policy: SecurityUpdates) {
        self.security_updates = policy;
    }

    /// The security updates policy.
    pub fn security_updates(&self) -> SecurityUpdates {
        self.security_updates
    }

    /// What [`Self::update`] would do with `offer` now, as the notice hook
    /// hears it.
    pub fn notice(&self, offer: &Offer) -> UpdateNotice {
        let m = &offer.plan.manifest;
        UpdateNotice {
            version: m.version.clone(),
            channel: m.channel.clone(),
            kind: m.kind(),
            advisory: m.advisory.clone(),
            action: self.action(offer),
        }
    }

    /// The decision of the table in the module documentation.
    fn action(&self, offer: &Offer) -> UpdateAction {
        let ask = if self.consent.is_some() {
            UpdateAction::AskConsent
        } else {
            UpdateAction::Install
        };
        if !offer.kind().fixes_security() {
            return ask;
        }
        match self.security_updates {
            SecurityUpdates::Automatic => UpdateAction::Install,
            SecurityUpdates::PostponedUntil(until) if self.policy_now(offer) < until => {
                UpdateAction::PostponedUntil(until)
            }
            SecurityUpdates::PostponedUntil(_) => UpdateAction::Install,
            SecurityUpdates::OptedOut if self.consent.is_some() => UpdateAction::AskConsent,
            SecurityUpdates::OptedOut => UpdateAction::OptedOut,
        }
    }

    /// "Now" for a postponement: the system clock, or without a trusted
    /// clock the latest signed time known, which the offered manifest's
    /// `issued_at` also proves has passed.
    fn policy_now(&self, offer: &Offer) -> OffsetDateTime {
        match self.clock {
            ClockPolicy::System => now(),
            ClockPolicy::LatestKnown => {
                let known = self
                    .store
                    .load()
                    .ok()
                    .flatten()
                    .and_then(|s| s.latest_known_time());
                known.map_or(offer.plan.manifest.issued_at, |k| {
                    k.max(offer.plan.manifest.issued_at)
                })
            }
        }
    }

    /// The device's configuration.
    pub fn config(&self) -> &DeviceConfig {
        &self.config
    }

    /// The flasher, for the device's own boot handling (a simulated reboot).
    pub fn flasher_mut(&mut self) -> &mut dyn Flasher {
        &mut *self.flasher
    }

    /// The stored trusted state; a device that was never provisioned is
    /// [`Error::UpdateState`].
    pub fn state(&self) -> Result<TrustedState> {
        self.store.load()?.ok_or_else(|| Error::UpdateState {
            detail: "the device has no trusted state (not provisioned)".into(),
        })
    }

    /// Finishes what the last boot tried (safe to call on every start):
    /// commits and ratchets when `health_ok`, rolls back otherwise, and
    /// reports `installed` or `rolled_back`.
    pub fn finish_after_boot(&mut self, health_ok: bool) -> Result<FinishOutcome> {
        let out = crate::flash::finish_after_boot(&mut *self.flasher, self.store, health_ok)?;
        match &out {
            FinishOutcome::Committed(p) => {
                let mut r = QueuedReport::new(p.version.clone(), ReportStage::Installed, now());
                r.channel = Some(p.channel.clone());
                self.report(r);
            }
            FinishOutcome::RolledBack { update, reason } => {
                let mut r =
                    QueuedReport::new(update.version.clone(), ReportStage::RolledBack, now());
                r.channel = Some(update.channel.clone());
                r.reason_code = Some(reason.code().to_owned());
                self.report(r);
            }
            FinishOutcome::Idle | FinishOutcome::AwaitingBoot(_) => {
                let _ = self.flush_reports();
            }
        }
        Ok(out)
    }

    /// Asks the server what is on offer; walks the root chain and verifies
    /// the offered manifest before returning it. A refused manifest is
    /// reported (`failed`, with the error's code) and returned as the error.
    pub fn check(&mut self) -> Result<Checked> {
        let mut state = self.state()?;
        let root = state.trusted_root()?;
        let channel = self.config.channel.clone();
        let req = CheckRequest {
            serial: self.config.serial.clone(),
            hw_id: self.config.hw_id.clone(),
            current_version: state.installed_version().to_string(),
            security_counter: u64::from(state.security_counter()),
            channel: Some(channel.clone()),
            root_version: root.version(),
            manifest_version: Some(state.manifest_version(&channel)),
        };
        let body = serde_json::to_vec(&req).map_err(|e| Error::malformed("check request", e))?;
        let reply = self.transport.post_json(
            CHECK_PATH,
            Some(&self.config.token),
            &body,
            MAX_CHECK_RESPONSE_BYTES,
        )?;
        if reply.status != 200 {
            return Err(Error::UnexpectedStatus {
                url: CHECK_PATH.into(),
                status: reply.status,
                server_code: reply.error_code(),
            });
        }
        let answer: CheckResponse = serde_json::from_slice(&reply.body)
            .map_err(|e| Error::malformed("update check answer", e))?;

        let root = state.accept_root_chain(answer.root_chain.iter().map(|r| r.get().as_bytes()))?;
        if root.version() > req.root_version {
            self.store.save(&state)?;
        }
        let poll_after_secs = answer.poll_after_secs;
        let security_support = answer.security_support;
        let outcome = match answer.status {
            CheckStatus::UpToDate => CheckOutcome::UpToDate,
            CheckStatus::NotEntitled => {
                CheckOutcome::NotEntitled(answer.entitlement.unwrap_or(DeviceEntitlement {
                    code: "unknown".into(),
                    summary: String::new(),
                }))
            }
            CheckStatus::UpdateAvailable => {
                let offer = answer.update.ok_or_else(|| Error::OfferMismatch {
                    detail: "status update_available without an update".into(),
                })?;
                let o = self.verify_offer(&state, &root, &channel, offer)?;
                let m = &o.plan.manifest;
                if let Some(f) = state.failed_release()
                    && f.version.cmp_precedence(&m.version).is_eq()
                    && f.channel == m.channel
                    && f.manifest_version >= m.manifest_version
                {
                    // Not reported: the rollback was, and a report per
                    // poll would only repeat it.
                    return Err(Error::FailedBefore {
                        version: m.version.clone(),
                    });
                }
                CheckOutcome::Update(Box::new(o))
            }
        };
        Ok(Checked {
            poll_after_secs,
            outcome,
            security_support,
        })
    }

    /// Verifies a server's offer under `root` for this device on
    /// `channel`, exactly as every update is verified before anything is
    /// downloaded; a refusal is reported as a failure of the release the
    /// server named.
    fn verify_offer(
        &mut self,
        state: &TrustedState,
        root: &TrustedRoot,
        channel: &str,
        offer: crate::protocol::UpdateOffer,
    ) -> Result<Offer> {
        let vreq = VerifyRequest {
            product_line: self.config.product_line.clone(),
            hw_id: Some(self.config.hw_id.clone()),
            channel: Some(channel.to_owned()),
            installed: Some(state.installed_state(channel)),
            clock: self.clock_now(state),
            allow_downgrade: false,
        };
        // The server's labels, only to say which release a refusal is
        // about; the signed manifest decides everything else.
        let claimed = offer.version.parse::<Version>().ok();
        let claimed_channel = offer.channel.clone();
        let verified = verify_manifest(root, &vreq, offer.manifest.get().as_bytes())
            .and_then(|plan| match_offer(plan, offer));
        if let (Err(e), Some(v)) = (&verified, claimed) {
            let mut r = QueuedReport::failure(v, ReportStage::Failed, e, now());
            r.channel = Some(claimed_channel);
            self.report(r);
        }
        verified
    }

    /// Asks the server for one release by version (`POST
    /// /v1/device/fetch`), yanked or not: a withdrawn security fix is kept
    /// available for years, and a device may want it by name. The answer
    /// is verified like any offer (signatures, product line, hardware,
    /// channel, expiry, no downgrade, anti-rollback, replay) before it is
    /// returned; install it with [`Self::download_and_install`]. The
    /// owner's security updates choice and the consent hook are not
    /// consulted: asking by version is the owner's decision. A refusal by
    /// the server (for example 403 `not_entitled`, 404 `unknown_release`)
    /// is [`Error::UnexpectedStatus`] with its code.
    pub fn fetch(&mut self, version: &Version) -> Result<Fetched> {
        let mut state = self.state()?;
        let root = state.trusted_root()?;
        let channel = self.config.channel.clone();
        let req = FetchRequest {
            serial: self.config.serial.clone(),
            hw_id: self.config.hw_id.clone(),
            version: version.to_string(),
            channel: Some(channel.clone()),
            root_version: root.version(),
        };
        let body = serde_json::to_vec(&req).map_err(|e| Error::malformed("fetch request", e))?;
        let reply = self.transport.post_json(
            FETCH_PATH,
            Some(&self.config.token),
            &body,
            MAX_CHECK_RESPONSE_BYTES,
        )?;
        if reply.status != 200 {
            return Err(Error::UnexpectedStatus {
                url: FETCH_PATH.into(),
                status: reply.status,
                server_code: reply.error_code(),
            });
        }
        let answer: FetchResponse =
            serde_json::from_slice(&reply.body).map_err(|e| Error::malformed("fetch answer", e))?;
        let root = state.accept_root_chain(answer.root_chain.iter().map(|r| r.get().as_bytes()))?;
        if root.version() > req.root_version {
            self.store.save(&state)?;
        }
        let offer = self.verify_offer(&state, &root, &channel, answer.update)?;
        if offer.plan.manifest.version.cmp_precedence(version).is_ne() {
            return Err(Error::OfferMismatch {
                detail: format!(
                    "asked for {version}, the signed manifest is {}",
                    offer.plan.manifest.version
                ),
            });
        }
        Ok(Fetched {
            offer,
            yanked: answer.yanked,
        })
    }

    /// Downloads (or resumes) the offer's image into the work directory;
    /// the returned file has the signed length and sha256.
    ///
    /// A link that needs renewing (a 403 `grant_expired` from the server,
    /// or [`Error::PresignedUrlRefused`] from the object store it
    /// redirected to) ends the call with a retryable error that is not
    /// reported as a failure ([`Error::needs_fresh_grant`]): the next
    /// [`UpdateSession::check`] hands out a fresh link, and the download
    /// resumes from the partial file.
    pub fn download(
        &mut self,
        offer: &Offer,
        mut progress: impl FnMut(&StepProgress),
    ) -> Result<Downloaded> {
        self.report_stage(offer, ReportStage::Downloading);
        let res =
            self.downloader
                .download(self.transport, &offer.url, &offer.image, |p: &Progress| {
                    progress(&StepProgress {
                        phase: Phase::Download,
                        done: p.done,
                        total: p.total,
                        rate_bytes_per_sec: p.rate_bytes_per_sec,
                    })
                });
        self.report_failure(offer, res)
    }

    /// Writes a downloaded image into the inactive slot (hashing it again
    /// while writing and from the slot) and marks the slot pending. Reboot
    /// afterwards, then call [`Self::finish_after_boot`].
    pub fn install(
        &mut self,
        offer: &Offer,
        downloaded: &Downloaded,
        progress: impl FnMut(&StepProgress),
    ) -> Result<PendingUpdate> {
        self.report_stage(offer, ReportStage::Verifying);
        self.report_stage(offer, ReportStage::Installing);
        let path = downloaded.path.clone();
        let res = self.flash(&offer.plan, &path, false, progress);
        self.report_failure(offer, res)
    }

    /// Downloads the offer's image and installs it: straight into the
    /// inactive slot when the flasher's slot is a file
    /// ([`install_streamed`]: one write and two hash passes, no copy in the
    /// work directory), otherwise through the work directory
    /// ([`Self::download`] then [`Self::install`]). Either way the slot is
    /// hashed while written and again from the slot before it is marked
    /// pending. Reboot afterwards, then call [`Self::finish_after_boot`].
    pub fn download_and_install(
        &mut self,
        offer: &Offer,
        mut progress: impl FnMut(&StepProgress),
    ) -> Result<PendingUpdate> {
        self.report_stage(offer, ReportStage::Downloading);
        let downloader = &self.downloader;
        let transport = self.transport;
        let streamed = install_streamed(
            &mut *self.flasher,
            self.store,
            &offer.plan,
            false,
            |image, slot_file| {
                downloader
                    .download_to(transport, &offer.url, image, slot_file, |p: &Progress| {
                        progress(&StepProgress {
                            phase: Phase::Download,
                            done: p.done,
                            total: p.total,
                            rate_bytes_per_sec: p.rate_bytes_per_sec,
                        })
                    })
                    .map(|d| d.sha256)
            },
        );
        match streamed {
            Ok(Some(pending)) => {
                self.report_stage(offer, ReportStage::Verifying);
                self.report_stage(offer, ReportStage::Installing);
                Ok(pending)
            }
            Ok(None) => {
                let res = self.downloader.download(
                    self.transport,
                    &offer.url,
                    &offer.image,
                    |p: &Progress| {
                        progress(&StepProgress {
                            phase: Phase::Download,
                            done: p.done,
                            total: p.total,
                            rate_bytes_per_sec: p.rate_bytes_per_sec,
                        })
                    },
                );
                let downloaded = self.report_failure(offer, res)?;
                self.install(offer, &downloaded, progress)
            }
            Err(e) => self.report_failure(offer, Err(e)),
        }
    }

    /// One cycle: check, notice, decide (security policy or consent),
    /// download, install. Fails early if an earlier update is still
    /// pending.
    pub fn update(&mut self, mut progress: impl FnMut(&StepProgress)) -> Result<Cycle> {
        if let Some(p) = self.state()?.pending() {
            return Err(Error::UpdateState {
                detail: format!(
                    "update to {} in slot {} is still pending; reboot and finish it first",
                    p.version, p.slot
                ),
            });
        }
        let checked = self.check()?;
        let poll_after_secs = checked.poll_after_secs;
        let outcome = match checked.outcome {
            CheckOutcome::UpToDate => CycleOutcome::UpToDate,
            CheckOutcome::NotEntitled(e) => CycleOutcome::NotEntitled(e),
            CheckOutcome::Update(offer) => {
                let notice = self.notice(&offer);
                if let Some(hook) = self.notice.as_mut() {
                    hook(&notice, &offer);
                }
                match notice.action {
                    UpdateAction::Install => {
                        CycleOutcome::Installed(self.download_and_install(&offer, &mut progress)?)
                    }
                    UpdateAction::AskConsent => {
                        let yes = self.consent.as_mut().is_none_or(|consent| consent(&offer));
                        if yes {
                            CycleOutcome::Installed(
                                self.download_and_install(&offer, &mut progress)?,
                            )
                        } else {
                            // Only reached for a security fix when the
                            // owner opted out: the owner said no.
                            if offer.kind().fixes_security() {
                                self.report_choice(&offer, ReportStage::OptedOut, None);
                            }
                            CycleOutcome::Declined(offer)
                        }
                    }
                    UpdateAction::OptedOut => {
                        self.report_choice(&offer, ReportStage::OptedOut, None);
                        CycleOutcome::OptedOut(offer)
                    }
                    UpdateAction::PostponedUntil(until) => {
                        self.report_choice(&offer, ReportStage::Postponed, Some(until));
                        CycleOutcome::Postponed { offer, until }
                    }
                }
            }
        };
        Ok(Cycle {
            poll_after_secs,
            outcome,
            security_support: checked.security_support,
        })
    }

    /// Installs from an offline bundle directory (a USB stick): the
    /// manifest envelope in [`BUNDLE_MANIFEST`], its images by name, and
    /// optionally root documents `root.v<N>.json` newer than the stored
    /// root. Expiry is not checked ([`Clock::OfflineNoExpiry`]); version,
    /// counter and replay checks are. Reports are queued for later.
    ///
    /// `allow_downgrade` is the consent of the person at the device (a
    /// technician at the repair bench) to install a release that is not
    /// newer than the running one. It is never taken from a server: the
    /// online update path always refuses downgrades. The anti-rollback
    /// counter and the replay check hold even with it.
    pub fn install_bundle(
        &mut self,
        dir: &Path,
        allow_downgrade: bool,
        progress: impl FnMut(&StepProgress),
    ) -> Result<PendingUpdate> {
        let bundle = FileTransport::new(dir);
        let mut state = self.state()?;
        let stored_version = state.trusted_root()?.version();
        let chain = bundle_roots(dir, stored_version)?;
        let root = state.accept_root_chain(&chain)?;
        if root.version() > stored_version {
            self.store.save(&state)?;
        }
        let manifest = bundle.get_json(BUNDLE_MANIFEST, None, MAX_MANIFEST_BYTES + 1)?;
        if manifest.status != 200 {
            return Err(Error::io(
                format!("reading {}", dir.join(BUNDLE_MANIFEST).display()),
                std::io::ErrorKind::NotFound.into(),
            ));
        }
        let channel = self.config.channel.clone();
        let vreq = VerifyRequest {
            product_line: self.config.product_line.clone(),
            hw_id: Some(self.config.hw_id.clone()),
            channel: Some(channel.clone()),
            installed: Some(state.installed_state(&channel)),
            clock: Clock::OfflineNoExpiry,
            allow_downgrade,
        };
        let plan = verify_manifest(&root, &vreq, &manifest.body)?;
        let image = rootfs_image(&plan.manifest)?.clone();
        let path = bundle.resolve(&image.name)?;
        let offer = Offer {
            url: image.name.clone(),
            image,
            plan,
            stepping_stone: false,
            target_version: None,
            entitlement: DeviceEntitlement {
                code: "offline_bundle".into(),
                summary: "Installed from an offline bundle.".into(),
            },
        };
        self.report_stage(&offer, ReportStage::Installing);
        let res = self.flash(&offer.plan, &path, allow_downgrade, progress);
        self.report_failure(&offer, res)
    }

    /// Queues `report` and tries to deliver the queue. Never fails: a
    /// report that cannot be stored or sent must not change an update.
    pub fn report(&mut self, report: QueuedReport) {
        if let Ok(Some(mut state)) = self.store.load() {
            state.queue_report(report);
            if self.store.save(&state).is_ok() {
                let _ = self.flush_reports();
            }
        }
    }

    /// Sends the queued reports, oldest first, until one cannot be
    /// delivered (unreachable server, 5xx: kept for the next try). Reports
    /// the server refuses for good (400, 404, 422, and a 429 with the
    /// server's code `too_many_reports`) are dropped. Any other 429 (a
    /// proxy's or load balancer's rate limit) keeps the queue for later.
    pub fn flush_reports(&mut self) -> Result<FlushStats> {
        let mut state = self.state()?;
        let mut stats = FlushStats::default();
        let mut done = 0;
        for r in state.queued_reports() {
            let body = serde_json::to_vec(&ReportRequest::from_queued(&self.config.serial, r))
                .map_err(|e| Error::malformed("report", e))?;
            let reply = match self.transport.post_json(
                REPORTS_PATH,
                Some(&self.config.token),
                &body,
                MAX_REPORT_RESPONSE_BYTES,
            ) {
                Ok(reply) => reply,
                Err(_) => break,
            };
            match reply.status {
                200..=299 => stats.sent += 1,
                400 | 404 | 422 => stats.dropped += 1,
                429 if error_code_from_json(&reply.body).as_deref() == Some("too_many_reports") => {
                    stats.dropped += 1
                }
                _ => break,
            }
            done += 1;
        }
        if done > 0 {
            state.remove_sent_reports(done);
            self.store.save(&state)?;
        }
        stats.remaining = state.queued_reports().len();
        Ok(stats)
    }

    fn clock_now(&self, state: &TrustedState) -> Clock {
        match self.clock {
            ClockPolicy::System => Clock::Trusted(now()),
            ClockPolicy::LatestKnown => Clock::LatestKnown(
                state
                    .latest_known_time()
                    .unwrap_or(OffsetDateTime::UNIX_EPOCH),
            ),
        }
    }

    fn flash(
        &mut self,
        plan: &UpdatePlan,
        path: &Path,
        allow_downgrade: bool,
        mut progress: impl FnMut(&StepProgress),
    ) -> Result<PendingUpdate> {
        install_verified(
            &mut *self.flasher,
            self.store,
            plan,
            allow_downgrade,
            |_| {
                File::open(path)
                    .map(|f| Box::new(f) as Box<dyn Read>)
                    .map_err(|e| Error::io(format!("opening {}", path.display()), e))
            },
            |spec, done| {
                progress(&StepProgress {
                    phase: Phase::Flash,
                    done,
                    total: spec.length,
                    rate_bytes_per_sec: 0,
                })
            },
        )
    }

    /// Reports the owner's choice not to install `offer` automatically
    /// (`opted_out`, or `postponed` until `until`), unless that same choice
    /// was already reported for the release. The record and the queued
    /// report are saved together; like every report, this never fails.
    fn report_choice(&mut self, offer: &Offer, stage: ReportStage, until: Option<OffsetDateTime>) {
        let m = &offer.plan.manifest;
        let Ok(Some(mut state)) = self.store.load() else {
            return;
        };
        let fresh = state.record_choice(ReportedChoice {
            version: m.version.clone(),
            channel: m.channel.clone(),
            stage,
            postponed_until: until,
        });
        if fresh {
            let mut r = QueuedReport::new(m.version.clone(), stage, now());
            r.channel = Some(m.channel.clone());
            r.postponed_until = until;
            state.queue_report(r);
            if self.store.save(&state).is_err() {
                return;
            }
        }
        let _ = self.flush_reports();
    }

    fn report_stage(&mut self, offer: &Offer, stage: ReportStage) {
        let mut r = QueuedReport::new(offer.version().clone(), stage, now());
        r.channel = Some(offer.plan.manifest.channel.clone());
        self.report(r);
    }

    /// Reports a final failure (errors a retry cannot help) and passes the
    /// result on unchanged.
    fn report_failure<T>(&mut self, offer: &Offer, res: Result<T>) -> Result<T> {
        if let Err(e) = &res
            && !e.retryable()
        {
            let mut r =
                QueuedReport::failure(offer.version().clone(), ReportStage::Failed, e, now());
            r.channel = Some(offer.plan.manifest.channel.clone());
            self.report(r);
        }
        res
    }
}

/// Pairs a verified plan with the server's offer: the offer must name the
/// signed version and give a URL for exactly the signed image.
fn match_offer(plan: UpdatePlan, offer: crate::protocol::UpdateOffer) -> Result<Offer> {
    if offer.version.parse::<Version>().ok().as_ref() != Some(&plan.manifest.version) {
        return Err(Error::OfferMismatch {
            detail: format!(
                "offered as version {:?}, the manifest signs {}",
                offer.version, plan.manifest.version
            ),
        });
    }
    let image = rootfs_image(&plan.manifest)?.clone();
    let sha = image.sha256.to_hex();
    let download = offer
        .images
        .into_iter()
        .find(|d| d.name == image.name && d.sha256.eq_ignore_ascii_case(&sha))
        .ok_or_else(|| Error::OfferMismatch {
            detail: format!(
                "no download offered for the signed image {:?} (sha256 {sha})",
                image.name
            ),
        })?;
    if download.url.is_empty() {
        return Err(Error::OfferMismatch {
            detail: format!("empty download URL for image {:?}", image.name),
        });
    }
    Ok(Offer {
        plan,
        image,
        url: download.url,
        stepping_stone: offer.stepping_stone,
        target_version: offer.target_version,
        entitlement: offer.entitlement,
    })
}

/// Root envelopes `root.v<N>.json` in a bundle for the consecutive
/// versions `stored + 1`, `stored + 2`, ... in version order, stopping at
/// the first missing version. A bundle with more than
/// [`MAX_ROOT_ROTATIONS`] root files above `stored` is refused with
/// [`Error::RootChainTooLong`] before any of them is read, so at most
/// `MAX_ROOT_ROTATIONS` files of up to [`MAX_ROOT_BYTES`] each are read.
fn bundle_roots(dir: &Path, stored: u64) -> Result<Vec<Vec<u8>>> {
    let entries =
        std::fs::read_dir(dir).map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
    let too_long = || Error::RootChainTooLong {
        limit: MAX_ROOT_ROTATIONS,
    };
    let mut found = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| Error::io(format!("listing {}", dir.display()), e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let version = name
            .strip_prefix("root.v")
            .and_then(|r| r.strip_suffix(".json"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(v) = version
            && v > stored
        {
            if found.len() >= MAX_ROOT_ROTATIONS {
                return Err(too_long());
            }
            found.push((v, entry.path()));
        }
    }
    found.sort();
    // Only stored+1 ..= stored+MAX_ROOT_ROTATIONS, consecutive: at most
    // MAX_ROOT_ROTATIONS files above `stored` were listed, so a run of
    // consecutive versions from stored+1 cannot leave that window.
    let mut next = stored.checked_add(1);
    let consecutive = found.into_iter().map_while(|(v, path)| {
        (Some(v) == next).then(|| {
            next = v.checked_add(1);
            path
        })
    });
    consecutive
        .map(|path| {
            let mut bytes = Vec::new();
            File::open(&path)
                .and_then(|f| f.take(MAX_ROOT_BYTES + 1).read_to_end(&mut bytes))
                .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
            if bytes.len() as u64 > MAX_ROOT_BYTES {
                return Err(Error::TooLarge {
                    what: "root envelope",
                    limit: MAX_ROOT_BYTES,
                    actual: bytes.len() as u64,
                });
            }
            Ok(bytes)
        })
        .collect()
}

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle_with(versions: impl IntoIterator<Item = u64>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        for v in versions {
            std::fs::write(dir.path().join(format!("root.v{v}.json")), format!("v{v}")).unwrap();
        }
        dir
    }

    fn read(dir: &Path, stored: u64) -> Result<Vec<String>> {
        bundle_roots(dir, stored).map(|roots| {
            roots
                .into_iter()
                .map(|b| String::from_utf8(b).unwrap())
                .collect()
        })
    }

    #[test]
    fn bundle_roots_are_consecutive_from_the_stored_version_and_bounded() {
        // Older roots are ignored; the walk stops at the first gap.
        let dir = bundle_with([1, 2, 3, 4, 5, 7, 8]);
        assert_eq!(read(dir.path(), 2).unwrap(), ["v3", "v4", "v5"]);
        assert!(read(dir.path(), 8).unwrap().is_empty());
        // Nothing right after the stored version: nothing is read.
        assert!(read(dir.path(), 5).unwrap().is_empty());

        // Exactly MAX_ROOT_ROTATIONS rotations fit.
        let max = MAX_ROOT_ROTATIONS as u64;
        let dir = bundle_with(2..=max + 1);
        assert_eq!(read(dir.path(), 1).unwrap().len(), MAX_ROOT_ROTATIONS);

        // One root file more above the stored version: refused, typed.
        let dir = bundle_with(2..=max + 2);
        let err = read(dir.path(), 1).unwrap_err();
        assert_eq!(err.code(), "root_chain_too_long", "{err}");
        // The same bundle for a device further along is fine.
        assert_eq!(read(dir.path(), 2).unwrap().len(), MAX_ROOT_ROTATIONS);

        // No overflow at the top of the version space.
        let dir = bundle_with([u64::MAX]);
        assert_eq!(
            read(dir.path(), u64::MAX - 1).unwrap(),
            ["v18446744073709551615"]
        );
        assert!(read(dir.path(), u64::MAX).unwrap().is_empty());
    }
}
