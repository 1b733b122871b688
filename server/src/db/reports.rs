//! Device telemetry: installation progress reports and the buffered
//! last-seen state of devices.
//!
//! These rows describe what devices say about themselves; they are not
//! people's actions, so nothing here writes the audit log. This module must
//! never change the catalogue or a device's registration (model, hardware
//! id, channel), only what the device reports.

use std::collections::BTreeMap;

use sqlx::FromRow;
use time::OffsetDateTime;

use super::{Db, Stamp, Tx};
use crate::domain::seen::Pending;

/// Writes coalesced last-seen records in one transaction; returns how many
/// devices were updated.
///
/// The `last_seen <= $7` guard keeps a record that is older than what is
/// stored (a replica whose flush runs late, or a check queued before an
/// `installed` report) from moving `last_seen` and the reported state back.
#[tracing::instrument(skip(db, batch), fields(devices = batch.len()))]
pub async fn write_last_seen(db: &Db, batch: &[Pending]) -> Result<usize, super::Error> {
    let mut tx = db.begin().await?;
    let mut updated = 0;
    for p in batch {
        let seen = &p.latest;
        let at = Stamp(seen.seen_at);
        let done = on!(&mut tx, conn => sqlx::query(
            "UPDATE devices SET last_seen = $1, first_seen = COALESCE(first_seen, $2),
                 current_version = $3, security_counter = $4, root_version = $5,
                 offered_release_id = COALESCE($8, offered_release_id),
                 offered_at = CASE WHEN $8 IS NULL THEN offered_at ELSE $1 END
             WHERE serial = $6 AND (last_seen IS NULL OR last_seen <= $7)",
        )
        .bind(at)
        .bind(Stamp(p.first_seen))
        .bind(&seen.current_version)
        .bind(seen.security_counter)
        .bind(seen.root_version)
        .bind(&seen.serial)
        .bind(at)
        .bind(seen.offered_release_id)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
        updated += done as usize;
    }
    tx.commit().await?;
    Ok(updated)
}

/// The id of release `version` of `product_line` on `channel`, yanked or
/// not (a device may report on a release yanked after it started).
#[tracing::instrument(skip(db))]
pub async fn release_id(
    db: &Db,
    product_line: &str,
    channel: &str,
    version: &str,
) -> Result<Option<i64>, super::Error> {
    on!(db, conn => sqlx::query_scalar(
        "SELECT id FROM releases WHERE product_line = $1 AND channel = $2 AND version = $3",
    )
    .bind(product_line)
    .bind(channel)
    .bind(version)
    .fetch_optional(conn)
    .await)
}

/// A report to store.
#[derive(Debug, Clone, Copy)]
pub struct NewReport<'a> {
    /// Reporting device.
    pub serial: &'a str,
    /// The release reported on.
    pub release_id: i64,
    /// Its version (canonical semver text).
    pub version: &'a str,
    /// Stage, one of the schema's stages.
    pub stage: &'a str,
    /// Machine-readable failure reason.
    pub reason_code: Option<&'a str>,
    /// Free text from the device.
    pub detail: Option<&'a str>,
    /// When it was received.
    pub at: OffsetDateTime,
}

/// How many reports `serial` sent about `release_id`.
#[tracing::instrument(skip(tx, serial))]
pub async fn count_for_device(
    tx: &mut Tx,
    serial: &str,
    release_id: i64,
) -> Result<i64, super::Error> {
    let (n,): (i64,) = on!(&mut *tx, conn => sqlx::query_as("SELECT COUNT(*) FROM reports WHERE serial = $1 AND release_id = $2")
            .bind(serial)
            .bind(release_id)
            .fetch_one(conn)
            .await)?;
    Ok(n)
}

/// Stores a report; returns its id.
#[tracing::instrument(skip(tx, r), fields(stage = r.stage))]
pub async fn insert(tx: &mut Tx, r: &NewReport<'_>) -> Result<i64, super::Error> {
    on!(&mut *tx, conn => sqlx::query_scalar(
        "INSERT INTO reports (serial, release_id, version, stage, reason_code, detail, at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         RETURNING id",
    )
    .bind(r.serial)
    .bind(r.release_id)
    .bind(r.version)
    .bind(r.stage)
    .bind(r.reason_code)
    .bind(r.detail)
    .bind(r.at)
    .fetch_one(conn)
    .await)
}

/// Records the version a device says it now runs after an `installed`
/// report at `at`; the report is also a contact, so `last_seen` moves on,
/// which keeps a check queued before the report from undoing it.
#[tracing::instrument(skip(tx, serial))]
pub async fn record_installed(
    tx: &mut Tx,
    serial: &str,
    version: &str,
    at: OffsetDateTime,
) -> Result<(), super::Error> {
    let at = Stamp(at);
    on!(&mut *tx, conn => sqlx::query(
        "UPDATE devices SET current_version = $1, first_seen = COALESCE(first_seen, $2),
             last_seen = CASE WHEN last_seen IS NULL OR last_seen < $3 THEN $3 ELSE last_seen END
         WHERE serial = $4",
    )
    .bind(version)
    .bind(at)
    .bind(at)
    .bind(serial)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Counts of the reports on one release.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReportCounts {
    /// Devices by the stage of their latest report.
    pub latest_by_stage: BTreeMap<String, i64>,
    /// Reports by stage (every report counts).
    pub by_stage: BTreeMap<String, i64>,
    /// Failed and rolled-back reports by reason code.
    pub failures_by_reason: BTreeMap<String, i64>,
}

/// The counts of the reports on `release_id`.
#[tracing::instrument(skip(db))]
pub async fn counts(db: &Db, release_id: i64) -> Result<ReportCounts, super::Error> {
    let latest: Vec<(String, i64)> = on!(db, conn => sqlx::query_as(
        "SELECT r.stage, COUNT(*) FROM reports r
         JOIN (SELECT MAX(id) AS id FROM reports WHERE release_id = $1 GROUP BY serial) l
           ON l.id = r.id
         GROUP BY r.stage",
    )
    .bind(release_id)
    .fetch_all(conn)
    .await)?;
    let by_stage: Vec<(String, i64)> = on!(db, conn => sqlx::query_as("SELECT stage, COUNT(*) FROM reports WHERE release_id = $1 GROUP BY stage")
            .bind(release_id)
            .fetch_all(conn)
            .await)?;
    let reasons: Vec<(String, i64)> = on!(db, conn => sqlx::query_as(
        "SELECT COALESCE(reason_code, 'unspecified'), COUNT(*) FROM reports
         WHERE release_id = $1 AND stage IN ('failed', 'rolled_back')
         GROUP BY 1",
    )
    .bind(release_id)
    .fetch_all(conn)
    .await)?;
    Ok(ReportCounts {
        latest_by_stage: latest.into_iter().collect(),
        by_stage: by_stage.into_iter().collect(),
        failures_by_reason: reasons.into_iter().collect(),
    })
}

/// What a device last told the server about itself (buffered last-seen
/// state, at most one flush behind).
#[derive(Debug, Clone, Default, PartialEq, Eq, sqlx::FromRow)]
pub struct ReportedState {
    /// Version it runs.
    pub current_version: Option<String>,
    /// Its anti-rollback counter.
    pub security_counter: Option<i64>,
    /// Root version it trusts.
    pub root_version: Option<i64>,
    /// Latest contact.
    pub last_seen: Option<OffsetDateTime>,
}

/// The reported state of a device; `None` for an unknown serial.
#[tracing::instrument(skip(db, serial))]
pub async fn reported_state(db: &Db, serial: &str) -> Result<Option<ReportedState>, super::Error> {
    on!(db, conn => sqlx::query_as(
        "SELECT current_version, security_counter, root_version, last_seen
         FROM devices WHERE serial = $1",
    )
    .bind(serial)
    .fetch_optional(conn)
    .await)
}

/// One stored report, for the technician's device view.
#[derive(Debug, Clone, FromRow)]
pub struct ReportRow {
    /// Report id.
    pub id: i64,
    /// Release version.
    pub version: String,
    /// Stage reached.
    pub stage: String,
    /// Why it failed or was rolled back.
    pub reason_code: Option<String>,
    /// Free text from the device.
    pub detail: Option<String>,
    /// When.
    pub at: OffsetDateTime,
}

/// The device's latest reports, newest first (at most `limit`).
#[tracing::instrument(skip(db, serial))]
pub async fn recent(db: &Db, serial: &str, limit: i64) -> Result<Vec<ReportRow>, super::Error> {
    on!(db, conn => sqlx::query_as(
        "SELECT id, version, stage, reason_code, detail, at FROM reports
         WHERE serial = $1 ORDER BY at DESC, id DESC LIMIT $2",
    )
    .bind(serial)
    .bind(limit)
    .fetch_all(conn)
    .await)
}

/// How many reports are stored, of every device and release. For tests;
/// the server counts per release ([`counts`]) or per device
/// ([`count_for_device`]).
#[doc(hidden)]
#[tracing::instrument(skip(db))]
pub async fn count(db: &Db) -> Result<i64, super::Error> {
    on!(db, conn => sqlx::query_scalar("SELECT COUNT(*) FROM reports")
        .fetch_one(conn)
        .await)
}

/// The kind (`security`, `feature`, `mixed`) of a release.
#[tracing::instrument(skip(db))]
pub async fn release_kind(db: &Db, release_id: i64) -> Result<Option<String>, super::Error> {
    on!(db, conn => sqlx::query_scalar("SELECT kind FROM releases WHERE id = $1")
        .bind(release_id)
        .fetch_optional(conn)
        .await)
}

/// Records a device owner's choice about a security release (`opted_out`,
/// or `postponed` until an instant); the latest choice per device and
/// release replaces the earlier one.
#[tracing::instrument(skip(tx, serial))]
pub async fn record_choice(
    tx: &mut Tx,
    serial: &str,
    release_id: i64,
    choice: &str,
    postponed_until: Option<OffsetDateTime>,
    at: OffsetDateTime,
) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query(
        "INSERT INTO update_choices (serial, release_id, choice, postponed_until, at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (serial, release_id) DO UPDATE
         SET choice = excluded.choice, postponed_until = excluded.postponed_until, at = excluded.at",
    )
    .bind(serial)
    .bind(release_id)
    .bind(choice)
    .bind(postponed_until.map(Stamp))
    .bind(Stamp(at))
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Choices about one release: how many devices opted out, and how many
/// postponed it to an instant still ahead of `now`.
#[tracing::instrument(skip(db))]
pub async fn choice_counts(
    db: &Db,
    release_id: i64,
    now: OffsetDateTime,
) -> Result<(i64, i64), super::Error> {
    on!(db, conn => sqlx::query_as(
        "SELECT CAST(COALESCE(SUM(CASE WHEN choice = 'opted_out' THEN 1 ELSE 0 END), 0) AS BIGINT),
                CAST(COALESCE(SUM(CASE WHEN choice = 'postponed' AND postponed_until > $2
                                  THEN 1 ELSE 0 END), 0) AS BIGINT)
           FROM update_choices WHERE release_id = $1",
    )
    .bind(release_id)
    .bind(Stamp(now))
    .fetch_one(conn)
    .await)
}
