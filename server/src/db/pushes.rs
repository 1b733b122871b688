//! Repair pushes: a release a technician assigned to one device under
//! repair. Rows only; what a push entitles is the entitlement module's, and
//! which pushes may be made is the repair controller's.

use sqlx::FromRow;
use time::OffsetDateTime;

use super::{Db, Stamp, Tx};

/// The columns of [`PushRow`], in its order.
const COLUMNS: &str = "id, serial, product_line, channel, version, rma, reason, technician, \
                       created_at, expires_at, state, ended_at, ended_by, done_version";

/// A stored push.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct PushRow {
    /// Push id.
    pub id: String,
    /// The device.
    pub serial: String,
    /// The device's product line when the push was made.
    pub product_line: String,
    /// The channel of the pushed release.
    pub channel: String,
    /// The pushed version; `None` means the newest compatible release.
    pub version: Option<String>,
    /// The RMA the push belongs to.
    pub rma: String,
    /// Why (for technicians; never shown to the device).
    pub reason: String,
    /// Who pushed (the token's label).
    pub technician: String,
    /// When.
    pub created_at: OffsetDateTime,
    /// It entitles nothing from this instant on.
    pub expires_at: OffsetDateTime,
    /// `active`, `cancelled`, `done` or `expired`.
    pub state: String,
    /// When it stopped being active.
    pub ended_at: Option<OffsetDateTime>,
    /// Who cancelled it, `device` when done, `server` when expired.
    pub ended_by: Option<String>,
    /// The version the device reported installed (done pushes).
    pub done_version: Option<String>,
}

/// Inserts an active push. A second active push for the same device
/// violates the one-active index: [`super::Error::Conflict`].
#[tracing::instrument(skip(tx, p))]
pub async fn insert(tx: &mut Tx, p: &PushRow) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query(
        "INSERT INTO repair_pushes (id, serial, product_line, channel, version, rma, reason,
                                    technician, created_at, expires_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&p.id)
    .bind(&p.serial)
    .bind(&p.product_line)
    .bind(&p.channel)
    .bind(&p.version)
    .bind(&p.rma)
    .bind(&p.reason)
    .bind(&p.technician)
    .bind(Stamp(p.created_at))
    .bind(Stamp(p.expires_at))
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The device's active push, expired or not.
#[tracing::instrument(skip(exec, serial))]
pub async fn active(
    exec: impl Into<super::Exec<'_>>,
    serial: &str,
) -> Result<Option<PushRow>, super::Error> {
    let sql = format!("SELECT {COLUMNS} FROM repair_pushes WHERE serial = $1 AND state = 'active'");
    on!(exec, conn => sqlx::query_as(&sql)
        .bind(serial)
        .fetch_optional(conn)
        .await)
}

/// The device's pushes, newest first (at most `limit`).
#[tracing::instrument(skip(db, serial))]
pub async fn history(db: &Db, serial: &str, limit: i64) -> Result<Vec<PushRow>, super::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM repair_pushes WHERE serial = $1
         ORDER BY created_at DESC, id DESC LIMIT $2"
    );
    on!(db, conn => sqlx::query_as(&sql)
        .bind(serial)
        .bind(limit)
        .fetch_all(conn)
        .await)
}

/// The pushes made under an RMA, newest first.
#[tracing::instrument(skip(exec))]
pub async fn of_rma(
    exec: impl Into<super::Exec<'_>>,
    rma: &str,
) -> Result<Vec<PushRow>, super::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM repair_pushes WHERE rma = $1 ORDER BY created_at DESC, id DESC"
    );
    on!(exec, conn => sqlx::query_as(&sql)
        .bind(rma)
        .fetch_all(conn)
        .await)
}

/// Ends the device's active push with `state` (`cancelled`, `done` or
/// `expired`); returns whether there was one.
#[tracing::instrument(skip(tx, serial))]
pub async fn end(
    tx: &mut Tx,
    serial: &str,
    state: &str,
    at: OffsetDateTime,
    by: &str,
    done_version: Option<&str>,
) -> Result<bool, super::Error> {
    let n = on!(&mut *tx, conn => sqlx::query(
        "UPDATE repair_pushes SET state = $1, ended_at = $2, ended_by = $3, done_version = $4
         WHERE serial = $5 AND state = 'active'",
    )
    .bind(state)
    .bind(Stamp(at))
    .bind(by)
    .bind(done_version)
    .bind(serial)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n > 0)
}

/// Moves the expiry of the device's active push. For tests (that an
/// expired push entitles nothing) without waiting out its lifetime; the
/// server never changes an expiry.
#[doc(hidden)]
#[tracing::instrument(skip(tx, serial))]
pub async fn set_expiry(
    tx: &mut Tx,
    serial: &str,
    expires_at: OffsetDateTime,
) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query(
        "UPDATE repair_pushes SET expires_at = $1 WHERE serial = $2 AND state = 'active'",
    )
    .bind(Stamp(expires_at))
    .bind(serial)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}
