//! Product lines, models and the hardware ids each model answers to.
//!
//! A hardware id belongs to at most one model (`model_hw_ids.hw_id` is the
//! primary key), so a device's hardware id names its model without doubt.
//! This module only reads and writes rows; the rules (which kinds exist,
//! what may change while devices use a model) live in the catalogue
//! controllers. It must never decide entitlement.

use sqlx::FromRow;
use time::{Date, OffsetDateTime};

use super::{Db, Tx};

/// A stored product line.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ProductLineRow {
    /// Id, as in manifests and root delegations.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `hardware` or `software`.
    pub kind: String,
    /// Standard warranty in months.
    pub warranty_months: i64,
    /// `repair` (sent in for repair) or `exchange` (accessories and
    /// batteries, exchanged).
    pub service_class: String,
    /// JSON object of per-region standard warranties: region -> months.
    pub warranty_regions: String,
    /// When it was first created.
    pub created_at: OffsetDateTime,
}

/// A stored model (without its hardware ids).
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ModelRow {
    /// Id.
    pub id: String,
    /// Product line it belongs to.
    pub product_line: String,
    /// Marketing name.
    pub name: String,
    /// Launch date.
    pub launched: Option<Date>,
    /// Discontinuation date; `None` while in production.
    pub eol: Option<Date>,
}

/// A product line by id, inside a transaction.
#[tracing::instrument(skip(tx))]
pub async fn product_line_tx(
    tx: &mut Tx,
    id: &str,
) -> Result<Option<ProductLineRow>, super::Error> {
    on!(&mut *tx, conn => sqlx::query_as(
        "SELECT id, name, kind, warranty_months, service_class, warranty_regions, created_at
         FROM product_lines WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(conn)
    .await)
}

/// A product line's terms, as [`upsert_product_line`] stores them.
#[derive(Debug, Clone, Copy)]
pub struct LineTerms<'a> {
    /// Display name.
    pub name: &'a str,
    /// `hardware` or `software`.
    pub kind: &'a str,
    /// Standard warranty in months.
    pub warranty_months: i64,
    /// `repair` or `exchange`.
    pub service_class: &'a str,
    /// JSON object: region -> months.
    pub warranty_regions: &'a str,
}

impl<'a> LineTerms<'a> {
    /// Terms with the default service class (`repair`) and no per-region
    /// periods.
    pub fn new(name: &'a str, kind: &'a str, warranty_months: i64) -> Self {
        LineTerms {
            name,
            kind,
            warranty_months,
            service_class: "repair",
            warranty_regions: "{}",
        }
    }
}

/// Creates a product line or updates its name, kind and warranty terms
/// (the creation time is kept).
#[tracing::instrument(skip(tx))]
pub async fn upsert_product_line(
    tx: &mut Tx,
    id: &str,
    t: &LineTerms<'_>,
) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query(
        "INSERT INTO product_lines (id, name, kind, warranty_months, service_class,
                                    warranty_regions, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (id) DO UPDATE SET
            name = excluded.name, kind = excluded.kind,
            warranty_months = excluded.warranty_months,
            service_class = excluded.service_class,
            warranty_regions = excluded.warranty_regions",
    )
    .bind(id)
    .bind(t.name)
    .bind(t.kind)
    .bind(t.warranty_months)
    .bind(t.service_class)
    .bind(t.warranty_regions)
    .bind(OffsetDateTime::now_utc())
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// All product lines, by id.
#[tracing::instrument(skip(db))]
pub async fn list_product_lines(db: &Db) -> Result<Vec<ProductLineRow>, super::Error> {
    on!(db, conn => sqlx::query_as(
        "SELECT id, name, kind, warranty_months, service_class, warranty_regions, created_at
         FROM product_lines ORDER BY id",
    )
    .fetch_all(conn)
    .await)
}

/// All models, by id.
#[tracing::instrument(skip(db))]
pub async fn list_models(db: &Db) -> Result<Vec<ModelRow>, super::Error> {
    on!(db, conn => sqlx::query_as("SELECT id, product_line, name, launched, eol FROM models ORDER BY id")
        .fetch_all(conn)
        .await)
}

/// Every `(model_id, hw_id)` pair, by model then hardware id.
#[tracing::instrument(skip(db))]
pub async fn list_hw_ids(db: &Db) -> Result<Vec<(String, String)>, super::Error> {
    on!(db, conn => sqlx::query_as("SELECT model_id, hw_id FROM model_hw_ids ORDER BY model_id, hw_id")
        .fetch_all(conn)
        .await)
}

/// A model by id.
#[tracing::instrument(skip(exec))]
pub async fn find_model(
    exec: impl Into<super::Exec<'_>>,
    id: &str,
) -> Result<Option<ModelRow>, super::Error> {
    on!(exec, conn => sqlx::query_as("SELECT id, product_line, name, launched, eol FROM models WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await)
}

/// The hardware ids of a model, sorted.
#[tracing::instrument(skip(exec))]
pub async fn model_hw_ids(
    exec: impl Into<super::Exec<'_>>,
    model_id: &str,
) -> Result<Vec<String>, super::Error> {
    on!(exec, conn => sqlx::query_scalar("SELECT hw_id FROM model_hw_ids WHERE model_id = $1 ORDER BY hw_id")
        .bind(model_id)
        .fetch_all(conn)
        .await)
}

/// The model a hardware id belongs to, if any.
#[tracing::instrument(skip(tx))]
pub async fn hw_id_owner(tx: &mut Tx, hw_id: &str) -> Result<Option<String>, super::Error> {
    on!(&mut *tx, conn => sqlx::query_scalar("SELECT model_id FROM model_hw_ids WHERE hw_id = $1")
        .bind(hw_id)
        .fetch_optional(conn)
        .await)
}

/// Creates a model or replaces its product line, name and dates.
#[tracing::instrument(skip(tx))]
pub async fn upsert_model(tx: &mut Tx, model: &ModelRow) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query(
        "INSERT INTO models (id, product_line, name, launched, eol) VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (id) DO UPDATE SET
            product_line = excluded.product_line, name = excluded.name,
            launched = excluded.launched, eol = excluded.eol",
    )
    .bind(&model.id)
    .bind(&model.product_line)
    .bind(&model.name)
    .bind(model.launched)
    .bind(model.eol)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Replaces the hardware ids of a model. The caller has checked that no
/// other model owns any of them.
#[tracing::instrument(skip(tx))]
pub async fn set_hw_ids(
    tx: &mut Tx,
    model_id: &str,
    hw_ids: &[String],
) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query("DELETE FROM model_hw_ids WHERE model_id = $1")
        .bind(model_id)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    for hw_id in hw_ids {
        on!(&mut *tx, conn => sqlx::query("INSERT INTO model_hw_ids (hw_id, model_id) VALUES ($1, $2)")
            .bind(hw_id)
            .bind(model_id)
            .execute(conn)
            .await
            .map(|r| r.rows_affected()))?;
    }
    Ok(())
}

/// Sets or clears a model's EOL date; returns false if there is no such
/// model.
#[tracing::instrument(skip(tx))]
pub async fn set_eol(tx: &mut Tx, model_id: &str, eol: Option<Date>) -> Result<bool, super::Error> {
    let done = on!(&mut *tx, conn => sqlx::query("UPDATE models SET eol = $1 WHERE id = $2")
        .bind(eol)
        .bind(model_id)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// The distinct hardware ids provisioned devices of a model use, sorted.
#[tracing::instrument(skip(tx))]
pub async fn hw_ids_in_use(tx: &mut Tx, model_id: &str) -> Result<Vec<String>, super::Error> {
    on!(&mut *tx, conn => sqlx::query_scalar("SELECT DISTINCT hw_id FROM devices WHERE model_id = $1 ORDER BY hw_id")
        .bind(model_id)
        .fetch_all(conn)
        .await)
}

/// How many devices are provisioned with a model.
#[tracing::instrument(skip(tx))]
pub async fn device_count(tx: &mut Tx, model_id: &str) -> Result<i64, super::Error> {
    on!(&mut *tx, conn => sqlx::query_scalar("SELECT COUNT(*) FROM devices WHERE model_id = $1")
        .bind(model_id)
        .fetch_one(conn)
        .await)
}

/// A security support period as declared: months and justification.
pub type DeclaredSupport = (Option<i32>, Option<String>);

/// Sets (or with `None` months clears) the security support period a
/// product line or model declares; false if there is no such row.
/// `table` is `product_lines` or `models`.
#[tracing::instrument(skip(tx, justification))]
pub async fn set_support(
    tx: &mut Tx,
    table: SupportTable,
    id: &str,
    months: Option<i32>,
    justification: Option<&str>,
) -> Result<bool, super::Error> {
    let sql = format!(
        "UPDATE {} SET support_months = $1, support_justification = $2 WHERE id = $3",
        table.name()
    );
    let done = on!(&mut *tx, conn => sqlx::query(&sql)
        .bind(months)
        .bind(justification)
        .bind(id)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// Which table declares a support period.
#[derive(Debug, Clone, Copy)]
pub enum SupportTable {
    /// `product_lines`.
    ProductLine,
    /// `models`.
    Model,
}

impl SupportTable {
    fn name(self) -> &'static str {
        match self {
            SupportTable::ProductLine => "product_lines",
            SupportTable::Model => "models",
        }
    }
}

/// A model's name and the periods it and its line declare, as read.
type SupportRow = (
    String,
    Option<i32>,
    Option<String>,
    Option<i32>,
    Option<String>,
);

/// The support periods a model and its product line declare: (model name,
/// model's, line's), or `None` for an unknown model.
#[tracing::instrument(skip(exec))]
pub async fn support_of_model(
    exec: impl Into<super::Exec<'_>>,
    model_id: &str,
) -> Result<Option<(String, DeclaredSupport, DeclaredSupport)>, super::Error> {
    let row: Option<SupportRow> = on!(exec, conn => sqlx::query_as(
            "SELECT m.name, m.support_months, m.support_justification,
                    l.support_months, l.support_justification
               FROM models m JOIN product_lines l ON l.id = m.product_line
              WHERE m.id = $1",
        )
        .bind(model_id)
        .fetch_optional(conn)
        .await)?;
    Ok(row.map(|(name, mm, mj, lm, lj)| (name, (mm, mj), (lm, lj))))
}

/// The model's latest sale date, and the latest provisioning time of its
/// units without a recorded sale: the later of the two is the last day a
/// unit was placed on the market.
#[tracing::instrument(skip(db))]
pub async fn last_on_market(
    db: &Db,
    model_id: &str,
) -> Result<(Option<Date>, Option<OffsetDateTime>), super::Error> {
    let sold: Option<Date> = on!(db, conn => sqlx::query_scalar(
        "SELECT sale_date FROM devices WHERE model_id = $1 AND sale_date IS NOT NULL
          ORDER BY sale_date DESC LIMIT 1",
    )
    .bind(model_id)
    .fetch_optional(conn)
    .await)?;
    let provisioned: Option<OffsetDateTime> = on!(db, conn => sqlx::query_scalar(
        "SELECT created_at FROM devices WHERE model_id = $1 AND sale_date IS NULL
          ORDER BY created_at DESC LIMIT 1",
    )
    .bind(model_id)
    .fetch_optional(conn)
    .await)?;
    Ok((sold, provisioned))
}
