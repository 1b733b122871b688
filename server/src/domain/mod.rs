//! The domain layer: the types that describe the business and that the
//! other layers share (the database layer reads and writes them, the
//! policy modules judge them, handlers answer with them).
//!
//! - [`roles`]: roles, the authenticated caller and the audit actor;
//! - [`facts`]: what the entitlement rules know about one device;
//! - [`catalogue`]: the catalogue the update check reads;
//! - [`seen`]: what a device reported in a check (the last-seen record);
//! - [`rma`]: the repair desk's RMA numbers and states;
//! - [`rollout`]: staged rollouts: phases, membership by hash, the rules
//!   that pause and advance them;
//! - [`group`]: device groups and the filter language of dynamic ones;
//! - [`window`]: maintenance windows, weekly schedules in a time zone;
//! - [`privacy`]: pseudonyms of erased units, retention periods, what logs
//!   may carry;
//! - [`url`]: database URLs as they may be shown;
//! - [`verification`]: the verification codes printed on units, hashed;
//! - this module: parsed input types ("parse, don't validate"): a handler
//!   turns raw strings into these once, and everything past it can rely
//!   on them.
//!
//! This layer names nothing of the server but its error type
//! ([`crate::error`]): no database, no caches, no HTTP state.

pub mod catalogue;
pub mod facts;
pub mod group;
pub mod privacy;
pub mod rma;
pub mod roles;
pub mod rollout;
pub mod seen;
pub mod support;
pub mod url;
pub mod verification;
pub mod window;

use std::fmt;

use crate::error::{AppError, AppResult};

/// A name as used for serials, product lines, models, hardware ids and
/// channels: 1-128 characters of letters, digits, '-', '_', '.', '+', never
/// a path. The same rule as manifest names, so anything that appears in a
/// manifest can appear here.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(transparent)]
pub struct Name(String);

impl Name {
    /// Parses `value` for the field `field` (used in the error message).
    pub fn parse(field: &'static str, value: &str) -> AppResult<Name> {
        firmup_client::manifest::check_name(field, value)
            .map_err(|e| AppError::bad_request("invalid_name", e.to_string()))?;
        Ok(Name(value.to_string()))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The owned string.
    pub fn into_string(self) -> String {
        self.0
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Longest version accepted from a client, in characters.
pub const MAX_VERSION_CHARS: usize = 64;

/// Parses a semver version from a request field (at most
/// [`MAX_VERSION_CHARS`] characters).
pub fn parse_version(field: &'static str, value: &str) -> AppResult<semver::Version> {
    if value.chars().count() > MAX_VERSION_CHARS {
        return Err(AppError::bad_request(
            "invalid_version",
            format!("{field} is longer than {MAX_VERSION_CHARS} characters"),
        ));
    }
    value.parse().map_err(|e| {
        AppError::bad_request(
            "invalid_version",
            format!("{field} {value:?} is not a semantic version (like 2.1.0): {e}"),
        )
    })
}

/// Whether `c` may not appear in text a person reads in a log, a terminal
/// or a web page: control characters (NUL, CR, LF, ESC of ANSI sequences,
/// C1) and the bidirectional overrides and isolates that make text display
/// differently from what it is (CVE-2021-42574). `multiline` allows LF and
/// tab.
fn forbidden_char(c: char, multiline: bool) -> bool {
    if multiline && matches!(c, '\n' | '\t') {
        return false;
    }
    c.is_control() || matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
}

/// Checks free text (a display name, label, reason or detail): trimmed, 1
/// to `max_chars` characters, no control characters or bidi overrides.
/// Refusals are 400 with `code`.
pub fn check_text<'a>(
    code: &'static str,
    field: &str,
    value: &'a str,
    max_chars: usize,
    multiline: bool,
) -> AppResult<&'a str> {
    let trimmed = value.trim();
    if trimmed.is_empty() || trimmed.chars().count() > max_chars {
        return Err(AppError::bad_request(
            code,
            format!("{field} must be 1-{max_chars} characters"),
        ));
    }
    if let Some(c) = trimmed.chars().find(|&c| forbidden_char(c, multiline)) {
        return Err(AppError::bad_request(
            code,
            format!(
                "{field} contains the control or direction character U+{:04X}; send plain text",
                c as u32
            ),
        ));
    }
    Ok(trimmed)
}

/// Parses a sha256 hex digest from a path segment.
pub fn parse_sha256(value: &str) -> AppResult<firmup_client::Sha256Digest> {
    value.parse().map_err(|_| {
        AppError::bad_request(
            "invalid_sha256",
            format!("{value:?} is not a sha256 digest (64 lowercase hex digits)"),
        )
    })
}

/// Deserialises a whole number that JSON may spell `2` or `2.0`.
///
/// JSON has one number type, and JSON Schema counts `2.0` as an integer;
/// some encoders write whole numbers that way. serde's integer types refuse
/// it, so the API's integer fields take it through this. Fractions, and
/// numbers outside the field's type, are still refused.
pub fn whole_number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::Deserialize as _;
    use serde::de::Error as _;
    let n = serde_json::Number::deserialize(deserializer)?;
    let whole = match (n.as_u64(), n.as_f64()) {
        (Some(u), _) => Some(u),
        // 2^64 is the first whole f64 outside u64; below it `as` is exact
        // for whole values.
        (None, Some(f)) if f.fract() == 0.0 && (0.0..18_446_744_073_709_551_616.0).contains(&f) => {
            Some(f as u64)
        }
        _ => None,
    };
    whole
        .and_then(|u| T::try_from(u).ok())
        .ok_or_else(|| D::Error::custom(format!("{n} is not a whole number in range")))
}

/// [`whole_number`] for an optional field (`null` or absent is `None`).
pub fn optional_whole_number<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::Deserialize as _;
    #[derive(serde::Deserialize)]
    struct Whole<T: TryFrom<u64>>(#[serde(deserialize_with = "whole_number")] T);
    Ok(Option::<Whole<T>>::deserialize(deserializer)?.map(|w| w.0))
}

/// [`whole_number`] for the values of an optional map (`{"EU": 24.0}`).
pub fn optional_whole_number_map<'de, D, T>(
    deserializer: D,
) -> Result<Option<std::collections::BTreeMap<String, T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<u64>,
{
    use serde::Deserialize as _;
    #[derive(serde::Deserialize)]
    struct Whole<T: TryFrom<u64>>(#[serde(deserialize_with = "whole_number")] T);
    Ok(
        Option::<std::collections::BTreeMap<String, Whole<T>>>::deserialize(deserializer)?
            .map(|m| m.into_iter().map(|(k, w)| (k, w.0)).collect()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_refuses_controls_escapes_and_bidi_overrides() {
        for bad in [
            "a\0b",
            "line\r\nInjected: yes",
            "\u{1b}[31mred",
            "evil\u{202E}txt.exe",
            "iso\u{2066}late",
            "c1\u{9b}x",
        ] {
            let e = check_text("invalid_label", "label", bad, 200, false).unwrap_err();
            assert_eq!(e.code(), "invalid_label", "{bad:?}");
        }
        assert_eq!(
            check_text("c", "f", "  Zoë's encoder  ", 200, false).unwrap(),
            "Zoë's encoder"
        );
        assert!(check_text("c", "f", "two\nlines\tok", 200, true).is_ok());
        assert!(check_text("c", "f", "two\nlines", 200, false).is_err());
        // Characters, not bytes.
        assert!(check_text("c", "f", &"é".repeat(200), 200, false).is_ok());
        assert!(check_text("c", "f", &"é".repeat(201), 200, false).is_err());
    }

    #[test]
    fn long_versions_are_refused_without_echoing_them() {
        let long = format!("1.0.0-{}", "a".repeat(2_000_000));
        let e = parse_version("current_version", &long).unwrap_err();
        assert_eq!(e.code(), "invalid_version");
        assert!(e.to_string().len() < 200, "{e}");
        assert!(parse_version("v", &format!("1.0.0-{}", "a".repeat(58))).is_ok());
    }

    #[derive(Debug, serde::Deserialize)]
    struct Numbers {
        #[serde(deserialize_with = "whole_number")]
        a: u32,
        #[serde(default, deserialize_with = "optional_whole_number")]
        b: Option<u64>,
    }

    #[test]
    fn whole_numbers_may_be_spelled_as_floats() {
        let n: Numbers = serde_json::from_str(r#"{"a": 2.0, "b": 7}"#).unwrap();
        assert_eq!((n.a, n.b), (2, Some(7)));
        let n: Numbers = serde_json::from_str(r#"{"a": 3, "b": null}"#).unwrap();
        assert_eq!((n.a, n.b), (3, None));
        let n: Numbers = serde_json::from_str(r#"{"a": 3}"#).unwrap();
        assert_eq!(n.b, None);
        for bad in [
            r#"{"a": 2.5}"#,
            r#"{"a": -1}"#,
            r#"{"a": 4294967296}"#,
            r#"{"a": 1e300}"#,
            r#"{"a": "2"}"#,
            r#"{"a": 1, "b": 0.5}"#,
        ] {
            assert!(serde_json::from_str::<Numbers>(bad).is_err(), "{bad}");
        }
    }
}
