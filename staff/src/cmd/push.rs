//! `firmup push ...`: repair pushes and their offline bundles.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::json;

use super::{Shown, shown};
use crate::api::{Api, Outcome};
use crate::show;

#[derive(Debug, clap::Subcommand)]
pub enum PushCommand {
    /// Push a release to a unit under repair: its next check is offered it
    /// (entitlement `repair_grant`) even where it is not entitled. The
    /// device still checks signatures, hardware id and anti-rollback.
    Create {
        /// Serial number.
        serial: String,
        /// The release to push.
        #[arg(long, conflicts_with = "newest", required_unless_present = "newest")]
        version: Option<String>,
        /// Push the newest release the unit can install instead.
        #[arg(long)]
        newest: bool,
        /// The unit's open RMA the repair belongs to.
        #[arg(long)]
        rma: String,
        /// Why, for the repair record.
        #[arg(long)]
        reason: String,
        /// The release's channel (default: the unit's).
        #[arg(long)]
        channel: Option<String>,
    },
    /// Cancel the unit's active push.
    Cancel {
        /// Serial number.
        serial: String,
    },
    /// The unit's pushes, newest first.
    List {
        /// Serial number.
        serial: String,
    },
    /// Download the active push as one tar file (manifest, root chain,
    /// images) for a unit without network access; install it with
    /// `firmup-device install --bundle FILE`.
    Bundle {
        /// Serial number.
        serial: String,
        /// Where to write it (default: push-SERIAL.tar).
        #[arg(long, short, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

impl PushCommand {
    pub fn run(self, api: &Api) -> Outcome<Shown> {
        match self {
            PushCommand::Create {
                serial,
                version,
                newest: _,
                rma,
                reason,
                channel,
            } => {
                let mut body = json!({ "rma": rma, "reason": reason });
                if let Some(v) = version {
                    body["version"] = json!(v);
                }
                if let Some(c) = channel {
                    body["channel"] = json!(c);
                }
                shown(
                    api.post(&api.url(&["v1", "devices", &serial, "push"], &[]), &body),
                    |v| format!("pushed: {}\n", show::push_row(v)),
                )
            }
            PushCommand::Cancel { serial } => shown(
                api.call(
                    Method::DELETE,
                    &api.url(&["v1", "devices", &serial, "push"], &[]),
                    None,
                ),
                |v| format!("cancelled: {}\n", show::push_row(v)),
            ),
            PushCommand::List { serial } => shown(
                api.get(&api.url(&["v1", "devices", &serial, "pushes"], &[])),
                show::pushes,
            ),
            PushCommand::Bundle { serial, out } => {
                let out = out.unwrap_or_else(|| PathBuf::from(format!("push-{serial}.tar")));
                let url = api.url(&["v1", "devices", &serial, "push", "bundle"], &[]);
                let bytes = api.download(&url, &out)?;
                let value =
                    json!({ "serial": serial, "file": out.display().to_string(), "bytes": bytes });
                Ok(Shown::of(value, |_| {
                    format!(
                        "wrote {} ({bytes} bytes): firmup-device install --bundle {}\n",
                        out.display(),
                        out.display()
                    )
                }))
            }
        }
    }
}
