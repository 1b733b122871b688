//! Every error code the server answers with: the one list.
//!
//! Handlers name their codes where they fail (`AppError::not_found(
//! "unknown_model", ...)`); this list is what those names are checked
//! against. In debug builds an answer with a code missing here panics (so
//! any test that reaches it fails), a test scans the sources for codes
//! missing here, and another checks that each code here is in docs/API.md
//! and in the served OpenAPI document, whose error schema lists them all.

/// One error code: its name, the HTTP status it comes with, and what it
/// means.
#[derive(Debug, Clone, Copy)]
pub struct Code {
    /// The stable code.
    pub code: &'static str,
    /// The HTTP status.
    pub status: u16,
    /// What it means, in a few words.
    pub meaning: &'static str,
}

const fn c(code: &'static str, status: u16, meaning: &'static str) -> Code {
    Code {
        code,
        status,
        meaning,
    }
}

/// Every code, by status.
pub const CODES: &[Code] = &[
    // 400: the request must change.
    c(
        "invalid_json",
        400,
        "the body is not JSON of the expected shape",
    ),
    c("invalid_path", 400, "a path parameter is malformed"),
    c("invalid_query", 400, "a query parameter is malformed"),
    c(
        "invalid_name",
        400,
        "a name is not 1-128 of letters, digits, `-_.+`",
    ),
    c(
        "invalid_version",
        400,
        "not a semantic version of at most 64 characters",
    ),
    c("invalid_sha256", 400, "not 64 lowercase hex digits"),
    c("invalid_date", 400, "not a `YYYY-MM-DD` date"),
    c("invalid_period", 400, "an end date before its start"),
    c(
        "invalid_kind",
        400,
        "an unknown product line or contract kind",
    ),
    c("invalid_warranty", 400, "a warranty outside 0-600 months"),
    c(
        "invalid_support_period",
        400,
        "a support period outside 1-600 months, or a bad justification",
    ),
    c(
        "invalid_postponed_until",
        400,
        "`postponed_until` missing, not RFC 3339, or without stage `postponed`",
    ),
    c("invalid_expiry", 400, "a token expiry outside 1-3650 days"),
    c(
        "invalid_display_name",
        400,
        "a display name that is empty, too long or holds control characters",
    ),
    c(
        "invalid_service_class",
        400,
        "a service class other than `repair` or `exchange`",
    ),
    c(
        "invalid_rma",
        400,
        "an RMA number not of the form RMA-2026-000123",
    ),
    c(
        "invalid_customer",
        400,
        "a customer name that is empty, too long or holds control characters",
    ),
    c(
        "invalid_email",
        400,
        "an email address that is empty, too long or not shaped like one",
    ),
    c(
        "invalid_phone",
        400,
        "a phone number with characters other than digits, spaces and + - ( ) . /",
    ),
    c(
        "invalid_fault",
        400,
        "a fault description that is empty, too long or holds control characters",
    ),
    c(
        "invalid_note",
        400,
        "a note that is empty, too long or holds control characters",
    ),
    c(
        "invalid_tracking",
        400,
        "a carrier tracking number that is empty, too long, or given with another state than shipped",
    ),
    c("invalid_state", 400, "an RMA state that does not exist"),
    c(
        "invalid_verification_code",
        400,
        "a verification code that is not 6-64 letters and digits",
    ),
    c(
        "invalid_cause",
        400,
        "a fault cause the coverage decision does not know",
    ),
    c(
        "invalid_part",
        400,
        "a part name that is empty, too long or holds control characters",
    ),
    c(
        "invalid_label",
        400,
        "a token label that is empty, too long or holds control characters",
    ),
    c(
        "invalid_reason",
        400,
        "a reason that is empty, too long or holds control characters",
    ),
    c(
        "invalid_detail",
        400,
        "a report detail that is too long or holds control characters",
    ),
    c(
        "detail_too_long",
        400,
        "a report detail over 1000 characters",
    ),
    c(
        "invalid_reason_code",
        400,
        "a reason code that is not snake_case of at most 64 characters",
    ),
    c(
        "reason_code_required",
        400,
        "a failed or rolled-back report without its reason code",
    ),
    c("invalid_stage", 400, "an unknown report stage"),
    c("invalid_csv", 400, "a CSV file that cannot be read"),
    c(
        "duplicate_serial",
        400,
        "a serial listed twice in one request",
    ),
    c("duplicate_hw_id", 400, "a hardware id listed twice"),
    c(
        "duplicate_contract",
        400,
        "a contract id listed twice in one import",
    ),
    c(
        "hw_ids_required",
        400,
        "a hardware model without hardware ids",
    ),
    c("missing_eol", 400, "an EOL change without the `eol` field"),
    c("no_devices", 400, "a provisioning request without devices"),
    c("no_sales", 400, "a sales import without dates of sale"),
    c(
        "serial_required",
        400,
        "a device token without the serial it is bound to",
    ),
    c(
        "serial_not_allowed",
        400,
        "a serial on a token that is not a device token",
    ),
    c(
        "unsupported_registration_bonus",
        400,
        "a registration bonus other than the server's rule",
    ),
    c(
        "incomplete_grant",
        400,
        "a download URL with only part of its grant",
    ),
    c(
        "invalid_content_length",
        400,
        "an upload whose Content-Length is not a number",
    ),
    c(
        "invalid_file_name",
        400,
        "an attachment's file name that is empty, too long, holds a path or control characters",
    ),
    c(
        "invalid_content_type",
        400,
        "an attachment's Content-Type that is not a media type",
    ),
    c(
        "length_mismatch",
        400,
        "an upload shorter or longer than its Content-Length",
    ),
    c(
        "upload_interrupted",
        400,
        "an upload whose body stopped before its end",
    ),
    c("unreadable_body", 400, "a body that could not be read"),
    c(
        "multiple_authorization_headers",
        400,
        "more than one Authorization header",
    ),
    // 401: no valid credentials.
    c("missing_token", 401, "no `Authorization: Bearer` token"),
    c(
        "malformed_authorization",
        401,
        "an Authorization header that is not `Bearer TOKEN`",
    ),
    c("invalid_token", 401, "a token that is unknown or revoked"),
    c("expired_token", 401, "a token past its expiry"),
    c(
        "invalid_phases",
        400,
        "rollout phases that are not 1-100% and strictly increasing",
    ),
    c(
        "invalid_threshold",
        400,
        "a rollout failure threshold outside 0-100%",
    ),
    c(
        "invalid_min_sample",
        400,
        "a rollout minimum sample outside its range",
    ),
    c("invalid_soak", 400, "a rollout soak time outside its range"),
    c(
        "invalid_group_name",
        400,
        "a device group name that is not a plain name",
    ),
    c(
        "invalid_filter",
        400,
        "a device group filter that does not parse",
    ),
    c(
        "invalid_window",
        400,
        "a maintenance window that is malformed",
    ),
    c(
        "invalid_timezone",
        400,
        "a time zone the IANA database does not know",
    ),
    c("invalid_tag", 400, "a device tag that is not a plain name"),
    c("too_many_tags", 400, "more tags than a device may carry"),
    // 403: valid credentials that do not allow this.
    c(
        "wrong_role",
        403,
        "the token's role may not call this operation",
    ),
    c(
        "token_serial_mismatch",
        403,
        "a device token used for another serial",
    ),
    c(
        "not_entitled",
        403,
        "the device may not have the release it asked for by version",
    ),
    c(
        "invalid_grant",
        403,
        "a download grant that does not verify",
    ),
    c(
        "grant_expired",
        403,
        "a download grant past its expiry; check again for a fresh URL",
    ),
    c(
        "unreleased_image",
        403,
        "an image no release of the caller's may download",
    ),
    // 404: the thing named does not exist.
    c("unknown_route", 404, "no such endpoint"),
    c("unknown_product_line", 404, "no such product line"),
    c(
        "unknown_model",
        404,
        "no such model (422 when a body names it)",
    ),
    c(
        "unknown_serial",
        404,
        "no such device (422 when a body names it)",
    ),
    c(
        "device_erased",
        404,
        "the unit was erased at its owner's request; nothing is held under its serial",
    ),
    c(
        "unknown_owner",
        404,
        "no RMA names this email as the customer's",
    ),
    c(
        "unknown_release",
        404,
        "no such release (422 when a body names it)",
    ),
    c("unknown_image", 404, "no such image"),
    c("unknown_contract", 404, "no such contract"),
    c("unknown_licence", 404, "no such licence"),
    c("unknown_token", 404, "no such token"),
    c(
        "no_active_push",
        404,
        "the device has no active repair push",
    ),
    c("unknown_rma", 404, "no such RMA"),
    c("unknown_attachment", 404, "no such attachment of the RMA"),
    // 405.
    c(
        "method_not_allowed",
        405,
        "the endpoint does not take this method",
    ),
    c("unknown_rollout", 404, "no such rollout"),
    c(
        "unknown_group",
        404,
        "no such device group (422 when a body names it)",
    ),
    // 409: conflicts with what is stored.
    c("serial_exists", 409, "the serial is provisioned already"),
    c("contract_exists", 409, "the contract id exists"),
    c("licence_exists", 409, "the licence id exists"),
    c(
        "hw_id_in_use",
        409,
        "a hardware id devices use cannot be removed",
    ),
    c(
        "hw_id_taken",
        409,
        "the hardware id belongs to another model",
    ),
    c(
        "hw_incompatible",
        409,
        "the release asked for is not signed for the device's hardware",
    ),
    c(
        "hw_id_mismatch",
        409,
        "the device reports another hardware id than registered",
    ),
    c(
        "model_has_devices",
        409,
        "a model with devices cannot change its product line",
    ),
    c(
        "version_exists",
        409,
        "the version is published with another manifest",
    ),
    c(
        "version_precedence_conflict",
        409,
        "a version equal in precedence is published",
    ),
    c(
        "manifest_version_not_increasing",
        409,
        "manifest_version must increase",
    ),
    c(
        "root_version_exists",
        409,
        "the root version exists with other content",
    ),
    c("already_yanked", 409, "the release is yanked already"),
    c("not_yanked", 409, "the release is not yanked"),
    c(
        "release_not_yanked",
        409,
        "only a yanked release can be deleted; yank it first",
    ),
    c(
        "retention_active",
        409,
        "a security release inside its retention (ten years, or to the end of support) cannot be deleted",
    ),
    c(
        "release_yanked",
        409,
        "a yanked release cannot be changed, promoted or pushed",
    ),
    c(
        "push_exists",
        409,
        "the device has an active repair push already",
    ),
    c(
        "rma_open",
        409,
        "the unit has an open RMA; close or cancel it before erasing the unit",
    ),
    c(
        "rma_state_forbidden",
        409,
        "an RMA state change the flow does not allow",
    ),
    c(
        "rma_finished",
        409,
        "an RMA whose unit has left the desk (shipped, closed or cancelled)",
    ),
    c(
        "coverage_not_decided",
        409,
        "a part or unit replacement before the RMA's coverage decision",
    ),
    c(
        "replacement_not_covered",
        409,
        "a whole-unit replacement the coverage decision does not cover",
    ),
    c("unit_replaced", 409, "a unit that another unit replaced"),
    c("already_registered", 409, "a unit registered already"),
    c(
        "replacement_in_use",
        409,
        "a replacement unit that is registered, under contract or licence, or has RMAs",
    ),
    c(
        "rollout_exists",
        409,
        "the release already has an active rollout",
    ),
    c(
        "rollout_finished",
        409,
        "the rollout is aborted or finished and changes no more",
    ),
    c(
        "rollout_paused",
        409,
        "the rollout is paused; resume it first",
    ),
    c("rollout_not_paused", 409, "only a paused rollout resumes"),
    c(
        "rollout_changed",
        409,
        "another change to the rollout won the race; look again",
    ),
    c("group_exists", 409, "a device group of that name exists"),
    c(
        "group_is_dynamic",
        409,
        "a dynamic group's members are who matches its filter",
    ),
    c(
        "group_in_use",
        409,
        "an active rollout is limited to the group",
    ),
    // 413.
    c(
        "body_too_large",
        413,
        "a request body over the endpoint's limit",
    ),
    c(
        "manifest_too_large",
        413,
        "a manifest envelope over its limit",
    ),
    c("root_too_large", 413, "a root document over its limit"),
    c("image_too_large", 413, "an image over `max_image_bytes`"),
    c(
        "attachment_too_large",
        413,
        "an RMA attachment over `max_attachment_bytes`",
    ),
    c(
        "too_many_devices",
        413,
        "more than 10 000 devices in one request",
    ),
    c(
        "too_many_sales",
        413,
        "more than 10 000 dates of sale in one request",
    ),
    // 415.
    c(
        "unsupported_media_type",
        415,
        "a JSON body sent without `Content-Type: application/json`",
    ),
    // 416.
    c("invalid_range", 416, "a bytes Range that cannot be parsed"),
    c("range_not_satisfiable", 416, "a Range past the image's end"),
    c(
        "multiple_ranges_unsupported",
        416,
        "more than one range in one Range header",
    ),
    c("multiple_range_headers", 416, "more than one Range header"),
    c(
        "too_many_serials",
        413,
        "more serials in one request than accepted",
    ),
    // 422: well-formed, refused on its merits.
    c(
        "paid_extension_window_closed",
        422,
        "a paid warranty extension requested over a month after the sale",
    ),
    c(
        "paid_extension_not_for_series",
        422,
        "a paid warranty extension for accessories or batteries",
    ),
    c(
        "paid_extension_of_replaced_unit",
        422,
        "a paid warranty extension dated before this unit replaced another",
    ),
    c(
        "push_wrong_product_line",
        422,
        "a push of a release of another product line",
    ),
    c(
        "push_wrong_channel",
        422,
        "a push of a release on a channel the device does not follow",
    ),
    c(
        "push_hw_incompatible",
        422,
        "a push of a release not signed for the device's hardware",
    ),
    c(
        "push_below_security_counter",
        422,
        "a push of a release below the device's anti-rollback counter",
    ),
    c(
        "push_not_newer",
        422,
        "a push of a release not newer than the device runs (a downgrade)",
    ),
    c(
        "push_nothing_newer",
        422,
        "a push of the newest release when none is newer for the device",
    ),
    c(
        "rma_other_device",
        422,
        "a push under an RMA of another unit",
    ),
    c(
        "no_contact_held",
        422,
        "no RMA of the unit holds a customer contact to correct",
    ),
    c(
        "registration_refused",
        422,
        "a serial and verification code that do not register a unit (unknown serial, no code on file or a wrong code alike)",
    ),
    c(
        "replacement_same_unit",
        422,
        "a unit named as its own replacement",
    ),
    c(
        "replacement_wrong_product_line",
        422,
        "a replacement unit of another product line",
    ),
    c(
        "image_digest_mismatch",
        422,
        "uploaded bytes whose sha256 is not the URL's",
    ),
    c(
        "attachment_digest_mismatch",
        422,
        "an attachment whose bytes do not hash to the sha256 given",
    ),
    c(
        "image_missing",
        422,
        "a manifest naming an image not uploaded yet",
    ),
    c(
        "invalid_manifest_version",
        422,
        "a manifest_version the database cannot hold",
    ),
    c(
        "no_trust_root",
        422,
        "the server has no trust root to verify against",
    ),
    c("not_software", 422, "a licence for a hardware device"),
    c(
        "hw_id_not_in_model",
        422,
        "a hardware id that is not one of the model's",
    ),
    c(
        "promotion_mismatch",
        422,
        "a promotion manifest that differs from the release beyond its channel",
    ),
    c(
        "support_period_too_short",
        422,
        "a support period under 60 months without a justification",
    ),
    c(
        "not_a_security_release",
        422,
        "a choice about automatic installation reported for a feature release",
    ),
    // 422: the verification engine's verdicts (`firmup_client::Error::code`).
    c("malformed", 422, "the envelope or document does not parse"),
    c(
        "unknown_payload_type",
        422,
        "an envelope of another payload type",
    ),
    c(
        "unsupported_spec_version",
        422,
        "a document of an unknown spec version",
    ),
    c("invalid_field", 422, "a field outside its rules"),
    c("no_signatures", 422, "an envelope without signatures"),
    c(
        "threshold_not_met",
        422,
        "fewer valid signatures than the threshold",
    ),
    c("weak_key", 422, "a key the engine refuses"),
    c("invalid_key", 422, "a key that does not parse"),
    c("no_delegation", 422, "no delegation for the product line"),
    c(
        "wrong_product_line",
        422,
        "a manifest of another product line",
    ),
    c("wrong_hardware", 422, "a manifest for other hardware"),
    c("wrong_channel", 422, "a manifest for another channel"),
    c("downgrade", 422, "a version older than the installed one"),
    c(
        "security_counter_rollback",
        422,
        "a security counter below the committed one",
    ),
    c(
        "manifest_replay",
        422,
        "a manifest_version not above the accepted one",
    ),
    c("expired", 422, "a document past its expiry"),
    c(
        "requires_version",
        422,
        "the upgrade path requires another installed version",
    ),
    c(
        "root_version_skip",
        422,
        "a root that does not follow the chain",
    ),
    c(
        "root_chain_too_long",
        422,
        "more roots than a chain may hold",
    ),
    c(
        "pinned_root_not_v1",
        422,
        "a pinned root that is not version 1",
    ),
    c(
        "release_notes_mismatch",
        422,
        "release notes that differ from the signed digest",
    ),
    c(
        "advisory_missing",
        422,
        "a security or mixed release without its advisory",
    ),
    c(
        "mixed_reason_missing",
        422,
        "a mixed release without the reason its fix could not ship alone",
    ),
    // 429.
    c(
        "rate_limited_token",
        429,
        "the token's request rate is over its limit",
    ),
    c(
        "rate_limited_address",
        429,
        "the address's request rate is over its limit",
    ),
    c(
        "rate_limited_registration",
        429,
        "too many owner registration attempts for the serial or from the address",
    ),
    c(
        "too_many_reports",
        429,
        "more reports about one release than a device may send",
    ),
    // 5xx: retry later.
    c("internal", 500, "a bug; the server log has the details"),
    c("unavailable", 503, "the database or storage is unavailable"),
    c(
        "request_timeout",
        503,
        "the call outlived `request_timeout_secs`",
    ),
];

/// Whether `code` is in [`CODES`].
pub fn is_known(code: &str) -> bool {
    CODES.iter().any(|c| c.code == code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_and_have_error_statuses() {
        let mut seen = std::collections::HashSet::new();
        for c in CODES {
            assert!(seen.insert(c.code), "{} listed twice", c.code);
            assert!(
                c.code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
                "{}",
                c.code
            );
            assert!((400..600).contains(&c.status), "{}", c.code);
            assert!(!c.meaning.is_empty(), "{}", c.code);
        }
    }

    /// Scans the server's sources for the codes handlers pass to
    /// `AppError` (its constructors, `code: "..."` fields and the text
    /// checks) and checks each is listed.
    #[test]
    fn every_code_in_the_sources_is_listed() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let patterns = [
            r#"(?s)(?:bad_request|unauthorized|forbidden|not_found|conflict|unprocessable|unsatisfiable|too_many)\(\s*"([a-z0-9_]+)""#,
            r#"code:\s*"([a-z0-9_]+)""#,
            r#"(?s)check_text\(\s*"([a-z0-9_]+)""#,
        ]
        .map(|p| regex::Regex::new(p).unwrap());
        let refusals =
            regex::Regex::new(r#"(?s)return Err\(Refusal \{\s*code:\s*"([a-z0-9_]+)""#).unwrap();
        let mut found = 0;
        let mut stack = vec![src];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                    continue;
                }
                if path.extension().is_none_or(|e| e != "rs") {
                    continue;
                }
                let text = std::fs::read_to_string(&path).unwrap();
                // Tests name codes they expect, not codes the server sends.
                let text = text.split("#[cfg(test)]").next().unwrap();
                // The warranty module's `code:` fields are mostly decision
                // codes (like entitlement's); only the refusals it returns
                // as errors reach an answer.
                let patterns = if path.ends_with("warranty.rs") {
                    std::slice::from_ref(&refusals)
                } else {
                    &patterns[..]
                };
                for re in patterns {
                    for cap in re.captures_iter(text) {
                        found += 1;
                        assert!(
                            is_known(&cap[1]),
                            "{} answers with the code {:?}, which server/src/codes.rs does not \
                             list",
                            path.display(),
                            &cap[1]
                        );
                    }
                }
            }
        }
        assert!(found > 100, "found only {found} codes in the sources");
    }

    #[test]
    fn every_code_is_in_the_api_docs() {
        let api = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/API.md"),
        )
        .unwrap();
        let missing: Vec<&str> = CODES
            .iter()
            .map(|c| c.code)
            .filter(|c| !api.contains(&format!("`{c}`")))
            .collect();
        assert!(missing.is_empty(), "docs/API.md does not name {missing:?}");
    }
}
