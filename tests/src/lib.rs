//! Helpers for the end-to-end tests in `tests/`: locating (and if needed
//! building) the workspace's binaries so tests drive them as a user would.

pub mod proxy;

use std::path::PathBuf;
use std::process::Command;
use std::sync::Once;

/// Path of a binary of this workspace, built with the `dev` profile.
/// Builds the workspace's binaries once per test process, so a bare
/// `cargo test` works without a separate build step. It builds exactly what
/// `scripts/test.sh` builds (`--workspace --bins`): building one package
/// alone would resolve features differently and recompile dependencies.
pub fn bin(package: &str, name: &str) -> PathBuf {
    static BUILT: Once = Once::new();
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf();
    BUILT.call_once(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        // The test process carries cargo's per-package variables
        // (CARGO_PKG_*, CARGO_MANIFEST_DIR, ...); build scripts that watch
        // such variables would see a change and rebuild. Build with the
        // environment the developer's shell has instead.
        let status = Command::new(cargo)
            .args(["build", "--quiet", "--workspace", "--bins"])
            .env_clear()
            .envs(std::env::vars().filter(|(k, _)| keep_for_cargo(k)))
            .current_dir(&workspace)
            .status()
            .expect("cargo runs");
        assert!(status.success(), "building the workspace binaries failed");
    });
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace.join("target"));
    let path = target.join("debug").join(name);
    assert!(
        path.exists(),
        "{} (package {package}) was not built",
        path.display()
    );
    path
}

/// Whether a variable of the test process is passed on to the nested
/// cargo: everything but cargo's per-package variables.
fn keep_for_cargo(name: &str) -> bool {
    let per_package = name.starts_with("CARGO_")
        && !matches!(
            name,
            "CARGO_HOME" | "CARGO_TARGET_DIR" | "CARGO_INCREMENTAL"
        );
    !per_package && !matches!(name, "OUT_DIR" | "RUST_TEST_THREADS")
}

/// A free loopback port (bound and released; good enough for tests that
/// start one server each).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// A real `firmup-server serve` process on a loopback port, with its own
/// data directory. Killed when dropped.
pub struct Server {
    child: std::process::Child,
    /// Base URL, e.g. `http://127.0.0.1:40123`.
    pub url: String,
    /// The data directory.
    pub data_dir: PathBuf,
    /// The database, when it is not the SQLite file in the data directory
    /// (the suites' PostgreSQL run: see `firmup_fixtures::database`).
    pub database_url: Option<String>,
    /// The object store, when it is not the blob directory in the data
    /// directory (the suites' Garage run: see `firmup_fixtures::storage`).
    pub storage_url: Option<String>,
    /// The pinned trust root file.
    pub trust_root: PathBuf,
    /// An admin token.
    pub admin: String,
}

/// `--data-dir DIR`, and `--database-url URL` and `--storage-url URL`
/// when they are given.
pub fn store_args(
    data_dir: &std::path::Path,
    database_url: Option<&str>,
    storage_url: Option<&str>,
) -> Vec<std::ffi::OsString> {
    let mut args = vec!["--data-dir".into(), data_dir.into()];
    if let Some(url) = database_url {
        args.extend(["--database-url".into(), url.into()]);
    }
    if let Some(url) = storage_url {
        args.extend(["--storage-url".into(), url.into()]);
    }
    args
}

impl Server {
    /// Starts a server over `dir/data` pinned to `trust_root`, creates an
    /// admin token, and waits until `/readyz` answers.
    pub fn start(dir: &std::path::Path, trust_root: &std::path::Path) -> Server {
        Self::start_with(dir, trust_root, &[])
    }

    /// [`Server::start`] with extra environment variables (`FIRMUP_*`
    /// settings, `FIRMUP_LOG`).
    pub fn start_with(
        dir: &std::path::Path,
        trust_root: &std::path::Path,
        env: &[(&str, &str)],
    ) -> Server {
        let mut server = Self::spawn(
            dir.join("data"),
            firmup_fixtures::database::fresh_url(),
            firmup_fixtures::storage::fresh_url(),
            trust_root,
            env,
            &dir.join("server.log"),
        );
        server.admin = server.cli_token("admin", None);
        server
    }

    /// A second replica of this server: another `serve` process on the same
    /// database, storage and grant key (the same data directory), on its
    /// own port, logging to `log`. It shares this one's admin token.
    pub fn replica(&self, env: &[(&str, &str)], log: &std::path::Path) -> Server {
        let mut replica = Self::spawn(
            self.data_dir.clone(),
            self.database_url.clone(),
            self.storage_url.clone(),
            &self.trust_root,
            env,
            log,
        );
        replica.admin = self.admin.clone();
        replica
    }

    /// The process's operating-system id (to kill it mid-request).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    fn spawn(
        data_dir: PathBuf,
        database_url: Option<String>,
        storage_url: Option<String>,
        trust_root: &std::path::Path,
        env: &[(&str, &str)],
        log: &std::path::Path,
    ) -> Server {
        let port = free_port();
        let server = Server {
            child: Command::new(bin("firmup-server", "firmup-server"))
                .envs(env.iter().copied())
                .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
                .args(store_args(
                    &data_dir,
                    database_url.as_deref(),
                    storage_url.as_deref(),
                ))
                .arg("--trust-root")
                .arg(trust_root)
                .stdout(std::process::Stdio::null())
                .stderr(std::fs::File::create(log).expect("log file"))
                .spawn()
                .expect("firmup-server starts"),
            url: format!("http://127.0.0.1:{port}"),
            data_dir,
            database_url,
            storage_url,
            trust_root: trust_root.to_path_buf(),
            admin: String::new(),
        };
        let client = reqwest::blocking::Client::new();
        let ready = (0..200).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(50));
            client
                .get(format!("{}/readyz", server.url))
                .send()
                .is_ok_and(|r| r.status().is_success())
        });
        assert!(ready, "server did not become ready; see {}", log.display());
        server
    }

    /// The flags that point another `firmup-server` command at this
    /// server's data directory and database.
    pub fn store_args(&self) -> Vec<std::ffi::OsString> {
        store_args(
            &self.data_dir,
            self.database_url.as_deref(),
            self.storage_url.as_deref(),
        )
    }

    /// Creates a token with the server's CLI (as an operator on the host would).
    pub fn cli_token(&self, role: &str, serial: Option<&str>) -> String {
        let mut cmd = Command::new(bin("firmup-server", "firmup-server"));
        cmd.args([
            "token",
            "create",
            "--role",
            role,
            "--label",
            &format!("test {role}"),
        ])
        .args(self.store_args())
        .arg("--trust-root")
        .arg(&self.trust_root);
        if let Some(s) = serial {
            cmd.args(["--serial", s]);
        }
        let out = cmd.output().expect("firmup-server token create runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("utf-8")
            .trim()
            .to_string()
    }

    /// Sends a JSON request with a bearer token; returns status and JSON body.
    pub fn json(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let client = reqwest::blocking::Client::new();
        let mut req = client
            .request(method, format!("{}{path}", self.url))
            .bearer_auth(token);
        if let Some(b) = body {
            req = req.json(b);
        }
        let res = req.send().expect("request is sent");
        let status = res.status().as_u16();
        let text = res.text().expect("body");
        let value = if text.is_empty() {
            serde_json::Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text))
        };
        (status, value)
    }
}

impl Server {
    /// Like [`Server::json`], asserting a 2xx answer.
    pub fn json_ok(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        body: &serde_json::Value,
    ) -> serde_json::Value {
        let (status, answer) = self.json(method, path, token, Some(body));
        assert!((200..300).contains(&status), "{path}: {status} {answer}");
        answer
    }

    /// The catalogue most end-to-end tests need: product line `encoders`,
    /// model `E4K` (hardware id `enc-4k-r2`), and the device `serial` of
    /// that model provisioned through the admin API. Returns its token.
    pub fn seed_encoder_device(&self, serial: &str) -> String {
        use reqwest::Method;
        use serde_json::json;
        let admin = self.admin.clone();
        self.json_ok(
            Method::PUT,
            "/v1/admin/product-lines/encoders",
            &admin,
            &json!({ "name": "Encoders", "kind": "hardware", "warranty_months": 12 }),
        );
        self.json_ok(
            Method::PUT,
            "/v1/admin/models/E4K",
            &admin,
            &json!({ "product_line": "encoders", "name": "E4K", "hw_ids": ["enc-4k-r2"] }),
        );
        let provisioned = self.json_ok(
            Method::POST,
            "/v1/admin/devices",
            &admin,
            &json!({ "devices": [{ "serial": serial, "model_id": "E4K", "hw_id": "enc-4k-r2" }],
                     "issue_tokens": true }),
        );
        provisioned["devices"][0]["token"]
            .as_str()
            .expect("a device token")
            .to_string()
    }

    /// Uploads `image` and publishes the signed `envelope` on
    /// `product_line` over HTTP with a release engineer's token, asserting
    /// the upload is stored (201, or 200 when it already was) and the
    /// release is created (201). Returns whether the image was newly stored.
    pub fn publish(
        &self,
        release_engineer: &str,
        product_line: &str,
        image: &[u8],
        envelope: &[u8],
    ) -> bool {
        let client = reqwest::blocking::Client::builder()
            .timeout(std::time::Duration::from_secs(120))
            .build()
            .expect("an HTTP client");
        let sha = firmup_client::Sha256Digest::of(image);
        let res = client
            .put(format!("{}/v1/uploads/{sha}", self.url))
            .bearer_auth(release_engineer)
            .body(image.to_vec())
            .send()
            .expect("upload is sent");
        // 200 when the same bytes are already stored (another release).
        let status = res.status().as_u16();
        let created = status == 201;
        assert!(
            matches!(status, 200 | 201),
            "upload: {status} {}",
            res.text().unwrap_or_default()
        );
        let res = client
            .post(format!(
                "{}/v1/product-lines/{product_line}/releases",
                self.url
            ))
            .bearer_auth(release_engineer)
            .body(envelope.to_vec())
            .send()
            .expect("publish is sent");
        let status = res.status().as_u16();
        assert_eq!(status, 201, "publish: {}", res.text().unwrap_or_default());
        created
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
