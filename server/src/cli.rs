//! The `firmup-server` command line: `serve` and the operator commands that
//! work directly on the server's database (bootstrap an admin token before
//! any exists, import devices in bulk).

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::auth::{Actor, Role};
use crate::config::{Config, Overrides};
use crate::controllers::tokens::{NewToken, create_token};
use crate::db::Db;

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
}

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
        /// Days until it expires (default: never).
        #[arg(long)]
        expires_in_days: Option<u32>,
    },
}

impl Cli {
    /// Runs the command.
    pub async fn run(self) -> anyhow::Result<()> {
        let config = Config::load(self.config.as_deref(), &self.overrides)?;
        crate::telemetry::init(config.log_format);
        match self.command {
            Command::Serve => crate::serve::run(config).await,
            Command::Token(TokenCommand::Create {
                role,
                label,
                serial,
                expires_in_days,
            }) => {
                std::fs::create_dir_all(&config.data_dir)?;
                let db = Db::connect(&config.database_url()).await?;
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
