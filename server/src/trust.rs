//! The server's trust state: the pinned root and the rotations after it.
//!
//! The server verifies every root it accepts with the client library, the
//! same way devices will, and serves the chain so devices can walk it. It
//! holds public keys only.
//!
//! The chain is stored in the database (`trust_roots`) so that every
//! replica serves the same one: a replica loads it at start, and
//! [`refresh`] (run by the periodic refresher, see
//! [`crate::snapshot::REFRESH_INTERVAL`]) adds the rotations other
//! replicas stored since. A stored root is never trusted because it is
//! stored: each is verified as a rotation of the latest root this replica
//! already trusts, and refused (logged) otherwise.

use std::sync::RwLock;

use firmup_client::TrustedRoot;

use crate::db::Db;

/// Roots the server trusts.
#[derive(Debug, Clone, Default)]
pub struct TrustState {
    /// Every accepted root envelope by ascending version, starting at 1.
    envelopes: Vec<Vec<u8>>,
    /// The newest verified root, used for publish checks.
    latest: Option<TrustedRoot>,
}

impl TrustState {
    /// Verifies a pinned root and its rotations (ascending).
    pub fn from_chain(envelopes: Vec<Vec<u8>>) -> Result<Self, firmup_client::Error> {
        let Some(first) = envelopes.first() else {
            return Ok(TrustState::default());
        };
        let pinned = TrustedRoot::from_pinned(first)?;
        let mut latest = pinned;
        for next in &envelopes[1..] {
            latest = latest.rotate(next)?;
        }
        Ok(TrustState {
            envelopes,
            latest: Some(latest),
        })
    }

    /// The newest root, if any is configured.
    pub fn latest(&self) -> Option<&TrustedRoot> {
        self.latest.as_ref()
    }

    /// Accepts the next root: version 1 when none is configured (trusted
    /// because an administrator submitted it), otherwise a valid rotation
    /// of the latest. Returns the new root.
    pub fn accept(&self, envelope: &[u8]) -> Result<TrustedRoot, firmup_client::Error> {
        match &self.latest {
            None => {
                let root = TrustedRoot::from_pinned(envelope)?;
                if root.version() != 1 {
                    return Err(firmup_client::Error::RootVersionSkip {
                        current: 0,
                        expected: 1,
                        found: root.version(),
                    });
                }
                Ok(root)
            }
            Some(latest) => latest.rotate(envelope),
        }
    }

    /// Records a root returned by [`TrustState::accept`].
    pub fn push(&mut self, root: TrustedRoot) {
        self.envelopes.push(root.envelope_bytes().to_vec());
        self.latest = Some(root);
    }

    /// Root envelopes newer than `version`, oldest first.
    pub fn newer_than(&self, version: u64) -> &[Vec<u8>] {
        let skip = (version as usize).min(self.envelopes.len());
        &self.envelopes[skip..]
    }
}

/// Adds the roots newer than this replica's latest that other replicas
/// stored, each verified with [`TrustState::accept`] (a rotation of the
/// latest trusted root, or a self-signed version 1 when none is
/// configured). Stops at the first one that fails, logging why: a root
/// that does not verify is never trusted, and the ones after it cannot be
/// verified without it. Returns the number of roots added.
///
/// A poisoned lock means a panic while it was held; the state is still
/// consistent (a root is pushed only once verified, in one step), so using
/// it on is safe.
pub async fn refresh(db: &Db, state: &RwLock<TrustState>) -> Result<usize, crate::db::Error> {
    let latest = state
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .latest()
        .map_or(0, |r| r.version());
    let stored = crate::db::trust::newer_than(db, latest).await?;
    let mut added = 0;
    for (version, envelope) in stored {
        let mut trust = state.write().unwrap_or_else(|e| e.into_inner());
        let current = trust.latest().map_or(0, |r| r.version());
        if u64::try_from(version).is_ok_and(|v| v <= current) {
            // Added meanwhile (by `POST /v1/trust/roots` on this replica).
            continue;
        }
        match trust.accept(&envelope) {
            Ok(root) if i64::try_from(root.version()).is_ok_and(|v| v == version) => {
                trust.push(root);
                added += 1;
                tracing::info!(
                    root_version = version,
                    "trust root rotation stored by another replica verified and trusted"
                );
            }
            Ok(root) => {
                tracing::error!(
                    stored_version = version,
                    root_version = root.version(),
                    "stored trust root is filed under another version; not trusted"
                );
                break;
            }
            Err(e) => {
                tracing::error!(
                    root_version = version,
                    trusted_version = current,
                    code = e.code(),
                    error = %e,
                    "stored trust root does not verify against the latest trusted root; not trusted"
                );
                break;
            }
        }
    }
    Ok(added)
}
