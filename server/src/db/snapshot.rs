//! Reads the catalogue for the check path's in-memory snapshot
//! ([`crate::snapshot::Catalogue`]).
//!
//! All reads run in one read transaction, so a snapshot never mixes two
//! states of the catalogue (WAL readers see one consistent point in time).
//! Envelopes are immutable once stored, so the previous snapshot's are
//! reused and only new releases' bytes are read. A malformed row (which
//! only a hand edit of the database can produce: the publish path checks
//! every field) is logged and left out rather than failing every check.
//! This module only reads.

use std::collections::HashMap;

use time::{Date, OffsetDateTime};

use super::Db;
use crate::snapshot::{
    Catalogue, ImageEntry, LoadedRelease, ModelInfo, ProductKind, ProductLineInfo, ReleaseEntry,
    SharedRaw,
};

/// Above this many unknown envelopes (a cold start), read them all in one
/// query rather than one query each.
const BULK_ENVELOPES: usize = 64;

type ReleaseTuple = (
    i64,
    String,
    String,
    String,
    i64,
    i64,
    Option<String>,
    String,
    OffsetDateTime,
    bool,
    Option<OffsetDateTime>,
);

/// Loads the catalogue at `generation`, reusing `known` envelopes by
/// release id.
#[tracing::instrument(skip(db, known), fields(known = known.len()))]
pub async fn load_catalogue(
    db: &Db,
    generation: u64,
    known: &HashMap<i64, SharedRaw>,
) -> Result<Catalogue, super::Error> {
    let mut tx = db.begin_read().await?;

    let lines: Vec<(String, String, String)> = on!(&mut tx, conn => sqlx::query_as("SELECT id, name, kind FROM product_lines")
            .fetch_all(conn)
            .await)?;
    let product_lines = lines
        .into_iter()
        .filter_map(|(id, name, kind)| match ProductKind::parse(&kind) {
            Some(kind) => Some(ProductLineInfo { id, name, kind }),
            None => {
                tracing::error!(product_line = %id, kind = %kind, "unknown product kind; line left out");
                None
            }
        })
        .collect();

    let models: Vec<(String, String, String, Option<Date>)> = on!(&mut tx, conn => sqlx::query_as("SELECT id, name, product_line, eol FROM models")
            .fetch_all(conn)
            .await)?;
    let models = models
        .into_iter()
        .map(|(id, name, product_line, eol)| ModelInfo {
            id,
            name,
            product_line,
            eol,
        })
        .collect();

    let hw_ids: Vec<(String, String)> = on!(&mut tx, conn => sqlx::query_as("SELECT hw_id, model_id FROM model_hw_ids")
        .fetch_all(conn)
        .await)?;

    let mut images: HashMap<i64, Vec<ImageEntry>> = HashMap::new();
    let image_rows: Vec<(i64, String, String, String, i64)> = on!(&mut tx, conn => sqlx::query_as(
        "SELECT release_id, name, target, sha256, length FROM release_images
         ORDER BY release_id, position",
    )
    .fetch_all(conn)
    .await)?;
    let mut bad_images = Vec::new();
    for (release_id, name, target, sha256, length) in image_rows {
        match (sha256.parse(), u64::try_from(length)) {
            (Ok(sha256), Ok(length)) => images.entry(release_id).or_default().push(ImageEntry {
                name,
                target,
                length,
                sha256,
            }),
            _ => bad_images.push(release_id),
        }
    }

    let rows: Vec<ReleaseTuple> = on!(&mut tx, conn => sqlx::query_as(
        "SELECT id, product_line, channel, version, manifest_version, security_counter,
                requires, hw_compat, published_at, free_for_all, yanked_at
         FROM releases",
    )
    .fetch_all(conn)
    .await)?;

    let wanted: Vec<i64> = rows
        .iter()
        .filter(|r| r.10.is_none() && !known.contains_key(&r.0))
        .map(|r| r.0)
        .collect();
    let mut fetched: HashMap<i64, Vec<u8>> = HashMap::new();
    if wanted.len() > BULK_ENVELOPES {
        let all: Vec<(i64, Vec<u8>)> = on!(&mut tx, conn => sqlx::query_as("SELECT id, envelope FROM releases WHERE yanked_at IS NULL")
                .fetch_all(conn)
                .await)?;
        fetched.extend(all);
    } else {
        for id in &wanted {
            let env: Option<Vec<u8>> = on!(&mut tx, conn => sqlx::query_scalar("SELECT envelope FROM releases WHERE id = $1")
                    .bind(id)
                    .fetch_optional(conn)
                    .await)?;
            if let Some(env) = env {
                fetched.insert(*id, env);
            }
        }
    }
    tx.commit().await?;

    let mut releases = Vec::with_capacity(rows.len());
    for row in rows {
        let id = row.0;
        if bad_images.contains(&id) {
            tracing::error!(
                release_id = id,
                "release has a malformed image row; left out"
            );
            continue;
        }
        let envelope = match known.get(&id) {
            Some(e) => Some(e.clone()),
            None => match fetched.get(&id).map(|b| SharedRaw::from_bytes(b)) {
                Some(Ok(e)) => Some(e),
                Some(Err(e)) => {
                    tracing::error!(release_id = id, error = %e, "stored envelope unusable; release left out");
                    continue;
                }
                // Yanked: the envelope is not needed.
                None => None,
            },
        };
        match release(row, envelope, images.remove(&id).unwrap_or_default()) {
            Ok(Some(r)) => releases.push(r),
            Ok(None) => {}
            Err(e) => {
                tracing::error!(release_id = id, error = %e, "malformed release row; left out")
            }
        }
    }
    Ok(Catalogue::assemble(
        generation,
        product_lines,
        models,
        hw_ids,
        releases,
    ))
}

/// Parses one release row; `Ok(None)` for a yanked release without its
/// envelope (the snapshot drops it anyway).
fn release(
    row: ReleaseTuple,
    envelope: Option<SharedRaw>,
    images: Vec<ImageEntry>,
) -> Result<Option<LoadedRelease>, String> {
    let (
        id,
        product_line,
        channel,
        version,
        manifest_version,
        security_counter,
        requires,
        hw_compat,
        published_at,
        free_for_all,
        yanked_at,
    ) = row;
    let Some(envelope) = envelope else {
        return Ok(None);
    };
    let version = version
        .parse()
        .map_err(|e| format!("version {version:?}: {e}"))?;
    let requires = requires
        .map(|r| r.parse().map_err(|e| format!("requires {r:?}: {e}")))
        .transpose()?;
    let hw_compat: Vec<String> =
        serde_json::from_str(&hw_compat).map_err(|e| format!("hw_compat: {e}"))?;
    Ok(Some(LoadedRelease {
        entry: ReleaseEntry {
            id,
            product_line,
            channel,
            version,
            manifest_version: u64::try_from(manifest_version)
                .map_err(|_| "negative manifest_version".to_string())?,
            security_counter: u64::try_from(security_counter)
                .map_err(|_| "negative security_counter".to_string())?,
            requires,
            hw_compat,
            published_at,
            free_for_all,
            envelope,
            images,
        },
        yanked_at,
    }))
}
