//! `firmup-device status`: what the device runs and trusts.

use std::path::Path;

use anyhow::{Result, anyhow};
use firmup_client::{Flasher as _, StateStore as _};
use serde_json::json;

use crate::agent::{Device, describe_policy, policy_mode, print_security_support};

/// Prints the device's slots (committed, running, pending), committed
/// version, security counter, manifest versions, root version, the update
/// in flight, the number of queued reports, the allowed download
/// origins of `config.json`, the owner's security updates choice and, as
/// the last check answer said, when the unit's security support ends (with
/// its warning when the end is near). Changes nothing and needs no
/// network.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// Runs `status`.
pub fn run(dir: &Path, a: Args) -> Result<()> {
    let device = Device::new(dir);
    let config = device.config()?;
    let origins = config.allowed_download_origins;
    let config = config.device;
    let state = device
        .store()?
        .load()?
        .ok_or_else(|| anyhow!("{} holds no trusted state", dir.display()))?;
    let slots = device.flasher()?.status()?;
    let root_version = state.trusted_root()?.version();
    let pending = state
        .pending()
        .map(|p| format!("{} in slot {}", p.version, p.slot));
    let policy = device.security_updates()?;
    let postponed_until = match policy {
        firmup_client::SecurityUpdates::PostponedUntil(t) => Some(firmup_client::format_time(t)),
        _ => None,
    };
    let support = device.security_support();
    if a.json {
        let v = json!({
            "serial": config.serial,
            "channel": config.channel,
            "active_slot": slots.active.as_str(),
            "running_slot": slots.running.as_str(),
            "pending_slot": slots.pending.map(|s| s.as_str()),
            "version": state.installed_version().to_string(),
            "security_counter": state.security_counter(),
            "manifest_versions": state.manifest_versions(),
            "root_version": root_version,
            "pending": pending,
            "queued_reports": state.queued_reports().len(),
            "allowed_download_origins": origins,
            "security_updates": policy_mode(policy),
            "security_updates_postponed_until": postponed_until,
            "security_support": support,
        });
        println!("{v:#}");
        return Ok(());
    }
    println!("serial: {}", config.serial);
    println!("channel: {}", config.channel);
    println!("slot: {} (running {})", slots.active, slots.running);
    println!("version: {}", state.installed_version());
    println!("security_counter: {}", state.security_counter());
    for (ch, mv) in state.manifest_versions() {
        println!("manifest_version[{ch}]: {mv}");
    }
    println!("root_version: {root_version}");
    println!("pending: {}", pending.as_deref().unwrap_or("none"));
    println!("queued_reports: {}", state.queued_reports().len());
    println!(
        "allowed_download_origins: {}",
        if origins.is_empty() {
            "none".to_owned()
        } else {
            origins.join(", ")
        }
    );
    println!("security updates: {}", describe_policy(policy));
    if let Some(s) = &support {
        print_security_support(s);
    }
    Ok(())
}
