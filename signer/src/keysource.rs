//! Where signing keys come from, and how public keys are read.
//!
//! A [`KeySource`] hands out a signing key for one signing operation.
//! Today the only source is a PKCS#8 PEM file ([`FileKeySource`]); an HSM
//! or KMS source can implement the same trait later without touching the
//! commands (see [`key_source`]).
//!
//! A private key file must be readable by its owner only: on unix a file
//! with any group or other permission bit is refused with the `chmod 600`
//! fix, checked on the opened file itself so the check and the read cannot
//! be split by a rename. Public keys are read from SPKI PEM files (`.pub`);
//! a private key file is accepted where a public key is wanted and its
//! public half is derived. Weak keys are refused by
//! [`PublicKey::from_verifying_key`].
//!
//! This module must never print, log or put into an error message any
//! private key material, and must never load a key from a file that others
//! can read.

use std::fmt;
use std::fs::File;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use ed25519_dalek::SigningKey;
use ed25519_dalek::pkcs8::{DecodePrivateKey as _, DecodePublicKey as _};
use firmup_client::PublicKey;
use zeroize::Zeroizing;

/// Largest key file read. PEM ed25519 keys are about 120 bytes; the limit
/// only stops a wrong path (an image, a device) from being read whole.
const MAX_KEY_FILE_BYTES: u64 = 16 * 1024;

const PRIVATE_LABEL: &str = "-----BEGIN PRIVATE KEY-----";
const ENCRYPTED_LABEL: &str = "-----BEGIN ENCRYPTED PRIVATE KEY-----";
const PUBLIC_LABEL: &str = "-----BEGIN PUBLIC KEY-----";

/// A place a signing key can be obtained from.
pub trait KeySource: fmt::Display {
    /// Loads the signing key. The key zeroizes itself when dropped; callers
    /// keep it only for the signing operation at hand.
    fn signing_key(&self) -> Result<SigningKey>;

    /// The public half, checked not to be weak.
    fn public_key(&self) -> Result<PublicKey> {
        let key = self.signing_key()?;
        PublicKey::from_verifying_key(&key.verifying_key())
            .with_context(|| format!("unusable signing key ({self})"))
    }
}

/// Chooses the key source for a `--key` argument. Only files exist today;
/// a `pkcs11:` or `kms:` scheme would be dispatched here.
pub fn key_source(arg: &Path) -> Box<dyn KeySource> {
    Box::new(FileKeySource::new(arg))
}

/// A PKCS#8 PEM private key file (as written by `firmup-signer keygen`).
#[derive(Debug, Clone)]
pub struct FileKeySource {
    path: PathBuf,
}

impl FileKeySource {
    /// A key source reading `path`.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileKeySource { path: path.into() }
    }
}

impl fmt::Display for FileKeySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path.display())
    }
}

impl KeySource for FileKeySource {
    fn signing_key(&self) -> Result<SigningKey> {
        let ctx = || format!("cannot load private key ({})", self.path.display());
        let file = File::open(&self.path).with_context(ctx)?;
        // Stat the opened file (not the path) so the check applies to the
        // very bytes read below.
        let mode = file_mode(&file).with_context(ctx)?;
        let pem = read_pem(file).with_context(ctx)?;
        // A public key given by mistake deserves that diagnosis, not a
        // misleading "chmod 600".
        if pem.contains(PUBLIC_LABEL) && !pem.contains(PRIVATE_LABEL) {
            return Err(anyhow!(
                "this is a public key; signing needs the private key (.key) file"
            ))
            .with_context(ctx);
        }
        check_private_permissions(mode, &self.path)?;
        parse_private_pem(&pem).with_context(ctx)
    }
}

/// Permission bits of an opened file (`None` where there are none).
#[cfg(unix)]
fn file_mode(file: &File) -> std::io::Result<Option<u32>> {
    use std::os::unix::fs::PermissionsExt as _;
    Ok(Some(file.metadata()?.permissions().mode() & 0o7777))
}

#[cfg(not(unix))]
fn file_mode(_file: &File) -> std::io::Result<Option<u32>> {
    Ok(None)
}

/// Refuses a key file that group or others may access: such a key must be
/// presumed copied, and signing with it would hide that.
fn check_private_permissions(mode: Option<u32>, path: &Path) -> Result<()> {
    if let Some(mode) = mode
        && mode & 0o077 != 0
    {
        bail!(
            "private key file is accessible by group or others ({}): mode {:04o}; run `chmod 600 {}`",
            path.display(),
            mode,
            path.display()
        );
    }
    Ok(())
}

/// Reads a PEM file into memory that is wiped when dropped.
fn read_pem(file: File) -> Result<Zeroizing<String>> {
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .context("read failed")?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        bail!("file is larger than {MAX_KEY_FILE_BYTES} bytes; not a PEM key");
    }
    let text = std::str::from_utf8(&bytes).map_err(|_| anyhow!("not a PEM file (not text)"))?;
    Ok(Zeroizing::new(text.to_owned()))
}

fn parse_private_pem(pem: &str) -> Result<SigningKey> {
    if pem.contains(ENCRYPTED_LABEL) {
        bail!("encrypted PKCS#8 keys are not supported; store the key unencrypted with mode 0600");
    }
    if !pem.contains(PRIVATE_LABEL) {
        if pem.contains(PUBLIC_LABEL) {
            bail!("this is a public key; signing needs the private key (.key) file");
        }
        bail!("not a PKCS#8 PEM private key (expected {PRIVATE_LABEL})");
    }
    // The parser's error says what was wrong with the structure, never
    // the key's content.
    SigningKey::from_pkcs8_pem(pem)
        .map_err(|e| anyhow!("not a valid ed25519 PKCS#8 private key: {e}"))
}

/// Reads a public key from a `.pub` SPKI PEM file, or derives it from a
/// private key file (subject to the same permission check as signing).
pub fn load_public_key(path: &Path) -> Result<PublicKey> {
    let ctx = || format!("cannot load public key ({})", path.display());
    let file = File::open(path).with_context(ctx)?;
    let pem = read_pem(file).with_context(ctx)?;
    if pem.contains(PRIVATE_LABEL) || pem.contains(ENCRYPTED_LABEL) {
        return FileKeySource::new(path).public_key();
    }
    if !pem.contains(PUBLIC_LABEL) {
        return Err(anyhow!(
            "not a PEM public key (expected {PUBLIC_LABEL}) or private key"
        ))
        .with_context(ctx);
    }
    let key = ed25519_dalek::VerifyingKey::from_public_key_pem(&pem)
        .map_err(|e| anyhow!("not a valid ed25519 public key: {e}"))
        .with_context(ctx)?;
    PublicKey::from_verifying_key(&key).with_context(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
    use ed25519_dalek::pkcs8::{EncodePrivateKey as _, EncodePublicKey as _};

    fn write_key(dir: &Path, mode: u32) -> (PathBuf, SigningKey) {
        let key = SigningKey::from_bytes(&[9u8; 32]);
        let path = dir.join("k.key");
        let pem = key.to_pkcs8_pem(LineEnding::LF).unwrap();
        std::fs::write(&path, pem.as_bytes()).unwrap();
        set_mode(&path, mode);
        (path, key)
    }

    fn set_mode(path: &Path, mode: u32) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
        let _ = (path, mode);
    }

    #[test]
    fn loads_a_private_key_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let (path, key) = write_key(dir.path(), 0o600);
        let loaded = FileKeySource::new(&path).signing_key().unwrap();
        assert_eq!(loaded.to_bytes(), key.to_bytes());
    }

    #[cfg(unix)]
    #[test]
    fn refuses_a_key_readable_by_others_and_names_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0o644, 0o640, 0o604, 0o601] {
            let (path, _) = write_key(dir.path(), mode);
            let err = FileKeySource::new(&path).signing_key().unwrap_err();
            let msg = format!("{err:#}");
            assert!(
                msg.contains(&format!("chmod 600 {}", path.display())),
                "{msg}"
            );
            assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
            std::fs::remove_file(&path).unwrap();
        }
    }

    #[test]
    fn public_key_from_pub_file_or_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let (key_path, key) = write_key(dir.path(), 0o600);
        let pub_path = dir.path().join("k.pub");
        let pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        std::fs::write(&pub_path, pem).unwrap();
        let a = load_public_key(&pub_path).unwrap();
        let b = load_public_key(&key_path).unwrap();
        assert_eq!(a, b);
        assert_eq!(a.as_bytes(), key.verifying_key().as_bytes());
    }

    #[test]
    fn errors_name_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.key");
        let err = FileKeySource::new(&missing).signing_key().unwrap_err();
        assert!(format!("{err:#}").contains("missing.key"));
        let garbage = dir.path().join("garbage.pub");
        std::fs::write(&garbage, "hello").unwrap();
        set_mode(&garbage, 0o600);
        let err = load_public_key(&garbage).unwrap_err();
        assert!(format!("{err:#}").contains("garbage.pub"));
        let err = FileKeySource::new(&garbage).signing_key().unwrap_err();
        assert!(format!("{err:#}").contains("garbage.pub"));
    }

    #[test]
    fn a_public_key_given_for_signing_is_named_as_such() {
        let dir = tempfile::tempdir().unwrap();
        let key = SigningKey::from_bytes(&[3u8; 32]);
        let path = dir.path().join("rel1.pub");
        let pem = key
            .verifying_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap();
        std::fs::write(&path, pem).unwrap();
        set_mode(&path, 0o644);
        let msg = format!("{:#}", FileKeySource::new(&path).signing_key().unwrap_err());
        assert!(
            msg.contains("public key") && msg.contains("rel1.pub"),
            "{msg}"
        );
        assert!(!msg.contains("chmod"), "{msg}");
    }

    #[test]
    fn weak_public_keys_are_refused() {
        // The identity point, a small-order key, in SPKI PEM form.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let weak = ed25519_dalek::VerifyingKey::from_bytes(&identity).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("weak.pub");
        std::fs::write(&path, weak.to_public_key_pem(LineEnding::LF).unwrap()).unwrap();
        let err = load_public_key(&path).unwrap_err();
        let engine = err.downcast_ref::<firmup_client::Error>().unwrap();
        assert_eq!(engine.code(), "weak_key");
    }
}
