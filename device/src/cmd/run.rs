//! `firmup-device run`: the poll loop.

use std::path::Path;
use std::time::Duration;

use anyhow::Result;

use crate::agent::Parts;

/// Runs update cycles forever (or `--max-cycles` times), waiting between
/// them as long as the server's answer asks (`poll_after_secs`), never less
/// than `--min-sleep-secs` (a server asking for 0 must not turn the loop
/// into a flood) and at most `--max-sleep-secs`. A failed cycle is printed
/// and the loop goes on: a retryable failure waits and tries again, a
/// refused release waits for the next one. With `--max-cycles`, exits with
/// the code of the last cycle.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Stop after this many cycles (default: never).
    #[arg(long)]
    max_cycles: Option<u64>,
    /// Never wait longer than this between cycles.
    #[arg(long, default_value_t = 86_400)]
    max_sleep_secs: u64,
    /// Never wait less than this between cycles, whatever the server says.
    #[arg(long, default_value_t = 60)]
    min_sleep_secs: u64,
    /// Wait after a failed cycle (before the cap).
    #[arg(long, default_value_t = 300)]
    retry_after_secs: u64,
}

/// Runs `run`.
pub fn run(dir: &Path, origins: &[String], a: Args) -> Result<()> {
    let mut parts = Parts::open(dir, origins)?;
    let device = parts.device.clone();
    let mut session = parts.session();
    let mut n = 0u64;
    loop {
        n += 1;
        let outcome = super::update::cycle(&mut session, &device);
        let wait = match &outcome {
            Ok(poll) => *poll,
            Err(e) => {
                eprintln!("cycle {n} failed: {e:#}");
                a.retry_after_secs
            }
        };
        if a.max_cycles.is_some_and(|m| n >= m) {
            return outcome.map(|_| ());
        }
        let wait = wait.max(a.min_sleep_secs).min(a.max_sleep_secs);
        eprintln!("next check in {wait} s");
        std::thread::sleep(Duration::from_secs(wait));
    }
}
