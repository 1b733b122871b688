//! The `firmup-server` command line: `serve`, `config`, and the operator
//! commands that work directly on the server's database (bootstrap an admin
//! token before any exists, list and revoke tokens, import devices,
//! contracts and dates of sale in bulk).
//!
//! Every command takes `--config`, `--data-dir` and `--database-url`; the
//! other flags belong to `serve` (and `config`, which shows what `serve`
//! would run with). For scripts written when every flag was global, those
//! are still accepted anywhere, hidden from help, and mean something only to
//! `serve` and `config`.

use std::io::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args as _, CommandFactory as _, FromArgMatches as _, Parser, Subcommand};

use crate::config::{Config, Overrides, ServeArgs, StoreArgs};
use crate::controllers::tokens::TokenInfo;
use crate::db::Db;
use crate::db::tokens::{TokenFilter, TokenRow};
use crate::domain::roles::{Actor, Role};
use crate::domain::url::redact_url;
use crate::provisioning;
use crate::tokens::{NewToken, create_token, revoke_token_in_db};

/// Exit status, shown at the end of `firmup-server --help`. Scripts key on
/// these, so they never change meaning.
const EXIT_STATUS: &str = "\
Exit status:
    0  success (serve: stopped by SIGINT or SIGTERM and drained)
    1  error: bad configuration, unreadable or invalid input file, database
       error, refused operation (e.g. revoking an unknown token); one line
       `error: ...` on stderr says what and, for input, where
    2  usage error: unknown command or flag, missing or unparseable argument";

/// One-line reminder of the exit status, shown under every command's help.
const EXIT_STATUS_SHORT: &str =
    "Exit status: 0 ok, 1 error, 2 usage error (see firmup-server --help).";

/// Firmup firmware distribution server.
#[derive(Debug, Parser)]
#[command(
    name = "firmup-server",
    version,
    about,
    long_about = LONG_ABOUT,
    after_help = EXIT_STATUS_SHORT,
    after_long_help = EXIT_STATUS,
    max_term_width = 100
)]
pub struct Cli {
    /// TOML configuration file
    #[arg(
        long,
        global = true,
        env = "FIRMUP_CONFIG",
        value_name = "FILE",
        help_heading = "Global options"
    )]
    pub config: Option<PathBuf>,
    /// Where the data is (every command).
    #[command(flatten)]
    pub store: StoreArgs,
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
later ones winning. `firmup-server serve --help` lists every key;
`firmup-server config` prints the values in effect. The other commands work
on the database of --data-dir / --database-url directly, beside a running
server or without one.

See docs/API.md for the HTTP API; /openapi.json serves the OpenAPI document.";

const SERVE_ABOUT: &str = "\
Run the HTTP server until SIGINT or SIGTERM, then drain in-flight requests
and exit 0.

It creates the data directory, the database and the grant key if they do not
exist yet.";

const CONFIG_ABOUT: &str = "\
Print the configuration `serve` would run with, as TOML, each key with the
layer it came from (default, file PATH, FIRMUP_* variable or flag). Keys
without a value are shown commented out with what applies instead.

The database URL's password and the grant key are shown as \"***\"; nothing
else is secret. Reads the configuration file only: opens no database and
creates nothing.";

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the HTTP server until SIGINT/SIGTERM.
    #[command(
        long_about = SERVE_ABOUT,
        after_help = SERVE_AFTER_HELP,
        after_long_help = serve_after_long_help()
    )]
    Serve(ServeArgs),
    /// Print the effective configuration as TOML (secrets redacted).
    #[command(long_about = CONFIG_ABOUT, after_help = EXIT_STATUS_SHORT)]
    Config(ServeArgs),
    /// Manage API tokens directly in the database (e.g. the first admin token).
    #[command(subcommand, after_help = EXIT_STATUS_SHORT)]
    Token(TokenCommand),
    /// Provision devices in bulk from a CSV file.
    #[command(subcommand, after_help = EXIT_STATUS_SHORT)]
    Device(DeviceCommand),
    /// Import service contracts in bulk from a CSV file.
    #[command(subcommand, after_help = EXIT_STATUS_SHORT)]
    Contract(ContractCommand),
    /// Record dates of sale of provisioned units in bulk from a CSV file.
    #[command(subcommand, after_help = EXIT_STATUS_SHORT)]
    Sale(SaleCommand),
}

/// `serve -h`'s epilogue.
const SERVE_AFTER_HELP: &str = "Every configuration key: firmup-server serve --help.
Exit status: 0 ok, 1 error, 2 usage error (see firmup-server --help).";

/// `serve --help`'s epilogue: every configuration key, then the exit status.
fn serve_after_long_help() -> String {
    format!("{}\n{EXIT_STATUS_SHORT}", crate::config::keys_help())
}

/// Device subcommands.
#[derive(Debug, Subcommand)]
pub enum DeviceCommand {
    /// Provision the devices of a CSV file, all or nothing.
    #[command(long_about = DEVICE_IMPORT_ABOUT, after_help = EXIT_STATUS_SHORT)]
    Import {
        /// CSV file with header `serial,model_id,hw_id[,channel,verification_code,sale_date,region]`.
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
per request). Running servers see the new devices at once.";

/// Contract subcommands.
#[derive(Debug, Subcommand)]
pub enum ContractCommand {
    /// Import the contracts of a CSV file, all or nothing.
    #[command(long_about = CONTRACT_IMPORT_ABOUT, after_help = EXIT_STATUS_SHORT)]
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
poll).";

/// Sale subcommands.
#[derive(Debug, Subcommand)]
pub enum SaleCommand {
    /// Record the dates of sale of a CSV file, all or nothing.
    #[command(long_about = SALE_IMPORT_ABOUT, after_help = EXIT_STATUS_SHORT)]
    Import {
        /// CSV file with header `serial,sale_date[,region]`.
        #[arg(value_name = "FILE.csv")]
        file: PathBuf,
    },
}

const SALE_IMPORT_ABOUT: &str = "\
Record the dates of sale (and regions) of units already provisioned, from a
sales record, all or nothing, in one transaction with one
`device.sale_import` audit record (actor `server-cli`), as
POST /v1/admin/sales does.

The file starts with the header `serial,sale_date,region` or
`serial,sale_date`; sale_date is YYYY-MM-DD, and an empty region records
none. Every serial must be provisioned and appear once. The first bad line
aborts the import and is named by its line number; nothing is written then.
The warranties of the units then run from their dates of sale.

Running servers see the new dates within about two seconds (the import
writes a cache invalidation per unit).";

/// Token subcommands.
#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a token and print its secret once.
    #[command(after_help = EXIT_STATUS_SHORT)]
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
    /// List tokens, newest first (never their secrets).
    #[command(long_about = TOKEN_LIST_ABOUT, after_help = EXIT_STATUS_SHORT)]
    List {
        /// Only tokens of this role.
        #[arg(long, value_enum)]
        role: Option<Role>,
        /// Print a JSON array (the objects of GET /v1/admin/tokens) instead
        /// of a table.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token: running servers refuse it within about two seconds.
    #[command(long_about = TOKEN_REVOKE_ABOUT, after_help = EXIT_STATUS_SHORT)]
    Revoke {
        /// Id of the token (`firmup-server token list` shows them).
        id: String,
    },
}

const TOKEN_LIST_ABOUT: &str = "\
List every token, newest first: id, role, label, serial, created, expires and
revoked (times in UTC, `-` for none). The secret is shown only when a token is
created and never stored (only its hash is); neither is ever listed.

--json prints a JSON array of {id, role, serial, label, created_at,
expires_at, revoked_at}, as GET /v1/admin/tokens does, for scripts.";

const TOKEN_REVOKE_ABOUT: &str = "\
Revoke a token, with a `token.revoke` audit record (actor `server-cli`) and a
cache invalidation in one transaction, as DELETE /v1/admin/tokens/{id} does:
every running server on this database refuses the token within about two
seconds.

An id that names no token is an error (exit status 1). Revoking a token that
is already revoked changes nothing, says when it was revoked, and exits 0.";

impl Cli {
    /// The command-line definition: the derived one, plus `serve`'s flags
    /// accepted (hidden) everywhere for scripts written when every flag was
    /// global. Values given before a subcommand reach `serve` and `config`.
    pub fn command_line() -> clap::Command {
        let legacy: Vec<clap::Arg> = ServeArgs::augment_args(clap::Command::new("serve"))
            .get_arguments()
            .map(|a| a.clone().global(true).hide(true))
            .collect();
        Cli::command().args(legacy)
    }

    /// Parses the process's arguments; on a usage error prints it and
    /// exits with status 2 (`--help` and `--version` exit 0).
    pub fn parse_args() -> Cli {
        let mut matches = Self::command_line().get_matches();
        Cli::from_arg_matches_mut(&mut matches).unwrap_or_else(|e| e.exit())
    }

    /// Runs the command.
    pub async fn run(self) -> anyhow::Result<()> {
        // Everything this process creates (the data directory, the
        // database and its WAL, blobs, keys) is private to its user.
        #[cfg(unix)]
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
        let serve = match &self.command {
            Command::Serve(args) | Command::Config(args) => args.clone(),
            _ => ServeArgs::default(),
        };
        let overrides = Overrides {
            store: self.store,
            serve,
        };
        let (config, explained) = Config::load_explained(self.config.as_deref(), &overrides)?;
        if let Command::Config(_) = self.command {
            print!("{explained}");
            return Ok(());
        }
        crate::telemetry::init(config.log_format);
        match self.command {
            Command::Serve(_) => crate::serve::run(config).await,
            Command::Config(_) => Ok(()),
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
            Command::Sale(SaleCommand::Import { file }) => {
                let db = open_db(&config).await?;
                let input = std::fs::File::open(&file)
                    .with_context(|| format!("opening {}", file.display()))?;
                let fail = |e: crate::error::AppError| {
                    anyhow::anyhow!("{}: {} ({})", file.display(), e, e.code())
                };
                let entries = provisioning::parse_sales_csv(input).map_err(fail)?;
                let serials = provisioning::import_sales(
                    &db,
                    &Actor::cli(),
                    provisioning::Source::Csv,
                    &entries,
                )
                .await
                .map_err(fail)?;
                eprintln!(
                    "recorded {} dates of sale from {}",
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
            Command::Token(TokenCommand::List { role, json }) => {
                let db = open_db(&config).await?;
                let rows = all_tokens(&db, role).await?;
                let mut out = std::io::stdout().lock();
                if json {
                    let infos: Vec<TokenInfo> = rows.into_iter().map(TokenInfo::from).collect();
                    serde_json::to_writer_pretty(&mut out, &infos)?;
                    writeln!(out)?;
                } else {
                    out.write_all(token_table(&rows).as_bytes())?;
                }
                out.flush()?;
                Ok(())
            }
            Command::Token(TokenCommand::Revoke { id }) => {
                let db = open_db(&config).await?;
                revoke(&db, &config, &id).await
            }
        }
    }
}

/// Every token matching `role`, newest first, read a page at a time.
async fn all_tokens(db: &Db, role: Option<Role>) -> anyhow::Result<Vec<TokenRow>> {
    let page = crate::controllers::tokens::MAX_LIMIT;
    let mut filter = TokenFilter {
        role,
        ..TokenFilter::default()
    };
    let mut rows = Vec::new();
    loop {
        let batch = crate::db::tokens::list(db, &filter, page)
            .await
            .context("listing tokens")?;
        let last = batch.len() < usize::try_from(page).unwrap_or(usize::MAX);
        if let Some(r) = batch.last() {
            filter.before = Some(r.created_at);
            filter.before_id = Some(r.id.clone());
        }
        rows.extend(batch);
        if last {
            return Ok(rows);
        }
    }
}

/// `token revoke`: revokes through the service the admin API uses; tells an
/// unknown id (an error) from a token already revoked (nothing to do).
async fn revoke(db: &Db, config: &Config, id: &str) -> anyhow::Result<()> {
    let err = match revoke_token_in_db(db, &Actor::cli(), id).await {
        Ok(()) => {
            eprintln!("revoked token {id}; running servers refuse it within about two seconds");
            return Ok(());
        }
        Err(e) if e.code() == "unknown_token" => e,
        Err(e) => anyhow::bail!("{} ({})", e, e.code()),
    };
    match crate::db::tokens::find_by_id(db, id).await? {
        Some(TokenRow {
            revoked_at: Some(at),
            ..
        }) => {
            eprintln!(
                "token {id} was already revoked at {}; nothing changed",
                utc(at)
            );
            Ok(())
        }
        _ => anyhow::bail!(
            "no token with id {id:?} in {} ({}); `firmup-server token list` shows the ids",
            redact_url(&config.database_url()),
            err.code()
        ),
    }
}

/// A time as `YYYY-MM-DDTHH:MM:SSZ`.
fn utc(t: time::OffsetDateTime) -> String {
    let t = t.to_offset(time::UtcOffset::UTC);
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| t.to_string())
}

/// The tokens as a table with a header line, columns padded to fit.
fn token_table(rows: &[TokenRow]) -> String {
    let cell = |t: Option<time::OffsetDateTime>| t.map_or_else(|| "-".to_string(), utc);
    let mut table = vec![
        [
            "ID", "ROLE", "LABEL", "SERIAL", "CREATED", "EXPIRES", "REVOKED",
        ]
        .map(String::from),
    ];
    table.extend(rows.iter().map(|r| {
        [
            r.id.clone(),
            r.role.clone(),
            r.label.clone(),
            r.serial.clone().unwrap_or_else(|| "-".into()),
            utc(r.created_at),
            cell(r.expires_at),
            cell(r.revoked_at),
        ]
    }));
    let mut widths = [0usize; 7];
    for row in &table {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    for row in &table {
        let line: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(line.join("  ").trim_end());
        out.push('\n');
    }
    out
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
    use super::*;

    /// The help `firmup-server ARGS --help` prints.
    fn help(args: &[&str]) -> String {
        let argv = std::iter::once("firmup-server")
            .chain(args.iter().copied())
            .chain(["--help"]);
        match Cli::command_line().try_get_matches_from(argv) {
            Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => e.to_string(),
            other => panic!("{args:?} --help: {other:?}"),
        }
    }

    #[test]
    fn command_line_definition_is_consistent() {
        Cli::command_line().debug_assert();
    }

    #[test]
    fn help_states_the_exit_status() {
        let top = help(&[]);
        assert!(top.contains("Exit status:\n    0  success"), "{top}");
        assert!(top.contains("    2  usage error"), "{top}");
        for cmd in [
            &["serve"][..],
            &["config"],
            &["token", "create"],
            &["token", "list"],
            &["token", "revoke"],
            &["device", "import"],
            &["contract", "import"],
            &["sale", "import"],
        ] {
            assert!(help(cmd).contains("Exit status: 0 ok, 1 error"), "{cmd:?}");
        }
    }

    #[test]
    fn each_command_shows_only_its_own_options() {
        let serve_only = ["--listen", "--trust-root", "--log-format"];
        for cmd in [
            &[][..],
            &["token", "create"],
            &["token", "list"],
            &["token", "revoke"],
            &["device", "import"],
            &["contract", "import"],
            &["sale", "import"],
        ] {
            let text = help(cmd);
            for flag in serve_only {
                assert!(!text.contains(flag), "{cmd:?} shows {flag}: {text}");
            }
            for flag in ["--config", "--data-dir", "--database-url"] {
                assert!(text.contains(flag), "{cmd:?} lacks {flag}: {text}");
            }
        }
        for cmd in ["serve", "config"] {
            let text = help(&[cmd]);
            for flag in serve_only {
                assert!(text.contains(flag), "{cmd} lacks {flag}: {text}");
            }
        }
    }

    #[test]
    fn serve_flags_are_still_accepted_everywhere() {
        let parse = |args: &[&str]| {
            let argv = std::iter::once("firmup-server").chain(args.iter().copied());
            let mut m = Cli::command_line()
                .try_get_matches_from(argv)
                .map_err(|e| e.to_string())?;
            Cli::from_arg_matches_mut(&mut m).map_err(|e| e.to_string())
        };
        let cli = parse(&["--trust-root", "r.json", "--data-dir", "d", "serve"]).expect("parses");
        let Command::Serve(serve) = cli.command else {
            panic!("not serve");
        };
        assert_eq!(serve.trust_root, Some(PathBuf::from("r.json")));
        assert_eq!(cli.store.data_dir, Some(PathBuf::from("d")));
        for args in [
            &["token", "create", "--role", "admin", "--trust-root", "r"][..],
            &["--listen", "127.0.0.1:1", "token", "list"],
            &["device", "import", "x.csv", "--log-format", "json"],
        ] {
            assert!(parse(args).is_ok(), "{args:?}");
        }
    }

    #[test]
    fn every_configuration_key_is_in_serve_help_and_the_api_docs() {
        let text = help(&["serve"]);
        let docs = include_str!("../../docs/API.md");
        let docs = &docs[docs
            .find("## Configuration")
            .expect("a configuration section")..];
        for name in Config::FIELDS {
            let env = crate::config::env_of(name);
            assert!(text.contains(&format!("{name}  ({env}")), "{name}: {text}");
            assert!(
                docs.contains(&format!("`{name}`")),
                "docs/API.md lacks {name}"
            );
        }
        assert!(
            text.contains("data_dir  (FIRMUP_DATA_DIR, --data-dir)"),
            "{text}"
        );
        assert!(text.contains("Default: 21600."), "{text}");
    }

    #[test]
    fn token_table_pads_columns_in_utc_seconds() {
        let at = time::macros::datetime!(2026-01-02 03:04:05.678 UTC);
        let rows = [TokenRow {
            id: "t1".into(),
            role: "device".into(),
            serial: Some("SN-1".into()),
            label: "line 4".into(),
            created_at: at,
            expires_at: None,
            revoked_at: Some(at),
        }];
        assert_eq!(
            token_table(&rows),
            "ID  ROLE    LABEL   SERIAL  CREATED               EXPIRES  REVOKED\n\
             t1  device  line 4  SN-1    2026-01-02T03:04:05Z  -        2026-01-02T03:04:05Z\n"
        );
    }

    #[test]
    fn csv_cells_never_start_a_formula() {
        for cell in ["=HYPERLINK(\"x\")", "+1", "-SN", "@SUM(A1)", "\tx"] {
            assert!(spreadsheet_safe(cell).starts_with('\''), "{cell}");
        }
        assert_eq!(spreadsheet_safe("SN-0001"), "SN-0001");
    }
}
