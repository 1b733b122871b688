//! `firmup-device check`: what is on offer, verified, without installing.

use std::path::Path;

use anyhow::Result;
use firmup_client::CheckOutcome;

use crate::agent::Parts;

/// Asks the server for an update and verifies the offered manifest for
/// this device (root chain, signatures, hardware, channel, expiry, replay,
/// counter, version), without downloading anything.
///
/// Prints `update available: VERSION ...`, `up to date`, or
/// `not entitled (CODE): SUMMARY`, then the server's poll interval.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `check`.
pub fn run(dir: &Path, origins: &[String], _a: Args) -> Result<()> {
    let mut parts = Parts::open(dir, origins)?;
    let mut session = parts.session();
    let checked = session.check()?;
    match &checked.outcome {
        CheckOutcome::Update(o) => {
            let m = &o.plan.manifest;
            println!(
                "update available: {} (channel {}, manifest_version {}, security_counter {}, image {} bytes){}",
                m.version,
                m.channel,
                m.manifest_version,
                m.security_counter,
                o.image.length,
                if o.stepping_stone {
                    " [stepping stone]"
                } else {
                    ""
                }
            );
            println!(
                "entitlement ({}): {}",
                o.entitlement.code, o.entitlement.summary
            );
        }
        CheckOutcome::UpToDate => println!("up to date"),
        CheckOutcome::NotEntitled(e) => println!("not entitled ({}): {}", e.code, e.summary),
    }
    println!("next check in {} s", checked.poll_after_secs);
    Ok(())
}
