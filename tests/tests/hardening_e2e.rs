//! A real `firmup-server` process against hostile clients over real TCP:
//! idle and slow-header sockets are closed in time, the connection cap
//! holds while `/healthz` keeps answering new clients, a wrong role is
//! refused before the body is sent, a stalled download is cut while a slow
//! one continues, the address rate limit answers 429, files are private,
//! and a debug log of a whole check-and-download holds no grant or token.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use firmup_fixtures::{ReleaseBuilder, RootBuilder};
use firmup_tests::Server;

fn server(env: &[(&str, &str)]) -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.v1.json");
    std::fs::write(&root, RootBuilder::standard().build()).unwrap();
    let server = Server::start_with(dir.path(), &root, env);
    (dir, server)
}

fn connect(server: &Server) -> TcpStream {
    let addr = server.url.trim_start_matches("http://");
    let s = TcpStream::connect(addr).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    s
}

/// Reads until the server closes the socket; returns the bytes read and
/// when it closed, or panics if it stays open past the read timeout.
fn until_closed(s: &mut TcpStream) -> (usize, Instant) {
    let mut buf = [0u8; 64 * 1024];
    let mut total = 0;
    loop {
        match s.read(&mut buf) {
            Ok(0) => return (total, Instant::now()),
            Ok(n) => total += n,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return (total, Instant::now());
            }
            Err(e) => panic!("the server kept the socket open: {e}"),
        }
    }
}

fn is_open(s: &TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let mut b = [0u8; 1];
    let mut reader = s;
    // Pending data or nothing yet: open; end of stream or a reset: closed.
    let open = match reader.read(&mut b) {
        Ok(n) => n > 0,
        Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
    };
    s.set_nonblocking(false).unwrap();
    open
}

fn healthz(server: &Server) -> u16 {
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
        .get(format!("{}/healthz", server.url))
        .send()
        .map(|r| r.status().as_u16())
        .unwrap_or(0)
}

#[test]
fn idle_and_slow_header_sockets_are_closed_in_time() {
    let (_dir, server) = server(&[
        ("FIRMUP_IDLE_TIMEOUT_SECS", "2"),
        ("FIRMUP_HEADER_READ_TIMEOUT_SECS", "1"),
    ]);
    // Silent: closed after the idle timeout, not before.
    let mut silent = connect(&server);
    let opened = Instant::now();
    // Trickling: the head starts and never finishes.
    let mut trickle = connect(&server);
    let started = Instant::now();
    trickle.write_all(b"GET /healthz HTTP/1.1\r\n").unwrap();
    let writer = std::thread::spawn(move || {
        for _ in 0..40 {
            std::thread::sleep(Duration::from_millis(250));
            if trickle.write_all(b"X").is_err() {
                return Some(started.elapsed());
            }
            // The read side tells when the server gave up.
            if !is_open(&trickle) {
                return Some(started.elapsed());
            }
        }
        None
    });
    let (_, closed) = until_closed(&mut silent);
    let idle = closed - opened;
    assert!(
        idle >= Duration::from_millis(1800) && idle <= Duration::from_secs(4),
        "idle socket closed after {idle:?} (idle timeout 2 s)"
    );
    let slow = writer
        .join()
        .unwrap()
        .expect("the slow-header socket stayed open for 10 s");
    assert!(
        slow <= Duration::from_millis(2800),
        "slow header cut after {slow:?} (header timeout 1 s)"
    );
    // A keep-alive connection that finished a request is idle again.
    let mut kept = connect(&server);
    kept.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let answered = Instant::now();
    let mut head = [0u8; 12];
    kept.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200");
    let (_, closed) = until_closed(&mut kept);
    assert!(closed - answered <= Duration::from_secs(4));
}

#[test]
fn the_connection_cap_holds_and_new_clients_are_still_served() {
    let (dir, server) = server(&[
        ("FIRMUP_MAX_CONNECTIONS", "20"),
        ("FIRMUP_IDLE_TIMEOUT_SECS", "120"),
    ]);
    let idle: Vec<TcpStream> = (0..60)
        .map(|_| {
            let s = connect(&server);
            std::thread::sleep(Duration::from_millis(10));
            s
        })
        .collect();
    // Every one of 20 fresh clients is answered at once.
    for _ in 0..20 {
        let started = Instant::now();
        assert_eq!(healthz(&server), 200);
        assert!(started.elapsed() < Duration::from_secs(3));
    }
    std::thread::sleep(Duration::from_millis(300));
    let open = idle.iter().filter(|s| is_open(s)).count();
    assert!(
        open <= 20,
        "{open} idle sockets still open with max_connections 20"
    );
    assert!(open >= 10, "only {open} open: the cap closed too many");
    // The oldest were closed first.
    assert!(!is_open(&idle[0]));
    assert!(is_open(&idle[59]));
    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(log.contains("connection limit reached"), "{log}");
    assert!(log.contains("open-file limit"), "{log}");
}

#[test]
fn a_wrong_role_is_refused_before_the_body_is_sent() {
    let (_dir, server) = server(&[]);
    let device = server.seed_encoder_device("SN-0001");
    let mut s = connect(&server);
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    write!(
        s,
        "PUT /v1/admin/product-lines/encoders HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {device}\r\nContent-Type: application/json\r\n\
         Content-Length: 1000000\r\n\r\n"
    )
    .unwrap();
    let mut answer = vec![0u8; 4096];
    let n = s.read(&mut answer).expect("an answer without the body");
    let text = String::from_utf8_lossy(&answer[..n]);
    assert!(text.starts_with("HTTP/1.1 403"), "{text}");
    assert!(text.contains("wrong_role"), "{text}");
}

#[test]
fn a_stalled_download_is_cut_and_a_slow_one_continues() {
    let (_dir, server) = server(&[
        ("FIRMUP_STALL_WINDOW_SECS", "2"),
        ("FIRMUP_MIN_TRANSFER_BYTES_PER_SEC", "65536"),
    ]);
    let releng = server.cli_token("release_engineer", None);
    let image: Vec<u8> = (0..64 * 1024 * 1024u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .collect();
    let sha = firmup_client::Sha256Digest::of(&image);
    let res = reqwest::blocking::Client::new()
        .put(format!("{}/v1/uploads/{sha}", server.url))
        .bearer_auth(&releng)
        .body(image.clone())
        .send()
        .unwrap();
    assert_eq!(res.status().as_u16(), 201);
    let request = format!(
        "GET /v1/images/{sha} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {releng}\r\n\r\n"
    );
    let mut stalled = connect(&server);
    let mut slow = connect(&server);
    stalled.write_all(request.as_bytes()).unwrap();
    slow.write_all(request.as_bytes()).unwrap();
    let mut first = [0u8; 12];
    stalled.read_exact(&mut first).unwrap();
    assert_eq!(&first, b"HTTP/1.1 200");
    // The slow reader takes 256 KiB/s (4 x the minimum) for 7 s while the
    // other reads nothing.
    let mut buf = vec![0u8; 32 * 1024];
    let mut slow_total = 0;
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(7) {
        let n = slow.read(&mut buf).expect("the slow download continues");
        assert!(n > 0, "the slow download was cut");
        slow_total += n;
        std::thread::sleep(Duration::from_millis(125));
    }
    assert!(is_open(&slow), "the slow download was cut");
    let (stalled_total, _) = until_closed(&mut stalled);
    assert!(
        stalled_total < image.len(),
        "the stalled download was never cut ({stalled_total} bytes)"
    );
    assert!(slow_total > 0);
}

#[test]
fn an_address_over_its_rate_gets_429() {
    let (_dir, server) = server(&[
        ("FIRMUP_ADDRESS_RATE_PER_SEC", "1"),
        ("FIRMUP_ADDRESS_RATE_BURST", "5"),
    ]);
    let client = reqwest::blocking::Client::new();
    let statuses: Vec<(u16, Option<String>)> = (0..8)
        .map(|i| {
            let r = client
                .post(format!("{}/v1/device/check", server.url))
                .bearer_auth(format!("fu_invented_{i}"))
                .header("content-type", "application/json")
                .body("{}")
                .send()
                .unwrap();
            let retry = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_string());
            (r.status().as_u16(), retry)
        })
        .collect();
    assert!(statuses[..5].iter().all(|(s, _)| *s == 401), "{statuses:?}");
    assert!(
        statuses[5..]
            .iter()
            .all(|(s, r)| *s == 429 && r.as_deref() == Some("1")),
        "{statuses:?}"
    );
}

#[cfg(unix)]
#[test]
fn files_are_private_and_debug_logs_hold_no_grant_or_token() {
    use std::os::unix::fs::PermissionsExt as _;
    let (dir, server) = server(&[("FIRMUP_LOG", "debug")]);
    let device = server.seed_encoder_device("SN-0001");
    let release = ReleaseBuilder::standard().build();
    let releng = server.cli_token("release_engineer", None);
    server.publish(&releng, "encoders", &release.image, &release.envelope);
    let check = server.json_ok(
        reqwest::Method::POST,
        "/v1/device/check",
        &device,
        &serde_json::json!({ "serial": "SN-0001", "hw_id": "enc-4k-r2",
            "current_version": "2.0.0", "security_counter": 0, "root_version": 1 }),
    );
    let url = check["update"]["images"][0]["url"]
        .as_str()
        .expect("an offered image")
        .to_string();
    let body = reqwest::blocking::get(format!("{}{url}", server.url))
        .unwrap()
        .bytes()
        .unwrap();
    assert_eq!(body.as_ref(), release.image.as_slice());
    let sig = url.split("sig=").nth(1).expect("a signed grant");

    let data = &server.data_dir;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(data), 0o700, "data directory");
    // The SQLite files exist only when the database is the embedded one.
    let files: &[&str] = if server.database_url.is_some() {
        &["grant.key"]
    } else {
        &["firmup.db", "firmup.db-wal", "grant.key"]
    };
    for name in files {
        assert_eq!(mode(&data.join(name)), 0o600, "{name}");
    }
    // The blob directory exists only when images are stored locally.
    let blobs: Vec<_> = if server.storage_url.is_some() {
        assert!(!data.join("blobs").exists());
        Vec::new()
    } else {
        walk(&data.join("blobs"))
    };
    for path in blobs {
        let expected = if path.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode(&path), expected, "{}", path.display());
    }

    let log = std::fs::read_to_string(dir.path().join("server.log")).unwrap();
    assert!(log.contains("/v1/images/"), "the access log names the path");
    for secret in [sig, device.as_str(), releng.as_str(), server.admin.as_str()] {
        assert!(!log.contains(secret), "the log holds a secret: {secret}");
    }
    assert!(!log.contains("sig="), "the log holds a grant query");
    assert!(!log.contains('\u{1b}'), "colour codes in a log file");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = vec![dir.to_path_buf()];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
