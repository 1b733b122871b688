//! The after-sales promise, end to end over real HTTP against a real
//! `firmup-server` process: each entitlement outcome, an upgrade path with a
//! stepping stone, channels and yanking, as devices see them.

use firmup_fixtures::{ReleaseBuilder, RootBuilder};
use firmup_tests::Server;
use reqwest::Method;
use serde_json::{Value, json};

struct World {
    _dir: tempfile::TempDir,
    server: Server,
    releng: String,
}

impl World {
    fn admin(&self, method: Method, path: &str, body: Value) -> Value {
        let (status, answer) = self
            .server
            .json(method, path, &self.server.admin, Some(&body));
        assert!((200..300).contains(&status), "{path}: {status} {answer}");
        answer
    }

    /// Uploads the image and publishes the signed release.
    fn publish(&self, release: &ReleaseBuilder) {
        let r = release.build();
        let line = &release.manifest.product_line;
        self.server
            .publish(&self.releng, line, &r.image, &r.envelope);
    }

    fn releng(&self, method: Method, path: &str, body: Value) {
        let (status, answer) = self.server.json(method, path, &self.releng, Some(&body));
        assert!((200..300).contains(&status), "{path}: {status} {answer}");
    }

    fn check(&self, token: &str, serial: &str, hw_id: &str, version: &str) -> Value {
        let (status, answer) = self.server.json(
            Method::POST,
            "/v1/device/check",
            token,
            Some(
                &json!({ "serial": serial, "hw_id": hw_id, "current_version": version,
                          "security_counter": 3, "root_version": 1 }),
            ),
        );
        assert_eq!(status, 200, "{answer}");
        answer
    }
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root.v1.json");
    let studio_keys = ["release-studio-1", "release-studio-2"];
    std::fs::write(
        &root,
        RootBuilder::standard()
            .delegate("studio", &studio_keys, 2)
            .build(),
    )
    .unwrap();
    let server = Server::start(dir.path(), &root);
    let releng = server.cli_token("release_engineer", None);
    World {
        _dir: dir,
        server,
        releng,
    }
}

fn release(line: &str, hw: &[&str], version: &str, manifest_version: u64) -> ReleaseBuilder {
    let mut b = ReleaseBuilder::for_line(line, hw[0]).version(version);
    b.manifest.hw_compat = hw.iter().map(|h| h.to_string()).collect();
    b.manifest.manifest_version = manifest_version;
    b.manifest.requires = None;
    b
}

fn code(answer: &Value) -> (&str, &str) {
    let entitlement = if answer["status"] == "update_available" {
        &answer["update"]["entitlement"]
    } else {
        &answer["entitlement"]
    };
    (
        answer["status"].as_str().unwrap(),
        entitlement["code"].as_str().unwrap_or("none"),
    )
}

#[test]
fn entitlement_outcomes_paths_channels_and_yank_over_http() {
    let w = world();
    const POST: Method = Method::POST;
    const PUT: Method = Method::PUT;
    w.admin(
        PUT,
        "/v1/admin/product-lines/encoders",
        json!({ "name": "Encoders", "kind": "hardware" }),
    );
    w.admin(
        PUT,
        "/v1/admin/product-lines/studio",
        json!({ "name": "Studio", "kind": "software" }),
    );
    w.admin(
        PUT,
        "/v1/admin/models/E4K",
        json!({ "product_line": "encoders", "name": "E4K", "hw_ids": ["enc-4k-r2"] }),
    );
    w.admin(PUT, "/v1/admin/models/E3",
        json!({ "product_line": "encoders", "name": "E3", "hw_ids": ["enc-hd-r1"], "eol": "2025-06-30" }));
    w.admin(
        PUT,
        "/v1/admin/models/SD",
        json!({ "product_line": "studio", "name": "StreamDesk", "hw_ids": ["sd-x86"] }),
    );
    let provisioned = w.admin(
        POST,
        "/v1/admin/devices",
        json!({ "issue_tokens": true, "devices": [
        { "serial": "SN-4K", "model_id": "E4K", "hw_id": "enc-4k-r2" },
        { "serial": "SN-E3", "model_id": "E3", "hw_id": "enc-hd-r1" },
        { "serial": "SN-E3-C", "model_id": "E3", "hw_id": "enc-hd-r1" },
        { "serial": "SN-SW-P", "model_id": "SD", "hw_id": "sd-x86" },
        { "serial": "SN-SW-X", "model_id": "SD", "hw_id": "sd-x86" },
        { "serial": "SN-SW-N", "model_id": "SD", "hw_id": "sd-x86" } ] }),
    );
    let token = |serial: &str| -> String {
        provisioned["devices"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["serial"] == serial)
            .unwrap()["token"]
            .as_str()
            .unwrap()
            .to_string()
    };
    w.admin(POST, "/v1/admin/devices/SN-E3-C/contracts",
        json!({ "id": "SC-1042", "kind": "service_contract", "starts": "2025-01-01", "ends": "2099-12-31" }));
    w.admin(
        POST,
        "/v1/admin/devices/SN-SW-P/licences",
        json!({ "id": "LIC-P", "starts": "2023-01-01", "ends": null }),
    );
    w.admin(
        POST,
        "/v1/admin/devices/SN-SW-X/licences",
        json!({ "id": "LIC-X", "starts": "2024-01-01", "ends": "2025-01-01" }),
    );

    // Published today: after E3's EOL.
    w.publish(&release(
        "encoders",
        &["enc-4k-r2", "enc-hd-r1"],
        "2.1.0",
        7,
    ));
    w.publish(&release("studio", &["sd-x86"], "5.0.0", 1));

    let four_k = w.check(&token("SN-4K"), "SN-4K", "enc-4k-r2", "2.0.0");
    assert_eq!(
        code(&four_k),
        ("update_available", "in_production"),
        "{four_k}"
    );
    let eol = w.check(&token("SN-E3"), "SN-E3", "enc-hd-r1", "2.0.0");
    assert_eq!(code(&eol), ("not_entitled", "eol_no_contract"), "{eol}");
    assert!(eol["update"].is_null());
    let contract = w.check(&token("SN-E3-C"), "SN-E3-C", "enc-hd-r1", "2.0.0");
    assert_eq!(
        code(&contract),
        ("update_available", "service_contract"),
        "{contract}"
    );
    let perpetual = w.check(&token("SN-SW-P"), "SN-SW-P", "sd-x86", "4.0.0");
    assert_eq!(
        code(&perpetual),
        ("update_available", "licence_perpetual"),
        "{perpetual}"
    );
    let expired = w.check(&token("SN-SW-X"), "SN-SW-X", "sd-x86", "4.0.0");
    assert_eq!(
        code(&expired),
        ("not_entitled", "licence_expired"),
        "{expired}"
    );
    let none = w.check(&token("SN-SW-N"), "SN-SW-N", "sd-x86", "4.0.0");
    assert_eq!(code(&none), ("not_entitled", "no_licence"), "{none}");

    // A critical fix marked free for all reaches the discontinued model.
    w.releng(
        POST,
        "/v1/product-lines/encoders/releases/stable/2.1.0/free-for-all",
        json!({ "free_for_all": true }),
    );
    let eol = w.check(&token("SN-E3"), "SN-E3", "enc-hd-r1", "2.0.0");
    assert_eq!(code(&eol), ("update_available", "free_for_all"), "{eol}");

    // 3.0.0 needs 2.1.0 first: a device on 2.0.0 gets the stepping stone.
    let mut three = release("encoders", &["enc-4k-r2"], "3.0.0", 8);
    three.manifest.requires = Some(semver::Version::new(2, 1, 0));
    w.publish(&three);
    let step = w.check(&token("SN-4K"), "SN-4K", "enc-4k-r2", "2.0.0");
    assert_eq!(step["update"]["version"], "2.1.0", "{step}");
    assert_eq!(step["update"]["stepping_stone"], true);
    assert_eq!(step["update"]["target_version"], "3.0.0");
    let next = w.check(&token("SN-4K"), "SN-4K", "enc-4k-r2", "2.1.0");
    assert_eq!(next["update"]["version"], "3.0.0", "{next}");

    // A beta release is not offered on stable.
    let mut beta = release("encoders", &["enc-4k-r2"], "3.1.0-beta.1", 1);
    beta.manifest.channel = "beta".into();
    w.publish(&beta);
    let stable = w.check(&token("SN-4K"), "SN-4K", "enc-4k-r2", "3.0.0");
    assert_eq!(stable["status"], "up_to_date", "{stable}");

    // Yanked: no longer offered; devices on it are left alone.
    w.releng(
        POST,
        "/v1/product-lines/encoders/releases/stable/3.0.0/yank",
        json!({ "reason": "field failures" }),
    );
    let after_yank = w.check(&token("SN-4K"), "SN-4K", "enc-4k-r2", "2.1.0");
    assert_eq!(after_yank["status"], "up_to_date", "{after_yank}");
}
