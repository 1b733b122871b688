//! Public keys and key ids.
//!
//! A key id is the hex SHA-256 of the 32 raw public-key bytes. Ids are only
//! a lookup hint: trust decisions are made on the key bytes themselves, and
//! a document whose key id does not match its key's bytes is rejected, so
//! one key can never be counted twice under two names.
//!
//! Weak (small-order) keys are refused at parse time, so no code path can
//! hold a weak key as a trusted [`PublicKey`].

use std::fmt;

use ed25519_dalek::{Signature, VerifyingKey};
use serde::{Deserialize, Serialize};

use crate::digest::Sha256Digest;
use crate::error::{Error, Result};

/// Identifier of a public key: hex SHA-256 of its 32 bytes.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    /// The key id of raw public-key bytes.
    pub fn of_bytes(bytes: &[u8; 32]) -> Self {
        KeyId(Sha256Digest::of(bytes).to_hex())
    }

    /// The id as written in documents.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Wraps an id read from an untrusted document (for lookups only).
    pub fn from_untrusted(s: impl Into<String>) -> Self {
        KeyId(s.into())
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.0)
    }
}

/// An ed25519 public key that is known not to be weak.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    id: KeyId,
}

impl PublicKey {
    /// Parses 32 raw bytes. Rejects points that do not decode and weak
    /// (small-order) points.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self> {
        let id = KeyId::of_bytes(bytes);
        let key = VerifyingKey::from_bytes(bytes).map_err(|e| Error::InvalidKey {
            keyid: id.to_string(),
            detail: e.to_string(),
        })?;
        if key.is_weak() {
            return Err(Error::WeakKey {
                keyid: id.to_string(),
            });
        }
        Ok(PublicKey { key, id })
    }

    /// Parses the hex form used in root documents.
    pub fn from_hex(keyid_hint: &str, s: &str) -> Result<Self> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|e| Error::InvalidKey {
            keyid: keyid_hint.to_string(),
            detail: format!("public key is not 64 hex digits: {e}"),
        })?;
        Self::from_bytes(&bytes)
    }

    /// Wraps a verifying key (for example one derived from a signing key).
    pub fn from_verifying_key(key: &VerifyingKey) -> Result<Self> {
        Self::from_bytes(key.as_bytes())
    }

    /// The key's id.
    pub fn id(&self) -> &KeyId {
        &self.id
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.key.as_bytes()
    }

    /// Lowercase hex of the raw bytes, as written in root documents.
    pub fn to_hex(&self) -> String {
        hex::encode(self.key.as_bytes())
    }

    /// Strict verification (RFC 8032 with the extra checks of
    /// `verify_strict`: no small-order R, canonical S). Batch verification
    /// is never used for acceptance decisions.
    pub fn verify_strict(&self, message: &[u8], signature: &Signature) -> bool {
        self.key.verify_strict(message, signature).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_key_is_refused() {
        // The identity point (small order) encoded in 32 bytes.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        let err = PublicKey::from_bytes(&identity).unwrap_err();
        assert_eq!(err.code(), "weak_key");
    }

    #[test]
    fn key_id_is_sha256_of_bytes() {
        let sk = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let pk = PublicKey::from_verifying_key(&sk.verifying_key()).unwrap();
        assert_eq!(
            pk.id().as_str(),
            Sha256Digest::of(sk.verifying_key().as_bytes()).to_hex()
        );
    }
}
