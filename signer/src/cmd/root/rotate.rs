//! `firmup-signer root rotate`: draft root version N+1 from version N.
//!
//! The draft copies the delegations and keeps the root keys unless told
//! otherwise; it is unsigned. Devices accept it only with a threshold of
//! signatures from the OLD root keys and from the NEW ones, which this
//! command reminds the operator of.
//!
//! This command must never sign anything, and never write a draft that
//! the engine would reject as inconsistent (bad threshold, unknown keys).

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use firmup_client::root::ROOT_PAYLOAD_TYPE;
use firmup_client::{Envelope, KeyId, TrustedRoot};

use crate::common::{self, ExpiryArgs};
use crate::exit::one_line;
use crate::fsutil::{self, MODE_PUBLIC, Overwrite};
use crate::keysource::load_public_key;

/// Man-page text of this subcommand (`--help`).
pub const LONG_ABOUT: &str = "\
Draft root version N+1 from the signed root version N: same root keys,
threshold and delegations unless changed with the flags below, a new expiry
(365 days from now unless given), and no signatures.

Devices accept version N+1 only if it carries signatures from a threshold of
the OLD root keys (version N) AND a threshold of the NEW root keys (version
N+1), so sign the draft with both sets using `firmup-signer root sign`
(pass --previous root.vN.json to see whether both thresholds are met).
Revoke a compromised root key by removing it here; revoke a release key by
re-delegating the product line with `firmup-signer delegate`.

Example:
    firmup-signer root rotate --from root.v1.json --out root.v2.json \\
        --remove-key keys/root3.pub --add-key keys/root4.pub --threshold 2";

/// Flags of `root rotate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The current root document (version N).
    #[arg(long, value_name = "FILE")]
    pub from: PathBuf,
    /// Where to write the unsigned draft of version N+1.
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Add a root key (.pub PEM, or .key). Repeatable.
    #[arg(long = "add-key", value_name = "FILE")]
    pub add_keys: Vec<PathBuf>,
    /// Remove a root key, given as a key file or a hex key id. Repeatable.
    #[arg(long = "remove-key", value_name = "FILE|KEYID")]
    pub remove_keys: Vec<String>,
    /// New root threshold (default: keep the current one).
    #[arg(long, value_name = "N")]
    pub threshold: Option<u32>,
    /// When the new root expires.
    #[command(flatten)]
    pub expiry: ExpiryArgs,
    /// Replace an existing output file.
    #[arg(long)]
    pub force: bool,
}

/// Resolves a `--remove-key` value: an existing key file, else a key id.
fn key_id_of(arg: &str) -> Result<KeyId> {
    let path = Path::new(arg);
    if path.exists() {
        return Ok(load_public_key(path)?.id().clone());
    }
    if arg.len() == 64 && arg.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(KeyId::from_untrusted(arg.to_ascii_lowercase()));
    }
    bail!("--remove-key {arg:?} is neither an existing key file nor a 64-digit hex key id")
}

/// Runs `root rotate`.
pub fn run(args: Args) -> Result<()> {
    let overwrite = Overwrite::from_force(args.force);
    fsutil::check_writable(&args.out, overwrite)?;
    let current = common::read_root(&args.from)?;
    if let Err(e) = TrustedRoot::from_self_signed(&current.bytes) {
        eprintln!(
            "warning: {} is not signed by a threshold of its own root keys ({}); \
             devices cannot have trusted it",
            args.from.display(),
            one_line(&e.to_string())
        );
    }

    let old = &current.doc;
    let mut doc = old.clone();
    doc.version = old
        .version
        .checked_add(1)
        .context("root version cannot grow any further")?;
    doc.expires = args.expiry.resolve(common::now_utc())?;

    for arg in &args.remove_keys {
        let id = key_id_of(arg)?;
        let before = doc.root.keyids.len();
        doc.root.keyids.retain(|k| k != &id);
        if doc.root.keyids.len() == before {
            bail!(
                "cannot remove key {id}: it is not a root key of version {} ({})",
                old.version,
                args.from.display()
            );
        }
    }
    for path in &args.add_keys {
        let key = load_public_key(path)?;
        if doc.root.keyids.contains(key.id()) {
            bail!(
                "cannot add root key ({}): key {} is already a root key",
                path.display(),
                key.id()
            );
        }
        let id = doc.add_key(&key);
        doc.root.keyids.push(id);
    }
    if let Some(t) = args.threshold {
        doc.root.threshold = t;
    }
    doc.prune_keys();
    let payload = doc
        .to_payload()
        .context("cannot build the new root document")?;
    let env = Envelope::new(ROOT_PAYLOAD_TYPE, &payload);
    fsutil::write_atomic(&args.out, &env.to_json_bytes(), MODE_PUBLIC, overwrite)?;
    common::warn_if_expired("the new root document", doc.expires);

    let (v_old, v_new) = (old.version, doc.version);
    println!(
        "wrote {} (root version {v_new}, unsigned draft; delegations copied: {})",
        args.out.display(),
        if doc.delegations.is_empty() {
            "none".to_string()
        } else {
            doc.delegations
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        }
    );
    println!(
        "REMINDER: devices accept version {v_new} only if it is signed by {} of the {} OLD root keys \
         (version {v_old}) AND by {} of the {} NEW root keys (version {v_new}):",
        old.root.threshold,
        old.root.keyids.len(),
        doc.root.threshold,
        doc.root.keyids.len()
    );
    println!("  old root keys (version {v_old}):");
    for id in &old.root.keyids {
        println!("    {id}");
    }
    println!("  new root keys (version {v_new}):");
    for id in &doc.root.keyids {
        println!("    {id}");
    }
    println!(
        "then: firmup-signer root sign --key OLD.key ... --key NEW.key ... --previous {} {}",
        args.from.display(),
        args.out.display()
    );
    Ok(())
}
