//! # firmup
//!
//! The staff CLI: what a technician at the repair desk does, from a
//! terminal, over the server's HTTP API with a staff token: look a device
//! up (warranty, entitlement, pushes, RMAs), push a release to it, cancel
//! the push, download its offline bundle, open and track RMAs, decide their
//! coverage, register a unit for its owner, and record a
//! unit's sale.
//!
//! Why a separate CLI over HTTP, not `firmup-server admin ...`: the desk is
//! not the server's host. `firmup-server`'s commands open the database
//! directly and are for the operator on that host (the first token, bulk
//! imports at set-up); a technician holds only a token, and every call this
//! CLI makes goes through the same roles, validation, rate limits and audit
//! records as any other client, so the audit log names the technician's
//! token and not the server. It also needs none of the server's database
//! or storage code, which keeps it small to install on a desk machine.
//!
//! Exit codes (also shown by `firmup --help`):
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | done |
//! | 1 | the server refused: its stable code and message are printed (`--json`: its error body) |
//! | 2 | usage error |
//! | 3 | local error: a file that cannot be read or written, no Firmup API at that address, an answer that cannot be read |
//! | 4 | try again later: the server unreachable, overloaded (429) or failing (5xx) |

mod api;
mod cmd;
mod show;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with code 2.
    let cli = cmd::Cli::parse();
    ExitCode::from(cli.run())
}
