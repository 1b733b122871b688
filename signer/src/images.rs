//! Image files: hashing them for a new manifest, and checking them against
//! a manifest with the engine's streaming check.
//!
//! Both paths read in fixed 256 KiB chunks (the engine's
//! [`CHUNK_BYTES`]), so memory stays flat whatever the image size, and
//! neither maps nor slurps the file.
//!
//! This module must never decide on its own whether an image matches a
//! manifest: that verdict is [`firmup_client::image::verify_reader`]'s.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read as _};
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use firmup_client::image::{CHUNK_BYTES, verify_reader};
use firmup_client::{ImageSpec, Sha256Digest};
use sha2::{Digest as _, Sha256};

use crate::exit;
use crate::progress;

/// An `--image` argument: `PATH`, or `TARGET=PATH` to choose the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageArg {
    /// Target slot or component, if given.
    pub target: Option<String>,
    /// The image file.
    pub path: PathBuf,
}

/// Parses `PATH` or `TARGET=PATH`. A prefix before `=` counts as a target
/// only if it contains no path separator, so `dir/a=b.bin` stays a path;
/// write `./a=b.bin` for a file in the current directory whose name holds
/// an `=`.
pub fn parse_image_arg(s: &str) -> Result<ImageArg, String> {
    if s.is_empty() {
        return Err("empty image path".into());
    }
    if let Some((target, path)) = s.split_once('=')
        && !target.is_empty()
        && !target.contains(['/', '\\'])
    {
        if path.is_empty() {
            return Err(format!("no path after {target}="));
        }
        return Ok(ImageArg {
            target: Some(target.to_string()),
            path: PathBuf::from(path),
        });
    }
    Ok(ImageArg {
        target: None,
        path: PathBuf::from(s),
    })
}

/// The name an image file gets in a manifest: its file name.
pub fn image_name(path: &Path) -> Result<String> {
    let name = path.file_name().and_then(|n| n.to_str()).with_context(|| {
        format!(
            "invalid image path ({}): no UTF-8 file name",
            path.display()
        )
    })?;
    Ok(name.to_string())
}

fn open_image(path: &Path) -> Result<(File, u64)> {
    open_file(path, "image")
}

/// Opens a regular file to stream; errors name it as `what`.
fn open_file(path: &Path, what: &str) -> Result<(File, u64)> {
    let ctx = || format!("cannot read {what} ({})", path.display());
    let file = File::open(path).with_context(ctx)?;
    let meta = file.metadata().with_context(ctx)?;
    if !meta.is_file() {
        return Err(anyhow::anyhow!("not a regular file")).with_context(ctx);
    }
    Ok((file, meta.len()))
}

/// Fails unless `path` is a regular file that can be opened.
pub fn check_readable(path: &Path) -> Result<()> {
    open_image(path).map(drop)
}

/// Hashes an image file in constant memory with a progress bar, returning
/// its length (bytes actually read) and SHA-256.
pub fn hash_file(path: &Path) -> Result<(u64, Sha256Digest)> {
    hash_artifact(path, "image")
}

/// [`hash_file`] for any release artifact (an SBOM, say); errors name the
/// file as `what`.
pub fn hash_artifact(path: &Path, what: &str) -> Result<(u64, Sha256Digest)> {
    let (mut file, size) = open_file(path, what)?;
    let bar = progress::bytes_bar(size, "hashing");
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK_BYTES];
    let mut total = 0u64;
    loop {
        let n = match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                bar.abandon();
                return Err(e).with_context(|| format!("cannot read {what} ({})", path.display()));
            }
        };
        hasher.update(&buf[..n]);
        total += n as u64;
        bar.set_position(total);
    }
    bar.finish_and_clear();
    if total != size {
        bail!(
            "{what} changed while it was being hashed ({}): {total} bytes read, {size} expected",
            path.display()
        );
    }
    Ok((total, Sha256Digest(hasher.finalize().into())))
}

/// Pairs every image of a manifest with the `--image` file of the same
/// file name. Every listed image needs a file, and every file must be
/// listed: checking fewer images than the release installs, or a file the
/// manifest does not sign, would give a verdict on something else than
/// what the user asked about.
pub fn match_images(specs: &[ImageSpec], paths: &[PathBuf]) -> Result<Vec<(ImageSpec, PathBuf)>> {
    let mut by_name: BTreeMap<String, PathBuf> = BTreeMap::new();
    for path in paths {
        let name = image_name(path)?;
        if let Some(previous) = by_name.insert(name.clone(), path.clone()) {
            bail!(
                "two --image files have the same file name {name:?} ({} and {})",
                previous.display(),
                path.display()
            );
        }
    }
    let mut pairs = Vec::with_capacity(specs.len());
    for spec in specs {
        let Some(path) = by_name.remove(&spec.name) else {
            bail!(
                "the manifest lists image {:?} ({} bytes) but no --image file has that name",
                spec.name,
                spec.length
            );
        };
        pairs.push((spec.clone(), path));
    }
    if let Some((name, path)) = by_name.into_iter().next() {
        bail!(
            "image file is not listed in the manifest ({}): the manifest has no image named {name:?}",
            path.display()
        );
    }
    Ok(pairs)
}

/// Checks one image file against its signed spec with the engine's
/// streaming check. Engine verdicts come back as [`exit::Rejected`].
pub fn check_image(spec: &ImageSpec, path: &Path) -> Result<Sha256Digest> {
    let (file, size) = open_image(path)?;
    let bar = progress::bytes_bar(size.min(spec.length), &spec.name);
    let result = verify_reader(spec, file, |pos| bar.set_position(pos));
    bar.finish_and_clear();
    result
        .map_err(exit::verdict)
        .with_context(|| format!("image {} ({})", spec.name, path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_args() {
        assert_eq!(
            parse_image_arg("fw.bin").unwrap(),
            ImageArg {
                target: None,
                path: "fw.bin".into()
            }
        );
        assert_eq!(
            parse_image_arg("rootfs=out/fw.bin").unwrap(),
            ImageArg {
                target: Some("rootfs".into()),
                path: "out/fw.bin".into()
            }
        );
        assert_eq!(parse_image_arg("./a=b").unwrap().target, None);
        assert!(parse_image_arg("rootfs=").is_err());
    }

    #[test]
    fn hashes_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fw.bin");
        let data: Vec<u8> = (0..CHUNK_BYTES * 2 + 5).map(|i| i as u8).collect();
        std::fs::write(&path, &data).unwrap();
        let (len, digest) = hash_file(&path).unwrap();
        assert_eq!(len, data.len() as u64);
        assert_eq!(digest, Sha256Digest::of(&data));
    }

    #[test]
    fn images_match_by_file_name_both_ways() {
        let spec = |name: &str| ImageSpec {
            name: name.into(),
            target: "firmware".into(),
            length: 1,
            sha256: Sha256Digest::of(b"x"),
        };
        let specs = vec![spec("a.bin"), spec("b.bin")];
        let ok = match_images(&specs, &["x/b.bin".into(), "y/a.bin".into()]).unwrap();
        assert_eq!(ok[0].1, PathBuf::from("y/a.bin"));
        let missing = match_images(&specs, &["a.bin".into()]).unwrap_err();
        assert!(missing.to_string().contains("b.bin"), "{missing}");
        let extra = match_images(&specs[..1], &["a.bin".into(), "c.bin".into()]).unwrap_err();
        assert!(extra.to_string().contains("c.bin"), "{extra}");
    }
}
