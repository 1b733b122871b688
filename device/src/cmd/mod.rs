//! The command line: one module per subcommand, each with `Args` and
//! `run()`.

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

mod check;
mod install;
mod provision;
mod run;
mod security_updates;
mod status;
mod update;

const EXIT_CODES: &str = "\
EXIT CODES:
  0  success: installed, up to date, not entitled, or nothing to do
  1  refused or rolled back: verification failed, the image did not match,
     or the new slot failed its health check
  2  usage error: unknown flag, missing or unparseable argument
  3  local error: not provisioned, unreadable config or bundle, corrupt
     state, the device's storage failing, an update still pending, another
     agent on the same state directory, the server refusing the token
  4  try again later: server unreachable, 5xx, download budget used up, the
     download link expired (the server's grant, or the presigned URL an
     allowed download origin refused): the next check hands out a new one";

/// Firmup device agent: checks for, downloads, verifies and installs signed
/// firmware into A/B slots, and reports each stage to the server.
///
/// A state directory simulates the device: `config.json` (server, serial,
/// hw_id, product_line, channel, token, and optionally
/// allowed_download_origins), the trusted state (`state/`), the A/B slots
/// (`slots/`), downloads (`work/`). Creating a file `unhealthy` in it makes
/// the health check after the next reboot fail, so the update is rolled
/// back.
///
/// Security releases (signed as `security` or `mixed`) install without
/// asking by default; `security-updates off` or `security-updates
/// postpone DATE` holds them back, and the server is told of that choice
/// once per release.
///
/// Image downloads follow redirects within the server's origin only,
/// unless the origin they lead to is allowed: `allowed_download_origins` in
/// `config.json` (a list of URLs such as `https://cdn.example.com`), set by
/// `provision --allow-download-origin`, plus any `--allow-download-origin`
/// given to a command. Use this when the server redirects image downloads
/// to presigned URLs on an object store or a CDN. Image downloads never
/// carry the device token, wherever they go.
///
/// Every manifest is verified against the device's trusted root, identity
/// and committed state before anything is downloaded; images are checked
/// against their signed length and sha256 while downloading, while flashing
/// and again from the slot; the anti-rollback counter only moves after the
/// new slot booted and passed its health check.
#[derive(Debug, Parser)]
#[command(name = "firmup-device", version, after_long_help = EXIT_CODES)]
pub struct Cli {
    /// The device's state directory.
    #[arg(
        long,
        global = true,
        env = "FIRMUP_DEVICE_STATE_DIR",
        default_value = "./firmup-device"
    )]
    state_dir: PathBuf,
    /// Also follow image-download redirects to this origin: the object
    /// store or CDN holding the server's presigned download URLs, as a
    /// scheme, a host and an optional port (`https://cdn.example.com`,
    /// `http://127.0.0.1:3900`), no path or query. Repeatable (or
    /// comma-separated in the environment variable). `provision` stores
    /// them in config.json (allowed_download_origins); other commands add
    /// them to config.json's for this run. The origin must match exactly:
    /// an https origin does not allow http on the same host.
    #[arg(
        long = "allow-download-origin",
        value_name = "URL",
        global = true,
        env = "FIRMUP_DEVICE_ALLOW_DOWNLOAD_ORIGINS",
        value_delimiter = ','
    )]
    allow_download_origins: Vec<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Provision(provision::Args),
    Check(check::Args),
    Update(update::Args),
    Run(run::Args),
    Install(install::Args),
    Status(status::Args),
    SecurityUpdates(security_updates::Args),
}

impl Cli {
    /// Runs the chosen subcommand.
    pub fn run(self) -> Result<()> {
        let dir = &self.state_dir;
        let origins = &self.allow_download_origins;
        match self.command {
            Command::Provision(a) => provision::run(dir, origins, a),
            Command::Check(a) => check::run(dir, origins, a),
            Command::Update(a) => update::run(dir, origins, a),
            Command::Run(a) => run::run(dir, origins, a),
            Command::Install(a) => install::run(dir, origins, a),
            Command::Status(a) => status::run(dir, a),
            Command::SecurityUpdates(a) => security_updates::run(dir, a),
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;
    use firmup_fixtures::RootBuilder;

    use super::Cli;
    use crate::agent::{AgentConfig, Device, Parts};

    fn provision(dir: &std::path::Path, origins: &[&str]) -> anyhow::Result<()> {
        let root = dir.join("root.v1.json");
        std::fs::write(&root, RootBuilder::standard().build()).unwrap();
        let state = dir.join("device");
        let mut args: Vec<String> = [
            "firmup-device",
            "--state-dir",
            state.to_str().unwrap(),
            "provision",
            "--server",
            "http://127.0.0.1:9",
            "--serial",
            "SN-0001",
            "--hw-id",
            "enc-4k-r2",
            "--product-line",
            "encoders",
            "--token",
            "device-token",
            "--version",
            "2.0.0",
            "--root",
            root.to_str().unwrap(),
        ]
        .map(str::to_owned)
        .into();
        for o in origins {
            args.extend(["--allow-download-origin".to_owned(), (*o).to_owned()]);
        }
        Cli::try_parse_from(args).unwrap().run()
    }

    #[test]
    fn provision_stores_the_allowed_download_origins_in_config_json() {
        let dir = tempfile::tempdir().unwrap();
        provision(
            dir.path(),
            &[
                "http://127.0.0.1:3900",
                "https://cdn.example.com/,http://127.0.0.1:3900",
            ],
        )
        .unwrap();
        let device = Device::new(&dir.path().join("device"));
        let raw: serde_json::Value =
            serde_json::from_slice(&std::fs::read(device.config_path()).unwrap()).unwrap();
        assert_eq!(
            raw["allowed_download_origins"],
            serde_json::json!(["http://127.0.0.1:3900", "https://cdn.example.com/"])
        );
        let config = device.config().unwrap();
        assert_eq!(config.device.serial, "SN-0001");
        assert_eq!(config.allowed_download_origins.len(), 2);
        // The agent opens with them (and any given for the run).
        Parts::open(&device.dir, &["https://cdn2.example.com".to_owned()]).unwrap();
        let err = Parts::open(&device.dir, &["https://cdn2.example.com/images".to_owned()])
            .err()
            .unwrap();
        assert!(format!("{err:#}").contains("has the path"), "{err:#}");
    }

    #[test]
    fn provision_refuses_an_allowed_origin_with_a_path_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let err = provision(
            dir.path(),
            &["https://cdn.example.com/bucket?X-Amz-Signature=s"],
        )
        .unwrap_err();
        let msg = format!("{err:#}");
        assert!(msg.contains("--allow-download-origin"), "{msg}");
        assert!(msg.contains("carries a query"), "{msg}");
        assert!(!msg.contains("X-Amz-Signature=s"), "{msg}");
        assert!(
            !Device::new(&dir.path().join("device"))
                .config_path()
                .exists()
        );
    }

    #[test]
    fn config_json_without_the_key_still_parses_and_bad_values_are_refused() {
        let old = br#"{"server":"http://s","serial":"SN-1","hw_id":"h","product_line":"p",
                       "channel":"stable","token":"t"}"#;
        let config = AgentConfig::parse(old).unwrap();
        assert!(config.allowed_download_origins.is_empty());
        // Written back without the key when the list is empty.
        let again: serde_json::Value = serde_json::from_slice(&config.to_json().unwrap()).unwrap();
        assert!(again.get("allowed_download_origins").is_none());
        for bad in [r#""https://cdn.example.com""#, r#"[1]"#, r#"{"a":1}"#] {
            let text = String::from_utf8_lossy(old).replace(
                r#""token":"t""#,
                &format!(r#""token":"t","allowed_download_origins":{bad}"#),
            );
            let err = AgentConfig::parse(text.as_bytes()).unwrap_err();
            assert!(
                err.to_string().contains("allowed_download_origins"),
                "{err}"
            );
        }
    }

    fn cli(dir: &std::path::Path, args: &[&str]) -> anyhow::Result<()> {
        let state = dir.join("device");
        let mut all = vec!["firmup-device", "--state-dir", state.to_str().unwrap()];
        all.extend_from_slice(args);
        Cli::try_parse_from(all).unwrap().run()
    }

    #[test]
    fn security_updates_choice_is_stored_in_the_state_directory() {
        use firmup_client::SecurityUpdates;
        let dir = tempfile::tempdir().unwrap();
        // Not provisioned: no choice to store.
        assert!(cli(dir.path(), &["security-updates", "off"]).is_err());
        provision(dir.path(), &[]).unwrap();
        let device = Device::new(&dir.path().join("device"));
        assert_eq!(
            device.security_updates().unwrap(),
            SecurityUpdates::Automatic
        );

        cli(dir.path(), &["security-updates", "off"]).unwrap();
        assert_eq!(
            device.security_updates().unwrap(),
            SecurityUpdates::OptedOut
        );
        let raw: serde_json::Value = serde_json::from_slice(
            &std::fs::read(device.dir.join(crate::agent::SECURITY_UPDATES_FILE)).unwrap(),
        )
        .unwrap();
        assert_eq!(raw, serde_json::json!({ "mode": "opted_out" }));

        // A date that has passed is refused and changes nothing.
        let err = cli(dir.path(), &["security-updates", "postpone", "2020-01-01"]).unwrap_err();
        assert!(err.to_string().contains("has passed"), "{err}");
        assert_eq!(
            device.security_updates().unwrap(),
            SecurityUpdates::OptedOut
        );

        cli(dir.path(), &["security-updates", "postpone", "2999-09-01"]).unwrap();
        assert_eq!(
            device.security_updates().unwrap(),
            SecurityUpdates::PostponedUntil(time::macros::datetime!(2999-09-01 0:00 UTC))
        );
        cli(dir.path(), &["security-updates"]).unwrap();
        cli(dir.path(), &["security-updates", "auto"]).unwrap();
        assert_eq!(
            device.security_updates().unwrap(),
            SecurityUpdates::Automatic
        );
        assert!(Cli::try_parse_from(["firmup-device", "security-updates", "postpone"]).is_err());
    }

    #[test]
    fn a_security_updates_file_round_trips_and_nonsense_is_refused() {
        use crate::agent::{policy_from_json, policy_to_json};
        use firmup_client::SecurityUpdates;
        for p in [
            SecurityUpdates::Automatic,
            SecurityUpdates::OptedOut,
            SecurityUpdates::PostponedUntil(time::macros::datetime!(2026-09-01 6:30 UTC)),
        ] {
            assert_eq!(policy_from_json(&policy_to_json(p).unwrap()).unwrap(), p);
        }
        for bad in [
            &br#"{}"#[..],
            br#"{"mode":"off"}"#,
            br#"{"mode":"postponed"}"#,
            br#"{"mode":"postponed","postponed_until":"2026-09-01"}"#,
            b"not json",
        ] {
            assert!(
                policy_from_json(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
