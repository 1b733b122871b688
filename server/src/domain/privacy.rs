//! Personal data (docs/PRIVACY.md): the pseudonyms that replace an erased
//! unit's serial, the retention periods, and what logs may carry.
//!
//! A serial, an IP address, a device id and the firmware state linked to an
//! owner are personal data. Erasing a unit replaces its serial wherever
//! history is kept by a pseudonym, a keyed hash of the serial: the same
//! serial always gives the same pseudonym (so a second request is known
//! and fleet statistics stay whole), and without the server's key nobody
//! can tell which serial it was, even by trying every serial a vendor
//! ever printed.

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

/// What every pseudonym starts with: a reader of an audit record or a
/// report sees at once that the unit was erased.
pub const PSEUDONYM_PREFIX: &str = "erased-";

/// The text that replaces an erased owner's name, email and free text.
pub const ERASED: &str = "[erased]";

/// Makes pseudonyms with the server's pseudonym key. Replicas must share
/// the key; it never changes (a new key would give an erased unit a second
/// pseudonym).
#[derive(Clone)]
pub struct Pseudonymiser {
    key: [u8; 32],
}

impl std::fmt::Debug for Pseudonymiser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonymiser(<redacted>)")
    }
}

impl Pseudonymiser {
    /// With the 32-byte key.
    pub fn new(key: [u8; 32]) -> Self {
        Pseudonymiser { key }
    }

    /// The pseudonym of `serial`: `erased-` and 24 hex digits (96 bits) of
    /// HMAC-SHA256(key, serial). A valid serial itself, so the erased unit's
    /// row can still be looked up, counted and listed.
    pub fn pseudonym(&self, serial: &str) -> String {
        // HMAC accepts keys of any length; 32 bytes never fail.
        let mut mac = <Hmac<Sha256> as hmac::Mac>::new_from_slice(&self.key)
            .unwrap_or_else(|_| unreachable!("HMAC takes keys of any length"));
        mac.update(b"firmup serial pseudonym v1\0");
        mac.update(serial.as_bytes());
        let tag = mac.finalize().into_bytes();
        format!("{PSEUDONYM_PREFIX}{}", hex::encode(&tag[..12]))
    }

    /// Whether `serial` has the shape of a pseudonym (`erased-` and 24 hex
    /// digits). Only the shape: whether a unit was erased under it is the
    /// `erasures` table's to say.
    pub fn looks_like_pseudonym(serial: &str) -> bool {
        serial
            .strip_prefix(PSEUDONYM_PREFIX)
            .is_some_and(|h| h.len() == 24 && h.bytes().all(|b| b.is_ascii_hexdigit()))
    }

    /// `serial` as a log line may show it: itself when the operator chose
    /// `log_serials`, else its pseudonym (lines about one unit still
    /// correlate, and an operator holding the key can find them for a
    /// serial).
    pub fn for_log(&self, serial: &str, log_serials: bool) -> String {
        if log_serials {
            serial.to_owned()
        } else {
            self.pseudonym(serial)
        }
    }
}

/// How long personal data is kept (0: for ever). Config keys
/// `retention_*_days`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    /// Installation reports, by the time they were received.
    pub reports_days: u32,
    /// A device's check-in record (first and last seen, the release last
    /// offered), by its last check-in.
    pub check_ins_days: u32,
    /// The details of audit records (the record itself, who did what to
    /// which target when, is kept).
    pub audit_details_days: u32,
    /// The customer contact and fault text of RMAs closed or cancelled
    /// this long ago.
    pub rma_contacts_days: u32,
}

/// The path of a request as the access log shows it: every segment the
/// route template names `{serial}` (or `{email}`) is shown as the template
/// says, unless `log_serials`. `route` is the matched template
/// (`/v1/devices/{serial}/entitlement`), `None` for an unmatched path,
/// which is shown as its first two segments only (it may be anything).
pub fn path_for_log(route: Option<&str>, path: &str, log_serials: bool) -> String {
    if log_serials {
        return path.to_owned();
    }
    let Some(route) = route else {
        let kept: Vec<&str> = path.split('/').take(3).collect();
        let mut shown = kept.join("/");
        if path.split('/').count() > 3 {
            shown.push_str("/...");
        }
        return shown;
    };
    let template: Vec<&str> = route.split('/').collect();
    let segments: Vec<&str> = path.split('/').collect();
    if template.len() != segments.len() {
        return route.to_owned();
    }
    template
        .iter()
        .zip(&segments)
        .map(|(t, s)| {
            if matches!(*t, "{serial}" | "{email}") {
                *t
            } else {
                *s
            }
        })
        .collect::<Vec<_>>()
        .join("/")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudonyms_are_stable_keyed_and_serial_shaped() {
        let a = Pseudonymiser::new([7; 32]);
        let b = Pseudonymiser::new([8; 32]);
        assert_eq!(a.pseudonym("SN-1"), a.pseudonym("SN-1"));
        assert_ne!(a.pseudonym("SN-1"), a.pseudonym("SN-2"));
        assert_ne!(a.pseudonym("SN-1"), b.pseudonym("SN-1"));
        let p = a.pseudonym("SN-1");
        assert!(Pseudonymiser::looks_like_pseudonym(&p), "{p}");
        assert!(!Pseudonymiser::looks_like_pseudonym("SN-1"));
        assert!(!p.contains("SN-1"));
        crate::domain::Name::parse("serial", &p).expect("a pseudonym is a valid serial");
        assert_eq!(a.for_log("SN-1", true), "SN-1");
        assert_eq!(a.for_log("SN-1", false), p);
    }

    #[test]
    fn logged_paths_hide_serials_unless_configured() {
        let route = Some("/v1/devices/{serial}/entitlement");
        assert_eq!(
            path_for_log(route, "/v1/devices/SN-9/entitlement", false),
            "/v1/devices/{serial}/entitlement"
        );
        assert_eq!(
            path_for_log(route, "/v1/devices/SN-9/entitlement", true),
            "/v1/devices/SN-9/entitlement"
        );
        assert_eq!(
            path_for_log(Some("/v1/images/{sha256}"), "/v1/images/ab12", false),
            "/v1/images/ab12"
        );
        assert_eq!(path_for_log(None, "/v1/nope/SN-9/x", false), "/v1/nope/...");
        assert_eq!(path_for_log(None, "/healthz", false), "/healthz");
    }
}
