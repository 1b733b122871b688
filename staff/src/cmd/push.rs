//! `firmup push ...`: repair pushes and their offline bundles.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::{Value, json};

use super::{Shown, shown};
use crate::api::{Api, Failure, Outcome};
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
    /// Push a release to every unit of a static device group at the
    /// bench, each under its own open RMA (a unit without exactly one open
    /// RMA is skipped). Exit 1 unless every unit was pushed.
    Group {
        /// Group name.
        group: String,
        /// The release to push.
        #[arg(long, conflicts_with = "newest", required_unless_present = "newest")]
        version: Option<String>,
        /// Push the newest release each unit can install instead.
        #[arg(long)]
        newest: bool,
        /// Why, for the repair records.
        #[arg(long)]
        reason: String,
        /// The release's channel (default: each unit's).
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
            PushCommand::Group {
                group,
                version,
                newest: _,
                reason,
                channel,
            } => push_group(api, &group, version, &reason, channel),
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

/// Pushes to each unit of a static group under its open RMA; one line per
/// unit, and a failure naming how many were not pushed.
fn push_group(
    api: &Api,
    group: &str,
    version: Option<String>,
    reason: &str,
    channel: Option<String>,
) -> Outcome<Shown> {
    let g = api.get(&api.url(&["v1", "groups", group], &[]))?;
    if g["kind"] != "static" {
        return Err(Failure::Local(format!(
            "group {group} is {}: a repair push goes to listed units; make a static group of the units at the bench",
            show::text(&g["kind"])
        )));
    }
    let mut results = Vec::new();
    let mut text = String::new();
    for serial in show::items(&g, "serials").iter().filter_map(Value::as_str) {
        let open = api.get(&api.url(&["v1", "rmas"], &[("serial", serial), ("state", "open")]))?;
        let rmas: Vec<&str> = show::items(&open, "rmas")
            .iter()
            .filter_map(|r| r["number"].as_str())
            .collect();
        let (outcome, line) = match rmas.as_slice() {
            [rma] => {
                let mut body = json!({ "rma": rma, "reason": reason });
                if let Some(v) = &version {
                    body["version"] = json!(v);
                }
                if let Some(c) = &channel {
                    body["channel"] = json!(c);
                }
                match api.post(&api.url(&["v1", "devices", serial, "push"], &[]), &body) {
                    Ok(p) => {
                        let line = format!("{serial}: pushed under {rma}: {}", show::push_row(&p));
                        (json!({ "serial": serial, "pushed": p }), line)
                    }
                    Err(Failure::Refused { code, message, .. }) => (
                        json!({ "serial": serial, "refused": { "code": code, "message": message } }),
                        format!("{serial}: refused ({code}): {message}"),
                    ),
                    Err(other) => return Err(other),
                }
            }
            [] => (
                json!({ "serial": serial, "skipped": "no open RMA" }),
                format!(
                    "{serial}: skipped: no open RMA; open one first (firmup rma open {serial} ...)"
                ),
            ),
            several => (
                json!({ "serial": serial, "skipped": "several open RMAs", "rmas": several }),
                format!(
                    "{serial}: skipped: several open RMAs ({}); push under one with firmup push create",
                    several.join(", ")
                ),
            ),
        };
        text.push_str(&line);
        text.push('\n');
        results.push(outcome);
    }
    let pushed = results.iter().filter(|r| r.get("pushed").is_some()).count();
    if pushed < results.len() {
        print!("{text}");
        return Err(Failure::Partial(format!(
            "{} of {} units of group {group} were not pushed",
            results.len() - pushed,
            results.len()
        )));
    }
    Ok(Shown::of(
        json!({ "group": group, "results": results }),
        |_| format!("{text}pushed {pushed} units of group {group}\n"),
    ))
}
