//! The staff CLI `firmup` against a running server: the repair desk from a
//! terminal (look-up with entitlement reasoning, RMA, push, bundle,
//! cancel, registration), attachments, dates of sale from a file, `--json`
//! for scripts, and its exit codes.

use std::path::Path;
use std::process::{Command, Output};

use firmup_fixtures::{ReleaseBuilder, RootBuilder};
use firmup_tests::{Server, bin, free_port};
use reqwest::Method;
use serde_json::Value;

/// Runs `firmup` against `server` with `token` (through the environment,
/// as the CLI's help recommends).
fn firmup(server: &str, token: &str, args: &[&str]) -> Output {
    Command::new(bin("firmup-staff", "firmup"))
        .args(args)
        .env("FIRMUP_SERVER", server)
        .env("FIRMUP_TOKEN", token)
        .output()
        .expect("firmup runs")
}

fn stdout(out: &Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        stdout(out),
        String::from_utf8_lossy(&out.stderr)
    );
    stdout(out)
}

fn json(out: &Output) -> Value {
    serde_json::from_str(&ok(out)).expect("--json prints JSON")
}

/// A discontinued model, a device of it, and a 2.1.0 published after the
/// EOL (so the device is not entitled to it).
fn world(dir: &Path) -> Server {
    let root = dir.join("root.v1.json");
    std::fs::write(&root, RootBuilder::standard().build()).unwrap();
    let server = Server::start(dir, &root);
    server.seed_encoder_device("SN-0001");
    server.json_ok(
        Method::PUT,
        "/v1/admin/models/E4K/eol",
        &server.admin,
        &serde_json::json!({ "eol": "2026-01-31" }),
    );
    // Installable from any version: the device has not checked in yet.
    let mut builder = ReleaseBuilder::standard();
    builder.manifest.requires = None;
    let release = builder.build();
    let releng = server.cli_token("release_engineer", None);
    server.publish(&releng, "encoders", &release.image, &release.envelope);
    server
}

#[test]
fn a_technician_runs_the_repair_desk_from_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let server = world(dir.path());
    let url = server.url.clone();
    let tech = server.cli_token("technician", None);
    let run = |args: &[&str]| firmup(&url, &tech, args);

    // The look-up: the model is discontinued, so 2.1.0 is not entitled,
    // and the view says why.
    let shown = ok(&run(&["device", "show", "SN-0001"]));
    assert!(
        shown.contains("eol: 2026-01-31 (discontinued)\n"),
        "{shown}"
    );
    assert!(shown.contains("warranty: "), "{shown}");
    assert!(
        shown.contains("next check: not_entitled 2.1.0\n"),
        "{shown}"
    );
    assert!(
        shown.contains("release: 2.1.0 not entitled (eol_no_contract)"),
        "{shown}"
    );
    let explained = ok(&run(&["device", "entitlement", "SN-0001"]));
    assert!(
        explained.contains("2026-01-31"),
        "the explanation has the dates: {explained}"
    );

    // An RMA, opened and moved on; `--json` gives the number to scripts.
    let rma = json(&run(&[
        "--json",
        "rma",
        "open",
        "SN-0001",
        "--fault",
        "no video on SDI out",
        "--name",
        "Ana Duarte",
        "--email",
        "ana@example.com",
    ]));
    let number = rma["number"].as_str().unwrap().to_owned();
    assert!(number.starts_with("RMA-"), "{rma}");
    assert_eq!(
        ok(&run(&["rma", "state", &number, "diagnosing"])),
        format!("{number} diagnosing\n")
    );
    let decided = ok(&run(&[
        "rma",
        "coverage",
        &number,
        "--cause",
        "no_customer_fault",
    ]));
    assert!(decided.contains(" covered ("), "{decided}");

    // The push: the next check offers 2.1.0 as a repair grant.
    let pushed = ok(&run(&[
        "push",
        "create",
        "SN-0001",
        "--version",
        "2.1.0",
        "--rma",
        &number,
        "--reason",
        "SDI fix",
    ]));
    assert!(pushed.starts_with("pushed: "), "{pushed}");
    assert!(pushed.contains(" active 2.1.0 "), "{pushed}");
    let view = json(&run(&["device", "show", "SN-0001", "--json"]));
    assert_eq!(view["active_push"]["version"], "2.1.0", "{view}");
    assert_eq!(
        view["entitlement"]["status"], "update_available",
        "{view:#}"
    );
    assert_eq!(
        view["entitlement"]["releases"][0]["decision"]["code"],
        "repair_grant"
    );

    // A second push is refused with the server's code; with --json its
    // error body is on stdout, for scripts.
    let again = run(&[
        "--json", "push", "create", "SN-0001", "--newest", "--rma", &number, "--reason", "x",
    ]);
    assert_eq!(again.status.code(), Some(1));
    assert_eq!(json_of(&again)["error"]["code"], "push_exists");
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("push_exists"),
        "{again:?}"
    );

    // The offline bundle, written in one piece.
    let file = dir.path().join("bundle.tar");
    let wrote = ok(&run(&[
        "push",
        "bundle",
        "SN-0001",
        "--out",
        file.to_str().unwrap(),
    ]));
    assert!(wrote.contains("firmup-device install --bundle"), "{wrote}");
    let mut names: Vec<String> = tar::Archive::new(std::fs::File::open(&file).unwrap())
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    names.sort();
    assert_eq!(names.len(), 3, "{names:?}");
    assert!(names.contains(&"manifest.json".to_owned()), "{names:?}");

    // Cancel, and the history shows it.
    let cancelled = ok(&run(&["push", "cancel", "SN-0001"]));
    assert!(cancelled.contains(" cancelled 2.1.0 "), "{cancelled}");
    let history = ok(&run(&["push", "list", "SN-0001"]));
    assert!(history.contains(" cancelled 2.1.0 "), "{history}");
    let view = json(&run(&["device", "show", "SN-0001", "--json"]));
    assert_eq!(view["entitlement"]["status"], "not_entitled", "{view}");

    // The RMA list, filtered; the RMA in full with its events.
    let listed = ok(&run(&["rma", "list", "--state", "open", "--model", "E4K"]));
    assert!(
        listed.starts_with(&format!("{number} diagnosing SN-0001 E4K")),
        "{listed}"
    );
    let none = ok(&run(&["rma", "list", "--state", "shipped"]));
    assert_eq!(none, "no RMAs\n");
    let full = ok(&run(&["rma", "show", &number]));
    for kind in ["opened", "state received -> diagnosing", "coverage", "push"] {
        assert!(full.contains(&format!(" {kind}")), "{kind}: {full}");
    }
    assert!(
        full.contains("customer: Ana Duarte <ana@example.com>"),
        "{full}"
    );

    // Registration on the owner's behalf, once.
    let registered = ok(&run(&["device", "register", "SN-0001"]));
    assert!(
        registered.starts_with("registered SN-0001: warranty until "),
        "{registered}"
    );
    let twice = run(&["device", "register", "SN-0001"]);
    assert_eq!(twice.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&twice.stderr).contains("already_registered"),
        "{twice:?}"
    );

    // The sale record is the admin's; the warranty then runs from it.
    let denied = run(&["device", "sale", "SN-0001", "--date", "2026-03-01"]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("wrong_role"));
    let sold = ok(&firmup(
        &url,
        &server.admin,
        &[
            "device",
            "sale",
            "SN-0001",
            "--date",
            "2026-03-01",
            "--region",
            "EU",
        ],
    ));
    assert!(
        sold.starts_with("SN-0001 sold on 2026-03-01 (region EU): warranty until "),
        "{sold}"
    );
    let warranty = json(&run(&[
        "--json",
        "device",
        "warranty",
        "SN-0001",
        "--fault-on",
        "2026-02-01",
    ]));
    assert_eq!(warranty["fault"]["covered"], false, "{warranty}");
    assert_eq!(warranty["warranty"]["start"], "2026-03-01", "{warranty}");

    // A serial that does not exist, a role that may not: refused, exit 1.
    let unknown = run(&["device", "show", "SN-NOPE"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown_serial"));
    let releng = server.cli_token("release_engineer", None);
    let denied = firmup(&url, &releng, &["push", "cancel", "SN-0001"]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("wrong_role"));

    // Every change above is in the audit log under the technician's token.
    let (_, audit) = server.json(Method::GET, "/v1/admin/audit", &server.admin, None);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for a in ["device.push", "device.push_bundle", "device.register"] {
        assert!(actions.contains(&a), "{a}: {actions:?}");
    }
}

#[test]
fn files_go_to_an_rma_and_dates_of_sale_come_from_a_csv_file() {
    let dir = tempfile::tempdir().unwrap();
    let server = world(dir.path());
    let url = server.url.clone();
    let tech = server.cli_token("technician", None);
    let run = |args: &[&str]| firmup(&url, &tech, args);
    let opened = json(&run(&[
        "--json",
        "rma",
        "open",
        "SN-0001",
        "--fault",
        "no picture",
        "--name",
        "Ana Duarte",
        "--email",
        "ana@example.com",
    ]));
    let number = opened["number"].as_str().unwrap().to_string();

    // A photo: streamed, its type guessed from the name, its sha256 sent
    // so the server checks it arrived whole; the RMA lists it.
    let photo = dir.path().join("front-panel.jpg");
    let bytes: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&photo, &bytes).unwrap();
    let attached = json(&run(&[
        "--json",
        "rma",
        "attach",
        &number,
        photo.to_str().unwrap(),
    ]));
    assert_eq!(attached["name"], "front-panel.jpg", "{attached}");
    assert_eq!(attached["content_type"], "image/jpeg", "{attached}");
    assert_eq!(attached["length"], 300_000, "{attached}");
    let id = attached["id"].as_str().unwrap().to_string();
    let log = dir.path().join("boot.bin");
    std::fs::write(&log, b"boot log").unwrap();
    let named = ok(&run(&[
        "rma",
        "attach",
        &number,
        log.to_str().unwrap(),
        "--name",
        "boot.log",
        "--content-type",
        "text/plain",
    ]));
    assert!(named.starts_with("attached: att_"), "{named}");
    assert!(
        named.contains(" boot.log (text/plain, 8 bytes) by "),
        "{named}"
    );
    let full = ok(&run(&["rma", "show", &number]));
    assert!(
        full.contains(&format!(
            "attachment: {id} front-panel.jpg (image/jpeg, 300000 bytes) by "
        )),
        "{full}"
    );

    // Back out, under its own name by default or where asked.
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    let fetched = Command::new(bin("firmup-staff", "firmup"))
        .args(["rma", "attachment", &number, &id])
        .env("FIRMUP_SERVER", &url)
        .env("FIRMUP_TOKEN", &tech)
        .current_dir(&work)
        .output()
        .unwrap();
    assert!(ok(&fetched).starts_with("wrote front-panel.jpg (300000 bytes)"));
    assert_eq!(std::fs::read(work.join("front-panel.jpg")).unwrap(), bytes);
    let out = dir.path().join("copy.jpg");
    ok(&run(&[
        "rma",
        "attachment",
        &number,
        &id,
        "--out",
        out.to_str().unwrap(),
    ]));
    assert_eq!(std::fs::read(&out).unwrap(), bytes);

    // A missing file is a local error; an unknown RMA or attachment a refusal.
    let missing = run(&["rma", "attach", &number, "/nonexistent/photo.jpg"]);
    assert_eq!(missing.status.code(), Some(3), "{missing:?}");
    let unknown = run(&["rma", "attach", "RMA-2026-999999", photo.to_str().unwrap()]);
    assert_eq!(unknown.status.code(), Some(1), "{unknown:?}");
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("unknown_rma"));
    let gone = run(&[
        "rma",
        "attachment",
        &number,
        "att_00000000000000000000000000000000",
        "--out",
        out.to_str().unwrap(),
    ]);
    assert_eq!(gone.status.code(), Some(1), "{gone:?}");
    assert!(String::from_utf8_lossy(&gone.stderr).contains("unknown_attachment"));
    assert_eq!(
        std::fs::read(&out).unwrap(),
        bytes,
        "a refused download leaves the file"
    );

    // Dates of sale from a file (admin): an unknown serial is named with
    // its line, and nothing is recorded; the corrected file goes through.
    let sales = dir.path().join("sales.csv");
    std::fs::write(
        &sales,
        "serial,sale_date,region\nSN-0001,2026-03-01,EU\n\nSN-0404,2026-03-02,\n",
    )
    .unwrap();
    let admin = |args: &[&str]| firmup(&url, &server.admin, args);
    let refused = admin(&["device", "sales", sales.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1), "{refused:?}");
    let said = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(
        said.contains("unknown_serial") && said.contains("SN-0404"),
        "{said}"
    );
    assert!(
        said.contains(&format!("(line 4 of {})", sales.display())),
        "{said}"
    );
    let warranty = json(&run(&["--json", "device", "warranty", "SN-0001"]));
    assert_ne!(warranty["warranty"]["start"], "2026-03-01", "{warranty}");
    let denied = run(&["device", "sales", sales.to_str().unwrap()]);
    assert_eq!(denied.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("wrong_role"));
    std::fs::write(&sales, "serial,sale_date\nSN-0001,2026-03-01\n").unwrap();
    let recorded = ok(&admin(&["device", "sales", sales.to_str().unwrap()]));
    assert_eq!(recorded, "recorded 1 dates of sale\n");
    let warranty = json(&run(&["--json", "device", "warranty", "SN-0001"]));
    assert_eq!(warranty["warranty"]["start"], "2026-03-01", "{warranty}");

    let (_, audit) = server.json(Method::GET, "/v1/admin/audit", &server.admin, None);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["action"].as_str())
        .collect();
    for a in ["rma.attachment", "device.sale_import"] {
        assert!(actions.contains(&a), "{a}: {actions:?}");
    }
}

#[test]
fn a_release_engineer_runs_a_rollout_and_its_groups_from_the_terminal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.v1.json");
    std::fs::write(&root, RootBuilder::standard().build()).unwrap();
    let server = Server::start(dir.path(), &root);
    server.seed_encoder_device("SN-0001");
    let mut builder = ReleaseBuilder::standard();
    builder.manifest.requires = None;
    let release = builder.build();
    let releng = server.cli_token("release_engineer", None);
    server.publish(&releng, "encoders", &release.image, &release.envelope);
    let url = server.url.clone();
    let run = |args: &[&str]| firmup(&url, &releng, args);

    // Start, list, show.
    let started = json(&run(&[
        "--json",
        "rollout",
        "start",
        "encoders",
        "2.1.0",
        "--phases",
        "50,100",
        "--soak",
        "2h",
        "--failure-threshold",
        "10",
        "--min-sample",
        "5",
    ]));
    let id = started["id"].as_str().unwrap().to_string();
    assert_eq!(started["soak_secs"], 7200, "{started}");
    let listed = ok(&run(&["rollout", "list", "--state", "active"]));
    assert_eq!(
        listed,
        format!("{id} running encoders/stable/2.1.0 phase 1/2 (50%)\n")
    );
    let shown = ok(&run(&["rollout", "show", &id]));
    for line in [
        "state: running\n",
        "phase: 1/2 (50%) of 50%, 100%\n",
        "pauses above: 10% failures after 5 installs\n",
        "advances: by itself at ",
        "counts: phase 1 (50%): offered 0, downloading 0, installed 0, failed 0, rolled back 0\n",
        " started by ",
    ] {
        assert!(shown.contains(line), "{line:?}: {shown}");
    }

    // Pause with a reason, refused twice, resume, advance.
    let paused = ok(&run(&[
        "rollout",
        "pause",
        &id,
        "--reason",
        "field reports",
    ]));
    assert!(paused.contains("state: paused\n"), "{paused}");
    assert!(paused.contains("paused reason: paused by "), "{paused}");
    assert!(paused.contains(": field reports\n"), "{paused}");
    let again = run(&["rollout", "pause", &id]);
    assert_eq!(again.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&again.stderr).contains("rollout_paused"));
    assert!(ok(&run(&["rollout", "resume", &id])).contains("state: running\n"));
    let advanced = ok(&run(&["rollout", "advance", &id]));
    assert!(advanced.contains("phase: 2/2 (100%)"), "{advanced}");

    // Watch until the end: the finish shows as one line and watch exits 0.
    ok(&run(&["rollout", "finish", &id]));
    let watched = ok(&run(&["rollout", "watch", &id, "--interval", "1"]));
    assert_eq!(watched.lines().count(), 1, "{watched}");
    assert!(
        watched.contains(&format!("{id} finished phase 2/2 (100%)")),
        "{watched}"
    );
    let refused = run(&["rollout", "advance", &id]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&refused.stderr).contains("rollout_finished"));

    // A technician looks but does not start.
    let tech = server.cli_token("technician", None);
    assert!(ok(&firmup(&url, &tech, &["rollout", "show", &id])).contains("state: finished"));
    let denied = firmup(
        &url,
        &tech,
        &["rollout", "start", "encoders", "2.1.0", "--phases", "100"],
    );
    assert_eq!(denied.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&denied.stderr).contains("wrong_role"));
    // Bad phases never reach the server: clap refuses them.
    let usage = run(&["rollout", "start", "encoders", "2.1.0", "--phases", "ten"]);
    assert_eq!(usage.status.code(), Some(2), "{usage:?}");

    // Groups: static from a file, a window, dynamic, tags, delete.
    let members = dir.path().join("bench.txt");
    std::fs::write(&members, "SN-0001\n").unwrap();
    let created = ok(&run(&[
        "group",
        "create",
        "bench",
        "--file",
        members.to_str().unwrap(),
    ]));
    assert!(created.contains("kind: static\nmembers: 1\n"), "{created}");
    let windowed = ok(&run(&[
        "group",
        "window",
        "bench",
        "--timezone",
        "Europe/Berlin",
        "--slot",
        "mon-fri@02:00+4h",
        "--slot",
        "sat,sun@00:00+24h",
    ]));
    assert!(
        windowed
            .contains("window: Europe/Berlin mon,tue,wed,thu,fri@02:00+4h; sat,sun@00:00+24h\n"),
        "{windowed}"
    );
    let bad_zone = run(&[
        "group",
        "window",
        "bench",
        "--timezone",
        "Mars/Base",
        "--slot",
        "mon@02:00+1h",
    ]);
    assert_eq!(bad_zone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_zone.stderr).contains("invalid_timezone"));
    assert!(ok(&run(&["group", "window", "bench", "--clear"])).contains("window: -\n"));
    ok(&run(&[
        "group",
        "create",
        "lab",
        "--filter",
        "model = E4K and tag = lab",
    ]));
    let all = ok(&run(&["group", "list"]));
    assert_eq!(
        all,
        "bench static, 1 members\nlab dynamic (model = E4K and tag = lab)\n"
    );
    let tagged = ok(&firmup(
        &url,
        &server.admin,
        &["device", "tags", "SN-0001", "lab", "rack-3"],
    ));
    assert_eq!(tagged, "SN-0001 tags: lab, rack-3\n");
    assert_eq!(ok(&run(&["group", "delete", "lab"])), "group lab deleted\n");
    let gone = run(&["group", "show", "lab"]);
    assert_eq!(gone.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&gone.stderr).contains("unknown_group"));
}

#[test]
fn a_push_to_a_group_goes_to_each_unit_under_its_own_rma() {
    let dir = tempfile::tempdir().unwrap();
    let server = world(dir.path());
    server.json_ok(
        Method::POST,
        "/v1/admin/devices",
        &server.admin,
        &serde_json::json!({ "devices": [{ "serial": "SN-0002", "model_id": "E4K", "hw_id": "enc-4k-r2" }],
                             "issue_tokens": false }),
    );
    let url = server.url.clone();
    let tech = server.cli_token("technician", None);
    let releng = server.cli_token("release_engineer", None);
    let run = |args: &[&str]| firmup(&url, &tech, args);
    let rma = json(&run(&[
        "--json",
        "rma",
        "open",
        "SN-0001",
        "--fault",
        "no picture",
        "--name",
        "Ana Duarte",
        "--email",
        "ana@example.com",
    ]))["number"]
        .as_str()
        .unwrap()
        .to_string();
    ok(&firmup(
        &url,
        &releng,
        &["group", "create", "bench", "SN-0001", "SN-0002"],
    ));

    // SN-0001 has an open RMA and is pushed; SN-0002 has none and is
    // skipped, so the command exits 1 after trying both.
    let partial = run(&[
        "push",
        "group",
        "bench",
        "--version",
        "2.1.0",
        "--reason",
        "bench batch",
    ]);
    assert_eq!(partial.status.code(), Some(1), "{partial:?}");
    let said = stdout(&partial);
    assert!(
        said.contains(&format!("SN-0001: pushed under {rma}: ")),
        "{said}"
    );
    assert!(said.contains("SN-0002: skipped: no open RMA"), "{said}");
    assert!(
        String::from_utf8_lossy(&partial.stderr)
            .contains("1 of 2 units of group bench were not pushed"),
        "{partial:?}"
    );
    let pushes = ok(&run(&["push", "list", "SN-0001"]));
    assert!(pushes.contains(" active 2.1.0 "), "{pushes}");

    // With an RMA for SN-0002 too, a second run pushes it; SN-0001's push
    // already exists and is refused as such.
    ok(&run(&[
        "rma",
        "open",
        "SN-0002",
        "--fault",
        "no sound",
        "--name",
        "Ana Duarte",
        "--email",
        "ana@example.com",
    ]));
    let again = run(&[
        "push",
        "group",
        "bench",
        "--version",
        "2.1.0",
        "--reason",
        "bench batch",
    ]);
    let said = stdout(&again);
    assert!(said.contains("SN-0001: refused (push_exists)"), "{said}");
    assert!(said.contains("SN-0002: pushed under RMA-"), "{said}");
    assert_eq!(again.status.code(), Some(1));
}

fn json_of(out: &Output) -> Value {
    serde_json::from_str(&stdout(out)).expect("JSON on stdout")
}

#[test]
fn usage_and_unreachable_servers_have_their_own_exit_codes() {
    // No token: a usage error, before anything is sent.
    let out = Command::new(bin("firmup-staff", "firmup"))
        .args(["device", "show", "SN-1", "--server", "http://127.0.0.1:1"])
        .env_remove("FIRMUP_TOKEN")
        .env_remove("FIRMUP_SERVER")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("FIRMUP_TOKEN"));
    // A URL that is not one.
    let out = firmup("ftp://x", "t", &["device", "show", "SN-1"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    // Nobody listening: try again later.
    let port = free_port();
    let out = firmup(&format!("http://127.0.0.1:{port}"), "t", &["rma", "list"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("try again later"));
    // Push needs a version or --newest.
    let out = firmup(
        "http://127.0.0.1:1",
        "t",
        &["push", "create", "SN-1", "--rma", "R", "--reason", "r"],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
