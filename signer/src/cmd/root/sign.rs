//! `firmup-signer root sign`: add signatures to a root document in place.
//!
//! The envelope's payload is left byte for byte as it was; only the
//! signature list changes, and the file is rewritten atomically.
//!
//! This command must never alter the payload, and never refuse a key just
//! because it is not a root key of this version: during a rotation the
//! keys of the previous version must sign too.

use std::path::PathBuf;

use anyhow::{Result, bail};

use crate::common::{self, short_id};
use crate::fsutil::{self, MODE_PUBLIC, Overwrite};
use crate::keysource::key_source;

use super::{is_root_key, print_status};

/// Man-page text of this subcommand (`--help`).
pub const LONG_ABOUT: &str = "\
Sign a root document with one or more root keys, in place. Only the
signature list changes: the signed payload stays byte for byte the same,
and the file is rewritten atomically. Signing again with the same key
replaces that key's signature.

A root version N+1 needs signatures from a threshold of the root keys of
version N and of its own root keys. A key that is not a root key of this
version is accepted with a warning (it may be a key of the previous root).
Afterwards the engine's verdict is printed; pass --previous to also check
the rotation from the previous version.

Example:
    firmup-signer root sign --key keys/root1.key --key keys/root2.key root.v1.json
    firmup-signer root sign --key keys/root1.key --key keys/root4.key \\
        --previous root.v1.json root.v2.json";

/// Flags of `root sign`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A private key to sign with (PKCS#8 PEM, mode 0600). Repeatable.
    #[arg(long = "key", value_name = "FILE", required = true)]
    pub keys: Vec<PathBuf>,
    /// The previous root version, to tell old root keys apart and to check
    /// the rotation thresholds.
    #[arg(long, value_name = "FILE")]
    pub previous: Option<PathBuf>,
    /// The root document to sign (rewritten in place).
    #[arg(value_name = "FILE")]
    pub file: PathBuf,
}

/// Runs `root sign`.
pub fn run(args: Args) -> Result<()> {
    let mut root = common::read_root(&args.file)?;
    let previous = match &args.previous {
        Some(path) => Some(common::read_root(path)?.doc),
        None => None,
    };
    let version = root.doc.version;
    let original_payload = root.envelope.payload.clone();

    // Load every key before signing with any, so a bad key file changes
    // nothing.
    let mut keys = Vec::with_capacity(args.keys.len());
    for path in &args.keys {
        let source = key_source(path);
        keys.push((path, source.signing_key()?));
    }
    for (path, key) in &keys {
        let id = root.envelope.sign(key)?;
        if is_root_key(&root.doc, &id) {
            let also = match &previous {
                Some(prev) if is_root_key(prev, &id) => {
                    format!(" (and of the previous version {})", prev.version)
                }
                _ => String::new(),
            };
            println!(
                "signed with {} ({}): root key of version {version}{also}",
                short_id(&id),
                path.display()
            );
        } else if let Some(prev) = previous.as_ref().filter(|p| is_root_key(p, &id)) {
            println!(
                "signed with {} ({}): root key of the previous version {} (counts toward the rotation)",
                short_id(&id),
                path.display(),
                prev.version
            );
        } else if let Some(prev) = &previous {
            eprintln!(
                "warning: key {} ({}) is not a root key of version {version} nor of version {}; \
                 its signature will not count",
                id,
                path.display(),
                prev.version
            );
        } else {
            eprintln!(
                "warning: key {} ({}) is not a root key of version {version}; \
                 fine if it is a key of the previous root",
                id,
                path.display()
            );
        }
    }
    // Signing only ever touches the signature list; make that a checked
    // fact before anything is written.
    if root.envelope.payload != original_payload {
        bail!(
            "internal error: signing changed the payload ({}); nothing written",
            args.file.display()
        );
    }

    let bytes = root.envelope.to_json_bytes();
    let mode = fsutil::existing_mode(&args.file, MODE_PUBLIC);
    fsutil::write_atomic(&args.file, &bytes, mode, Overwrite::Replace)?;
    root.bytes = bytes;
    println!(
        "wrote {} ({} signature(s))",
        args.file.display(),
        root.envelope.signatures.len()
    );
    print_status(&root, args.previous.as_deref())
}
