//! The device-facing wire types of the server's API: `POST /v1/device/check`
//! and `POST /v1/device/reports` (docs/API.md, "Devices").
//!
//! They mirror the server's own types field for field. Unknown fields are
//! ignored on purpose: devices in the field must keep working against newer
//! servers that add fields. Nothing here is trusted: the manifest and root
//! envelopes are kept byte-exact ([`RawValue`]) so the device verifies what
//! was signed, and everything else (versions, URLs, lengths) is only a hint
//! that the verified manifest overrides.
//!
//! This module must never re-serialise a signed envelope before it is
//! verified, and does no I/O.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::state::{QueuedReport, ReportStage};

/// Path of the update check, relative to the server's base URL (so a
/// server under a prefix such as `https://host/firmup/` works).
pub const CHECK_PATH: &str = "v1/device/check";
/// Path of a fetch of one release by version, relative to the server's
/// base URL.
pub const FETCH_PATH: &str = "v1/device/fetch";
/// Path of progress reports, relative to the server's base URL.
pub const REPORTS_PATH: &str = "v1/device/reports";
/// Largest check answer read, in bytes: a manifest (64 KiB) plus a root
/// chain of up to 32 rotations (256 KiB each) fits below it.
pub const MAX_CHECK_RESPONSE_BYTES: u64 = 12 * 1024 * 1024;
/// Largest report answer read, in bytes.
pub const MAX_REPORT_RESPONSE_BYTES: u64 = 16 * 1024;

/// What a device tells the server when it checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckRequest {
    /// The device's serial (its token is bound to it).
    pub serial: String,
    /// The hardware id the device reads from itself.
    pub hw_id: String,
    /// The committed version (semver).
    pub current_version: String,
    /// The committed anti-rollback counter.
    pub security_counter: u64,
    /// The channel it follows (default on the server: the registered one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The newest root version the device trusts.
    pub root_version: u64,
    /// The highest manifest_version accepted on the channel.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest_version: Option<u64>,
}

/// What a device asks for when it wants one release by version, yanked
/// or not (a known version back, or a withdrawn security fix).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchRequest {
    /// The device's serial (its token is bound to it).
    pub serial: String,
    /// The hardware id the device reads from itself.
    pub hw_id: String,
    /// The version wanted (semver).
    pub version: String,
    /// The channel it was published on (default on the server: the
    /// registered one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The newest root version the device trusts.
    pub root_version: u64,
}

/// The answer to a fetch: the release as a check would offer it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchResponse {
    /// Root envelopes newer than the device's, oldest first, byte-exact.
    #[serde(default)]
    pub root_chain: Vec<Box<RawValue>>,
    /// The release, with its signed envelope and download URLs.
    pub update: UpdateOffer,
    /// Whether it is withdrawn from offers (untrusted, for display).
    #[serde(default)]
    pub yanked: bool,
}

/// The kind of answer to a check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckStatus {
    /// `update` says what to install.
    UpdateAvailable,
    /// Nothing newer for this device.
    UpToDate,
    /// Newer releases exist but the device may not have them.
    NotEntitled,
}

/// The part of an entitlement decision a device sees.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEntitlement {
    /// Stable reason code, e.g. `published_before_eol`, `eol_no_contract`.
    pub code: String,
    /// Short text safe to show on the device.
    pub summary: String,
}

/// One image to download, as the server describes it (untrusted: the
/// signed manifest decides length and sha256).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageDownload {
    /// Image name.
    pub name: String,
    /// Target slot or component.
    pub target: String,
    /// Length in bytes.
    pub length: u64,
    /// sha256 (hex).
    pub sha256: String,
    /// Download path with a short-lived grant.
    pub url: String,
}

/// The release on offer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UpdateOffer {
    /// Version to install now.
    pub version: String,
    /// Channel it was published on.
    pub channel: String,
    /// An intermediate step towards `target_version`.
    #[serde(default)]
    pub stepping_stone: bool,
    /// Where the steps lead (stepping stones only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_version: Option<String>,
    /// The signed manifest envelope, byte-exact.
    pub manifest: Box<RawValue>,
    /// Images with download URLs.
    pub images: Vec<ImageDownload>,
    /// Why the device may have it.
    pub entitlement: DeviceEntitlement,
}

/// The answer to a check.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckResponse {
    /// The kind of answer.
    pub status: CheckStatus,
    /// Seconds to wait before the next check.
    pub poll_after_secs: u64,
    /// Root envelopes newer than the device's, oldest first, byte-exact.
    #[serde(default)]
    pub root_chain: Vec<Box<RawValue>>,
    /// Set when `status` is `update_available`.
    #[serde(default)]
    pub update: Option<UpdateOffer>,
    /// Set when `status` is `not_entitled`.
    #[serde(default)]
    pub entitlement: Option<DeviceEntitlement>,
    /// Until when the unit gets security updates, when the server says.
    /// Informational: an answer whose `security_support` cannot be read is
    /// still accepted, without it, so it never stops an update.
    #[serde(
        default,
        deserialize_with = "lenient_security_support",
        skip_serializing_if = "Option::is_none"
    )]
    pub security_support: Option<SecuritySupport>,
}

/// The end of a unit's security support period, as the server announces
/// it in the check answer (untrusted: shown to the owner, never used to
/// decide anything).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SecuritySupport {
    /// The last day of security support, as the server writes it
    /// (`2031-06-30`); read it as a date with [`SecuritySupport::ends_date`].
    pub ends: String,
    /// A text for the owner, present when the end is near.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warning: Option<String>,
}

impl SecuritySupport {
    /// [`SecuritySupport::ends`] as a calendar date, if it is one
    /// (`YYYY-MM-DD`).
    pub fn ends_date(&self) -> Option<time::Date> {
        let format = time::macros::format_description!("[year]-[month]-[day]");
        time::Date::parse(&self.ends, &format).ok()
    }
}

/// `security_support` if it reads as one; `None` for `null` or anything
/// else, so a server's mistake in an informational field costs the device
/// the information only.
fn lenient_security_support<'de, D>(d: D) -> Result<Option<SecuritySupport>, D::Error>
where
    D: serde::Deserializer<'de>,
{
    let value = serde_json::Value::deserialize(d)?;
    Ok(serde_json::from_value(value).ok())
}

/// A progress report, as posted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReportRequest {
    /// The device's serial.
    pub serial: String,
    /// The release version the report is about.
    pub version: String,
    /// The channel of that release.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    /// The stage reached.
    pub stage: ReportStage,
    /// Why it failed or was rolled back (snake_case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason_code: Option<String>,
    /// Free text (at most 1000 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Until when the owner postponed the release (RFC 3339); sent with
    /// stage `postponed` only.
    #[serde(
        default,
        with = "time::serde::rfc3339::option",
        skip_serializing_if = "Option::is_none"
    )]
    pub postponed_until: Option<time::OffsetDateTime>,
}

impl ReportRequest {
    /// The wire form of a queued report from device `serial`.
    pub fn from_queued(serial: &str, r: &QueuedReport) -> Self {
        ReportRequest {
            serial: serial.to_owned(),
            version: r.version.to_string(),
            channel: r.channel.clone(),
            stage: r.stage,
            reason_code: r.reason_code.clone(),
            detail: r.detail.clone(),
            postponed_until: r.postponed_until,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_answer_keeps_envelopes_byte_exact_and_ignores_unknown_fields() {
        let body = br#"{"status":"update_available","poll_after_secs":60,"future":1,
            "root_chain":[{"b": 1,  "a":2}],
            "update":{"version":"2.1.0","channel":"stable","stepping_stone":false,
              "manifest":{"payload":"x",  "z":[1]},"images":[{"name":"f","target":"rootfs",
              "length":3,"sha256":"ab","url":"/v1/images/ab","extra":true}],
              "entitlement":{"code":"in_production","summary":"Free."}},"entitlement":null}"#;
        let r: CheckResponse = serde_json::from_slice(body).unwrap();
        assert_eq!(r.status, CheckStatus::UpdateAvailable);
        assert_eq!(r.root_chain[0].get(), r#"{"b": 1,  "a":2}"#);
        let u = r.update.unwrap();
        assert_eq!(u.manifest.get(), r#"{"payload":"x",  "z":[1]}"#);
        assert_eq!(u.images[0].url, "/v1/images/ab");
        assert!(r.entitlement.is_none());
    }

    #[test]
    fn report_request_uses_the_server_stage_names() {
        let r = ReportRequest {
            serial: "SN-1".into(),
            version: "2.1.0".into(),
            channel: None,
            stage: ReportStage::RolledBack,
            reason_code: Some("health_check_failed".into()),
            detail: None,
            postponed_until: None,
        };
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["stage"], "rolled_back");
        assert!(v.get("channel").is_none());
        assert!(v.get("postponed_until").is_none());
    }

    #[test]
    fn a_postponed_report_carries_its_date_as_rfc3339() {
        let mut q = QueuedReport::new(
            "2.1.0".parse().unwrap(),
            ReportStage::Postponed,
            time::macros::datetime!(2026-06-01 12:00 UTC),
        );
        q.postponed_until = Some(time::macros::datetime!(2026-07-01 0:00 UTC));
        let v = serde_json::to_value(ReportRequest::from_queued("SN-1", &q)).unwrap();
        assert_eq!(v["stage"], "postponed");
        assert_eq!(v["postponed_until"], "2026-07-01T00:00:00Z");
        let q = QueuedReport::new(
            "2.1.0".parse().unwrap(),
            ReportStage::OptedOut,
            time::macros::datetime!(2026-06-01 12:00 UTC),
        );
        let v = serde_json::to_value(ReportRequest::from_queued("SN-1", &q)).unwrap();
        assert_eq!(v["stage"], "opted_out");
        assert!(v.get("postponed_until").is_none());
    }

    #[test]
    fn security_support_is_read_when_present_and_never_fails_the_answer() {
        let base = r#"{"status":"up_to_date","poll_after_secs":60"#;
        let r: CheckResponse = serde_json::from_str(&format!("{base}}}")).unwrap();
        assert_eq!(r.security_support, None);

        let r: CheckResponse = serde_json::from_str(&format!(
            r#"{base},"security_support":{{"ends":"2031-06-30","warning":"Ends soon."}}}}"#
        ))
        .unwrap();
        let s = r.security_support.unwrap();
        assert_eq!(s.ends, "2031-06-30");
        assert_eq!(s.warning.as_deref(), Some("Ends soon."));
        assert_eq!(s.ends_date(), Some(time::macros::date!(2031 - 06 - 30)));

        let r: CheckResponse = serde_json::from_str(&format!(
            r#"{base},"security_support":{{"ends":"2031-06-30"}}}}"#
        ))
        .unwrap();
        assert_eq!(r.security_support.unwrap().warning, None);

        // Malformed: the answer still parses, without the field.
        for bad in [
            r#"null"#,
            r#""2031-06-30""#,
            r#"{"warning":"x"}"#,
            r#"{"ends":5}"#,
        ] {
            let r: CheckResponse =
                serde_json::from_str(&format!(r#"{base},"security_support":{bad}}}"#)).unwrap();
            assert_eq!(r.security_support, None, "{bad}");
        }
        let odd = SecuritySupport {
            ends: "end of 2031".into(),
            warning: None,
        };
        assert_eq!(odd.ends_date(), None);
    }
}
