//! `firmup-device provision`: the factory step.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use firmup_client::{DeviceConfig, StateStore as _, TrustedRoot, TrustedState};
use semver::Version;

use crate::agent::{AgentConfig, Device, transport};

/// Provisions a simulated device, as a factory would: writes its identity
/// (`config.json`, mode 0600), its trusted state (the pinned root, the
/// factory version and security counter) and a factory image in slot A,
/// committed and running. Origins given with `--allow-download-origin`
/// are stored in `config.json` as `allowed_download_origins`: image
/// downloads may be redirected there (an object store or CDN serving the
/// server's presigned URLs).
///
/// Refuses a state directory that is already provisioned: trust is never
/// reset by accident.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Base URL of the update server, e.g. http://127.0.0.1:8080.
    #[arg(long)]
    server: String,
    /// The device's serial, as registered on the server.
    #[arg(long)]
    serial: String,
    /// The device's hardware id.
    #[arg(long)]
    hw_id: String,
    /// The product line whose release keys sign its firmware.
    #[arg(long)]
    product_line: String,
    /// The release channel to follow.
    #[arg(long, default_value = "stable")]
    channel: String,
    /// The device token (bound to the serial). Prefer the environment
    /// variable: command lines are visible to other users.
    #[arg(long, env = "FIRMUP_DEVICE_TOKEN", hide_env_values = true)]
    token: String,
    /// The root document to pin (version 1 as shipped, self-signed).
    #[arg(long)]
    root: PathBuf,
    /// The factory firmware version in slot A.
    #[arg(long)]
    version: Version,
    /// The factory anti-rollback counter.
    #[arg(long, default_value_t = 0)]
    security_counter: u32,
}

/// Runs `provision`.
pub fn run(dir: &Path, origins: &[String], a: Args) -> Result<()> {
    let device = Device::new(dir);
    if device.config_path().exists() {
        bail!(
            "{} is already provisioned; use a new state directory",
            dir.display()
        );
    }
    transport(&a.server, &[]).context("--server")?;
    let mut allowed_download_origins: Vec<String> = Vec::new();
    for o in origins {
        transport(&a.server, std::slice::from_ref(o)).context("--allow-download-origin")?;
        if !allowed_download_origins.contains(o) {
            allowed_download_origins.push(o.clone());
        }
    }
    let root_bytes =
        std::fs::read(&a.root).with_context(|| format!("reading {}", a.root.display()))?;
    let root = TrustedRoot::from_pinned(&root_bytes)
        .with_context(|| format!("pinning {}", a.root.display()))?;
    let store = device.store()?;
    if store.load()?.is_some() {
        bail!("{} already holds a trusted state", dir.display());
    }
    let flasher = device.flasher()?;
    std::fs::write(
        flasher.slot_path(firmup_client::Slot::A),
        format!("factory firmware {}\n", a.version),
    )
    .context("writing slot A")?;
    store.save(&TrustedState::new(
        &root,
        a.version.clone(),
        a.security_counter,
    ))?;
    device.save_config(&AgentConfig {
        device: DeviceConfig {
            server: a.server,
            serial: a.serial.clone(),
            hw_id: a.hw_id,
            product_line: a.product_line,
            channel: a.channel,
            token: a.token,
        },
        allowed_download_origins,
    })?;
    println!(
        "provisioned {} at {} (root version {}, slot a)",
        a.serial,
        a.version,
        root.version()
    );
    Ok(())
}
