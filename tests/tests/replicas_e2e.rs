//! Two `firmup-server` processes on one database and one store behave as
//! one service: a release published through one is offered by the other, a
//! grant from one is accepted by the other, a revocation on one is refused
//! by the other, a replica killed mid-upload leaves nothing visible and the
//! retry through the other succeeds, and two publishes of one version
//! through both at once have one winner. On the suite's PostgreSQL + Garage
//! run they share the database and the bucket for real; on SQLite they
//! share the embedded database file. With an object store, the device agent
//! and `curl -L` also download through a presigned redirect.

use std::io::Write as _;
use std::process::Command;
use std::time::{Duration, Instant};

use firmup_client::Sha256Digest;
use firmup_fixtures::{ReleaseBuilder, RootBuilder};
use firmup_tests::{Server, bin};
use reqwest::Method;
use serde_json::{Value, json};

struct Pair {
    dir: tempfile::TempDir,
    a: Server,
    b: Server,
    device_token: String,
    root: std::path::PathBuf,
}

/// Two replicas; `env_b` is B's extra environment. The token rate limit is
/// off on both: the tests poll B far faster than a device checks.
fn pair(env_b: &[(&str, &str)]) -> Pair {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.v1.json");
    std::fs::write(&root, RootBuilder::standard().build()).unwrap();
    let unlimited = ("FIRMUP_TOKEN_RATE_PER_SEC", "0");
    let a = Server::start_with(dir.path(), &root, &[unlimited]);
    let device_token = a.seed_encoder_device("SN-0001");
    let mut env = vec![unlimited];
    env.extend_from_slice(env_b);
    let b = a.replica(&env, &dir.path().join("replica.log"));
    Pair {
        dir,
        a,
        b,
        device_token,
        root,
    }
}

fn check(server: &Server, token: &str) -> Value {
    let (status, body) = server.json(
        Method::POST,
        "/v1/device/check",
        token,
        Some(
            &json!({ "serial": "SN-0001", "hw_id": "enc-4k-r2", "current_version": "2.0.0",
                      "security_counter": 3, "root_version": 1 }),
        ),
    );
    assert_eq!(status, 200, "{body}");
    body
}

/// Polls `f` until it is true or `within` passes; returns how long it took.
fn eventually(within: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < within {
        if f() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

#[test]
fn replicas_share_releases_grants_and_revocations() {
    let p = pair(&[]);
    // B has answered "up to date" before the release exists.
    assert_eq!(check(&p.b, &p.device_token)["status"], "up_to_date");

    let release = ReleaseBuilder::standard().build();
    let releng = p.a.cli_token("release_engineer", None);
    p.a.publish(&releng, "encoders", &release.image, &release.envelope);
    // Offered by B within the snapshot refresh interval (10 s).
    let took = eventually(Duration::from_secs(15), || {
        check(&p.b, &p.device_token)["status"] == "update_available"
    });
    assert!(took.is_some(), "B never offered the release A published");

    // A grant A issued, downloaded from B.
    let offer = check(&p.a, &p.device_token);
    let path = offer["update"]["images"][0]["url"].as_str().unwrap();
    let got = http().get(format!("{}{path}", p.b.url)).send().unwrap();
    assert_eq!(got.status(), 200);
    assert_eq!(got.bytes().unwrap(), release.image);

    // A token revoked through A is refused by B within the bound (about 2 s).
    let (_, tokens) = p.a.json(
        Method::GET,
        "/v1/admin/tokens?role=device",
        &p.a.admin,
        None,
    );
    let id = tokens[0]["id"].as_str().unwrap().to_owned();
    let (status, body) = p.a.json(
        Method::DELETE,
        &format!("/v1/admin/tokens/{id}"),
        &p.a.admin,
        None,
    );
    assert!(matches!(status, 200 | 204), "{status} {body}");
    let refused = eventually(Duration::from_secs(6), || {
        p.b.json(
            Method::POST,
            "/v1/device/check",
            &p.device_token,
            Some(&json!({ "serial": "SN-0001", "hw_id": "enc-4k-r2",
                          "current_version": "2.0.0", "security_counter": 3,
                          "root_version": 1 })),
        )
        .0 == 401
    });
    assert!(refused.is_some(), "B still accepts the token A revoked");
}

#[test]
fn a_replica_killed_mid_upload_leaves_nothing_and_the_retry_through_another_succeeds() {
    let mut p = pair(&[]);
    let mut builder = ReleaseBuilder::standard();
    builder.image_len = firmup_fixtures::images::MEDIUM;
    let release = builder.build();
    let sha = Sha256Digest::of(&release.image).to_hex();
    let releng = p.a.cli_token("release_engineer", None);

    // Half the image to A, then A dies.
    let addr = p.a.url.trim_start_matches("http://").to_owned();
    let mut conn = std::net::TcpStream::connect(&addr).unwrap();
    write!(
        conn,
        "PUT /v1/uploads/{sha} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {releng}\r\n\
         Content-Length: {}\r\n\r\n",
        release.image.len()
    )
    .unwrap();
    conn.write_all(&release.image[..release.image.len() / 2])
        .unwrap();
    conn.flush().unwrap();
    std::thread::sleep(Duration::from_millis(500));
    p.a.kill();
    drop(conn);

    // Nothing of it is visible through B.
    let client = http();
    let head = client
        .head(format!("{}/v1/uploads/{sha}", p.b.url))
        .bearer_auth(&releng)
        .send()
        .unwrap();
    assert_eq!(head.status(), 404, "no stored image");
    let get = client
        .get(format!("{}/v1/images/{sha}", p.b.url))
        .bearer_auth(&releng)
        .send()
        .unwrap();
    assert_eq!(get.status(), 404, "nothing served");
    let publish = client
        .post(format!("{}/v1/product-lines/encoders/releases", p.b.url))
        .bearer_auth(&releng)
        .body(release.envelope.clone())
        .send()
        .unwrap();
    assert_eq!(publish.status(), 422, "no release without its image");

    // The retry through B succeeds.
    assert!(p.b.publish(&releng, "encoders", &release.image, &release.envelope));
    assert_eq!(check(&p.b, &p.device_token)["update"]["version"], "2.1.0");
    drop(p.dir);
}

#[test]
fn two_publishes_of_one_version_through_two_replicas_have_one_winner() {
    let p = pair(&[]);
    let releng = p.a.cli_token("release_engineer", None);
    let first = ReleaseBuilder::standard().version("3.0.0").build();
    let mut other = ReleaseBuilder::standard().version("3.0.0");
    other.image_len = firmup_fixtures::images::MEDIUM + 1;
    let second = other.build();
    assert_ne!(first.envelope, second.envelope);
    for (server, image) in [(&p.a, &first.image), (&p.b, &second.image)] {
        let sha = Sha256Digest::of(image).to_hex();
        let r = http()
            .put(format!("{}/v1/uploads/{sha}", server.url))
            .bearer_auth(&releng)
            .body(image.clone())
            .send()
            .unwrap();
        assert!(r.status().is_success(), "{}", r.status());
    }
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let tasks: Vec<_> = [(&p.a, &first.envelope), (&p.b, &second.envelope)]
            .into_iter()
            .map(|(server, envelope)| {
                let releng = releng.clone();
                s.spawn(move || {
                    http()
                        .post(format!("{}/v1/product-lines/encoders/releases", server.url))
                        .bearer_auth(&releng)
                        .body(envelope.clone())
                        .send()
                        .unwrap()
                        .status()
                        .as_u16()
                })
            })
            .collect();
        tasks.into_iter().map(|t| t.join().unwrap()).collect()
    });
    let mut sorted = statuses.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        [201, 409],
        "one wins, the other is told: {statuses:?}"
    );
}

/// The origin (`http://HOST:PORT`) of the test store's endpoint.
fn store_origin(storage_url: &str) -> String {
    let endpoint = storage_url
        .split(['?', '&'])
        .find_map(|kv| kv.strip_prefix("endpoint="))
        .expect("the storage URL names an endpoint");
    endpoint.trim_end_matches('/').to_owned()
}

#[test]
fn the_device_agent_and_curl_download_through_a_presigned_redirect() {
    if !firmup_fixtures::storage::on_s3() {
        assert!(
            std::env::var_os("CI").is_none() || !firmup_fixtures::database::on_postgres(),
            "CI's PostgreSQL run must also have an object store"
        );
        return;
    }
    let p = pair(&[("FIRMUP_DOWNLOAD_DELIVERY", "redirect")]);
    let mut builder = ReleaseBuilder::standard();
    builder.image_len = firmup_fixtures::images::MEDIUM;
    let release = builder.build();
    let releng = p.a.cli_token("release_engineer", None);
    p.a.publish(&releng, "encoders", &release.image, &release.envelope);
    let origin = store_origin(p.b.storage_url.as_deref().unwrap());

    // curl -L follows the 307 to the store. (A offers the release at once;
    // B, which redirects, within its snapshot refresh.)
    let offer = check(&p.a, &p.device_token);
    let path = offer["update"]["images"][0]["url"].as_str().unwrap();
    let first = http().get(format!("{}{path}", p.b.url)).send().unwrap();
    assert_eq!(first.status(), 307);
    let location = first.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&origin), "{location}");
    let file = p.dir.path().join("curl.bin");
    let out = Command::new("curl")
        .args(["-fsSL", "-o"])
        .arg(&file)
        .arg(format!("{}{path}", p.b.url))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read(&file).unwrap(), release.image);

    // The agent, allowed to follow it, installs; not allowed, it refuses.
    let agent = |state: &std::path::Path, args: &[&str]| {
        Command::new(bin("firmup-device", "firmup-device"))
            .arg("--state-dir")
            .arg(state)
            .args(args)
            .env_remove("FIRMUP_DEVICE_TOKEN")
            .env_remove("FIRMUP_DEVICE_ALLOW_DOWNLOAD_ORIGINS")
            .output()
            .unwrap()
    };
    let provision = |state: &std::path::Path, extra: &[&str]| {
        let mut args = vec![
            "provision",
            "--server",
            &p.b.url,
            "--serial",
            "SN-0001",
            "--hw-id",
            "enc-4k-r2",
            "--product-line",
            "encoders",
            "--channel",
            "stable",
            "--token",
            &p.device_token,
            "--root",
            p.root.to_str().unwrap(),
            "--version",
            "2.0.0",
            "--security-counter",
            "3",
        ];
        args.extend_from_slice(extra);
        let out = agent(state, &args);
        assert!(out.status.success(), "{out:?}");
    };
    assert!(
        eventually(Duration::from_secs(15), || {
            check(&p.b, &p.device_token)["status"] == "update_available"
        })
        .is_some()
    );
    let refusing = p.dir.path().join("refusing");
    provision(&refusing, &[]);
    let out = agent(&refusing, &["update"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("redirect_refused") || stderr.contains("allowed download origin"),
        "{stderr}"
    );

    let allowed = p.dir.path().join("allowed");
    provision(&allowed, &["--allow-download-origin", &origin]);
    let out = agent(&allowed, &["update"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("installed 2.1.0 on slot b"), "{stdout}");
    assert_eq!(
        std::fs::read(allowed.join("slots/slot-b.img")).unwrap(),
        release.image
    );
}
