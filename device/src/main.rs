//! # firmup-device
//!
//! A device agent over `firmup_client`: a state directory stands in for a
//! device (its identity in `config.json`, its trusted state, its A/B slots)
//! and the subcommands run the same update session a real device embeds.
//!
//! Exit codes (also shown by `firmup-device --help`):
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success: installed, up to date, not entitled, or nothing to do |
//! | 1 | refused or rolled back: the offer failed verification, the image did not match, or the new slot failed its health check |
//! | 2 | usage error: unknown flag, missing or unparseable argument |
//! | 3 | local error: not provisioned, unreadable config or bundle, corrupt state, the device's storage failing, an update still pending, another agent on the same state directory, the server refusing the device's token |
//! | 4 | try again later: server unreachable, 5xx, download budget used up, the download link expired (the server's grant, or the presigned URL an allowed download origin refused): the next check hands out a new one |
//!
//! This binary must never decide trust itself (every verdict comes from
//! `firmup_client`) and never print the device token.

mod agent;
mod bundle;
mod cmd;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with code 2.
    let cli = cmd::Cli::parse();
    agent::exit(cli.run())
}
