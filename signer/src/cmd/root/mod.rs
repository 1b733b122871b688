//! `firmup-signer root ...`: draft, rotate, sign and inspect root documents.
//!
//! Root documents are drafted unsigned (`init`, `rotate`), edited while
//! still drafts (`firmup-signer delegate`), then signed offline by a
//! threshold of root keys (`sign`). The status these commands print comes
//! from the engine (`TrustedRoot::from_self_signed` and `TrustedRoot::rotate`),
//! never from a count made here.
//!
//! These commands must never change a payload that is being signed, and
//! never present a draft as trusted.

pub mod init;
pub mod rotate;
pub mod show;
pub mod sign;

use std::path::Path;

use anyhow::Result;
use firmup_client::root::RootDocument;
use firmup_client::{Error, KeyId, TrustedRoot};

use crate::cli::EXIT_CODES_SHORT;
use crate::common::{self, RootFile};
use crate::exit::one_line;

/// Man-page text of `root` (`--help`).
pub const LONG_ABOUT: &str = "\
Draft, rotate, sign and inspect root documents.

A root document lists the root keys with their threshold and, per product
line, the release keys allowed to sign that line's manifests. Devices ship
with root version 1 pinned and accept version N+1 only if a threshold of
the root keys of version N AND a threshold of its own root keys signed it.

Life cycle: `root init` (or `root rotate`) writes an unsigned draft,
`firmup-signer delegate` sets the product lines' release keys in the draft,
`root sign` adds the root keys' signatures, `root show` prints it all.

Example:
    firmup-signer root init --root-key r1.pub --root-key r2.pub --root-key r3.pub \\
        --threshold 2 --out root.v1.json
    firmup-signer root sign --key r1.key --key r2.key root.v1.json
    firmup-signer root show root.v1.json";

/// The `root` subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Draft root version 1 (unsigned): root keys, threshold, expiry.
    #[command(long_about = init::LONG_ABOUT, after_help = EXIT_CODES_SHORT)]
    Init(init::Args),
    /// Draft root version N+1 from version N (unsigned), changing root keys.
    #[command(long_about = rotate::LONG_ABOUT, after_help = EXIT_CODES_SHORT)]
    Rotate(rotate::Args),
    /// Add signatures to a root document, in place.
    #[command(long_about = sign::LONG_ABOUT, after_help = EXIT_CODES_SHORT)]
    Sign(sign::Args),
    /// Print a root document: keys, delegations, signatures and their status.
    #[command(long_about = show::LONG_ABOUT, after_help = EXIT_CODES_SHORT)]
    Show(show::Args),
}

/// Runs a `root` subcommand.
pub fn run(command: Command) -> Result<()> {
    match command {
        Command::Init(args) => init::run(args),
        Command::Rotate(args) => rotate::run(args),
        Command::Sign(args) => sign::run(args),
        Command::Show(args) => show::run(args),
    }
}

/// Whether `id` is one of the document's root keys.
pub fn is_root_key(doc: &RootDocument, id: &KeyId) -> bool {
    doc.root.keyids.contains(id)
}

/// Prints what the engine says about the signatures of `root`: whether its
/// own root keys meet their threshold, and, given the previous version,
/// whether the rotation from it would be accepted.
pub fn print_status(root: &RootFile, previous: Option<&Path>) -> Result<()> {
    let version = root.doc.version;
    match TrustedRoot::from_self_signed(&root.bytes) {
        Ok(_) => println!(
            "status: signed by a threshold of its own root keys (threshold {} of {} keys)",
            root.doc.root.threshold,
            root.doc.root.keyids.len()
        ),
        Err(e) => println!("status: NOT yet valid: {}", describe(&e)),
    }
    match previous {
        Some(path) => {
            let prev = common::read_root(path)?;
            if prev.doc.version.checked_add(1) != Some(version) {
                println!(
                    "rotation: {} is root version {}, not version {}; nothing to check",
                    path.display(),
                    prev.doc.version,
                    version.saturating_sub(1)
                );
                return Ok(());
            }
            match TrustedRoot::from_self_signed(&prev.bytes) {
                Err(e) => println!(
                    "rotation: cannot check, the previous root ({}) is itself not valid: {}",
                    path.display(),
                    describe(&e)
                ),
                Ok(trusted) => match trusted.rotate(&root.bytes) {
                    Ok(_) => println!(
                        "rotation: devices trusting root version {} will accept version {version}",
                        prev.doc.version
                    ),
                    Err(e) => println!("rotation: NOT yet accepted: {}", describe(&e)),
                },
            }
        }
        None if version > 1 => println!(
            "rotation: version {version} also needs a threshold of the root keys of version {}; \
             pass --previous root.v{}.json to check it",
            version - 1,
            version - 1
        ),
        None => {}
    }
    Ok(())
}

fn describe(e: &Error) -> String {
    one_line(&format!("{e} ({})", e.code()))
}
