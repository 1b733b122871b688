//! `firmup-signer publish`: upload a signed release's images to a Firmup
//! server and publish its manifest.
//!
//! For every image the manifest lists (matched to `--image` by file name,
//! as `verify` does), it asks the server whether the image is already
//! stored (`HEAD /v1/uploads/{sha256}`) and uploads it only if not,
//! streaming it from disk (`PUT`), then posts the manifest envelope byte
//! for byte to `/v1/product-lines/{line}/releases`. The server checks the
//! digest of every upload and runs the verification engine on the
//! manifest; this command trusts its own reading of the manifest only to
//! know which files to send where.
//!
//! This command must never print or log the API token, never read an image
//! whole into memory, and never send anything but the manifest's exact
//! bytes.

use std::fmt;
use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context as _, Result, bail};
use firmup_client::manifest::{MANIFEST_PAYLOAD_TYPE, MAX_MANIFEST_BYTES};
use firmup_client::{Envelope, ImageSpec, Manifest};
use indicatif::ProgressBar;
use reqwest::StatusCode;
use reqwest::blocking::{Body, Client, Response};
use reqwest::header::CONTENT_TYPE;

use crate::exit::Rejected;
use crate::fsutil;
use crate::images;
use crate::progress;

/// Man-page text of this subcommand (`--help`).
pub const LONG_ABOUT: &str = "\
Upload a signed release's images to a Firmup server and publish its manifest.

Every image the manifest lists must be given with --image (matched by file
name, as verify does) and must have exactly the signed length. For each one
the server is asked whether it already has it (HEAD /v1/uploads/SHA256);
missing images are uploaded, streamed from disk with a progress bar. The
server checks every upload's SHA-256. Then the manifest is posted, byte for
byte, to /v1/product-lines/LINE/releases (LINE from the manifest), where the
server verifies it with its trust root exactly as a device would.

Publishing is idempotent: running it again uploads nothing and prints
`already published ...`. The same version with a different signed payload
is refused (version_exists); add co-signatures before publishing, or publish
the co-signed manifest again (it is the same release).

The API token (role release_engineer) comes from --token or, better, from
the FIRMUP_TOKEN environment variable (a command-line argument is visible to
other users in the process list). It is never printed.

Prints `published LINE VERSION (CHANNEL)` or `already published ...` and
exits 0. A refusal by the server prints `REJECTED (code): message` on stdout
and exits 1 (e.g. threshold_not_met, image_digest_mismatch, version_exists,
manifest_version_not_increasing, wrong_role). A missing or mismatched file,
an unreachable server or a server error exits 3.

Example:
    export FIRMUP_TOKEN=fu_...
    firmup-signer publish --server https://firmup.example.com \\
        --manifest fw.manifest.json --image build/fw.bin --image build/boot.bin";

/// Flags of `publish`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Base URL of the Firmup server, e.g. `https://firmup.example.com`.
    #[arg(long, value_name = "URL", value_parser = parse_server)]
    pub server: ServerUrl,

    /// The signed manifest to publish (as written by `sign`).
    #[arg(long, value_name = "FILE")]
    pub manifest: PathBuf,

    /// An image file listed in the manifest (matched by file name). Repeatable;
    /// every image the manifest lists must be given.
    #[arg(long = "image", value_name = "PATH", required = true)]
    pub images: Vec<PathBuf>,

    /// Offer the release to every device regardless of warranty, contract
    /// or end of life (e.g. a critical security fix).
    #[arg(long)]
    pub free_for_all: bool,

    /// API token with role release_engineer (prefer the environment variable).
    #[arg(
        long,
        value_name = "TOKEN",
        env = "FIRMUP_TOKEN",
        hide_env_values = true,
        value_parser = parse_token
    )]
    pub token: Token,
}

/// An API token. Its `Debug` output is redacted, so it cannot leak through
/// a debug print of the arguments.
#[derive(Clone)]
pub struct Token(String);

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Token(<redacted>)")
    }
}

fn parse_token(s: &str) -> Result<Token, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("the token is empty".into());
    }
    Ok(Token(t.to_string()))
}

/// A validated server base URL, without a trailing slash.
#[derive(Debug, Clone)]
pub struct ServerUrl(String);

fn parse_server(s: &str) -> Result<ServerUrl, String> {
    let url = reqwest::Url::parse(s)
        .map_err(|e| format!("{s:?} is not a URL like https://firmup.example.com: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{s:?} must start with https:// (or http://)"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("put credentials in FIRMUP_TOKEN, not in the URL".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!(
            "{s:?} must be a base URL, without ?query or #fragment"
        ));
    }
    Ok(ServerUrl(url.as_str().trim_end_matches('/').to_string()))
}

impl ServerUrl {
    fn join(&self, path: &str) -> String {
        format!("{}{path}", self.0)
    }

    fn is_plain_http_remote(&self) -> bool {
        reqwest::Url::parse(&self.0).is_ok_and(|u| {
            u.scheme() == "http"
                && !matches!(
                    u.host_str(),
                    Some("localhost" | "127.0.0.1" | "[::1]" | "::1")
                )
        })
    }
}

/// Runs `publish`. A refusal by the server (a 4xx answer) is this
/// command's verdict, reported as [`Rejected`] (exit 1), like a rejection by
/// the engine in `verify`.
pub fn run(args: Args) -> Result<()> {
    publish(args)
}

fn publish(args: Args) -> Result<()> {
    let bytes = fsutil::read_document(&args.manifest, MAX_MANIFEST_BYTES, "manifest envelope")?;
    let manifest = parse_manifest(&bytes)
        .with_context(|| format!("invalid manifest ({})", args.manifest.display()))?;
    let pairs = images::match_images(&manifest.images, &args.images).with_context(|| {
        format!(
            "--image files do not match the manifest ({})",
            args.manifest.display()
        )
    })?;
    // Every file is checked before anything is sent, so a wrong file is
    // found before a long upload of the others.
    for (spec, path) in &pairs {
        check_length(spec, path)?;
    }
    if args.server.is_plain_http_remote() {
        eprintln!(
            "warning: {} is plain http: the token and images travel unencrypted",
            args.server.0
        );
    }

    let client = Client::builder()
        .user_agent(concat!("firmup-signer/", env!("CARGO_PKG_VERSION")))
        .connect_timeout(Duration::from_secs(30))
        // A redirect would turn the POST into a GET and could carry the
        // token elsewhere: refuse to follow any.
        .redirect(reqwest::redirect::Policy::none())
        // No overall timeout: an upload of gigabytes takes as long as it
        // takes. Short requests set their own.
        .timeout(None::<Duration>)
        .build()
        .context("cannot set up the HTTP client")?;
    let token = &args.token.0;

    for (spec, path) in &pairs {
        upload_if_missing(&client, &args.server, token, spec, path)?;
    }

    let url = args.server.join(&format!(
        "/v1/product-lines/{}/releases?free_for_all={}",
        manifest.product_line, args.free_for_all
    ));
    let response = client
        .post(&url)
        .timeout(Duration::from_secs(120))
        .bearer_auth(token)
        .header(CONTENT_TYPE, "application/json")
        .body(bytes)
        .send()
        .with_context(|| format!("cannot reach the server ({url})"))?;
    let what = format!(
        "{} {} ({})",
        manifest.product_line, manifest.version, manifest.channel
    );
    match response.status() {
        StatusCode::CREATED => println!("published {what}"),
        StatusCode::OK => println!("already published {what}"),
        _ => return Err(server_error(response, "publishing the manifest")),
    }
    Ok(())
}

/// Reads the manifest's payload to learn the product line and images. The
/// signatures are not checked here: the server does that with its trust
/// root, and a lie here can only make the upload or the publish fail.
fn parse_manifest(bytes: &[u8]) -> Result<Manifest> {
    let envelope = Envelope::from_slice(
        bytes,
        MAX_MANIFEST_BYTES,
        "manifest envelope",
        MANIFEST_PAYLOAD_TYPE,
    )?;
    Ok(Manifest::from_payload(&envelope.payload_bytes()?)?)
}

fn check_length(spec: &ImageSpec, path: &Path) -> Result<u64> {
    let ctx = || format!("cannot read image ({})", path.display());
    let meta = std::fs::metadata(path).with_context(ctx)?;
    if !meta.is_file() {
        return Err(anyhow::anyhow!("not a regular file")).with_context(ctx);
    }
    if meta.len() != spec.length {
        bail!(
            "image {} is {} bytes but the manifest signs {} bytes ({}): is it the right file?",
            spec.name,
            meta.len(),
            spec.length,
            path.display()
        );
    }
    Ok(meta.len())
}

fn upload_if_missing(
    client: &Client,
    server: &ServerUrl,
    token: &str,
    spec: &ImageSpec,
    path: &Path,
) -> Result<()> {
    let url = server.join(&format!("/v1/uploads/{}", spec.sha256));
    let head = client
        .head(&url)
        .timeout(Duration::from_secs(60))
        .bearer_auth(token)
        .send()
        .with_context(|| format!("cannot reach the server ({url})"))?;
    match head.status() {
        StatusCode::OK => {
            eprintln!("image {} already on the server", spec.name);
            return Ok(());
        }
        StatusCode::NOT_FOUND => {}
        _ => return Err(server_error(head, &format!("checking image {}", spec.name))),
    }

    let file =
        File::open(path).with_context(|| format!("cannot read image ({})", path.display()))?;
    let bar = progress::bytes_bar(spec.length, &format!("uploading {}", spec.name));
    let reader = ProgressReader {
        // Exactly the signed length: if the file grew meanwhile, the extra
        // bytes are not sent (and the server's digest check decides).
        inner: file.take(spec.length),
        bar: bar.clone(),
        done: 0,
    };
    let sent = client
        .put(&url)
        .bearer_auth(token)
        .header(CONTENT_TYPE, "application/octet-stream")
        .body(Body::sized(reader, spec.length))
        .send();
    bar.finish_and_clear();
    let response = sent.with_context(|| format!("uploading image {} ({url})", spec.name))?;
    match response.status() {
        StatusCode::CREATED | StatusCode::OK => {
            eprintln!("uploaded image {} ({} bytes)", spec.name, spec.length);
            Ok(())
        }
        _ => Err(server_error(
            response,
            &format!("uploading image {}", spec.name),
        )),
    }
}

/// Streams a file into a request body while driving a progress bar.
struct ProgressReader<R> {
    inner: R,
    bar: ProgressBar,
    done: u64,
}

impl<R: Read> Read for ProgressReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.done += n as u64;
        self.bar.set_position(self.done);
        Ok(n)
    }
}

/// Largest error body read from the server.
const MAX_ERROR_BODY: u64 = 64 * 1024;

/// Turns a non-success answer into the command's error: 4xx is the
/// server's verdict (exit 1), anything else a server or network problem
/// (exit 3).
fn server_error(response: Response, doing: &str) -> anyhow::Error {
    let status = response.status();
    let mut body = Vec::new();
    // A body that cannot be read leaves the status as the only detail.
    let _ = response.take(MAX_ERROR_BODY).read_to_end(&mut body);
    let (code, message) = error_fields(status, &body);
    // A 404 for the route itself means the URL is not a Firmup server (or
    // a wrong base path): the user's input is wrong, not the artifact.
    if status == StatusCode::NOT_FOUND && (code == "unknown_route" || code.starts_with("http_")) {
        return anyhow::anyhow!(
            "no Firmup API at this address (404 while {doing}); check --server"
        );
    }
    if status.is_client_error() {
        anyhow::Error::new(Rejected {
            code,
            message: format!("{message} ({doing})"),
        })
    } else {
        anyhow::anyhow!("server answered {status} while {doing}: {message} ({code})")
    }
}

/// The code and message of the server's JSON error envelope, or a code
/// made from the status when the body is not one (HEAD answers, proxies).
fn error_fields(status: StatusCode, body: &[u8]) -> (String, String) {
    let parsed: Option<(String, String)> = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| {
            let e = v.get("error")?;
            Some((
                e.get("code")?.as_str()?.to_string(),
                e.get("message")?.as_str()?.to_string(),
            ))
        });
    parsed.unwrap_or_else(|| {
        let hint = match status {
            StatusCode::UNAUTHORIZED => "the token is missing, unknown, revoked or expired",
            StatusCode::FORBIDDEN => "the token's role may not do this (release_engineer needed)",
            _ => "no details given",
        };
        (format!("http_{}", status.as_u16()), hint.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_are_checked() {
        assert_eq!(
            parse_server("https://fw.example.com/").unwrap().0,
            "https://fw.example.com"
        );
        assert_eq!(
            parse_server("http://127.0.0.1:8080")
                .unwrap()
                .join("/v1/uploads/x"),
            "http://127.0.0.1:8080/v1/uploads/x"
        );
        assert!(parse_server("ftp://fw.example.com").is_err());
        assert!(parse_server("https://me:secret@fw.example.com").is_err());
        assert!(parse_server("fw.example.com").is_err());
        assert!(
            parse_server("http://fw.example.com")
                .unwrap()
                .is_plain_http_remote()
        );
        assert!(
            !parse_server("http://localhost:1")
                .unwrap()
                .is_plain_http_remote()
        );
    }

    #[test]
    fn tokens_never_show_in_debug_output() {
        let t = parse_token(" fu_secret ").unwrap();
        assert_eq!(t.0, "fu_secret");
        assert!(!format!("{t:?}").contains("fu_secret"));
        assert!(parse_token("  ").is_err());
    }

    #[test]
    fn error_envelopes_are_read() {
        let body = br#"{"error":{"code":"version_exists","message":"taken"}}"#;
        assert_eq!(
            error_fields(StatusCode::CONFLICT, body),
            ("version_exists".into(), "taken".into())
        );
        let (code, message) = error_fields(StatusCode::FORBIDDEN, b"");
        assert_eq!(code, "http_403");
        assert!(message.contains("role"), "{message}");
    }

    #[test]
    fn wrong_length_images_are_input_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fw.bin");
        std::fs::write(&path, b"abc").unwrap();
        let spec = ImageSpec {
            name: "fw.bin".into(),
            target: "firmware".into(),
            length: 4,
            sha256: firmup_client::Sha256Digest::of(b"abcd"),
        };
        let err = check_length(&spec, &path).unwrap_err();
        assert!(err.to_string().contains("3 bytes"), "{err}");
        assert!(err.downcast_ref::<Rejected>().is_none());
    }
}
