//! [`FileTransport`]: a directory (a USB stick, an unpacked offline bundle)
//! answering like a range-capable HTTP server.
//!
//! A URL is mapped to a file below the root directory: the query is
//! dropped, a leading `/` is ignored (so a bundle can mirror the server's
//! layout, `v1/images/<sha256>`), and every path component must be a plain
//! name: `..`, absolute paths, `\` and NUL are refused, so a URL from an
//! untrusted answer can never name a file outside the root. Symbolic links
//! inside the root are followed; whoever writes the bundle decides them,
//! and the bytes are verified like any others.
//!
//! This transport must never write to the root directory.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Component, Path, PathBuf};

use super::{JsonReply, RangeReply, Transport, read_capped};
use crate::error::{Error, Result};

/// Reads files from a root directory; see the module documentation.
#[derive(Debug, Clone)]
pub struct FileTransport {
    root: PathBuf,
}

impl FileTransport {
    /// A transport serving the files below `root`.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        FileTransport { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The file a URL names, after the checks in the module documentation.
    pub fn resolve(&self, url: &str) -> Result<PathBuf> {
        let path = url.split_once('?').map_or(url, |(p, _)| p);
        let path = path.strip_prefix('/').unwrap_or(path);
        let refuse = |why: &str| Error::invalid("url", format!("{path:?} {why}"));
        if path.is_empty() {
            return Err(refuse("names no file"));
        }
        if path.contains('\\') || path.contains('\0') {
            return Err(refuse("contains a backslash or NUL"));
        }
        let rel = Path::new(path);
        if !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(refuse("must be a relative path of plain names (no `..`)"));
        }
        Ok(self.root.join(rel))
    }

    fn open(&self, url: &str) -> Result<Option<(File, u64, PathBuf)>> {
        let path = self.resolve(url)?;
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| Error::io(format!("reading metadata of {}", path.display()), e))?;
        if !meta.is_file() {
            return Ok(None);
        }
        Ok(Some((file, meta.len(), path)))
    }
}

fn reply(
    status: u16,
    content_range: Option<String>,
    len: u64,
    body: Box<dyn Read + Send>,
) -> RangeReply {
    RangeReply {
        status,
        content_range,
        content_length: Some(len),
        etag: None,
        retry_after: None,
        body,
    }
}

impl Transport for FileTransport {
    /// 200 with the whole file for `from == 0`; 206 with `Content-Range`
    /// from `from` otherwise; 416 with `bytes */LEN` when `from` is at or
    /// past the end; 404 when there is no such file. `if_range` is ignored:
    /// a file has no ETag, and the final sha256 check covers a file that
    /// changed between attempts.
    fn get_range(&self, url: &str, from: u64, _if_range: Option<&str>) -> Result<RangeReply> {
        let Some((mut file, len, path)) = self.open(url)? else {
            return Ok(reply(404, None, 0, Box::new(io::empty())));
        };
        if from == 0 {
            return Ok(reply(200, None, len, Box::new(file)));
        }
        if from >= len {
            return Ok(reply(
                416,
                Some(format!("bytes */{len}")),
                0,
                Box::new(io::empty()),
            ));
        }
        file.seek(SeekFrom::Start(from))
            .map_err(|e| Error::io(format!("seeking in {}", path.display()), e))?;
        let range = format!("bytes {from}-{}/{len}", len - 1);
        Ok(reply(206, Some(range), len - from, Box::new(file)))
    }

    /// Reads the file, at most `max_response` bytes (else
    /// [`Error::TooLarge`]); 404 when there is no such file. `bearer` is
    /// ignored.
    fn get_json(&self, url: &str, _bearer: Option<&str>, max_response: u64) -> Result<JsonReply> {
        let Some((mut file, _, _)) = self.open(url)? else {
            return Ok(JsonReply {
                status: 404,
                retry_after: None,
                body: Vec::new(),
            });
        };
        let body = read_capped(&mut file, max_response, "bundle document")?;
        Ok(JsonReply {
            status: 200,
            retry_after: None,
            body,
        })
    }

    /// Always [`Error::Unsupported`]: an offline bundle cannot be posted to
    /// (reports are queued by the caller until a server is reachable).
    fn post_json(
        &self,
        url: &str,
        _bearer: Option<&str>,
        _body: &[u8],
        _max_response: u64,
    ) -> Result<JsonReply> {
        Err(Error::Unsupported {
            what: format!("POST {} on a file transport", super::redact_url(url)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_stay_inside_the_root() {
        let t = FileTransport::new("/bundle");
        assert_eq!(
            t.resolve("/v1/images/ab?sub=1&sig=x").unwrap(),
            Path::new("/bundle/v1/images/ab")
        );
        assert_eq!(t.resolve("fw.bin").unwrap(), Path::new("/bundle/fw.bin"));
        for bad in [
            "",
            "/",
            "../etc/passwd",
            "a/../../b",
            "//etc/passwd",
            "a\\b",
            "./a",
            "a\0b",
        ] {
            let err = t.resolve(bad).unwrap_err();
            assert_eq!(err.code(), "invalid_field", "{bad:?}");
        }
    }
}
