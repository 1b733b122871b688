//! The command line: one module per subcommand, each with `Args` and
//! `run()`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod check;
mod install;
mod provision;
mod run;
mod status;
mod update;

const EXIT_CODES: &str = "\
EXIT CODES:
  0  success: installed, up to date, not entitled, or nothing to do
  1  refused or rolled back: verification failed, the image did not match,
     or the new slot failed its health check
  2  usage error: unknown flag, missing or unparseable argument
  3  local error: not provisioned, unreadable config or bundle, corrupt
     state, the device's storage failing, an update still pending, another
     agent on the same state directory, the server refusing the token
  4  try again later: server unreachable, 5xx, download budget used up";

/// Firmup device agent: checks for, downloads, verifies and installs signed
/// firmware into A/B slots, and reports each stage to the server.
///
/// A state directory simulates the device: `config.json` (server, serial,
/// hw_id, product_line, channel, token), the trusted state (`state/`), the
/// A/B slots (`slots/`), downloads (`work/`). Creating a file `unhealthy`
/// in it makes the health check after the next reboot fail, so the update
/// is rolled back.
///
/// Every manifest is verified against the device's trusted root, identity
/// and committed state before anything is downloaded; images are checked
/// against their signed length and sha256 while downloading, while flashing
/// and again from the slot; the anti-rollback counter only moves after the
/// new slot booted and passed its health check.
#[derive(Debug, Parser)]
#[command(name = "firmup-device", version, after_long_help = EXIT_CODES)]
pub struct Cli {
    /// The device's state directory.
    #[arg(
        long,
        global = true,
        env = "FIRMUP_DEVICE_STATE_DIR",
        default_value = "./firmup-device"
    )]
    state_dir: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Provision(provision::Args),
    Check(check::Args),
    Update(update::Args),
    Run(run::Args),
    Install(install::Args),
    Status(status::Args),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> Result<()> {
        let dir = &self.state_dir;
        match self.command {
            Command::Provision(a) => provision::run(dir, a),
            Command::Check(a) => check::run(dir, a),
            Command::Update(a) => update::run(dir, a),
            Command::Run(a) => run::run(dir, a),
            Command::Install(a) => install::run(dir, a),
            Command::Status(a) => status::run(dir, a),
        }
    }
}
