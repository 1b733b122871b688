//! Human-readable renderings of the server's answers: one `key: value`
//! line per fact (so `grep '^warranty'` finds a line), lists as indented
//! rows. `--json` bypasses all of this and prints the answer as sent.

use std::fmt::Write as _;

use serde_json::Value;

/// A field as text: strings as they are, numbers and booleans printed,
/// `null` or missing as `-`.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Appends `key: value`.
fn line(out: &mut String, key: &str, value: impl AsRef<str>) {
    let _ = writeln!(out, "{key}: {}", value.as_ref());
}

/// The items of an array field (none when it is missing).
pub fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v[key].as_array().map_or(&[], Vec::as_slice)
}

/// The technician's view of a device (`GET /v1/devices/{serial}`).
pub fn device(v: &Value) -> String {
    let mut out = String::new();
    line(&mut out, "serial", text(&v["serial"]));
    line(
        &mut out,
        "model",
        format!("{} ({})", text(&v["model"]), text(&v["model_name"])),
    );
    line(
        &mut out,
        "product line",
        format!("{} ({})", text(&v["product_line"]), text(&v["kind"])),
    );
    line(
        &mut out,
        "eol",
        v["model_eol"].as_str().map_or_else(
            || "in production".to_string(),
            |d| format!("{d} (discontinued)"),
        ),
    );
    line(&mut out, "hardware id", text(&v["hw_id"]));
    line(&mut out, "channel", text(&v["channel"]));
    line(&mut out, "version", text(&v["current_version"]));
    line(&mut out, "security counter", text(&v["security_counter"]));
    line(&mut out, "last seen", text(&v["last_seen"]));
    line(
        &mut out,
        "sale",
        match v["sale_date"].as_str() {
            Some(d) => format!("{d}, region {}", text(&v["region"])),
            None => "unknown".into(),
        },
    );
    line(
        &mut out,
        "registered",
        match v["registered_at"].as_str() {
            Some(t) => t.to_string(),
            None if v["verification_code_on_file"] == true => {
                "no (the owner can register it with its verification code)".into()
            }
            None => "no".into(),
        },
    );
    out.push_str(&warranty_lines(&v["warranty"]));
    for c in items(v, "contracts") {
        line(
            &mut out,
            "contract",
            format!(
                "{} {} {}..{}{}",
                text(&c["id"]),
                text(&c["kind"]),
                text(&c["starts"]),
                text(&c["ends"]),
                if c["active"] == true { " (active)" } else { "" }
            ),
        );
    }
    for l in items(v, "licences") {
        line(
            &mut out,
            "licence",
            format!(
                "{} {}..{}",
                text(&l["id"]),
                text(&l["starts"]),
                text(&l["ends"])
            ),
        );
    }
    for r in items(v, "open_rmas") {
        line(&mut out, "rma", rma_row(r));
    }
    if !v["active_push"].is_null() {
        line(&mut out, "push", push_row(&v["active_push"]));
    }
    if let Some(by) = v["replaced_by"].as_str() {
        line(
            &mut out,
            "replaced by",
            format!("{by} on {}", text(&v["replaced_on"])),
        );
    }
    if let Some(old) = v["replaces"].as_str() {
        line(&mut out, "replaces", old);
    }
    if !v["entitlement"].is_null() {
        out.push_str(&entitlement_lines(&v["entitlement"], false));
    }
    for r in items(v, "reports").iter().take(5) {
        line(
            &mut out,
            "report",
            format!(
                "{} {} {}{}",
                text(&r["at"]),
                text(&r["version"]),
                text(&r["stage"]),
                r["reason_code"]
                    .as_str()
                    .map_or_else(String::new, |c| format!(" ({c})"))
            ),
        );
    }
    out
}

/// The warranty lines of an assessment.
fn warranty_lines(w: &Value) -> String {
    let mut out = String::new();
    line(
        &mut out,
        "warranty",
        format!(
            "{} ({}) until {}: {}",
            text(&w["state"]),
            text(&w["code"]),
            text(&w["ends"]),
            text(&w["summary"])
        ),
    );
    out
}

/// The entitlement reasoning: what the next check answers, then one row
/// per release (with the full explanation when `explain`).
pub fn entitlement_lines(e: &Value, explain: bool) -> String {
    let mut out = String::new();
    let mut next = match e["version"].as_str() {
        Some(v) => format!("{} {v}", text(&e["status"])),
        None => text(&e["status"]),
    };
    if let Some(at) = e["deferred_until"].as_str() {
        let _ = write!(next, ", waiting for its maintenance window until {at}");
    }
    line(&mut out, "next check", next);
    for r in items(e, "releases") {
        let d = &r["decision"];
        line(
            &mut out,
            "release",
            format!(
                "{} {} ({}){}: {}",
                text(&r["version"]),
                if d["entitled"] == true {
                    "entitled"
                } else {
                    "not entitled"
                },
                text(&d["code"]),
                if r["offered"] == true {
                    ", offered"
                } else {
                    ""
                },
                text(&d["summary"])
            ),
        );
        if explain {
            let _ = writeln!(out, "  {}", text(&d["explanation"]));
        }
        if let Some(why) = r["rollout"]["explanation"].as_str() {
            let _ = writeln!(out, "  {why}");
        }
    }
    out
}

/// `GET /v1/devices/{serial}/warranty`.
pub fn warranty(v: &Value) -> String {
    let w = &v["warranty"];
    let f = &v["fault"];
    let mut out = warranty_lines(w);
    line(
        &mut out,
        "standard warranty ends",
        text(&w["standard_ends"]),
    );
    line(&mut out, "last covered day", text(&w["last_covered_day"]));
    let _ = writeln!(out, "  {}", text(&w["explanation"]));
    line(
        &mut out,
        "fault",
        format!(
            "{} ({}): {}",
            if f["covered"] == true {
                "covered"
            } else {
                "not covered"
            },
            text(&f["code"]),
            text(&f["explanation"])
        ),
    );
    out
}

/// A push in one row.
pub fn push_row(p: &Value) -> String {
    format!(
        "{} {} {} (rma {}, by {}, expires {})",
        text(&p["id"]),
        text(&p["state"]),
        p["version"].as_str().unwrap_or("newest"),
        text(&p["rma"]),
        text(&p["technician"]),
        text(&p["expires_at"])
    )
}

/// `GET /v1/devices/{serial}/pushes`.
pub fn pushes(v: &Value) -> String {
    let list = items(v, "pushes");
    if list.is_empty() {
        return "no pushes\n".into();
    }
    list.iter().map(|p| format!("{}\n", push_row(p))).collect()
}

/// An attachment in one row: id, name, type, length, who and when.
pub fn attachment_row(a: &Value) -> String {
    format!(
        "{} {} ({}, {} bytes) by {} at {}",
        text(&a["id"]),
        text(&a["name"]),
        text(&a["content_type"]),
        text(&a["length"]),
        text(&a["uploaded_by"]),
        text(&a["uploaded_at"])
    )
}

/// An RMA in one row.
pub fn rma_row(r: &Value) -> String {
    format!(
        "{} {} {} {} ({} d){}",
        text(&r["number"]),
        text(&r["state"]),
        text(&r["serial"]),
        text(&r["model"]),
        text(&r["age_days"]),
        r["coverage_code"]
            .as_str()
            .map_or_else(String::new, |c| format!(", {c}"))
    )
}

/// `GET /v1/rmas`.
pub fn rmas(v: &Value) -> String {
    let list = items(v, "rmas");
    if list.is_empty() {
        return "no RMAs\n".into();
    }
    list.iter().map(|r| format!("{}\n", rma_row(r))).collect()
}

/// An RMA in full (`GET /v1/rmas/{number}` and the answers of its changes).
pub fn rma(v: &Value) -> String {
    let mut out = String::new();
    line(&mut out, "rma", text(&v["number"]));
    line(
        &mut out,
        "unit",
        format!("{} ({})", text(&v["serial"]), text(&v["model"])),
    );
    line(&mut out, "state", text(&v["state"]));
    let next: Vec<String> = items(v, "next_states").iter().map(text).collect();
    line(
        &mut out,
        "next states",
        if next.is_empty() {
            "-".into()
        } else {
            next.join(", ")
        },
    );
    let c = &v["customer"];
    line(
        &mut out,
        "customer",
        format!("{} <{}>", text(&c["name"]), text(&c["email"])),
    );
    line(&mut out, "fault", text(&v["fault"]));
    line(&mut out, "fault on", text(&v["fault_on"]));
    line(&mut out, "tracking in", text(&v["tracking_in"]));
    line(&mut out, "tracking out", text(&v["tracking_out"]));
    if let Some(cov) = v["coverage"].as_object() {
        line(
            &mut out,
            "coverage",
            format!(
                "{} ({}): {}",
                if cov.get("covered") == Some(&Value::Bool(true)) {
                    "covered"
                } else {
                    "not covered"
                },
                cov.get("code").map_or_else(|| "-".into(), text),
                cov.get("summary").map_or_else(|| "-".into(), text)
            ),
        );
    } else {
        line(&mut out, "coverage", "not decided");
    }
    for p in items(v, "pushes") {
        line(&mut out, "push", push_row(p));
    }
    for p in items(v, "parts") {
        line(
            &mut out,
            "part",
            format!(
                "{} replaced {}, warranty until {}",
                text(&p["part"]),
                text(&p["replaced_on"]),
                text(&p["warranty_ends"])
            ),
        );
    }
    for a in items(v, "attachments") {
        line(&mut out, "attachment", attachment_row(a));
    }
    for e in items(v, "events") {
        let change = match (e["from_state"].as_str(), e["to_state"].as_str()) {
            (Some(f), Some(t)) => format!(" {f} -> {t}"),
            (None, Some(t)) => format!(" -> {t}"),
            _ => String::new(),
        };
        line(
            &mut out,
            "event",
            format!(
                "{} {}{} by {}",
                text(&e["at"]),
                text(&e["kind"]),
                change,
                text(&e["actor"])
            ),
        );
    }
    out
}

/// A rollout's progress in one line: state, phase, share and the counts
/// of the current phase (what `rollout watch` prints on each change).
pub fn rollout_progress(v: &Value) -> String {
    let phases = items(v, "phases").len();
    let phase = v["phase"].as_u64().unwrap_or(0);
    let counts = &v["status"]["phases"][usize::try_from(phase).unwrap_or(0)];
    let mut out = format!(
        "{} {} phase {}/{phases} ({}%): offered {}, installed {}, failed {}, rolled back {}",
        text(&v["id"]),
        text(&v["state"]),
        phase + 1,
        text(&v["percent"]),
        text(&counts["offered"]),
        text(&counts["installed"]),
        text(&counts["failed"]),
        text(&counts["rolled_back"]),
    );
    if let Some(why) = v["paused_reason"].as_str() {
        let _ = write!(out, " ({why})");
    }
    out
}

/// A rollout in one row.
pub fn rollout_row(r: &Value) -> String {
    format!(
        "{} {} {}/{}/{} phase {}/{} ({}%){}",
        text(&r["id"]),
        text(&r["state"]),
        text(&r["product_line"]),
        text(&r["channel"]),
        text(&r["version"]),
        r["phase"].as_u64().unwrap_or(0) + 1,
        items(r, "phases").len(),
        text(&r["percent"]),
        r["group"]
            .as_str()
            .map_or_else(String::new, |g| format!(", group {g}"))
    )
}

/// `GET /v1/rollouts`.
pub fn rollouts(v: &Value) -> String {
    let list = items(v, "rollouts");
    if list.is_empty() {
        return "no rollouts\n".into();
    }
    list.iter()
        .map(|r| format!("{}\n", rollout_row(r)))
        .collect()
}

/// A rollout in full (`GET /v1/rollouts/{id}` and the answers of its
/// actions).
pub fn rollout(v: &Value) -> String {
    let mut out = String::new();
    line(&mut out, "rollout", text(&v["id"]));
    line(
        &mut out,
        "release",
        format!(
            "{}/{}/{}",
            text(&v["product_line"]),
            text(&v["channel"]),
            text(&v["version"])
        ),
    );
    line(&mut out, "state", text(&v["state"]));
    if let Some(why) = v["paused_reason"].as_str() {
        line(&mut out, "paused reason", why);
    }
    let phases: Vec<String> = items(v, "phases")
        .iter()
        .map(|p| format!("{}%", text(p)))
        .collect();
    line(
        &mut out,
        "phase",
        format!(
            "{}/{} ({}%) of {}",
            v["phase"].as_u64().unwrap_or(0) + 1,
            phases.len(),
            text(&v["percent"]),
            phases.join(", ")
        ),
    );
    line(&mut out, "group", text(&v["group"]));
    line(
        &mut out,
        "pauses above",
        format!(
            "{}% failures after {} installs",
            // 10, not the JSON's 10.0.
            v["failure_threshold_percent"]
                .as_f64()
                .map_or_else(|| "-".into(), |p| p.to_string()),
            text(&v["min_sample"])
        ),
    );
    line(
        &mut out,
        "advances",
        match v["next_advance_at"].as_str() {
            Some(at) => format!("by itself at {at}"),
            None if v["soak_secs"].is_null() => "by hand".into(),
            None => format!("after {} s of soak, while running", text(&v["soak_secs"])),
        },
    );
    for p in items(&v["status"], "phases") {
        line(
            &mut out,
            "counts",
            format!(
                "phase {} ({}%): offered {}, downloading {}, installed {}, failed {}, rolled back {}",
                text(&p["phase"]),
                text(&p["percent"]),
                text(&p["offered"]),
                text(&p["downloading"]),
                text(&p["installed"]),
                text(&p["failed"]),
                text(&p["rolled_back"])
            ),
        );
    }
    for r in items(&v["status"], "failure_reasons") {
        line(
            &mut out,
            "failure",
            format!("{} x{}", text(&r["reason"]), text(&r["count"])),
        );
    }
    for h in items(&v["status"], "installs_by_hour") {
        line(
            &mut out,
            "installs",
            format!("{} {}", text(&h["hour"]), text(&h["installed"])),
        );
    }
    for e in items(v, "events") {
        line(
            &mut out,
            "event",
            format!(
                "{} {} by {}: {}",
                text(&e["at"]),
                text(&e["kind"]),
                text(&e["actor"]),
                text(&e["detail"])
            ),
        );
    }
    out
}

/// A maintenance window in one line: `Europe/Berlin mon,tue@02:00+4h; ...`.
fn window(w: &Value) -> String {
    if w.is_null() {
        return "-".into();
    }
    let slots: Vec<String> = items(w, "slots")
        .iter()
        .map(|s| {
            let days: Vec<String> = items(s, "days").iter().map(text).collect();
            format!(
                "{}@{}+{}h",
                days.join(","),
                text(&s["start"]),
                text(&s["hours"])
            )
        })
        .collect();
    format!("{} {}", text(&w["timezone"]), slots.join("; "))
}

/// A device group in one row.
pub fn group_row(g: &Value) -> String {
    format!(
        "{} {}{}{}",
        text(&g["name"]),
        text(&g["kind"]),
        match g["filter"].as_str() {
            Some(f) => format!(" ({f})"),
            None => format!(", {} members", text(&g["members"])),
        },
        if g["window"].is_null() {
            String::new()
        } else {
            format!(", window {}", window(&g["window"]))
        }
    )
}

/// `GET /v1/groups`.
pub fn groups(v: &Value) -> String {
    let list = items(v, "groups");
    if list.is_empty() {
        return "no groups\n".into();
    }
    list.iter().map(|g| format!("{}\n", group_row(g))).collect()
}

/// A device group in full.
pub fn group(g: &Value) -> String {
    let mut out = String::new();
    line(&mut out, "group", text(&g["name"]));
    line(&mut out, "kind", text(&g["kind"]));
    if let Some(f) = g["filter"].as_str() {
        line(&mut out, "filter", f);
    } else {
        line(&mut out, "members", text(&g["members"]));
    }
    line(&mut out, "window", window(&g["window"]));
    for s in items(g, "serials") {
        line(&mut out, "serial", text(s));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn missing_fields_show_as_dashes_and_lines_are_keyed() {
        let out = device(&json!({ "serial": "SN-1", "model": "E4K" }));
        assert!(out.starts_with("serial: SN-1\nmodel: E4K (-)\n"), "{out}");
        assert!(out.contains("eol: in production\n"), "{out}");
        assert!(out.contains("sale: unknown\n"), "{out}");
        assert!(!out.contains("push:"), "{out}");
    }

    #[test]
    fn entitlement_rows_name_code_and_offer() {
        let e = json!({
            "status": "update_available", "version": "2.3.0",
            "releases": [
                { "version": "2.3.0", "offered": true,
                  "decision": { "entitled": true, "code": "repair_grant", "summary": "s",
                                "explanation": "because" } },
                { "version": "2.2.0", "offered": false,
                  "decision": { "entitled": false, "code": "eol_no_contract", "summary": "t",
                                "explanation": "why" } }
            ]
        });
        let out = entitlement_lines(&e, true);
        assert_eq!(
            out,
            "next check: update_available 2.3.0\n\
             release: 2.3.0 entitled (repair_grant), offered: s\n  because\n\
             release: 2.2.0 not entitled (eol_no_contract): t\n  why\n"
        );
    }

    #[test]
    fn a_release_held_by_its_rollout_says_so() {
        let e = json!({
            "status": "up_to_date",
            "releases": [{ "version": "2.4.0", "offered": false,
                "decision": { "entitled": true, "code": "in_production", "summary": "s", "explanation": "e" },
                "rollout": { "admitted": false, "explanation": "Rollout ro_1 is at phase 1 of 2 (50%); this device joins at phase 2 (100%)." } }]
        });
        assert_eq!(
            entitlement_lines(&e, false),
            "next check: up_to_date\nrelease: 2.4.0 entitled (in_production): s\n  \
             Rollout ro_1 is at phase 1 of 2 (50%); this device joins at phase 2 (100%).\n"
        );
    }

    #[test]
    fn rma_shows_state_changes_and_undecided_coverage() {
        let out = rma(&json!({
            "number": "RMA-2026-000001", "state": "diagnosing",
            "next_states": ["repairing", "shipped", "cancelled"],
            "events": [{ "at": "t", "kind": "state", "from_state": "received",
                         "to_state": "diagnosing", "actor": "token:bench" }]
        }));
        assert!(
            out.contains("next states: repairing, shipped, cancelled\n"),
            "{out}"
        );
        assert!(out.contains("coverage: not decided\n"), "{out}");
        assert!(
            out.contains("event: t state received -> diagnosing by token:bench\n"),
            "{out}"
        );
    }
}
