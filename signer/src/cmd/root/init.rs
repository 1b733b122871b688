//! `firmup-signer root init`: draft root version 1.
//!
//! The draft is unsigned and has no delegations; add them with
//! `firmup-signer delegate`, then sign with `firmup-signer root sign`.
//!
//! This command must never sign anything and never overwrite an existing
//! file unless `--force` is given.

use std::collections::BTreeMap;
use std::path::PathBuf;

use anyhow::{Context as _, Result, bail};
use firmup_client::Envelope;
use firmup_client::root::{ROOT_PAYLOAD_TYPE, ROOT_SPEC_VERSION, RoleKeys, RootDocument};

use crate::common::{self, ExpiryArgs};
use crate::fsutil::{self, MODE_PUBLIC, Overwrite};
use crate::keysource::load_public_key;

/// Man-page text of this subcommand (`--help`).
pub const LONG_ABOUT: &str = "\
Draft root version 1: the root keys, how many of them must sign, and an
expiry. The draft is written unsigned and without delegations: add release
keys per product line with `firmup-signer delegate`, then have a threshold
of the root keys sign it with `firmup-signer root sign`. Devices pin the
signed version 1 at manufacture.

Example:
    firmup-signer root init --root-key keys/root1.pub --root-key keys/root2.pub \\
        --root-key keys/root3.pub --threshold 2 --expires 2027-12-31T00:00:00Z \\
        --out root.v1.json";

/// Flags of `root init`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// A root public key (.pub PEM; a .key file is accepted too). Repeat for each key.
    #[arg(long = "root-key", value_name = "FILE", required = true)]
    pub root_keys: Vec<PathBuf>,
    /// How many distinct root keys must sign each root version.
    #[arg(long, value_name = "N")]
    pub threshold: u32,
    /// When the root expires.
    #[command(flatten)]
    pub expiry: ExpiryArgs,
    /// Where to write the unsigned root document.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
}

/// Runs `root init`.
pub fn run(args: Args) -> Result<()> {
    let overwrite = Overwrite::from_force(args.force);
    fsutil::check_writable(&args.out, overwrite)?;
    let expires = args.expiry.resolve(common::now_utc())?;

    let mut doc = RootDocument {
        spec_version: ROOT_SPEC_VERSION,
        version: 1,
        expires,
        keys: BTreeMap::new(),
        root: RoleKeys {
            keyids: Vec::new(),
            threshold: args.threshold,
        },
        delegations: BTreeMap::new(),
    };
    let mut sources: BTreeMap<_, &PathBuf> = BTreeMap::new();
    for path in &args.root_keys {
        let key = load_public_key(path)?;
        if let Some(first) = sources.insert(key.id().clone(), path) {
            bail!(
                "the same root key is given twice ({} and {})",
                first.display(),
                path.display()
            );
        }
        let id = doc.add_key(&key);
        doc.root.keyids.push(id);
    }
    let payload = doc.to_payload().context("cannot build the root document")?;
    let env = Envelope::new(ROOT_PAYLOAD_TYPE, &payload);
    fsutil::write_atomic(&args.out, &env.to_json_bytes(), MODE_PUBLIC, overwrite)?;
    common::warn_if_expired("the root document", expires);

    println!(
        "wrote {} (root version 1, unsigned draft)",
        args.out.display()
    );
    println!(
        "root keys: {} of {} must sign; expires {}",
        doc.root.threshold,
        doc.root.keyids.len(),
        common::fmt_time(expires)
    );
    for id in &doc.root.keyids {
        println!("  {id}");
    }
    println!(
        "next: firmup-signer delegate --root {} --product-line LINE --key REL.pub ... --threshold N",
        args.out.display()
    );
    println!(
        "then: firmup-signer root sign --key ROOT.key ... {}",
        args.out.display()
    );
    Ok(())
}
