//! `firmup-signer publish`: upload a signed release's images to a Firmup
//! server and publish its manifest.
//!
//! For every image the manifest lists (matched to `--image` by file name,
//! as `verify` does), it asks the server whether the image is already
//! stored (`HEAD /v1/uploads/{sha256}`) and uploads it only if not,
//! streaming it from disk (`PUT`), then posts the manifest envelope byte
//! for byte to `/v1/product-lines/{line}/releases`. With `--sbom` it then
//! uploads the release's SBOM (`PUT
//! /v1/product-lines/{line}/releases/{channel}/{version}/sbom`), after
//! checking before anything is sent that the manifest signs exactly that
//! file. The server checks the digest of every upload and runs the
//! verification engine on the manifest; this command trusts its own
//! reading of the manifest only to know which files to send where.
//!
//! This command must never print or log the API token, never read an image
//! or an SBOM whole into memory, and never send anything but the
//! manifest's exact bytes.

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
use crate::sbom;

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

With --sbom FILE, once the release is published its SBOM is uploaded to
/v1/product-lines/LINE/releases/CHANNEL/VERSION/sbom. The manifest must sign
an SBOM reference (`sign --sbom`) whose length and SHA-256 the file matches;
this is checked before anything is sent. If the SBOM upload fails after the
publish, run the same command again: the release is already published and
only the SBOM is sent.

Publishing is idempotent: running it again uploads nothing and prints
`already published ...`. The same version with a different signed payload
is refused (version_exists); add co-signatures before publishing, or publish
the co-signed manifest again (it is the same release).

The API token (role release_engineer) comes from --token or, better, from
the FIRMUP_TOKEN environment variable (a command-line argument is visible to
other users in the process list). It is never printed.

With --rollout PHASES (and --rollout-group, --failure-threshold,
--min-sample, --soak), the server starts a staged rollout of the release in
the same transaction as the publish, so the release is never offered to
every device first; the phases are checked here before anything is sent.
Without it, every entitled device is offered the release at once. Rollouts
are then followed and changed with the staff CLI (`firmup rollout ...`).

Prints `published LINE VERSION (CHANNEL)` (with a rollout, then `rollout ID
running: phase 1/N (P%)`) or `already published ...` and exits 0. A refusal by the server prints `REJECTED (code): message` on stdout
and exits 1 (e.g. threshold_not_met, image_digest_mismatch, version_exists,
manifest_version_not_increasing, wrong_role, and for the SBOM sbom_mismatch or
no_sbom_signed). A missing or mismatched file (an SBOM the manifest does not
sign included), an unreachable server or a server error exits 3.

Examples:
    export FIRMUP_TOKEN=fu_...
    firmup-signer publish --server https://firmup.example.com \\
        --manifest fw.manifest.json --image build/fw.bin --image build/boot.bin \\
        --rollout 1,10,50,100 --soak 24h
    firmup-signer publish --server https://firmup.example.com \\
        --manifest fw.manifest.json --image build/fw.bin --sbom build/sbom.spdx.json";

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

    /// The release's SBOM, uploaded after the publish; the manifest must
    /// sign its length and SHA-256 (`sign --sbom`).
    #[arg(long, value_name = "FILE")]
    pub sbom: Option<PathBuf>,

    /// Offer the release to every device regardless of warranty, contract
    /// or end of life (e.g. a critical security fix).
    #[arg(long)]
    pub free_for_all: bool,

    /// Start a staged rollout with the publish, in the same transaction (the
    /// release is never offered to every device first): its phases, shares
    /// of devices in percent, strictly increasing, e.g. `1,10,50,100`.
    #[arg(long, value_name = "PERCENT,...", value_parser = parse_phases)]
    pub rollout: Option<String>,

    /// With --rollout: only devices of this group take part.
    #[arg(long, value_name = "GROUP", requires = "rollout")]
    pub rollout_group: Option<String>,

    /// With --rollout: a failure rate above this pauses the rollout by
    /// itself, in percent (server default 5).
    #[arg(long, value_name = "PERCENT", requires = "rollout")]
    pub failure_threshold: Option<f64>,

    /// With --rollout: installs attempted in a phase before its failure
    /// rate counts (server default 20).
    #[arg(long, value_name = "N", requires = "rollout")]
    pub min_sample: Option<u32>,

    /// With --rollout: each phase advances by itself after this long under
    /// the threshold (`30m`, `24h`, `7d`); without it, advance by hand.
    #[arg(long, value_name = "DURATION", requires = "rollout", value_parser = humantime::parse_duration)]
    pub soak: Option<Duration>,

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

/// Checks rollout phases before anything is sent: 1 to 20 whole
/// percentages from 1 to 100, strictly increasing. Gives them as the query
/// value, `1,10,50,100`.
fn parse_phases(s: &str) -> Result<String, String> {
    let bad = |why: String| format!("--rollout {s:?}: {why}; e.g. --rollout 1,10,50,100");
    let mut phases: Vec<u32> = Vec::new();
    for part in s.split(',') {
        let p: u32 = part
            .trim()
            .parse()
            .map_err(|_| bad(format!("{part:?} is not a whole percentage")))?;
        if !(1..=100).contains(&p) {
            return Err(bad(format!("{p}% is not from 1 to 100")));
        }
        if let Some(prev) = phases.last()
            && *prev >= p
        {
            return Err(bad(format!("{p}% does not increase on {prev}%")));
        }
        phases.push(p);
    }
    if phases.len() > 20 {
        return Err(bad("at most 20 phases".into()));
    }
    Ok(phases
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(","))
}

/// The publish request's query: `free_for_all` and the rollout options.
fn publish_query(args: &Args) -> Vec<(&'static str, String)> {
    let mut q = vec![("free_for_all", args.free_for_all.to_string())];
    if let Some(phases) = &args.rollout {
        q.push(("rollout", phases.clone()));
        if let Some(g) = &args.rollout_group {
            q.push(("rollout_group", g.clone()));
        }
        if let Some(t) = args.failure_threshold {
            q.push(("failure_threshold_percent", t.to_string()));
        }
        if let Some(n) = args.min_sample {
            q.push(("min_sample", n.to_string()));
        }
        if let Some(d) = args.soak {
            q.push(("soak_secs", d.as_secs().max(1).to_string()));
        }
    }
    q
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
    if let Some(path) = &args.sbom {
        sbom::check_matches(manifest.sbom.as_ref(), path, &args.manifest)?;
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

    let mut url = reqwest::Url::parse(&args.server.join(&format!(
        "/v1/product-lines/{}/releases",
        manifest.product_line
    )))
    .context("the server URL and product line do not make a URL")?;
    url.query_pairs_mut().extend_pairs(publish_query(&args));
    let response = client
        .post(url.clone())
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
        StatusCode::CREATED => {
            println!("published {what}");
            if args.rollout.is_some() {
                let answer: serde_json::Value = response
                    .json()
                    .context("the server's answer to the publish is not JSON")?;
                println!("{}", rollout_line(&answer["rollout"]));
            }
        }
        StatusCode::OK => {
            println!("already published {what}");
            if args.rollout.is_some() {
                eprintln!(
                    "note: no rollout started, the release existed already; start one with \
                     `firmup rollout start`"
                );
            }
        }
        _ => return Err(server_error(response, "publishing the manifest")),
    }
    if let Some(path) = &args.sbom {
        upload_sbom(&client, &args.server, token, &manifest, path)?;
    }
    Ok(())
}

/// Where a release's SBOM goes.
fn sbom_path(m: &Manifest) -> String {
    format!(
        "/v1/product-lines/{}/releases/{}/{}/sbom",
        m.product_line, m.channel, m.version
    )
}

/// Uploads the SBOM of a published release, streamed from disk. It was
/// checked against the manifest's signed reference before the publish; the
/// server checks it again (`sbom_mismatch`).
fn upload_sbom(
    client: &Client,
    server: &ServerUrl,
    token: &str,
    manifest: &Manifest,
    path: &Path,
) -> Result<()> {
    let Some(signed) = &manifest.sbom else {
        bail!("internal error: the manifest signs no SBOM; it was checked before publishing");
    };
    let url = server.join(&sbom_path(manifest));
    let doing = "uploading the SBOM (the release itself is published; run the command again \
                 to retry)";
    let file =
        File::open(path).with_context(|| format!("cannot read SBOM ({})", path.display()))?;
    let response = client
        .put(&url)
        .bearer_auth(token)
        .header(CONTENT_TYPE, "application/json")
        // Exactly the signed length, as for images.
        .body(Body::sized(file.take(signed.length), signed.length))
        .send()
        .with_context(|| format!("cannot reach the server ({url}) while {doing}"))?;
    let name = path.display();
    match response.status() {
        StatusCode::NO_CONTENT => {
            eprintln!(
                "uploaded SBOM {name} ({}, {} bytes)",
                signed.format.as_str(),
                signed.length
            );
            Ok(())
        }
        StatusCode::OK => {
            eprintln!("SBOM {name} already on the server");
            Ok(())
        }
        StatusCode::NOT_FOUND | StatusCode::METHOD_NOT_ALLOWED => {
            let status = response.status();
            let mut body = Vec::new();
            let _ = response.take(MAX_ERROR_BODY).read_to_end(&mut body);
            let (code, message) = error_fields(status, &body);
            if matches!(
                code.as_str(),
                "unknown_route" | "method_not_allowed" | "http_404" | "http_405"
            ) {
                bail!(
                    "the server does not take SBOM uploads ({status} while {doing}): it predates \
                     them; the release is published without its SBOM"
                );
            }
            Err(anyhow::Error::new(Rejected {
                code,
                message: format!("{message} ({doing})"),
            }))
        }
        _ => Err(server_error(response, doing)),
    }
}

/// `rollout ro_... running: phase 1/4 (1%)`, from the publish answer's
/// rollout.
fn rollout_line(r: &serde_json::Value) -> String {
    let phases = r["phases"].as_array().map_or(0, Vec::len);
    format!(
        "rollout {} {}: phase {}/{phases} ({}%)",
        r["id"].as_str().unwrap_or("-"),
        r["state"].as_str().unwrap_or("-"),
        r["phase"].as_u64().unwrap_or(0) + 1,
        r["percent"].as_u64().unwrap_or(0)
    )
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
    use clap::Parser as _;

    use super::*;

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: Args,
    }

    fn args(extra: &[&str]) -> Result<Args, clap::Error> {
        let mut argv = vec![
            "publish",
            "--server",
            "http://127.0.0.1:1",
            "--manifest",
            "m.json",
            "--image",
            "fw.bin",
            "--token",
            "t",
        ];
        argv.extend_from_slice(extra);
        Cli::try_parse_from(argv).map(|c| c.args)
    }

    #[test]
    fn rollout_phases_are_checked_before_anything_is_sent() {
        assert_eq!(parse_phases("1, 10,50,100").unwrap(), "1,10,50,100");
        for (bad, says) in [
            ("10,5", "does not increase"),
            ("0,100", "not from 1 to 100"),
            ("1,101", "not from 1 to 100"),
            ("1;10", "not a whole percentage"),
            ("", "not a whole percentage"),
        ] {
            let e = parse_phases(bad).unwrap_err();
            assert!(e.contains(says) && e.contains("1,10,50,100"), "{bad}: {e}");
        }
        assert!(
            parse_phases(
                &(1..=21)
                    .map(|p| p.to_string())
                    .collect::<Vec<_>>()
                    .join(",")
            )
            .is_err()
        );
    }

    #[test]
    fn rollout_options_become_the_publish_query_and_need_phases() {
        let a = args(&[
            "--rollout",
            "1,50,100",
            "--rollout-group",
            "studio",
            "--failure-threshold",
            "2.5",
            "--min-sample",
            "30",
            "--soak",
            "24h",
        ])
        .unwrap();
        assert_eq!(
            publish_query(&a),
            vec![
                ("free_for_all", "false".to_string()),
                ("rollout", "1,50,100".into()),
                ("rollout_group", "studio".into()),
                ("failure_threshold_percent", "2.5".into()),
                ("min_sample", "30".into()),
                ("soak_secs", "86400".into()),
            ]
        );
        assert_eq!(
            publish_query(&args(&[]).unwrap()),
            vec![("free_for_all", "false".to_string())]
        );
        for alone in [
            ["--min-sample", "3"],
            ["--soak", "1h"],
            ["--rollout-group", "g"],
        ] {
            let e = args(&alone).expect_err("refused without --rollout");
            assert_eq!(
                e.kind(),
                clap::error::ErrorKind::MissingRequiredArgument,
                "{alone:?}"
            );
        }
        assert!(args(&["--rollout", "50,10"]).is_err());
    }

    #[test]
    fn the_rollout_line_names_id_state_and_phase() {
        let r = serde_json::json!({ "id": "ro_1", "state": "running", "phase": 0,
                                    "phases": [1, 10, 100], "percent": 1 });
        assert_eq!(rollout_line(&r), "rollout ro_1 running: phase 1/3 (1%)");
    }

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

    /// One request as the stand-in server saw it.
    #[derive(Debug)]
    struct Seen {
        method: String,
        path: String,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    }

    impl Seen {
        fn header(&self, name: &str) -> Option<&str> {
            self.headers
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        }
    }

    /// A stand-in for the Firmup server on a loopback port: answers one
    /// request per connection with the next of `answers` (status and JSON
    /// body) and hands back what it was sent (what came within 20 seconds).
    /// It checks nothing itself: the tests look at the requests.
    fn stand_in(answers: Vec<(u16, &'static str)>) -> (String, std::thread::JoinHandle<Vec<Seen>>) {
        use std::io::{BufRead as _, BufReader, Write as _};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let handle = std::thread::spawn(move || {
            let mut seen = Vec::new();
            // Never waits for ever: a client that stops early ends the test
            // with fewer requests seen, not a hang.
            listener.set_nonblocking(true).unwrap();
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            for (status, body) in answers {
                let stream = loop {
                    match listener.accept() {
                        Ok((stream, _)) => break Some(stream),
                        Err(_) if std::time::Instant::now() < deadline => {
                            std::thread::sleep(Duration::from_millis(10));
                        }
                        Err(_) => break None,
                    }
                };
                let Some(stream) = stream else { break };
                stream.set_nonblocking(false).unwrap();
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                reader.read_line(&mut line).unwrap();
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap().to_string();
                let path = parts.next().unwrap().to_string();
                let mut headers = Vec::new();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap();
                    headers.push((k.trim().to_string(), v.trim().to_string()));
                }
                let length: usize = headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
                    .map_or(0, |(_, v)| v.parse().unwrap());
                let mut request_body = vec![0; length];
                reader.read_exact(&mut request_body).unwrap();
                seen.push(Seen {
                    method,
                    path,
                    headers,
                    body: request_body,
                });
                let mut stream = stream;
                let length_header = if status == 204 {
                    String::new()
                } else {
                    format!("Content-Length: {}\r\n", body.len())
                };
                write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{length_header}\
                     Connection: close\r\n\r\n{body}"
                )
                .unwrap();
            }
            seen
        });
        (url, handle)
    }

    /// A signed TEST-ONLY release whose manifest references `sbom`, written
    /// to `dir` with its image; returns the manifest's path.
    fn release_with_sbom(dir: &Path, sbom: &[u8]) -> PathBuf {
        let mut b = firmup_fixtures::ReleaseBuilder::standard();
        b.manifest.sbom = Some(firmup_client::SbomRef {
            format: firmup_client::SbomFormat::Cyclonedx,
            length: sbom.len() as u64,
            sha256: firmup_client::Sha256Digest::of(sbom),
        });
        let release = b.build();
        std::fs::write(dir.join("firmware.img"), &release.image).unwrap();
        let manifest = dir.join("fw.manifest.json");
        std::fs::write(&manifest, &release.envelope).unwrap();
        manifest
    }

    fn sbom_args(server: &str, dir: &Path, sbom: &Path) -> Args {
        Cli::try_parse_from([
            "publish",
            "--server",
            server,
            "--manifest",
            dir.join("fw.manifest.json").to_str().unwrap(),
            "--image",
            dir.join("firmware.img").to_str().unwrap(),
            "--sbom",
            sbom.to_str().unwrap(),
            "--token",
            "t",
        ])
        .unwrap()
        .args
    }

    const SBOM: &[u8] = br#"{"bomFormat": "CycloneDX", "specVersion": "1.5", "components": []}"#;

    #[test]
    fn the_sbom_is_uploaded_after_the_publish_with_the_same_token() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        release_with_sbom(d, SBOM);
        let sbom = d.join("bom.json");
        std::fs::write(&sbom, SBOM).unwrap();
        let (url, server) = stand_in(vec![(200, ""), (201, "{}"), (204, "")]);
        run(sbom_args(&url, d, &sbom)).unwrap();
        let seen = server.join().unwrap();
        let methods: Vec<&str> = seen.iter().map(|r| r.method.as_str()).collect();
        assert_eq!(methods, ["HEAD", "POST", "PUT"]);
        let put = &seen[2];
        assert_eq!(
            put.path,
            "/v1/product-lines/encoders/releases/stable/2.1.0/sbom"
        );
        assert_eq!(put.header("content-type"), Some("application/json"));
        assert_eq!(put.header("authorization"), Some("Bearer t"));
        assert_eq!(put.body, SBOM);

        // Already stored (200) is success too; a refusal is the server's
        // verdict (exit 1), with its code.
        let (url, server) = stand_in(vec![(200, ""), (200, "{}"), (200, "")]);
        run(sbom_args(&url, d, &sbom)).unwrap();
        assert_eq!(server.join().unwrap().len(), 3);
        let mismatch = r#"{"error":{"code":"sbom_mismatch","message":"not the signed SBOM"}}"#;
        let (url, server) = stand_in(vec![(200, ""), (200, "{}"), (422, mismatch)]);
        let err = run(sbom_args(&url, d, &sbom)).unwrap_err();
        assert_eq!(server.join().unwrap().len(), 3);
        let rejected = err.downcast_ref::<Rejected>().expect("a verdict");
        assert_eq!(rejected.code, "sbom_mismatch");
        assert!(
            rejected.message.contains("release itself is published"),
            "{rejected}"
        );
        // A server without the endpoint: said so, not "check --server".
        let unknown = r#"{"error":{"code":"unknown_route","message":"no such endpoint"}}"#;
        let (url, server) = stand_in(vec![(200, ""), (200, "{}"), (404, unknown)]);
        let err = run(sbom_args(&url, d, &sbom)).unwrap_err();
        assert_eq!(server.join().unwrap().len(), 3);
        assert!(err.downcast_ref::<Rejected>().is_none());
        assert!(
            err.to_string().contains("does not take SBOM uploads"),
            "{err}"
        );
    }

    #[test]
    fn an_sbom_the_manifest_does_not_sign_is_refused_before_anything_is_sent() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        release_with_sbom(d, SBOM);
        let sbom = d.join("bom.json");
        // Nothing listens on port 1: reaching the network would fail
        // differently.
        let nowhere = "http://127.0.0.1:1";
        let mut other = SBOM.to_vec();
        other[2] = b'B';
        std::fs::write(&sbom, &other).unwrap();
        let err = run(sbom_args(nowhere, d, &sbom)).unwrap_err();
        assert!(
            err.to_string()
                .contains("the SBOM is not the one the manifest signs"),
            "{err:#}"
        );
        assert!(err.downcast_ref::<Rejected>().is_none());

        // A manifest that signs no SBOM at all.
        let release = firmup_fixtures::ReleaseBuilder::standard().build();
        std::fs::write(d.join("fw.manifest.json"), &release.envelope).unwrap();
        std::fs::write(&sbom, SBOM).unwrap();
        let err = run(sbom_args(nowhere, d, &sbom)).unwrap_err();
        assert!(err.to_string().contains("signs no SBOM"), "{err:#}");
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
