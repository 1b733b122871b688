//! `firmup-device update`: one full update cycle.

use std::path::Path;

use anyhow::Result;
use firmup_client::CycleOutcome;

use crate::agent::{Bar, Parts, finish_interrupted, reboot_and_finish, report_finish};

/// Runs one full update cycle: finish an interrupted update if any, check,
/// verify, download (resuming what an earlier run left), install into the
/// inactive slot, reboot (simulated), health check (fails if the flag file
/// `unhealthy` exists in the state directory), then commit or roll back,
/// reporting each stage to the server.
#[derive(Debug, clap::Args)]
pub struct Args {}

/// Runs `update`.
pub fn run(dir: &Path, _a: Args) -> Result<()> {
    let mut parts = Parts::open(dir)?;
    let device = parts.device.clone();
    let mut session = parts.session();
    cycle(&mut session, &device).map(|_| ())
}

/// One cycle; returns the server's poll interval.
pub fn cycle(
    session: &mut firmup_client::UpdateSession<'_>,
    device: &crate::agent::Device,
) -> Result<u64> {
    finish_interrupted(session, device)?;
    let mut bar = Bar::new();
    let res = session.update(|p| bar.update(p));
    bar.finish();
    let cycle = res?;
    match cycle.outcome {
        CycleOutcome::UpToDate => println!("up to date"),
        CycleOutcome::NotEntitled(e) => println!("not entitled ({}): {}", e.code, e.summary),
        CycleOutcome::Declined(o) => println!("update to {} declined", o.version()),
        CycleOutcome::Installed(p) => {
            println!("wrote {} to slot {}; rebooting", p.version, p.slot);
            report_finish(&reboot_and_finish(session, device)?)?;
        }
    }
    Ok(cycle.poll_after_secs)
}
