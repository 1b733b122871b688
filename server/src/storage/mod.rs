//! Blob storage facade: every image goes in and out through [`Storage`].
//!
//! Handlers name objects with typed [`StorageKey`]s, never with strings
//! pasted together, and never see which backend is in use. Today there is
//! the local directory backend (the embedded default); an S3-compatible
//! backend slots in as another [`Backend`] variant.
//!
//! Guarantees every backend keeps:
//! - an object becomes visible only complete and verified: uploads are
//!   written under a temporary name, hashed on the way, checked against the
//!   expected sha256 and length limit, and only then moved into place;
//! - a failed or interrupted upload leaves nothing that is ever served;
//! - reads stream in bounded chunks; nothing buffers a whole image.

mod local;

use std::io;
use std::path::PathBuf;

use bytes::Bytes;
use firmup_client::Sha256Digest;
use futures_util::Stream;

pub use local::LocalStore;

/// Bytes read per chunk when streaming an object out. Bounds the memory a
/// download holds at once: 256 concurrent downloads hold at most
/// a few 64 KiB buffers each.
pub const READ_CHUNK_BYTES: usize = 64 * 1024;

/// Names an object in storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StorageKey {
    /// A firmware image, content-addressed by its sha256.
    Image(Sha256Digest),
}

impl StorageKey {
    /// The key of an image.
    pub fn image(sha256: Sha256Digest) -> Self {
        StorageKey::Image(sha256)
    }

    /// The object's path relative to the store's root, e.g.
    /// `images/ab/ab12...`. Only hex digits come from the outside, so no
    /// path can escape the root.
    pub fn relative_path(&self) -> String {
        match self {
            StorageKey::Image(d) => {
                let hex = d.to_hex();
                format!("images/{}/{}", &hex[..2], hex)
            }
        }
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
}

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

    /// Length of the object, or `None` if it does not exist.
    #[tracing::instrument(skip(self))]
    pub async fn len(&self, key: StorageKey) -> Result<Option<u64>, StorageError> {
        match &self.backend {
            Backend::Local(s) => s.len(key).await,
        }
    }

    /// Stores an image from a stream of chunks, verifying on the way that it
    /// stays within `max_bytes` (and `expected_len` when announced) and that
    /// it hashes to `expected`. Visible only once complete and verified.
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
        match &self.backend {
            Backend::Local(s) => s.put_image(expected, expected_len, max_bytes, body).await,
        }
    }

    /// Streams `len` bytes of the object starting at `start`.
    #[tracing::instrument(skip(self))]
    pub async fn read_range(
        &self,
        key: StorageKey,
        start: u64,
        len: u64,
    ) -> Result<ByteStream, StorageError> {
        match &self.backend {
            Backend::Local(s) => s.read_range(key, start, len).await,
        }
    }

    /// Removes leftovers of interrupted uploads. Called at startup; they
    /// are never served either way.
    pub async fn clean_partial_uploads(&self) -> Result<usize, StorageError> {
        match &self.backend {
            Backend::Local(s) => s.clean_partial_uploads().await,
        }
    }

    /// Checks the backend is reachable (for `/readyz`).
    pub async fn ready(&self) -> Result<(), StorageError> {
        match &self.backend {
            Backend::Local(s) => s.ready().await,
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
            StorageError::Io(_) => AppError::Unavailable(format!("storage: {e}")),
            other => AppError::Internal(anyhow::Error::new(other).context("storage")),
        }
    }
}
