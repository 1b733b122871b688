//! Trust roots: the versioned root document, its rotation and delegations.
//!
//! A root document lists the root keys with their threshold and, for each
//! product line, the release keys allowed to sign that line's manifests and
//! their threshold. A device ships with root version 1 pinned and accepts
//! version N+1 only if it carries a threshold of signatures from the keys of
//! version N *and* from its own keys. Release keys are revoked by
//! publishing a root that no longer delegates to them.
//!
//! This module never trusts a root document's own claims about itself
//! until the signatures of the already-trusted root have been checked.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::envelope::{Envelope, KeySet};
use crate::error::{Error, Result};
use crate::keys::{KeyId, PublicKey};
use crate::manifest::check_name;

/// Payload type of a root envelope.
pub const ROOT_PAYLOAD_TYPE: &str = "application/vnd.firmup.root.v1+json";
/// The root format version this build implements.
pub const ROOT_SPEC_VERSION: u32 = 1;
/// Largest root envelope accepted, in bytes (checked before parsing).
pub const MAX_ROOT_BYTES: u64 = 256 * 1024;
/// Most root rotations one update may walk (bounds the work an attacker
/// can make a device do with an endless chain).
pub const MAX_ROOT_ROTATIONS: usize = 32;

/// A public key entry in a root document.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyEntry {
    /// Always "ed25519" in this version.
    pub keytype: String,
    /// Hex of the 32 raw public-key bytes.
    pub public: String,
}

/// The keys of one role and how many of them must sign.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleKeys {
    /// Key ids (each must be listed in the document's `keys`).
    pub keyids: Vec<KeyId>,
    /// How many distinct keys must sign.
    pub threshold: u32,
}

/// The root document payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootDocument {
    /// Format version; see [`ROOT_SPEC_VERSION`].
    pub spec_version: u32,
    /// Root version, starting at 1 and growing by exactly one per rotation.
    pub version: u64,
    /// After this instant the root is refused for online updates.
    #[serde(with = "time::serde::rfc3339")]
    pub expires: OffsetDateTime,
    /// Every key the document refers to, root and release keys alike.
    pub keys: BTreeMap<KeyId, KeyEntry>,
    /// The root role: who may sign the next root version.
    pub root: RoleKeys,
    /// Release keys per product line.
    #[serde(default)]
    pub delegations: BTreeMap<String, RoleKeys>,
}

/// A role resolved to real public keys.
#[derive(Debug, Clone)]
pub struct ResolvedRole {
    /// The keys that may sign.
    pub keys: KeySet,
    /// How many distinct keys must sign.
    pub threshold: u32,
}

impl RootDocument {
    /// Parses payload bytes (after or, for the document's own keys, during
    /// signature verification) and checks its consistency.
    pub fn from_payload(bytes: &[u8]) -> Result<Self> {
        let doc: RootDocument = crate::strict::from_slice(bytes, "root document")?;
        doc.validate()?;
        Ok(doc)
    }

    /// Serialises to the payload bytes that will be signed.
    pub fn to_payload(&self) -> Result<Vec<u8>> {
        self.validate()?;
        let mut out =
            serde_json::to_vec_pretty(self).map_err(|e| Error::malformed("root document", e))?;
        out.push(b'\n');
        Ok(out)
    }

    /// Checks the document's consistency: known spec version, keys that
    /// decode, are not weak and match their ids, roles that name known keys
    /// once each and have a reachable, non-zero threshold.
    pub fn validate(&self) -> Result<()> {
        if self.spec_version != ROOT_SPEC_VERSION {
            return Err(Error::UnsupportedSpecVersion {
                what: "root document",
                found: self.spec_version,
                supported: ROOT_SPEC_VERSION,
            });
        }
        if self.version == 0 {
            return Err(Error::invalid("version", "root versions start at 1"));
        }
        self.resolve_role("root", &self.root)?;
        for (line, role) in &self.delegations {
            check_name("delegations", line)?;
            self.resolve_role("delegations", role)?;
        }
        Ok(())
    }

    /// Resolves the key ids of `role` to checked public keys.
    fn resolve_role(&self, field: &'static str, role: &RoleKeys) -> Result<ResolvedRole> {
        let mut keys = KeySet::new();
        let mut seen = BTreeSet::new();
        for id in &role.keyids {
            if !seen.insert(id) {
                return Err(Error::invalid(field, format!("key {id} is listed twice")));
            }
            let entry = self.keys.get(id).ok_or_else(|| {
                Error::invalid(field, format!("key {id} is not listed under keys"))
            })?;
            if entry.keytype != "ed25519" {
                return Err(Error::InvalidKey {
                    keyid: id.to_string(),
                    detail: format!("unsupported keytype {:?}", entry.keytype),
                });
            }
            let key = PublicKey::from_hex(id.as_str(), &entry.public)?;
            if key.id() != id {
                return Err(Error::InvalidKey {
                    keyid: id.to_string(),
                    detail: format!("key id does not match the key (its id is {})", key.id()),
                });
            }
            keys.insert(id.clone(), key);
        }
        if role.threshold == 0 || role.threshold as usize > keys.len() {
            return Err(Error::invalid(
                field,
                format!(
                    "threshold {} must be between 1 and the number of keys ({})",
                    role.threshold,
                    keys.len()
                ),
            ));
        }
        Ok(ResolvedRole {
            keys,
            threshold: role.threshold,
        })
    }

    /// Adds `key` to the document's key list and returns its id.
    pub fn add_key(&mut self, key: &PublicKey) -> KeyId {
        self.keys.insert(
            key.id().clone(),
            KeyEntry {
                keytype: "ed25519".into(),
                public: key.to_hex(),
            },
        );
        key.id().clone()
    }

    /// Drops keys that no role refers to any more.
    pub fn prune_keys(&mut self) {
        let used: BTreeSet<KeyId> = self
            .root
            .keyids
            .iter()
            .chain(self.delegations.values().flat_map(|r| r.keyids.iter()))
            .cloned()
            .collect();
        self.keys.retain(|id, _| used.contains(id));
    }
}

/// A root document whose signatures have been checked: either pinned at
/// manufacture (and self-signed by its threshold) or reached from a pinned
/// root by valid rotations.
#[derive(Debug, Clone)]
pub struct TrustedRoot {
    doc: RootDocument,
    root_role: ResolvedRole,
    delegations: BTreeMap<String, ResolvedRole>,
    envelope_bytes: Vec<u8>,
}

impl TrustedRoot {
    /// Trusts the envelope a device ships with: root version 1, signed by
    /// a threshold of its own root keys. Any other version is refused
    /// ([`Error::PinnedRootNotV1`]): a later root is trusted only as a
    /// rotation walked from version 1, because its own keys alone prove
    /// nothing about who approved it. Expiry is not checked here (a device
    /// may sit on a shelf past it and must still be able to rotate).
    pub fn from_pinned(envelope_bytes: &[u8]) -> Result<Self> {
        let trusted = Self::from_self_signed(envelope_bytes)?;
        if trusted.doc.version != 1 {
            return Err(Error::PinnedRootNotV1 {
                found: trusted.doc.version,
            });
        }
        Ok(trusted)
    }

    /// Reloads a root this party already trusted and persisted (a device's
    /// or a server's stored state, which may be any version after
    /// rotations): the document must parse, validate and be signed by a
    /// threshold of its own root keys. Never use this for a root received
    /// from elsewhere: only [`TrustedRoot::from_pinned`] and
    /// [`TrustedRoot::rotate`] decide what becomes trusted.
    pub fn from_stored(envelope_bytes: &[u8]) -> Result<Self> {
        Self::from_self_signed(envelope_bytes)
    }

    /// Checks only that a root document of any version is signed by a
    /// threshold of its own root keys (for tools that show a draft's
    /// status). Says nothing about whether the previous root approved it.
    pub fn from_self_signed(envelope_bytes: &[u8]) -> Result<Self> {
        let (env, payload) = open(envelope_bytes)?;
        let doc = RootDocument::from_payload(&payload)?;
        let trusted = Self::build(doc, envelope_bytes)?;
        let role = format!("root version {} (its own keys)", trusted.doc.version);
        env.verify_threshold(
            &payload,
            &trusted.root_role.keys,
            trusted.root_role.threshold,
            &role,
        )?;
        Ok(trusted)
    }

    /// Accepts root version N+1 if a threshold of this root's keys and a
    /// threshold of its own keys signed it. Signatures by this root's keys
    /// are checked before the new payload is parsed.
    pub fn rotate(&self, next_envelope: &[u8]) -> Result<TrustedRoot> {
        let (env, payload) = open(next_envelope)?;
        let next_version = self.doc.version + 1;
        env.verify_threshold(
            &payload,
            &self.root_role.keys,
            self.root_role.threshold,
            &format!(
                "root version {next_version} (keys of root version {})",
                self.doc.version
            ),
        )?;
        let doc = RootDocument::from_payload(&payload)?;
        if doc.version != next_version {
            return Err(Error::RootVersionSkip {
                current: self.doc.version,
                expected: next_version,
                found: doc.version,
            });
        }
        let next = Self::build(doc, next_envelope)?;
        env.verify_threshold(
            &payload,
            &next.root_role.keys,
            next.root_role.threshold,
            &format!("root version {next_version} (its own keys)"),
        )?;
        Ok(next)
    }

    /// Walks a chain of root envelopes, each exactly one version after the
    /// previous, starting right after this root.
    pub fn walk<I, B>(&self, chain: I) -> Result<TrustedRoot>
    where
        I: IntoIterator<Item = B>,
        B: AsRef<[u8]>,
    {
        let mut current = self.clone();
        for (i, next) in chain.into_iter().enumerate() {
            if i >= MAX_ROOT_ROTATIONS {
                return Err(Error::RootChainTooLong {
                    limit: MAX_ROOT_ROTATIONS,
                });
            }
            current = current.rotate(next.as_ref())?;
        }
        Ok(current)
    }

    /// Fails if the root has expired at `now`.
    pub fn check_expiry(&self, now: OffsetDateTime) -> Result<()> {
        if now >= self.doc.expires {
            return Err(Error::Expired {
                what: format!("root version {}", self.doc.version),
                expired_at: crate::format_time(self.doc.expires),
                now: crate::format_time(now),
            });
        }
        Ok(())
    }

    /// The release keys delegated to `product_line`.
    pub fn release_role(&self, product_line: &str) -> Result<&ResolvedRole> {
        self.delegations
            .get(product_line)
            .ok_or_else(|| Error::NoDelegation {
                product_line: product_line.to_string(),
            })
    }

    /// The root document.
    pub fn document(&self) -> &RootDocument {
        &self.doc
    }

    /// The root version.
    pub fn version(&self) -> u64 {
        self.doc.version
    }

    /// The envelope exactly as received, for persisting as trusted state.
    pub fn envelope_bytes(&self) -> &[u8] {
        &self.envelope_bytes
    }

    fn build(doc: RootDocument, envelope_bytes: &[u8]) -> Result<Self> {
        let root_role = doc.resolve_role("root", &doc.root)?;
        let delegations = doc
            .delegations
            .iter()
            .map(|(line, role)| Ok((line.clone(), doc.resolve_role("delegations", role)?)))
            .collect::<Result<_>>()?;
        Ok(TrustedRoot {
            doc,
            root_role,
            delegations,
            envelope_bytes: envelope_bytes.to_vec(),
        })
    }
}

/// Opens a root envelope: size cap, envelope parse, payload type, base64.
fn open(bytes: &[u8]) -> Result<(Envelope, Vec<u8>)> {
    let env = Envelope::from_slice(bytes, MAX_ROOT_BYTES, "root envelope", ROOT_PAYLOAD_TYPE)?;
    let payload = env.payload_bytes()?;
    Ok((env, payload))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn one_key_doc(root_threshold: u32, release_threshold: u32) -> RootDocument {
        let sk = SigningKey::from_bytes(&[9u8; 32]);
        let pk = PublicKey::from_verifying_key(&sk.verifying_key()).unwrap();
        let mut doc = RootDocument {
            spec_version: ROOT_SPEC_VERSION,
            version: 1,
            expires: time::macros::datetime!(2030-01-01 0:00 UTC),
            keys: BTreeMap::new(),
            root: RoleKeys {
                keyids: vec![],
                threshold: root_threshold,
            },
            delegations: BTreeMap::new(),
        };
        let id = doc.add_key(&pk);
        doc.root.keyids = vec![id.clone()];
        doc.delegations.insert(
            "encoders".into(),
            RoleKeys {
                keyids: vec![id],
                threshold: release_threshold,
            },
        );
        doc
    }

    #[test]
    fn threshold_above_key_count_is_refused() {
        assert!(one_key_doc(1, 1).validate().is_ok());
        for doc in [one_key_doc(2, 1), one_key_doc(1, 2)] {
            let err = doc.validate().unwrap_err();
            assert_eq!(err.code(), "invalid_field", "{err}");
            assert!(err.to_string().contains("threshold 2"), "{err}");
        }
    }
}
