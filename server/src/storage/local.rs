//! Local-directory storage backend.
//!
//! Layout under the root: `images/<2 hex>/<sha256>` and
//! `attachments/<2 hex>/<sha256>` for stored objects and
//! `uploads/<uuid>.part` for uploads in progress. An upload is fsynced and
//! then linked into place, so a crash leaves either the whole verified
//! object or a `.part` file that is never served and is removed at startup.

use std::io::{self, SeekFrom};
use std::path::{Path, PathBuf};

use futures_util::StreamExt as _;
use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _, AsyncWriteExt as _};
use tokio_util::io::ReaderStream;

use super::{ByteStream, CheckedChunks, READ_CHUNK_BYTES, Staged, StorageError, StorageKey};

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

    /// Writes a verified chunk stream to a new `.part` file and syncs it.
    /// On any error the file is removed.
    pub(super) async fn stage(&self, body: CheckedChunks<'_>) -> Result<Staged, StorageError> {
        let part = self
            .root
            .join("uploads")
            .join(format!("{}.part", uuid::Uuid::new_v4()));
        match write_part(&part, body).await {
            Ok(()) => Ok(Staged::Local(part)),
            Err(e) => {
                let _ = tokio::fs::remove_file(&part).await;
                Err(e)
            }
        }
    }

    /// Moves a verified upload to its key: true if it created the object,
    /// false if the object was there already.
    pub(super) async fn promote(
        &self,
        staged: &Staged,
        key: StorageKey,
    ) -> Result<bool, StorageError> {
        let Staged::Local(part) = staged else {
            return Err(StorageError::Backend(
                "a staged upload of another backend".into(),
            ));
        };
        let dest = self.path(key);
        if let Some(dir) = dest.parent() {
            tokio::fs::create_dir_all(dir).await?;
        }
        // A hard link is atomic within one filesystem (readers see the
        // whole verified object or nothing) and, unlike a rename, never
        // replaces: of two concurrent uploads of the same bytes exactly one
        // creates the object.
        match tokio::fs::hard_link(part, &dest).await {
            Ok(()) => {
                sync_dir(dest.parent()).await;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Deletes a stored object; one that does not exist is no error.
    pub(super) async fn delete(&self, key: StorageKey) -> Result<(), StorageError> {
        match tokio::fs::remove_file(self.path(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Removes a staged upload.
    pub(super) async fn discard(&self, staged: Staged) -> Result<(), StorageError> {
        if let Staged::Local(part) = staged {
            match tokio::fs::remove_file(&part).await {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(())
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

    pub(super) async fn staged_count(&self) -> Result<usize, StorageError> {
        let mut count = 0;
        let mut dir = tokio::fs::read_dir(self.root.join("uploads")).await?;
        while let Some(entry) = dir.next_entry().await? {
            if entry.file_name().to_string_lossy().ends_with(".part") {
                count += 1;
            }
        }
        Ok(count)
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

async fn write_part(part: &Path, mut body: CheckedChunks<'_>) -> Result<(), StorageError> {
    let mut file = tokio::fs::File::create(part).await?;
    while let Some(chunk) = body.next().await {
        file.write_all(&chunk?).await?;
    }
    file.sync_all().await?;
    Ok(())
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
