//! The top-level command line: global help text and the subcommand table.
//!
//! Each subcommand lives in its own module under [`crate::cmd`] with an
//! `Args` type and a `run` function; this module only dispatches. It must
//! never grow logic of its own, so that every command stays readable in one
//! file.

use clap::{Parser, Subcommand};

use crate::cmd;

/// Exit codes, shown at the end of `--help`. Scripts key on these, so they
/// never change meaning.
const EXIT_CODES: &str = "\
EXIT CODES:
    0  success
    1  rejected: the manifest, the root chain or an image is bad (verify), or
       the server refused it (publish); the line printed says REJECTED (code): why
    2  usage error: unknown flag, missing or unparseable argument
    3  input error: missing, unreadable or malformed input file, bad key,
       key file readable by group or others, or refusal to overwrite a file;
       for publish also an unreachable server or a server error (5xx)

Errors are printed as one line on stderr, naming the file concerned.
No command leaves a partially written output file behind: every file is
written to a temporary file in the same directory and renamed into place.";

/// One-line reminder of the exit codes, shown under every command's help.
pub const EXIT_CODES_SHORT: &str = "Exit codes: 0 ok, 1 rejected, 2 usage error, 3 input error \
     (see firmup-signer --help).";

const ABOUT: &str = "Offline signing tool for Firmup firmware releases";

const LONG_ABOUT: &str = "\
Offline signing tool for Firmup firmware releases.

firmup-signer creates ed25519 keys, drafts and signs root documents
(root keys with a threshold, and per-product-line delegations of release
keys), signs and co-signs release manifests, and verifies a manifest and its
images with the same verification engine a device runs.

A typical release, start to finish:

    firmup-signer keygen --out keys/root1        # and root2, root3
    firmup-signer keygen --out keys/rel1         # and rel2
    firmup-signer root init --root-key keys/root1.pub --root-key keys/root2.pub \\
        --root-key keys/root3.pub --threshold 2 --out root.v1.json
    firmup-signer delegate --root root.v1.json --product-line encoders \\
        --key keys/rel1.pub --key keys/rel2.pub --threshold 2
    firmup-signer root sign --key keys/root1.key --key keys/root2.key root.v1.json
    firmup-signer sign --key keys/rel1.key --image fw.bin --product-line encoders \\
        --hw-id enc-4k-r2 --channel stable --version 2.1.0 --manifest-version 7 \\
        --security-counter 3 --out fw.manifest.json
    firmup-signer sign --key keys/rel2.key --cosign fw.manifest.json
    firmup-signer verify --root root.v1.json --manifest fw.manifest.json --image fw.bin

Private keys stay on this machine: keep them offline and readable by their
owner only (mode 0600). Only `publish` talks to the network: it uploads a
signed release's images and manifest to a Firmup server, and needs no key.";

/// The firmup-signer command line.
#[derive(Debug, Parser)]
#[command(
    name = "firmup-signer",
    version,
    about = ABOUT,
    long_about = LONG_ABOUT,
    after_help = EXIT_CODES_SHORT,
    after_long_help = EXIT_CODES,
    max_term_width = 100
)]
pub struct Cli {
    /// The subcommand to run.
    #[command(subcommand)]
    pub command: Command,
}

/// Every subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a new ed25519 signing key pair (PREFIX.key and PREFIX.pub).
    #[command(long_about = cmd::keygen::LONG_ABOUT, after_help = EXIT_CODES_SHORT)]
    Keygen(cmd::keygen::Args),
    /// Draft, rotate, sign and inspect root documents.
    #[command(subcommand, long_about = cmd::root::LONG_ABOUT, after_help = EXIT_CODES_SHORT)]
    Root(cmd::root::Command),
    /// Set or remove the release keys of a product line in a draft root document.
    #[command(long_about = cmd::delegate::LONG_ABOUT, after_help = EXIT_CODES_SHORT)]
    Delegate(cmd::delegate::Args),
    /// Create and sign a release manifest, or co-sign an existing one.
    #[command(long_about = cmd::sign::LONG_ABOUT, after_help = EXIT_CODES_SHORT)]
    Sign(Box<cmd::sign::Args>),
    /// Verify a manifest and its images against a pinned root (and its rotations).
    #[command(long_about = cmd::verify::LONG_ABOUT, after_help = EXIT_CODES_SHORT)]
    Verify(Box<cmd::verify::Args>),
    /// Upload a signed release's images to a Firmup server and publish its manifest.
    #[command(long_about = cmd::publish::LONG_ABOUT, after_help = EXIT_CODES_SHORT)]
    Publish(Box<cmd::publish::Args>),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Keygen(args) => cmd::keygen::run(args),
            Command::Root(command) => cmd::root::run(command),
            Command::Delegate(args) => cmd::delegate::run(args),
            Command::Sign(args) => cmd::sign::run(*args),
            Command::Verify(args) => cmd::verify::run(*args),
            Command::Publish(args) => cmd::publish::run(*args),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command().debug_assert();
    }
}
