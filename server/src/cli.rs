//! The `firmup-server` command line: `serve` and the operator commands that
//! work directly on the server's database (bootstrap an admin token before
//! any exists, import devices and contracts in bulk).

use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use crate::auth::{Actor, Role};
use crate::config::{Config, Overrides};
use crate::db::Db;
use crate::provisioning;
use crate::tokens::{NewToken, create_token};

/// Firmup firmware distribution server.
#[derive(Debug, Parser)]
#[command(name = "firmup-server", version, about, long_about = LONG_ABOUT)]
pub struct Cli {
    /// TOML configuration file [env: FIRMUP_CONFIG]
    #[arg(long, global = true, env = "FIRMUP_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Settings that override the file and the environment.
    #[command(flatten)]
    pub overrides: Overrides,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

const LONG_ABOUT: &str = "\
Firmup firmware distribution server.

Start it on the embedded default (SQLite and a blob directory under
./firmup-data, listening on 127.0.0.1:8080):

    firmup-server serve

Configuration comes from defaults, an optional TOML file (--config), the
environment (FIRMUP_LISTEN, FIRMUP_DATA_DIR, FIRMUP_DATABASE_URL,
FIRMUP_TRUST_ROOT, FIRMUP_MAX_IMAGE_BYTES, FIRMUP_GRANT_KEY, ...) and flags,
later ones winning. See docs/API.md for the HTTP API; /openapi.json serves
the OpenAPI document.";

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server until SIGINT/SIGTERM.
    Serve,
    /// Manage API tokens directly in the database (e.g. the first admin token).
    #[command(subcommand)]
    Token(TokenCommand),
    /// Provision devices in bulk from a CSV file.
    #[command(subcommand)]
    Device(DeviceCommand),
    /// Import service contracts in bulk from a CSV file.
    #[command(subcommand)]
    Contract(ContractCommand),
}

/// Device subcommands.
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Provision the devices of a CSV file, all or nothing.
    #[command(long_about = DEVICE_IMPORT_ABOUT)]
    Import {
        /// CSV file with header `serial,model_id,hw_id[,channel]`.
        #[arg(value_name = "FILE.csv")]
        file: PathBuf,
        /// Do not issue device tokens.
        #[arg(long)]
        no_tokens: bool,
    },
}

const DEVICE_IMPORT_ABOUT: &str = "\
Provision the devices of a CSV file, all or nothing, in one transaction with
one `device.provision` audit record (actor `server-cli`).

The file starts with the header `serial,model_id,hw_id` or
`serial,model_id,hw_id,channel`; an empty or missing channel means `stable`.
Every model must exist (PUT /v1/admin/models/{id} or
POST /v1/admin/catalogue/import), every hw_id must be one of its model's
hardware ids, and no serial may be provisioned already or appear twice. The
first bad line aborts the import and is named by its line number; nothing is
written then.

Unless --no-tokens is given, one device token per device is issued and the
CSV `serial,token` is printed to standard output: the only time the secrets
are shown, so redirect it to a file kept safe. A summary goes to standard
error. There is no batch size limit here (the HTTP API takes at most 10 000
per request). Running servers see the new devices at once.

Exit status: 0 on success, 1 on any error.";

/// Contract subcommands.
#[derive(Debug, Subcommand)]
pub enum ContractCommand {
    /// Import the contracts of a CSV file, all or nothing.
    #[command(long_about = CONTRACT_IMPORT_ABOUT)]
    Import {
        /// CSV file with header `id,serial,kind,starts,ends`.
        #[arg(value_name = "FILE.csv")]
        file: PathBuf,
    },
}

const CONTRACT_IMPORT_ABOUT: &str = "\
Import the contracts of a CSV file, all or nothing, in one transaction with
one `contract.import` audit record (actor `server-cli`).

The file starts with the header `id,serial,kind,starts,ends`. kind is
`service_contract` or `warranty_extension`; starts and ends are YYYY-MM-DD,
both inclusive, ends not before starts. Every serial must be provisioned;
contract ids must be new and appear once. The first bad line aborts the
import and is named by its line number; nothing is written then.

Running servers apply the new contracts to devices they have cached within
about two seconds (the import writes a cache invalidation per device they
poll). Exit status: 0 on success, 1 on any error.";

/// Token subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print its secret once.
    Create {
        /// Role of the token.
        #[arg(long, value_enum)]
        role: Role,
        /// Whose token it is (shown in the audit log).
        #[arg(long, default_value = "operator")]
        label: String,
        /// Serial a device token is bound to.
        #[arg(long)]
        serial: Option<String>,
        /// Days until it expires, 1-3650 (default: never).
        #[arg(long, value_name = "DAYS")]
        expires_in_days: Option<u32>,
    },
}

impl Cli {
    /// Runs the command.
    pub async fn run(self) -> anyhow::Result<()> {
        // Everything this process creates (the data directory, the
        // database and its WAL, blobs, keys) is private to its user.
        #[cfg(unix)]
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        let config = Config::load(self.config.as_deref(), &self.overrides)?;
        crate::telemetry::init(config.log_format);
        match self.command {
            Command::Serve => crate::serve::run(config).await,
            Command::Device(DeviceCommand::Import { file, no_tokens }) => {
                let db = open_db(&config).await?;
                let input = std::fs::File::open(&file)
                    .with_context(|| format!("opening {}", file.display()))?;
                let done = provisioning::import_devices_csv(&db, &Actor::cli(), input, !no_tokens)
                    .await
                    .map_err(|e| anyhow::anyhow!("{}: {} ({})", file.display(), e, e.code()))?;
                if !no_tokens {
                    let mut out = csv::Writer::from_writer(std::io::stdout().lock());
                    out.write_record(["serial", "token"])?;
                    for d in &done {
                        let token = d.token.as_ref().map_or("", |t| t.token.as_str());
                        out.write_record([spreadsheet_safe(&d.serial).as_ref(), token])?;
                    }
                    out.flush()?;
                }
                eprintln!(
                    "provisioned {} devices from {}{}",
                    done.len(),
                    file.display(),
                    if no_tokens {
                        " (no tokens issued)"
                    } else {
                        "; their tokens are above and are shown only once"
                    }
                );
                Ok(())
            }
            Command::Contract(ContractCommand::Import { file }) => {
                let db = open_db(&config).await?;
                let input = std::fs::File::open(&file)
                    .with_context(|| format!("opening {}", file.display()))?;
                let entries = provisioning::parse_contracts_csv(input)
                    .map_err(|e| anyhow::anyhow!("{}: {} ({})", file.display(), e, e.code()))?;
                let serials = provisioning::import_contracts(&db, &Actor::cli(), &entries)
                    .await
                    .map_err(|e| anyhow::anyhow!("{}: {} ({})", file.display(), e, e.code()))?;
                eprintln!(
                    "imported {} contracts for {} devices from {}",
                    entries.len(),
                    serials.len(),
                    file.display()
                );
                Ok(())
            }
            Command::Token(TokenCommand::Create {
                role,
                label,
                serial,
                expires_in_days,
            }) => {
                let db = open_db(&config).await?;
                let req = NewToken {
                    role,
                    label,
                    serial,
                    expires_in_days,
                };
                let created = create_token(&db, &Actor::cli(), req)
                    .await
                    .map_err(|e| anyhow::anyhow!("{} ({})", e, e.code()))?;
                println!("{}", created.token);
                eprintln!(
                    "created {} token {} (the secret above is shown only once)",
                    created.role.as_str(),
                    created.id
                );
                Ok(())
            }
        }
    }
}

/// A CSV cell a spreadsheet will not run as a formula: a cell starting with
/// `=`, `+`, `-`, `@` (or a tab or carriage return) gets a leading `'`, as
/// OWASP advises against CSV injection. Serials may start with `-` or `+`.
pub fn spreadsheet_safe(cell: &str) -> std::borrow::Cow<'_, str> {
    if cell.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{cell}"))
    } else {
        std::borrow::Cow::Borrowed(cell)
    }
}

/// Opens the configured database (creating the data directory if needed).
async fn open_db(config: &Config) -> anyhow::Result<Db> {
    crate::app::create_data_dir(&config.data_dir)?;
    Db::connect(&config.database_url()).await
}

#[cfg(test)]
mod tests {
    use super::spreadsheet_safe;

    #[test]
    fn csv_cells_never_start_a_formula() {
        for cell in ["=HYPERLINK(\"x\")", "+1", "-SN", "@SUM(A1)", "\tx"] {
            assert!(spreadsheet_safe(cell).starts_with('\''), "{cell}");
        }
        assert_eq!(spreadsheet_safe("SN-0001"), "SN-0001");
    }
}
