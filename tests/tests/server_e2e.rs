//! End-to-end through a real `firmup-server` process over real HTTP: an
//! operator sets up the catalogue and a device, a release engineer publishes
//! a signed 64 MiB release, the device checks and downloads it, `curl
//! -C -` resumes an interrupted download to the exact sha256, and `curl
//! -OJ` and `wget --content-disposition -c` save it under the image's name.

use std::process::{Command, Stdio};
use std::time::Duration;

use firmup_client::Sha256Digest;
use firmup_fixtures::images::LARGE;
use firmup_fixtures::{ReleaseBuilder, RootBuilder};
use firmup_tests::Server;
use reqwest::Method;
use reqwest::blocking::Client;
use serde_json::json;

struct World {
    dir: tempfile::TempDir,
    server: Server,
    device_token: String,
    image: Vec<u8>,
    url: String,
}

/// Catalogue, device, published release, and one update check.
fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.v1.json");
    std::fs::write(&root, RootBuilder::standard().build()).unwrap();
    let server = Server::start(dir.path(), &root);
    let device_token = server.seed_encoder_device("SN-0001");

    let mut builder = ReleaseBuilder::standard();
    builder.image_len = LARGE;
    let release = builder.build();
    let releng = server.cli_token("release_engineer", None);
    assert!(
        server.publish(&releng, "encoders", &release.image, &release.envelope),
        "the image is new to this server"
    );

    let (s, check) = server.json(
        Method::POST,
        "/v1/device/check",
        &device_token,
        Some(
            &json!({ "serial": "SN-0001", "hw_id": "enc-4k-r2", "current_version": "2.0.0",
                      "security_counter": 3, "channel": "stable", "root_version": 1 }),
        ),
    );
    assert_eq!(s, 200, "{check}");
    assert_eq!(check["status"], "update_available", "{check}");
    assert_eq!(check["update"]["version"], "2.1.0");
    let url = format!(
        "{}{}",
        server.url,
        check["update"]["images"][0]["url"].as_str().unwrap()
    );
    World {
        dir,
        server,
        device_token,
        image: release.image,
        url,
    }
}

fn sha256_file(path: &std::path::Path) -> Sha256Digest {
    Sha256Digest::of(&std::fs::read(path).unwrap())
}

#[test]
fn curl_resumes_an_interrupted_download_to_the_exact_sha256() {
    let w = world();
    let out = w.dir.path().join("download.img");
    // A slow download, cut after a second: a partial file remains.
    let mut curl = Command::new("curl")
        .args(["-sS", "--limit-rate", "8M", "-o"])
        .arg(&out)
        .arg(&w.url)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("curl runs (the test script installs it)");
    std::thread::sleep(Duration::from_millis(1500));
    curl.kill().unwrap();
    curl.wait().unwrap();
    let partial = std::fs::metadata(&out).unwrap().len();
    assert!(
        partial > 0 && partial < LARGE,
        "partial download of {partial} bytes"
    );

    let status = Command::new("curl")
        .args(["-sS", "--fail", "-C", "-", "-o"])
        .arg(&out)
        .arg(&w.url)
        .status()
        .unwrap();
    assert!(status.success(), "curl -C - failed");
    assert_eq!(std::fs::metadata(&out).unwrap().len(), LARGE);
    assert_eq!(sha256_file(&out), Sha256Digest::of(&w.image));
}

#[test]
fn range_requests_over_http() {
    let w = world();
    let client = Client::new();
    let len = w.image.len() as u64;

    let head = client.head(&w.url).send().unwrap();
    assert_eq!(head.status().as_u16(), 200);
    assert_eq!(head.headers()["accept-ranges"], "bytes");
    assert_eq!(head.headers()["content-length"], len.to_string().as_str());
    let etag = head.headers()["etag"].to_str().unwrap().to_string();
    assert_eq!(etag, format!("\"{}\"", Sha256Digest::of(&w.image)));
    assert!(
        head.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );

    let part = client
        .get(&w.url)
        .header("range", "bytes=1000-1999")
        .send()
        .unwrap();
    assert_eq!(part.status().as_u16(), 206);
    assert_eq!(
        part.headers()["content-range"],
        format!("bytes 1000-1999/{len}").as_str()
    );
    assert_eq!(part.bytes().unwrap().as_ref(), &w.image[1000..2000]);

    let tail = client
        .get(&w.url)
        .header("range", format!("bytes={}-", len - 10))
        .header("if-range", &etag)
        .send()
        .unwrap();
    assert_eq!(tail.status().as_u16(), 206);
    assert_eq!(
        tail.bytes().unwrap().as_ref(),
        &w.image[w.image.len() - 10..]
    );

    // A changed representation (If-Range mismatch) gets the whole image.
    let full = client
        .get(&w.url)
        .header("range", "bytes=0-9")
        .header("if-range", "\"something-else\"")
        .send()
        .unwrap();
    assert_eq!(full.status().as_u16(), 200);
    assert_eq!(full.headers()["content-length"], len.to_string().as_str());

    let bad = client
        .get(&w.url)
        .header("range", format!("bytes={len}-"))
        .send()
        .unwrap();
    assert_eq!(bad.status().as_u16(), 416);
    assert_eq!(
        bad.headers()["content-range"],
        format!("bytes */{len}").as_str()
    );
    let body: serde_json::Value = bad.json().unwrap();
    assert_eq!(body["error"]["code"], "range_not_satisfiable");

    let multi = client
        .get(&w.url)
        .header("range", "bytes=0-1,5-6")
        .send()
        .unwrap();
    assert_eq!(multi.status().as_u16(), 416);

    // Tampered grants and paths are refused before anything is read.
    let forged = w.url.replace("sub=SN-0001", "sub=SN-0002");
    let r = client.get(&forged).send().unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let r = client
        .get(format!("{}/v1/images/..%2F..%2Fetc%2Fpasswd", w.server.url))
        .send()
        .unwrap();
    assert_eq!(r.status().as_u16(), 400);
    let no_grant = w.url.split('?').next().unwrap().to_string();
    let r = client.get(&no_grant).send().unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer realm=\"firmup\"");
    let r = client
        .get(&no_grant)
        .bearer_auth(&w.device_token)
        .send()
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        403,
        "a device needs a grant, not its token"
    );
}

/// Whether `tool --version` runs (the download-manager checks are skipped,
/// not failed, on a machine without the tool).
fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn download_managers_save_under_the_image_name() {
    let w = world();
    // Without Content-Disposition these would save the file as
    // "<sha256>?sub=...&exp=...&sig=...".
    if have("curl") {
        let dir = w.dir.path().join("curl");
        std::fs::create_dir(&dir).unwrap();
        let status = Command::new("curl")
            .args(["-sS", "--fail", "-O", "-J"])
            .arg(&w.url)
            .current_dir(&dir)
            .status()
            .unwrap();
        assert!(status.success(), "curl -OJ failed");
        let saved = dir.join("firmware.img");
        assert_eq!(sha256_file(&saved), Sha256Digest::of(&w.image));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
    } else {
        eprintln!("curl not installed; skipping its check");
    }
    if have("wget") {
        let dir = w.dir.path().join("wget");
        std::fs::create_dir(&dir).unwrap();
        // A partial file under the announced name, of zeros so that a
        // resumed download is told apart from a fresh one: -c keeps it and
        // fetches only the rest.
        let saved = dir.join("firmware.img");
        std::fs::write(&saved, vec![0u8; 1_000_000]).unwrap();
        let out = Command::new("wget")
            .args(["-c", "--content-disposition", "--no-verbose"])
            .arg(&w.url)
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "wget failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
        let got = std::fs::read(&saved).unwrap();
        assert_eq!(got.len(), w.image.len());
        assert!(got[..1_000_000].iter().all(|b| *b == 0), "not resumed");
        assert!(got[1_000_000..] == w.image[1_000_000..], "wrong rest");
    } else {
        eprintln!("wget not installed; skipping its check");
    }
}
