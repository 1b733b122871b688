//! Releases: signed manifests accepted for a product line and channel, the
//! images each installs, and their yank and free-for-all flags.
//!
//! The envelope is stored exactly as it was submitted and never rebuilt
//! from the other columns: those are copies of signed fields, for queries
//! only. This module must never change a stored envelope or payload digest.

use sqlx::FromRow;
use time::OffsetDateTime;

use super::{Db, Tx};

/// A stored release, without its envelope.
#[derive(Debug, Clone, FromRow)]
pub struct ReleaseRow {
    /// Row id.
    pub id: i64,
    /// Product line.
    pub product_line: String,
    /// Channel (from the signed manifest).
    pub channel: String,
    /// Semver version as text (canonical form).
    pub version: String,
    /// Replay counter from the manifest.
    pub manifest_version: i64,
    /// Anti-rollback counter from the manifest.
    pub security_counter: i64,
    /// Minimum installed version, if any.
    pub requires: Option<String>,
    /// JSON array of hardware ids.
    pub hw_compat: String,
    /// Hex sha256 of the signed payload (not of the envelope, so adding a
    /// co-signature does not make it another release).
    pub payload_sha256: String,
    /// Inline release notes.
    pub release_notes: Option<String>,
    /// Offered to every device regardless of entitlement.
    pub free_for_all: bool,
    /// When it was published.
    pub published_at: OffsetDateTime,
    /// Label of the token that published it.
    pub published_by: String,
    /// When it was yanked, if it is.
    pub yanked_at: Option<OffsetDateTime>,
    /// Why it was yanked.
    pub yank_reason: Option<String>,
    /// `security`, `feature` or `mixed`, from the signed manifest.
    pub kind: String,
    /// The signed advisory as JSON (security and mixed releases).
    pub advisory: Option<String>,
    /// Why a mixed release's fix could not ship alone.
    pub mixed_reason: Option<String>,
    /// The signed SBOM reference: format, hex sha256 and length.
    pub sbom_format: Option<String>,
    /// Hex sha256 of the SBOM the manifest signs.
    pub sbom_sha256: Option<String>,
    /// Length of the SBOM the manifest signs.
    pub sbom_length: Option<i64>,
    /// When the SBOM's bytes were stored (`None`: not uploaded yet).
    pub sbom_stored_at: Option<OffsetDateTime>,
}

/// One image of a stored release.
#[derive(Debug, Clone, FromRow)]
pub struct ReleaseImageRow {
    /// The release's row id.
    pub release_id: i64,
    /// Image name from the manifest.
    pub name: String,
    /// Target slot or component.
    pub target: String,
    /// Hex sha256.
    pub sha256: String,
    /// Signed length in bytes.
    pub length: i64,
}

/// A release to insert; every field comes from a verified manifest except
/// the publishing facts.
#[derive(Debug, Clone)]
pub struct NewRelease<'a> {
    /// Product line.
    pub product_line: &'a str,
    /// Channel.
    pub channel: &'a str,
    /// Canonical semver text.
    pub version: &'a str,
    /// Replay counter.
    pub manifest_version: i64,
    /// Anti-rollback counter.
    pub security_counter: i64,
    /// Minimum installed version.
    pub requires: Option<&'a str>,
    /// JSON array text of hardware ids.
    pub hw_compat: &'a str,
    /// The envelope exactly as submitted.
    pub envelope: &'a [u8],
    /// Hex sha256 of the signed payload.
    pub payload_sha256: &'a str,
    /// Inline release notes.
    pub release_notes: Option<&'a str>,
    /// Free for every device.
    pub free_for_all: bool,
    /// Publication time.
    pub published_at: OffsetDateTime,
    /// Label of the publishing token.
    pub published_by: &'a str,
    /// `security`, `feature` or `mixed`.
    pub kind: &'a str,
    /// The signed advisory as JSON text.
    pub advisory: Option<&'a str>,
    /// The CVE ids of the advisory.
    pub cves: &'a [String],
    /// Why a mixed release's fix could not ship alone.
    pub mixed_reason: Option<&'a str>,
    /// The signed SBOM reference: format, hex sha256, length.
    pub sbom: Option<(&'a str, &'a str, i64)>,
}

const COLUMNS: &str = "id, product_line, channel, version, manifest_version, security_counter, \
     requires, hw_compat, payload_sha256, release_notes, free_for_all, published_at, \
     published_by, yanked_at, yank_reason, kind, advisory, mixed_reason, sbom_format, \
     sbom_sha256, sbom_length, sbom_stored_at";

/// Whether the product line exists in the catalogue.
#[tracing::instrument(skip(db))]
pub async fn product_line_exists(db: &Db, id: &str) -> Result<bool, super::Error> {
    let row: Option<(i32,)> = on!(db, conn => sqlx::query_as("SELECT 1 FROM product_lines WHERE id = $1")
        .bind(id)
        .fetch_optional(conn)
        .await)?;
    Ok(row.is_some())
}

/// The release `version` of `product_line` on `channel`.
#[tracing::instrument(skip(exec))]
pub async fn find(
    exec: impl Into<super::Exec<'_>>,
    product_line: &str,
    channel: &str,
    version: &str,
) -> Result<Option<ReleaseRow>, super::Error> {
    on!(exec, conn => sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM releases WHERE product_line = $1 AND channel = $2 AND version = $3"
    ))
    .bind(product_line)
    .bind(channel)
    .bind(version)
    .fetch_optional(conn)
    .await)
}

/// Every release of a product line, in no particular order (callers sort
/// by semver, which SQL text ordering gets wrong: 2.10.0 < 2.9.0 as text).
#[tracing::instrument(skip(db))]
pub async fn list(db: &Db, product_line: &str) -> Result<Vec<ReleaseRow>, super::Error> {
    on!(db, conn => sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM releases WHERE product_line = $1"
    ))
    .bind(product_line)
    .fetch_all(conn)
    .await)
}

/// The images of one release, by name.
#[tracing::instrument(skip(db))]
pub async fn images_of(db: &Db, release_id: i64) -> Result<Vec<ReleaseImageRow>, super::Error> {
    on!(db, conn => sqlx::query_as(
        "SELECT release_id, name, target, sha256, length FROM release_images
         WHERE release_id = $1 ORDER BY name",
    )
    .bind(release_id)
    .fetch_all(conn)
    .await)
}

/// The images of every release of a product line (one query for a list).
#[tracing::instrument(skip(db))]
pub async fn images_of_line(
    db: &Db,
    product_line: &str,
) -> Result<Vec<ReleaseImageRow>, super::Error> {
    on!(db, conn => sqlx::query_as(
        "SELECT ri.release_id, ri.name, ri.target, ri.sha256, ri.length
         FROM release_images ri JOIN releases r ON r.id = ri.release_id
         WHERE r.product_line = $1 ORDER BY ri.release_id, ri.name",
    )
    .bind(product_line)
    .fetch_all(conn)
    .await)
}

/// The stored envelope of a release, byte for byte.
#[tracing::instrument(skip(db))]
pub async fn envelope(db: &Db, release_id: i64) -> Result<Option<Vec<u8>>, super::Error> {
    let row: Option<(Vec<u8>,)> = on!(db, conn => sqlx::query_as("SELECT envelope FROM releases WHERE id = $1")
        .bind(release_id)
        .fetch_optional(conn)
        .await)?;
    Ok(row.map(|(e,)| e))
}

/// The highest manifest_version on a product line and channel, ignoring
/// the release `except` (the one being inserted, when checking inside the
/// inserting transaction).
#[tracing::instrument(skip(exec))]
pub async fn max_manifest_version(
    exec: impl Into<super::Exec<'_>>,
    product_line: &str,
    channel: &str,
    except: Option<i64>,
) -> Result<Option<(i64, String)>, super::Error> {
    on!(exec, conn => sqlx::query_as(
        "SELECT manifest_version, version FROM releases
         WHERE product_line = $1 AND channel = $2 AND id != $3
         ORDER BY manifest_version DESC LIMIT 1",
    )
    .bind(product_line)
    .bind(channel)
    .bind(except.unwrap_or(-1))
    .fetch_optional(conn)
    .await)
}

/// The versions of every release on a product line and channel but the
/// release `except`, as stored.
#[tracing::instrument(skip(exec))]
pub async fn versions_except(
    exec: impl Into<super::Exec<'_>>,
    product_line: &str,
    channel: &str,
    except: i64,
) -> Result<Vec<String>, super::Error> {
    let rows: Vec<(String,)> = on!(exec, conn => sqlx::query_as(
        "SELECT version FROM releases WHERE product_line = $1 AND channel = $2 AND id != $3",
    )
    .bind(product_line)
    .bind(channel)
    .bind(except)
    .fetch_all(conn)
    .await)?;
    Ok(rows.into_iter().map(|(v,)| v).collect())
}

/// Inserts a release row; returns its row id. A second release with the
/// same product line, channel and version fails with a conflict.
async fn insert(tx: &mut Tx, r: &NewRelease<'_>) -> Result<i64, super::Error> {
    on!(&mut *tx, conn => sqlx::query_scalar(
        "INSERT INTO releases (product_line, channel, version, manifest_version, security_counter,
             requires, hw_compat, envelope, payload_sha256, release_notes, free_for_all,
             published_at, published_by, kind, advisory, mixed_reason, sbom_format,
             sbom_sha256, sbom_length)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16,
             $17, $18, $19)
         RETURNING id",
    )
    .bind(r.product_line)
    .bind(r.channel)
    .bind(r.version)
    .bind(r.manifest_version)
    .bind(r.security_counter)
    .bind(r.requires)
    .bind(r.hw_compat)
    .bind(r.envelope)
    .bind(r.payload_sha256)
    .bind(r.release_notes)
    .bind(r.free_for_all)
    .bind(r.published_at)
    .bind(r.published_by)
    .bind(r.kind)
    .bind(r.advisory)
    .bind(r.mixed_reason)
    .bind(r.sbom.map(|s| s.0))
    .bind(r.sbom.map(|s| s.1))
    .bind(r.sbom.map(|s| s.2))
    .fetch_one(conn)
    .await)
}

/// One image of a release to store, in manifest order.
#[derive(Debug, Clone, Copy)]
pub struct NewReleaseImage<'a> {
    /// Image name from the manifest.
    pub name: &'a str,
    /// Target slot or component.
    pub target: &'a str,
    /// Hex sha256 (the `images` row must exist).
    pub sha256: &'a str,
    /// Signed length in bytes.
    pub length: i64,
}

/// What [`store`] did.
#[derive(Debug, Clone)]
pub enum Stored {
    /// The release is new; its row id.
    Inserted(i64),
    /// The same signed payload was already published under this version:
    /// nothing was written (publishing is idempotent).
    AlreadyExists(ReleaseRow),
    /// Another payload holds this version: nothing was written.
    Conflict(ReleaseRow),
}

/// Stores a release and its images in the caller's write transaction,
/// unless the version is already on the channel: then nothing is written
/// and the stored row says whether it is the same payload (an idempotent
/// retry) or another one. The write transaction's lock (see the module
/// docs of `db`) makes the look-up and the insert one step, so two
/// concurrent publishes of one version store one row.
#[tracing::instrument(skip_all, fields(product_line = r.product_line, channel = r.channel, version = r.version))]
pub async fn store(
    tx: &mut Tx,
    r: &NewRelease<'_>,
    images: &[NewReleaseImage<'_>],
) -> Result<Stored, super::Error> {
    if let Some(existing) = find(&mut *tx, r.product_line, r.channel, r.version).await? {
        return Ok(if existing.payload_sha256 == r.payload_sha256 {
            Stored::AlreadyExists(existing)
        } else {
            Stored::Conflict(existing)
        });
    }
    let id = insert(&mut *tx, r).await?;
    for cve in r.cves {
        on!(&mut *tx, conn => sqlx::query(
            "INSERT INTO release_cves (release_id, cve) VALUES ($1, $2)",
        )
        .bind(id)
        .bind(cve)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    }
    for (position, image) in images.iter().enumerate() {
        let position = i64::try_from(position).unwrap_or(i64::MAX);
        on!(&mut *tx, conn => sqlx::query(
            "INSERT INTO release_images (release_id, name, target, sha256, length, position)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(id)
        .bind(image.name)
        .bind(image.target)
        .bind(image.sha256)
        .bind(image.length)
        .bind(position)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    }
    Ok(Stored::Inserted(id))
}

/// Yanks a release; false if it was already yanked.
#[tracing::instrument(skip(tx, reason))]
pub async fn yank(
    tx: &mut Tx,
    release_id: i64,
    at: OffsetDateTime,
    reason: &str,
) -> Result<bool, super::Error> {
    let done = on!(&mut *tx, conn => sqlx::query(
        "UPDATE releases SET yanked_at = $1, yank_reason = $2 WHERE id = $3 AND yanked_at IS NULL",
    )
    .bind(at)
    .bind(reason)
    .bind(release_id)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// Un-yanks a release; false if it was not yanked.
#[tracing::instrument(skip(tx))]
pub async fn unyank(tx: &mut Tx, release_id: i64) -> Result<bool, super::Error> {
    let done = on!(&mut *tx, conn => sqlx::query(
        "UPDATE releases SET yanked_at = NULL, yank_reason = NULL
         WHERE id = $1 AND yanked_at IS NOT NULL",
    )
    .bind(release_id)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// Deletes a release for good, with its image list, its rollouts (and
/// their events), CVE ids, SBOM components and owners' choices. Reports
/// and devices that named it keep their rows with the link cleared:
/// device history is not the release's to take. The image bytes are not
/// touched here (content-addressed, and possibly shared with a promoted
/// copy of the release). False if no such release.
#[tracing::instrument(skip(tx))]
pub async fn delete(tx: &mut Tx, release_id: i64) -> Result<bool, super::Error> {
    for sql in [
        "DELETE FROM release_images WHERE release_id = $1",
        "DELETE FROM rollouts WHERE release_id = $1",
        "UPDATE reports SET release_id = NULL WHERE release_id = $1",
        "UPDATE devices SET offered_release_id = NULL WHERE offered_release_id = $1",
    ] {
        on!(&mut *tx, conn => sqlx::query(sql)
            .bind(release_id)
            .execute(conn)
            .await
            .map(|r| r.rows_affected()))?;
    }
    let done = on!(&mut *tx, conn => sqlx::query("DELETE FROM releases WHERE id = $1")
        .bind(release_id)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(done == 1)
}

/// Sets the free-for-all flag of a release.
#[tracing::instrument(skip(tx))]
pub async fn set_free_for_all(
    tx: &mut Tx,
    release_id: i64,
    free_for_all: bool,
) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query("UPDATE releases SET free_for_all = $1 WHERE id = $2")
        .bind(free_for_all)
        .bind(release_id)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// Moves a release's publication time. For tests (of retention, which
/// runs for years); the server never changes it.
#[doc(hidden)]
#[tracing::instrument(skip(db))]
pub async fn set_published_at(
    db: &Db,
    release_id: i64,
    at: OffsetDateTime,
) -> Result<(), super::Error> {
    on!(db, conn => sqlx::query("UPDATE releases SET published_at = $1 WHERE id = $2")
        .bind(at)
        .bind(release_id)
        .execute(conn)
        .await
        .map(|r| r.rows_affected()))?;
    Ok(())
}

/// How many releases are stored, on every product line and channel, yanked
/// ones included. For tests (that a refused publish stored nothing); the
/// server itself never needs the total.
#[doc(hidden)]
#[tracing::instrument(skip(db))]
pub async fn count(db: &Db) -> Result<i64, super::Error> {
    on!(db, conn => sqlx::query_scalar("SELECT COUNT(*) FROM releases")
        .fetch_one(conn)
        .await)
}
