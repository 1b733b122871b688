//! File helpers: size-limited reads and atomic writes.
//!
//! Every output file is written to a temporary file in the target's own
//! directory (so the final rename never crosses a file system), flushed to
//! disk, and only then renamed into place. If anything fails before the
//! rename, the temporary file is deleted when it is dropped, so no command
//! ever leaves a half-written document or key behind.
//!
//! This module must never write to an output path directly, never create
//! a private key file with wider permissions than 0600 (not even for an
//! instant), and never read a whole untrusted file without a limit.

use std::fs::File;
use std::io::{self, Read as _, Write as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};

/// What to do when the output file already exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overwrite {
    /// Refuse (the default for new outputs; `--force` switches it off).
    Refuse,
    /// Replace it atomically.
    Replace,
}

impl Overwrite {
    /// `Replace` when `force` is set.
    pub fn from_force(force: bool) -> Self {
        if force {
            Overwrite::Replace
        } else {
            Overwrite::Refuse
        }
    }
}

/// Permission bits of a private key file: owner read/write only.
pub const MODE_PRIVATE: u32 = 0o600;
/// Permission bits of public documents and public keys.
pub const MODE_PUBLIC: u32 = 0o644;

/// Fails early, before any expensive work, if `path` exists and may not be
/// replaced. The rename at the end re-checks atomically, so this is only a
/// courtesy that saves hashing a large image for nothing.
pub fn check_writable(path: &Path, overwrite: Overwrite) -> Result<()> {
    if overwrite == Overwrite::Refuse && path.symlink_metadata().is_ok() {
        bail!(refuse_message(path));
    }
    let dir = parent_dir(path);
    if !dir.is_dir() {
        bail!(
            "output directory does not exist ({}): create it first",
            dir.display()
        );
    }
    Ok(())
}

fn refuse_message(path: &Path) -> String {
    format!(
        "refusing to overwrite existing file ({}): pass --force to replace it",
        path.display()
    )
}

/// Writes `bytes` to `path` atomically with permission bits `mode`.
///
/// The temporary file is created with `mode` from the first instant (and
/// then set to exactly `mode`, whatever the umask), so a private key is
/// never readable by anyone else, even briefly.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32, overwrite: Overwrite) -> Result<()> {
    let dir = parent_dir(path);
    let file_name = path
        .file_name()
        .with_context(|| format!("invalid output path ({}): no file name", path.display()))?;
    let mut prefix = std::ffi::OsString::from(".");
    prefix.push(file_name);
    prefix.push(".");

    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".tmp");
    set_create_mode(&mut builder, mode);
    let mut tmp = builder.tempfile_in(&dir).with_context(|| {
        format!(
            "cannot create a temporary file next to the output ({})",
            path.display()
        )
    })?;

    let mut write = || -> io::Result<()> {
        set_exact_mode(tmp.as_file(), mode)?;
        tmp.write_all(bytes)?;
        // Data on disk before the rename, so a crash cannot leave a
        // renamed but empty file.
        tmp.as_file().sync_all()
    };
    write().with_context(|| format!("cannot write output ({})", path.display()))?;

    let persisted = match overwrite {
        Overwrite::Replace => tmp.persist(path).map(drop),
        Overwrite::Refuse => tmp.persist_noclobber(path).map(drop),
    };
    if let Err(e) = persisted {
        // Dropping `e.file` deletes the temporary file.
        if e.error.kind() == io::ErrorKind::AlreadyExists {
            bail!(refuse_message(path));
        }
        return Err(e.error).with_context(|| format!("cannot write output ({})", path.display()));
    }
    // Make the rename itself durable; failure here is not worth an error
    // (the file is complete either way), so it is best effort.
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// The permission bits a rewrite in place should keep: the file's own, or
/// `fallback` if they cannot be read.
pub fn existing_mode(path: &Path, fallback: u32) -> u32 {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        if let Ok(meta) = path.metadata() {
            return meta.permissions().mode() & 0o7777;
        }
    }
    let _ = path;
    fallback
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

#[cfg(unix)]
fn set_create_mode(builder: &mut tempfile::Builder<'_, '_>, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    builder.permissions(std::fs::Permissions::from_mode(mode));
}

#[cfg(not(unix))]
fn set_create_mode(_builder: &mut tempfile::Builder<'_, '_>, _mode: u32) {}

#[cfg(unix)]
fn set_exact_mode(file: &File, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    file.set_permissions(std::fs::Permissions::from_mode(mode))
}

#[cfg(not(unix))]
fn set_exact_mode(_file: &File, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// Outcome of a size-limited read.
#[derive(Debug)]
pub enum Limited {
    /// The whole file, at most the limit.
    Complete(Vec<u8>),
    /// The file is larger than the limit; `size` is its length if known
    /// (at least `limit + 1`).
    TooLarge {
        /// The file's size in bytes, or `limit + 1` if unknown.
        size: u64,
    },
}

/// Reads at most `limit` bytes of `path`; reads one byte more to tell
/// whether the file is larger, never the whole of an oversize file.
pub fn read_limited(path: &Path, limit: u64) -> io::Result<Limited> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    if meta.is_dir() {
        return Err(io::Error::other("is a directory"));
    }
    let mut buf = Vec::with_capacity(meta.len().min(limit) as usize);
    file.take(limit.saturating_add(1)).read_to_end(&mut buf)?;
    if buf.len() as u64 > limit {
        return Ok(Limited::TooLarge {
            size: meta.len().max(limit.saturating_add(1)),
        });
    }
    Ok(Limited::Complete(buf))
}

/// Reads a document of kind `what` (for example "manifest envelope") with
/// the engine's size limit. An oversize file becomes the engine's own
/// `too_large` error, so every caller reports it the same way.
pub fn read_document(path: &Path, limit: u64, what: &'static str) -> Result<Vec<u8>> {
    match read_limited(path, limit) {
        Ok(Limited::Complete(bytes)) => Ok(bytes),
        Ok(Limited::TooLarge { size }) => Err(anyhow::Error::new(firmup_client::Error::TooLarge {
            what,
            limit,
            actual: size,
        }))
        .with_context(|| format!("cannot read {what} ({})", path.display())),
        Err(e) => Err(e).with_context(|| format!("cannot read {what} ({})", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn writes_and_refuses_to_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("doc.json");
        write_atomic(&out, b"one", MODE_PUBLIC, Overwrite::Refuse).unwrap();
        let err = write_atomic(&out, b"two", MODE_PUBLIC, Overwrite::Refuse).unwrap_err();
        assert!(format!("{err:#}").contains("--force"), "{err:#}");
        assert_eq!(std::fs::read(&out).unwrap(), b"one");
        // No temporary file is left behind by the refused write.
        assert_eq!(entries(dir.path()), vec!["doc.json"]);
        write_atomic(&out, b"two", MODE_PUBLIC, Overwrite::Replace).unwrap();
        assert_eq!(std::fs::read(&out).unwrap(), b"two");
        assert_eq!(entries(dir.path()), vec!["doc.json"]);
    }

    #[test]
    fn failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        // The target is a non-empty directory: the rename must fail.
        let out = dir.path().join("taken");
        std::fs::create_dir(&out).unwrap();
        std::fs::write(out.join("x"), b"x").unwrap();
        assert!(write_atomic(&out, b"data", MODE_PUBLIC, Overwrite::Replace).is_err());
        assert_eq!(entries(dir.path()), vec!["taken"]);
    }

    #[cfg(unix)]
    #[test]
    fn private_files_are_0600_and_public_files_0644() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("a.key");
        let public = dir.path().join("a.pub");
        write_atomic(&key, b"k", MODE_PRIVATE, Overwrite::Refuse).unwrap();
        write_atomic(&public, b"p", MODE_PUBLIC, Overwrite::Refuse).unwrap();
        let mode = |p: &Path| p.metadata().unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&public), 0o644);
    }

    #[test]
    fn oversize_documents_are_refused_without_reading_them_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.json");
        std::fs::write(&path, vec![b' '; 100]).unwrap();
        let err = read_document(&path, 10, "manifest envelope").unwrap_err();
        let engine = err.downcast_ref::<firmup_client::Error>().unwrap();
        assert_eq!(engine.code(), "too_large");
        assert!(format!("{err:#}").contains("big.json"), "{err:#}");
        assert!(matches!(
            read_limited(&path, 100).unwrap(),
            Limited::Complete(b) if b.len() == 100
        ));
    }
}
