//! `firmup privacy ...`: owners' data-protection requests (admin): export
//! what is held about a unit or an owner, erase a unit, correct a
//! customer's contact, restrict processing, run retention now.

use std::path::PathBuf;

use reqwest::Method;
use serde_json::{Value, json};

use super::{Shown, shown};
use crate::api::{Api, Failure, Outcome};
use crate::show;

#[derive(Debug, clap::Subcommand)]
pub enum PrivacyCommand {
    /// Everything held about a unit (`--serial`) or an owner (`--email`,
    /// as on their RMAs), one JSON document.
    Export {
        /// A unit's serial.
        #[arg(long, required_unless_present = "email", conflicts_with = "email")]
        serial: Option<String>,
        /// An owner's email: every unit of theirs.
        #[arg(long)]
        email: Option<String>,
        /// Write the document to this file (written whole, then renamed
        /// into place) instead of printing it.
        #[arg(long, value_name = "FILE")]
        out: Option<PathBuf>,
    },
    /// Erase a unit at its owner's request: contact, registration,
    /// verification code and RMA files go, tokens are revoked, and the
    /// serial becomes a pseudonym wherever history is kept.
    Erase {
        /// Serial number.
        serial: String,
        /// The request it answers (a ticket, a date).
        #[arg(long)]
        reason: String,
    },
    /// Correct the customer's contact on every RMA of a unit.
    Contact {
        /// Serial number.
        serial: String,
        /// Name.
        #[arg(long)]
        name: String,
        /// Email.
        #[arg(long)]
        email: String,
        /// Phone.
        #[arg(long)]
        phone: Option<String>,
    },
    /// Restrict processing for a unit (it is still updated; nothing else is
    /// recorded about it), or lift the restriction with `--lift`.
    Restrict {
        /// Serial number.
        serial: String,
        /// Lift the restriction.
        #[arg(long)]
        lift: bool,
    },
    /// Run the retention job now with the server's periods.
    Retention,
}

impl PrivacyCommand {
    pub fn run(self, api: &Api) -> Outcome<Shown> {
        match self {
            PrivacyCommand::Export { serial, email, out } => {
                let query: Vec<(&str, &str)> = serial
                    .iter()
                    .map(|s| ("serial", s.as_str()))
                    .chain(email.iter().map(|e| ("email", e.as_str())))
                    .collect();
                let doc = api.get(&api.url(&["v1", "privacy", "export"], &query))?;
                let text = serde_json::to_string_pretty(&doc)
                    .map_err(|e| Failure::Local(format!("the export as JSON: {e}")))?;
                let units = show::items(&doc, "devices").len();
                match out {
                    Some(path) => {
                        write_whole(&path, text.as_bytes())?;
                        let shown = format!("exported {units} unit(s) to {}\n", path.display());
                        Ok(Shown::of(doc, |_| shown))
                    }
                    None => Ok(Shown::of(doc, |_| format!("{text}\n"))),
                }
            }
            PrivacyCommand::Erase { serial, reason } => shown(
                api.post(
                    &api.url(&["v1", "privacy", "devices", &serial, "erase"], &[]),
                    &json!({ "reason": reason }),
                ),
                |v| erased(&serial, v),
            ),
            PrivacyCommand::Contact {
                serial,
                name,
                email,
                phone,
            } => shown(
                api.call(
                    Method::PUT,
                    &api.url(&["v1", "privacy", "devices", &serial, "contact"], &[]),
                    Some(&json!({ "name": name, "email": email, "phone": phone })),
                ),
                |v| {
                    format!(
                        "contact corrected on {} RMA(s) of {}\n",
                        show::text(&v["rmas"]),
                        show::text(&v["serial"])
                    )
                },
            ),
            PrivacyCommand::Restrict { serial, lift } => shown(
                api.call(
                    Method::PUT,
                    &api.url(&["v1", "privacy", "devices", &serial, "restriction"], &[]),
                    Some(&json!({ "restricted": !lift })),
                ),
                |v| {
                    if v["restricted"] == Value::Bool(true) {
                        format!(
                            "{}: processing restricted since {}\n",
                            show::text(&v["serial"]),
                            show::text(&v["restricted_since"])
                        )
                    } else {
                        format!("{}: not restricted\n", show::text(&v["serial"]))
                    }
                },
            ),
            PrivacyCommand::Retention => shown(
                api.call(
                    Method::POST,
                    &api.url(&["v1", "privacy", "retention"], &[]),
                    None,
                ),
                |v| {
                    format!(
                        "pruned: {} reports, {} check-in records, {} audit details, {} RMA contacts\n",
                        show::text(&v["reports"]),
                        show::text(&v["check_ins"]),
                        show::text(&v["audit_details"]),
                        show::text(&v["rma_contacts"])
                    )
                },
            ),
        }
    }
}

/// The answer to an erasure, in lines.
fn erased(serial: &str, v: &Value) -> String {
    let mut out = String::new();
    if v["outcome"] == "already_erased" {
        out.push_str(&format!(
            "{serial} was erased on {} already (pseudonym {}); nothing changed\n",
            show::text(&v["erased_at"]),
            show::text(&v["pseudonym"])
        ));
        return out;
    }
    let c = &v["changed"];
    out.push_str(&format!(
        "erased {serial}: now {}\n",
        show::text(&v["pseudonym"])
    ));
    out.push_str(&format!(
        "  tokens revoked: {}, RMAs without contact: {}, files deleted: {}, reports kept: {}, audit records rewritten: {}\n",
        show::text(&c["tokens_revoked"]),
        show::text(&c["rmas"]),
        show::text(&c["attachments_deleted"]),
        show::text(&c["reports"]),
        show::text(&c["audit_records"])
    ));
    for k in show::items(v, "kept") {
        out.push_str(&format!("  kept: {}\n", show::text(k)));
    }
    out
}

/// Writes `bytes` to a temporary file beside `path`, then renames it into
/// place: an interrupted export never leaves half a document.
fn write_whole(path: &std::path::Path, bytes: &[u8]) -> Outcome<()> {
    let local = |e: std::io::Error| Failure::Local(format!("{}: {e}", path.display()));
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or_else(|| std::path::Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(dir).map_err(local)?;
    std::io::Write::write_all(&mut tmp, bytes).map_err(local)?;
    tmp.persist(path).map_err(|e| local(e.error))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_erasure_reads_as_what_changed_and_a_second_as_nothing() {
        let first = json!({
            "outcome": "erased", "pseudonym": "erased-0123456789abcdef01234567",
            "erased_at": "2026-12-03T10:00:00Z",
            "changed": { "tokens_revoked": 1, "rmas": 1, "attachments_deleted": 2,
                         "reports": 5, "audit_records": 9 },
            "kept": ["its contracts"],
        });
        let text = erased("SN-1", &first);
        assert!(
            text.starts_with("erased SN-1: now erased-0123456789abcdef01234567\n"),
            "{text}"
        );
        assert!(text.contains("files deleted: 2"), "{text}");
        assert!(text.contains("  kept: its contracts\n"), "{text}");
        let again = json!({ "outcome": "already_erased", "pseudonym": "erased-x",
                            "erased_at": "2026-12-03T10:00:00Z", "changed": null });
        assert!(erased("SN-1", &again).contains("nothing changed"));
    }

    #[test]
    fn an_export_is_written_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.json");
        std::fs::write(&path, "old").unwrap();
        write_whole(&path, b"{}").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            1,
            "no temporary file left"
        );
    }
}
