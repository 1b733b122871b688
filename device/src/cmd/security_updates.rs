//! `firmup-device security-updates`: the owner's choice for security
//! releases.

use std::path::Path;

use anyhow::{Context as _, Result, bail};
use firmup_client::SecurityUpdates;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::agent::{Device, describe_policy};

/// Shows or sets how security releases are installed. Security releases
/// (kind `security` or `mixed` in the signed manifest, with a signed
/// advisory) install automatically by default, without asking. The choice
/// is stored in the state directory (`security-updates.json`) and holds
/// across restarts; a running `run` loop uses it from its next cycle.
///
/// `off`: security releases are not installed automatically; `update` and
/// `run` leave them and tell the server once per release (`opted_out`),
/// so the vendor knows the unit still runs the vulnerable version.
/// `postpone DATE`: not installed before DATE, then automatically; the
/// server is told once per release and date (`postponed`). `auto`: back to
/// the default. Without an argument, prints the current choice. Feature
/// releases are not affected.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    choice: Option<Choice>,
}

#[derive(Debug, clap::Subcommand)]
enum Choice {
    /// Install security releases automatically, without asking (the
    /// default).
    #[command(visible_alias = "on", alias = "automatic")]
    Auto,
    /// Do not install security releases automatically.
    #[command(alias = "opt-out")]
    Off,
    /// Do not install security releases before DATE; then automatically.
    Postpone {
        /// A day (`2026-09-01`, from 00:00 UTC) or an RFC 3339 instant
        /// (`2026-09-01T06:00:00Z`), in the future.
        #[arg(value_name = "DATE")]
        until: String,
    },
}

/// A day (from 00:00 UTC) or an RFC 3339 instant.
fn parse_until(s: &str) -> Result<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Ok(t);
    }
    let day = time::macros::format_description!("[year]-[month]-[day]");
    let date = time::Date::parse(s, &day).with_context(|| {
        format!("{s:?} is neither a day like 2026-09-01 nor an instant like 2026-09-01T06:00:00Z")
    })?;
    Ok(date.midnight().assume_utc())
}

/// Runs `security-updates`.
pub fn run(dir: &Path, a: Args) -> Result<()> {
    let device = Device::new(dir);
    // Only a provisioned device has a choice to make.
    device.config()?;
    let policy = match a.choice {
        None => {
            println!(
                "security updates: {}",
                describe_policy(device.security_updates()?)
            );
            return Ok(());
        }
        Some(Choice::Auto) => SecurityUpdates::Automatic,
        Some(Choice::Off) => SecurityUpdates::OptedOut,
        Some(Choice::Postpone { until }) => {
            let t = parse_until(&until)?;
            if t <= OffsetDateTime::now_utc() {
                bail!(
                    "{until} has passed: postpone to a later date, or use `auto` to install \
                     security releases now"
                );
            }
            SecurityUpdates::PostponedUntil(t)
        }
    };
    device.save_security_updates(policy)?;
    println!("security updates: {}", describe_policy(policy));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse_until;

    #[test]
    fn a_postponement_is_a_day_from_midnight_utc_or_an_instant() {
        assert_eq!(
            parse_until("2026-09-01").unwrap(),
            time::macros::datetime!(2026-09-01 0:00 UTC)
        );
        assert_eq!(
            parse_until("2026-09-01T08:00:00+02:00").unwrap(),
            time::macros::datetime!(2026-09-01 6:00 UTC)
        );
        for bad in ["2026-13-01", "tomorrow", "2026-09-01 06:00", ""] {
            assert!(parse_until(bad).is_err(), "{bad}");
        }
    }
}
