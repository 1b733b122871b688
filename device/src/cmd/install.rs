//! `firmup-device install --bundle DIR|FILE`: the offline (USB) path.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};

use crate::agent::{Bar, Parts, finish_interrupted, reboot_and_finish, report_finish};

/// Installs from an offline bundle: a directory holding `manifest.json`
/// (the signed envelope), the images it names, and optionally root
/// documents `root.v<N>.json` newer than the device's root; or the same
/// files in one tar file, as the server's repair push bundle is.
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
    /// The bundle: a directory, or a tar file of the same files.
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
    // A bundle file is unpacked into a directory of the state directory's
    // own (removed when done), then read like any bundle directory.
    let unpacked = if a.bundle.is_file() {
        let tmp = tempfile::Builder::new()
            .prefix("bundle-")
            .tempdir_in(dir)
            .with_context(|| format!("creating a directory in {}", dir.display()))?;
        crate::bundle::unpack(&a.bundle, tmp.path())?;
        Some(tmp)
    } else {
        None
    };
    let bundle_dir = unpacked.as_ref().map_or(a.bundle.as_path(), |t| t.path());
    let mut bar = Bar::new();
    let res = session.install_bundle(bundle_dir, a.allow_downgrade, |p| bar.update(p));
    bar.finish();
    let p = res?;
    println!("wrote {} to slot {}; rebooting", p.version, p.slot);
    report_finish(&reboot_and_finish(&mut session, &device)?)
}
