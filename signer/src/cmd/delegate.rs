//! `firmup-signer delegate`: set or remove a product line's release keys
//! in a draft root document, in place.
//!
//! Setting a delegation replaces the previous one outright, which is how a
//! release key is revoked: re-delegate without it. Keys no role uses any
//! more are pruned. Because the payload changes, existing signatures no
//! longer apply and are dropped, with a warning.
//!
//! This command must never keep a signature over a payload it changed, and
//! never write a document the engine would reject as inconsistent.

use std::collections::BTreeSet;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use firmup_client::Envelope;
use firmup_client::root::{ROOT_PAYLOAD_TYPE, RoleKeys};

use crate::common;
use crate::fsutil::{self, MODE_PUBLIC, Overwrite};
use crate::keysource::load_public_key;

/// Man-page text of this subcommand (`--help`).
pub const LONG_ABOUT: &str = "\
Set the release keys of a product line in a root document (a draft made by
`root init` or `root rotate`), in place. The new delegation replaces any
previous one for that product line, which is how a release key is revoked:
delegate again without it (in a new root version). --remove deletes the
product line's delegation. Keys that no role uses any more are pruned.

The signed payload changes, so any signatures already on the document are
dropped (with a warning); sign it afterwards with `firmup-signer root sign`.

Example:
    firmup-signer delegate --root root.v1.json --product-line encoders \\
        --key keys/rel1.pub --key keys/rel2.pub --threshold 2
    firmup-signer delegate --root root.v2.json --product-line encoders --remove";

/// Flags of `delegate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The root document to edit in place.
    #[arg(long, value_name = "FILE")]
    pub root: PathBuf,
    /// The product line, e.g. encoders.
    #[arg(long, value_name = "NAME")]
    pub product_line: String,
    /// A release public key (.pub PEM, or .key). Repeatable.
    #[arg(
        long = "key",
        value_name = "FILE",
        required_unless_present = "remove",
        conflicts_with = "remove"
    )]
    pub keys: Vec<PathBuf>,
    /// How many distinct release keys must sign this product line's manifests.
    #[arg(
        long,
        value_name = "N",
        required_unless_present = "remove",
        conflicts_with = "remove"
    )]
    pub threshold: Option<u32>,
    /// Delete the product line's delegation instead of setting it.
    #[arg(long)]
    pub remove: bool,
}

/// Runs `delegate`.
pub fn run(args: Args) -> Result<()> {
    let file = common::read_root(&args.root)?;
    let mut doc = file.doc.clone();
    let line = args.product_line.as_str();

    if args.remove {
        if doc.delegations.remove(line).is_none() {
            bail!(
                "cannot remove delegation ({}): product line {line:?} is not delegated",
                args.root.display()
            );
        }
    } else {
        let mut role = RoleKeys {
            keyids: Vec::new(),
            threshold: args.threshold.unwrap_or_default(),
        };
        let mut seen = BTreeSet::new();
        for path in &args.keys {
            let key = load_public_key(path)?;
            if !seen.insert(key.id().clone()) {
                bail!(
                    "release key given twice ({}): key {}",
                    path.display(),
                    key.id()
                );
            }
            if doc.root.keyids.contains(key.id()) {
                eprintln!(
                    "warning: {} is a root key; release keys should be separate keys \
                     so a release machine never holds root authority",
                    path.display()
                );
            }
            role.keyids.push(doc.add_key(&key));
        }
        doc.delegations.insert(line.to_string(), role);
    }
    doc.prune_keys();
    let payload = doc
        .to_payload()
        .with_context(|| format!("invalid delegation for {line:?} ({})", args.root.display()))?;

    if payload == file.payload {
        println!(
            "{} unchanged: the delegation of {line:?} is already as given",
            args.root.display()
        );
        return Ok(());
    }
    let dropped = file.envelope.signatures.len();
    let env = Envelope::new(ROOT_PAYLOAD_TYPE, &payload);
    let mode = fsutil::existing_mode(&args.root, MODE_PUBLIC);
    fsutil::write_atomic(&args.root, &env.to_json_bytes(), mode, Overwrite::Replace)?;
    if dropped > 0 {
        eprintln!(
            "warning: dropped {dropped} signature(s) from {}: they covered the old payload; \
             sign it again with `firmup-signer root sign`",
            args.root.display()
        );
    }

    match doc.delegations.get(line) {
        None => println!(
            "removed the delegation of {line:?} from {} (root version {})",
            args.root.display(),
            doc.version
        ),
        Some(role) => {
            println!(
                "delegated {line:?} in {} (root version {}): {} of {} release keys must sign",
                args.root.display(),
                doc.version,
                role.threshold,
                role.keyids.len()
            );
            for id in &role.keyids {
                println!("  {id}");
            }
        }
    }
    Ok(())
}
