//! `firmup-device check`: what is on offer, verified, without installing.

use std::path::Path;

use anyhow::Result;
use firmup_client::CheckOutcome;

use crate::agent::{Parts, print_advisory, print_security_support};

/// Asks the server for an update and verifies the offered manifest for
/// this device (root chain, signatures, hardware, channel, expiry, replay,
/// counter, version), without downloading anything.
///
/// Prints `update available: VERSION ...`, `up to date`, or
/// `not entitled (CODE): SUMMARY`, then the server's poll interval. For a
/// security or mixed release also its signed advisory (severity, CVEs,
/// summary, advice) and whether `update` would install it without asking
/// (see `firmup-device security-updates`). When the server says until when
/// the unit gets security updates, prints that too (and its warning when
/// the end is near).
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `check`.
pub fn run(dir: &Path, origins: &[String], _a: Args) -> Result<()> {
    let mut parts = Parts::open(dir, origins)?;
    let policy = parts.device.security_updates()?;
    let device = parts.device.clone();
    let mut session = parts.session().with_security_updates(policy);
    let checked = session.check()?;
    device.remember_security_support(checked.security_support.as_ref());
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
            let notice = session.notice(o);
            match &notice.advisory {
                Some(a) => println!(
                    "kind: {} (severity {}, {})",
                    notice.kind.as_str(),
                    a.severity.as_str(),
                    a.cves.join(", ")
                ),
                None => println!("kind: {}", notice.kind.as_str()),
            }
            print_advisory(&notice);
        }
        CheckOutcome::UpToDate => println!("up to date"),
        CheckOutcome::NotEntitled(e) => println!("not entitled ({}): {}", e.code, e.summary),
    }
    if let Some(s) = &checked.security_support {
        print_security_support(s);
    }
    println!("next check in {} s", checked.poll_after_secs);
    Ok(())
}
