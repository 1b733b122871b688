//! `firmup-device run`: the poll loop.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::agent::Parts;

/// Runs update cycles forever (or `--max-cycles` times), waiting between
/// them as long as the server's answer asks (`poll_after_secs`), at most
/// `--max-sleep-secs`. A failed cycle is printed and the loop goes on: a
/// retryable failure waits and tries again, a refused release waits for
/// the next one. Exits 0 when the cycles are done.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Stop after this many cycles (default: never).
    #[arg(long)]
    max_cycles: Option<u64>,
    /// Never wait longer than this between cycles.
    #[arg(long, default_value_t = 86_400)]
    max_sleep_secs: u64,
    /// Wait after a failed cycle (before the cap).
    #[arg(long, default_value_t = 300)]
    retry_after_secs: u64,
}

/// Runs `run`.
pub fn run(dir: &Path, a: Args) -> Result<()> {
    let mut parts = Parts::open(dir)?;
    let device = parts.device.clone();
    let mut session = parts.session();
    let mut n = 0u64;
    loop {
        n += 1;
        let wait = match super::update::cycle(&mut session, &device) {
            Ok(poll) => poll,
            Err(e) => {
                eprintln!("cycle {n} failed: {e:#}");
                a.retry_after_secs
            }
        };
        if a.max_cycles.is_some_and(|m| n >= m) {
            return Ok(());
        }
        let wait = wait.min(a.max_sleep_secs);
        eprintln!("next check in {wait} s");
        std::thread::sleep(Duration::from_secs(wait));
    }
}
