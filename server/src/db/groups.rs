//! Device groups, their static members, and device tags. Rows only: what a
//! filter or a window means is the domain's ([`crate::domain::group`],
//! [`crate::domain::window`]).

use sqlx::FromRow;
use time::OffsetDateTime;

use super::{Db, Stamp, Tx};

/// A stored group.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct GroupRow {
    /// Name.
    pub name: String,
    /// `static` or `dynamic`.
    pub kind: String,
    /// A dynamic group's filter, as given.
    pub filter: Option<String>,
    /// Its maintenance window, JSON as stored.
    pub maintenance_window: Option<String>,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: OffsetDateTime,
}

const COLUMNS: &str = "name, kind, filter, maintenance_window, created_by, created_at";

/// Inserts a group. An existing name: [`super::Error::Conflict`].
#[tracing::instrument(skip(tx, g), fields(name = %g.name))]
pub async fn insert(tx: &mut Tx, g: &GroupRow) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query(
        "INSERT INTO device_groups (name, kind, filter, maintenance_window, created_by, created_at)
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(&g.name)
    .bind(&g.kind)
    .bind(&g.filter)
    .bind(&g.maintenance_window)
    .bind(&g.created_by)
    .bind(Stamp(g.created_at))
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// One group.
#[tracing::instrument(skip(exec))]
pub async fn find(
    exec: impl Into<super::Exec<'_>>,
    name: &str,
) -> Result<Option<GroupRow>, super::Error> {
    let sql = format!("SELECT {COLUMNS} FROM device_groups WHERE name = $1");
    on!(exec, conn => sqlx::query_as(&sql).bind(name).fetch_optional(conn).await)
}

/// Every group, by name.
#[tracing::instrument(skip(exec))]
pub async fn all(exec: impl Into<super::Exec<'_>>) -> Result<Vec<GroupRow>, super::Error> {
    let sql = format!("SELECT {COLUMNS} FROM device_groups ORDER BY name");
    on!(exec, conn => sqlx::query_as(&sql).fetch_all(conn).await)
}

/// Deletes a group (its members go with it); returns whether it existed.
#[tracing::instrument(skip(tx))]
pub async fn delete(tx: &mut Tx, name: &str) -> Result<bool, super::Error> {
    // Members first: SQLite enforces the cascade only with foreign keys on.
    on!(&mut *tx, conn => sqlx::query("DELETE FROM device_group_members WHERE group_name = $1")
        .bind(name)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    let n = on!(&mut *tx, conn => sqlx::query("DELETE FROM device_groups WHERE name = $1")
        .bind(name)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(n > 0)
}

/// Sets (or with `None` clears) a group's maintenance window.
#[tracing::instrument(skip(tx))]
pub async fn set_window(
    tx: &mut Tx,
    name: &str,
    window: Option<&str>,
) -> Result<bool, super::Error> {
    let n = on!(&mut *tx, conn => sqlx::query("UPDATE device_groups SET maintenance_window = $1 WHERE name = $2")
        .bind(window)
        .bind(name)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(n > 0)
}

/// Adds `serial` to a static group; returns whether it was not a member.
#[tracing::instrument(skip(tx, serial))]
pub async fn add_member(tx: &mut Tx, name: &str, serial: &str) -> Result<bool, super::Error> {
    let n = on!(&mut *tx, conn => sqlx::query(
        "INSERT INTO device_group_members (group_name, serial) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(name)
    .bind(serial)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n > 0)
}

/// Removes `serial` from a group; returns whether it was a member.
#[tracing::instrument(skip(tx, serial))]
pub async fn remove_member(tx: &mut Tx, name: &str, serial: &str) -> Result<bool, super::Error> {
    let n = on!(&mut *tx, conn => sqlx::query(
        "DELETE FROM device_group_members WHERE group_name = $1 AND serial = $2",
    )
    .bind(name)
    .bind(serial)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n > 0)
}

/// The serials of a static group, by serial; at most `limit`.
#[tracing::instrument(skip(exec))]
pub async fn members(
    exec: impl Into<super::Exec<'_>>,
    name: &str,
    limit: i64,
) -> Result<Vec<String>, super::Error> {
    on!(exec, conn => sqlx::query_scalar(
        "SELECT serial FROM device_group_members WHERE group_name = $1 ORDER BY serial LIMIT $2",
    )
    .bind(name)
    .bind(limit)
    .fetch_all(conn)
    .await)
}

/// How many members a static group has.
#[tracing::instrument(skip(exec))]
pub async fn member_count(
    exec: impl Into<super::Exec<'_>>,
    name: &str,
) -> Result<i64, super::Error> {
    on!(exec, conn => sqlx::query_scalar("SELECT COUNT(*) FROM device_group_members WHERE group_name = $1")
        .bind(name)
        .fetch_one(conn)
        .await)
}

/// Replaces a device's tags.
#[tracing::instrument(skip(tx, serial))]
pub async fn set_tags(tx: &mut Tx, serial: &str, tags: &[String]) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query("DELETE FROM device_tags WHERE serial = $1")
        .bind(serial)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    for tag in tags {
        on!(&mut *tx, conn => sqlx::query("INSERT INTO device_tags (serial, tag) VALUES ($1, $2)")
            .bind(serial)
            .bind(tag)
            .execute(conn)
            .await
            .map(|r| r.rows_affected()))?;
    }
    Ok(())
}

/// A device's tags, sorted.
#[tracing::instrument(skip(db, serial))]
pub async fn tags(db: &Db, serial: &str) -> Result<Vec<String>, super::Error> {
    on!(db, conn => sqlx::query_scalar("SELECT tag FROM device_tags WHERE serial = $1 ORDER BY tag")
        .bind(serial)
        .fetch_all(conn)
        .await)
}

/// The serials of `serials` that are not provisioned, in their order.
#[tracing::instrument(skip(tx, serials), fields(count = serials.len()))]
pub async fn unknown_serials(tx: &mut Tx, serials: &[String]) -> Result<Vec<String>, super::Error> {
    let mut missing = Vec::new();
    for s in serials {
        let found: Option<i64> = on!(&mut *tx, conn => sqlx::query_scalar("SELECT CAST(1 AS BIGINT) FROM devices WHERE serial = $1")
            .bind(s)
            .fetch_optional(conn)
            .await)?;
        if found.is_none() {
            missing.push(s.clone());
        }
    }
    Ok(missing)
}
