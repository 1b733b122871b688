//! RMAs (the repair desk's records), their events, the files attached to
//! them, and the parts replaced in repairs. Rows only: which state changes are allowed is
//! [`crate::domain::rma`]'s, what is covered is the warranty module's.

use sqlx::FromRow;
use time::{Date, OffsetDateTime};

use super::{Db, Stamp, Tx};

/// The columns of [`RmaRow`], in its order.
const COLUMNS: &str = "number, year, seq, serial, model_id, customer_name, customer_email, \
                       customer_phone, fault, fault_on, received_on, state, tracking_in, \
                       tracking_out, coverage_code, coverage, opened_by, created_at, updated_at";

/// A stored RMA.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct RmaRow {
    /// `RMA-2026-000123`.
    pub number: String,
    /// Year of the number.
    pub year: i64,
    /// Sequence within the year, from 1.
    pub seq: i64,
    /// The unit.
    pub serial: String,
    /// Its model when the RMA was opened.
    pub model_id: String,
    /// Customer's name.
    pub customer_name: String,
    /// Customer's email.
    pub customer_email: String,
    /// Customer's phone.
    pub customer_phone: Option<String>,
    /// The customer's description of the fault.
    pub fault: String,
    /// When the fault occurred.
    pub fault_on: Date,
    /// When the customer received the goods.
    pub received_on: Option<Date>,
    /// State (see [`crate::domain::rma::RmaState`]).
    pub state: String,
    /// Carrier tracking number of the unit's way in.
    pub tracking_in: Option<String>,
    /// Carrier tracking number of the unit's way back.
    pub tracking_out: Option<String>,
    /// The coverage decision's code, once decided.
    pub coverage_code: Option<String>,
    /// The coverage decision (JSON), once decided.
    pub coverage: Option<String>,
    /// Who opened it.
    pub opened_by: String,
    /// When.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

/// One change of an RMA.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct RmaEventRow {
    /// Event id.
    pub id: String,
    /// The RMA.
    pub rma: String,
    /// When.
    pub at: OffsetDateTime,
    /// Who (a token's label).
    pub actor: String,
    /// `opened`, `state`, `tracking`, `coverage`, `push`, `part`,
    /// `replacement` or `attachment`.
    pub kind: String,
    /// State before, for `state` events.
    pub from_state: Option<String>,
    /// State after, for `state` events.
    pub to_state: Option<String>,
    /// What changed (JSON).
    pub detail: String,
}

/// A part replaced in a repair.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct PartRow {
    /// Id.
    pub id: String,
    /// The unit.
    pub serial: String,
    /// The RMA of the repair.
    pub rma: Option<String>,
    /// Which part.
    pub part: String,
    /// When it was replaced.
    pub replaced_on: Date,
    /// Whether the repair was under warranty.
    pub under_warranty: bool,
    /// When it was recorded.
    pub created_at: OffsetDateTime,
}

/// A file attached to an RMA; its bytes are in storage, keyed by `sha256`.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct AttachmentRow {
    /// Id, `att_<32 hex>`.
    pub id: String,
    /// The RMA.
    pub rma: String,
    /// The file name as given (no path).
    pub name: String,
    /// Its media type as given.
    pub content_type: String,
    /// Length in bytes.
    pub length: i64,
    /// sha256 of the bytes (hex).
    pub sha256: String,
    /// Who uploaded it (a token's label).
    pub uploaded_by: String,
    /// When.
    pub uploaded_at: OffsetDateTime,
}

/// The columns of [`AttachmentRow`], in its order.
const ATTACHMENT_COLUMNS: &str =
    "id, rma, name, content_type, length, sha256, uploaded_by, uploaded_at";

/// What [`list`] selects; `None` fields do not filter.
#[derive(Debug, Clone, Default)]
pub struct RmaFilter<'a> {
    /// Only RMAs in one of these states.
    pub states: Vec<&'a str>,
    /// Only RMAs of this model.
    pub model_id: Option<&'a str>,
    /// Only RMAs of this unit.
    pub serial: Option<&'a str>,
    /// Only RMAs opened before this instant (older than an age).
    pub opened_before: Option<OffsetDateTime>,
    /// At most this many.
    pub limit: i64,
}

/// The next sequence number of `year`. Write transactions never
/// interleave (see [`super`]), so two RMAs opened at once get distinct
/// numbers; the `(year, seq)` key would refuse a duplicate anyway.
#[tracing::instrument(skip(tx))]
pub async fn next_seq(tx: &mut Tx, year: i64) -> Result<i64, super::Error> {
    on!(&mut *tx, conn => sqlx::query_scalar(
        "SELECT CAST(COALESCE(MAX(seq), 0) + 1 AS BIGINT) FROM rmas WHERE year = $1",
    )
    .bind(year)
    .fetch_one(conn)
    .await)
}

/// Inserts an RMA.
#[tracing::instrument(skip(tx, r), fields(number = %r.number))]
pub async fn insert(tx: &mut Tx, r: &RmaRow) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query(
        "INSERT INTO rmas (number, year, seq, serial, model_id, customer_name, customer_email,
                           customer_phone, fault, fault_on, received_on, state, tracking_in,
                           tracking_out, opened_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
    )
    .bind(&r.number)
    .bind(r.year)
    .bind(r.seq)
    .bind(&r.serial)
    .bind(&r.model_id)
    .bind(&r.customer_name)
    .bind(&r.customer_email)
    .bind(&r.customer_phone)
    .bind(&r.fault)
    .bind(r.fault_on)
    .bind(r.received_on)
    .bind(&r.state)
    .bind(&r.tracking_in)
    .bind(&r.tracking_out)
    .bind(&r.opened_by)
    .bind(Stamp(r.created_at))
    .bind(Stamp(r.updated_at))
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// One RMA by number.
#[tracing::instrument(skip(exec))]
pub async fn find(
    exec: impl Into<super::Exec<'_>>,
    number: &str,
) -> Result<Option<RmaRow>, super::Error> {
    let sql = format!("SELECT {COLUMNS} FROM rmas WHERE number = $1");
    on!(exec, conn => sqlx::query_as(&sql)
        .bind(number)
        .fetch_optional(conn)
        .await)
}

/// RMAs matching `f`, newest first.
#[tracing::instrument(skip(db, f))]
pub async fn list(db: &Db, f: &RmaFilter<'_>) -> Result<Vec<RmaRow>, super::Error> {
    let mut clauses = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if !f.states.is_empty() {
        let list: Vec<String> = f.states.iter().map(|_| next()).collect();
        clauses.push(format!("state IN ({})", list.join(", ")));
    }
    if f.model_id.is_some() {
        clauses.push(format!("model_id = {}", next()));
    }
    if f.serial.is_some() {
        clauses.push(format!("serial = {}", next()));
    }
    if f.opened_before.is_some() {
        clauses.push(format!("created_at < {}", next()));
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let limit = next();
    let sql = format!(
        "SELECT {COLUMNS} FROM rmas {filter} ORDER BY created_at DESC, number DESC LIMIT {limit}"
    );
    on!(db, conn => {
        let mut q = sqlx::query_as(&sql);
        for s in &f.states {
            q = q.bind(*s);
        }
        if let Some(m) = f.model_id {
            q = q.bind(m);
        }
        if let Some(s) = f.serial {
            q = q.bind(s);
        }
        if let Some(t) = f.opened_before {
            q = q.bind(Stamp(t));
        }
        q.bind(f.limit).fetch_all(conn).await
    })
}

/// The unit's RMAs that are not closed or cancelled, newest first.
#[tracing::instrument(skip(exec, serial))]
pub async fn unfinished_of(
    exec: impl Into<super::Exec<'_>>,
    serial: &str,
) -> Result<Vec<RmaRow>, super::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM rmas WHERE serial = $1 AND state NOT IN ('closed', 'cancelled')
         ORDER BY created_at DESC, number DESC"
    );
    on!(exec, conn => sqlx::query_as(&sql)
        .bind(serial)
        .fetch_all(conn)
        .await)
}

/// How many RMAs the unit has had.
#[tracing::instrument(skip(exec, serial))]
pub async fn count_of(exec: impl Into<super::Exec<'_>>, serial: &str) -> Result<i64, super::Error> {
    on!(exec, conn => sqlx::query_scalar("SELECT COUNT(*) FROM rmas WHERE serial = $1")
        .bind(serial)
        .fetch_one(conn)
        .await)
}

/// Moves an RMA to `state` if it is still in `from` (another desk's
/// change in between makes this return `false`).
#[tracing::instrument(skip(tx))]
pub async fn set_state(
    tx: &mut Tx,
    number: &str,
    from: &str,
    state: &str,
    at: OffsetDateTime,
) -> Result<bool, super::Error> {
    let n = on!(&mut *tx, conn => sqlx::query(
        "UPDATE rmas SET state = $1, updated_at = $2 WHERE number = $3 AND state = $4",
    )
    .bind(state)
    .bind(Stamp(at))
    .bind(number)
    .bind(from)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n > 0)
}

/// Sets the carrier tracking numbers (both, as given).
#[tracing::instrument(skip(tx))]
pub async fn set_tracking(
    tx: &mut Tx,
    number: &str,
    tracking_in: Option<&str>,
    tracking_out: Option<&str>,
    at: OffsetDateTime,
) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query(
        "UPDATE rmas SET tracking_in = $1, tracking_out = $2, updated_at = $3 WHERE number = $4",
    )
    .bind(tracking_in)
    .bind(tracking_out)
    .bind(Stamp(at))
    .bind(number)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Records the coverage decision.
#[tracing::instrument(skip(tx, decision))]
pub async fn set_coverage(
    tx: &mut Tx,
    number: &str,
    code: &str,
    decision: &str,
    at: OffsetDateTime,
) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query(
        "UPDATE rmas SET coverage_code = $1, coverage = $2, updated_at = $3 WHERE number = $4",
    )
    .bind(code)
    .bind(decision)
    .bind(Stamp(at))
    .bind(number)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Records an event of an RMA.
#[tracing::instrument(skip(tx, e), fields(rma = %e.rma, kind = %e.kind))]
pub async fn add_event(tx: &mut Tx, e: &RmaEventRow) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query(
        "INSERT INTO rma_events (id, rma, at, actor, kind, from_state, to_state, detail)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&e.id)
    .bind(&e.rma)
    .bind(Stamp(e.at))
    .bind(&e.actor)
    .bind(&e.kind)
    .bind(&e.from_state)
    .bind(&e.to_state)
    .bind(&e.detail)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// An RMA's events, oldest first.
#[tracing::instrument(skip(exec))]
pub async fn events(
    exec: impl Into<super::Exec<'_>>,
    number: &str,
) -> Result<Vec<RmaEventRow>, super::Error> {
    on!(exec, conn => sqlx::query_as(
        "SELECT id, rma, at, actor, kind, from_state, to_state, detail FROM rma_events
         WHERE rma = $1 ORDER BY at, id",
    )
    .bind(number)
    .fetch_all(conn)
    .await)
}

/// Records a replaced part.
#[tracing::instrument(skip(tx, p), fields(part = %p.part))]
pub async fn insert_part(tx: &mut Tx, p: &PartRow) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query(
        "INSERT INTO part_replacements (id, serial, rma, part, replaced_on, under_warranty, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(&p.id)
    .bind(&p.serial)
    .bind(&p.rma)
    .bind(&p.part)
    .bind(p.replaced_on)
    .bind(p.under_warranty)
    .bind(Stamp(p.created_at))
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The parts replaced in a unit, oldest first.
#[tracing::instrument(skip(exec, serial))]
pub async fn parts_of(
    exec: impl Into<super::Exec<'_>>,
    serial: &str,
) -> Result<Vec<PartRow>, super::Error> {
    on!(exec, conn => sqlx::query_as(
        "SELECT id, serial, rma, part, replaced_on, under_warranty, created_at
         FROM part_replacements WHERE serial = $1 ORDER BY replaced_on, created_at, id",
    )
    .bind(serial)
    .fetch_all(conn)
    .await)
}

/// Records a file attached to an RMA; its bytes are in storage already.
#[tracing::instrument(skip(tx, a), fields(rma = %a.rma, id = %a.id))]
pub async fn insert_attachment(tx: &mut Tx, a: &AttachmentRow) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query(
        "INSERT INTO rma_attachments (id, rma, name, content_type, length, sha256, uploaded_by,
                                      uploaded_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
    )
    .bind(&a.id)
    .bind(&a.rma)
    .bind(&a.name)
    .bind(&a.content_type)
    .bind(a.length)
    .bind(&a.sha256)
    .bind(&a.uploaded_by)
    .bind(Stamp(a.uploaded_at))
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// The files attached to an RMA, oldest first.
#[tracing::instrument(skip(exec))]
pub async fn attachments_of(
    exec: impl Into<super::Exec<'_>>,
    number: &str,
) -> Result<Vec<AttachmentRow>, super::Error> {
    let sql = format!(
        "SELECT {ATTACHMENT_COLUMNS} FROM rma_attachments WHERE rma = $1 ORDER BY uploaded_at, id"
    );
    on!(exec, conn => sqlx::query_as(&sql)
        .bind(number)
        .fetch_all(conn)
        .await)
}

/// One attachment of an RMA by id.
#[tracing::instrument(skip(exec))]
pub async fn find_attachment(
    exec: impl Into<super::Exec<'_>>,
    number: &str,
    id: &str,
) -> Result<Option<AttachmentRow>, super::Error> {
    let sql =
        format!("SELECT {ATTACHMENT_COLUMNS} FROM rma_attachments WHERE rma = $1 AND id = $2");
    on!(exec, conn => sqlx::query_as(&sql)
        .bind(number)
        .bind(id)
        .fetch_optional(conn)
        .await)
}

/// Records that an RMA changed at `at` without another column changing
/// (a file attached to it).
#[tracing::instrument(skip(tx))]
pub async fn touch(tx: &mut Tx, number: &str, at: OffsetDateTime) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query("UPDATE rmas SET updated_at = $1 WHERE number = $2")
        .bind(Stamp(at))
        .bind(number)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}
