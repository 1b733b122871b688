//! Provisioned devices (hardware units and software installations) and the
//! facts the update check needs about one of them.
//!
//! Rows only: validation (known model, hardware id of that model, unique
//! serials) happens in [`crate::provisioning`] before anything is written.
//! This module must never create tokens or write audit records itself.

use std::collections::HashSet;

use sqlx::FromRow;
use time::{Date, OffsetDateTime};

use super::{Db, Tx};
use crate::domain::facts::{ContractFacts, DeviceFacts, GrantFacts, LicenceFacts};
use crate::domain::support::OnMarket;

/// A stored device.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct DeviceRow {
    /// Serial (installation id for software).
    pub serial: String,
    /// Model.
    pub model_id: String,
    /// Hardware id (platform id for software).
    pub hw_id: String,
    /// Channel it follows.
    pub channel: String,
    /// Installed version, as last reported.
    pub current_version: Option<String>,
    /// Anti-rollback counter, as last reported.
    pub security_counter: Option<i64>,
    /// Root version the device trusts, as last reported.
    pub root_version: Option<i64>,
    /// When the owner registered it.
    pub registered_at: Option<OffsetDateTime>,
    /// When it was provisioned.
    pub created_at: OffsetDateTime,
    /// First contact with the server.
    pub first_seen: Option<OffsetDateTime>,
    /// Latest contact with the server.
    pub last_seen: Option<OffsetDateTime>,
    /// Date of sale, from which the warranty runs.
    pub sale_date: Option<Date>,
    /// Region it was sold in (for per-region warranty periods).
    pub region: Option<String>,
    /// The unit this one replaced under warranty.
    pub replaces: Option<String>,
    /// Start of the warranty of a replacement unit.
    pub replacement_start: Option<Date>,
    /// The unit that replaced this one.
    pub replaced_by: Option<String>,
    /// When this unit was replaced.
    pub replaced_on: Option<Date>,
    /// Hash of the verification code printed on the unit, if on file.
    pub verification_hash: Option<String>,
}

/// A device with its model and product line, for detail views.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct DeviceDetailRow {
    /// The device.
    #[sqlx(flatten)]
    pub device: DeviceRow,
    /// Model name.
    pub model_name: String,
    /// Product line id.
    pub product_line: String,
    /// `hardware` or `software`.
    pub kind: String,
    /// Standard warranty of the product line, in months.
    pub warranty_months: i64,
    /// The product line's service class (`repair` or `exchange`).
    pub service_class: String,
    /// The product line's per-region warranties (JSON object).
    pub warranty_regions: String,
    /// The model's EOL date.
    pub eol: Option<Date>,
}

/// A device to insert.
#[derive(Debug, Clone, Copy)]
pub struct NewDevice<'a> {
    /// Serial.
    pub serial: &'a str,
    /// Model.
    pub model_id: &'a str,
    /// Hardware id.
    pub hw_id: &'a str,
    /// Channel.
    pub channel: &'a str,
}

const DEVICE_COLUMNS: &str = "d.serial, d.model_id, d.hw_id, d.channel, d.current_version, \
     d.security_counter, d.root_version, d.registered_at, d.created_at, d.first_seen, d.last_seen, \
     d.sale_date, d.region, d.replaces, d.replacement_start, d.replaced_by, d.replaced_on, \
     d.verification_hash";

/// Which of `serials` are already provisioned (checked in chunks, so a large
/// import stays within SQLite's bound-parameter limit).
#[tracing::instrument(skip(tx, serials), fields(count = serials.len()))]
pub async fn existing_serials(
    tx: &mut Tx,
    serials: &[&str],
) -> Result<HashSet<String>, super::Error> {
    super::existing_keys(tx, "SELECT serial FROM devices WHERE serial IN", serials).await
}

/// Inserts a device.
#[tracing::instrument(skip(tx, d))]
pub async fn insert(
    tx: &mut Tx,
    d: NewDevice<'_>,
    created_at: OffsetDateTime,
) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query(
        "INSERT INTO devices (serial, model_id, hw_id, channel, created_at) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(d.serial)
    .bind(d.model_id)
    .bind(d.hw_id)
    .bind(d.channel)
    .bind(created_at)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// A device with its model and product line.
#[tracing::instrument(skip(exec, serial))]
pub async fn find(
    exec: impl Into<super::Exec<'_>>,
    serial: &str,
) -> Result<Option<DeviceDetailRow>, super::Error> {
    on!(exec, conn => sqlx::query_as(&detail_sql())
        .bind(serial)
        .fetch_optional(conn)
        .await)
}

fn detail_sql() -> String {
    format!(
        "SELECT {DEVICE_COLUMNS}, m.name AS model_name, m.product_line, m.eol,
                p.kind, p.warranty_months, p.service_class, p.warranty_regions
         FROM devices d
         JOIN models m ON m.id = d.model_id
         JOIN product_lines p ON p.id = m.product_line
         WHERE d.serial = $1"
    )
}

/// Sets the channel a device follows.
#[tracing::instrument(skip(tx, serial))]
pub async fn set_channel(tx: &mut Tx, serial: &str, channel: &str) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query("UPDATE devices SET channel = $1 WHERE serial = $2")
        .bind(channel)
        .bind(serial)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Records the factory data of a device just inserted: the hash of its
/// verification code, its date of sale and region (each as given).
#[tracing::instrument(skip(tx, verification_hash, serial))]
pub async fn set_factory_data(
    tx: &mut Tx,
    serial: &str,
    verification_hash: Option<&str>,
    sale_date: Option<Date>,
    region: Option<&str>,
) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query(
        "UPDATE devices SET verification_hash = $1, sale_date = $2, region = $3 WHERE serial = $4",
    )
    .bind(verification_hash)
    .bind(sale_date)
    .bind(region)
    .bind(serial)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Records a device's date of sale and region.
#[tracing::instrument(skip(tx, serial))]
pub async fn set_sale(
    tx: &mut Tx,
    serial: &str,
    sale_date: Date,
    region: Option<&str>,
) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query("UPDATE devices SET sale_date = $1, region = $2 WHERE serial = $3")
        .bind(sale_date)
        .bind(region)
        .bind(serial)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Replaces unit `old` by unit `new` on `on`: the new unit takes over the
/// old one's owner registration, sale record, contracts and licences, and
/// its warranty starts on `start`; the old unit is marked replaced.
#[tracing::instrument(skip(tx, old, new))]
pub async fn replace_unit(
    tx: &mut Tx,
    old: &str,
    new: &str,
    on: Date,
    start: Date,
) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query(
        "UPDATE devices SET replaces = $1, replacement_start = $2,
                registered_at = (SELECT o.registered_at FROM devices o WHERE o.serial = $1),
                sale_date = (SELECT o.sale_date FROM devices o WHERE o.serial = $1),
                region = (SELECT o.region FROM devices o WHERE o.serial = $1)
         WHERE serial = $3",
    )
    .bind(old)
    .bind(start)
    .bind(new)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    on!(&mut *tx, conn => sqlx::query(
        "UPDATE devices SET replaced_by = $1, replaced_on = $2 WHERE serial = $3",
    )
    .bind(new)
    .bind(on)
    .bind(old)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    for table in ["contracts", "licences"] {
        let sql = format!("UPDATE {table} SET serial = $1 WHERE serial = $2");
        on!(&mut *tx, conn => sqlx::query(&sql)
            .bind(new)
            .bind(old)
            .execute(conn)
            .await
            .map(|r| r.rows_affected()))?;
    }
    Ok(())
}

/// Records the owner's registration unless one is recorded already.
#[tracing::instrument(skip(tx, serial))]
pub async fn set_registered(
    tx: &mut Tx,
    serial: &str,
    at: OffsetDateTime,
) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query("UPDATE devices SET registered_at = $1 WHERE serial = $2 AND registered_at IS NULL")
        .bind(at)
        .bind(serial)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// What the entitlement decision needs about one device, or `None` if the
/// serial is not provisioned.
///
/// The update-check path calls this on a miss of `App::device_facts`, so it
/// is one round trip: one statement whose three indexed parts are told
/// apart by `part`:
///
/// 0. the device row (model, hardware id, channel; its sale date in
///    `starts` and its provisioning time in `at`, for the start of its
///    security support);
/// 1. its contracts of kind `service_contract` (warranty extensions are
///    about repairs, not firmware, and are left out), by start, then id;
/// 2. its licence with the latest end, a perpetual one (no end) winning; a
///    device normally holds at most one, and when it holds several the most
///    generous is the one that decides;
/// 3. its active repair push (at most one), as a repair grant: push id,
///    technician (in `model_id`), version (in `hw_id`; NULL for the newest
///    compatible release) and expiry (in `at`). An expired one is loaded
///    too, so that explanations can say it expired;
/// 4. its region (sold in), if recorded;
/// 5. its tags, by name;
/// 6. the static groups it is a member of, by name;
/// 7. one row if processing is restricted for it.
///
/// Contracts, licences and pushes are deleted with their device (foreign
/// keys), so no device row means no facts at all.
#[tracing::instrument(skip(db, serial))]
pub async fn load_device_facts(db: &Db, serial: &str) -> Result<Option<DeviceFacts>, super::Error> {
    // NULL (perpetual) sorts first with `ends IS NULL DESC`, then the latest end.
    let rows: Vec<FactsRow> = on!(db, conn => sqlx::query_as(
        "SELECT CAST(0 AS BIGINT) AS part, serial AS id, model_id, hw_id, channel,
                sale_date AS starts, CAST(NULL AS DATE) AS ends, created_at AS at
           FROM devices WHERE serial = $1
         UNION ALL
         SELECT 1, id, NULL, NULL, NULL, starts, ends, NULL
           FROM contracts WHERE serial = $1 AND kind = 'service_contract'
         UNION ALL
         SELECT * FROM (
           SELECT 2, id, NULL, NULL, NULL, CAST(NULL AS DATE), ends, CAST(NULL AS TIMESTAMPTZ)
             FROM licences WHERE serial = $1
           ORDER BY ends IS NULL DESC, ends DESC, id LIMIT 1) AS newest_licence
         UNION ALL
         SELECT 3, id, technician, version, NULL, NULL, NULL, expires_at
           FROM repair_pushes WHERE serial = $1 AND state = 'active'
         UNION ALL
         SELECT 4, region, NULL, NULL, NULL, NULL, NULL, NULL
           FROM devices WHERE serial = $1 AND region IS NOT NULL
         UNION ALL
         SELECT 5, tag, NULL, NULL, NULL, NULL, NULL, NULL
           FROM device_tags WHERE serial = $1
         UNION ALL
         SELECT 6, group_name, NULL, NULL, NULL, NULL, NULL, NULL
           FROM device_group_members WHERE serial = $1
         UNION ALL
         SELECT 7, 'restricted', NULL, NULL, NULL, NULL, NULL, NULL
           FROM devices WHERE serial = $1 AND restricted_at IS NOT NULL
         ORDER BY part, starts, id",
    )
    .bind(serial)
    .fetch_all(conn)
    .await)?;
    let mut rows = rows.into_iter().peekable();
    let Some(device) = rows.next_if(|r| r.part == 0) else {
        return Ok(None);
    };
    let (Some(model_id), Some(hw_id), Some(channel)) =
        (device.model_id, device.hw_id, device.channel)
    else {
        // The columns are NOT NULL; a NULL here is a bug in the query.
        return Err(super::Error::Malformed(format!(
            "device facts of {serial:?}: device row without model, hardware id or channel"
        )));
    };
    let mut facts = DeviceFacts {
        serial: device.id,
        model_id,
        hw_id,
        channel,
        contracts: vec![],
        licence: None,
        grants: vec![],
        region: None,
        tags: vec![],
        groups: vec![],
        restricted: false,
        on_market: OnMarket::of(
            device.starts,
            device.at.ok_or_else(|| {
                super::Error::Malformed(format!(
                    "device facts of {serial:?}: device row without created_at"
                ))
            })?,
        ),
    };
    for row in rows {
        match (row.part, row.starts, row.ends) {
            (1, Some(starts), Some(ends)) => facts.contracts.push(ContractFacts {
                contract_id: row.id,
                starts,
                ends,
            }),
            (2, None, ends) => {
                facts.licence = Some(LicenceFacts {
                    licence_id: row.id,
                    ends,
                });
            }
            (3, None, None) => {
                let (Some(technician), Some(expires_at)) = (row.model_id, row.at) else {
                    return Err(super::Error::Malformed(format!(
                        "device facts of {serial:?}: repair push without technician or expiry"
                    )));
                };
                let version = row
                    .hw_id
                    .map(|v| v.parse::<semver::Version>())
                    .transpose()
                    .map_err(|e| {
                        super::Error::Malformed(format!(
                            "device facts of {serial:?}: repair push {:?} names version: {e}",
                            row.id
                        ))
                    })?;
                facts.grants.push(GrantFacts {
                    grant_id: row.id,
                    technician,
                    version,
                    expires_at,
                });
            }
            (4, None, None) => facts.region = Some(row.id),
            (5, None, None) => facts.tags.push(row.id),
            (6, None, None) => facts.groups.push(row.id),
            (7, None, None) => facts.restricted = true,
            (part, ..) => {
                return Err(super::Error::Malformed(format!(
                    "device facts of {serial:?}: unexpected row of part {part}"
                )));
            }
        }
    }
    Ok(Some(facts))
}

/// One row of [`load_device_facts`]'s statement.
#[derive(Debug, FromRow)]
struct FactsRow {
    /// 0 device, 1 contract, 2 licence, 3 repair push, 4 region, 5 tag,
    /// 6 static group, 7 restricted.
    part: i64,
    /// Serial, contract id, licence id, push id, region, tag or group.
    id: String,
    model_id: Option<String>,
    hw_id: Option<String>,
    channel: Option<String>,
    starts: Option<Date>,
    ends: Option<Date>,
    /// A repair push's expiry.
    at: Option<OffsetDateTime>,
}

/// How many devices are provisioned. For tests (that a refused batch
/// provisioned nothing); the server never needs the total.
#[doc(hidden)]
#[tracing::instrument(skip(db))]
pub async fn count(db: &Db) -> Result<i64, super::Error> {
    on!(db, conn => sqlx::query_scalar("SELECT COUNT(*) FROM devices")
        .fetch_one(conn)
        .await)
}
