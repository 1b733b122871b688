//! Reads the catalogue for the check path's in-memory snapshot, as plain
//! rows ([`CatalogueRows`]); [`crate::snapshot`] builds the snapshot from
//! them.
//!
//! All reads run in one read transaction, so a snapshot never mixes two
//! states of the catalogue (WAL readers see one consistent point in time).
//! Envelopes are immutable once stored, so the previous snapshot's are
//! reused and only new releases' bytes are read. This module only reads.

use std::collections::{HashMap, HashSet};

use sqlx::FromRow;
use time::{Date, OffsetDateTime};

use super::Db;

/// Above this many unknown envelopes (a cold start), read them all in one
/// query rather than one query each.
const BULK_ENVELOPES: usize = 64;

/// A product line (`product_lines`).
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct LineRow {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// `hardware` or `software` (anything else is a hand edit).
    pub kind: String,
    /// Declared security support period in months.
    pub support_months: Option<i32>,
    /// Why it is shorter than five years.
    pub support_justification: Option<String>,
}

/// A model (`models`).
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ModelRow {
    /// Id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// The product line it belongs to.
    pub product_line: String,
    /// Discontinued on this date.
    pub eol: Option<Date>,
    /// Declared security support period in months (overrides the line's).
    pub support_months: Option<i32>,
    /// Why it is shorter than five years.
    pub support_justification: Option<String>,
}

/// One image of a release (`release_images`), unparsed.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ImageRow {
    /// The release.
    pub release_id: i64,
    /// Image name.
    pub name: String,
    /// Target slot or component.
    pub target: String,
    /// sha256, as stored (hex).
    pub sha256: String,
    /// Length in bytes, as stored.
    pub length: i64,
}

/// A release (`releases`) without its envelope, unparsed.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ReleaseRow {
    /// Row id.
    pub id: i64,
    /// Product line.
    pub product_line: String,
    /// Channel.
    pub channel: String,
    /// Version, as stored.
    pub version: String,
    /// Replay counter, as stored.
    pub manifest_version: i64,
    /// Anti-rollback counter, as stored.
    pub security_counter: i64,
    /// Minimum installed version, as stored.
    pub requires: Option<String>,
    /// Hardware ids, a JSON array as stored.
    pub hw_compat: String,
    /// Publication time.
    pub published_at: OffsetDateTime,
    /// Offered to every device regardless of entitlement.
    pub free_for_all: bool,
    /// When it was yanked, if it was.
    pub yanked_at: Option<OffsetDateTime>,
    /// `security`, `feature` or `mixed`.
    pub kind: String,
}

/// The catalogue's rows at one point in time.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CatalogueRows {
    /// Every product line.
    pub product_lines: Vec<LineRow>,
    /// Every model.
    pub models: Vec<ModelRow>,
    /// Every (hardware id, model id).
    pub hw_ids: Vec<(String, String)>,
    /// Every release image, by release and then position.
    pub images: Vec<ImageRow>,
    /// Every release, yanked ones included.
    pub releases: Vec<ReleaseRow>,
    /// Envelopes by release id: of the releases that are not yanked and
    /// not among the known ones, and possibly of others too (when many are
    /// wanted, all of the releases that are not yanked).
    pub envelopes: HashMap<i64, Vec<u8>>,
    /// The rollouts that decide who is offered a release
    /// ([`super::rollouts::deciding`]).
    pub rollouts: Vec<super::rollouts::RolloutRow>,
    /// Every device group.
    pub groups: Vec<super::groups::GroupRow>,
}

/// Reads the catalogue, with the envelopes of the releases that are not
/// yanked and whose ids are not in `known`.
#[tracing::instrument(skip(db, known), fields(known = known.len()))]
pub async fn load_catalogue(db: &Db, known: &HashSet<i64>) -> Result<CatalogueRows, super::Error> {
    let mut tx = db.begin_read().await?;

    let product_lines: Vec<LineRow> = on!(&mut tx, conn => sqlx::query_as("SELECT id, name, kind, support_months, support_justification FROM product_lines")
            .fetch_all(conn)
            .await)?;

    let models: Vec<ModelRow> = on!(&mut tx, conn => sqlx::query_as("SELECT id, name, product_line, eol, support_months, support_justification FROM models")
            .fetch_all(conn)
            .await)?;

    let hw_ids: Vec<(String, String)> = on!(&mut tx, conn => sqlx::query_as("SELECT hw_id, model_id FROM model_hw_ids")
        .fetch_all(conn)
        .await)?;

    let images: Vec<ImageRow> = on!(&mut tx, conn => sqlx::query_as(
        "SELECT release_id, name, target, sha256, length FROM release_images
         ORDER BY release_id, position",
    )
    .fetch_all(conn)
    .await)?;

    let releases: Vec<ReleaseRow> = on!(&mut tx, conn => sqlx::query_as(
        "SELECT id, product_line, channel, version, manifest_version, security_counter,
                requires, hw_compat, published_at, free_for_all, yanked_at, kind
         FROM releases",
    )
    .fetch_all(conn)
    .await)?;

    let wanted: Vec<i64> = releases
        .iter()
        .filter(|r| r.yanked_at.is_none() && !known.contains(&r.id))
        .map(|r| r.id)
        .collect();
    let mut envelopes: HashMap<i64, Vec<u8>> = HashMap::new();
    if wanted.len() > BULK_ENVELOPES {
        let all: Vec<(i64, Vec<u8>)> = on!(&mut tx, conn => sqlx::query_as("SELECT id, envelope FROM releases WHERE yanked_at IS NULL")
                .fetch_all(conn)
                .await)?;
        envelopes.extend(all);
    } else {
        for id in &wanted {
            let env: Option<Vec<u8>> = on!(&mut tx, conn => sqlx::query_scalar("SELECT envelope FROM releases WHERE id = $1")
                    .bind(id)
                    .fetch_optional(conn)
                    .await)?;
            if let Some(env) = env {
                envelopes.insert(*id, env);
            }
        }
    }
    let rollouts = super::rollouts::deciding(&mut tx).await?;
    let groups = super::groups::all(&mut tx).await?;
    tx.commit().await?;
    Ok(CatalogueRows {
        product_lines,
        models,
        hw_ids,
        images,
        releases,
        envelopes,
        rollouts,
        groups,
    })
}

/// A release row, its image rows and its envelope bytes.
pub type OneRelease = (ReleaseRow, Vec<ImageRow>, Vec<u8>);

/// One release as the snapshot would read it, yanked or not, with its
/// images (in signed order) and its envelope: for a device that asks for a
/// version by name, which the snapshot may leave out (yanked releases).
#[tracing::instrument(skip(db))]
pub async fn load_release(
    db: &Db,
    product_line: &str,
    channel: &str,
    version: &str,
) -> Result<Option<OneRelease>, super::Error> {
    let mut tx = db.begin_read().await?;
    let row: Option<ReleaseRow> = on!(&mut tx, conn => sqlx::query_as(
        "SELECT id, product_line, channel, version, manifest_version, security_counter,
                requires, hw_compat, published_at, free_for_all, yanked_at, kind
         FROM releases WHERE product_line = $1 AND channel = $2 AND version = $3",
    )
    .bind(product_line)
    .bind(channel)
    .bind(version)
    .fetch_optional(conn)
    .await)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let envelope: Vec<u8> = on!(&mut tx, conn => sqlx::query_scalar("SELECT envelope FROM releases WHERE id = $1")
        .bind(row.id)
        .fetch_one(conn)
        .await)?;
    let images: Vec<ImageRow> = on!(&mut tx, conn => sqlx::query_as(
        "SELECT release_id, name, target, sha256, length FROM release_images
         WHERE release_id = $1 ORDER BY position",
    )
    .bind(row.id)
    .fetch_all(conn)
    .await)?;
    tx.commit().await?;
    Ok(Some((row, images, envelope)))
}
