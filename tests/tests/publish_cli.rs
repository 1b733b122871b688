//! `firmup-signer publish` against a real `firmup-server serve` process on
//! a loopback port: tokens made with `firmup-server token create`, the
//! product line created through the admin API, an 8 MiB image streamed up,
//! the manifest published, then what a user must see on a second run, on a
//! conflicting payload, on a manifest one signature short, with a wrong
//! file, a bad token and an unreachable server.

use std::fs;
use std::path::Path;
use std::process::{Command, Output};

use firmup_fixtures::{ReleaseBuilder, RootBuilder};
use firmup_tests::{Server, bin, free_port};

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn publish(dir: &Path, token: &str, args: &[&str]) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = Command::new(bin("firmup-signer", "firmup-signer"))
        .arg("publish")
        .args(args)
        .env("FIRMUP_TOKEN", token)
        .current_dir(dir)
        .output()
        .expect("firmup-signer runs");
    let run = Run {
        code: status.code().expect("not killed by a signal"),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    };
    assert!(
        !run.stdout.contains(token) && !run.stderr.contains(token),
        "the token must never be printed"
    );
    run
}

#[track_caller]
fn expect(run: &Run, code: i32, stdout: &str) {
    assert_eq!(
        run.code, code,
        "stdout: {}\nstderr: {}",
        run.stdout, run.stderr
    );
    assert!(
        run.stdout.contains(stdout),
        "expected {stdout:?}\nstdout: {}\nstderr: {}",
        run.stdout,
        run.stderr
    );
}

#[test]
fn publish_uploads_images_and_publishes_idempotently() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let root = dir.join("root.v1.json");
    fs::write(&root, RootBuilder::standard().build()).unwrap();
    let server = Server::start(dir, &root);
    let admin = server.admin.clone();
    let release_engineer = server.cli_token("release_engineer", None);
    let client = reqwest::blocking::Client::new();
    let (status, body) = server.json(
        reqwest::Method::PUT,
        "/v1/admin/product-lines/encoders",
        &admin,
        Some(&serde_json::json!({ "name": "Encoders", "kind": "hardware", "warranty_months": 12 })),
    );
    assert_eq!(status, 201, "{body}");

    // An 8 MiB image, so the upload really streams in many chunks.
    let mut builder = ReleaseBuilder::standard();
    builder.image_len = 8 * 1024 * 1024;
    let release = builder.build();
    fs::write(dir.join("firmware.img"), &release.image).unwrap();
    fs::write(dir.join("fw.manifest.json"), &release.envelope).unwrap();
    let args = [
        "--server",
        &server.url,
        "--manifest",
        "fw.manifest.json",
        "--image",
        "firmware.img",
    ];

    let first = publish(dir, &release_engineer, &args);
    expect(&first, 0, "published encoders 2.1.0 (stable)");
    assert!(
        first.stderr.contains("uploaded image firmware.img"),
        "{}",
        first.stderr
    );

    // Again: nothing is uploaded, and it says so.
    let second = publish(dir, &release_engineer, &args);
    expect(&second, 0, "already published encoders 2.1.0 (stable)");
    assert!(
        second.stderr.contains("already on the server"),
        "{}",
        second.stderr
    );

    // The server holds the manifest byte for byte.
    let stored = client
        .get(format!(
            "{}/v1/product-lines/encoders/releases/stable/2.1.0/manifest",
            server.url
        ))
        .bearer_auth(&admin)
        .send()
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(&stored[..], &release.envelope[..]);

    // Same version, different signed payload: the server's verdict, exit 1.
    let mut changed = builder.clone();
    changed.manifest.release_notes = Some("Changed after publishing.".into());
    fs::write(dir.join("changed.json"), changed.build().envelope).unwrap();
    let mut changed_args = args;
    changed_args[3] = "changed.json";
    expect(
        &publish(dir, &release_engineer, &changed_args),
        1,
        "REJECTED (version_exists): ",
    );

    // One signature short of the threshold.
    let mut short = builder
        .clone()
        .version("2.2.0")
        .signed_by(&["release-encoders-1"]);
    short.manifest.manifest_version = 8;
    fs::write(dir.join("short.json"), short.build().envelope).unwrap();
    let mut short_args = args;
    short_args[3] = "short.json";
    expect(
        &publish(dir, &release_engineer, &short_args),
        1,
        "REJECTED (threshold_not_met): ",
    );

    // A bad token is refused by the server (exit 1), not printed.
    expect(
        &publish(dir, "fu_not-a-real-token", &args),
        1,
        "REJECTED (http_401)",
    );

    // A file of the wrong length is an input error, found before sending.
    fs::create_dir(dir.join("other")).unwrap();
    fs::write(dir.join("other").join("firmware.img"), b"short").unwrap();
    let wrong = publish(
        dir,
        &release_engineer,
        &[
            "--server",
            &server.url,
            "--manifest",
            "fw.manifest.json",
            "--image",
            "other/firmware.img",
        ],
    );
    assert_eq!(wrong.code, 3, "{}", wrong.stderr);
    assert!(wrong.stderr.contains("5 bytes"), "{}", wrong.stderr);

    // An unreachable server is an input error too.
    let nowhere = format!("http://127.0.0.1:{}", free_port());
    let mut nowhere_args = args;
    nowhere_args[1] = &nowhere;
    let down = publish(dir, &release_engineer, &nowhere_args);
    assert_eq!(down.code, 3, "{}", down.stderr);
    assert!(
        down.stderr.contains("cannot reach the server"),
        "{}",
        down.stderr
    );

    let list: serde_json::Value = client
        .get(format!("{}/v1/product-lines/encoders/releases", server.url))
        .bearer_auth(&admin)
        .send()
        .unwrap()
        .json()
        .unwrap();
    let versions: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["version"].as_str().unwrap())
        .collect();
    assert_eq!(versions, ["2.1.0"]);
}
