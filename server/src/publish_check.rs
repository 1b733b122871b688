//! The publish check: may this signed manifest become a release?
//!
//! The server runs the client library's engine with the trust root it was
//! configured with, for the product line the release is submitted to. It
//! checks what can be checked without a device (signatures and threshold,
//! product line, format, expiry); per-device checks (hardware id, rollback,
//! upgrade path) happen on each device, which trusts nothing the server
//! says beyond the signed bytes.
//!
//! This module must never accept a manifest the engine rejected, and never
//! re-serialise the payload: the envelope is stored exactly as submitted.

use firmup_client::{Clock, Result, TrustedRoot, UpdatePlan, VerifyRequest, verify_manifest};
use time::OffsetDateTime;

/// Verifies `envelope` for publication under `product_line` at `now`.
pub fn check_for_publish(
    root: &TrustedRoot,
    product_line: &str,
    envelope: &[u8],
    now: OffsetDateTime,
) -> Result<UpdatePlan> {
    let request = VerifyRequest::for_product_line(product_line, Clock::Trusted(now));
    verify_manifest(root, &request, envelope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use firmup_fixtures::release::FIXTURE_NOW;
    use firmup_fixtures::{ReleaseBuilder, RootBuilder};

    fn root() -> TrustedRoot {
        TrustedRoot::from_pinned(&RootBuilder::standard().build()).unwrap()
    }

    #[test]
    fn accepts_a_release_signed_by_the_line_keys() {
        let r = ReleaseBuilder::standard().build();
        let plan = check_for_publish(&root(), "encoders", &r.envelope, FIXTURE_NOW).unwrap();
        assert_eq!(plan.manifest.version, semver::Version::new(2, 1, 0));
        assert_eq!(plan.payload, r.manifest.to_payload().unwrap());
    }

    #[test]
    fn refuses_a_release_submitted_under_another_line() {
        let r = ReleaseBuilder::standard().build();
        let err = check_for_publish(&root(), "decoders", &r.envelope, FIXTURE_NOW).unwrap_err();
        assert_eq!(err.code(), "threshold_not_met");
    }

    #[test]
    fn refuses_an_undelegated_line() {
        let r = ReleaseBuilder::standard().build();
        let err = check_for_publish(&root(), "batteries", &r.envelope, FIXTURE_NOW).unwrap_err();
        assert_eq!(err.code(), "no_delegation");
    }
}
