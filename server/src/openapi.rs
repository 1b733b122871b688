//! The served OpenAPI document: what the handlers' annotations describe,
//! completed by the rules that hold for every operation alike.
//!
//! Handlers annotate what is theirs: their bodies, their success statuses
//! and the errors only they give (404 `unknown_model`, 409 conflicts, 422
//! verdicts). What the layers around them add is written once, here, from
//! the same facts the layers act on:
//! - a secured operation answers 401 (with `WWW-Authenticate`) and 403;
//! - any parameter or JSON body can be malformed: 400;
//! - a JSON body can be too large or of another media type: 413, 415;
//! - the rate-limited routes answer 429 with `Retry-After`;
//! - everything but `/healthz` can meet an unavailable database: 503;
//! - path parameters are names, versions or digests: their patterns and
//!   lengths come from the parsers' own limits ([`crate::domain`]);
//! - `GET /v1/images/{sha256}` is served for HEAD too.
//!
//! It works on the JSON form of the document because the additions are
//! structural (statuses, parameter schemas) and the typed builder would
//! need a page per rule; the test suite checks the result against the
//! server's behaviour.

use serde_json::{Map, Value, json};

use crate::controllers::catalogue::product_lines::MAX_WARRANTY_MONTHS;
use crate::domain::MAX_VERSION_CHARS;

/// A name (serial, product line, model, hardware id, channel): the rule of
/// `firmup_client::manifest::check_name`, 1-128 characters, never `.` or `..`.
pub const NAME_PATTERN: &str = r"^(?!\.\.?$)[A-Za-z0-9._+-]{1,128}$";

/// A lowercase hex sha256 digest.
pub const SHA256_PATTERN: &str = "^[0-9a-f]{64}$";

/// A semantic version as the `semver` crate parses it (SemVer 2.0.0), with
/// numeric parts of at most 19 digits so that they fit in 64 bits.
pub const VERSION_PATTERN: &str = concat!(
    r"^(0|[1-9][0-9]{0,18})\.(0|[1-9][0-9]{0,18})\.(0|[1-9][0-9]{0,18})",
    r"(-(0|[1-9][0-9]{0,18}|[0-9]*[A-Za-z-][0-9A-Za-z-]*)(\.(0|[1-9][0-9]{0,18}|[0-9]*[A-Za-z-][0-9A-Za-z-]*))*)?",
    r"(\+[0-9A-Za-z-]+(\.[0-9A-Za-z-]+)*)?$"
);

/// A calendar date, `YYYY-MM-DD`.
pub const DATE_PATTERN: &str = r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])$";

/// Characters no text field may hold (see `domain::check_text`): C0 and C1
/// controls and the bidirectional overrides and isolates.
const FORBIDDEN: &str = r"\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069";
/// The same, for multi-line text, which may hold tabs and line feeds.
const FORBIDDEN_MULTILINE: &str = r"\x00-\x08\x0b-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069";

/// What a request field holds, and so its schema.
#[derive(Debug, Clone, Copy)]
enum Field {
    /// [`NAME_PATTERN`].
    Name,
    /// A list of names, at least one.
    Names,
    /// [`VERSION_PATTERN`].
    Version,
    /// `YYYY-MM-DD`, a real date.
    Date,
    /// Plain text of one line, 1 to n characters after trimming.
    Text(usize),
    /// Text that may hold line breaks and tabs, 1 to n characters.
    MultilineText(usize),
    /// A snake_case code, 1 to n characters.
    Code(usize),
    /// One of these strings.
    OneOf(&'static [&'static str]),
    /// A whole number from 0 to n.
    AtMost(u64),
    /// A whole number from 1 to n.
    OneTo(u64),
    /// A list of 1 to n items.
    Items(u64),
    /// A verification code as printed: letters, digits, spaces and dashes.
    VerificationCode,
    /// An RMA number ([`RMA_NUMBER_PATTERN`]).
    RmaNumber,
    /// An email address as the repair desk takes it.
    Email,
    /// A phone number: digits, spaces and `+ - ( ) . /`, 1 to 40.
    Phone,
    /// An object of region names to months (0 to the most a warranty has).
    MonthsByRegion,
    /// Anything: accepted and ignored.
    Ignored,
}

/// The request fields whose rules go beyond their Rust type, by schema and
/// property. The test below checks that every string field of a request
/// body is here, so a new field cannot be left undescribed.
const FIELDS: &[(&str, &str, Field)] = &[
    ("CatalogueImport", "licences", Field::Ignored),
    ("ChannelInput", "channel", Field::Name),
    ("CheckRequest", "serial", Field::Name),
    ("CheckRequest", "hw_id", Field::Name),
    ("CheckRequest", "current_version", Field::Version),
    ("CheckRequest", "channel", Field::Name),
    ("ContractInput", "id", Field::Name),
    (
        "ContractInput",
        "kind",
        Field::OneOf(&["service_contract", "warranty_extension"]),
    ),
    ("ContractInput", "starts", Field::Date),
    ("ContractInput", "ends", Field::Date),
    ("DeviceInput", "serial", Field::Name),
    ("DeviceInput", "model_id", Field::Name),
    ("DeviceInput", "hw_id", Field::Name),
    ("DeviceInput", "channel", Field::Name),
    ("DeviceInput", "verification_code", Field::VerificationCode),
    ("DeviceInput", "sale_date", Field::Date),
    ("DeviceInput", "region", Field::Name),
    ("RegistrationRequest", "serial", Field::Name),
    (
        "RegistrationRequest",
        "verification_code",
        Field::VerificationCode,
    ),
    ("EolInput", "eol", Field::Date),
    ("ImportLine", "id", Field::Name),
    ("ImportLine", "name", Field::Text(200)),
    (
        "ImportLine",
        "kind",
        Field::OneOf(&["hardware", "software", "accessory"]),
    ),
    (
        "ImportLine",
        "warranty_months",
        Field::AtMost(MAX_WARRANTY_MONTHS as u64),
    ),
    ("ImportModel", "id", Field::Name),
    ("ImportModel", "name", Field::Text(200)),
    ("ImportModel", "hw_ids", Field::Names),
    ("ImportModel", "launched", Field::Date),
    ("ImportModel", "eol", Field::Date),
    ("LicenceInput", "id", Field::Name),
    ("LicenceInput", "starts", Field::Date),
    ("LicenceInput", "ends", Field::Date),
    ("ModelInput", "product_line", Field::Name),
    ("ModelInput", "name", Field::Text(200)),
    ("ModelInput", "hw_ids", Field::Names),
    ("ModelInput", "launched", Field::Date),
    ("ModelInput", "eol", Field::Date),
    ("NewToken", "label", Field::Text(200)),
    ("NewToken", "serial", Field::Name),
    (
        "NewToken",
        "expires_in_days",
        Field::OneTo(crate::tokens::MAX_EXPIRES_IN_DAYS as u64),
    ),
    ("ProductLineInput", "name", Field::Text(200)),
    (
        "ProductLineInput",
        "kind",
        Field::OneOf(&["hardware", "software"]),
    ),
    (
        "ProductLineInput",
        "warranty_months",
        Field::AtMost(MAX_WARRANTY_MONTHS as u64),
    ),
    (
        "ProvisionRequest",
        "devices",
        Field::Items(crate::provisioning::MAX_DEVICES_PER_REQUEST as u64),
    ),
    (
        "ProductLineInput",
        "service_class",
        Field::OneOf(&["repair", "exchange"]),
    ),
    (
        "ProductLineInput",
        "warranty_by_region",
        Field::MonthsByRegion,
    ),
    ("PushRequest", "version", Field::Version),
    ("PushRequest", "product_line", Field::Name),
    ("PushRequest", "channel", Field::Name),
    ("PushRequest", "rma", Field::RmaNumber),
    (
        "PushRequest",
        "reason",
        Field::MultilineText(crate::controllers::repair::pushes::MAX_REASON_CHARS),
    ),
    ("OpenRequest", "serial", Field::Name),
    (
        "OpenRequest",
        "fault",
        Field::MultilineText(crate::controllers::repair::rmas::MAX_FAULT_CHARS),
    ),
    ("OpenRequest", "fault_on", Field::Date),
    ("OpenRequest", "received_on", Field::Date),
    (
        "OpenRequest",
        "tracking_in",
        Field::Text(crate::controllers::repair::rmas::MAX_SHORT_CHARS),
    ),
    (
        "Customer",
        "name",
        Field::Text(crate::controllers::repair::rmas::MAX_SHORT_CHARS),
    ),
    ("Customer", "email", Field::Email),
    ("Customer", "phone", Field::Phone),
    (
        "StateRequest",
        "state",
        Field::OneOf(&[
            "received",
            "diagnosing",
            "repairing",
            "testing",
            "shipped",
            "closed",
            "cancelled",
        ]),
    ),
    (
        "StateRequest",
        "note",
        Field::MultilineText(crate::controllers::repair::rmas::MAX_FAULT_CHARS),
    ),
    (
        "StateRequest",
        "tracking_out",
        Field::Text(crate::controllers::repair::rmas::MAX_SHORT_CHARS),
    ),
    (
        "TrackingRequest",
        "tracking_in",
        Field::Text(crate::controllers::repair::rmas::MAX_SHORT_CHARS),
    ),
    (
        "TrackingRequest",
        "tracking_out",
        Field::Text(crate::controllers::repair::rmas::MAX_SHORT_CHARS),
    ),
    (
        "CoverageRequest",
        "cause",
        Field::OneOf(&[
            "no_customer_fault",
            "transport_to_customer",
            "not_as_described",
            "human_damage",
            "unauthorised_modification",
            "return_transport_damage",
            "against_manual",
            "force_majeure",
            "serial_label_unreadable",
        ]),
    ),
    (
        "CoverageRequest",
        "part",
        Field::Text(crate::controllers::repair::rmas::MAX_SHORT_CHARS),
    ),
    (
        "PartRequest",
        "part",
        Field::Text(crate::controllers::repair::rmas::MAX_SHORT_CHARS),
    ),
    ("PartRequest", "replaced_on", Field::Date),
    ("ReplacementRequest", "serial", Field::Name),
    ("SaleInput", "sale_date", Field::Date),
    ("SaleInput", "region", Field::Name),
    ("SaleRecord", "serial", Field::Name),
    ("SaleRecord", "sale_date", Field::Date),
    ("SaleRecord", "region", Field::Name),
    (
        "SalesRequest",
        "sales",
        Field::Items(crate::provisioning::MAX_SALES_PER_REQUEST as u64),
    ),
    ("ReportRequest", "serial", Field::Name),
    ("ReportRequest", "version", Field::Version),
    ("ReportRequest", "channel", Field::Name),
    (
        "ReportRequest",
        "reason_code",
        Field::Code(crate::controllers::device::report::MAX_REASON_CODE),
    ),
    (
        "ReportRequest",
        "detail",
        Field::MultilineText(crate::controllers::device::report::MAX_DETAIL),
    ),
    (
        "YankRequest",
        "reason",
        Field::MultilineText(crate::controllers::release::yank::MAX_REASON),
    ),
];

fn text_schema(forbidden: &str, max: usize) -> Value {
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": max,
        "pattern": format!(r"^[^{forbidden}]*[^\s{forbidden}][^{forbidden}]*$"),
    })
}

impl Field {
    fn schema(self) -> Value {
        match self {
            Field::Name => name_schema(),
            Field::Names => json!({
                "type": "array", "items": name_schema(), "minItems": 1, "uniqueItems": true
            }),
            Field::Version => version_schema(),
            Field::Date => json!({ "type": "string", "format": "date" }),
            Field::Text(max) => text_schema(FORBIDDEN, max),
            Field::MultilineText(max) => text_schema(FORBIDDEN_MULTILINE, max),
            Field::Code(max) => json!({
                "type": "string", "pattern": "^[a-z][a-z0-9_]*$", "minLength": 1, "maxLength": max
            }),
            Field::OneOf(values) => json!({ "type": "string", "enum": values }),
            Field::AtMost(max) => json!({ "type": "integer", "minimum": 0, "maximum": max }),
            Field::OneTo(max) => json!({ "type": "integer", "minimum": 1, "maximum": max }),
            Field::Items(max) => json!({ "type": "array", "minItems": 1, "maxItems": max }),
            Field::VerificationCode => json!({
                "type": "string", "pattern": "^[A-Za-z0-9 -]*$",
                "minLength": crate::domain::verification::MIN_CODE_CHARS,
                "maxLength": crate::domain::verification::MAX_PRINTED_CHARS
            }),
            Field::RmaNumber => json!({
                "type": "string", "pattern": RMA_NUMBER_PATTERN, "minLength": 15, "maxLength": 21
            }),
            Field::Email => json!({
                "type": "string", "minLength": 3, "maxLength": 254,
                "pattern": r"^[!-?A-~]+@[!-~]*\.[!-~]*$"
            }),
            Field::Phone => json!({
                "type": "string", "minLength": 1, "maxLength": 40,
                "pattern": r"^[0-9+()./-][0-9 +()./-]*$"
            }),
            Field::MonthsByRegion => json!({
                "type": "object",
                "propertyNames": name_schema(),
                "additionalProperties": {
                    "type": "integer", "minimum": 0, "maximum": MAX_WARRANTY_MONTHS
                }
            }),
            Field::Ignored => json!({}),
        }
    }
}

/// Applies [`FIELDS`] to the component schemas: the rule replaces the
/// type's own schema, keeping its description, items and nullability.
fn describe_fields(doc: &mut Value) {
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    for (schema, property, field) in FIELDS {
        let Some(prop) = schemas
            .get_mut(*schema)
            .and_then(|s| s.pointer_mut(&format!("/properties/{property}")))
        else {
            panic!("the OpenAPI document has no {schema}.{property}");
        };
        let nullable = prop["type"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t == "null"));
        let mut rule = field.schema();
        if let Some(items) = prop.get("items").cloned()
            && rule.get("items").is_none()
            && !matches!(field, Field::Ignored)
        {
            rule["items"] = items;
        }
        if nullable && let Some(t) = rule.get("type").cloned() {
            rule["type"] = json!([t, "null"]);
        }
        if let Some(d) = prop.get("description").cloned() {
            rule["description"] = d;
        }
        if let Some(e) = prop.get("example").cloned() {
            rule["example"] = e;
        }
        *prop = rule;
    }
}

/// The error schema's `code` lists every code ([`crate::codes::CODES`])
/// with its status and meaning. A list in the description rather than an
/// `enum`: clients generated from this document must still read codes a
/// newer server adds.
fn list_codes(doc: &mut Value) {
    let Some(code) = doc.pointer_mut("/components/schemas/ErrorDetail/properties/code") else {
        panic!("the OpenAPI document has no ErrorDetail.code");
    };
    let mut text = String::from(
        "Stable machine-readable code. Codes never change meaning; new ones may be added. The codes:\n",
    );
    for c in crate::codes::CODES {
        text.push_str(&format!("\n- `{}` ({}): {}", c.code, c.status, c.meaning));
    }
    code["description"] = json!(text);
    code["pattern"] = json!("^[a-z][a-z0-9_]*$");
}

/// The JSON schema of a signed envelope, as published for second
/// implementations (docs/FORMATS.md).
const ENVELOPE_SCHEMA: &str = include_str!("../../docs/envelope.v1.schema.json");

/// Where envelopes travel: `(pointer to a schema in the document, kind)`.
const ENVELOPES: &[(&str, &str)] = &[
    (
        "/paths/~1v1~1trust~1roots/post/requestBody/content/application~1json/schema",
        "RootEnvelope",
    ),
    (
        "/paths/~1v1~1product-lines~1{line}~1releases/post/requestBody/content/application~1json/schema",
        "ManifestEnvelope",
    ),
    (
        "/paths/~1v1~1product-lines~1{line}~1releases~1{channel}~1{version}~1promote/post/requestBody/content/application~1json/schema",
        "ManifestEnvelope",
    ),
    (
        "/paths/~1v1~1product-lines~1{line}~1releases~1{channel}~1{version}~1manifest/get/responses/200/content/application~1json/schema",
        "ManifestEnvelope",
    ),
    (
        "/components/schemas/RootChain/properties/roots/items",
        "RootEnvelope",
    ),
    (
        "/components/schemas/CheckResponse/properties/root_chain/items",
        "RootEnvelope",
    ),
    (
        "/components/schemas/UpdateOffer/properties/manifest",
        "ManifestEnvelope",
    ),
];

/// Root and manifest bodies are signed envelopes: the document describes
/// them by the published envelope schema, with the payload type each
/// place takes, instead of a bare object.
fn describe_envelopes(doc: &mut Value) {
    let mut base: Value =
        serde_json::from_str(ENVELOPE_SCHEMA).expect("the envelope schema is JSON");
    if let Some(b) = base.as_object_mut() {
        b.remove("$schema");
        b.remove("$id");
    }
    base["properties"]["signatures"]["minItems"] = json!(1);
    base["properties"]["signatures"]["items"]["properties"]["keyid"] = json!({
        "type": "string",
        "pattern": SHA256_PATTERN,
        "description": "Hex SHA-256 of the signer's 32-byte public key."
    });
    for (kind, payload_type, what) in [
        (
            "ManifestEnvelope",
            "application/vnd.firmup.manifest.v1+json",
            "a release manifest (docs/manifest.v1.schema.json)",
        ),
        (
            "RootEnvelope",
            "application/vnd.firmup.root.v1+json",
            "a root document (docs/root.v1.schema.json)",
        ),
    ] {
        let mut schema = base.clone();
        schema["title"] = json!(kind);
        schema["description"] = json!(format!(
            "A signed envelope holding {what}, exactly as `firmup-signer` writes it. {}",
            base["description"].as_str().unwrap_or_default()
        ));
        schema["properties"]["payload_type"] = json!({ "type": "string", "enum": [payload_type] });
        doc["components"]["schemas"][kind] = schema;
    }
    for (pointer, kind) in ENVELOPES {
        let Some(at) = doc.pointer_mut(pointer) else {
            panic!("the OpenAPI document has nothing at {pointer}");
        };
        let description = at.get("description").cloned();
        *at = json!({ "$ref": format!("#/components/schemas/{kind}") });
        if let Some(d) = description {
            at["description"] = d;
        }
    }
}

/// A catalogue line of kind `accessory` is skipped after its id is checked
/// (accessories carry no firmware), so the rest of it is read for its shape
/// only: `ImportLine` is either a checked hardware or software line, or an
/// accessory line whose other fields have only their types.
fn describe_accessory_lines(doc: &mut Value, mut line: Value, model: Value) {
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    schemas.insert("AccessoryModel".into(), model);
    line["properties"]["id"] = name_schema();
    line["properties"]["kind"] = json!({ "type": "string", "enum": ["accessory"] });
    line["properties"]["models"]["items"] =
        json!({ "$ref": "#/components/schemas/AccessoryModel" });
    line["description"] = json!("An accessory line: skipped, after its id is checked.");
    schemas.insert("AccessoryLine".into(), line);
    let Some(checked) = schemas.get_mut("ImportLine") else {
        return;
    };
    checked["properties"]["kind"] = json!({ "type": "string", "enum": ["hardware", "software"] });
    let checked = checked.take();
    schemas.insert("CheckedLine".into(), checked);
    schemas.insert(
        "ImportLine".into(),
        json!({
            "description": "A product line: hardware or software lines are checked and stored; accessory lines are skipped.",
            "oneOf": [
                { "$ref": "#/components/schemas/CheckedLine" },
                { "$ref": "#/components/schemas/AccessoryLine" }
            ]
        }),
    );
}

/// Unsigned numbers: utoipa writes `format: int64` (or `int32`), which
/// tools read as a signed range; the server takes the whole unsigned one.
fn unsigned_ranges(value: &mut Value) {
    match value {
        Value::Object(map) => {
            let max = match map.get("format").and_then(Value::as_str) {
                Some("int64") => Some(u64::MAX),
                Some("int32") => Some(u64::from(u32::MAX)),
                _ => None,
            };
            if let Some(max) = max
                && map.get("minimum").and_then(Value::as_u64) == Some(0)
            {
                map.remove("format");
                map.entry("maximum").or_insert(json!(max));
            }
            map.values_mut().for_each(unsigned_ranges);
        }
        Value::Array(items) => items.iter_mut().for_each(unsigned_ranges),
        _ => {}
    }
}

/// The routes behind the rate limits ([`crate::ratelimit`]), as
/// `(method, path)`; the router applies the limits to the same groups.
pub const RATE_LIMITED: &[(&str, &str)] = &[
    ("post", "/v1/device/check"),
    ("post", "/v1/device/reports"),
    ("get", "/v1/images/{sha256}"),
    ("head", "/v1/images/{sha256}"),
];

/// Operations that never read the database.
const NO_DATABASE: &[(&str, &str)] = &[("get", "/healthz")];

const METHODS: &[&str] = &["get", "put", "post", "delete", "head", "patch"];

/// An RMA number, as [`crate::domain::rma::is_rma_number`] accepts it.
pub const RMA_NUMBER_PATTERN: &str = "^RMA-[0-9]{4}-[0-9]{6,12}$";

/// The schema of a named string.
pub fn name_schema() -> Value {
    json!({ "type": "string", "pattern": NAME_PATTERN, "minLength": 1, "maxLength": 128 })
}

/// The schema of a sha256 digest.
pub fn sha256_schema() -> Value {
    json!({ "type": "string", "pattern": SHA256_PATTERN, "minLength": 64, "maxLength": 64 })
}

/// The schema of an attachment's file name (`attachments::file_name`):
/// plain text of one line without `/` or `\`, and not `.` or `..`.
pub fn file_name_schema() -> Value {
    let no = format!(r"/\\{FORBIDDEN}");
    json!({
        "type": "string",
        "minLength": 1,
        "maxLength": crate::controllers::repair::attachments::MAX_FILE_NAME_CHARS,
        "pattern": format!(r"^(?!\.\.?$)[^{no}]*[^\s{no}][^{no}]*$"),
    })
}

/// The schema of a semantic version.
pub fn version_schema() -> Value {
    json!({ "type": "string", "pattern": VERSION_PATTERN, "minLength": 5, "maxLength": MAX_VERSION_CHARS })
}

/// The schema a query parameter of this name has, where its Rust type
/// (a string) says less than the handler checks.
fn query_parameter_schema(path: &str, name: &str) -> Option<Value> {
    match (path, name) {
        (_, "channel") => Some(name_schema()),
        (_, "fault_on") => Some(json!({ "type": "string", "format": "date" })),
        ("/v1/rmas", "model" | "serial") => Some(name_schema()),
        ("/v1/rollouts", "product_line") => Some(name_schema()),
        ("/v1/rollouts", "state") => {
            let one = format!(
                "(active|{})",
                crate::domain::rollout::RolloutState::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("|")
            );
            Some(json!({ "type": "string", "pattern": format!("^({one}(,{one})*)?$") }))
        }
        ("/v1/product-lines/{line}/releases", "rollout") => Some(json!({
            "type": "string", "pattern": "^[0-9]{1,3}(,[0-9]{1,3}){0,19}$"
        })),
        ("/v1/product-lines/{line}/releases", "rollout_group") => Some(group_name_schema()),
        ("/v1/rmas/{number}/attachments", "name") => Some(file_name_schema()),
        ("/v1/rmas/{number}/attachments", "sha256") => Some(sha256_schema()),
        ("/v1/rmas", "state") => {
            let one = format!(
                "(open|{})",
                crate::domain::rma::RmaState::ALL
                    .iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join("|")
            );
            Some(json!({ "type": "string", "pattern": format!("^({one}(,{one})*)?$") }))
        }
        _ => None,
    }
}

/// The schema a path parameter of this name has.
fn path_parameter_schema(path: &str, name: &str) -> Option<Value> {
    match name {
        "serial" | "line" | "channel" => Some(name_schema()),
        "id" if path.starts_with("/v1/admin/tokens/") => Some(json!({
            "type": "string", "minLength": 1, "maxLength": 128
        })),
        "id" => Some(name_schema()),
        "version" => Some(version_schema()),
        "sha256" => Some(sha256_schema()),
        "number" => Some(json!({
            "type": "string", "pattern": RMA_NUMBER_PATTERN, "minLength": 15, "maxLength": 21
        })),
        "name" if path.starts_with("/v1/groups/") => Some(group_name_schema()),
        _ => None,
    }
}

/// A device group name or tag ([`crate::domain::group::check_label`]).
pub const GROUP_NAME_PATTERN: &str = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,63}$";

/// The schema of a device group name.
pub fn group_name_schema() -> Value {
    json!({
        "type": "string", "pattern": GROUP_NAME_PATTERN, "minLength": 1,
        "maxLength": crate::domain::group::MAX_GROUP_NAME_CHARS
    })
}

fn error_response(description: &str) -> Value {
    json!({
        "description": description,
        "content": { "application/json": { "schema": { "$ref": "#/components/schemas/ErrorBody" } } }
    })
}

fn with_header(mut response: Value, name: &str, description: &str) -> Value {
    response["headers"][name] =
        json!({ "description": description, "schema": { "type": "string" } });
    response
}

/// Adds `status` unless the handler described it itself.
fn add(responses: &mut Map<String, Value>, status: &str, response: Value) {
    responses.entry(status.to_owned()).or_insert(response);
}

/// Completes the document derived from the handlers (see the module docs).
pub fn complete(mut doc: Value) -> Value {
    let loose_line = doc.pointer("/components/schemas/ImportLine").cloned();
    let loose_model = doc.pointer("/components/schemas/ImportModel").cloned();
    describe_fields(&mut doc);
    if let (Some(line), Some(model)) = (loose_line, loose_model) {
        describe_accessory_lines(&mut doc, line, model);
    }
    unsigned_ranges(&mut doc);
    list_codes(&mut doc);
    describe_envelopes(&mut doc);
    if let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) {
        // HEAD of an image: the GET's answers without their bodies.
        if let Some(item) = paths.get_mut("/v1/images/{sha256}")
            && let Some(get) = item.get("get").cloned()
        {
            let mut head = get;
            head["summary"] = json!("Headers of an image download, without the bytes.");
            head["operationId"] = json!("head_image");
            if let Some(responses) = head["responses"].as_object_mut() {
                for response in responses.values_mut() {
                    if let Some(r) = response.as_object_mut() {
                        r.remove("content");
                    }
                }
            }
            item["head"] = head;
        }
        for (path, item) in paths.iter_mut() {
            for method in METHODS {
                if let Some(op) = item.get_mut(*method) {
                    complete_operation(path, method, op);
                }
            }
        }
    }
    doc
}

fn complete_operation(path: &str, method: &str, op: &mut Value) {
    let secured = op
        .get("security")
        .and_then(Value::as_array)
        .is_some_and(|s| !s.is_empty());
    let json_body = op
        .pointer("/requestBody/content/application~1json")
        .is_some();
    if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
        for p in params.iter_mut() {
            let schema = match (p["in"].as_str(), p["name"].as_str()) {
                (Some("path"), Some(n)) => path_parameter_schema(path, n),
                (Some("query"), Some(n)) => query_parameter_schema(path, n),
                _ => None,
            };
            if let Some(schema) = schema {
                let nullable = p["schema"]["type"]
                    .as_array()
                    .is_some_and(|t| t.iter().any(|t| t == "null"));
                p["schema"] = schema;
                if nullable {
                    p["schema"]["type"] = json!(["string", "null"]);
                }
            }
        }
    }
    let has_params = op
        .get("parameters")
        .and_then(Value::as_array)
        .is_some_and(|p| !p.is_empty());
    let head = method == "head";
    let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
        return;
    };
    let error = |description: &str| {
        let mut r = error_response(description);
        if head && let Some(r) = r.as_object_mut() {
            r.remove("content");
        }
        r
    };
    if secured {
        add(
            responses,
            "401",
            with_header(
                error("missing_token, malformed_authorization, invalid_token, expired_token"),
                "WWW-Authenticate",
                "`Bearer realm=\"firmup\"`, with `error=\"invalid_token\"` when a token was sent",
            ),
        );
        // Handlers that list 401 themselves get the header too.
        if let Some(r) = responses.get_mut("401")
            && r.pointer("/headers/WWW-Authenticate").is_none()
        {
            *r = with_header(
                r.take(),
                "WWW-Authenticate",
                "`Bearer realm=\"firmup\"`, with `error=\"invalid_token\"` when a token was sent",
            );
        }
        add(
            responses,
            "403",
            error("wrong_role: the token's role may not call this operation"),
        );
    }
    if has_params || json_body || secured {
        add(
            responses,
            "400",
            error(
                "invalid_path, invalid_query, invalid_json, invalid_name, invalid_version, \
                 invalid_sha256, multiple_authorization_headers, ...",
            ),
        );
    }
    if json_body {
        add(responses, "413", error("body_too_large"));
        add(
            responses,
            "415",
            error("unsupported_media_type: send the body as `application/json`"),
        );
    }
    if RATE_LIMITED.contains(&(method, path)) {
        add(
            responses,
            "429",
            with_header(
                error("rate_limited_token, rate_limited_address"),
                "Retry-After",
                "seconds until a retry can succeed",
            ),
        );
    }
    if !NO_DATABASE.contains(&(method, path)) {
        add(
            responses,
            "503",
            with_header(
                error("unavailable, request_timeout: retry later"),
                "Retry-After",
                "seconds until a retry can succeed",
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matches(pattern: &str, value: &str) -> bool {
        // The patterns use a lookahead only for names and file names; check
        // it by hand and the rest with the regex crate.
        let pattern = pattern.replace(r"(?!\.\.?$)", "");
        if pattern.contains("A-Za-z0-9._+-]{1,128}") && (value == "." || value == "..") {
            return false;
        }
        regex::Regex::new(&pattern).unwrap().is_match(value)
    }

    #[test]
    fn the_name_pattern_is_the_parsers_rule() {
        for v in ["SN-0001", "enc-4k-r2", "a", "1.0+x", &"x".repeat(128)] {
            assert!(matches(NAME_PATTERN, v), "{v}");
            assert!(crate::domain::Name::parse("f", v).is_ok(), "{v}");
        }
        for v in ["", ".", "..", "a/b", "a b", "é", &"x".repeat(129)] {
            assert!(!matches(NAME_PATTERN, v), "{v}");
            assert!(crate::domain::Name::parse("f", v).is_err(), "{v}");
        }
    }

    #[test]
    fn the_version_pattern_is_the_parsers_rule() {
        for v in [
            "1.0.0",
            "2.1.0-rc.1",
            "1.0.0-alpha.beta+build.5",
            "0.0.0-0a",
            "9999999999999999999.0.0",
        ] {
            assert!(matches(VERSION_PATTERN, v), "{v}");
            assert!(crate::domain::parse_version("v", v).is_ok(), "{v}");
        }
        for v in [
            "1.0", "01.0.0", "1.0.0-", "1.0.0-01", "v1.0.0", "1.0.0+", " 1.0.0",
        ] {
            assert!(!matches(VERSION_PATTERN, v), "{v}");
            assert!(crate::domain::parse_version("v", v).is_err(), "{v}");
        }
    }

    #[test]
    fn the_rma_number_pattern_is_the_parsers_rule() {
        use crate::domain::rma::is_rma_number;
        for v in [
            "RMA-2026-000123",
            "RMA-2027-1234567",
            "RMA-2026-000000000001",
        ] {
            assert!(matches(RMA_NUMBER_PATTERN, v), "{v}");
            assert!(is_rma_number(v), "{v}");
            assert!((15..=21).contains(&v.len()), "{v}");
        }
        for v in [
            "RMA-2026-12345",
            "rma-2026-000123",
            "RMA-2026-0000000000001",
            "RMA-26-000123",
        ] {
            assert!(!matches(RMA_NUMBER_PATTERN, v), "{v}");
            assert!(!is_rma_number(v), "{v}");
        }
    }

    #[test]
    fn the_file_name_pattern_is_the_parsers_rule() {
        use crate::controllers::repair::attachments::{MAX_FILE_NAME_CHARS, file_name};
        let schema = file_name_schema();
        let pattern = schema["pattern"].as_str().unwrap();
        assert!(pattern.starts_with(r"^(?!\.\.?$)"), "{pattern}");
        for v in [
            "front.jpg",
            "log 2026.txt",
            "ação.png",
            "...",
            &"x".repeat(200),
        ] {
            assert!(matches(pattern, v), "{v}");
            assert!(file_name(v).is_ok(), "{v}");
        }
        for v in ["", " ", "a/b", "a\\b", "a\tb", "a\u{202e}b"] {
            assert!(!matches(pattern, v), "{v:?}");
            assert!(file_name(v).is_err(), "{v:?}");
        }
        // The lookahead, which the regex crate lacks, refuses these.
        assert!(file_name(".").is_err() && file_name("..").is_err());
        assert_eq!(schema["maxLength"], MAX_FILE_NAME_CHARS);
    }

    #[test]
    fn the_sha256_pattern_is_the_parsers_rule() {
        let good = "a".repeat(64);
        assert!(matches(SHA256_PATTERN, &good));
        assert!(crate::domain::parse_sha256(&good).is_ok());
        for v in ["A".repeat(64), "a".repeat(63), "g".repeat(64)] {
            assert!(!matches(SHA256_PATTERN, &v), "{v}");
            assert!(crate::domain::parse_sha256(&v).is_err(), "{v}");
        }
    }
}
