//! The server's trust state: the pinned root and the rotations after it.
//!
//! The server verifies every root it accepts with the client library, the
//! same way devices will, and serves the chain so devices can walk it. It
//! holds public keys only.

use firmup_client::TrustedRoot;

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
