//! The operator CLI of `firmup-server` against a running server: the
//! catalogue goes in through the API (it is API-only), devices, contracts
//! and dates of sale through `firmup-server device import` / `contract
//! import` / `sale import` on the same data directory, and the tokens the
//! import prints work against the server.

use std::path::Path;
use std::process::{Command, Output};

use firmup_fixtures::RootBuilder;
use firmup_tests::{Server, bin};
use reqwest::Method;
use serde_json::json;

/// Runs `firmup-server ARGS FILE --data-dir D [--database-url U] --trust-root R`.
fn cli(server: &Server, args: &[&str], file: &Path) -> Output {
    Command::new(bin("firmup-server", "firmup-server"))
        .args(args)
        .arg(file)
        .args(server.store_args())
        .arg("--trust-root")
        .arg(&server.trust_root)
        .output()
        .expect("firmup-server runs")
}

#[test]
fn device_and_contract_import_from_csv() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.v1.json");
    std::fs::write(&root, RootBuilder::standard().build()).unwrap();
    let server = Server::start(dir.path(), &root);
    let doc = firmup_fixtures::catalogue::sample().to_import_json();
    let (s, b) = server.json(
        Method::POST,
        "/v1/admin/catalogue/import",
        &server.admin,
        Some(&doc),
    );
    assert_eq!(s, 200, "{b}");

    // Line 4 names a hardware id of another model: nothing is provisioned,
    // no secret is printed, the line is named.
    let bad = dir.path().join("bad.csv");
    std::fs::write(
        &bad,
        "serial,model_id,hw_id,channel\nCLI-1,E4K,enc-4k-r1,\nCLI-2,E3,enc-hd-r1,beta\nCLI-3,E4K,dec-4k-r1,\n",
    )
    .unwrap();
    let out = cli(&server, &["device", "import"], &bad);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "no tokens on failure");
    assert!(
        stderr.contains("line 4 (serial \"CLI-3\")") && stderr.contains("hw_id_not_in_model"),
        "{stderr}"
    );
    let (s, b) = server.json(Method::GET, "/v1/devices/CLI-1", &server.admin, None);
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (404, Some("unknown_serial"))
    );

    let good = dir.path().join("devices.csv");
    std::fs::write(
        &good,
        "serial,model_id,hw_id,channel\nCLI-1,E4K,enc-4k-r1,\nCLI-2,E3,enc-hd-r1,beta\n",
    )
    .unwrap();
    let out = cli(&server, &["device", "import"], &good);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("provisioned 2 devices"), "{stderr}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = stdout.lines().map(|l| l.split(',').collect()).collect();
    assert_eq!(rows[0], ["serial", "token"]);
    assert_eq!(rows.len(), 3, "{stdout}");
    assert_eq!(rows[2][0], "CLI-2");
    assert!(rows[2][1].starts_with("fu_"));

    // The printed token authenticates against the running server as a
    // device (403 for an operator route, not 401).
    let (s, b) = server.json(Method::GET, "/v1/product-lines", rows[2][1], None);
    assert_eq!(
        (s, b["error"]["code"].as_str()),
        (403, Some("wrong_role")),
        "{b}"
    );
    let (s, device) = server.json(Method::GET, "/v1/devices/CLI-2", &server.admin, None);
    assert_eq!(s, 200, "{device}");
    assert_eq!(device["channel"], "beta");
    assert_eq!(device["model_eol"], "2025-06-30");

    // Contracts, with --no-tokens devices alongside.
    let more = dir.path().join("more.csv");
    std::fs::write(&more, "serial,model_id,hw_id\nCLI-3,D4K,dec-4k-r1\n").unwrap();
    let out = cli(&server, &["device", "import", "--no-tokens"], &more);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout.is_empty());

    let contracts = dir.path().join("contracts.csv");
    std::fs::write(
        &contracts,
        "id,serial,kind,starts,ends\nSC-1,CLI-2,service_contract,2026-01-01,2026-12-31\nSC-2,CLI-9,service_contract,2026-01-01,2026-12-31\n",
    )
    .unwrap();
    let out = cli(&server, &["contract", "import"], &contracts);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("line 3 ") && stderr.contains("unknown_serial"),
        "{stderr}"
    );

    std::fs::write(
        &contracts,
        "id,serial,kind,starts,ends\nSC-1,CLI-2,service_contract,2026-01-01,2026-12-31\nWX-1,CLI-3,warranty_extension,2026-01-01,2030-12-31\n",
    )
    .unwrap();
    let out = cli(&server, &["contract", "import"], &contracts);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (_, device) = server.json(Method::GET, "/v1/devices/CLI-2", &server.admin, None);
    assert_eq!(device["contracts"][0]["id"], "SC-1", "{device}");
    let (_, device) = server.json(Method::GET, "/v1/devices/CLI-3", &server.admin, None);
    // A paid extension adds the policy's 12 months, whatever the
    // contract's own end date says.
    let w = &device["warranty"];
    assert_eq!(w["extensions"][0]["contract_id"], "WX-1", "{device}");
    assert_eq!(w["extensions"][0]["applied"], true, "{device}");
    assert_eq!(w["extensions"][0]["months"], 12, "{device}");
    assert_ne!(device["warranty_ends"], w["standard_ends"], "{device}");
    assert_eq!(device["warranty_ends"], w["ends"], "{device}");

    let (_, audit) = server.json(Method::GET, "/v1/admin/audit", &server.admin, None);
    let provisions: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "device.provision" || e["action"] == "contract.import")
        .map(|e| (e["action"].clone(), e["actor_label"].clone()))
        .collect();
    assert_eq!(
        provisions,
        vec![
            (json!("contract.import"), json!("server-cli")),
            (json!("device.provision"), json!("server-cli")),
            (json!("device.provision"), json!("server-cli")),
        ]
    );
}

#[test]
fn sale_import_from_csv_is_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.v1.json");
    std::fs::write(&root, RootBuilder::standard().build()).unwrap();
    let server = Server::start(dir.path(), &root);
    let doc = firmup_fixtures::catalogue::sample().to_import_json();
    let (s, b) = server.json(
        Method::POST,
        "/v1/admin/catalogue/import",
        &server.admin,
        Some(&doc),
    );
    assert_eq!(s, 200, "{b}");
    let devices = json!({ "devices": [
        { "serial": "SOLD-1", "model_id": "E4K", "hw_id": "enc-4k-r1" },
        { "serial": "SOLD-2", "model_id": "E4K", "hw_id": "enc-4k-r1" },
    ], "issue_tokens": false });
    let (s, b) = server.json(
        Method::POST,
        "/v1/admin/devices",
        &server.admin,
        Some(&devices),
    );
    assert_eq!(s, 201, "{b}");
    // The view is read (and its facts cached) before the import.
    let (s, before) = server.json(Method::GET, "/v1/devices/SOLD-1", &server.admin, None);
    assert_eq!(s, 200, "{before}");
    assert_eq!(before["sale_date"], serde_json::Value::Null);

    // Line 4 names a unit that is not provisioned: nothing is written.
    let sales = dir.path().join("sales.csv");
    std::fs::write(
        &sales,
        "serial,sale_date,region\nSOLD-1,2026-01-15,\n\nSOLD-9,2026-01-16,EU\n",
    )
    .unwrap();
    let out = cli(&server, &["sale", "import"], &sales);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("line 4 (serial \"SOLD-9\")") && stderr.contains("unknown_serial"),
        "{stderr}"
    );
    let (_, d) = server.json(Method::GET, "/v1/devices/SOLD-1", &server.admin, None);
    assert_eq!(d["sale_date"], serde_json::Value::Null, "{d}");

    std::fs::write(
        &sales,
        "serial,sale_date,region\nSOLD-1,2026-01-15,\nSOLD-2,2026-02-01,EU\n",
    )
    .unwrap();
    let out = cli(&server, &["sale", "import"], &sales);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("recorded 2 dates of sale"), "{stderr}");
    // The running server drops its cached facts through the invalidation
    // log within about two seconds.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let (_, d) = server.json(Method::GET, "/v1/devices/SOLD-1", &server.admin, None);
        if d["sale_date"] == "2026-01-15" {
            assert_eq!(d["warranty"]["start"], "2026-01-15", "{d}");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not seen: {d}");
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    let (_, d) = server.json(Method::GET, "/v1/devices/SOLD-2", &server.admin, None);
    assert_eq!(
        (d["sale_date"].as_str(), d["region"].as_str()),
        (Some("2026-02-01"), Some("EU"))
    );
    let (_, audit) = server.json(Method::GET, "/v1/admin/audit", &server.admin, None);
    let imports: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "device.sale_import")
        .map(|e| e["actor_label"].clone())
        .collect();
    assert_eq!(imports, vec![json!("server-cli")]);
}

/// Runs `firmup-server ARGS` with extra environment variables.
fn run(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(bin("firmup-server", "firmup-server"))
        .args(args)
        .envs(env.iter().copied())
        .env_remove("FIRMUP_CONFIG")
        .output()
        .expect("firmup-server runs")
}

#[test]
fn config_prints_every_layer_with_secrets_redacted_and_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("never-created");
    let file = dir.path().join("firmup.toml");
    std::fs::write(
        &file,
        "poll_interval_secs = 60\nlisten = \"127.0.0.1:9000\"\nmax_connections = 50\n",
    )
    .unwrap();
    let key = "5a".repeat(16) + &"c3".repeat(16);
    let out = run(
        &[
            "config",
            "--config",
            file.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
            "--listen",
            "127.0.0.1:9100",
        ],
        &[
            ("FIRMUP_POLL_INTERVAL_SECS", "120"),
            ("FIRMUP_DATABASE_URL", "sqlite://ops:hunter2@/srv/firmup.db"),
            ("FIRMUP_GRANT_KEY", &key),
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<&str> = stdout.lines().collect();
    for want in [
        "listen = \"127.0.0.1:9100\"  # --listen".to_string(),
        "poll_interval_secs = 120  # FIRMUP_POLL_INTERVAL_SECS".to_string(),
        format!("max_connections = 50  # file {}", file.display()),
        format!("data_dir = \"{}\"  # --data-dir", data.display()),
        "database_url = \"sqlite://ops:***@/srv/firmup.db\"  # FIRMUP_DATABASE_URL".to_string(),
        "grant_key = \"***\"  # FIRMUP_GRANT_KEY".to_string(),
        "grant_ttl_secs = 900  # default".to_string(),
        "# trust_root is not set: none (publishing is refused until a root is posted)".to_string(),
    ] {
        assert!(
            lines.contains(&want.as_str()),
            "{want:?} missing:\n{stdout}"
        );
    }
    assert!(
        !stdout.contains("hunter2") && !stdout.contains(&key),
        "{stdout}"
    );
    assert!(!data.exists(), "config created the data directory");

    // A bad value is refused the way serve refuses it.
    let out = run(&["config"], &[("FIRMUP_POLL_JITTER_PERCENT", "101")]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("poll_jitter_percent"));
}

#[test]
fn help_and_exit_status() {
    let out = run(&["--help"], &[]);
    let top = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        top.contains("Exit status:") && top.contains("2  usage error"),
        "{top}"
    );

    // Each command shows its own flags; serve's are serve's.
    let out = run(&["token", "create", "--help"], &[]);
    let create = String::from_utf8_lossy(&out.stdout);
    assert!(
        create.contains("--data-dir") && create.contains("--role"),
        "{create}"
    );
    assert!(
        !create.contains("--listen") && !create.contains("--trust-root"),
        "{create}"
    );
    let out = run(&["serve", "--help"], &[]);
    let serve = String::from_utf8_lossy(&out.stdout);
    for want in [
        "--listen <LISTEN>",
        "--trust-root <FILE>",
        "listen  (FIRMUP_LISTEN, --listen)",
        "grant_key  (FIRMUP_GRANT_KEY)",
        "address_rate_burst  (FIRMUP_ADDRESS_RATE_BURST)",
        "Default: 127.0.0.1:8080.",
    ] {
        assert!(serve.contains(want), "{want:?} missing:\n{serve}");
    }

    let out = run(&["token", "frobnicate"], &[]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn token_list_and_revoke_reach_a_running_server() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.v1.json");
    std::fs::write(&root, RootBuilder::standard().build()).unwrap();
    let server = Server::start(dir.path(), &root);
    let tech = server.cli_token("technician", None);
    // The server has now seen (and cached) the technician's token.
    let (s, b) = server.json(Method::GET, "/v1/product-lines", &tech, None);
    assert_eq!(s, 200, "{b}");

    let token = |args: &[&str]| {
        let mut all = vec!["token"];
        all.extend_from_slice(args);
        let store: Vec<String> = server
            .store_args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        all.extend(store.iter().map(String::as_str));
        run(&all, &[])
    };
    let out = token(&["list", "--json"]);
    assert!(out.status.success());
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let tokens = listed.as_array().unwrap();
    assert_eq!(tokens.len(), 2, "{listed}");
    assert_eq!(tokens[0]["role"], "technician", "newest first: {listed}");
    assert_eq!(tokens[0]["label"], "test technician");
    assert!(tokens[0]["revoked_at"].is_null());
    let id = tokens[0]["id"].as_str().unwrap().to_string();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(!text.contains(&tech) && !text.contains("hash"), "{text}");

    let out = token(&["list", "--role", "admin"]);
    let table = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = table.lines().collect();
    assert!(
        rows[0].starts_with("ID ") && rows[0].ends_with("REVOKED"),
        "{table}"
    );
    assert_eq!(rows.len(), 2, "{table}");
    assert!(
        rows[1].contains(" admin ") && !rows[1].contains(&id),
        "{table}"
    );

    let out = token(&["revoke", &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains(&format!("revoked token {id}")), "{stderr}");
    // The server drops its cached lookup through the invalidation log.
    let refused = (0..100).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(100));
        server.json(Method::GET, "/v1/product-lines", &tech, None).0 == 401
    });
    assert!(
        refused,
        "the running server still honours the revoked token"
    );

    // Again: nothing changes, and it says so.
    let out = token(&["revoke", &id]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("already revoked at ") && stderr.contains("nothing changed"),
        "{stderr}"
    );
    let out = token(&["revoke", "no-such-token"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("no token with id \"no-such-token\"") && stderr.contains("unknown_token"),
        "{stderr}"
    );

    let (_, audit) = server.json(Method::GET, "/v1/admin/audit", &server.admin, None);
    let revocations: Vec<_> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "token.revoke")
        .map(|e| (e["target"].clone(), e["actor_label"].clone()))
        .collect();
    assert_eq!(
        revocations,
        vec![(json!(format!("token/{id}")), json!("server-cli"))]
    );
    let out = token(&["list", "--json"]);
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(listed[0]["revoked_at"].is_string(), "{listed}");
}
