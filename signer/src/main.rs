//! # firmup-signer
//!
//! The offline command-line tool of Firmup release engineers: it creates
//! keys, drafts and signs root documents, delegates release keys to product
//! lines, signs and co-signs release manifests, and verifies them with the
//! very engine a device runs (`firmup_client::verify_manifest`).
//!
//! Exit codes (also shown by `firmup-signer --help`):
//!
//! | code | meaning |
//! |------|---------|
//! | 0 | success |
//! | 1 | verification rejected: the artifact is bad (`verify` only) |
//! | 2 | usage error: unknown flag, missing or unparseable argument (clap) |
//! | 3 | input error: missing, unreadable or malformed file, bad key, key file permissions, refusal to overwrite |
//!
//! This binary must never re-implement a trust check (every verdict comes
//! from `firmup_client`), never print or log private key material, and
//! never leave a partially written output file behind.

mod cli;
mod cmd;
mod common;
mod exit;
mod fsutil;
mod images;
mod keysource;
mod progress;
mod sbom;

use std::process::ExitCode;

use clap::Parser as _;

fn main() -> ExitCode {
    // clap prints usage errors itself and exits with code 2.
    let cli = cli::Cli::parse();
    exit::report(cli.run())
}
