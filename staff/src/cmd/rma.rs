//! `firmup rma ...`: the reception desk's RMAs.

use std::io;
use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{Shown, shown};
use crate::api::{Api, Failure, Outcome};
use crate::show;

#[derive(Debug, clap::Subcommand)]
pub enum RmaCommand {
    /// Open an RMA for a unit that came in; prints its number.
    Open {
        /// Serial number of the unit.
        serial: String,
        /// The fault as the customer describes it.
        #[arg(long)]
        fault: String,
        /// Customer's name.
        #[arg(long)]
        name: String,
        /// Customer's e-mail address.
        #[arg(long)]
        email: String,
        /// Customer's phone number.
        #[arg(long)]
        phone: Option<String>,
        /// The day the fault occurred, YYYY-MM-DD (default: today).
        #[arg(long, value_name = "DATE")]
        fault_on: Option<String>,
        /// The day the unit was received, YYYY-MM-DD.
        #[arg(long, value_name = "DATE")]
        received_on: Option<String>,
        /// Carrier tracking number of the inbound shipment.
        #[arg(long)]
        tracking_in: Option<String>,
    },
    /// One RMA in full: customer, state, coverage, pushes, parts, events.
    Show {
        /// RMA number, e.g. RMA-2026-000123.
        number: String,
    },
    /// List RMAs, newest first.
    List {
        /// Only these states (repeatable or comma-separated); `open` means
        /// every state before `shipped`.
        #[arg(long, value_delimiter = ',')]
        state: Vec<String>,
        /// Only this model.
        #[arg(long)]
        model: Option<String>,
        /// Only this unit.
        #[arg(long)]
        serial: Option<String>,
        /// Only RMAs opened at least this many days ago.
        #[arg(long, value_name = "DAYS")]
        older_than_days: Option<u32>,
        /// At most this many (default 100).
        #[arg(long)]
        limit: Option<u32>,
    },
    /// Move an RMA to its next state: diagnosing, repairing, testing,
    /// shipped, closed or cancelled.
    State {
        /// RMA number.
        number: String,
        /// The new state.
        state: String,
        /// A note for the record.
        #[arg(long)]
        note: Option<String>,
        /// With `shipped`: the outbound carrier tracking number.
        #[arg(long)]
        tracking_out: Option<String>,
    },
    /// Record carrier tracking numbers.
    Tracking {
        /// RMA number.
        number: String,
        /// Inbound tracking number.
        #[arg(
            long = "in",
            value_name = "TRACKING",
            required_unless_present = "tracking_out"
        )]
        tracking_in: Option<String>,
        /// Outbound tracking number.
        #[arg(long = "out", value_name = "TRACKING")]
        tracking_out: Option<String>,
    },
    /// Decide whether the fault is covered, from the unit's warranty and
    /// the after-sales terms.
    Coverage {
        /// RMA number.
        number: String,
        /// What caused the fault: no_customer_fault, transport_to_customer,
        /// not_as_described, human_damage, unauthorised_modification,
        /// return_transport_damage, against_manual, force_majeure,
        /// serial_label_unreadable.
        #[arg(long)]
        cause: String,
        /// With transport_to_customer: the carrier's proof of damage was provided.
        #[arg(long)]
        carrier_proof: bool,
        /// The replaced part the fault was traced to.
        #[arg(long)]
        part: Option<String>,
    },
    /// Record a replaced part (it gets its own warranty).
    Part {
        /// RMA number.
        number: String,
        /// The part, e.g. psu.
        part: String,
        /// The day it was replaced, YYYY-MM-DD (default: today).
        #[arg(long, value_name = "DATE")]
        replaced_on: Option<String>,
    },
    /// Replace the whole unit by another, provisioned one: it takes over
    /// owner, sale, contracts and licences.
    Replace {
        /// RMA number.
        number: String,
        /// Serial of the replacement unit.
        new_serial: String,
    },
    /// Attach a file (a photo, a log) to an RMA; the server checks it
    /// arrived whole against the sha256 computed here.
    Attach {
        /// RMA number.
        number: String,
        /// The file to attach.
        file: PathBuf,
        /// The name to record (default: the file's own name).
        #[arg(long)]
        name: Option<String>,
        /// Its media type (default: guessed from the file's extension,
        /// else application/octet-stream).
        #[arg(long, value_name = "TYPE")]
        content_type: Option<String>,
    },
    /// Download a file attached to an RMA.
    Attachment {
        /// RMA number.
        number: String,
        /// Attachment id, as `rma show` lists it (att_...).
        id: String,
        /// Where to write it (default: its recorded name, in the current
        /// directory). An existing file is replaced only once the download
        /// is complete.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
}

/// The sha256 of the file at `path` (hex), read as a stream.
fn sha256_of(path: &Path) -> Outcome<String> {
    let local = |e: io::Error| Failure::Local(format!("cannot read {}: {e}", path.display()));
    let mut file = std::fs::File::open(path).map_err(local)?;
    let mut hasher = Sha256::new();
    io::copy(&mut file, &mut hasher).map_err(local)?;
    Ok(hex::encode(hasher.finalize()))
}

/// The name a file is recorded under: `--name`, else its own.
fn file_name(file: &Path, name: Option<String>) -> Outcome<String> {
    name.or_else(|| file.file_name().and_then(|n| n.to_str()).map(str::to_owned))
        .ok_or_else(|| {
            Failure::Local(format!(
                "{} has no file name to record; pass --name",
                file.display()
            ))
        })
}

fn rma_url(api: &Api, number: &str, rest: &[&str]) -> reqwest::Url {
    let mut segments = vec!["v1", "rmas", number];
    segments.extend_from_slice(rest);
    api.url(&segments, &[])
}

/// Keeps the fields that were given.
fn given(pairs: &[(&str, Option<&String>)]) -> Value {
    let mut v = json!({});
    for (k, val) in pairs {
        if let Some(x) = val {
            v[*k] = json!(x);
        }
    }
    v
}

impl RmaCommand {
    pub fn run(self, api: &Api) -> Outcome<Shown> {
        match self {
            RmaCommand::Open {
                serial,
                fault,
                name,
                email,
                phone,
                fault_on,
                received_on,
                tracking_in,
            } => {
                let mut body = given(&[
                    ("fault_on", fault_on.as_ref()),
                    ("received_on", received_on.as_ref()),
                    ("tracking_in", tracking_in.as_ref()),
                ]);
                body["serial"] = json!(serial);
                body["fault"] = json!(fault);
                body["customer"] = given(&[
                    ("name", Some(&name)),
                    ("email", Some(&email)),
                    ("phone", phone.as_ref()),
                ]);
                shown(api.post(&api.url(&["v1", "rmas"], &[]), &body), |v| {
                    format!(
                        "{} opened for {} ({})\n",
                        show::text(&v["number"]),
                        show::text(&v["serial"]),
                        show::text(&v["state"])
                    )
                })
            }
            RmaCommand::Show { number } => shown(api.get(&rma_url(api, &number, &[])), show::rma),
            RmaCommand::List {
                state,
                model,
                serial,
                older_than_days,
                limit,
            } => {
                let states = state.join(",");
                let older = older_than_days.map(|d| d.to_string());
                let limit = limit.map(|l| l.to_string());
                let mut query: Vec<(&str, &str)> = Vec::new();
                if !states.is_empty() {
                    query.push(("state", &states));
                }
                for (k, v) in [
                    ("model", &model),
                    ("serial", &serial),
                    ("older_than_days", &older),
                    ("limit", &limit),
                ] {
                    if let Some(v) = v {
                        query.push((k, v));
                    }
                }
                shown(api.get(&api.url(&["v1", "rmas"], &query)), show::rmas)
            }
            RmaCommand::State {
                number,
                state,
                note,
                tracking_out,
            } => {
                let mut body = given(&[
                    ("note", note.as_ref()),
                    ("tracking_out", tracking_out.as_ref()),
                ]);
                body["state"] = json!(state);
                shown(api.post(&rma_url(api, &number, &["state"]), &body), |v| {
                    format!("{} {}\n", show::text(&v["number"]), show::text(&v["state"]))
                })
            }
            RmaCommand::Tracking {
                number,
                tracking_in,
                tracking_out,
            } => {
                let body = given(&[
                    ("tracking_in", tracking_in.as_ref()),
                    ("tracking_out", tracking_out.as_ref()),
                ]);
                shown(
                    api.call(
                        Method::PUT,
                        &rma_url(api, &number, &["tracking"]),
                        Some(&body),
                    ),
                    |v| {
                        format!(
                            "{} tracking in {}, out {}\n",
                            show::text(&v["number"]),
                            show::text(&v["tracking_in"]),
                            show::text(&v["tracking_out"])
                        )
                    },
                )
            }
            RmaCommand::Coverage {
                number,
                cause,
                carrier_proof,
                part,
            } => {
                let mut body = json!({ "cause": cause, "carrier_proof": carrier_proof });
                if let Some(p) = part {
                    body["part"] = json!(p);
                }
                shown(
                    api.post(&rma_url(api, &number, &["coverage"]), &body),
                    |v| {
                        let c = &v["coverage"];
                        format!(
                            "{} {} ({}): {}\n  {}\n",
                            show::text(&v["number"]),
                            if c["covered"] == true {
                                "covered"
                            } else {
                                "not covered"
                            },
                            show::text(&c["code"]),
                            show::text(&c["summary"]),
                            show::text(&c["explanation"])
                        )
                    },
                )
            }
            RmaCommand::Part {
                number,
                part,
                replaced_on,
            } => {
                let mut body = given(&[("replaced_on", replaced_on.as_ref())]);
                body["part"] = json!(part);
                shown(api.post(&rma_url(api, &number, &["parts"]), &body), |v| {
                    format!(
                        "part {} replaced {}: its warranty ends {}\n",
                        show::text(&v["part"]),
                        show::text(&v["replaced_on"]),
                        show::text(&v["warranty_ends"])
                    )
                })
            }
            RmaCommand::Replace { number, new_serial } => shown(
                api.post(
                    &rma_url(api, &number, &["replacement"]),
                    &json!({ "serial": new_serial }),
                ),
                |v| {
                    format!(
                        "{}: unit {} replaced by {new_serial}\n",
                        show::text(&v["number"]),
                        show::text(&v["serial"])
                    )
                },
            ),
            RmaCommand::Attach {
                number,
                file,
                name,
                content_type,
            } => {
                let name = file_name(&file, name)?;
                let content_type = content_type.unwrap_or_else(|| {
                    mime_guess::from_path(&file)
                        .first_or_octet_stream()
                        .to_string()
                });
                let sha256 = sha256_of(&file)?;
                // The RMA first: an unknown number is then refused with the
                // server's answer, not by a connection the server cut off
                // while the file was still being sent.
                api.get(&rma_url(api, &number, &[]))?;
                let url = api.url(
                    &["v1", "rmas", &number, "attachments"],
                    &[("name", &name), ("sha256", &sha256)],
                );
                shown(api.upload(&url, &file, &content_type), |v| {
                    format!("attached: {}\n", show::attachment_row(v))
                })
            }
            RmaCommand::Attachment { number, id, out } => {
                let out = match out {
                    Some(o) => o,
                    None => {
                        let rma = api.get(&rma_url(api, &number, &[]))?;
                        let listed = show::items(&rma, "attachments")
                            .iter()
                            .find(|a| a["id"] == id.as_str())
                            .and_then(|a| a["name"].as_str().map(PathBuf::from));
                        // The server checked the name has no path in it;
                        // only its last component is used all the same.
                        match listed.as_deref().and_then(Path::file_name) {
                            Some(n) => PathBuf::from(n),
                            None => PathBuf::from(&id),
                        }
                    }
                };
                let url = rma_url(api, &number, &["attachments", &id]);
                let written = api.download(&url, &out)?;
                let value =
                    json!({ "id": id, "path": out.display().to_string(), "bytes": written });
                Ok(Shown::of(value, |_| {
                    format!("wrote {} ({written} bytes)\n", out.display())
                }))
            }
        }
    }
}
