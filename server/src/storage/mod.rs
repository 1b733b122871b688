//! Blob storage facade: every image, and every file attached to an RMA,
//! goes in and out through [`Storage`].
//!
//! Handlers name objects with typed [`StorageKey`]s, never with strings
//! pasted together, and never see which backend is in use: the local
//! directory (the embedded default, [`LocalStore`]) or an S3-compatible
//! bucket ([`S3Store`]).
//!
//! Guarantees every backend keeps:
//! - an object becomes visible only complete and verified: the facade
//!   counts and hashes every upload on its way to the backend, which writes
//!   it under a staging name; only when the length and sha256 are right is
//!   it moved to its content-addressed key;
//! - a failed or interrupted upload leaves nothing that is ever served;
//! - reads stream in bounded chunks; nothing buffers a whole object.

mod local;
pub mod s3;

use std::io;
use std::path::PathBuf;

use bytes::Bytes;
use firmup_client::Sha256Digest;
use futures_util::{Stream, StreamExt as _};
use sha2::{Digest as _, Sha256};

pub use local::LocalStore;
pub use s3::{S3Location, S3Store};

/// Bytes read per chunk when streaming an object out. Bounds the memory a
/// download holds at once: 256 concurrent downloads hold at most
/// a few 64 KiB buffers each.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Names an object in storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageKey {
    /// A firmware image, content-addressed by its sha256.
    Image(Sha256Digest),
    /// A file attached to an RMA (a photo, a log), content-addressed by
    /// its sha256. Kept apart from images: nothing a customer sends can
    /// ever be served as firmware.
    Attachment(Sha256Digest),
}

impl StorageKey {
    /// The key of an image.
    pub fn image(sha256: Sha256Digest) -> Self {
        StorageKey::Image(sha256)
    }

    /// The key of an attachment.
    pub fn attachment(sha256: Sha256Digest) -> Self {
        StorageKey::Attachment(sha256)
    }

    /// The object's path relative to the store's root, e.g.
    /// `images/ab/ab12...` or `attachments/ab/ab12...`. Only hex digits
    /// come from the outside, so no path can escape the root.
    pub fn relative_path(&self) -> String {
        let (prefix, d) = match self {
            StorageKey::Image(d) => ("images", d),
            StorageKey::Attachment(d) => ("attachments", d),
        };
        let hex = d.to_hex();
        format!("{prefix}/{}/{}", &hex[..2], hex)
    }
}

/// What can go wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    /// The upload passed the size limit.
    #[error("upload exceeds the limit of {limit} bytes")]
    TooLarge {
        /// The limit.
        limit: u64,
    },
    /// The uploaded bytes do not hash to the expected digest.
    #[error("uploaded bytes have sha256 {actual}, expected {expected}")]
    DigestMismatch {
        /// Expected digest.
        expected: Sha256Digest,
        /// Digest of what arrived.
        actual: Sha256Digest,
    },
    /// The uploaded length differs from the announced one.
    #[error("upload ended after {actual} bytes; {expected} were announced")]
    LengthMismatch {
        /// Announced length.
        expected: u64,
        /// Received length.
        actual: u64,
    },
    /// The client's body stream failed (for example a cut connection).
    #[error("upload interrupted: {0}")]
    Interrupted(String),
    /// No such object.
    #[error("object not found")]
    NotFound,
    /// Backend I/O failure.
    #[error("storage I/O: {0}")]
    Io(#[from] io::Error),
    /// The object store answered with an error or could not be reached.
    /// The message names the endpoint and bucket, never a secret.
    #[error("object store: {0}")]
    Backend(String),
}

/// A blob stored by [`Storage::put_attachment`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredBlob {
    /// Its key.
    pub key: StorageKey,
    /// The sha256 of its bytes.
    pub sha256: Sha256Digest,
    /// Its length.
    pub length: u64,
    /// True if this upload stored it; false if the same bytes were there.
    pub created: bool,
}

/// The outcome of a successful upload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The object was stored now.
    Created {
        /// Its length.
        length: u64,
    },
    /// An identical object (same digest) was already stored.
    AlreadyExists {
        /// Its length.
        length: u64,
    },
}

/// A stream of an object's bytes.
pub type ByteStream = std::pin::Pin<Box<dyn Stream<Item = io::Result<Bytes>> + Send>>;

/// The storage backends.
#[derive(Debug, Clone)]
pub enum Backend {
    /// A local directory (the embedded default).
    Local(LocalStore),
    /// An S3-compatible object store.
    S3(S3Store),
}

/// An upload written in full to a backend's staging area (never served),
/// waiting to be promoted to its content-addressed key or discarded.
#[derive(Debug)]
pub(crate) enum Staged {
    /// A `.part` file of the local backend.
    Local(PathBuf),
    /// An object under the S3 backend's `uploads/` prefix.
    S3(String),
}

/// Counts and hashes an upload as it streams to a backend, and enforces
/// the length limit: the checks every backend gets, written once here.
struct Verifier {
    /// The digest the bytes must have, when the uploader named one.
    expected: Option<Sha256Digest>,
    expected_len: Option<u64>,
    max_bytes: u64,
    /// `max_bytes`, or the announced length if smaller.
    limit: u64,
    hasher: Sha256,
    written: u64,
}

impl Verifier {
    fn new(
        expected: Option<Sha256Digest>,
        expected_len: Option<u64>,
        max_bytes: u64,
    ) -> Result<Self, StorageError> {
        if expected_len.is_some_and(|l| l > max_bytes) {
            return Err(StorageError::TooLarge { limit: max_bytes });
        }
        Ok(Verifier {
            expected,
            expected_len,
            max_bytes,
            limit: expected_len.map_or(max_bytes, |l| l.min(max_bytes)),
            hasher: Sha256::new(),
            written: 0,
        })
    }

    /// Passes one chunk on, or the error that ends the upload: a failed
    /// body stream, or more bytes than announced or allowed.
    fn feed<E: std::fmt::Display>(
        &mut self,
        chunk: Result<Bytes, E>,
    ) -> Result<Bytes, StorageError> {
        let chunk = chunk.map_err(|e| StorageError::Interrupted(e.to_string()))?;
        self.written += chunk.len() as u64;
        if self.written > self.limit {
            return Err(match self.expected_len {
                Some(expected) if expected < self.max_bytes => StorageError::LengthMismatch {
                    expected,
                    actual: self.written,
                },
                _ => StorageError::TooLarge {
                    limit: self.max_bytes,
                },
            });
        }
        self.hasher.update(&chunk);
        Ok(chunk)
    }

    /// After the last chunk: the length and the digest, if they are right.
    fn finish(self) -> Result<(u64, Sha256Digest), StorageError> {
        if let Some(expected) = self.expected_len
            && self.written != expected
        {
            return Err(StorageError::LengthMismatch {
                expected,
                actual: self.written,
            });
        }
        let actual = Sha256Digest(self.hasher.finalize().into());
        if let Some(expected) = self.expected
            && actual != expected
        {
            return Err(StorageError::DigestMismatch { expected, actual });
        }
        Ok((self.written, actual))
    }
}

/// A verified chunk stream handed to a backend's staging write.
pub(crate) type CheckedChunks<'a> =
    std::pin::Pin<Box<dyn Stream<Item = Result<Bytes, StorageError>> + Send + 'a>>;

/// How long a staged upload may sit before another replica's start-up
/// clean-up takes it for a leftover. Uploads in progress are younger.
pub const STALE_UPLOAD_AGE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The storage facade.
#[derive(Debug, Clone)]
pub struct Storage {
    backend: Backend,
}

impl Storage {
    /// A facade over a local directory.
    pub async fn local(root: PathBuf) -> io::Result<Self> {
        Ok(Storage {
            backend: Backend::Local(LocalStore::open(root).await?),
        })
    }

    /// A facade over an S3-compatible bucket (see [`S3Store::open`]).
    pub async fn s3(location: S3Location, part_size: usize) -> anyhow::Result<Self> {
        Ok(Storage {
            backend: Backend::S3(S3Store::open(location, part_size).await?),
        })
    }

    /// The S3 backend, if that is the one in use (presigned downloads).
    pub fn s3_store(&self) -> Option<&S3Store> {
        match &self.backend {
            Backend::S3(s) => Some(s),
            Backend::Local(_) => None,
        }
    }

    /// Length of the object, or `None` if it does not exist.
    #[tracing::instrument(skip(self))]
    pub async fn len(&self, key: StorageKey) -> Result<Option<u64>, StorageError> {
        match &self.backend {
            Backend::Local(s) => s.len(key).await,
            Backend::S3(s) => s.len(key).await,
        }
    }

    /// Stores an image from a stream of chunks, verifying on the way that it
    /// stays within `max_bytes` (and `expected_len` when announced) and that
    /// it hashes to `expected`. Visible only once complete and verified:
    /// the backend writes it to a staging name, and only a verified upload
    /// is promoted to its content-addressed key.
    #[tracing::instrument(skip(self, body))]
    pub async fn put_image<S, E>(
        &self,
        expected: Sha256Digest,
        expected_len: Option<u64>,
        max_bytes: u64,
        body: S,
    ) -> Result<PutOutcome, StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let key = StorageKey::image(expected);
        if let Some(length) = self.len(key).await? {
            return Ok(PutOutcome::AlreadyExists { length });
        }
        let stored = self
            .put_verified(
                StorageKey::image,
                Some(expected),
                expected_len,
                max_bytes,
                body,
            )
            .await?;
        Ok(if stored.created {
            PutOutcome::Created {
                length: stored.length,
            }
        } else {
            PutOutcome::AlreadyExists {
                length: stored.length,
            }
        })
    }

    /// Stores a file attached to an RMA from a stream of chunks, under the
    /// key of its sha256 ([`StorageKey::Attachment`]), with the guarantees
    /// of [`Storage::put_image`]: within `max_bytes` (and `expected_len`
    /// when announced), hashing to `expected` when the uploader named a
    /// digest, and visible only once complete and verified. The digest is
    /// known only once the last byte is in, so the bytes are always read
    /// (an identical attachment stored before is kept, not replaced).
    #[tracing::instrument(skip(self, body))]
    pub async fn put_attachment<S, E>(
        &self,
        expected: Option<Sha256Digest>,
        expected_len: Option<u64>,
        max_bytes: u64,
        body: S,
    ) -> Result<StoredBlob, StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        self.put_verified(
            StorageKey::attachment,
            expected,
            expected_len,
            max_bytes,
            body,
        )
        .await
    }

    /// Stages an upload while verifying it, then promotes it to the key
    /// `key_of` gives its digest (see the module's guarantees).
    async fn put_verified<S, E>(
        &self,
        key_of: fn(Sha256Digest) -> StorageKey,
        expected: Option<Sha256Digest>,
        expected_len: Option<u64>,
        max_bytes: u64,
        body: S,
    ) -> Result<StoredBlob, StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let mut verifier = Verifier::new(expected, expected_len, max_bytes)?;
        // A backend whose staging write fails (the stream's own error
        // included) has removed what it staged.
        let staged = {
            let checked: CheckedChunks<'_> = Box::pin(body.map(|c| verifier.feed(c)));
            match &self.backend {
                Backend::Local(s) => s.stage(checked).await?,
                Backend::S3(s) => s.stage(checked).await?,
            }
        };
        let (length, sha256) = match verifier.finish() {
            Ok(done) => done,
            Err(e) => {
                self.discard(staged).await;
                return Err(e);
            }
        };
        let key = key_of(sha256);
        let promoted = match &self.backend {
            Backend::Local(s) => s.promote(&staged, key).await,
            Backend::S3(s) => s.promote(&staged, key).await,
        };
        self.discard(staged).await;
        Ok(StoredBlob {
            key,
            sha256,
            length,
            created: promoted?,
        })
    }

    /// Removes a staged upload; a failure only leaves a leftover that is
    /// never served and is cleaned up later.
    async fn discard(&self, staged: Staged) {
        let result = match &self.backend {
            Backend::Local(s) => s.discard(staged).await,
            Backend::S3(s) => s.discard(staged).await,
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "could not remove a staged upload; it is cleaned up later");
        }
    }

    /// Streams `len` bytes of the object starting at `start`. The caller
    /// knows the object's length (from the database) and asks for a range
    /// inside it.
    #[tracing::instrument(skip(self))]
    pub async fn read_range(
        &self,
        key: StorageKey,
        start: u64,
        len: u64,
    ) -> Result<ByteStream, StorageError> {
        match &self.backend {
            Backend::Local(s) => s.read_range(key, start, len).await,
            Backend::S3(s) => s.read_range(key, start, len).await,
        }
    }

    /// Deletes an object for good; deleting one that is not there is no
    /// error. Only attachments are ever deleted (an erasure request takes
    /// an RMA's files with it); images stay for as long as releases need
    /// them.
    #[tracing::instrument(skip(self))]
    pub async fn delete_attachment(&self, sha256: Sha256Digest) -> Result<(), StorageError> {
        let key = StorageKey::attachment(sha256);
        match &self.backend {
            Backend::Local(s) => s.delete(key).await,
            Backend::S3(s) => s.delete(key).await,
        }
    }

    /// Removes leftovers of interrupted uploads. Called at startup; they
    /// are never served either way. Staged uploads in a shared bucket are
    /// removed only once older than [`STALE_UPLOAD_AGE`]: another replica
    /// may be writing them.
    pub async fn clean_partial_uploads(&self) -> Result<usize, StorageError> {
        match &self.backend {
            Backend::Local(s) => s.clean_partial_uploads().await,
            Backend::S3(s) => s.clean_partial_uploads(STALE_UPLOAD_AGE).await,
        }
    }

    /// How many staged uploads exist now, however young: zero when nothing
    /// is being uploaded and nothing was left behind (for tests and
    /// operators).
    pub async fn staged_count(&self) -> Result<usize, StorageError> {
        match &self.backend {
            Backend::Local(s) => s.staged_count().await,
            Backend::S3(s) => s.staged_count().await,
        }
    }

    /// Checks the backend is reachable (for `/readyz`).
    pub async fn ready(&self) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Local(s) => s.ready().await,
            Backend::S3(s) => s.ready().await,
        }
    }
}

impl From<StorageError> for crate::error::AppError {
    /// Generic mapping for handlers: a missing object is the client's 404,
    /// backend I/O is ours and transient (503, retry later). Upload handlers
    /// map their own cases (too large, digest mismatch) before this.
    fn from(e: StorageError) -> Self {
        use crate::error::AppError;
        match e {
            StorageError::NotFound => {
                AppError::not_found("unknown_image", "no such image is stored")
            }
            StorageError::Io(_) | StorageError::Backend(_) => {
                AppError::Unavailable(format!("storage: {e}"))
            }
            other => AppError::Internal(anyhow::Error::new(other).context("storage")),
        }
    }
}
