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
#[tracing::instrument(skip(tx))]
pub async fn insert_contract(tx: &mut Tx, c: &ContractRow) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO contracts (id, serial, kind, starts, ends, created_at)
         VALUES (?, ?, ?, ?, ?, ?)",
    )
    .bind(&c.id)
    .bind(&c.serial)
    .bind(&c.kind)
    .bind(c.starts)
    .bind(c.ends)
    .bind(c.created_at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A contract by id, inside a transaction.
#[tracing::instrument(skip(tx))]
pub async fn find_contract_tx(tx: &mut Tx, id: &str) -> Result<Option<ContractRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, serial, kind, starts, ends, created_at FROM contracts WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
}

/// Deletes a contract by id.
#[tracing::instrument(skip(tx))]
pub async fn delete_contract(tx: &mut Tx, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM contracts WHERE id = ?")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The contracts of a device, by start date then id.
#[tracing::instrument(skip(db))]
pub async fn contracts_of(db: &Db, serial: &str) -> Result<Vec<ContractRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, serial, kind, starts, ends, created_at FROM contracts
         WHERE serial = ? ORDER BY starts, id",
    )
    .bind(serial)
    .fetch_all(db.pool())
    .await
}

/// Inserts a licence.
#[tracing::instrument(skip(tx))]
pub async fn insert_licence(tx: &mut Tx, l: &LicenceRow) -> Result<(), sqlx::Error> {
    sqlx::query("INSERT INTO licences (id, serial, starts, ends) VALUES (?, ?, ?, ?)")
        .bind(&l.id)
        .bind(&l.serial)
        .bind(l.starts)
        .bind(l.ends)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A licence by id, inside a transaction.
#[tracing::instrument(skip(tx))]
pub async fn find_licence_tx(tx: &mut Tx, id: &str) -> Result<Option<LicenceRow>, sqlx::Error> {
    sqlx::query_as("SELECT id, serial, starts, ends FROM licences WHERE id = ?")
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
}

/// Deletes a licence by id.
#[tracing::instrument(skip(tx))]
pub async fn delete_licence(tx: &mut Tx, id: &str) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM licences WHERE id = ?")
        .bind(id)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// The licences of a device, by start date then id.
#[tracing::instrument(skip(db))]
pub async fn licences_of(db: &Db, serial: &str) -> Result<Vec<LicenceRow>, sqlx::Error> {
    sqlx::query_as(
        "SELECT id, serial, starts, ends FROM licences WHERE serial = ? ORDER BY starts, id",
    )
    .bind(serial)
    .fetch_all(db.pool())
    .await
}

/// Which of `ids` are already used by contracts (checked in chunks, so a
/// large import stays within SQLite's bound-parameter limit).
#[tracing::instrument(skip(tx, ids), fields(count = ids.len()))]
pub async fn existing_contract_ids(
    tx: &mut Tx,
    ids: &[&str],
) -> Result<std::collections::HashSet<String>, sqlx::Error> {
    let mut found = std::collections::HashSet::new();
    for chunk in ids.chunks(500) {
        let placeholders = vec!["?"; chunk.len()].join(", ");
        let sql = format!("SELECT id FROM contracts WHERE id IN ({placeholders})");
        let mut q = sqlx::query_scalar::<_, String>(&sql);
        for id in chunk {
            q = q.bind(*id);
        }
        found.extend(q.fetch_all(&mut **tx).await?);
    }
    Ok(found)
}
