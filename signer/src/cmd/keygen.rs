//! `firmup-signer keygen`: create a new ed25519 key pair.
//!
//! Writes `PREFIX.key` (PKCS#8 PEM, mode 0600 from the moment the file
//! exists) and `PREFIX.pub` (SPKI PEM, mode 0644), and prints the key id.
//!
//! This command must never print the private key, never write it with
//! wider permissions than 0600, and never overwrite an existing key unless
//! `--force` is given: losing a root key can strand every device.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _, KeypairBytes};
use firmup_client::PublicKey;
use rand_core::OsRng;

use crate::fsutil::{self, MODE_PRIVATE, MODE_PUBLIC, Overwrite};

/// Man-page text of this subcommand (`--help`).
pub const LONG_ABOUT: &str = "\
Create a new random ed25519 key pair for a root or release role.

Writes PREFIX.key, the private key (PKCS#8 PEM, mode 0600, created with
that mode so it is never readable by others, not even for an instant), and
PREFIX.pub, the public key (SPKI PEM, mode 0644). Prints the key id: the
hex SHA-256 of the 32 raw public-key bytes, as used in root documents and
signatures. Existing files are never overwritten unless --force is given.

Example:
    firmup-signer keygen --out keys/rel1
    # key id 3f1c...  private keys/rel1.key  public keys/rel1.pub";

/// Flags of `keygen`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Path prefix: writes PREFIX.key and PREFIX.pub (the directory must exist).
    #[arg(long, value_name = "PREFIX")]
    pub out: PathBuf,
    /// Replace existing PREFIX.key / PREFIX.pub files.
    #[arg(long)]
    pub force: bool,
}

/// Paths a prefix expands to.
fn key_paths(prefix: &Path) -> (PathBuf, PathBuf) {
    let with = |ext: &str| {
        let mut s = prefix.as_os_str().to_owned();
        s.push(ext);
        PathBuf::from(s)
    };
    (with(".key"), with(".pub"))
}

/// Runs `keygen`.
pub fn run(args: Args) -> Result<()> {
    let prefix = args.out.as_os_str().to_string_lossy();
    if prefix.ends_with(['/', std::path::MAIN_SEPARATOR]) || args.out.is_dir() {
        bail!(
            "--out is a path prefix such as keys/rel1, not a directory ({})",
            args.out.display()
        );
    }
    let (key_path, pub_path) = key_paths(&args.out);
    let overwrite = Overwrite::from_force(args.force);
    // Check both before writing either, so a refusal leaves nothing new.
    fsutil::check_writable(&key_path, overwrite)?;
    fsutil::check_writable(&pub_path, overwrite)?;

    let key = SigningKey::generate(&mut OsRng);
    let public = PublicKey::from_verifying_key(&key.verifying_key())
        .context("the generated key is unusable")?;
    // PKCS#8 v1 (no embedded public key), which every tool reads: OpenSSL
    // 3.0 refuses the v2 form that `SigningKey::to_pkcs8_pem` writes. The
    // returned PEM text is `Zeroizing` and wiped when dropped, and so is
    // `KeypairBytes`.
    let keypair = KeypairBytes {
        secret_key: key.to_bytes(),
        public_key: None,
    };
    let private_pem = keypair
        .to_pkcs8_pem(LineEnding::LF)
        .map_err(|e| anyhow!("cannot encode the private key: {e}"))?;
    let public_pem = key
        .verifying_key()
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| anyhow!("cannot encode the public key: {e}"))?;

    fsutil::write_atomic(&key_path, private_pem.as_bytes(), MODE_PRIVATE, overwrite)?;
    if let Err(e) = fsutil::write_atomic(&pub_path, public_pem.as_bytes(), MODE_PUBLIC, overwrite) {
        // Do not leave half a key pair: remove the private key just
        // created (unless it replaced an older one, which is gone anyway).
        if overwrite == Overwrite::Refuse {
            let _ = std::fs::remove_file(&key_path);
        }
        return Err(e);
    }

    println!("key id:      {}", public.id());
    println!(
        "private key: {} (mode 0600, keep it offline)",
        key_path.display()
    );
    println!("public key:  {}", pub_path.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::keysource::{FileKeySource, KeySource as _, load_public_key};

    #[test]
    fn writes_a_usable_pair_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("rel1");
        run(Args {
            out: prefix.clone(),
            force: false,
        })
        .unwrap();
        let (key_path, pub_path) = key_paths(&prefix);
        let derived = FileKeySource::new(&key_path).public_key().unwrap();
        assert_eq!(load_public_key(&pub_path).unwrap(), derived);

        let before = std::fs::read(&key_path).unwrap();
        let err = run(Args {
            out: prefix.clone(),
            force: false,
        })
        .unwrap_err();
        assert!(format!("{err:#}").contains("--force"));
        assert_eq!(std::fs::read(&key_path).unwrap(), before);

        run(Args {
            out: prefix,
            force: true,
        })
        .unwrap();
        assert_ne!(std::fs::read(&key_path).unwrap(), before);
    }
}
