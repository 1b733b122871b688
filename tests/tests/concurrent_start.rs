//! Two `firmup-server` processes opening the same fresh data directory at
//! once both succeed: the schema is migrated once, under a lock, and the
//! grant key is created once, whole.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use firmup_fixtures::RootBuilder;
use firmup_tests::{bin, free_port};

fn token_create(data: &std::path::Path) -> Child {
    Command::new(bin("firmup-server", "firmup-server"))
        .args(["token", "create", "--role", "admin", "--label", "race"])
        .arg("--data-dir")
        .arg(data)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("firmup-server runs")
}

fn succeeds(child: Child) {
    let out = child.wait_with_output().expect("it ends");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("fu_"));
}

#[test]
fn two_token_creates_on_a_fresh_directory_both_succeed_50_times() {
    for _ in 0..50 {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let (a, b) = (token_create(&data), token_create(&data));
        succeeds(a);
        succeeds(b);
    }
}

#[test]
fn serve_and_token_create_started_together_both_work() {
    for _ in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let root = dir.path().join("root.v1.json");
        std::fs::write(&root, RootBuilder::standard().build()).unwrap();
        let port = free_port();
        let mut serve = Command::new(bin("firmup-server", "firmup-server"))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(&data)
            .arg("--trust-root")
            .arg(&root)
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let token = token_create(&data);
        let out = token.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let admin = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let client = reqwest::blocking::Client::new();
        let answered = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(50));
            client
                .get(format!("http://127.0.0.1:{port}/v1/admin/audit"))
                .bearer_auth(&admin)
                .send()
                .is_ok_and(|r| r.status().is_success())
        });
        let _ = serve.kill();
        let _ = serve.wait();
        assert!(answered, "the token made during start-up works");
    }
}
