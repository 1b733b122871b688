//! Typed server configuration, built once at startup.
//!
//! Layers, later ones winning: built-in defaults (which work on a laptop),
//! an optional TOML file (`--config FILE` or `FIRMUP_CONFIG`), environment
//! variables `FIRMUP_<FIELD>` (e.g. `FIRMUP_LISTEN=0.0.0.0:8080`), then
//! command-line flags. Layering is figment's job; this module only says
//! what the fields are and checks them.
//!
//! Secrets (the download-grant key) are never logged: `Config`'s `Debug`
//! redacts them.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use figment::Figment;
use figment::providers::{Env, Format as _, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::domain::url::redact_url;

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// How image downloads are delivered once their grant is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Delivery {
    /// The server streams the bytes itself (works with every backend).
    Stream,
    /// The server answers 307 with a short-lived presigned URL of the
    /// object store (S3 backend only), which carries the bytes, or a CDN
    /// in front of it does.
    Redirect,
}

/// The most `max_attachment_bytes` may be (1 GiB): attachments are photos
/// and logs, not images.
pub const MAX_ATTACHMENT_BYTES: u64 = 1024 * 1024 * 1024;

/// Server configuration. Every field has a default that works on a laptop.
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Directory for the embedded database, blobs and the grant key.
    pub data_dir: PathBuf,
    /// Database URL; default `sqlite://<data_dir>/firmup.db`.
    pub database_url: Option<String>,
    /// Connections in the database pool (per replica).
    pub database_pool_size: u32,
    /// Seconds a database statement may run (PostgreSQL's
    /// `statement_timeout`; on SQLite, how long a write waits for the write
    /// lock) before the request is answered 503.
    pub database_statement_timeout_secs: u64,
    /// Blob directory for the local storage backend; default `<data_dir>/blobs`.
    pub blob_dir: Option<PathBuf>,
    /// Object store for images, `s3://BUCKET?endpoint=URL&region=REGION`;
    /// default: the local blob directory.
    pub storage_url: Option<String>,
    /// Part size of multipart uploads to S3, in bytes (at least 5 MiB);
    /// the memory one upload holds at once.
    pub s3_part_size_bytes: u64,
    /// How downloads are delivered: streamed, or redirected to the store.
    pub download_delivery: Delivery,
    /// Lifetime of a presigned download URL, in seconds (redirect delivery).
    pub presigned_url_ttl_secs: u64,
    /// Pinned trust root (root version 1 envelope). Later versions are
    /// added through the API and kept in the database.
    pub trust_root: Option<PathBuf>,
    /// Largest image accepted for upload, in bytes.
    pub max_image_bytes: u64,
    /// Largest file accepted as an RMA attachment, in bytes.
    pub max_attachment_bytes: u64,
    /// Hex key for download grants (32 bytes). Replicas must share it.
    /// Default: generated once into `<data_dir>/grant.key`.
    pub grant_key: Option<String>,
    /// A file holding the grant key (mode 0600), and optionally on a second
    /// line a key also accepted; instead of `grant_key`.
    pub grant_key_file: Option<PathBuf>,
    /// Hex of another grant key that is accepted but never signs: the old
    /// key during a rollover (or the new one just before it).
    pub grant_key_accepted: Option<String>,
    /// Lifetime of a download grant, in seconds.
    pub grant_ttl_secs: u64,
    /// How long a technician's repair push stays active, in seconds (1 hour
    /// to 90 days).
    pub repair_push_ttl_secs: u64,
    /// How long devices wait before the next check, in seconds.
    pub poll_interval_secs: u64,
    /// Random spread added to the poll interval, in percent (0-100).
    pub poll_jitter_percent: u8,
    /// How many days before a unit's security support ends its update
    /// checks carry a warning (0: never; at most 3650).
    pub support_warning_days: u32,
    /// How long a device's facts (model, channel, contracts, licence) may
    /// be served from memory, in seconds (at most 86400). Changes reach
    /// every replica within about two seconds regardless, through the
    /// invalidation log; this only bounds how long a lost invalidation can
    /// last. Roughly the devices' poll interval keeps the check path off
    /// the database.
    pub device_cache_ttl_secs: u64,
    /// How long a token lookup may be served from memory, in seconds (at
    /// most 86400). Revocations reach every replica within about two
    /// seconds regardless; expiry is checked on every request.
    pub token_cache_ttl_secs: u64,
    /// How often buffered last-seen updates are written, in milliseconds.
    pub last_seen_flush_ms: u64,
    /// Log format.
    pub log_format: LogFormat,
    /// Most connections open at once (clamped to what the open-file limit
    /// allows). At the cap the longest-idle connection is closed for each
    /// new one.
    pub max_connections: usize,
    /// Seconds a request's head may take once its first byte arrived.
    pub header_read_timeout_secs: u64,
    /// Seconds a connection with no request in flight may send nothing.
    pub idle_timeout_secs: u64,
    /// Seconds an API call (not an image download or upload, nor a bulk
    /// import) may take, reading its body included.
    pub request_timeout_secs: u64,
    /// Least bytes per second a connection with a request in flight must
    /// move, averaged over `stall_window_secs` (downloads and uploads: a
    /// stalled one is cut, a slow one that moves continues).
    pub min_transfer_bytes_per_sec: u64,
    /// The window, in seconds, that `min_transfer_bytes_per_sec` averages over.
    pub stall_window_secs: u64,
    /// Requests per second one token may make on the device routes, on
    /// average (0 turns the limit off).
    pub token_rate_per_sec: u32,
    /// Requests one token may make at once above that rate.
    pub token_rate_burst: u32,
    /// Requests per second one client address may make on the device and
    /// download routes, on average (0 turns the limit off). Many devices
    /// behind one NAT share an address, so it is generous.
    pub address_rate_per_sec: u32,
    /// Requests one address may make at once above that rate.
    pub address_rate_burst: u32,
    /// Owner registration attempts one serial may take per hour (0: no
    /// limit); bounds guessing a unit's verification code.
    pub registration_per_serial_per_hour: u32,
    /// Owner registration attempts one client address may make per minute
    /// (0: no limit); bounds trying many serials.
    pub registration_per_address_per_minute: u32,
    /// A second address serving only `GET /metrics`, without a token (for
    /// a scrape network that only Prometheus reaches).
    pub metrics_listen: Option<SocketAddr>,
    /// A bearer token for `GET /metrics` on the main address (an admin
    /// token is accepted too). A secret: never printed.
    pub metrics_token: Option<String>,
    /// Hex key (32 bytes) of the pseudonyms that replace erased serials.
    /// Replicas must share it, and it must never change. Default: generated
    /// once into `<data_dir>/pseudonym.key`. A secret: never printed.
    pub pseudonym_key: Option<String>,
    /// Whether logs may carry serials (and request paths with them). Off:
    /// a log line shows a serial's pseudonym instead.
    pub log_serials: bool,
    /// Days installation reports are kept (0: for ever).
    pub retention_reports_days: u32,
    /// Days a device's check-in record (first and last seen, the release
    /// last offered) is kept after its last check-in (0: for ever).
    pub retention_check_ins_days: u32,
    /// Days the details of audit records are kept; the records themselves
    /// stay (0: for ever).
    pub retention_audit_details_days: u32,
    /// Days the customer contact and fault text of a closed or cancelled
    /// RMA are kept (0: for ever).
    pub retention_rma_contacts_days: u32,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("firmup-data"),
            database_url: None,
            database_pool_size: 8,
            database_statement_timeout_secs: 5,
            blob_dir: None,
            storage_url: None,
            s3_part_size_bytes: 8 * 1024 * 1024,
            download_delivery: Delivery::Stream,
            presigned_url_ttl_secs: 300,
            trust_root: None,
            max_image_bytes: 4 * 1024 * 1024 * 1024,
            max_attachment_bytes: 25 * 1024 * 1024,
            grant_key: None,
            grant_key_file: None,
            grant_key_accepted: None,
            grant_ttl_secs: 900,
            repair_push_ttl_secs: 7 * 86_400,
            poll_interval_secs: 6 * 3600,
            poll_jitter_percent: 20,
            support_warning_days: 180,
            device_cache_ttl_secs: 3600,
            token_cache_ttl_secs: 3600,
            last_seen_flush_ms: 1000,
            log_format: LogFormat::Text,
            max_connections: 10_000,
            header_read_timeout_secs: 10,
            idle_timeout_secs: 20,
            request_timeout_secs: 30,
            min_transfer_bytes_per_sec: 1024,
            stall_window_secs: 30,
            token_rate_per_sec: 2,
            token_rate_burst: 10,
            address_rate_per_sec: 100,
            address_rate_burst: 400,
            registration_per_serial_per_hour: 5,
            registration_per_address_per_minute: 20,
            metrics_listen: None,
            metrics_token: None,
            pseudonym_key: None,
            log_serials: false,
            retention_reports_days: 730,
            retention_check_ins_days: 365,
            retention_audit_details_days: 1095,
            retention_rma_contacts_days: 1095,
        }
    }
}

impl fmt::Debug for Config {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &self.database_url.as_deref().map(redact_url),
            )
            .field("database_pool_size", &self.database_pool_size)
            .field(
                "database_statement_timeout_secs",
                &self.database_statement_timeout_secs,
            )
            .field("blob_dir", &self.blob_dir)
            .field("storage_url", &self.storage_url)
            .field("s3_part_size_bytes", &self.s3_part_size_bytes)
            .field("download_delivery", &self.download_delivery)
            .field("presigned_url_ttl_secs", &self.presigned_url_ttl_secs)
            .field("trust_root", &self.trust_root)
            .field("max_image_bytes", &self.max_image_bytes)
            .field("max_attachment_bytes", &self.max_attachment_bytes)
            .field("grant_key", &self.grant_key.as_ref().map(|_| "<redacted>"))
            .field("grant_key_file", &self.grant_key_file)
            .field(
                "grant_key_accepted",
                &self.grant_key_accepted.as_ref().map(|_| "<redacted>"),
            )
            .field("grant_ttl_secs", &self.grant_ttl_secs)
            .field("repair_push_ttl_secs", &self.repair_push_ttl_secs)
            .field("poll_interval_secs", &self.poll_interval_secs)
            .field("poll_jitter_percent", &self.poll_jitter_percent)
            .field("support_warning_days", &self.support_warning_days)
            .field("device_cache_ttl_secs", &self.device_cache_ttl_secs)
            .field("token_cache_ttl_secs", &self.token_cache_ttl_secs)
            .field("last_seen_flush_ms", &self.last_seen_flush_ms)
            .field("log_format", &self.log_format)
            .field("max_connections", &self.max_connections)
            .field("header_read_timeout_secs", &self.header_read_timeout_secs)
            .field("idle_timeout_secs", &self.idle_timeout_secs)
            .field("request_timeout_secs", &self.request_timeout_secs)
            .field(
                "min_transfer_bytes_per_sec",
                &self.min_transfer_bytes_per_sec,
            )
            .field("stall_window_secs", &self.stall_window_secs)
            .field("token_rate_per_sec", &self.token_rate_per_sec)
            .field("token_rate_burst", &self.token_rate_burst)
            .field("address_rate_per_sec", &self.address_rate_per_sec)
            .field("address_rate_burst", &self.address_rate_burst)
            .field(
                "registration_per_serial_per_hour",
                &self.registration_per_serial_per_hour,
            )
            .field(
                "registration_per_address_per_minute",
                &self.registration_per_address_per_minute,
            )
            .field("metrics_listen", &self.metrics_listen)
            .field(
                "metrics_token",
                &self.metrics_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "pseudonym_key",
                &self.pseudonym_key.as_ref().map(|_| "<redacted>"),
            )
            .field("log_serials", &self.log_serials)
            .field("retention_reports_days", &self.retention_reports_days)
            .field("retention_check_ins_days", &self.retention_check_ins_days)
            .field(
                "retention_audit_details_days",
                &self.retention_audit_details_days,
            )
            .field(
                "retention_rma_contacts_days",
                &self.retention_rma_contacts_days,
            )
            .finish()
    }
}

/// Settings every command takes from the command line: where the data
/// is. Only those given override the other layers.
#[derive(Debug, Default, Clone, Serialize, clap::Args)]
pub struct StoreArgs {
    /// Data directory [env: FIRMUP_DATA_DIR] [default: firmup-data]
    #[arg(
        long,
        global = true,
        value_name = "DIR",
        help_heading = "Global options"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_dir: Option<PathBuf>,
    /// Database URL [env: FIRMUP_DATABASE_URL] [default: sqlite://DATA_DIR/firmup.db]
    #[arg(
        long,
        global = true,
        value_name = "URL",
        help_heading = "Global options"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub database_url: Option<String>,
    /// Object store for images, s3://BUCKET?endpoint=URL&region=REGION [env: FIRMUP_STORAGE_URL] [default: the local blob directory]
    #[arg(
        long,
        global = true,
        value_name = "URL",
        help_heading = "Global options"
    )]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub storage_url: Option<String>,
}

/// Settings only `serve` uses (and `config` shows) that have a flag. Only
/// those given override the other layers.
#[derive(Debug, Default, Clone, Serialize, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [env: FIRMUP_LISTEN] [default: 127.0.0.1:8080]
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub listen: Option<SocketAddr>,
    /// Pinned root document (version 1) [env: FIRMUP_TRUST_ROOT]
    #[arg(long, value_name = "FILE")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trust_root: Option<PathBuf>,
    /// Log format [env: FIRMUP_LOG_FORMAT] [default: text]
    #[arg(long, value_enum)]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_format: Option<LogFormat>,
}

/// Values given on the command line; only those set override other layers.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Overrides {
    /// The flags every command takes.
    #[serde(flatten)]
    pub store: StoreArgs,
    /// The flags of `serve`.
    #[serde(flatten)]
    pub serve: ServeArgs,
}

/// What `serve --help` and `config` say about one key.
#[derive(Debug, Clone, Copy)]
pub struct KeyDoc {
    /// The key, as in the TOML file; `FIRMUP_<NAME>` in the environment.
    pub name: &'static str,
    /// What it sets, in a sentence.
    pub about: &'static str,
    /// What applies when a key without a built-in value is not set (empty
    /// for keys with one: their default is read from `Config::default()`).
    pub unset: &'static str,
}

const fn key(name: &'static str, about: &'static str) -> KeyDoc {
    KeyDoc {
        name,
        about,
        unset: "",
    }
}

impl Config {
    /// Field names, as read from `FIRMUP_<FIELD>` environment variables.
    pub const FIELDS: &'static [&'static str] = &[
        "listen",
        "data_dir",
        "database_url",
        "database_pool_size",
        "database_statement_timeout_secs",
        "blob_dir",
        "storage_url",
        "s3_part_size_bytes",
        "download_delivery",
        "presigned_url_ttl_secs",
        "trust_root",
        "max_image_bytes",
        "max_attachment_bytes",
        "grant_key",
        "grant_key_file",
        "grant_key_accepted",
        "grant_ttl_secs",
        "repair_push_ttl_secs",
        "poll_interval_secs",
        "poll_jitter_percent",
        "support_warning_days",
        "device_cache_ttl_secs",
        "token_cache_ttl_secs",
        "last_seen_flush_ms",
        "log_format",
        "max_connections",
        "header_read_timeout_secs",
        "idle_timeout_secs",
        "request_timeout_secs",
        "min_transfer_bytes_per_sec",
        "stall_window_secs",
        "token_rate_per_sec",
        "token_rate_burst",
        "address_rate_per_sec",
        "address_rate_burst",
        "registration_per_serial_per_hour",
        "registration_per_address_per_minute",
        "metrics_listen",
        "metrics_token",
        "pseudonym_key",
        "log_serials",
        "retention_reports_days",
        "retention_check_ins_days",
        "retention_audit_details_days",
        "retention_rma_contacts_days",
    ];

    /// What each key of [`Config::FIELDS`] sets, in the same order: the
    /// one source of the key lists of `serve --help` and `config`.
    pub const KEYS: &'static [KeyDoc] = &[
        key("listen", "Address to listen on."),
        key(
            "data_dir",
            "Directory of the embedded database, the blobs and the generated grant key.",
        ),
        KeyDoc {
            name: "database_url",
            about: "Database URL; its password is never printed.",
            unset: "sqlite://<data_dir>/firmup.db",
        },
        key(
            "database_pool_size",
            "Connections in the database pool, per replica (1-1000).",
        ),
        key(
            "database_statement_timeout_secs",
            "Seconds a database statement may run, or a write wait for SQLite's lock, \
             before the request gets 503 (1-3600).",
        ),
        KeyDoc {
            name: "blob_dir",
            about: "Blob directory of the local storage backend.",
            unset: "<data_dir>/blobs",
        },
        KeyDoc {
            name: "storage_url",
            about: "Object store for images: s3://BUCKET?endpoint=URL&region=REGION[&prefix=P] \
                    (path-style; credentials from the AWS environment or profile).",
            unset: "the local blob directory",
        },
        key(
            "s3_part_size_bytes",
            "Part size of multipart uploads to S3, in bytes (at least 5 MiB): the memory \
             one upload holds.",
        ),
        key(
            "download_delivery",
            "stream (the server sends the bytes) or redirect (307 to a presigned URL of \
             the S3 store, after the grant is checked).",
        ),
        key(
            "presigned_url_ttl_secs",
            "Lifetime of a presigned download URL, in seconds (10-604800).",
        ),
        KeyDoc {
            name: "trust_root",
            about: "Pinned trust root (root version 1); later versions are added through \
                    the API and kept in the database.",
            unset: "none (publishing is refused until a root is posted)",
        },
        key(
            "max_image_bytes",
            "Largest image accepted for upload, in bytes (4 GiB).",
        ),
        key(
            "max_attachment_bytes",
            "Largest file accepted as an RMA attachment (a photo, a log), in bytes \
             (1 to 1073741824).",
        ),
        KeyDoc {
            name: "grant_key",
            about: "Download-grant key, 64 hex digits; replicas must share it. A secret: \
                    never printed.",
            unset: "generated once into <data_dir>/grant.key",
        },
        KeyDoc {
            name: "grant_key_file",
            about: "A file (mode 0600) holding the grant key, and optionally on a second line \
                    a key also accepted; instead of grant_key.",
            unset: "grant_key applies",
        },
        KeyDoc {
            name: "grant_key_accepted",
            about: "Another grant key, accepted but never signing: the old one during a \
                    rollover. A secret: never printed.",
            unset: "none",
        },
        key(
            "grant_ttl_secs",
            "Lifetime of a download grant, in seconds.",
        ),
        key(
            "repair_push_ttl_secs",
            "How long a technician's repair push stays active unless cancelled or done, in \
             seconds (3600 to 7776000).",
        ),
        key(
            "poll_interval_secs",
            "How long devices wait before their next check, in seconds.",
        ),
        key(
            "poll_jitter_percent",
            "Random spread added to the poll interval, in percent (0-100).",
        ),
        key(
            "support_warning_days",
            "Days before a unit's security support ends that its checks carry a warning \
             (0: never; at most 3650).",
        ),
        key(
            "device_cache_ttl_secs",
            "How long a device's facts may be served from memory, in seconds (at most \
             86400); changes reach every replica within about 2 s regardless.",
        ),
        key(
            "token_cache_ttl_secs",
            "How long a token lookup may be served from memory, in seconds (at most \
             86400); revocations reach every replica within about 2 s regardless.",
        ),
        key(
            "last_seen_flush_ms",
            "How often buffered last-seen updates are written, in milliseconds.",
        ),
        key(
            "log_format",
            "Log format, text or json (filter with FIRMUP_LOG, e.g. info,firmup_server=debug).",
        ),
        key(
            "max_connections",
            "Most connections open at once, lowered to the open-file limit less 128.",
        ),
        key(
            "header_read_timeout_secs",
            "Seconds a request's head may take once its first byte arrived (1-3600).",
        ),
        key(
            "idle_timeout_secs",
            "Seconds a connection with no request in flight may stay silent (1-3600).",
        ),
        key(
            "request_timeout_secs",
            "Seconds an API call may take, not image transfers or bulk imports (1-3600).",
        ),
        key(
            "min_transfer_bytes_per_sec",
            "Least bytes per second a connection with a request in flight must move, \
             averaged over stall_window_secs.",
        ),
        key(
            "stall_window_secs",
            "The window of that average, in seconds (1-3600).",
        ),
        key(
            "token_rate_per_sec",
            "Requests per second one token may make on the device routes (0: no limit).",
        ),
        key(
            "token_rate_burst",
            "Requests one token may make at once above that rate.",
        ),
        key(
            "address_rate_per_sec",
            "Requests per second one client address may make on the device and download \
             routes (0: no limit).",
        ),
        key(
            "address_rate_burst",
            "Requests one address may make at once above that rate.",
        ),
        key(
            "registration_per_serial_per_hour",
            "Owner registration attempts one serial may take per hour (0: no limit).",
        ),
        key(
            "registration_per_address_per_minute",
            "Owner registration attempts one client address may make per minute (0: no limit).",
        ),
        KeyDoc {
            name: "metrics_listen",
            about: "A second address serving only GET /metrics, without a token (a scrape \
                    network only Prometheus reaches).",
            unset: "none (/metrics only on the main address)",
        },
        KeyDoc {
            name: "metrics_token",
            about: "Bearer token for GET /metrics on the main address (admin tokens work \
                    too). A secret: never printed.",
            unset: "admin tokens only",
        },
        KeyDoc {
            name: "pseudonym_key",
            about: "Key of the pseudonyms that replace erased serials, 64 hex digits; \
                    replicas must share it and it must never change. A secret: never printed.",
            unset: "generated once into <data_dir>/pseudonym.key",
        },
        key(
            "log_serials",
            "Whether logs may show serials and request paths with them; off, a log line \
             shows a serial's pseudonym.",
        ),
        key(
            "retention_reports_days",
            "Days installation reports are kept (0: for ever).",
        ),
        key(
            "retention_check_ins_days",
            "Days a device's check-in record (first and last seen, the release last \
             offered) is kept after its last check-in (0: for ever).",
        ),
        key(
            "retention_audit_details_days",
            "Days the details of audit records are kept; the records stay (0: for ever).",
        ),
        key(
            "retention_rma_contacts_days",
            "Days the customer contact and fault text of a closed or cancelled RMA are \
             kept (0: for ever).",
        ),
    ];

    /// The layers, later ones winning: defaults, the TOML file, the
    /// `FIRMUP_*` environment, the flags. Nothing is read but the file.
    fn figment(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Figment> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(path) = file {
            anyhow::ensure!(
                path.exists(),
                "config file {} does not exist",
                path.display()
            );
            fig = fig.merge(Toml::file(path));
        }
        Ok(fig
            // Only the variables that name a field: FIRMUP_CONFIG, FIRMUP_LOG
            // and FIRMUP_TOKEN (the signer's) are someone else's.
            .merge(Env::prefixed("FIRMUP_").only(Self::FIELDS))
            .merge(Serialized::globals(overrides.clone())))
    }

    /// Builds the configuration from all layers.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> anyhow::Result<Config> {
        Ok(Self::load_explained(file, overrides)?.0)
    }

    /// [`Config::load`], also returning the effective configuration as
    /// TOML with, for each key, the layer it came from; secrets are
    /// redacted (see [`Config::to_toml`]). Opens and creates nothing.
    pub fn load_explained(
        file: Option<&Path>,
        overrides: &Overrides,
    ) -> anyhow::Result<(Config, String)> {
        let fig = Self::figment(file, overrides)?;
        let config: Config = fig
            .extract()
            .map_err(|e| anyhow::anyhow!("configuration: {e}"))?;
        config.validate()?;
        let text = config.to_toml(|name| source_of(&fig, name))?;
        Ok((config, text))
    }

    /// The configuration as TOML, one line per key in [`Config::FIELDS`]
    /// order, each followed by a comment from `source` (where the value
    /// came from). Keys that are not set are shown commented out with what
    /// applies instead. The database URL's password and the grant key are
    /// replaced by `***`.
    pub fn to_toml(&self, source: impl Fn(&str) -> String) -> anyhow::Result<String> {
        let values = serde_json::to_value(self).context("configuration as TOML")?;
        let mut out = String::from(
            "# The configuration in effect: defaults < config file < FIRMUP_* environment < flags.\n\
             # Secrets are shown as \"***\".\n",
        );
        for k in Self::KEYS {
            let value = values.get(k.name).unwrap_or(&serde_json::Value::Null);
            let line = match (k.name, value) {
                ("database_url", serde_json::Value::String(url)) => {
                    format!("{} = {}", k.name, toml_string(&redact_url(url)))
                }
                (
                    "grant_key" | "grant_key_accepted" | "metrics_token" | "pseudonym_key",
                    serde_json::Value::String(_),
                ) => {
                    format!("{} = {}", k.name, toml_string("***"))
                }
                (_, serde_json::Value::Null) => {
                    let instead = match k.name {
                        "database_url" => redact_url(&self.database_url()),
                        "blob_dir" => self.blob_dir().display().to_string(),
                        "grant_key" => match &self.grant_key_file {
                            Some(file) => format!("the key in {}", file.display()),
                            None => {
                                format!("the key in {}", self.data_dir.join("grant.key").display())
                            }
                        },
                        _ => k.unset.to_string(),
                    };
                    out.push_str(&format!("# {} is not set: {}\n", k.name, instead));
                    continue;
                }
                (_, serde_json::Value::String(s)) => format!("{} = {}", k.name, toml_string(s)),
                (_, v) => format!("{} = {v}", k.name),
            };
            out.push_str(&format!("{line}  # {}\n", source(k.name)));
        }
        Ok(out)
    }

    fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.poll_jitter_percent <= 100,
            "poll_jitter_percent must be 0-100"
        );
        anyhow::ensure!(
            self.support_warning_days <= 3650,
            "support_warning_days must be 0-3650"
        );
        anyhow::ensure!(self.grant_ttl_secs > 0, "grant_ttl_secs must be positive");
        anyhow::ensure!(
            (3600..=90 * 86_400).contains(&self.repair_push_ttl_secs),
            "repair_push_ttl_secs must be 3600 (1 hour) to 7776000 (90 days)"
        );
        anyhow::ensure!(self.max_image_bytes > 0, "max_image_bytes must be positive");
        anyhow::ensure!(
            (1..=MAX_ATTACHMENT_BYTES).contains(&self.max_attachment_bytes),
            "max_attachment_bytes must be 1 to 1073741824 (1 GiB)"
        );
        anyhow::ensure!(self.max_connections > 0, "max_connections must be positive");
        match self.s3_location()? {
            Some(_) => {
                anyhow::ensure!(
                    self.max_image_bytes <= crate::storage::s3::MAX_COPY_BYTES,
                    "max_image_bytes must be at most 5 GiB with an S3 store (one CopyObject \
                     moves a verified upload into place)"
                );
                anyhow::ensure!(
                    self.s3_part_size_bytes >= crate::storage::s3::MIN_PART_SIZE as u64
                        && self.s3_part_size_bytes <= 1024 * 1024 * 1024,
                    "s3_part_size_bytes must be 5 MiB to 1 GiB"
                );
            }
            None => anyhow::ensure!(
                self.download_delivery == Delivery::Stream,
                "download_delivery = \"redirect\" needs an S3 store (storage_url = \"s3://...\"); \
                 the local directory can only be streamed"
            ),
        }
        anyhow::ensure!(
            (10..=604_800).contains(&self.presigned_url_ttl_secs),
            "presigned_url_ttl_secs must be 10-604800 (S3 presigns for at most 7 days)"
        );
        anyhow::ensure!(
            (1..=1000).contains(&self.database_pool_size),
            "database_pool_size must be 1-1000"
        );
        for (name, days) in [
            ("retention_reports_days", self.retention_reports_days),
            ("retention_check_ins_days", self.retention_check_ins_days),
            (
                "retention_audit_details_days",
                self.retention_audit_details_days,
            ),
            (
                "retention_rma_contacts_days",
                self.retention_rma_contacts_days,
            ),
        ] {
            anyhow::ensure!(days <= 36_500, "{name} must be 0 (for ever) to 36500 days");
        }
        for (name, secs) in [
            ("header_read_timeout_secs", self.header_read_timeout_secs),
            ("idle_timeout_secs", self.idle_timeout_secs),
            ("request_timeout_secs", self.request_timeout_secs),
            ("stall_window_secs", self.stall_window_secs),
            (
                "database_statement_timeout_secs",
                self.database_statement_timeout_secs,
            ),
        ] {
            anyhow::ensure!((1..=3600).contains(&secs), "{name} must be 1-3600 seconds");
        }
        for (name, rate, burst) in [
            ("token", self.token_rate_per_sec, self.token_rate_burst),
            (
                "address",
                self.address_rate_per_sec,
                self.address_rate_burst,
            ),
        ] {
            anyhow::ensure!(
                rate == 0 || burst >= 1,
                "{name}_rate_burst must be at least 1 while {name}_rate_per_sec is set"
            );
        }
        // Invalidation rows are pruned after RETENTION: an entry that lived
        // longer could miss the row that should have dropped it.
        let max_ttl = crate::invalidation::RETENTION.as_secs();
        for (name, ttl) in [
            ("device_cache_ttl_secs", self.device_cache_ttl_secs),
            ("token_cache_ttl_secs", self.token_cache_ttl_secs),
        ] {
            anyhow::ensure!(
                ttl <= max_ttl,
                "{name} must be at most {max_ttl} (a day: invalidations are kept that long)"
            );
        }
        Ok(())
    }

    /// The retention periods in effect.
    pub fn retention(&self) -> crate::domain::privacy::Retention {
        crate::domain::privacy::Retention {
            reports_days: self.retention_reports_days,
            check_ins_days: self.retention_check_ins_days,
            audit_details_days: self.retention_audit_details_days,
            rma_contacts_days: self.retention_rma_contacts_days,
        }
    }

    /// The database URL in effect.
    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", self.data_dir.join("firmup.db").display()))
    }

    /// The database pool settings in effect.
    pub fn pool_settings(&self) -> crate::db::PoolSettings {
        let statement_timeout =
            std::time::Duration::from_secs(self.database_statement_timeout_secs);
        crate::db::PoolSettings {
            max_connections: self.database_pool_size,
            statement_timeout,
            acquire_timeout: statement_timeout,
        }
    }

    /// The connection limits in effect, with `max_connections` clamped to
    /// `open_files` less a reserve for the database, blobs and logs.
    pub fn connection_limits(&self, open_files: Option<u64>) -> crate::conn::Limits {
        let reserve = 128;
        let max = match open_files {
            Some(n) => usize::try_from(n.saturating_sub(reserve))
                .unwrap_or(usize::MAX)
                .clamp(1, self.max_connections),
            None => self.max_connections,
        };
        crate::conn::Limits {
            max_connections: max,
            header_read_timeout: std::time::Duration::from_secs(self.header_read_timeout_secs),
            idle_timeout: std::time::Duration::from_secs(self.idle_timeout_secs),
            min_transfer_bytes_per_sec: self.min_transfer_bytes_per_sec,
            stall_window: std::time::Duration::from_secs(self.stall_window_secs),
        }
    }

    /// The S3 store named by `storage_url`, or `None` for the local
    /// directory.
    pub fn s3_location(&self) -> anyhow::Result<Option<crate::storage::S3Location>> {
        self.storage_url
            .as_deref()
            .map(crate::storage::S3Location::parse)
            .transpose()
    }

    /// The blob directory in effect.
    pub fn blob_dir(&self) -> PathBuf {
        self.blob_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("blobs"))
    }
}

/// The flag of each key that has one (`data_dir` -> `--data-dir`), read
/// from the flag definitions themselves.
pub fn flag_of(name: &str) -> Option<String> {
    use clap::Args as _;
    let cmd = ServeArgs::augment_args(StoreArgs::augment_args(clap::Command::new("flags")));
    cmd.get_arguments()
        .find(|a| a.get_id() == name)
        .and_then(|a| a.get_long())
        .map(|long| format!("--{long}"))
}

/// The `FIRMUP_*` variable of a key.
pub fn env_of(name: &str) -> String {
    format!("FIRMUP_{}", name.to_ascii_uppercase())
}

/// Which layer a key's value came from: `default`, `file PATH`, its
/// environment variable or its flag.
fn source_of(fig: &Figment, name: &str) -> String {
    let Some(md) = fig.find_metadata(name) else {
        return "default".into();
    };
    if let Some(figment::Source::File(path)) = &md.source {
        format!("file {}", path.display())
    } else if md.name.contains("environment") {
        env_of(name)
    } else if md.name == std::any::type_name::<Overrides>() {
        flag_of(name).unwrap_or_else(|| "flag".into())
    } else {
        "default".into()
    }
}

/// A TOML basic string. JSON's escapes are TOML's, but for DEL, which TOML
/// wants escaped too.
fn toml_string(s: &str) -> String {
    serde_json::Value::from(s)
        .to_string()
        .replace('\u{7f}', "\\u007F")
}

/// The list of every configuration key, with its variable, flag and
/// default, for `firmup-server serve --help`. Built from
/// [`Config::KEYS`], the flag definitions and [`Config::default`], so it
/// cannot fall behind any of them.
pub fn keys_help() -> String {
    let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
    let mut out = String::from(
        "Configuration keys. Each is read from the TOML file (--config FILE or FIRMUP_CONFIG) \
         under its name, from the environment as FIRMUP_<NAME>, and some from a flag; later \
         layers win: defaults < file < environment < flags. `firmup-server config` prints \
         the values in effect.\n",
    );
    for k in Config::KEYS {
        let default = match defaults.get(k.name) {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(serde_json::Value::Null) | None => k.unset.to_string(),
            Some(v) => v.to_string(),
        };
        let flag = flag_of(k.name)
            .map(|f| format!(", {f}"))
            .unwrap_or_default();
        out.push_str(&format!(
            "\n  {}  ({}{flag})\n      {} Default: {default}.\n",
            k.name,
            env_of(k.name),
            k.about
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_passwords_never_reach_debug_output() {
        let c = Config {
            database_url: Some("postgres://u:hunter2@h/d".into()),
            grant_key: Some("00".repeat(32)),
            ..Config::default()
        };
        let debug = format!("{c:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(!debug.contains(&"00".repeat(32)), "{debug}");
    }

    #[test]
    fn every_field_can_come_from_the_environment() {
        let json = serde_json::to_value(Config::default()).unwrap_or_default();
        let mut names: Vec<&str> = json
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        names.sort_unstable();
        let mut fields = Config::FIELDS.to_vec();
        fields.sort_unstable();
        assert_eq!(names, fields);
    }

    #[test]
    fn every_field_is_documented_in_order() {
        let names: Vec<&str> = Config::KEYS.iter().map(|k| k.name).collect();
        assert_eq!(names, Config::FIELDS);
        let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
        for k in Config::KEYS {
            // A key without a built-in value says what applies instead.
            assert_eq!(
                defaults[k.name].is_null(),
                !k.unset.is_empty(),
                "{}",
                k.name
            );
        }
        let help = keys_help();
        for name in Config::FIELDS {
            assert!(
                help.contains(&format!("\n  {name}  (FIRMUP_")),
                "{name}: {help}"
            );
        }
        assert!(help.contains("listen  (FIRMUP_LISTEN, --listen)"), "{help}");
        assert!(help.contains("Default: 127.0.0.1:8080."), "{help}");
    }

    #[test]
    fn effective_toml_redacts_secrets_and_names_sources() {
        let c = Config {
            database_url: Some("sqlite://u:hunter2@/tmp/x.db".into()),
            grant_key: Some("ab".repeat(32)),
            ..Config::default()
        };
        let text = c.to_toml(|_| "default".into()).expect("TOML");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains(&"ab".repeat(32)), "{text}");
        assert!(text.contains("database_url = \"sqlite://u:***@/tmp/x.db\"  # default"));
        assert!(text.contains("grant_key = \"***\""), "{text}");
        assert!(text.contains("# trust_root is not set: none"), "{text}");
        assert!(
            text.contains("listen = \"127.0.0.1:8080\"  # default"),
            "{text}"
        );
        assert!(
            text.contains("max_connections = 10000  # default"),
            "{text}"
        );
        // The output is TOML that reads back as the same configuration,
        // secrets aside.
        let back: Config = Figment::from(Toml::string(&text))
            .extract()
            .expect("the output reads back");
        assert_eq!(
            format!(
                "{:?}",
                Config {
                    grant_key: c.grant_key.clone(),
                    ..back
                }
            ),
            format!("{c:?}")
        );
    }

    #[test]
    fn cache_ttls_may_not_outlive_the_invalidation_log() {
        let mut c = Config::default();
        assert!(c.validate().is_ok());
        c.device_cache_ttl_secs = 86_400;
        c.token_cache_ttl_secs = 86_400;
        assert!(c.validate().is_ok());
        c.token_cache_ttl_secs = 86_401;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("token_cache_ttl_secs"), "{e}");
    }

    #[test]
    fn storage_settings_are_checked_together() {
        let mut c = Config {
            download_delivery: Delivery::Redirect,
            ..Config::default()
        };
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("needs an S3 store"), "{e}");
        c.storage_url = Some("s3://images?endpoint=http://127.0.0.1:3900&region=garage".into());
        assert!(c.validate().is_ok());
        c.max_image_bytes = 6 << 30;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("at most 5 GiB"), "{e}");
        c.max_image_bytes = 1 << 30;
        c.s3_part_size_bytes = 1 << 20;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("s3_part_size_bytes"), "{e}");
        c.s3_part_size_bytes = 8 << 20;
        c.storage_url = Some("s3://Images".into());
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("bucket name"), "{e}");
        c.storage_url = Some("s3://images".into());
        c.presigned_url_ttl_secs = 5;
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains("presigned_url_ttl_secs"), "{e}");
    }

    #[test]
    #[allow(clippy::result_large_err)] // figment::Jail fixes the closure's error type
    fn layers_apply_in_order_and_foreign_variables_are_ignored() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "firmup.toml",
                "poll_interval_secs = 60\nlisten = \"127.0.0.1:9000\"",
            )?;
            jail.set_env("FIRMUP_POLL_INTERVAL_SECS", "120");
            jail.set_env("FIRMUP_TOKEN", "not-a-setting");
            jail.set_env("FIRMUP_LOG", "debug");
            let overrides = Overrides {
                serve: ServeArgs {
                    listen: Some("127.0.0.1:9100".parse().map_err(|e| format!("{e}"))?),
                    ..ServeArgs::default()
                },
                ..Overrides::default()
            };
            let c = Config::load(Some(Path::new("firmup.toml")), &overrides)
                .map_err(|e| e.to_string())?;
            assert_eq!(c.poll_interval_secs, 120, "env beats file");
            assert_eq!(c.listen.port(), 9100, "flags beat everything");
            assert_eq!(c.max_image_bytes, Config::default().max_image_bytes);
            Ok(())
        });
    }
}
