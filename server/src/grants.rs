//! Download grants: short-lived, HMAC-signed permissions to fetch one image.
//!
//! The check answer hands a device a URL such as
//! `/v1/images/<sha256>?sub=<serial>&exp=<unix>&sig=<base64url>`. The image
//! server checks the HMAC and the expiry and needs no database lookup per
//! (range) request, so resumed downloads stay cheap and a CDN or presigned
//! S3 URL could take the same role later.
//!
//! The key is shared by replicas (config `grant_key`, or `grant_key_file`)
//! or generated once into the data directory. It must never be logged or
//! returned.
//!
//! **Rotation** without refusing a single grant: a second key,
//! `grant_key_accepted`, is accepted but never signs. Roll every replica
//! to (sign: old, accept: new), then to (sign: new, accept: old), and once
//! `grant_ttl_secs` has passed drop the accepted key: at every moment each
//! replica accepts what any other signs.

use std::io::Write as _;
use std::path::Path;

use anyhow::Context as _;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use firmup_client::Sha256Digest;
use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use sha2::Sha256;

use crate::error::AppError;

type HmacSha256 = Hmac<Sha256>;

/// The grant key, and the other key accepted during a rollover.
#[derive(Clone)]
pub struct GrantKey {
    /// Signs and verifies.
    key: [u8; 32],
    /// Only verifies: the old key during a rollover, or the new one just
    /// before it.
    accepted: Option<[u8; 32]>,
}

impl std::fmt::Debug for GrantKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("GrantKey(<redacted>)")
    }
}

/// The query parameters of a granted download URL.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub struct GrantParams {
    /// Subject: the device serial or technician token id.
    pub sub: String,
    /// Expiry, unix seconds.
    pub exp: i64,
    /// Base64url HMAC.
    pub sig: String,
}

impl GrantKey {
    /// From 64 hex digits. A key with fewer than 12 distinct byte values
    /// (all zeros, a repeated pattern, a typed-in phrase) is refused: 32
    /// random bytes have about 30, and the chance that random bytes have
    /// fewer than 12 is below 10^-20.
    pub fn from_hex(s: &str) -> anyhow::Result<Self> {
        let mut k = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut k).context("grant_key must be 64 hex digits")?;
        let distinct = k.iter().collect::<std::collections::BTreeSet<_>>().len();
        anyhow::ensure!(
            distinct >= 12,
            "grant_key has too little entropy ({distinct} distinct bytes of 32); make one with \
             `openssl rand -hex 32`"
        );
        Ok(GrantKey {
            key: k,
            accepted: None,
        })
    }

    /// Also accepts grants signed with `other` (never signs with it).
    pub fn also_accepting(mut self, other: &GrantKey) -> anyhow::Result<Self> {
        anyhow::ensure!(
            other.key != self.key,
            "grant_key_accepted is the signing key itself; during a rollover it is the other one"
        );
        self.accepted = Some(other.key);
        Ok(self)
    }

    /// The key in effect, from the first of: `configured` (the hex of
    /// `grant_key`), `file` (`grant_key_file`: the key on its first line,
    /// optionally a key to accept on its second; mode 0600), or
    /// `<data_dir>/grant.key`, created (mode 0600) on first start; then
    /// also accepting `accepted` (`grant_key_accepted`) when given.
    pub fn load(
        configured: Option<&str>,
        file: Option<&Path>,
        accepted: Option<&str>,
        data_dir: &Path,
    ) -> anyhow::Result<Self> {
        let mut key = match (configured, file) {
            (Some(_), Some(_)) => {
                anyhow::bail!("set grant_key or grant_key_file, not both")
            }
            (Some(hex), None) => Self::from_hex(hex)?,
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .with_context(|| format!("reading grant_key_file {}", path.display()))?;
                refuse_loose_mode(path)?;
                let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
                let key = Self::from_hex(lines.next().unwrap_or_default())
                    .with_context(|| format!("the first line of {}", path.display()))?;
                match lines.next() {
                    Some(second) => key.also_accepting(
                        &Self::from_hex(second)
                            .with_context(|| format!("the second line of {}", path.display()))?,
                    )?,
                    None => key,
                }
            }
            (None, None) => Self::load_or_create(data_dir)?,
        };
        if let Some(hex) = accepted {
            anyhow::ensure!(
                key.accepted.is_none(),
                "grant_key_accepted and a second line in grant_key_file: give one of them"
            );
            key = key.also_accepting(
                &Self::from_hex(hex).context("grant_key_accepted must be 64 hex digits")?,
            )?;
        }
        Ok(key)
    }

    /// The key in `<data_dir>/grant.key`, created (mode 0600) on first start.
    fn load_or_create(data_dir: &Path) -> anyhow::Result<Self> {
        let path = data_dir.join("grant.key");
        let key = load_or_create_key(&path)?;
        Self::from_hex(&hex::encode(key)).with_context(|| format!("reading {}", path.display()))
    }

    fn mac(&self, sha256: &Sha256Digest, sub: &str, exp: i64) -> HmacSha256 {
        mac_with(&self.key, sha256, sub, exp)
    }

    /// Issues a grant for `sha256` to `sub` until `exp` (unix seconds).
    pub fn issue(&self, sha256: &Sha256Digest, sub: &str, exp: i64) -> GrantParams {
        let sig = URL_SAFE_NO_PAD.encode(self.mac(sha256, sub, exp).finalize().into_bytes());
        GrantParams {
            sub: sub.to_string(),
            exp,
            sig,
        }
    }

    /// The download path with the grant as query string.
    pub fn url(&self, sha256: &Sha256Digest, sub: &str, exp: i64) -> String {
        let g = self.issue(sha256, sub, exp);
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("sub", &g.sub)
            .append_pair("exp", &g.exp.to_string())
            .append_pair("sig", &g.sig)
            .finish();
        format!("/v1/images/{sha256}?{query}")
    }

    /// Checks a grant for `sha256` at `now` (unix seconds).
    pub fn verify(&self, sha256: &Sha256Digest, g: &GrantParams, now: i64) -> Result<(), AppError> {
        let sig = URL_SAFE_NO_PAD.decode(&g.sig).map_err(|_| bad_grant())?;
        // Constant-time comparisons, with the signing key and then the
        // accepted one.
        let valid = self.mac(sha256, &g.sub, g.exp).verify_slice(&sig).is_ok()
            || self.accepted.is_some_and(|k| {
                mac_with(&k, sha256, &g.sub, g.exp)
                    .verify_slice(&sig)
                    .is_ok()
            });
        if !valid {
            return Err(bad_grant());
        }
        if now >= g.exp {
            return Err(AppError::forbidden(
                "grant_expired",
                "this download link has expired; check for updates again to get a fresh one",
            ));
        }
        Ok(())
    }
}

fn mac_with(key: &[u8; 32], sha256: &Sha256Digest, sub: &str, exp: i64) -> HmacSha256 {
    // new_from_slice only fails for key lengths HMAC cannot take; 32
    // bytes is always accepted.
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!());
    mac.update(format!("firmup-grant-v1\n{sha256}\n{sub}\n{exp}").as_bytes());
    mac
}

/// Refuses a key file that others may read or write.
/// A 32-byte key kept in the file `path` as 64 hex digits: read, or
/// created (mode 0600) with random bytes on first start. Used for the
/// grant key and the pseudonym key when neither is configured.
pub fn load_or_create_key(path: &Path) -> anyhow::Result<[u8; 32]> {
    let read = |s: &str| -> anyhow::Result<[u8; 32]> {
        let mut k = [0u8; 32];
        hex::decode_to_slice(s.trim(), &mut k)
            .with_context(|| format!("{} must hold 64 hex digits", path.display()))?;
        Ok(k)
    };
    match std::fs::read_to_string(path) {
        Ok(s) => {
            refuse_loose_mode(path)?;
            read(&s)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let mut k = [0u8; 32];
            rand::rngs::OsRng.fill_bytes(&mut k);
            let dir = path.parent().unwrap_or_else(|| Path::new("."));
            let name = path
                .file_name()
                .map_or_else(|| "key".into(), |n| n.to_string_lossy());
            // Written whole to a private temporary file, then linked into
            // place (atomic, never replacing): a second process starting at
            // the same moment reads the winner's key, never a half-written
            // one.
            let tmp = dir.join(format!("{name}.{}.tmp", uuid::Uuid::new_v4()));
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
            let written = opts
                .open(&tmp)
                .and_then(|mut f| {
                    f.write_all(hex::encode(k).as_bytes())?;
                    f.sync_all()
                })
                .and_then(|()| std::fs::hard_link(&tmp, path));
            let _ = std::fs::remove_file(&tmp);
            match written {
                Ok(()) => Ok(k),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => load_or_create_key(path),
                Err(e) => Err(e).with_context(|| format!("creating {}", path.display())),
            }
        }
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn refuse_loose_mode(path: &Path) -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(path)
            .with_context(|| format!("reading {}", path.display()))?
            .permissions()
            .mode()
            & 0o777;
        anyhow::ensure!(
            mode & 0o077 == 0,
            "{} has mode {mode:o}: others may read the download-grant key; run `chmod 600 {}` \
             (and replace the key if it may have leaked)",
            path.display(),
            path.display()
        );
    }
    Ok(())
}

fn bad_grant() -> AppError {
    AppError::forbidden(
        "invalid_grant",
        "this download link is not valid for this image; use the link from an update check",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(b: u8) -> GrantKey {
        GrantKey {
            key: [b; 32],
            accepted: None,
        }
    }

    #[test]
    fn grants_bind_image_subject_and_expiry() {
        let k = raw(7);
        let d = Sha256Digest::of(b"img");
        let g = k.issue(&d, "SN-1", 1000);
        assert!(k.verify(&d, &g, 999).is_ok());
        assert_eq!(k.verify(&d, &g, 1000).unwrap_err().code(), "grant_expired");
        assert_eq!(
            k.verify(&Sha256Digest::of(b"other"), &g, 1)
                .unwrap_err()
                .code(),
            "invalid_grant"
        );
        let stolen = GrantParams {
            sub: "SN-2".into(),
            ..g.clone()
        };
        assert_eq!(
            k.verify(&d, &stolen, 1).unwrap_err().code(),
            "invalid_grant"
        );
        let extended = GrantParams { exp: 5000, ..g };
        assert_eq!(
            k.verify(&d, &extended, 1).unwrap_err().code(),
            "invalid_grant"
        );
        assert_eq!(
            raw(8)
                .verify(&d, &k.issue(&d, "SN-1", 1000), 1)
                .unwrap_err()
                .code(),
            "invalid_grant"
        );
    }

    #[test]
    fn weak_or_exposed_keys_are_refused() {
        let e = GrantKey::from_hex(&"00".repeat(32))
            .unwrap_err()
            .to_string();
        assert!(e.contains("too little entropy"), "{e}");
        assert!(GrantKey::from_hex(&"0123456789abcdef".repeat(4)).is_err());
        let dir = tempfile::tempdir().unwrap();
        let created = GrantKey::load(None, None, None, dir.path()).unwrap();
        let path = dir.path().join("grant.key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode, 0o600);
            // Reloading the private file gives the same key.
            let again = GrantKey::load(None, None, None, dir.path()).unwrap();
            assert_eq!(again.key, created.key);
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            let e = GrantKey::load(None, None, None, dir.path())
                .unwrap_err()
                .to_string();
            assert!(e.contains("mode 644") && e.contains("chmod 600"), "{e}");
        }
    }

    #[test]
    fn a_rollover_accepts_both_keys_and_signs_with_one() {
        let old = GrantKey::from_hex(&hex::encode(std::array::from_fn::<u8, 32, _>(|i| i as u8)))
            .unwrap();
        let new = GrantKey::from_hex(&hex::encode(std::array::from_fn::<u8, 32, _>(|i| {
            (i as u8).wrapping_mul(7).wrapping_add(3)
        })))
        .unwrap();
        let d = Sha256Digest::of(b"img");
        let by_old = old.issue(&d, "SN-1", 1000);
        let by_new = new.issue(&d, "SN-1", 1000);
        // Step 1: sign with the old key, accept the new one.
        let step1 = old.clone().also_accepting(&new).unwrap();
        // Step 2: sign with the new key, accept the old one.
        let step2 = new.clone().also_accepting(&old).unwrap();
        for replica in [&step1, &step2] {
            assert!(replica.verify(&d, &by_old, 1).is_ok());
            assert!(replica.verify(&d, &by_new, 1).is_ok());
            assert!(
                replica
                    .verify(&d, &step1.issue(&d, "SN-1", 1000), 1)
                    .is_ok()
            );
            assert!(
                replica
                    .verify(&d, &step2.issue(&d, "SN-1", 1000), 1)
                    .is_ok()
            );
        }
        assert_eq!(
            step1.issue(&d, "SN-1", 1000),
            by_old,
            "signs with its own key"
        );
        assert_eq!(step2.issue(&d, "SN-1", 1000), by_new);
        // Step 3: the old key alone is no longer accepted.
        assert_eq!(
            new.verify(&d, &by_old, 1).unwrap_err().code(),
            "invalid_grant"
        );
        assert!(old.clone().also_accepting(&old).is_err());

        // The same from a key file: the key, then the one also accepted.
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("grant-keys");
        std::fs::write(
            &file,
            format!("{}\n{}\n", hex::encode(new.key), hex::encode(old.key)),
        )
        .unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
        }
        let loaded = GrantKey::load(None, Some(&file), None, dir.path()).unwrap();
        assert!(loaded.verify(&d, &by_old, 1).is_ok());
        assert_eq!(loaded.issue(&d, "SN-1", 1000), by_new);
        assert!(!dir.path().join("grant.key").exists(), "no key generated");
        let both = GrantKey::load(Some(&hex::encode(new.key)), Some(&file), None, dir.path());
        assert!(both.unwrap_err().to_string().contains("not both"));
        let twice = GrantKey::load(None, Some(&file), Some(&hex::encode(old.key)), dir.path());
        assert!(twice.is_err());
    }

    #[test]
    fn url_encodes_the_subject() {
        let k = raw(1);
        let d = Sha256Digest::of(b"x");
        let url = k.url(&d, "A+B", 10);
        assert!(url.contains("sub=A%2BB"), "{url}");
    }
}
