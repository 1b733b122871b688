//! `firmup device ...`: the technician's view of a unit.

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{Value, json};

use super::{Shown, shown};
use crate::api::{Api, Failure, Outcome};
use crate::show;

/// Most dates of sale the server takes in one request (its
/// `too_many_sales` limit); a longer file is refused here before anything
/// is sent, since the import is all or nothing.
const MAX_SALES_PER_FILE: usize = 10_000;

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
    /// Set a unit's tags, which dynamic groups filter on (`tag = studio`)
    /// (admin): the whole set.
    Tags {
        /// Serial number.
        serial: String,
        /// Its tags.
        #[arg(required_unless_present = "clear")]
        tags: Vec<String>,
        /// Remove every tag.
        #[arg(long, conflicts_with = "tags")]
        clear: bool,
    },
    /// Record the dates of sale of many units from a CSV file with the
    /// header `serial,sale_date[,region]` (admin): all or nothing.
    Sales {
        /// The CSV file, at most 10 000 units.
        file: PathBuf,
    },
}

/// One entry of a sales file, with the line it came from.
struct SaleLine {
    line: u64,
    sale: Value,
}

/// Reads a sales CSV file: header `serial,sale_date[,region]`, one unit a
/// line, an empty region meaning none. The values are checked by the
/// server, whose errors are mapped back to these lines.
fn read_sales(path: &Path) -> Outcome<Vec<SaleLine>> {
    let bad = |m: String| Failure::Local(format!("{}: {m}", path.display()));
    let bytes = std::fs::read(path).map_err(|e| bad(e.to_string()))?;
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes.as_slice());
    let header: Vec<String> = reader
        .headers()
        .map_err(|e| bad(e.to_string()))?
        .iter()
        .map(str::to_owned)
        .collect();
    if header != ["serial", "sale_date"] && header != ["serial", "sale_date", "region"] {
        return Err(bad(format!(
            "the header is {:?}; it must be serial,sale_date or serial,sale_date,region",
            header.join(",")
        )));
    }
    let mut lines = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| bad(e.to_string()))?;
        let line = line_of(&bytes, record.position());
        if lines.len() == MAX_SALES_PER_FILE {
            return Err(bad(format!(
                "more than {MAX_SALES_PER_FILE} units (line {line}); split the file"
            )));
        }
        let region = record.get(2).filter(|r| !r.is_empty());
        lines.push(SaleLine {
            line,
            sale: json!({
                "serial": record.get(0).unwrap_or_default(),
                "sale_date": record.get(1).unwrap_or_default(),
                "region": region,
            }),
        });
    }
    if lines.is_empty() {
        return Err(bad("no units below the header".into()));
    }
    Ok(lines)
}

/// The 1-based line of the file a record starts on. The csv reader's own
/// line counter skips blank lines, which would send someone looking for
/// the line in an editor to the wrong one; its byte offset is exact, once
/// past the previous record's line end (where the reader's position is).
fn line_of(bytes: &[u8], position: Option<&csv::Position>) -> u64 {
    let start = position.map_or(0, |p| usize::try_from(p.byte()).unwrap_or(usize::MAX));
    let start = start
        + bytes
            .get(start..)
            .unwrap_or_default()
            .iter()
            .take_while(|b| matches!(b, b'\r' | b'\n'))
            .count();
    let newlines = bytes.iter().take(start).filter(|b| **b == b'\n').count();
    u64::try_from(newlines).map_or(u64::MAX, |n| n + 1)
}

/// A refusal that names an entry (`sales[3]`) also names its line of the file.
fn with_line(failure: Failure, path: &Path, lines: &[SaleLine]) -> Failure {
    match failure {
        Failure::Refused {
            status,
            code,
            message,
            body,
        } => {
            let index = message
                .split_once("sales[")
                .and_then(|(_, rest)| rest.split_once(']'))
                .and_then(|(n, _)| n.parse::<usize>().ok());
            let message = match index.and_then(|i| lines.get(i)) {
                Some(l) => format!("{message} (line {} of {})", l.line, path.display()),
                None => message,
            };
            Failure::Refused {
                status,
                code,
                message,
                body,
            }
        }
        other => other,
    }
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
            DeviceCommand::Tags { serial, tags, .. } => shown(
                api.call(
                    Method::PUT,
                    &api.url(&["v1", "admin", "devices", &serial, "tags"], &[]),
                    Some(&json!({ "tags": tags })),
                ),
                |v| {
                    let tags: Vec<String> = show::items(v, "tags").iter().map(show::text).collect();
                    format!(
                        "{} tags: {}\n",
                        show::text(&v["serial"]),
                        if tags.is_empty() {
                            "-".into()
                        } else {
                            tags.join(", ")
                        }
                    )
                },
            ),
            DeviceCommand::Sales { file } => {
                let lines = read_sales(&file)?;
                let sales: Vec<&Value> = lines.iter().map(|l| &l.sale).collect();
                let answer = api
                    .post(
                        &api.url(&["v1", "admin", "sales"], &[]),
                        &json!({ "sales": sales }),
                    )
                    .map_err(|f| with_line(f, &file, &lines))?;
                Ok(Shown::of(answer, |v| {
                    format!("recorded {} dates of sale\n", show::text(&v["count"]))
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    fn sales_file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        f.write_all(text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn sales_files_keep_their_lines_and_map_refusals_to_them() {
        let f = sales_file("serial,sale_date,region\nS1,2026-03-01,EU\n\nS2 , 2026-04-02,\n");
        let lines = read_sales(f.path()).unwrap();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].line, 2);
        assert_eq!(lines[0].sale["region"], "EU");
        assert_eq!(lines[1].line, 4);
        assert_eq!(lines[1].sale["serial"], "S2");
        assert_eq!(lines[1].sale["region"], Value::Null);
        let refused = Failure::Refused {
            status: 422,
            code: "unknown_serial".into(),
            message: "sales[1]: no device S2 is provisioned".into(),
            body: Value::Null,
        };
        let Failure::Refused { message, .. } = with_line(refused, f.path(), &lines) else {
            panic!("still a refusal");
        };
        assert!(
            message.ends_with(&format!("(line 4 of {})", f.path().display())),
            "{message}"
        );
    }

    #[test]
    fn sales_files_with_a_wrong_header_or_no_units_are_refused_locally() {
        for (text, says) in [
            ("serial,date\nS1,2026-03-01\n", "the header is"),
            ("serial,sale_date\n", "no units"),
            ("serial,sale_date\nS1\n", "found record with 1 field"),
        ] {
            let f = sales_file(text);
            let Err(Failure::Local(m)) = read_sales(f.path()) else {
                panic!("{text:?} accepted");
            };
            assert!(m.contains(says), "{text:?}: {m}");
        }
    }
}
