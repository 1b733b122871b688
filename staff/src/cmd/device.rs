//! `firmup device ...`: the technician's view of a unit.

use reqwest::Method;
use serde_json::json;

use super::{Shown, shown};
use crate::api::{Api, Outcome};
use crate::show;

#[derive(Debug, clap::Subcommand)]
pub enum DeviceCommand {
    /// Everything about a unit: model, EOL, installed version, warranty,
    /// contracts, open RMAs, active push, and what its next check would
    /// answer with the entitlement decision for every release.
    Show {
        /// Serial number.
        serial: String,
    },
    /// The entitlement reasoning for every release, with the full
    /// explanations (ids and dates).
    Entitlement {
        /// Serial number.
        serial: String,
        /// Explain this channel instead of the device's own.
        #[arg(long)]
        channel: Option<String>,
    },
    /// The warranty with its reasoning, and whether a fault on a given day
    /// is covered.
    Warranty {
        /// Serial number.
        serial: String,
        /// The day the fault occurred, YYYY-MM-DD (default: today).
        #[arg(long, value_name = "DATE")]
        fault_on: Option<String>,
    },
    /// Register the unit on its owner's behalf (the desk); extends a
    /// hardware warranty. Refused if it is registered already.
    Register {
        /// Serial number.
        serial: String,
    },
    /// Record one unit's date of sale and region (admin).
    Sale {
        /// Serial number.
        serial: String,
        /// Date of sale, YYYY-MM-DD.
        #[arg(long, value_name = "DATE")]
        date: String,
        /// Region it was sold in (per-region warranty periods).
        #[arg(long)]
        region: Option<String>,
    },
}

impl DeviceCommand {
    pub fn run(self, api: &Api) -> Outcome<Shown> {
        match self {
            DeviceCommand::Show { serial } => shown(
                api.get(&api.url(&["v1", "devices", &serial], &[])),
                show::device,
            ),
            DeviceCommand::Entitlement { serial, channel } => {
                let query: Vec<(&str, &str)> =
                    channel.iter().map(|c| ("channel", c.as_str())).collect();
                shown(
                    api.get(&api.url(&["v1", "devices", &serial, "entitlement"], &query)),
                    |v| show::entitlement_lines(v, true),
                )
            }
            DeviceCommand::Warranty { serial, fault_on } => {
                let query: Vec<(&str, &str)> =
                    fault_on.iter().map(|d| ("fault_on", d.as_str())).collect();
                shown(
                    api.get(&api.url(&["v1", "devices", &serial, "warranty"], &query)),
                    show::warranty,
                )
            }
            DeviceCommand::Register { serial } => shown(
                api.call(
                    Method::POST,
                    &api.url(&["v1", "admin", "devices", &serial, "registration"], &[]),
                    None,
                ),
                |v| {
                    format!(
                        "registered {}: warranty until {}\n",
                        show::text(&v["serial"]),
                        show::text(&v["warranty_ends"])
                    )
                },
            ),
            DeviceCommand::Sale {
                serial,
                date,
                region,
            } => shown(
                api.call(
                    Method::PUT,
                    &api.url(&["v1", "admin", "devices", &serial, "sale"], &[]),
                    Some(&json!({ "sale_date": date, "region": region })),
                ),
                |v| {
                    format!(
                        "{} sold on {} (region {}): warranty until {}\n",
                        show::text(&v["serial"]),
                        show::text(&v["sale_date"]),
                        show::text(&v["region"]),
                        show::text(&v["warranty_ends"])
                    )
                },
            ),
        }
    }
}
