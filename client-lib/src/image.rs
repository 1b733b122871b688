//! Streaming image checks: length cap and SHA-256 in constant memory.
//!
//! An image is never trusted because of where it came from (a mirror or a
//! CDN is untrusted transport): only its signed length and digest decide.
//! The hasher refuses a byte past the signed length the moment it arrives,
//! so an endless or oversize stream costs at most one buffer.

use std::io::Read;

use sha2::{Digest as _, Sha256};

use crate::digest::Sha256Digest;
use crate::error::{Error, Result};
use crate::manifest::ImageSpec;

/// Read buffer for streaming checks. 256 KiB keeps syscalls few and the
/// buffer in L2 cache; memory use does not grow with the image.
pub const CHUNK_BYTES: usize = 256 * 1024;

/// Incremental check of one image against its signed [`ImageSpec`].
#[derive(Debug, Clone)]
pub struct ImageHasher {
    name: String,
    expected_len: u64,
    expected: Sha256Digest,
    hasher: Sha256,
    seen: u64,
}

impl ImageHasher {
    /// Starts checking an image described by `spec`.
    pub fn new(spec: &ImageSpec) -> Self {
        ImageHasher {
            name: spec.name.clone(),
            expected_len: spec.length,
            expected: spec.sha256,
            hasher: Sha256::new(),
            seen: 0,
        }
    }

    /// Feeds the next bytes. Fails as soon as the stream passes the signed
    /// length, without hashing the excess.
    pub fn update(&mut self, chunk: &[u8]) -> Result<()> {
        let remaining = self.expected_len - self.seen;
        if chunk.len() as u64 > remaining {
            return Err(Error::ImageOversize {
                name: self.name.clone(),
                expected: self.expected_len,
            });
        }
        self.hasher.update(chunk);
        self.seen += chunk.len() as u64;
        Ok(())
    }

    /// Bytes accepted so far.
    pub fn position(&self) -> u64 {
        self.seen
    }

    /// The signed length.
    pub fn expected_len(&self) -> u64 {
        self.expected_len
    }

    /// Ends the stream: the length must be complete and the digest match.
    pub fn finish(self) -> Result<Sha256Digest> {
        if self.seen < self.expected_len {
            return Err(Error::ImageTruncated {
                name: self.name,
                expected: self.expected_len,
                actual: self.seen,
            });
        }
        let actual = Sha256Digest(self.hasher.finalize().into());
        if actual != self.expected {
            return Err(Error::ImageHashMismatch {
                name: self.name,
                expected: self.expected.to_hex(),
                actual: actual.to_hex(),
            });
        }
        Ok(actual)
    }
}

/// Checks a whole image read from `reader`, calling `progress` with the
/// running byte count. Reads at most one byte past the signed length.
pub fn verify_reader<R: Read>(
    spec: &ImageSpec,
    reader: R,
    mut progress: impl FnMut(u64),
) -> Result<Sha256Digest> {
    let mut hasher = ImageHasher::new(spec);
    let mut limited = reader.take(spec.length.saturating_add(1));
    let mut buf = vec![0u8; CHUNK_BYTES];
    loop {
        let n = match limited.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io(format!("reading image {:?}", spec.name), e)),
        };
        hasher.update(&buf[..n])?;
        progress(hasher.position());
    }
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(bytes: &[u8]) -> ImageSpec {
        ImageSpec {
            name: "fw.bin".into(),
            target: "rootfs".into(),
            length: bytes.len() as u64,
            sha256: Sha256Digest::of(bytes),
        }
    }

    #[test]
    fn accepts_exact_bytes_across_chunks() {
        let data: Vec<u8> = (0..(CHUNK_BYTES * 2 + 17)).map(|i| i as u8).collect();
        let mut last = 0;
        let d = verify_reader(&spec(&data), &data[..], |p| last = p).unwrap();
        assert_eq!(d, Sha256Digest::of(&data));
        assert_eq!(last, data.len() as u64);
    }

    #[test]
    fn endless_stream_stops_one_byte_past_the_length() {
        let s = spec(b"abc");
        let err = verify_reader(&s, std::io::repeat(b'a'), |_| {}).unwrap_err();
        assert_eq!(err.code(), "image_oversize");
    }
}
