//! Parsed input types ("parse, don't validate"): a handler turns raw
//! strings into these once, and everything past it can rely on them.

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

/// Parses a semver version from a request field.
pub fn parse_version(field: &'static str, value: &str) -> AppResult<semver::Version> {
    value.parse().map_err(|e| {
        AppError::bad_request(
            "invalid_version",
            format!("{field} {value:?} is not a semantic version (like 2.1.0): {e}"),
        )
    })
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
