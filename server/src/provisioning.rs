//! Bulk provisioning of devices and bulk imports of contracts and dates of
//! sale, shared by the HTTP API (`POST /v1/admin/devices`,
//! `POST /v1/admin/sales`) and the operator CLI (`firmup-server device
//! import`, `contract import`, `sale import`).
//!
//! Both are all-or-nothing: every entry is validated inside one transaction
//! and the first offending entry aborts the whole batch, so a bad line never
//! leaves half a shipment provisioned or tokens for devices that do not
//! exist. Errors name the entry (`devices[3]` for the API, `line 5` for a
//! CSV file) and its serial, so an operator can fix the input and retry.
//!
//! This module must never print or log a token secret: secrets leave it
//! only in the returned values, for the caller to show once.

use std::collections::{HashMap, HashSet};
use std::fmt;

use time::{Date, OffsetDateTime};

use crate::db::catalogue::ModelRow;
use crate::db::contracts::ContractRow;
use crate::db::invalidations::Kind;
use crate::db::{self, Db, Tx};
use crate::domain::Name;
use crate::domain::roles::{Actor, Role};
use crate::domain::verification::VerificationCode;
use crate::error::{AppError, AppResult};
use crate::tokens::{CreatedToken, NewToken, create_token_tx};

/// Most devices one API request may provision. Larger shipments are split
/// into several requests, or imported with the CLI, which has no limit.
pub const MAX_DEVICES_PER_REQUEST: usize = 10_000;

/// Most dates of sale one API request may record; larger sales records are
/// split, or imported with the CLI, which has no limit.
pub const MAX_SALES_PER_REQUEST: usize = 10_000;

/// How many serials an audit record lists; the count is always complete.
const AUDIT_SERIALS: usize = 100;

/// The format dates are given in.
const DATE_FORMAT: &[time::format_description::BorrowedFormatItem<'static>] =
    time::macros::format_description!("[year]-[month]-[day]");

/// Where an entry of a batch came from, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryRef {
    /// Position in a JSON array, e.g. `devices[3]`.
    Index {
        /// The array's field name.
        field: &'static str,
        /// Zero-based index.
        index: usize,
    },
    /// Line of a CSV file (1 is the header).
    Line(u64),
}

impl fmt::Display for EntryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EntryRef::Index { field, index } => write!(f, "{field}[{index}]"),
            EntryRef::Line(n) => write!(f, "line {n}"),
        }
    }
}

/// Prefixes the message of a client error with `context` (which entry of a
/// batch it is about); other errors pass unchanged.
pub fn in_context(err: AppError, context: impl fmt::Display) -> AppError {
    let wrap = |message: String| format!("{context}: {message}");
    match err {
        AppError::BadRequest { code, message } => AppError::BadRequest {
            code,
            message: wrap(message),
        },
        AppError::NotFound { code, message } => AppError::NotFound {
            code,
            message: wrap(message),
        },
        AppError::Conflict { code, message } => AppError::Conflict {
            code,
            message: wrap(message),
        },
        AppError::Unprocessable { code, message } => AppError::Unprocessable {
            code,
            message: wrap(message),
        },
        other => other,
    }
}

/// Parses a `YYYY-MM-DD` date from the request field `field`.
pub fn parse_date(field: &str, value: &str) -> AppResult<Date> {
    Date::parse(value.trim(), DATE_FORMAT).map_err(|_| {
        AppError::bad_request(
            "invalid_date",
            format!(
                "{field} {value:?} is not a date; expected the format YYYY-MM-DD, e.g. 2025-06-30"
            ),
        )
    })
}

/// A date as `YYYY-MM-DD`, the form every response uses.
pub fn format_date(date: Date) -> String {
    date.format(DATE_FORMAT)
        .unwrap_or_else(|_| date.to_string())
}

/// One device to provision, as given (parsed during [`provision_devices`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceEntry {
    /// Where it came from.
    pub at: EntryRef,
    /// Serial (installation id for software).
    pub serial: String,
    /// Model id.
    pub model_id: String,
    /// Hardware id; must be one of the model's.
    pub hw_id: String,
    /// Channel; `None` means `stable`.
    pub channel: Option<String>,
    /// The verification code printed on the unit (factory data); stored
    /// hashed.
    pub verification_code: Option<String>,
    /// Date of sale, `YYYY-MM-DD`, when known at provisioning.
    pub sale_date: Option<String>,
    /// Region it was sold in.
    pub region: Option<String>,
}

/// What [`check_device`] makes of an entry.
struct CheckedEntry {
    channel: Name,
    verification_hash: Option<String>,
    sale_date: Option<Date>,
    region: Option<Name>,
}

/// A provisioned device and, when asked for, its new token.
#[derive(Debug)]
pub struct ProvisionedDevice {
    /// Serial.
    pub serial: String,
    /// The device token (secret shown once).
    pub token: Option<CreatedToken>,
}

/// Where a batch came from, recorded in the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// `POST /v1/admin/devices`.
    Api,
    /// `firmup-server device import` / `contract import` / `sale import`.
    Csv,
}

impl Source {
    fn as_str(self) -> &'static str {
        match self {
            Source::Api => "api",
            Source::Csv => "csv",
        }
    }
}

/// Provisions `entries` in one transaction, with one `device.provision`
/// audit record, issuing one device token per device when `issue_tokens`
/// is set (each token also gets its own `token.create` record, like every
/// credential). The first invalid entry aborts the whole batch:
///
/// * serial not a valid name: 400 `invalid_name`;
/// * serial twice in the batch: 400 `duplicate_serial`;
/// * unknown model: 422 `unknown_model`;
/// * hardware id not one of the model's: 422 `hw_id_not_in_model`;
/// * serial already provisioned: 409 `serial_exists`.
///
/// The caller must call `App::device_changed` for each serial after this
/// returns, when it has an `App`.
pub async fn provision_devices(
    db: &Db,
    actor: &Actor,
    source: Source,
    entries: &[DeviceEntry],
    issue_tokens: bool,
) -> AppResult<Vec<ProvisionedDevice>> {
    if entries.is_empty() {
        return Err(AppError::bad_request(
            "no_devices",
            "the batch is empty; give at least one device",
        ));
    }
    let mut tx = db.begin().await?;
    let serials: Vec<&str> = entries.iter().map(|e| e.serial.as_str()).collect();
    let existing = db::devices::existing_serials(&mut tx, &serials).await?;
    let mut models: HashMap<String, Option<(ModelRow, Vec<String>)>> = HashMap::new();
    let mut seen: HashMap<&str, EntryRef> = HashMap::new();
    let mut parsed = Vec::with_capacity(entries.len());
    for entry in entries {
        let context = format!("{} (serial {:?})", entry.at, entry.serial);
        let checked = check_device(&mut tx, entry, &existing, &mut models, &mut seen)
            .await
            .map_err(|e| in_context(e, &context))?;
        parsed.push(checked);
    }
    let now = OffsetDateTime::now_utc();
    let mut out = Vec::with_capacity(parsed.len());
    for (entry, checked) in entries.iter().zip(&parsed) {
        let new = db::devices::NewDevice {
            serial: &entry.serial,
            model_id: &entry.model_id,
            hw_id: &entry.hw_id,
            channel: checked.channel.as_str(),
        };
        if let Err(e) = db::devices::insert(&mut tx, new, now).await {
            // Another request provisioned it between our check and insert.
            return Err(if e.is_conflict() {
                in_context(
                    serial_exists(&entry.serial),
                    format!("{} (serial {:?})", entry.at, entry.serial),
                )
            } else {
                e.into()
            });
        }
        if checked.verification_hash.is_some()
            || checked.sale_date.is_some()
            || checked.region.is_some()
        {
            db::devices::set_factory_data(
                &mut tx,
                &entry.serial,
                checked.verification_hash.as_deref(),
                checked.sale_date,
                checked.region.as_ref().map(Name::as_str),
            )
            .await?;
        }
        let token = if issue_tokens {
            let req = NewToken {
                role: Role::Device,
                label: format!("device {}", entry.serial),
                serial: Some(entry.serial.clone()),
                expires_in_days: None,
            };
            Some(create_token_tx(&mut tx, actor, req).await?)
        } else {
            None
        };
        out.push(ProvisionedDevice {
            serial: entry.serial.clone(),
            token,
        });
    }
    let listed: Vec<&str> = serials.iter().take(AUDIT_SERIALS).copied().collect();
    db::audit::record(
        &mut tx,
        actor,
        "device.provision",
        "devices",
        serde_json::json!({
            "count": entries.len(),
            "serials": listed,
            "serials_truncated": entries.len() > AUDIT_SERIALS,
            "tokens_issued": issue_tokens,
            "source": source.as_str(),
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(out)
}

/// Checks one entry; returns what is stored besides its row.
async fn check_device<'a>(
    tx: &mut Tx,
    entry: &'a DeviceEntry,
    existing: &HashSet<String>,
    models: &mut HashMap<String, Option<(ModelRow, Vec<String>)>>,
    seen: &mut HashMap<&'a str, EntryRef>,
) -> AppResult<CheckedEntry> {
    Name::parse("serial", &entry.serial)?;
    if let Some(first) = seen.insert(&entry.serial, entry.at) {
        return Err(AppError::bad_request(
            "duplicate_serial",
            format!("the serial also appears at {first}; list each device once"),
        ));
    }
    if !models.contains_key(&entry.model_id) {
        let found = match db::catalogue::find_model(&mut *tx, &entry.model_id).await? {
            Some(m) => {
                let hw_ids = db::catalogue::model_hw_ids(&mut *tx, &m.id).await?;
                Some((m, hw_ids))
            }
            None => None,
        };
        models.insert(entry.model_id.clone(), found);
    }
    let Some(Some((model, hw_ids))) = models.get(&entry.model_id) else {
        return Err(AppError::unprocessable(
            "unknown_model",
            format!(
                "model {:?} does not exist; create it with PUT /v1/admin/models/{{id}} first",
                entry.model_id
            ),
        ));
    };
    if !hw_ids.contains(&entry.hw_id) {
        return Err(AppError::unprocessable(
            "hw_id_not_in_model",
            format!(
                "hardware id {:?} is not one of model {}'s hardware ids [{}]",
                entry.hw_id,
                model.id,
                hw_ids.join(", ")
            ),
        ));
    }
    let channel = Name::parse("channel", entry.channel.as_deref().unwrap_or("stable"))?;
    let verification_hash = entry
        .verification_code
        .as_deref()
        .map(|c| VerificationCode::parse(c).map(|c| c.hash_for(&entry.serial)))
        .transpose()?;
    let sale_date = entry
        .sale_date
        .as_deref()
        .map(|d| parse_date("sale_date", d))
        .transpose()?;
    let region = entry
        .region
        .as_deref()
        .map(|r| Name::parse("region", r))
        .transpose()?;
    if existing.contains(&entry.serial) {
        return Err(serial_exists(&entry.serial));
    }
    Ok(CheckedEntry {
        channel,
        verification_hash,
        sale_date,
        region,
    })
}

fn serial_exists(serial: &str) -> AppError {
    AppError::conflict(
        "serial_exists",
        format!("a device with serial {serial:?} is already provisioned; remove it from the batch"),
    )
}

/// Column names of a device CSV file.
pub const DEVICE_CSV_HEADER: &str =
    "serial,model_id,hw_id[,channel,verification_code,sale_date,region]";

/// Column names of a contract CSV file.
pub const CONTRACT_CSV_HEADER: &str = "id,serial,kind,starts,ends";

/// Column names of a sales CSV file.
pub const SALE_CSV_HEADER: &str = "serial,sale_date[,region]";

/// Maps positions of the csv reader to 1-based line numbers. The csv
/// crate's own line counter skips blank lines, so an operator looking for
/// "line 7" in an editor would land on the wrong one; byte offsets are
/// exact.
struct Lines<'a> {
    bytes: &'a [u8],
    newlines: Vec<usize>,
}

impl<'a> Lines<'a> {
    fn new(bytes: &'a [u8]) -> Lines<'a> {
        let newlines = bytes
            .iter()
            .enumerate()
            .filter(|(_, b)| **b == b'\n')
            .map(|(i, _)| i)
            .collect();
        Lines { bytes, newlines }
    }

    fn line(&self, position: Option<&csv::Position>) -> u64 {
        let Some(p) = position else { return 0 };
        // The reader's position is where it started reading, which is
        // before the previous record's terminator and any blank lines.
        let mut byte = usize::try_from(p.byte()).unwrap_or(usize::MAX);
        while matches!(self.bytes.get(byte), Some(b'\r' | b'\n')) {
            byte += 1;
        }
        let before = self.newlines.partition_point(|&nl| nl < byte);
        u64::try_from(before).unwrap_or(u64::MAX).saturating_add(1)
    }
}

/// Reads a CSV file with the given header into records paired with their
/// line numbers. Fields are trimmed; blank lines are skipped.
fn read_csv(
    mut input: impl std::io::Read,
    required: &[&str],
    optional: &[&str],
) -> AppResult<Vec<(u64, csv::StringRecord)>> {
    let expected = if optional.is_empty() {
        required.join(",")
    } else {
        format!("{}[,{}]", required.join(","), optional.join(","))
    };
    let mut bytes = Vec::new();
    input.read_to_end(&mut bytes).map_err(|e| {
        AppError::bad_request("invalid_csv", format!("the file could not be read: {e}"))
    })?;
    let lines = Lines::new(&bytes);
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .from_reader(bytes.as_slice());
    let header = reader.headers().map_err(|e| csv_error(&e, &lines))?.clone();
    let names: Vec<&str> = header.iter().collect();
    let fits = names.len() >= required.len()
        && names.len() <= required.len() + optional.len()
        && names
            .iter()
            .zip(required.iter().chain(optional))
            .all(|(a, b)| a == b);
    if !fits {
        return Err(AppError::bad_request(
            "invalid_csv",
            format!(
                "line 1: the header is {:?}; expected {expected}",
                names.join(",")
            ),
        ));
    }
    let mut out = Vec::new();
    for record in reader.records() {
        let record = record.map_err(|e| csv_error(&e, &lines))?;
        if record.iter().all(str::is_empty) {
            continue;
        }
        out.push((lines.line(record.position()), record));
    }
    if out.is_empty() {
        return Err(AppError::bad_request(
            "invalid_csv",
            format!("the file has no entries after its header {expected}"),
        ));
    }
    Ok(out)
}

fn csv_error(e: &csv::Error, lines: &Lines) -> AppError {
    let line = lines.line(e.position());
    let message = match e.kind() {
        csv::ErrorKind::UnequalLengths {
            expected_len, len, ..
        } => format!("line {line}: {len} fields, but the header has {expected_len}"),
        csv::ErrorKind::Utf8 { .. } => format!("line {line}: not valid UTF-8"),
        _ if e.position().is_some() => format!("line {line}: not valid CSV"),
        _ => "the file is empty or not valid CSV".to_string(),
    };
    AppError::bad_request("invalid_csv", message)
}

/// Parses a device CSV file with header
/// `serial,model_id,hw_id[,channel,verification_code,sale_date,region]`
/// (an empty channel means `stable`; other empty fields, none). Only the shape is checked here; the
/// entries are validated by [`provision_devices`], with their line numbers.
pub fn parse_devices_csv(input: impl std::io::Read) -> AppResult<Vec<DeviceEntry>> {
    let records = read_csv(
        input,
        &["serial", "model_id", "hw_id"],
        &["channel", "verification_code", "sale_date", "region"],
    )?;
    Ok(records
        .into_iter()
        .map(|(line, r)| DeviceEntry {
            at: EntryRef::Line(line),
            serial: r.get(0).unwrap_or_default().to_string(),
            model_id: r.get(1).unwrap_or_default().to_string(),
            hw_id: r.get(2).unwrap_or_default().to_string(),
            channel: r.get(3).filter(|c| !c.is_empty()).map(str::to_string),
            verification_code: r.get(4).filter(|c| !c.is_empty()).map(str::to_string),
            sale_date: r.get(5).filter(|c| !c.is_empty()).map(str::to_string),
            region: r.get(6).filter(|c| !c.is_empty()).map(str::to_string),
        })
        .collect())
}

/// Reads a device CSV file and provisions its devices (all or nothing).
pub async fn import_devices_csv(
    db: &Db,
    actor: &Actor,
    input: impl std::io::Read,
    issue_tokens: bool,
) -> AppResult<Vec<ProvisionedDevice>> {
    let entries = parse_devices_csv(input)?;
    provision_devices(db, actor, Source::Csv, &entries, issue_tokens).await
}

/// The kinds of contract a device may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ContractKind {
    /// Entitles the device to firmware its own terms do not cover.
    ServiceContract,
    /// Extends the hardware warranty (repairs); no effect on firmware.
    WarrantyExtension,
}

impl ContractKind {
    /// Parses the stored and requested form.
    pub fn parse(value: &str) -> AppResult<ContractKind> {
        match value {
            "service_contract" => Ok(ContractKind::ServiceContract),
            "warranty_extension" => Ok(ContractKind::WarrantyExtension),
            other => Err(AppError::bad_request(
                "invalid_kind",
                format!(
                    "contract kind {other:?} is unknown; use service_contract or warranty_extension"
                ),
            )),
        }
    }

    /// The stored form.
    pub fn as_str(self) -> &'static str {
        match self {
            ContractKind::ServiceContract => "service_contract",
            ContractKind::WarrantyExtension => "warranty_extension",
        }
    }
}

/// A contract's fields, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractTerms {
    /// Contract id.
    pub id: Name,
    /// Kind.
    pub kind: ContractKind,
    /// First day (inclusive).
    pub starts: Date,
    /// Last day (inclusive).
    pub ends: Date,
}

/// Parses a contract's fields: the id is a name, the kind known, the dates
/// `YYYY-MM-DD` and `ends` not before `starts` (400 `invalid_period`).
pub fn parse_contract(id: &str, kind: &str, starts: &str, ends: &str) -> AppResult<ContractTerms> {
    let id = Name::parse("contract id", id)?;
    let kind = ContractKind::parse(kind)?;
    let starts = parse_date("starts", starts)?;
    let ends = parse_date("ends", ends)?;
    check_period(starts, Some(ends))?;
    Ok(ContractTerms {
        id,
        kind,
        starts,
        ends,
    })
}

/// Fails with 400 `invalid_period` when `ends` is before `starts`.
pub fn check_period(starts: Date, ends: Option<Date>) -> AppResult<()> {
    match ends {
        Some(ends) if ends < starts => Err(AppError::bad_request(
            "invalid_period",
            format!(
                "ends {} is before starts {}; the last day must be on or after the first",
                format_date(ends),
                format_date(starts)
            ),
        )),
        _ => Ok(()),
    }
}

/// Inserts one contract for `serial` inside the caller's transaction,
/// mapping a duplicate id to 409 `contract_exists`. The caller has checked
/// the device exists and writes the audit record.
pub async fn insert_contract(
    tx: &mut Tx,
    serial: &str,
    terms: &ContractTerms,
) -> AppResult<ContractRow> {
    if db::contracts::find_contract_tx(tx, terms.id.as_str())
        .await?
        .is_some()
    {
        return Err(contract_exists(terms.id.as_str()));
    }
    let row = ContractRow {
        id: terms.id.to_string(),
        serial: serial.to_string(),
        kind: terms.kind.as_str().to_string(),
        starts: terms.starts,
        ends: terms.ends,
        created_at: OffsetDateTime::now_utc(),
    };
    db::contracts::insert_contract(tx, &row)
        .await
        .map_err(|e| {
            if e.is_conflict() {
                contract_exists(terms.id.as_str())
            } else {
                e.into()
            }
        })?;
    Ok(row)
}

fn contract_exists(id: &str) -> AppError {
    AppError::conflict(
        "contract_exists",
        format!(
            "a contract with id {id:?} already exists; contract ids are unique, delete it first to replace it"
        ),
    )
}

/// One contract of a CSV import, as given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContractEntry {
    /// Line of the file.
    pub at: EntryRef,
    /// Contract id.
    pub id: String,
    /// Device serial.
    pub serial: String,
    /// Kind.
    pub kind: String,
    /// First day.
    pub starts: String,
    /// Last day.
    pub ends: String,
}

/// Parses a contract CSV file with header `id,serial,kind,starts,ends`.
pub fn parse_contracts_csv(input: impl std::io::Read) -> AppResult<Vec<ContractEntry>> {
    let records = read_csv(input, &["id", "serial", "kind", "starts", "ends"], &[])?;
    Ok(records
        .into_iter()
        .map(|(line, r)| {
            let field = |i: usize| r.get(i).unwrap_or_default().to_string();
            ContractEntry {
                at: EntryRef::Line(line),
                id: field(0),
                serial: field(1),
                kind: field(2),
                starts: field(3),
                ends: field(4),
            }
        })
        .collect())
}

/// Imports contracts in one transaction with one `contract.import` audit
/// record; the first invalid entry aborts the batch. Errors: 400
/// `invalid_name`, `invalid_kind`, `invalid_date`, `invalid_period`,
/// `duplicate_contract` (same id twice in the batch); 422 `unknown_serial`;
/// 409 `contract_exists`. Returns the serials whose contracts changed.
///
/// The transaction also appends a device invalidation per serial, so every
/// running replica drops its cached facts of them within about two seconds
/// (the CLI has no `App` to call `device_changed` on).
pub async fn import_contracts(
    db: &Db,
    actor: &Actor,
    entries: &[ContractEntry],
) -> AppResult<Vec<String>> {
    let mut tx = db.begin().await?;
    let mut seen: HashMap<&str, EntryRef> = HashMap::new();
    let mut known_serials: HashSet<String> = HashSet::new();
    let mut serials = Vec::new();
    for entry in entries {
        let context = format!(
            "{} (contract {:?}, serial {:?})",
            entry.at, entry.id, entry.serial
        );
        let step = async {
            let terms = parse_contract(&entry.id, &entry.kind, &entry.starts, &entry.ends)?;
            if let Some(first) = seen.insert(&entry.id, entry.at) {
                return Err(AppError::bad_request(
                    "duplicate_contract",
                    format!("the contract id also appears at {first}; list each contract once"),
                ));
            }
            if !known_serials.contains(&entry.serial) {
                if db::devices::find(&mut tx, &entry.serial).await?.is_none() {
                    return Err(AppError::unprocessable(
                        "unknown_serial",
                        format!(
                            "no device with serial {:?} is provisioned; provision it first",
                            entry.serial
                        ),
                    ));
                }
                known_serials.insert(entry.serial.clone());
                serials.push(entry.serial.clone());
            }
            insert_contract(&mut tx, &entry.serial, &terms).await?;
            Ok::<(), AppError>(())
        };
        step.await.map_err(|e| in_context(e, &context))?;
    }
    for serial in &serials {
        db::invalidations::record(&mut tx, Kind::Device, serial).await?;
    }
    let ids: Vec<&str> = entries
        .iter()
        .take(AUDIT_SERIALS)
        .map(|e| e.id.as_str())
        .collect();
    db::audit::record(
        &mut tx,
        actor,
        "contract.import",
        "contracts",
        serde_json::json!({
            "count": entries.len(),
            "ids": ids,
            "ids_truncated": entries.len() > AUDIT_SERIALS,
            "source": Source::Csv.as_str(),
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(serials)
}

/// Reads a contract CSV file and imports it (all or nothing).
pub async fn import_contracts_csv(
    db: &Db,
    actor: &Actor,
    input: impl std::io::Read,
) -> AppResult<Vec<String>> {
    let entries = parse_contracts_csv(input)?;
    import_contracts(db, actor, &entries).await
}

/// One date of sale of a sales import, as given (checked by
/// [`import_sales`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SaleEntry {
    /// Where it came from.
    pub at: EntryRef,
    /// The unit's serial; it must be provisioned.
    pub serial: String,
    /// Date of sale, `YYYY-MM-DD`.
    pub sale_date: String,
    /// Region it was sold in; `None` clears a recorded one.
    pub region: Option<String>,
}

/// Records the dates of sale (and regions) of units already provisioned,
/// in one transaction with one `device.sale_import` audit record (the
/// count and the serials); the first invalid entry aborts the batch. Errors
/// name the entry (`sales[3]` or `line 4`) and its serial: 400 `no_sales`,
/// `invalid_name`, `invalid_date`, `duplicate_serial` (a serial twice in
/// the batch); 422 `unknown_serial`. Returns the serials, in batch order.
///
/// The transaction also appends a device invalidation per serial, so every
/// running replica drops its cached facts of them within about two seconds
/// (the CLI has no `App` to call `device_changed` on); a handler drops its
/// own replica's entries at once with `Caches::forget_devices`.
pub async fn import_sales(
    db: &Db,
    actor: &Actor,
    source: Source,
    entries: &[SaleEntry],
) -> AppResult<Vec<String>> {
    if entries.is_empty() {
        return Err(AppError::bad_request(
            "no_sales",
            "the batch is empty; give at least one date of sale",
        ));
    }
    let mut seen: HashMap<&str, EntryRef> = HashMap::new();
    let mut parsed = Vec::with_capacity(entries.len());
    for entry in entries {
        let context = format!("{} (serial {:?})", entry.at, entry.serial);
        let checked = (|| {
            let serial = Name::parse("serial", &entry.serial)?;
            let sale_date = parse_date("sale_date", &entry.sale_date)?;
            let region = entry
                .region
                .as_deref()
                .map(|r| Name::parse("region", r))
                .transpose()?;
            if let Some(first) = seen.insert(&entry.serial, entry.at) {
                return Err(AppError::bad_request(
                    "duplicate_serial",
                    format!("the serial also appears at {first}; list each unit once"),
                ));
            }
            Ok((serial, sale_date, region))
        })()
        .map_err(|e| in_context(e, &context))?;
        parsed.push((entry, checked));
    }
    let mut tx = db.begin().await?;
    let serials: Vec<&str> = entries.iter().map(|e| e.serial.as_str()).collect();
    let existing = db::devices::existing_serials(&mut tx, &serials).await?;
    if let Some((entry, _)) = parsed
        .iter()
        .find(|(e, _)| !existing.contains(e.serial.as_str()))
    {
        return Err(in_context(
            AppError::unprocessable(
                "unknown_serial",
                format!(
                    "no device with serial {:?} is provisioned; provision it first, or leave it \
                     out of the batch",
                    entry.serial
                ),
            ),
            format!("{} (serial {:?})", entry.at, entry.serial),
        ));
    }
    for (_, (serial, sale_date, region)) in &parsed {
        db::devices::set_sale(
            &mut tx,
            serial.as_str(),
            *sale_date,
            region.as_ref().map(Name::as_str),
        )
        .await?;
        db::invalidations::record(&mut tx, Kind::Device, serial.as_str()).await?;
    }
    let listed: Vec<&str> = serials.iter().take(AUDIT_SERIALS).copied().collect();
    db::audit::record(
        &mut tx,
        actor,
        "device.sale_import",
        "devices",
        serde_json::json!({
            "count": entries.len(),
            "serials": listed,
            "serials_truncated": entries.len() > AUDIT_SERIALS,
            "source": source.as_str(),
        }),
    )
    .await?;
    tx.commit().await?;
    Ok(serials.into_iter().map(str::to_owned).collect())
}

/// Parses a sales CSV file with header `serial,sale_date[,region]` (an
/// empty region: none). Only the shape is checked here; the entries are
/// validated by [`import_sales`], with their line numbers.
pub fn parse_sales_csv(input: impl std::io::Read) -> AppResult<Vec<SaleEntry>> {
    let records = read_csv(input, &["serial", "sale_date"], &["region"])?;
    Ok(records
        .into_iter()
        .map(|(line, r)| SaleEntry {
            at: EntryRef::Line(line),
            serial: r.get(0).unwrap_or_default().to_string(),
            sale_date: r.get(1).unwrap_or_default().to_string(),
            region: r.get(2).filter(|c| !c.is_empty()).map(str::to_string),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_parse_strictly() {
        assert_eq!(
            format_date(parse_date("eol", "2025-06-30").unwrap()),
            "2025-06-30"
        );
        for bad in ["2025-13-01", "2025-02-30", "30.06.2025", "2025-6-30", ""] {
            let e = parse_date("eol", bad).unwrap_err();
            assert_eq!(e.code(), "invalid_date", "{bad}");
            assert!(e.to_string().contains("YYYY-MM-DD"), "{e}");
        }
    }

    #[test]
    fn contract_period_must_not_be_inverted() {
        assert!(parse_contract("SC-1", "service_contract", "2025-01-01", "2025-01-01").is_ok());
        let e = parse_contract("SC-1", "service_contract", "2025-01-02", "2025-01-01").unwrap_err();
        assert_eq!(e.code(), "invalid_period");
        let e = parse_contract("SC-1", "gold", "2025-01-01", "2025-01-02").unwrap_err();
        assert_eq!(e.code(), "invalid_kind");
    }

    #[test]
    fn sales_csv_keeps_line_numbers_and_an_optional_region() {
        let csv = "serial,sale_date,region\nS1,2026-03-01,EU\n\nS2,2026-04-02,\n";
        let entries = parse_sales_csv(csv.as_bytes()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].at, EntryRef::Line(2));
        assert_eq!(entries[0].region.as_deref(), Some("EU"));
        assert_eq!(entries[1].at, EntryRef::Line(4));
        assert_eq!(entries[1].sale_date, "2026-04-02");
        assert_eq!(entries[1].region, None);
        let entries = parse_sales_csv("serial,sale_date\nS1,2026-03-01\n".as_bytes()).unwrap();
        assert_eq!(entries[0].region, None);
        let e = parse_sales_csv("serial,date\nS1,2026-03-01\n".as_bytes()).unwrap_err();
        assert_eq!(e.code(), "invalid_csv");
        assert!(e.to_string().contains(SALE_CSV_HEADER), "{e}");
    }

    #[test]
    fn device_csv_keeps_line_numbers_and_checks_the_header() {
        let csv = "serial,model_id,hw_id,channel\nS1,E4K,enc-4k-r1,\n\nS2,E4K,enc-4k-r2,beta\n";
        let entries = parse_devices_csv(csv.as_bytes()).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].at, EntryRef::Line(2));
        assert_eq!(entries[0].channel, None);
        assert_eq!(entries[1].at, EntryRef::Line(4));
        assert_eq!(entries[1].channel.as_deref(), Some("beta"));

        let e = parse_devices_csv("serial,model,hw_id\nS1,E4K,x\n".as_bytes()).unwrap_err();
        assert_eq!(e.code(), "invalid_csv");
        assert!(e.to_string().starts_with("line 1:"), "{e}");
        let e = parse_devices_csv("serial,model_id,hw_id\nS1,E4K\n".as_bytes()).unwrap_err();
        assert!(e.to_string().starts_with("line 2:"), "{e}");
        let e = parse_devices_csv("serial,model_id,hw_id\r\n\r\n\r\nS1,E4K\r\n".as_bytes())
            .unwrap_err();
        assert!(e.to_string().starts_with("line 4:"), "{e}");
        let e = parse_devices_csv("".as_bytes()).unwrap_err();
        assert_eq!(e.code(), "invalid_csv");
    }
}
