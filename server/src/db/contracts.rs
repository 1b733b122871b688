//! Service contracts, warranty extensions and software licences held for a
//! device. Rows only: the rules (valid periods, which devices may hold a
//! licence) are the catalogue controllers' and the entitlement module's.
//! Contract and licence ids may appear in technician views and the audit
//! log, never in anything shown to a device.

use sqlx::FromRow;
use time::{Date, OffsetDateTime};

use super::{Db, Tx};

/// A stored contract.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ContractRow {
    /// Contract id.
    pub id: String,
    /// Device it covers.
    pub serial: String,
    /// `service_contract` or `warranty_extension`.
    pub kind: String,
    /// First day (inclusive).
    pub starts: Date,
    /// Last day (inclusive).
    pub ends: Date,
    /// When it was recorded.
    pub created_at: OffsetDateTime,
}

/// A stored licence.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct LicenceRow {
    /// Licence id.
    pub id: String,
    /// Installation it licenses.
    pub serial: String,
    /// Valid from.
    pub starts: Date,
    /// Last day of releases it covers; `None` means perpetual.
    pub ends: Option<Date>,
}

/// Inserts a contract.
#[tracing::instrument(skip(tx, c))]
pub async fn insert_contract(tx: &mut Tx, c: &ContractRow) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query(
        "INSERT INTO contracts (id, serial, kind, starts, ends, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&c.id)
    .bind(&c.serial)
    .bind(&c.kind)
    .bind(c.starts)
    .bind(c.ends)
    .bind(c.created_at)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// A contract by id, inside a transaction.
#[tracing::instrument(skip(tx))]
pub async fn find_contract_tx(tx: &mut Tx, id: &str) -> Result<Option<ContractRow>, super::Error> {
    on!(&mut *tx, conn => sqlx::query_as("SELECT id, serial, kind, starts, ends, created_at FROM contracts WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await)
}

/// Deletes a contract by id.
#[tracing::instrument(skip(tx))]
pub async fn delete_contract(tx: &mut Tx, id: &str) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query("DELETE FROM contracts WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The contracts of a device, by start date then id.
#[tracing::instrument(skip(exec, serial))]
pub async fn contracts_of(
    exec: impl Into<super::Exec<'_>>,
    serial: &str,
) -> Result<Vec<ContractRow>, super::Error> {
    on!(exec, conn => sqlx::query_as(
        "SELECT id, serial, kind, starts, ends, created_at FROM contracts
         WHERE serial = $1 ORDER BY starts, id",
    )
    .bind(serial)
    .fetch_all(conn)
    .await)
}

/// Inserts a licence.
#[tracing::instrument(skip(tx, l))]
pub async fn insert_licence(tx: &mut Tx, l: &LicenceRow) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query("INSERT INTO licences (id, serial, starts, ends) VALUES ($1, $2, $3, $4)")
        .bind(&l.id)
        .bind(&l.serial)
        .bind(l.starts)
        .bind(l.ends)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// A licence by id, inside a transaction.
#[tracing::instrument(skip(tx))]
pub async fn find_licence_tx(tx: &mut Tx, id: &str) -> Result<Option<LicenceRow>, super::Error> {
    on!(&mut *tx, conn => sqlx::query_as("SELECT id, serial, starts, ends FROM licences WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await)
}

/// Deletes a licence by id.
#[tracing::instrument(skip(tx))]
pub async fn delete_licence(tx: &mut Tx, id: &str) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query("DELETE FROM licences WHERE id = $1")
        .bind(id)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The licences of a device, by start date then id.
#[tracing::instrument(skip(exec, serial))]
pub async fn licences_of(
    exec: impl Into<super::Exec<'_>>,
    serial: &str,
) -> Result<Vec<LicenceRow>, super::Error> {
    on!(exec, conn => sqlx::query_as(
        "SELECT id, serial, starts, ends FROM licences WHERE serial = $1 ORDER BY starts, id",
    )
    .bind(serial)
    .fetch_all(conn)
    .await)
}

/// Which of `ids` are already used by contracts (checked in chunks, so a
/// large import stays within SQLite's bound-parameter limit).
#[tracing::instrument(skip(tx, ids), fields(count = ids.len()))]
pub async fn existing_contract_ids(
    tx: &mut Tx,
    ids: &[&str],
) -> Result<std::collections::HashSet<String>, super::Error> {
    super::existing_keys(tx, "SELECT id FROM contracts WHERE id IN", ids).await
}

/// How many contracts are stored, of every device and kind. For tests
/// (that a refused import stored nothing); the server never needs the
/// total.
#[doc(hidden)]
#[tracing::instrument(skip(db))]
pub async fn count_contracts(db: &Db) -> Result<i64, super::Error> {
    on!(db, conn => sqlx::query_scalar("SELECT COUNT(*) FROM contracts")
        .fetch_one(conn)
        .await)
}
