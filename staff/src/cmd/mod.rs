//! The command line: global flags, the command tree, and how an answer or
//! a failure is printed.

mod device;
mod group;
mod privacy;
mod push;
mod rma;
mod rollout;

use serde_json::Value;

use crate::api::{Api, Failure, Outcome, Token, parse_server};

const EXIT_CODES: &str = "\
Exit codes:
  0  done
  1  the server refused (its code and message are printed; with --json its error body)
  2  usage error
  3  local error (a file, no Firmup API at that address, an unreadable answer)
  4  try again later (server unreachable, 429 or 5xx)

The server and token come from --server and --token or, better, from
FIRMUP_SERVER and FIRMUP_TOKEN (a command-line argument is visible to other
users in the process list). The token is never printed.";

/// Command-line interface of `firmup`.
#[derive(Debug, clap::Parser)]
#[command(
    name = "firmup",
    version,
    about = "Firmup's staff from a terminal: the repair desk (devices, repair pushes, bundles, RMAs, registrations), staged rollouts with device groups, and owners' data-protection requests",
    long_about = "The repair desk from a terminal, over the Firmup server's HTTP API with a \
staff token (technician; some commands need admin): look a device up with its warranty and \
entitlement reasoning, push a release to it, cancel the push, download its offline bundle, \
open and track RMAs, decide their coverage, register a unit for its owner, record a sale. \
Release engineers start, advance, pause, resume, abort, finish and watch staged rollouts, and \
keep the device groups they and maintenance windows apply to. Admins answer owners' \
data-protection requests: export, erasure, correction, restriction.",
    after_help = EXIT_CODES
)]
pub struct Cli {
    /// Base URL of the Firmup server, e.g. `https://firmup.example.com`.
    #[arg(long, global = true, env = "FIRMUP_SERVER", value_name = "URL", value_parser = parse_server)]
    server: Option<String>,

    /// Staff API token (prefer the environment variable).
    #[arg(
        long,
        global = true,
        env = "FIRMUP_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN",
        value_parser = Token::parse
    )]
    token: Option<Token>,

    /// Print the server's JSON answer unchanged (on a refusal: its error
    /// body), for scripts.
    #[arg(long, global = true)]
    json: bool,

    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Look a device up, its warranty and entitlement; register it; record its sale.
    #[command(subcommand)]
    Device(device::DeviceCommand),
    /// Push a release to a device under repair; cancel, list, download its bundle.
    #[command(subcommand)]
    Push(push::PushCommand),
    /// Open, track and list RMAs; decide coverage; replace parts or the unit.
    #[command(subcommand)]
    Rma(rma::RmaCommand),
    /// Staged rollouts of releases: start, advance, pause, resume, abort,
    /// finish, watch.
    #[command(subcommand)]
    Rollout(rollout::RolloutCommand),
    /// Device groups (static or by filter) and their maintenance windows.
    #[command(subcommand)]
    Group(group::GroupCommand),
    /// Owners' data-protection requests (admin): export, erase, correct a
    /// contact, restrict processing, run retention now.
    #[command(subcommand)]
    Privacy(privacy::PrivacyCommand),
}

/// What a command gives: the server's answer, and how a person reads it.
pub struct Shown {
    /// The answer as sent, printed by `--json`.
    pub value: Value,
    /// The human rendering.
    pub text: String,
}

impl Shown {
    /// An answer rendered by `render`.
    pub fn of(value: Value, render: impl FnOnce(&Value) -> String) -> Shown {
        let text = render(&value);
        Shown { value, text }
    }
}

impl Cli {
    /// Runs the command and prints its outcome; gives the exit code.
    pub fn run(self) -> u8 {
        let json = self.json;
        match self.execute() {
            Ok(shown) => {
                if json {
                    println!(
                        "{}",
                        serde_json::to_string_pretty(&shown.value).unwrap_or_default()
                    );
                } else {
                    print!("{}", shown.text);
                }
                0
            }
            Err(Usage(message)) => {
                eprintln!("error: {message}");
                2
            }
            Err(Failed(failure)) => {
                if let (true, Failure::Refused { body, .. }) = (json, &failure) {
                    println!("{}", serde_json::to_string_pretty(body).unwrap_or_default());
                }
                eprintln!("error: {failure}");
                failure.exit_code()
            }
        }
    }

    fn execute(self) -> Result<Shown, Stop> {
        let server = self.server.ok_or_else(|| {
            Usage("no server: set FIRMUP_SERVER or pass --server https://...".into())
        })?;
        let token = self
            .token
            .ok_or_else(|| Usage("no token: set FIRMUP_TOKEN to a staff API token".into()))?;
        let api = Api::new(server, token).map_err(Failed)?;
        let done = match self.command {
            Command::Device(c) => c.run(&api),
            Command::Push(c) => c.run(&api),
            Command::Rma(c) => c.run(&api),
            Command::Rollout(c) => c.run(&api),
            Command::Group(c) => c.run(&api),
            Command::Privacy(c) => c.run(&api),
        };
        done.map_err(Failed)
    }
}

/// Why a command stopped.
enum Stop {
    Usage(String),
    Failed(Failure),
}
use Stop::{Failed, Usage};

/// An answer with its human rendering, or the failure as it came.
pub fn shown(value: Outcome<Value>, render: impl FnOnce(&Value) -> String) -> Outcome<Shown> {
    value.map(|v| Shown::of(v, render))
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory as _;

    use super::*;

    #[test]
    fn the_command_tree_is_consistent() {
        Cli::command().debug_assert();
    }
}
