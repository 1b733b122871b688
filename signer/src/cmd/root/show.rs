//! `firmup-signer root show`: print a root document for review.
//!
//! This command must never modify anything, and never present the
//! document as trusted: the status line is the engine's verdict on the
//! signatures, and a self-signed root is only as good as its pinning.

use std::path::PathBuf;

use anyhow::Result;

use crate::common;

use super::{is_root_key, print_status};

/// Man-page text of this subcommand (`--help`).
pub const LONG_ABOUT: &str = "\
Print a root document: version, expiry, root keys and threshold,
delegations per product line, which keys signed, and whether the signatures
meet the thresholds (as the verification engine sees it). Pass --previous
to also check the rotation from the previous version.

Example:
    firmup-signer root show --previous root.v1.json root.v2.json";

/// Flags of `root show`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The previous root version, to check the rotation thresholds.
    #[arg(long, value_name = "FILE")]
    pub previous: Option<PathBuf>,
    /// The root document to show.
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Runs `root show`.
pub fn run(args: Args) -> Result<()> {
    let root = common::read_root(&args.file)?;
    let previous = match &args.previous {
        Some(path) => Some(common::read_root(path)?.doc),
        None => None,
    };
    let doc = &root.doc;
    println!("root document {}", args.file.display());
    println!("  version:    {}", doc.version);
    println!("  expires:    {}", common::fmt_time(doc.expires));
    println!(
        "  root keys:  {} of {} must sign",
        doc.root.threshold,
        doc.root.keyids.len()
    );
    for id in &doc.root.keyids {
        println!("    {id}");
    }
    if doc.delegations.is_empty() {
        println!("  delegations: none");
    } else {
        println!("  delegations:");
        for (line, role) in &doc.delegations {
            println!(
                "    {line}: {} of {} release keys must sign",
                role.threshold,
                role.keyids.len()
            );
            for id in &role.keyids {
                println!("      {id}");
            }
        }
    }
    println!(
        "  signatures: {} (key ids as written; the status line says which count)",
        root.envelope.signatures.len()
    );
    for sig in &root.envelope.signatures {
        let id = &sig.keyid;
        let what = if is_root_key(doc, id) {
            match &previous {
                Some(prev) if is_root_key(prev, id) => format!(
                    "root key of version {} and of the previous version {}",
                    doc.version, prev.version
                ),
                _ => format!("root key of version {}", doc.version),
            }
        } else if let Some(prev) = previous.as_ref().filter(|p| is_root_key(p, id)) {
            format!("root key of the previous version {}", prev.version)
        } else {
            format!("not a root key of version {}", doc.version)
        };
        println!("    {id} ({what})");
    }
    print_status(&root, args.previous.as_deref())
}
