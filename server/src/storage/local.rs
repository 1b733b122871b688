//! Local-directory storage backend.
//!
//! Layout under the root: `images/<2 hex>/<sha256>` for stored objects and
//! `uploads/<uuid>.part` for uploads in progress. An upload is fsynced and
//! then renamed into `images/`, so a crash leaves either the whole verified
//! object or a `.part` file that is never served and is removed at startup.

use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use firmup_client::Sha256Digest;
use futures_util::{Stream, StreamExt as _};
use sha2::{Digest as _, Sha256};
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};
use tokio_util::io::ReaderStream;

use super::{ByteStream, PutOutcome, READ_CHUNK_BYTES, StorageError, StorageKey};

/// A store rooted at a local directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

impl LocalStore {
    /// Opens (and creates) the directory layout.
    pub async fn open(root: PathBuf) -> io::Result<Self> {
        tokio::fs::create_dir_all(root.join("images")).await?;
        tokio::fs::create_dir_all(root.join("uploads")).await?;
        Ok(LocalStore { root })
    }

    fn path(&self, key: StorageKey) -> PathBuf {
        self.root.join(key.relative_path())
    }

    pub(super) async fn len(&self, key: StorageKey) -> Result<Option<u64>, StorageError> {
        match tokio::fs::metadata(self.path(key)).await {
            Ok(m) => Ok(Some(m.len())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    pub(super) async fn put_image<S, E>(
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
        let part = self
            .root
            .join("uploads")
            .join(format!("{}.part", uuid::Uuid::new_v4()));
        let result = self
            .receive(&part, expected, expected_len, max_bytes, body)
            .await;
        match result {
            Ok(length) => {
                let dest = self.path(key);
                if let Some(dir) = dest.parent() {
                    tokio::fs::create_dir_all(dir).await?;
                }
                // A hard link is atomic within one filesystem (readers see
                // the whole verified object or nothing) and, unlike a
                // rename, never replaces: of two concurrent uploads of the
                // same bytes exactly one creates the object.
                let linked = tokio::fs::hard_link(&part, &dest).await;
                let _ = tokio::fs::remove_file(&part).await;
                match linked {
                    Ok(()) => {
                        sync_dir(dest.parent()).await;
                        Ok(PutOutcome::Created { length })
                    }
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                        Ok(PutOutcome::AlreadyExists { length })
                    }
                    Err(e) => Err(e.into()),
                }
            }
            Err(e) => {
                let _ = tokio::fs::remove_file(&part).await;
                Err(e)
            }
        }
    }

    async fn receive<S, E>(
        &self,
        part: &Path,
        expected: Sha256Digest,
        expected_len: Option<u64>,
        max_bytes: u64,
        mut body: S,
    ) -> Result<u64, StorageError>
    where
        S: Stream<Item = Result<Bytes, E>> + Send + Unpin,
        E: std::fmt::Display,
    {
        let limit = expected_len.map_or(max_bytes, |l| l.min(max_bytes));
        if expected_len.is_some_and(|l| l > max_bytes) {
            return Err(StorageError::TooLarge { limit: max_bytes });
        }
        let mut file = tokio::fs::File::create(part).await?;
        let mut hasher = Sha256::new();
        let mut written: u64 = 0;
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| StorageError::Interrupted(e.to_string()))?;
            written += chunk.len() as u64;
            if written > limit {
                return Err(match expected_len {
                    Some(expected) if expected < max_bytes => StorageError::LengthMismatch {
                        expected,
                        actual: written,
                    },
                    _ => StorageError::TooLarge { limit: max_bytes },
                });
            }
            hasher.update(&chunk);
            file.write_all(&chunk).await?;
        }
        if let Some(expected) = expected_len
            && written != expected
        {
            return Err(StorageError::LengthMismatch {
                expected,
                actual: written,
            });
        }
        let actual = Sha256Digest(hasher.finalize().into());
        if actual != expected {
            return Err(StorageError::DigestMismatch { expected, actual });
        }
        file.sync_all().await?;
        Ok(written)
    }

    pub(super) async fn read_range(
        &self,
        key: StorageKey,
        start: u64,
        len: u64,
    ) -> Result<ByteStream, StorageError> {
        let mut file = match tokio::fs::File::open(self.path(key)).await {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StorageError::NotFound),
            Err(e) => return Err(e.into()),
        };
        if start > 0 {
            file.seek(SeekFrom::Start(start)).await?;
        }
        Ok(Box::pin(ReaderStream::with_capacity(
            file.take(len),
            READ_CHUNK_BYTES,
        )))
    }

    pub(super) async fn clean_partial_uploads(&self) -> Result<usize, StorageError> {
        let mut removed = 0;
        let mut dir = tokio::fs::read_dir(self.root.join("uploads")).await?;
        while let Some(entry) = dir.next_entry().await? {
            if entry.file_name().to_string_lossy().ends_with(".part") {
                tokio::fs::remove_file(entry.path()).await?;
                removed += 1;
            }
        }
        Ok(removed)
    }

    pub(super) async fn ready(&self) -> Result<(), StorageError> {
        tokio::fs::metadata(self.root.join("images")).await?;
        Ok(())
    }
}

/// Makes a rename durable. Best effort: not every platform can fsync a
/// directory, and the object itself is already synced.
async fn sync_dir(dir: Option<&Path>) {
    if let Some(dir) = dir
        && let Ok(d) = tokio::fs::File::open(dir).await
    {
        let _ = d.sync_all().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::stream;

    fn chunks(data: &[u8]) -> impl Stream<Item = Result<Bytes, io::Error>> + Unpin {
        stream::iter(
            data.chunks(7)
                .map(|c| Ok(Bytes::copy_from_slice(c)))
                .collect::<Vec<_>>(),
        )
    }

    async fn read_all(s: &LocalStore, d: Sha256Digest, start: u64, len: u64) -> Vec<u8> {
        let mut out = Vec::new();
        let mut st = s
            .read_range(StorageKey::image(d), start, len)
            .await
            .unwrap();
        while let Some(c) = st.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        out
    }

    #[tokio::test]
    async fn stores_verified_objects_and_reads_ranges() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path().to_path_buf()).await.unwrap();
        let data = b"the quick brown fox jumps over the lazy dog".to_vec();
        let d = Sha256Digest::of(&data);
        let out = s
            .put_image(d, Some(data.len() as u64), 1000, chunks(&data))
            .await
            .unwrap();
        assert_eq!(
            out,
            PutOutcome::Created {
                length: data.len() as u64
            }
        );
        let again = s.put_image(d, None, 1000, chunks(&data)).await.unwrap();
        assert_eq!(
            again,
            PutOutcome::AlreadyExists {
                length: data.len() as u64
            }
        );
        assert_eq!(read_all(&s, d, 4, 5).await, b"quick");
    }

    #[tokio::test]
    async fn concurrent_uploads_of_the_same_bytes_create_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = std::sync::Arc::new(LocalStore::open(dir.path().to_path_buf()).await.unwrap());
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let d = Sha256Digest::of(&data);
        // Each upload is past the existence check before any finishes.
        let uploads: Vec<_> = (0..8)
            .map(|_| {
                let (s, data) = (s.clone(), data.clone());
                tokio::spawn(async move {
                    let slow = chunks(&data).then(|c| async move {
                        tokio::task::yield_now().await;
                        c
                    });
                    s.put_image(d, None, 1 << 20, Box::pin(slow)).await.unwrap()
                })
            })
            .collect();
        let mut created = 0;
        for u in uploads {
            if matches!(u.await.unwrap(), PutOutcome::Created { .. }) {
                created += 1;
            }
        }
        assert_eq!(created, 1, "exactly one upload creates the object");
        assert_eq!(read_all(&s, d, 0, 5).await, data[..5]);
        let leftovers = std::fs::read_dir(dir.path().join("uploads"))
            .unwrap()
            .count();
        assert_eq!(leftovers, 0);
    }

    #[tokio::test]
    async fn bad_uploads_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let s = LocalStore::open(dir.path().to_path_buf()).await.unwrap();
        let data = vec![9u8; 100];
        let d = Sha256Digest::of(&data);
        let wrong = Sha256Digest::of(b"other");
        assert!(matches!(
            s.put_image(wrong, None, 1000, chunks(&data)).await,
            Err(StorageError::DigestMismatch { .. })
        ));
        assert!(matches!(
            s.put_image(d, None, 50, chunks(&data)).await,
            Err(StorageError::TooLarge { limit: 50 })
        ));
        assert!(matches!(
            s.put_image(d, Some(200), 1000, chunks(&data)).await,
            Err(StorageError::LengthMismatch {
                expected: 200,
                actual: 100
            })
        ));
        let cut = stream::iter(vec![
            Ok(Bytes::from_static(b"abc")),
            Err(io::Error::other("connection reset")),
        ]);
        assert!(matches!(
            s.put_image(d, None, 1000, cut).await,
            Err(StorageError::Interrupted(_))
        ));
        assert_eq!(s.len(StorageKey::image(d)).await.unwrap(), None);
        let mut uploads = std::fs::read_dir(dir.path().join("uploads")).unwrap();
        assert!(uploads.next().is_none(), "no partial upload may remain");
    }
}
