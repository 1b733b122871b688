//! The signed envelope (DSSE-style) that wraps every signed document.
//!
//! ```json
//! { "payload_type": "application/vnd.firmup.manifest.v1+json",
//!   "payload": "<base64 of the exact signed bytes>",
//!   "signatures": [ { "keyid": "<hex sha256 of the public key>", "sig": "<base64>" } ] }
//! ```
//!
//! Each signature covers the pre-authentication encoding (PAE) of the
//! protocol tag, the payload type and the payload bytes, so a signature over
//! a manifest can never be replayed as a signature over a root document.
//! The payload is verified as the exact bytes that were signed and is only
//! parsed after its signatures met their threshold: nothing is
//! re-serialised, so canonical-JSON pitfalls cannot arise.
//!
//! This module must never parse the payload itself; it hands out bytes.

use std::collections::{BTreeMap, HashSet};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use ed25519_dalek::{Signature, Signer as _, SigningKey};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::keys::{KeyId, PublicKey};

/// Protocol tag that starts every pre-authentication encoding.
pub const PAE_TAG: &str = "FIRMUPv1";

/// One signature in an envelope.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnvelopeSignature {
    /// Key id of the signer (a lookup hint; the key bytes decide).
    pub keyid: KeyId,
    /// Base64 of the 64-byte ed25519 signature.
    pub sig: String,
}

/// A signed envelope as stored and served, byte for byte.
///
/// The envelope itself is read strictly (an object with exactly
/// `payload_type`, `payload` and `signatures`, no duplicate key anywhere),
/// but a signature *entry* this verifier cannot read (not an object with
/// exactly a string `keyid` and a string `sig`) is kept aside in
/// [`Envelope::unreadable_signatures`] and never counted: a stranger who
/// appends garbage must not be able to veto a properly signed document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Envelope {
    /// Media type of the payload, which fixes how it is parsed.
    pub payload_type: String,
    /// Base64 of the signed payload bytes.
    pub payload: String,
    /// Signatures over [`pae`] of the payload.
    pub signatures: Vec<EnvelopeSignature>,
    /// Signature entries of a shape this verifier cannot read, kept as
    /// JSON values (written back after `signatures`) and never counted.
    pub unreadable_signatures: Vec<serde_json::Value>,
}

/// The envelope as written on the wire; entries are sorted into readable
/// and unreadable ones afterwards.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct WireEnvelope<E> {
    payload_type: String,
    payload: String,
    signatures: Vec<E>,
}

impl Serialize for Envelope {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        let mut signatures = Vec::with_capacity(self.signatures.len());
        for entry in &self.signatures {
            signatures.push(serde_json::to_value(entry).map_err(serde::ser::Error::custom)?);
        }
        signatures.extend(self.unreadable_signatures.iter().cloned());
        WireEnvelope {
            payload_type: self.payload_type.clone(),
            payload: self.payload.clone(),
            signatures,
        }
        .serialize(s)
    }
}

impl<'de> Deserialize<'de> for Envelope {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        let wire = WireEnvelope::<serde_json::Value>::deserialize(d)?;
        let mut signatures = Vec::new();
        let mut unreadable_signatures = Vec::new();
        for entry in wire.signatures {
            // Strict reading of the entry: an array or extra field makes it
            // unreadable, never a struct read by position.
            match crate::strict::from_value::<EnvelopeSignature>(&entry) {
                Ok(sig) => signatures.push(sig),
                Err(_) => unreadable_signatures.push(entry),
            }
        }
        Ok(Envelope {
            payload_type: wire.payload_type,
            payload: wire.payload,
            signatures,
            unreadable_signatures,
        })
    }
}

/// The set of keys a role trusts, by id.
pub type KeySet = BTreeMap<KeyId, PublicKey>;

/// Pre-authentication encoding: `TAG SP len(type) SP type SP len(body) SP body`,
/// lengths in ASCII decimal, as in DSSE.
pub fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(payload.len() + payload_type.len() + 48);
    out.extend_from_slice(PAE_TAG.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload_type.as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload.len().to_string().as_bytes());
    out.push(b' ');
    out.extend_from_slice(payload);
    out
}

impl Envelope {
    /// A new, unsigned envelope around `payload`.
    pub fn new(payload_type: &str, payload: &[u8]) -> Self {
        Envelope {
            payload_type: payload_type.to_string(),
            payload: B64.encode(payload),
            signatures: Vec::new(),
            unreadable_signatures: Vec::new(),
        }
    }

    /// Parses an envelope from untrusted bytes, enforcing `max_bytes`
    /// *before* any parsing, reading it strictly ([`crate::strict`]) and
    /// checking the payload type.
    pub fn from_slice(
        bytes: &[u8],
        max_bytes: u64,
        what: &'static str,
        expected_type: &'static str,
    ) -> Result<Self> {
        if bytes.len() as u64 > max_bytes {
            return Err(Error::TooLarge {
                what,
                limit: max_bytes,
                actual: bytes.len() as u64,
            });
        }
        let env: Envelope = crate::strict::from_slice(bytes, what)?;
        if env.payload_type != expected_type {
            return Err(Error::UnknownPayloadType {
                expected: expected_type,
                found: env.payload_type,
            });
        }
        Ok(env)
    }

    /// The payload bytes exactly as signed.
    pub fn payload_bytes(&self) -> Result<Vec<u8>> {
        B64.decode(&self.payload)
            .map_err(|e| Error::malformed("envelope payload (base64)", e))
    }

    /// Adds (or replaces) the signature of `key`. Signing twice with the
    /// same key leaves one signature, so co-signing is idempotent.
    pub fn sign(&mut self, key: &SigningKey) -> Result<KeyId> {
        let payload = self.payload_bytes()?;
        let public = PublicKey::from_verifying_key(&key.verifying_key())?;
        let sig = key.sign(&pae(&self.payload_type, &payload));
        let keyid = public.id().clone();
        self.signatures.retain(|s| s.keyid != keyid);
        self.signatures.push(EnvelopeSignature {
            keyid: keyid.clone(),
            sig: B64.encode(sig.to_bytes()),
        });
        Ok(keyid)
    }

    /// Serialises the envelope as pretty JSON with a trailing newline.
    pub fn to_json_bytes(&self) -> Vec<u8> {
        // Serialising plain strings and vectors cannot fail.
        let mut out = serde_json::to_vec_pretty(self).unwrap_or_default();
        out.push(b'\n');
        out
    }

    /// Counts valid signatures over `payload` from keys in `trusted`, one per
    /// distinct public key, and fails unless at least `threshold` verify.
    ///
    /// Signatures with an unknown key id, an undecodable value or a failing
    /// strict verification are skipped, not fatal: an attacker who appends
    /// garbage must not be able to veto a properly signed document. Returns
    /// the ids of the keys whose signatures counted.
    pub fn verify_threshold(
        &self,
        payload: &[u8],
        trusted: &KeySet,
        threshold: u32,
        role: &str,
    ) -> Result<Vec<KeyId>> {
        if self.signatures.is_empty() && self.unreadable_signatures.is_empty() {
            return Err(Error::NoSignatures {
                role: role.to_string(),
            });
        }
        let message = pae(&self.payload_type, payload);
        // Dedupe on key bytes, not on key ids (tough GHSA-5q2r-92f9-4m49).
        let mut seen: HashSet<[u8; 32]> = HashSet::new();
        let mut counted = Vec::new();
        for entry in &self.signatures {
            let Some(key) = trusted.get(&entry.keyid) else {
                continue;
            };
            let Some(sig) = decode_signature(&entry.sig) else {
                continue;
            };
            if !key.verify_strict(&message, &sig) {
                continue;
            }
            if seen.insert(*key.as_bytes()) {
                counted.push(key.id().clone());
            }
        }
        // A threshold of zero would accept anything: fail closed on it too.
        if threshold == 0 || counted.len() < threshold as usize {
            return Err(Error::ThresholdNotMet {
                role: role.to_string(),
                valid: counted.len(),
                threshold,
            });
        }
        Ok(counted)
    }
}

fn decode_signature(s: &str) -> Option<Signature> {
    let bytes = B64.decode(s).ok()?;
    let arr: [u8; 64] = bytes.try_into().ok()?;
    Some(Signature::from_bytes(&arr))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> (SigningKey, PublicKey) {
        let sk = SigningKey::from_bytes(&[seed; 32]);
        let pk = PublicKey::from_verifying_key(&sk.verifying_key()).unwrap();
        (sk, pk)
    }

    /// The worked example of docs/FORMATS.md section 4.2, byte for byte.
    #[test]
    fn formats_doc_worked_example_holds() {
        let secret =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap();
        let sk = SigningKey::from_bytes(&secret.try_into().unwrap());
        let pk = PublicKey::from_verifying_key(&sk.verifying_key()).unwrap();
        assert_eq!(
            pk.id().as_str(),
            "21fe31dfa154a261626bf854046fd2271b7bed4b6abe45aa58877ef47f9721b9"
        );
        let mut env = Envelope::new("t", b"hello");
        assert_eq!(env.payload, "aGVsbG8=");
        env.sign(&sk).unwrap();
        assert_eq!(
            env.signatures[0].sig,
            "LrSTqIJTVBQtwFwWtirKyE80btpueXbFy5JrtRTuwXidkBUbVar8RJa9CU8GzFlyYXJ4SW1B0Eg+FInIkP6GBA=="
        );
    }

    #[test]
    fn pae_matches_dsse_layout() {
        assert_eq!(pae("t", b"hello"), b"FIRMUPv1 1 t 5 hello".to_vec());
    }

    #[test]
    fn signature_over_other_payload_type_does_not_count() {
        let (sk, pk) = key(1);
        let mut env = Envelope::new("type/a", b"body");
        env.sign(&sk).unwrap();
        let mut other = env.clone();
        other.payload_type = "type/b".into();
        let trusted: KeySet = [(pk.id().clone(), pk)].into();
        assert!(env.verify_threshold(b"body", &trusted, 1, "r").is_ok());
        let err = other
            .verify_threshold(b"body", &trusted, 1, "r")
            .unwrap_err();
        assert_eq!(err.code(), "threshold_not_met");
    }

    #[test]
    fn zero_threshold_fails_closed() {
        let (sk, pk) = key(2);
        let mut env = Envelope::new("t", b"x");
        env.sign(&sk).unwrap();
        let trusted: KeySet = [(pk.id().clone(), pk)].into();
        assert!(env.verify_threshold(b"x", &trusted, 0, "r").is_err());
    }

    #[test]
    fn small_order_r_signature_does_not_count() {
        // R = identity (small order), S = H(R || A || M) * a: passes the
        // cofactorless `verify`, must fail `verify_strict`.
        use curve25519_dalek::scalar::Scalar;
        use sha2::{Digest as _, Sha512};
        let (sk, pk) = key(3);
        let env = Envelope::new("t", b"x");
        let msg = pae("t", b"x");
        let mut r = [0u8; 32];
        r[0] = 1; // compressed Edwards identity
        let k = Scalar::from_bytes_mod_order_wide(
            &Sha512::new()
                .chain_update(r)
                .chain_update(pk.as_bytes())
                .chain_update(&msg)
                .finalize()
                .into(),
        );
        let s = k * sk.to_scalar();
        let mut raw = [0u8; 64];
        raw[..32].copy_from_slice(&r);
        raw[32..].copy_from_slice(s.as_bytes());
        let sig = Signature::from_bytes(&raw);
        assert!(
            ed25519_dalek::Verifier::verify(&sk.verifying_key(), &msg, &sig).is_ok(),
            "the forged signature must pass non-strict verification"
        );
        let mut forged = env.clone();
        forged.signatures.push(EnvelopeSignature {
            keyid: pk.id().clone(),
            sig: B64.encode(raw),
        });
        let trusted: KeySet = [(pk.id().clone(), pk)].into();
        let err = forged.verify_threshold(b"x", &trusted, 1, "r").unwrap_err();
        assert_eq!(err.code(), "threshold_not_met");
    }

    fn signed(seed: u8) -> (Envelope, KeySet) {
        let (sk, pk) = key(seed);
        let mut env = Envelope::new("t", b"{}");
        env.sign(&sk).unwrap();
        (env, [(pk.id().clone(), pk)].into())
    }

    #[test]
    fn positional_envelope_is_refused() {
        let (env, _) = signed(4);
        let positional = serde_json::json!([
            env.payload_type,
            env.payload,
            [[env.signatures[0].keyid, env.signatures[0].sig]]
        ]);
        let bytes = serde_json::to_vec(&positional).unwrap();
        let err = Envelope::from_slice(&bytes, 1 << 16, "envelope", "t").unwrap_err();
        assert_eq!(err.code(), "malformed");
        assert!(err.to_string().contains("found an array"), "{err}");
    }

    #[test]
    fn positional_signature_entry_is_skipped_not_counted() {
        let (env, trusted) = signed(5);
        let mut v: serde_json::Value = serde_json::from_slice(&env.to_json_bytes()).unwrap();
        let entry = &env.signatures[0];
        v["signatures"] = serde_json::json!([[entry.keyid, entry.sig]]);
        let parsed =
            Envelope::from_slice(&serde_json::to_vec(&v).unwrap(), 1 << 16, "e", "t").unwrap();
        assert!(parsed.signatures.is_empty());
        assert_eq!(parsed.unreadable_signatures.len(), 1);
        let err = parsed
            .verify_threshold(b"{}", &trusted, 1, "r")
            .unwrap_err();
        assert_eq!(err.code(), "threshold_not_met");
    }

    #[test]
    fn unreadable_signature_entries_cannot_veto_and_are_kept() {
        let (env, trusted) = signed(6);
        let mut v: serde_json::Value = serde_json::from_slice(&env.to_json_bytes()).unwrap();
        let garbage = [
            serde_json::json!({"keyid": env.signatures[0].keyid, "sig": "AA==", "extra": 1}),
            serde_json::json!({"keyid": 5, "sig": true}),
            serde_json::json!({"keyid": "ab"}),
            serde_json::json!("just a string"),
            serde_json::json!(null),
        ];
        for g in &garbage {
            v["signatures"].as_array_mut().unwrap().push(g.clone());
        }
        let bytes = serde_json::to_vec(&v).unwrap();
        let parsed = Envelope::from_slice(&bytes, 1 << 16, "e", "t").unwrap();
        assert_eq!(parsed.signatures, env.signatures);
        assert_eq!(parsed.unreadable_signatures, garbage);
        assert_eq!(
            parsed.verify_threshold(b"{}", &trusted, 1, "r").unwrap(),
            vec![env.signatures[0].keyid.clone()]
        );
        // Written back unchanged, after the readable entries.
        let again: serde_json::Value = serde_json::from_slice(&parsed.to_json_bytes()).unwrap();
        assert_eq!(again, v);
    }

    #[test]
    fn only_unreadable_entries_is_a_threshold_failure() {
        let (env, trusted) = signed(7);
        let mut v: serde_json::Value = serde_json::from_slice(&env.to_json_bytes()).unwrap();
        v["signatures"] = serde_json::json!([{"sig": 1}]);
        let parsed =
            Envelope::from_slice(&serde_json::to_vec(&v).unwrap(), 1 << 16, "e", "t").unwrap();
        let err = parsed
            .verify_threshold(b"{}", &trusted, 1, "r")
            .unwrap_err();
        assert_eq!(err.code(), "threshold_not_met");
    }

    #[test]
    fn duplicate_keys_anywhere_in_an_envelope_are_refused() {
        let (env, _) = signed(8);
        let text = String::from_utf8(env.to_json_bytes()).unwrap();
        for (from, to) in [
            ("\"payload\":", "\"payload\": \"e30=\", \"payload\":"),
            ("\"sig\":", "\"sig\": \"AA==\", \"sig\":"),
        ] {
            let dup = text.replacen(from, to, 1);
            assert_ne!(dup, text);
            let err = Envelope::from_slice(dup.as_bytes(), 1 << 16, "e", "t").unwrap_err();
            assert_eq!(err.code(), "malformed");
            assert!(err.to_string().contains("duplicate key"), "{err}");
        }
    }

    #[test]
    fn oversize_envelope_is_refused_before_parsing() {
        let junk = vec![b'{'; 100];
        let err = Envelope::from_slice(&junk, 10, "manifest envelope", "t").unwrap_err();
        assert_eq!(err.code(), "too_large");
    }
}
