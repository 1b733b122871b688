//! Verification codes: the code printed on a unit (from factory data) that
//! proves its owner holds it. Stored only as a hash, compared in constant
//! time.
//!
//! Codes are read off labels, so case, spaces and dashes do not matter:
//! `abcd-efgh-2345` is `ABCDEFGH2345`. The hash binds the serial, so one
//! code on two units hashes differently and a stored hash cannot be moved to
//! another serial.

use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;

use crate::error::{AppError, AppResult};

/// Fewest characters a code has, spaces and dashes left out.
pub const MIN_CODE_CHARS: usize = 6;
/// Most characters a code has, spaces and dashes left out.
pub const MAX_CODE_CHARS: usize = 64;

/// Most characters a code has as printed, spaces and dashes included.
pub const MAX_PRINTED_CHARS: usize = 128;

/// A verification code as printed, normalised: ASCII letters (upper case)
/// and digits, without the spaces and dashes that group them.
#[derive(Clone, PartialEq, Eq)]
pub struct VerificationCode(String);

impl std::fmt::Debug for VerificationCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // A secret: never in logs.
        f.write_str("VerificationCode(***)")
    }
}

impl VerificationCode {
    /// Parses a code as printed; 400 `invalid_verification_code` unless it
    /// is 6-64 letters and digits once spaces and dashes are left out.
    pub fn parse(value: &str) -> AppResult<Self> {
        let code: String = value
            .get(..value.len().min(MAX_PRINTED_CHARS + 1))
            .unwrap_or(value)
            .chars()
            .filter(|c| *c != ' ' && *c != '-')
            .map(|c| c.to_ascii_uppercase())
            .collect();
        if value.len() > MAX_PRINTED_CHARS
            || !(MIN_CODE_CHARS..=MAX_CODE_CHARS).contains(&code.len())
            || !code.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(AppError::bad_request(
                "invalid_verification_code",
                format!(
                    "a verification code is {MIN_CODE_CHARS}-{MAX_CODE_CHARS} letters and digits \
                     (spaces and dashes are ignored; at most {MAX_PRINTED_CHARS} characters in \
                     all), as printed on the unit's label"
                ),
            ));
        }
        Ok(VerificationCode(code))
    }

    /// The stored form for the unit `serial`: hex sha256 over a domain
    /// separator, the serial and the code.
    pub fn hash_for(&self, serial: &str) -> String {
        let mut h = Sha256::new();
        h.update(b"firmup verification code v1\0");
        h.update(serial.as_bytes());
        h.update(b"\0");
        h.update(self.0.as_bytes());
        hex::encode(h.finalize())
    }

    /// Whether this is the code whose hash for `serial` is `stored`, in
    /// time that does not depend on where the two differ.
    pub fn matches(&self, serial: &str, stored: &str) -> bool {
        let ours = self.hash_for(serial);
        ours.len() == stored.len() && bool::from(ours.as_bytes().ct_eq(stored.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_spaces_and_dashes_do_not_matter() {
        let a = VerificationCode::parse("abcd-efgh 2345").unwrap();
        let b = VerificationCode::parse("ABCDEFGH2345").unwrap();
        assert_eq!(a, b);
        assert!(a.matches("SN-1", &b.hash_for("SN-1")));
    }

    #[test]
    fn the_hash_binds_the_serial_and_the_code() {
        let code = VerificationCode::parse("ABCDEFGH2345").unwrap();
        let stored = code.hash_for("SN-1");
        assert!(code.matches("SN-1", &stored));
        assert!(!code.matches("SN-2", &stored));
        let other = VerificationCode::parse("ABCDEFGH2346").unwrap();
        assert!(!other.matches("SN-1", &stored));
        assert!(!code.matches("SN-1", ""));
        assert!(!code.matches("SN-1", &stored[..63]));
        assert_eq!(stored.len(), 64);
        assert!(!stored.contains("ABCDEFGH2345"));
        assert_eq!(format!("{code:?}"), "VerificationCode(***)");
    }

    #[test]
    fn short_long_and_odd_codes_are_refused() {
        for bad in [
            "",
            "AB-CD",
            "ABCDE",
            &"A".repeat(65),
            "ABCDEF!",
            "ÄBCDEFG",
            "ABC\tDEF",
            &format!("ABCDEF{}", "-".repeat(123)),
        ] {
            let e = VerificationCode::parse(bad).unwrap_err();
            assert_eq!(e.code(), "invalid_verification_code", "{bad:?}");
        }
        assert!(VerificationCode::parse("ABCDEF").is_ok());
        assert!(VerificationCode::parse(&"9".repeat(64)).is_ok());
    }
}
