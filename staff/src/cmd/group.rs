//! `firmup group ...`: device groups for rollouts and maintenance windows.

use std::path::{Path, PathBuf};

use reqwest::Method;
use serde_json::{Value, json};

use super::{Shown, shown};
use crate::api::{Api, Failure, Outcome};
use crate::show;

/// Most serials the server takes in one request.
const MAX_SERIALS_PER_REQUEST: usize = 10_000;

#[derive(Debug, clap::Subcommand)]
pub enum GroupCommand {
    /// Create a group: dynamic with --filter, else static with the serials
    /// given (arguments and --file).
    Create {
        /// Group name.
        name: String,
        /// A filter on model, hw_id, channel, region, tag and version, e.g.
        /// `model = E4K and region in (EU, UK) and version < 2.3.0`.
        #[arg(long, conflicts_with_all = ["serials", "file"])]
        filter: Option<String>,
        /// Members (static group).
        serials: Vec<String>,
        /// A file of members: one serial a line, or a CSV file with a
        /// `serial` column.
        #[arg(long, value_name = "FILE")]
        file: Option<PathBuf>,
    },
    /// Every group.
    List,
    /// One group with its window and (static) first 1000 members.
    Show {
        /// Group name.
        name: String,
    },
    /// Add members to a static group.
    Add {
        /// Group name.
        name: String,
        /// Serials to add.
        serials: Vec<String>,
        /// A file of serials to add (one a line, or CSV with `serial`).
        #[arg(long, value_name = "FILE", required_unless_present = "serials")]
        file: Option<PathBuf>,
    },
    /// Remove members from a static group.
    Remove {
        /// Group name.
        name: String,
        /// Serials to remove.
        #[arg(required = true)]
        serials: Vec<String>,
    },
    /// Delete a group (refused while an active rollout uses it).
    Delete {
        /// Group name.
        name: String,
    },
    /// Set the group's maintenance window, or clear it: its devices are
    /// offered updates only inside it.
    Window {
        /// Group name.
        name: String,
        /// IANA time zone, e.g. Europe/Berlin.
        #[arg(long, required_unless_present = "clear")]
        timezone: Option<String>,
        /// A weekly slot, DAYS@HH:MM+HOURSh: `mon-fri@02:00+4h`,
        /// `sat,sun@00:00+24h` (repeatable).
        #[arg(long = "slot", value_parser = parse_slot, required_unless_present = "clear")]
        slots: Vec<Value>,
        /// Remove the window.
        #[arg(long, conflicts_with_all = ["timezone", "slots"])]
        clear: bool,
    },
}

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// Parses `mon-fri@02:00+4h` into the server's slot
/// `{days: [...], start: "02:00", hours: 4}`. Days are `mon`..`sun`,
/// single, ranges (`mon-fri`, `fri-mon` wraps) or comma lists; the server
/// checks the time and hours again.
pub fn parse_slot(s: &str) -> Result<Value, String> {
    let bad = |why: &str| format!("slot {s:?}: {why}; write it like mon-fri@02:00+4h");
    let (days, rest) = s
        .split_once('@')
        .ok_or_else(|| bad("no @ between days and time"))?;
    let (start, hours) = rest
        .split_once('+')
        .ok_or_else(|| bad("no +HOURSh after the time"))?;
    let hours: u32 = hours
        .strip_suffix('h')
        .and_then(|h| h.parse().ok())
        .filter(|h| (1..=168).contains(h))
        .ok_or_else(|| bad("the length must be 1h to 168h"))?;
    let valid_time = start.len() == 5
        && start.as_bytes()[2] == b':'
        && start[..2].parse::<u8>().is_ok_and(|h| h < 24)
        && start[3..].parse::<u8>().is_ok_and(|m| m < 60);
    if !valid_time {
        return Err(bad("the start must be HH:MM, 00:00 to 23:59"));
    }
    let index = |d: &str| {
        DAYS.iter()
            .position(|x| *x == d)
            .ok_or_else(|| bad(&format!("{d:?} is not a day (mon..sun)")))
    };
    let mut picked = [false; 7];
    for part in days.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (index(a)?, index(b)?);
                let mut d = a;
                loop {
                    picked[d] = true;
                    if d == b {
                        break;
                    }
                    d = (d + 1) % 7;
                }
            }
            None => picked[index(part)?] = true,
        }
    }
    let days: Vec<&str> = DAYS
        .iter()
        .zip(picked)
        .filter_map(|(d, p)| p.then_some(*d))
        .collect();
    Ok(json!({ "days": days, "start": start, "hours": hours }))
}

/// Reads serials from a file: one a line, or a CSV file whose header has a
/// `serial` column; blank lines are skipped.
pub fn read_serials(path: &Path) -> Outcome<Vec<String>> {
    let bad = |m: String| Failure::Local(format!("{}: {m}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let first = text
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    let serials: Vec<String> = if first.split(',').any(|c| c.trim() == "serial") {
        let mut reader = csv::ReaderBuilder::new()
            .trim(csv::Trim::All)
            .from_reader(text.as_bytes());
        let column = reader
            .headers()
            .map_err(|e| bad(e.to_string()))?
            .iter()
            .position(|h| h == "serial")
            .unwrap_or(0);
        let mut out = Vec::new();
        for record in reader.records() {
            let record = record.map_err(|e| bad(e.to_string()))?;
            if let Some(s) = record.get(column).filter(|s| !s.is_empty()) {
                out.push(s.to_owned());
            }
        }
        out
    } else {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect()
    };
    if serials.len() > MAX_SERIALS_PER_REQUEST {
        return Err(bad(format!(
            "{} serials; at most {MAX_SERIALS_PER_REQUEST} per request: split the file",
            serials.len()
        )));
    }
    Ok(serials)
}

fn group_url(api: &Api, name: &str, rest: &[&str]) -> reqwest::Url {
    let mut segments = vec!["v1", "groups", name];
    segments.extend_from_slice(rest);
    api.url(&segments, &[])
}

fn with_file(mut serials: Vec<String>, file: Option<&Path>) -> Outcome<Vec<String>> {
    if let Some(f) = file {
        serials.extend(read_serials(f)?);
    }
    Ok(serials)
}

impl GroupCommand {
    pub fn run(self, api: &Api) -> Outcome<Shown> {
        match self {
            GroupCommand::Create {
                name,
                filter,
                serials,
                file,
            } => {
                let mut body = json!({ "name": name });
                match filter {
                    Some(f) => body["filter"] = json!(f),
                    None => body["serials"] = json!(with_file(serials, file.as_deref())?),
                }
                shown(
                    api.post(&api.url(&["v1", "groups"], &[]), &body),
                    show::group,
                )
            }
            GroupCommand::List => shown(api.get(&api.url(&["v1", "groups"], &[])), show::groups),
            GroupCommand::Show { name } => shown(api.get(&group_url(api, &name, &[])), show::group),
            GroupCommand::Add {
                name,
                serials,
                file,
            } => {
                let add = with_file(serials, file.as_deref())?;
                shown(
                    api.post(&group_url(api, &name, &["members"]), &json!({ "add": add })),
                    show::group,
                )
            }
            GroupCommand::Remove { name, serials } => shown(
                api.post(
                    &group_url(api, &name, &["members"]),
                    &json!({ "remove": serials }),
                ),
                show::group,
            ),
            GroupCommand::Delete { name } => {
                api.call(Method::DELETE, &group_url(api, &name, &[]), None)?;
                Ok(Shown::of(json!({ "deleted": name }), |_| {
                    format!("group {name} deleted\n")
                }))
            }
            GroupCommand::Window {
                name,
                timezone,
                slots,
                clear,
            } => {
                let url = group_url(api, &name, &["window"]);
                let answer = if clear {
                    api.call(Method::DELETE, &url, None)
                } else {
                    api.call(
                        Method::PUT,
                        &url,
                        Some(&json!({ "timezone": timezone, "slots": slots })),
                    )
                };
                shown(answer, show::group)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;

    use super::*;

    #[test]
    fn slots_read_days_ranges_and_lists() {
        assert_eq!(
            parse_slot("mon-fri@02:00+4h").unwrap(),
            json!({ "days": ["mon", "tue", "wed", "thu", "fri"], "start": "02:00", "hours": 4 })
        );
        assert_eq!(
            parse_slot("sat,sun@00:00+24h").unwrap()["days"],
            json!(["sat", "sun"])
        );
        // A range may wrap over the week's end.
        assert_eq!(
            parse_slot("fri-mon@22:00+6h").unwrap()["days"],
            json!(["mon", "fri", "sat", "sun"])
        );
        for (bad, says) in [
            ("mon-fri 02:00+4h", "no @"),
            ("mon@02:00", "no +HOURSh"),
            ("mon@02:00+0h", "1h to 168h"),
            ("mon@02:00+4", "1h to 168h"),
            ("mon@2:00+4h", "HH:MM"),
            ("mon@24:00+4h", "HH:MM"),
            ("monday@02:00+4h", "not a day"),
        ] {
            let e = parse_slot(bad).unwrap_err();
            assert!(
                e.contains(says) && e.contains("mon-fri@02:00+4h"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn serial_files_are_lines_or_a_csv_column() {
        let mut lines = tempfile::NamedTempFile::new().unwrap();
        lines.write_all(b"SN-1\n\n SN-2 \n").unwrap();
        assert_eq!(read_serials(lines.path()).unwrap(), ["SN-1", "SN-2"]);
        let mut csv = tempfile::NamedTempFile::new().unwrap();
        csv.write_all(b"model,serial\nE4K,SN-3\nE4K,SN-4\n")
            .unwrap();
        assert_eq!(read_serials(csv.path()).unwrap(), ["SN-3", "SN-4"]);
        let missing = read_serials(Path::new("/nonexistent/serials.txt"));
        assert!(matches!(missing, Err(Failure::Local(_))));
    }
}
