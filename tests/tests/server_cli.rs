//! The operator CLI of `firmup-server` against a running server: the
//! catalogue goes in through the API (it is API-only), devices and
//! contracts through `firmup-server device import` / `contract import` on
//! the same data directory, and the tokens the import prints work against
//! the server.

use std::path::Path;
use std::process::{Command, Output};

use firmup_fixtures::RootBuilder;
use firmup_tests::{Server, bin};
use reqwest::Method;
use serde_json::json;

/// Runs `firmup-server ARGS --data-dir D --trust-root R`.
fn cli(server: &Server, args: &[&str], file: &Path) -> Output {
    Command::new(bin("firmup-server", "firmup-server"))
        .args(args)
        .arg(file)
        .arg("--data-dir")
        .arg(&server.data_dir)
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
    assert_eq!(device["warranty_ends"], "2030-12-31", "{device}");

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
