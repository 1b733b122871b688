//! The simulated device: its state directory, the session over it, one
//! full update cycle with a simulated reboot, progress bars and exit codes.
//!
//! Layout of `--state-dir DIR`:
//!
//! - `config.json`: [`DeviceConfig`] (server, serial, hw_id, product_line,
//!   channel, token), mode 0600, and optionally the agent's own
//!   [`ALLOWED_DOWNLOAD_ORIGINS_KEY`] next to it ([`AgentConfig`]);
//! - `state/state.json`: the trusted state ([`FileStateStore`]);
//! - `slots/`: the A/B slots and boot record ([`FileFlasher`]);
//! - `work/`: partial and complete downloads;
//! - `security-updates.json`: the owner's choice for security releases
//!   ([`SECURITY_UPDATES_FILE`]; absent: automatic), set with
//!   `firmup-device security-updates`;
//! - `security-support.json`: when the unit's security support ends, as
//!   the last check answer said ([`SECURITY_SUPPORT_FILE`]);
//! - `unhealthy`: if this flag file exists, the health check after a
//!   reboot fails and the update is rolled back.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use firmup_client::flash::FinishOutcome;
use firmup_client::session::{Phase, StepProgress};
use firmup_client::state::{atomic_write, atomic_write_private};
use firmup_client::transport::HttpConfig;
use firmup_client::{
    DeviceConfig, Error, FileFlasher, FileStateStore, HttpTransport, SecuritySupport,
    SecurityUpdates, UpdateAction, UpdateNotice, UpdateSession, format_time,
};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::json;
use time::OffsetDateTime;

/// Exit code: refused or rolled back.
pub const EXIT_REFUSED: u8 = 1;
/// Exit code: local error.
pub const EXIT_LOCAL: u8 = 3;
/// Exit code: try again later.
pub const EXIT_RETRY: u8 = 4;

/// A failure that carries its own exit code (a rollback is not an error of
/// any library call, but the command did not do what was asked).
#[derive(Debug)]
pub struct Refused(pub String);

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Refused {}

/// Prints the error and maps it to the documented exit code.
pub fn exit(res: Result<()>) -> ExitCode {
    let Err(e) = res else {
        return ExitCode::SUCCESS;
    };
    let code = if e.downcast_ref::<Refused>().is_some() {
        EXIT_REFUSED
    } else if let Some(ce) = e.chain().find_map(|c| c.downcast_ref::<Error>()) {
        classify(ce)
    } else {
        EXIT_LOCAL
    };
    match e.chain().find_map(|c| c.downcast_ref::<Error>()) {
        Some(ce) => {
            eprintln!("error ({}): {e:#}", ce.code());
            if let Some(hint) = hint(ce) {
                eprintln!("hint: {hint}");
            }
        }
        None => eprintln!("error: {e:#}"),
    }
    ExitCode::from(code)
}

/// What the operator can do about a library error, where the agent knows.
pub fn hint(e: &Error) -> Option<String> {
    match e {
        Error::RedirectRefused { reason, .. } if reason.contains(ALLOWED_DOWNLOAD_ORIGINS_KEY) => {
            Some(format!(
                "to allow a download origin, list it under \"{ALLOWED_DOWNLOAD_ORIGINS_KEY}\" in \
                 config.json, or pass --allow-download-origin ORIGIN"
            ))
        }
        _ => None,
    }
}

/// The exit code for a library error.
pub fn classify(e: &Error) -> u8 {
    // The server refused the device's credentials or role: the token in
    // config.json needs fixing; nothing about a release was judged.
    if let Error::UnexpectedStatus {
        status,
        server_code,
        ..
    } = e
        && (*status == 401
            || matches!(
                server_code.as_deref(),
                Some("wrong_role" | "token_serial_mismatch")
            ))
    {
        return EXIT_LOCAL;
    }
    match e.code() {
        // The device's own storage or state, not the server or the link.
        "corrupt_state"
        | "invalid_update_state"
        | "unsupported_spec_version"
        | "storage_full"
        | "io" => EXIT_LOCAL,
        _ if e.retryable() => EXIT_RETRY,
        _ => EXIT_REFUSED,
    }
}

/// The key in `config.json` listing the origins image downloads may be
/// redirected to (the object store or CDN holding the server's presigned
/// download URLs): a list of URLs such as `"https://cdn.example.com"`.
/// Absent or empty: a download redirected off the server's origin is
/// refused.
pub const ALLOWED_DOWNLOAD_ORIGINS_KEY: &str = "allowed_download_origins";

/// Everything in `config.json`: the device's identity, and the agent's own
/// settings next to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentConfig {
    /// The identity and server the update session uses.
    pub device: DeviceConfig,
    /// [`ALLOWED_DOWNLOAD_ORIGINS_KEY`], as written.
    pub allowed_download_origins: Vec<String>,
}

impl AgentConfig {
    /// The configuration of `config.json`'s bytes.
    pub fn parse(bytes: &[u8]) -> Result<AgentConfig> {
        let mut value: serde_json::Value = serde_json::from_slice(bytes)?;
        let origins = match value
            .as_object_mut()
            .and_then(|o| o.remove(ALLOWED_DOWNLOAD_ORIGINS_KEY))
        {
            None | Some(serde_json::Value::Null) => Vec::new(),
            Some(serde_json::Value::Array(items)) => items
                .into_iter()
                .map(|item| match item {
                    serde_json::Value::String(s) => Ok(s),
                    other => Err(anyhow::anyhow!(
                        "{ALLOWED_DOWNLOAD_ORIGINS_KEY} holds {other}, not a URL string"
                    )),
                })
                .collect::<Result<_>>()?,
            Some(_) => anyhow::bail!(
                "{ALLOWED_DOWNLOAD_ORIGINS_KEY} must be a list of URLs, such as \
                 [\"https://cdn.example.com\"]"
            ),
        };
        Ok(AgentConfig {
            device: serde_json::from_value(value)?,
            allowed_download_origins: origins,
        })
    }

    /// `config.json`'s bytes (the key is left out when the list is empty).
    pub fn to_json(&self) -> Result<Vec<u8>> {
        let mut value = serde_json::to_value(&self.device)?;
        if !self.allowed_download_origins.is_empty()
            && let Some(o) = value.as_object_mut()
        {
            o.insert(
                ALLOWED_DOWNLOAD_ORIGINS_KEY.into(),
                self.allowed_download_origins.clone().into(),
            );
        }
        let mut bytes = serde_json::to_vec_pretty(&value)?;
        bytes.push(b'\n');
        Ok(bytes)
    }
}

/// The HTTP transport to `server`, following image-download redirects to
/// `allowed_download_origins` as well as within the server's origin (see
/// `firmup_client`'s HTTP transport for the policy). Image downloads carry
/// no credentials either way; the device token only goes to `server`.
pub fn transport(server: &str, allowed_download_origins: &[String]) -> Result<HttpTransport> {
    Ok(HttpTransport::with_config(
        server,
        HttpConfig {
            allowed_download_origins: allowed_download_origins.to_vec(),
            ..HttpConfig::default()
        },
    )?)
}

/// File in the state directory holding the owner's choice for security
/// releases: `{"mode": "automatic"}`, `{"mode": "opted_out"}` or
/// `{"mode": "postponed", "postponed_until": "<RFC 3339>"}`. Absent means
/// automatic.
pub const SECURITY_UPDATES_FILE: &str = "security-updates.json";

/// File in the state directory holding the `security_support` of the last
/// check answer (absent when that answer had none).
pub const SECURITY_SUPPORT_FILE: &str = "security-support.json";

/// The stable name of a policy's mode, as stored and printed.
pub fn policy_mode(policy: SecurityUpdates) -> &'static str {
    match policy {
        SecurityUpdates::Automatic => "automatic",
        SecurityUpdates::OptedOut => "opted_out",
        SecurityUpdates::PostponedUntil(_) => "postponed",
    }
}

/// A policy as one line for people.
pub fn describe_policy(policy: SecurityUpdates) -> String {
    match policy {
        SecurityUpdates::Automatic => "automatic (security releases install without asking)".into(),
        SecurityUpdates::OptedOut => {
            "off (security releases are not installed automatically)".into()
        }
        SecurityUpdates::PostponedUntil(t) => format!(
            "postponed until {} (then security releases install without asking)",
            format_time(t)
        ),
    }
}

/// `security-updates.json`'s bytes for `policy`.
pub fn policy_to_json(policy: SecurityUpdates) -> Result<Vec<u8>> {
    let mut v = json!({ "mode": policy_mode(policy) });
    if let SecurityUpdates::PostponedUntil(t) = policy {
        v["postponed_until"] = format_time(t).into();
    }
    let mut bytes = serde_json::to_vec_pretty(&v)?;
    bytes.push(b'\n');
    Ok(bytes)
}

/// The policy of `security-updates.json`'s bytes.
pub fn policy_from_json(bytes: &[u8]) -> Result<SecurityUpdates> {
    let v: serde_json::Value = serde_json::from_slice(bytes)?;
    match v.get("mode").and_then(|m| m.as_str()) {
        Some("automatic") => Ok(SecurityUpdates::Automatic),
        Some("opted_out") => Ok(SecurityUpdates::OptedOut),
        Some("postponed") => {
            let until = v
                .get("postponed_until")
                .and_then(|u| u.as_str())
                .ok_or_else(|| anyhow::anyhow!("mode postponed needs postponed_until"))?;
            Ok(SecurityUpdates::PostponedUntil(
                OffsetDateTime::parse(until, &time::format_description::well_known::Rfc3339)
                    .with_context(|| format!("postponed_until {until:?} is no RFC 3339 instant"))?,
            ))
        }
        _ => anyhow::bail!("mode must be automatic, opted_out or postponed"),
    }
}

/// Text from the server for a terminal: control characters become spaces.
pub fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The security support lines printed by `check`, `update` and `status`.
pub fn print_security_support(support: &SecuritySupport) {
    println!("security support ends: {}", printable(&support.ends));
    if let Some(w) = &support.warning {
        println!("warning: {}", printable(w));
    }
}

/// Prints that an update is available, with the signed advisory of a
/// security release and what the agent does about it.
pub fn print_notice(n: &UpdateNotice) {
    match &n.advisory {
        Some(a) => println!(
            "security update available: {} ({} release, severity {}, {})",
            n.version,
            n.kind.as_str(),
            a.severity.as_str(),
            a.cves.join(", ")
        ),
        None => println!(
            "update available: {} ({} release)",
            n.version,
            n.kind.as_str()
        ),
    }
    print_advisory(n);
}

/// The signed advisory of a security release, and what the agent does
/// about the release under the owner's security updates choice.
pub fn print_advisory(n: &UpdateNotice) {
    if let Some(a) = &n.advisory {
        println!("advisory: {}", a.summary);
        println!("advice: {}", a.action);
    }
    match n.action {
        UpdateAction::Install if n.kind.fixes_security() => {
            println!("automatic security updates are on: it installs without asking")
        }
        UpdateAction::Install | UpdateAction::AskConsent => {}
        UpdateAction::OptedOut => println!(
            "automatic security updates are off: it is not installed \
             (`firmup-device security-updates auto` turns them on)"
        ),
        UpdateAction::PostponedUntil(t) => println!(
            "security updates are postponed until {}: it is not installed before then",
            format_time(t)
        ),
    }
}

/// The paths of a state directory.
#[derive(Debug, Clone)]
pub struct Device {
    /// The state directory.
    pub dir: PathBuf,
}

impl Device {
    /// The device in `dir`.
    pub fn new(dir: &Path) -> Self {
        Device {
            dir: dir.to_path_buf(),
        }
    }

    /// `config.json`.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.json")
    }

    /// Reads `config.json`.
    pub fn config(&self) -> Result<AgentConfig> {
        let path = self.config_path();
        let bytes = std::fs::read(&path).with_context(|| {
            format!(
                "reading {} (is the device provisioned? see `firmup-device provision --help`)",
                path.display()
            )
        })?;
        AgentConfig::parse(&bytes).with_context(|| format!("parsing {}", path.display()))
    }

    /// Writes `config.json` atomically, readable only by its owner.
    pub fn save_config(&self, config: &AgentConfig) -> Result<()> {
        let path = self.config_path();
        let bytes = config.to_json()?;
        // Created 0600 from the start: the token is never readable by
        // others, not even in the temporary file.
        atomic_write_private(&path, &bytes)?;
        Ok(())
    }

    /// The trusted state store.
    pub fn store(&self) -> Result<FileStateStore> {
        Ok(FileStateStore::open(self.dir.join("state"))?)
    }

    /// The simulated slots.
    pub fn flasher(&self) -> Result<FileFlasher> {
        Ok(FileFlasher::open(self.dir.join("slots"))?)
    }

    /// The download directory.
    pub fn work_dir(&self) -> PathBuf {
        self.dir.join("work")
    }

    /// The owner's choice for security releases
    /// ([`SECURITY_UPDATES_FILE`]; automatic when the file is absent). A
    /// file that cannot be read is an error, never "automatic": that would
    /// override an owner's opt-out.
    pub fn security_updates(&self) -> Result<SecurityUpdates> {
        let path = self.dir.join(SECURITY_UPDATES_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => policy_from_json(&bytes).with_context(|| {
                format!(
                    "reading {} (set it again with `firmup-device security-updates`)",
                    path.display()
                )
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SecurityUpdates::Automatic),
            Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
        }
    }

    /// Stores the owner's choice for security releases, atomically.
    pub fn save_security_updates(&self, policy: SecurityUpdates) -> Result<()> {
        atomic_write(
            &self.dir.join(SECURITY_UPDATES_FILE),
            &policy_to_json(policy)?,
        )?;
        Ok(())
    }

    /// The `security_support` of the last check answer, if it had one (and
    /// the file reads).
    pub fn security_support(&self) -> Option<SecuritySupport> {
        let bytes = std::fs::read(self.dir.join(SECURITY_SUPPORT_FILE)).ok()?;
        serde_json::from_slice(&bytes).ok()
    }

    /// Keeps the `security_support` of a check answer for `status`
    /// (removes the file when the answer had none). Never fails: it is
    /// only information.
    pub fn remember_security_support(&self, support: Option<&SecuritySupport>) {
        let path = self.dir.join(SECURITY_SUPPORT_FILE);
        match support.map(serde_json::to_vec_pretty) {
            Some(Ok(bytes)) => {
                let _ = atomic_write(&path, &bytes);
            }
            Some(Err(_)) => {}
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }

    /// The simulated health check of the running slot: healthy unless the
    /// `unhealthy` flag file exists.
    pub fn healthy(&self) -> bool {
        !self.dir.join("unhealthy").exists()
    }
}

/// Everything a session borrows, owned in one place.
pub struct Parts {
    /// The device.
    pub device: Device,
    /// Its configuration.
    pub config: DeviceConfig,
    /// HTTP to the configured server, and for image downloads to the
    /// allowed download origins.
    pub transport: HttpTransport,
    /// Trusted state.
    pub store: FileStateStore,
    /// Slots.
    pub flasher: FileFlasher,
    /// Held for as long as the parts live: one agent process per device.
    _lock: std::fs::File,
}

impl Parts {
    /// Opens the device in `dir`. Image downloads may be redirected to the
    /// origins in `config.json`'s [`ALLOWED_DOWNLOAD_ORIGINS_KEY`] and to
    /// `extra_origins` (the command line's, for this run only).
    pub fn open(dir: &Path, extra_origins: &[String]) -> Result<Parts> {
        let device = Device::new(dir);
        let AgentConfig {
            device: config,
            allowed_download_origins: mut origins,
        } = device.config()?;
        for o in extra_origins {
            if !origins.contains(o) {
                origins.push(o.clone());
            }
        }
        // Two agents on one state directory would each act on a stale view
        // of the slots and the trusted state: refuse the second one.
        let lock_path = dir.join("lock");
        let lock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        lock.try_lock().map_err(|_| {
            anyhow::anyhow!(
                "another firmup-device is using {}; wait for it to finish",
                dir.display()
            )
        })?;
        let transport = transport(&config.server, &origins).with_context(|| {
            format!(
                "the server or {ALLOWED_DOWNLOAD_ORIGINS_KEY} in {} (or --allow-download-origin)",
                device.config_path().display()
            )
        })?;
        let store = device.store()?;
        let flasher = device.flasher()?;
        Ok(Parts {
            device,
            config,
            transport,
            store,
            flasher,
            _lock: lock,
        })
    }

    /// A session over these parts, printing a notice for every verified
    /// offer. Its security updates policy is automatic until set: the
    /// update cycle sets the owner's choice ([`Device::security_updates`])
    /// before each cycle, so a change reaches a running poll loop.
    pub fn session(&mut self) -> UpdateSession<'_> {
        UpdateSession::new(
            self.config.clone(),
            &self.transport,
            &self.store,
            &mut self.flasher,
            self.device.work_dir(),
        )
        .with_notice(|notice, _| print_notice(notice))
    }
}

/// A simulated reboot followed by the health check and commit or rollback;
/// after a rollback the device reboots once more into the committed slot.
pub fn reboot_and_finish(
    session: &mut UpdateSession<'_>,
    device: &Device,
) -> Result<FinishOutcome> {
    let boot = session.flasher_mut().boot()?;
    eprintln!("rebooted: {boot:?}");
    let out = session.finish_after_boot(device.healthy())?;
    if let FinishOutcome::RolledBack { .. } = out {
        let boot = session.flasher_mut().boot()?;
        eprintln!("rebooted after rollback: {boot:?}");
    }
    Ok(out)
}

/// On start: finishes an update a crash or power cut interrupted.
pub fn finish_interrupted(session: &mut UpdateSession<'_>, device: &Device) -> Result<()> {
    // A slot found on trial at start means the process that booted it
    // stopped before committing: that is a reboot during the trial, and the
    // bootloader falls back to the committed slot. Simulate that boot first.
    let st = session.flasher_mut().status()?;
    if st.pending.is_some() && st.tried {
        let boot = session.flasher_mut().boot()?;
        eprintln!("trial boot was interrupted; rebooted: {boot:?}");
    }
    match session.finish_after_boot(device.healthy())? {
        FinishOutcome::AwaitingBoot(_) => {
            report_finish(&reboot_and_finish(session, device)?)?;
        }
        FinishOutcome::Idle => {}
        other => report_finish(&other)?,
    }
    Ok(())
}

/// Prints how an update ended; a rollback is [`Refused`].
pub fn report_finish(out: &FinishOutcome) -> Result<()> {
    match out {
        FinishOutcome::Committed(p) => {
            println!("installed {} on slot {} (committed)", p.version, p.slot);
            Ok(())
        }
        FinishOutcome::RolledBack { update, reason } => Err(Refused(format!(
            "update to {} rolled back ({}); the previous slot runs",
            update.version,
            reason.code()
        ))
        .into()),
        FinishOutcome::AwaitingBoot(p) => {
            println!("{} in slot {} awaits a reboot", p.version, p.slot);
            Ok(())
        }
        FinishOutcome::Idle => Ok(()),
    }
}

/// A progress bar on stderr (hidden when stderr is not a terminal), fed
/// with download and flash progress.
pub struct Bar {
    bar: ProgressBar,
    phase: Option<Phase>,
}

impl Default for Bar {
    fn default() -> Self {
        Bar::new()
    }
}

impl Bar {
    /// A bar with no length yet.
    pub fn new() -> Bar {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:>11} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        Bar { bar, phase: None }
    }

    /// Updates the bar.
    pub fn update(&mut self, p: &StepProgress) {
        if self.phase != Some(p.phase) {
            self.phase = Some(p.phase);
            self.bar.reset();
            self.bar.set_length(p.total);
            self.bar.set_message(match p.phase {
                Phase::Download => "downloading",
                Phase::Flash => "flashing",
            });
        }
        self.bar.set_position(p.done);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use firmup_client::flash::install_verified;
    use firmup_client::state::StateStore as _;
    use firmup_client::{Clock, Flasher as _, Slot, TrustedRoot, VerifyRequest, verify_manifest};
    use firmup_fixtures::adversarial::device_request;
    use firmup_fixtures::release::FIXTURE_NOW;
    use firmup_fixtures::{ReleaseBuilder, RootBuilder};

    /// The process that booted the new slot on trial died before the health
    /// check: at the next start the agent must reboot (the bootloader falls
    /// back), not commit what never proved healthy.
    #[test]
    fn an_interrupted_trial_boot_falls_back_at_the_next_start() {
        let dir = tempfile::tempdir().unwrap();
        let device = Device::new(dir.path());
        let root = TrustedRoot::from_pinned(&RootBuilder::standard().build()).unwrap();
        let store = device.store().unwrap();
        store
            .save(&firmup_client::state::TrustedState::new(
                &root,
                "2.0.0".parse().unwrap(),
                3,
            ))
            .unwrap();
        let release = ReleaseBuilder::standard().build();
        let request = VerifyRequest {
            clock: Clock::Trusted(FIXTURE_NOW),
            ..device_request()
        };
        let plan = verify_manifest(&root, &request, &release.envelope).unwrap();
        {
            let mut flasher = device.flasher().unwrap();
            let image = release.image.clone();
            install_verified(
                &mut flasher,
                &store,
                &plan,
                false,
                move |_| Ok(Box::new(std::io::Cursor::new(image.clone())) as Box<dyn std::io::Read>),
                |_, _| {},
            )
            .unwrap();
            flasher.boot().unwrap(); // trial boot of slot B, then the process dies
        }

        // Next start: healthy or not, what never committed is not committed.
        let config = DeviceConfig {
            server: "http://127.0.0.1:9".into(),
            serial: "SN-0001".into(),
            hw_id: "enc-4k-r2".into(),
            product_line: "encoders".into(),
            channel: "stable".into(),
            token: "t".into(),
        };
        let transport = HttpTransport::new(&config.server).unwrap();
        let mut flasher = device.flasher().unwrap();
        let mut session =
            UpdateSession::new(config, &transport, &store, &mut flasher, device.work_dir());
        let err = finish_interrupted(&mut session, &device).unwrap_err();
        assert!(err.downcast_ref::<Refused>().is_some(), "{err:#}");
        drop(session);
        let st = flasher.status().unwrap();
        assert_eq!(
            (st.active, st.running, st.pending),
            (Slot::A, Slot::A, None)
        );
        let state = store.load().unwrap().unwrap();
        assert_eq!(state.security_counter(), 3);
        assert_eq!(state.installed_version().to_string(), "2.0.0");
        assert_eq!(state.pending(), None);
    }
}
