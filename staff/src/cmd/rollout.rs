//! `firmup rollout ...`: staged rollouts of releases, for release
//! engineers (looking is open to every staff role).

use std::time::Duration;

use serde_json::{Value, json};

use super::{Shown, shown};
use crate::api::{Api, Failure, Outcome};
use crate::show;

#[derive(Debug, clap::Subcommand)]
pub enum RolloutCommand {
    /// Start a staged rollout of a published release: its first phase is
    /// offered the release at once. (To start one with the publish, so the
    /// release is never offered to everyone first: `firmup-signer publish
    /// --rollout 1,10,50,100`.)
    Start {
        /// Product line.
        product_line: String,
        /// Version of the release.
        version: String,
        /// Shares of devices in percent, strictly increasing.
        #[arg(
            long,
            value_delimiter = ',',
            required = true,
            value_name = "PERCENT,..."
        )]
        phases: Vec<u32>,
        /// The release's channel (default: stable).
        #[arg(long)]
        channel: Option<String>,
        /// Only devices of this group take part.
        #[arg(long)]
        group: Option<String>,
        /// Advance by itself after each phase has soaked this long under the
        /// failure threshold: `90s`, `30m`, `24h`, `7d`.
        #[arg(long, value_parser = humantime::parse_duration, value_name = "DURATION")]
        soak: Option<Duration>,
        /// A failure rate above this pauses the rollout, in percent
        /// (default 5).
        #[arg(long, value_name = "PERCENT")]
        failure_threshold: Option<f64>,
        /// Installs attempted in a phase before its failure rate counts
        /// (default 20).
        #[arg(long, value_name = "N")]
        min_sample: Option<u32>,
    },
    /// Rollouts, newest first.
    List {
        /// Only these states (repeatable or comma-separated): running,
        /// paused, aborted, finished; `active` means running and paused.
        #[arg(long, value_delimiter = ',')]
        state: Vec<String>,
        /// Only this product line.
        #[arg(long)]
        product_line: Option<String>,
    },
    /// One rollout in full: phases with their counts, failure reasons,
    /// installs per hour, events.
    Show {
        /// Rollout id (ro_...).
        id: String,
    },
    /// To the next phase (after the last: finished).
    Advance {
        /// Rollout id.
        id: String,
    },
    /// No new offers until resumed.
    Pause {
        /// Rollout id.
        id: String,
        /// Why, for the record.
        #[arg(long)]
        reason: Option<String>,
    },
    /// Offer again, at the current phase.
    Resume {
        /// Rollout id.
        id: String,
    },
    /// Stop for good: no new offers; devices that installed keep it.
    Abort {
        /// Rollout id.
        id: String,
        /// Why, for the record.
        #[arg(long)]
        reason: Option<String>,
    },
    /// To 100% at once.
    Finish {
        /// Rollout id.
        id: String,
    },
    /// Follow a rollout: one line whenever its state, phase or counts
    /// change, until it is finished or aborted (or paused, unless
    /// --through-pauses).
    Watch {
        /// Rollout id.
        id: String,
        /// Seconds between looks.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u64).range(1..=3600))]
        interval: u64,
        /// Keep watching through pauses.
        #[arg(long)]
        through_pauses: bool,
    },
}

fn rollout_url(api: &Api, id: &str, action: Option<&str>) -> reqwest::Url {
    let mut segments = vec!["v1", "rollouts", id];
    segments.extend(action);
    api.url(&segments, &[])
}

impl RolloutCommand {
    pub fn run(self, api: &Api) -> Outcome<Shown> {
        match self {
            RolloutCommand::Start {
                product_line,
                version,
                phases,
                channel,
                group,
                soak,
                failure_threshold,
                min_sample,
            } => {
                let mut body = json!({
                    "product_line": product_line, "version": version, "phases": phases,
                });
                for (k, v) in [
                    ("channel", channel.map(Value::from)),
                    ("group", group.map(Value::from)),
                    ("soak_secs", soak.map(|d| Value::from(d.as_secs().max(1)))),
                    (
                        "failure_threshold_percent",
                        failure_threshold.map(Value::from),
                    ),
                    ("min_sample", min_sample.map(Value::from)),
                ] {
                    if let Some(v) = v {
                        body[k] = v;
                    }
                }
                shown(
                    api.post(&api.url(&["v1", "rollouts"], &[]), &body),
                    show::rollout,
                )
            }
            RolloutCommand::List {
                state,
                product_line,
            } => {
                let states = state.join(",");
                let mut query: Vec<(&str, &str)> = Vec::new();
                if !states.is_empty() {
                    query.push(("state", &states));
                }
                if let Some(l) = &product_line {
                    query.push(("product_line", l));
                }
                shown(
                    api.get(&api.url(&["v1", "rollouts"], &query)),
                    show::rollouts,
                )
            }
            RolloutCommand::Show { id } => {
                shown(api.get(&rollout_url(api, &id, None)), show::rollout)
            }
            RolloutCommand::Advance { id } => act(api, &id, "advance", None),
            RolloutCommand::Pause { id, reason } => act(api, &id, "pause", Some(reason)),
            RolloutCommand::Resume { id } => act(api, &id, "resume", None),
            RolloutCommand::Abort { id, reason } => act(api, &id, "abort", Some(reason)),
            RolloutCommand::Finish { id } => act(api, &id, "finish", None),
            RolloutCommand::Watch {
                id,
                interval,
                through_pauses,
            } => {
                let url = rollout_url(api, &id, None);
                let last = watch(
                    || api.get(&url),
                    |line| println!("{line}"),
                    || std::thread::sleep(Duration::from_secs(interval)),
                    through_pauses,
                )?;
                Ok(Shown::of(last, |_| String::new()))
            }
        }
    }
}

/// An action on a rollout; `reason` is `Some` for the actions that take a
/// body (pause, abort).
fn act(api: &Api, id: &str, action: &str, reason: Option<Option<String>>) -> Outcome<Shown> {
    let url = rollout_url(api, id, Some(action));
    let answer = match reason {
        Some(reason) => {
            let body = reason.map_or_else(|| json!({}), |r| json!({ "reason": r }));
            api.post(&url, &body)
        }
        None => api.call(reqwest::Method::POST, &url, None),
    };
    shown(answer, show::rollout)
}

/// Follows a rollout: `fetch` gives its view, `print` takes a line for
/// each change of state, phase or counts, `pause` waits between looks.
/// Ends with the last view once the rollout is finished or aborted, or
/// paused unless `through_pauses`.
pub fn watch(
    mut fetch: impl FnMut() -> Outcome<Value>,
    mut print: impl FnMut(String),
    mut pause: impl FnMut(),
    through_pauses: bool,
) -> Outcome<Value> {
    let mut shown_last: Option<String> = None;
    loop {
        let v = fetch()?;
        let summary = show::rollout_progress(&v);
        if shown_last.as_deref() != Some(summary.as_str()) {
            print(format!("{} {summary}", show::text(&v["updated_at"])));
            shown_last = Some(summary);
        }
        match v["state"].as_str() {
            Some("finished" | "aborted") => return Ok(v),
            Some("paused") if !through_pauses => return Ok(v),
            Some(_) => {}
            None => {
                return Err(Failure::Local(
                    "the server's answer names no rollout state".into(),
                ));
            }
        }
        pause();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(state: &str, phase: u64, installed: u64) -> Value {
        let percent = if phase == 0 { 10 } else { 100 };
        json!({
            "id": "ro_1", "state": state, "phase": phase, "phases": [10, 100],
            "percent": percent, "updated_at": format!("t{phase}{installed}"),
            "paused_reason": if state == "paused" { json!("failure rate 50.0%") } else { Value::Null },
            "status": { "phases": [
                { "phase": 1, "percent": 10, "offered": 3, "installed": installed, "failed": 0, "rolled_back": 0 },
                { "phase": 2, "percent": 100, "offered": 0, "installed": 0, "failed": 0, "rolled_back": 0 }
            ] }
        })
    }

    fn run(seq: Vec<Value>, through_pauses: bool) -> (Vec<String>, usize, Value) {
        let mut answers = seq.into_iter();
        let mut lines = Vec::new();
        let mut pauses = 0;
        let last = watch(
            || Ok(answers.next().expect("watch stopped in time")),
            |l| lines.push(l),
            || pauses += 1,
            through_pauses,
        )
        .unwrap();
        (lines, pauses, last)
    }

    #[test]
    fn watch_prints_changes_only_and_stops_when_the_rollout_is_over() {
        let (lines, pauses, last) = run(
            vec![
                view("running", 0, 1),
                view("running", 0, 1),
                view("running", 0, 2),
                view("running", 1, 2),
                view("finished", 1, 2),
            ],
            false,
        );
        assert_eq!(lines.len(), 4, "{lines:?}");
        assert!(lines[0].contains("running phase 1/2 (10%)"), "{lines:?}");
        assert!(lines[1].contains("installed 2"), "{lines:?}");
        assert!(lines[3].contains("finished"), "{lines:?}");
        assert_eq!(pauses, 4);
        assert_eq!(last["state"], "finished");
    }

    #[test]
    fn watch_stops_on_a_pause_unless_told_to_go_through() {
        let (lines, _, last) = run(vec![view("running", 0, 1), view("paused", 0, 1)], false);
        assert_eq!(last["state"], "paused");
        assert!(
            lines[1].contains("paused") && lines[1].contains("failure rate 50.0%"),
            "{lines:?}"
        );
        let (_, _, last) = run(
            vec![
                view("paused", 0, 1),
                view("running", 0, 2),
                view("aborted", 0, 2),
            ],
            true,
        );
        assert_eq!(last["state"], "aborted");
    }
}
