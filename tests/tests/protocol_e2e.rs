//! A real `firmup-server` process answering requests that never reach a
//! handler, over raw TCP: a malformed request line or header is 400, a
//! request head over the 64 KiB limit (a long URI, a long header, more than
//! 100 header fields) is 431. These answers come from the HTTP layer
//! itself: bodiless, `Connection: close`, and naming nothing of the
//! server's internals.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::Duration;

use firmup_fixtures::RootBuilder;
use firmup_tests::Server;

fn server() -> (tempfile::TempDir, Server) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.v1.json");
    std::fs::write(&root, RootBuilder::standard().build()).unwrap();
    let server = Server::start(dir.path(), &root);
    (dir, server)
}

/// The server's whole answer to `request` (it closes the connection after
/// these answers, so reading to the end is reading one answer).
fn exchange(server: &Server, request: &[u8]) -> String {
    let addr = server.url.trim_start_matches("http://");
    let mut s = TcpStream::connect(addr).expect("connects");
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer and close before it has read everything.
    let _ = s.write_all(request);
    let mut answer = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("no complete answer: {e}; got {answer:?}"),
        }
    }
    String::from_utf8(answer).expect("the answer is text")
}

/// Status, lower-cased header lines and body of an answer.
fn parse(answer: &str) -> (u16, Vec<String>, &str) {
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no head in {answer:?}"));
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {answer:?}"));
    (status, lines.map(str::to_ascii_lowercase).collect(), body)
}

#[test]
fn the_http_layer_answers_bad_heads_with_plain_bodiless_statuses() {
    let (_dir, server) = server();
    let long_header = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(70 * 1024)
    );
    let long_uri = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(70 * 1024));
    let many_headers = format!(
        "GET /healthz HTTP/1.1\r\nHost: x\r\n{}\r\n",
        (0..120)
            .map(|i| format!("X-H{i}: v\r\n"))
            .collect::<String>()
    );
    let cases: Vec<(&str, Vec<u8>, u16)> = vec![
        ("garbage request line", b"GARBAGE\r\n\r\n".to_vec(), 400),
        (
            "header without a colon",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n".to_vec(),
            400,
        ),
        (
            "control character in a header",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n".to_vec(),
            400,
        ),
        (
            "unknown HTTP version",
            b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n".to_vec(),
            400,
        ),
        (
            "unparseable Content-Length",
            b"POST /healthz HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n".to_vec(),
            400,
        ),
        ("70 KiB header", long_header.into_bytes(), 431),
        // hyper's own 414 needs a URI longer than the 64 KiB head allows.
        ("70 KiB URI", long_uri.into_bytes(), 431),
        ("120 header fields", many_headers.into_bytes(), 431),
    ];
    for (what, request, want) in cases {
        let answer = exchange(&server, &request);
        let (status, headers, body) = parse(&answer);
        assert_eq!(status, want, "{what}: {answer}");
        assert!(body.is_empty(), "{what}: a body {body:?}");
        assert!(
            headers.iter().any(|h| h == "content-length: 0"),
            "{what}: {headers:?}"
        );
        assert!(
            headers.iter().any(|h| h == "connection: close"),
            "{what}: {headers:?}"
        );
        for word in ["hyper", "rust", "::", "error", "panic"] {
            assert!(
                !answer.to_ascii_lowercase().contains(word),
                "{what}: {word:?} in {answer:?}"
            );
        }
    }
    // Still serving.
    let (status, _, _) = parse(&exchange(
        &server,
        b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    ));
    assert_eq!(status, 200);
}
