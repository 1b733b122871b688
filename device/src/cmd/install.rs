//! `firmup-device install --bundle DIR`: the offline (USB) path.

use std::path::{Path, PathBuf};

use anyhow::Result;

use crate::agent::{Bar, Parts, finish_interrupted, reboot_and_finish, report_finish};

/// Installs from an offline bundle: a directory holding `manifest.json`
/// (the signed envelope), the images it names, and optionally root
/// documents `root.v<N>.json` newer than the device's root.
///
/// Expiry is not checked (the device may have been offline for years);
/// signatures, hardware, channel, replay, counter and version checks are.
/// `--allow-downgrade` is the bench technician's consent to install a
/// release that is not newer than the running one (a repair that needs an
/// older firmware); the anti-rollback counter still holds.
/// Then reboot (simulated), health check, commit or roll back. Reports are
/// queued and sent when the server is reachable.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The bundle directory.
    #[arg(long)]
    bundle: PathBuf,
    /// Install even if the bundle's release is not newer than the running
    /// one (the person at the device consents). Releases below the device's
    /// anti-rollback counter are refused regardless.
    #[arg(long)]
    allow_downgrade: bool,
}

/// Runs `install`.
pub fn run(dir: &Path, origins: &[String], a: Args) -> Result<()> {
    let mut parts = Parts::open(dir, origins)?;
    let device = parts.device.clone();
    let mut session = parts.session();
    finish_interrupted(&mut session, &device)?;
    let mut bar = Bar::new();
    let res = session.install_bundle(&a.bundle, a.allow_downgrade, |p| bar.update(p));
    bar.finish();
    let p = res?;
    println!("wrote {} to slot {}; rebooting", p.version, p.slot);
    report_finish(&reboot_and_finish(&mut session, &device)?)
}
