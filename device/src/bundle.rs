//! Offline bundles as one file: the tar a technician downloads for a repair
//! push (`GET /v1/devices/{serial}/push/bundle`) is unpacked into a fresh
//! directory inside the state directory, which `install` then reads as it
//! reads a bundle directory, through the same verification.
//!
//! Nothing in the file is trusted: only regular files with plain names (no
//! directories, links or paths) are taken, each name once, at most
//! [`MAX_ENTRIES`] of them; what they hold is verified by the library
//! (signatures, hashes, lengths) before anything is flashed.

use std::collections::HashSet;
use std::path::Path;

use anyhow::{Context as _, Result, bail};

/// Most files a bundle holds (a manifest, its images, a root chain).
pub const MAX_ENTRIES: usize = 256;

/// Longest file name in a bundle (a manifest name is at most 128).
const MAX_NAME: usize = 128;

/// Unpacks the bundle file `file` into the empty directory `into`.
pub fn unpack(file: &Path, into: &Path) -> Result<()> {
    let f = std::fs::File::open(file)
        .with_context(|| format!("opening the bundle {}", file.display()))?;
    let mut archive = tar::Archive::new(std::io::BufReader::new(f));
    let mut seen = HashSet::new();
    let entries = archive
        .entries()
        .with_context(|| format!("reading the bundle {}", file.display()))?;
    for entry in entries {
        let mut entry = entry
            .with_context(|| format!("reading the bundle {}: not a tar file", file.display()))?;
        let path = entry.path().context("a bundle entry's name")?.into_owned();
        let name = path.to_str().unwrap_or_default().to_owned();
        let plain = !name.is_empty()
            && name.len() <= MAX_NAME
            && name != "."
            && name != ".."
            && !name.contains(['/', '\\', '\0']);
        if !plain {
            bail!(
                "the bundle {} holds {:?}, which is not a plain file name; a bundle holds \
                 manifest.json, its images and root.vN.json files only",
                file.display(),
                path.display()
            );
        }
        if entry.header().entry_type() != tar::EntryType::Regular {
            bail!(
                "the bundle {} holds {name:?} as a {:?}, not a regular file",
                file.display(),
                entry.header().entry_type()
            );
        }
        if !seen.insert(name.clone()) {
            bail!("the bundle {} holds {name:?} twice", file.display());
        }
        if seen.len() > MAX_ENTRIES {
            bail!(
                "the bundle {} holds more than {MAX_ENTRIES} files",
                file.display()
            );
        }
        let target = into.join(&name);
        let mut out = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&target)
            .with_context(|| format!("writing {}", target.display()))?;
        std::io::copy(&mut entry, &mut out)
            .with_context(|| format!("unpacking {name} from {}", file.display()))?;
    }
    if seen.is_empty() {
        bail!("the bundle {} is empty", file.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_of(files: &[(&str, &[u8], tar::EntryType)]) -> tempfile::NamedTempFile {
        let f = tempfile::NamedTempFile::new().unwrap();
        let mut b = tar::Builder::new(f.reopen().unwrap());
        for (name, data, kind) in files {
            let mut h = tar::Header::new_gnu();
            // set_path refuses `..`; write the raw name as a hostile tool would.
            h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
            h.set_size(data.len() as u64);
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
        b.finish().unwrap();
        f
    }

    #[test]
    fn plain_files_are_unpacked() {
        let f = tar_of(&[
            ("manifest.json", b"{}", tar::EntryType::Regular),
            ("rootfs", b"image", tar::EntryType::Regular),
        ]);
        let dir = tempfile::tempdir().unwrap();
        unpack(f.path(), dir.path()).unwrap();
        assert_eq!(std::fs::read(dir.path().join("rootfs")).unwrap(), b"image");
    }

    #[test]
    fn paths_links_duplicates_and_garbage_are_refused() {
        for files in [
            vec![("../evil", &b"x"[..], tar::EntryType::Regular)],
            vec![("a/b", &b"x"[..], tar::EntryType::Regular)],
            vec![("/etc/passwd", &b"x"[..], tar::EntryType::Regular)],
            vec![("link", &b""[..], tar::EntryType::Symlink)],
            vec![("dir", &b""[..], tar::EntryType::Directory)],
            vec![
                ("rootfs", &b"x"[..], tar::EntryType::Regular),
                ("rootfs", &b"y"[..], tar::EntryType::Regular),
            ],
            vec![],
        ] {
            let f = tar_of(&files);
            let dir = tempfile::tempdir().unwrap();
            let e = unpack(f.path(), dir.path()).unwrap_err();
            assert!(!format!("{e:#}").is_empty());
            assert!(!dir.path().parent().unwrap().join("evil").exists());
        }
        let garbage = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(garbage.path(), vec![0x41u8; 2000]).unwrap();
        let dir = tempfile::tempdir().unwrap();
        assert!(unpack(garbage.path(), dir.path()).is_err());
    }
}
