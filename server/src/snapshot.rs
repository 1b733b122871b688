//! In-memory views for the update-check hot path.
//!
//! Devices poll by the million; a check must not need several database
//! round trips. The catalogue (product lines, models, releases) is held as
//! an immutable [`Catalogue`] snapshot behind an `Arc`, swapped whole:
//!
//! * writers call `App::catalogue_changed` after their commit, which bumps
//!   the cell's generation ([`CatalogueCell::changed`]); the next check
//!   sees that its snapshot is older and reloads ([`current`]). One reload
//!   runs at a time; requests that find a reload under way answer from the
//!   old snapshot meanwhile instead of piling onto the database, and a
//!   failed reload (database down) keeps the old snapshot in service;
//! * a background task ([`spawn_refresher`]) reloads every
//!   [`REFRESH_INTERVAL`], so changes made through other replicas arrive
//!   too. It does not take the request-side reload lock, and a snapshot is
//!   only ever replaced by one loaded at the same or a newer generation.
//!   The same task picks up root rotations other replicas stored
//!   ([`crate::trust::refresh`]), trusting each only once it verifies
//!   against the latest root already trusted.
//!
//! The snapshot is built here from the rows the database layer reads
//! ([`crate::db::snapshot::load_catalogue`]). A malformed row (which only a
//! hand edit of the database can produce: the publish path checks every
//! field) is logged and left out rather than failing every check.
//!
//! Per-device facts are cached in [`Caches::device_facts`] for
//! `device_cache_ttl_secs` (an hour by default, about the poll interval of
//! a device, so a warm fleet rarely misses) and dropped by
//! `App::device_changed` ([`device_facts`]): at once on the replica that
//! made the change, and within two seconds (`invalidation::POLL_INTERVAL`)
//! on the others, through the invalidation log ([`crate::invalidation`]).
//! Token lookups work the same way (`token_cache_ttl_secs`, revocation).
//!
//! With warm caches a check therefore reads no database row: the token is
//! in the token cache, the device facts in `device_facts`, the catalogue
//! here. This module must never hand out a snapshot that is modified after
//! publication (snapshots are immutable; a change builds a new one), and
//! never lets a stale generation overwrite a newer one.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use crate::caches::Caches;
use crate::db::Db;
use crate::db::groups::GroupRow;
use crate::db::rollouts::RolloutRow;
use crate::db::snapshot::{CatalogueRows, ReleaseRow};
use crate::domain::catalogue::{
    Catalogue, GroupEntry, ImageEntry, LoadedRelease, ModelInfo, ProductKind, ProductLineInfo,
    ReleaseEntry, SharedRaw,
};
use crate::domain::facts::DeviceFacts;
use crate::domain::group::parse_filter;
use crate::domain::rollout::{RolloutEntry, RolloutState};
use crate::domain::support::SupportPolicy;
use crate::domain::window::{Window, WindowSpec};
use crate::trust::TrustState;
use firmup_client::ReleaseKind;

/// How often the background task reloads the catalogue and the trust
/// chain, so that changes made through other replicas arrive.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(10);

/// The current snapshot, the generation it should have, and the
/// request-side reload lock.
#[derive(Debug, Default)]
pub struct CatalogueCell {
    current: RwLock<Arc<Catalogue>>,
    reloading: tokio::sync::Mutex<()>,
    /// Bumped on every catalogue or release change ([`CatalogueCell::changed`]);
    /// a snapshot of an older generation is stale.
    generation: AtomicU64,
}

impl CatalogueCell {
    /// A cell holding `initial`, current at its generation.
    pub fn new(initial: Catalogue) -> CatalogueCell {
        CatalogueCell {
            generation: AtomicU64::new(initial.generation),
            current: RwLock::new(Arc::new(initial)),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    /// The generation the catalogue is at: a snapshot loaded before is
    /// stale.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Marks the catalogue changed (call after the commit): the next
    /// request reloads.
    pub fn changed(&self) {
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// The snapshot in use. A poisoned lock only means a panic while it was
    /// held; the `Arc` inside is always whole, so reading on is safe.
    pub fn get(&self) -> Arc<Catalogue> {
        self.current
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Publishes `fresh` unless a snapshot of a newer generation is already
    /// in place (a slow load must not undo a faster, newer one).
    pub fn store(&self, fresh: Arc<Catalogue>) -> bool {
        let mut cur = self.current.write().unwrap_or_else(|e| e.into_inner());
        if fresh.generation >= cur.generation {
            *cur = fresh;
            true
        } else {
            false
        }
    }
}

/// Reads the catalogue from the database and builds the snapshot of
/// `generation`, reusing `previous`'s envelopes (an envelope is immutable
/// once stored, so only new releases need their bytes read).
pub async fn read(
    db: &Db,
    generation: u64,
    previous: &Catalogue,
) -> Result<Catalogue, crate::db::Error> {
    let known = previous.envelopes();
    let ids = known.keys().copied().collect();
    let rows = crate::db::snapshot::load_catalogue(db, &ids).await?;
    Ok(from_rows(generation, rows, &known))
}

/// Builds the snapshot of `generation` from the rows read, taking the
/// envelopes of `known` releases from there: parses what the database
/// holds as text and leaves out (logged) what does not parse.
fn from_rows(generation: u64, rows: CatalogueRows, known: &HashMap<i64, SharedRaw>) -> Catalogue {
    let CatalogueRows {
        product_lines,
        models,
        hw_ids,
        images: image_rows,
        releases: rows,
        envelopes: fetched,
        rollouts: rollout_rows,
        groups: group_rows,
    } = rows;
    // The support period a line declares, for its models that declare none.
    let line_support: HashMap<String, (u32, Option<String>)> = product_lines
        .iter()
        .filter_map(|l| {
            let months = u32::try_from(l.support_months?).ok()?;
            Some((l.id.clone(), (months, l.support_justification.clone())))
        })
        .collect();
    let product_lines = product_lines
        .into_iter()
        .filter_map(|l| match ProductKind::parse(&l.kind) {
            Some(kind) => Some(ProductLineInfo {
                id: l.id,
                name: l.name,
                kind,
            }),
            None => {
                tracing::error!(product_line = %l.id, kind = %l.kind, "unknown product kind; line left out");
                None
            }
        })
        .collect();

    let models = models
        .into_iter()
        .map(|m| ModelInfo {
            id: m.id,
            name: m.name,
            support: SupportPolicy::resolve(
                m.support_months
                    .and_then(|n| u32::try_from(n).ok())
                    .map(|n| (n, m.support_justification)),
                line_support.get(&m.product_line).cloned(),
            ),
            product_line: m.product_line,
            eol: m.eol,
        })
        .collect();

    let mut images: HashMap<i64, Vec<ImageEntry>> = HashMap::new();
    let mut bad_images = Vec::new();
    for i in image_rows {
        let release_id = i.release_id;
        match image_entry(i) {
            Some(entry) => images.entry(release_id).or_default().push(entry),
            None => bad_images.push(release_id),
        }
    }

    let mut releases = Vec::with_capacity(rows.len());
    for row in rows {
        let id = row.id;
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
    let rollouts = rollout_rows
        .into_iter()
        .filter_map(|r| {
            let id = r.id.clone();
            rollout_entry(r)
                .map_err(|e| tracing::error!(rollout = %id, error = %e, "malformed rollout row; left out"))
                .ok()
        })
        .collect();
    let groups = group_rows
        .into_iter()
        .filter_map(|g| {
            let name = g.name.clone();
            group_entry(g)
                .map_err(
                    |e| tracing::error!(group = %name, error = %e, "malformed group row; left out"),
                )
                .ok()
        })
        .collect();
    Catalogue::assemble(generation, product_lines, models, hw_ids, releases)
        .with_rollouts(rollouts, groups)
}

/// Parses a stored rollout for the check path.
pub fn rollout_entry(r: RolloutRow) -> Result<RolloutEntry, String> {
    let phases: Vec<u8> =
        serde_json::from_str(&r.phases).map_err(|e| format!("phases {:?}: {e}", r.phases))?;
    let state = RolloutState::parse(&r.state).ok_or_else(|| format!("state {:?}", r.state))?;
    let phase = usize::try_from(r.phase)
        .ok()
        .filter(|p| *p < phases.len())
        .ok_or_else(|| format!("phase {} of {} phases", r.phase, phases.len()))?;
    Ok(RolloutEntry {
        id: r.id,
        release_id: r.release_id,
        group: r.group_name,
        phases,
        phase,
        state,
    })
}

/// Parses a stored group for the check path.
pub fn group_entry(g: GroupRow) -> Result<GroupEntry, String> {
    let filter = g
        .filter
        .as_deref()
        .map(parse_filter)
        .transpose()
        .map_err(|e| format!("filter: {e}"))?;
    let window = g
        .maintenance_window
        .as_deref()
        .map(|w| {
            let spec: WindowSpec = serde_json::from_str(w).map_err(|e| format!("window: {e}"))?;
            Window::parse(spec).map_err(|e| format!("window: {e}"))
        })
        .transpose()?;
    Ok(GroupEntry {
        name: g.name,
        filter,
        window,
    })
}

/// Parses one stored image row; `None` when its digest or length is
/// malformed.
fn image_entry(i: crate::db::snapshot::ImageRow) -> Option<ImageEntry> {
    Some(ImageEntry {
        sha256: i.sha256.parse().ok()?,
        length: u64::try_from(i.length).ok()?,
        name: i.name,
        target: i.target,
    })
}

/// One release read by name ([`crate::db::snapshot::load_release`]),
/// parsed as the snapshot parses its releases, yanked or not; with when it
/// was yanked.
pub fn release_entry(
    row: ReleaseRow,
    images: Vec<crate::db::snapshot::ImageRow>,
    envelope: &[u8],
) -> Result<(ReleaseEntry, Option<time::OffsetDateTime>), String> {
    let id = row.id;
    let envelope = SharedRaw::from_bytes(envelope).map_err(|e| format!("envelope: {e}"))?;
    let images = images
        .into_iter()
        .map(image_entry)
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| format!("release {id}: malformed image row"))?;
    let loaded = release(row, Some(envelope), images)?
        .ok_or_else(|| format!("release {id}: no envelope"))?;
    Ok((loaded.entry, loaded.yanked_at))
}

/// Parses one release row; `Ok(None)` for a yanked release without its
/// envelope (the snapshot drops it anyway).
fn release(
    row: ReleaseRow,
    envelope: Option<SharedRaw>,
    images: Vec<ImageEntry>,
) -> Result<Option<LoadedRelease>, String> {
    let ReleaseRow {
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
        kind,
    } = row;
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
            kind: ReleaseKind::parse(&kind).ok_or_else(|| format!("kind {kind:?}"))?,
            envelope,
            images,
        },
        yanked_at,
    }))
}

/// Loads a new snapshot from the database, reusing `previous`'s envelopes.
async fn load(
    db: &Db,
    cell: &CatalogueCell,
    previous: &Catalogue,
) -> Result<Arc<Catalogue>, crate::db::Error> {
    // Read the generation BEFORE the database: a change committed after
    // this read bumps the generation again, so it is never missed.
    let generation = cell.generation();
    let started = std::time::Instant::now();
    let fresh = read(db, generation, previous).await?;
    tracing::debug!(
        generation,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "catalogue snapshot loaded"
    );
    Ok(Arc::new(fresh))
}

/// The catalogue snapshot for a request: the current one, reloaded first if
/// a writer changed the catalogue since it was loaded. While another
/// request reloads, or when the reload fails, this one answers from the
/// previous snapshot; it never fails.
pub async fn current(db: &Db, cell: &CatalogueCell) -> Arc<Catalogue> {
    let snap = cell.get();
    if snap.generation >= cell.generation() {
        return snap;
    }
    let Ok(_guard) = cell.reloading.try_lock() else {
        return snap;
    };
    // Another request may have finished a reload while we took the lock.
    let snap = cell.get();
    if snap.generation >= cell.generation() {
        return snap;
    }
    match load(db, cell, &snap).await {
        Ok(fresh) => {
            cell.store(fresh.clone());
            fresh
        }
        // A database outage must not take the warm check path down with it:
        // answer from the last good snapshot (as stale as another replica's
        // at worst) and let the next request try again.
        Err(e) => {
            tracing::warn!(error = %e, "catalogue reload failed; serving the previous snapshot");
            snap
        }
    }
}

/// Reloads unconditionally (for data that other replicas changed), waiting
/// for the database; used by the background refresher and after a snapshot
/// turned out not to know a model a device row names.
pub async fn reload(db: &Db, cell: &CatalogueCell) -> Result<Arc<Catalogue>, crate::db::Error> {
    let snap = cell.get();
    let fresh = load(db, cell, &snap).await?;
    cell.store(fresh.clone());
    Ok(cell.get())
}

/// Starts the task that reloads the catalogue in `cell` and picks up root
/// rotations stored in `db` into `trust` every [`REFRESH_INTERVAL`]. It
/// holds only weak references to both and ends when either is dropped
/// (with the app).
pub fn spawn_refresher(db: Db, cell: Weak<CatalogueCell>, trust: Weak<RwLock<TrustState>>) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval_at(
            tokio::time::Instant::now() + REFRESH_INTERVAL,
            REFRESH_INTERVAL,
        );
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let (Some(cell), Some(trust)) = (cell.upgrade(), trust.upgrade()) else {
                return;
            };
            if let Err(e) = reload(&db, &cell).await {
                // Keep serving the previous snapshot; try again next tick.
                tracing::warn!(error = %e, "periodic catalogue reload failed");
            }
            if let Err(e) = crate::trust::refresh(&db, &trust).await {
                tracing::warn!(error = %e, "reading stored trust roots failed");
            }
        }
    });
}

/// The facts about one device: from the cache, else from the database
/// (then cached, see [`Caches::get_or_fill`]). `None` for an unknown
/// serial.
///
/// Unknown serials are not cached: a check names the serial its token is
/// bound to, so only a device token issued for a serial that was never
/// provisioned (an operator mistake) reaches the database this way; a
/// flood of bad tokens stops at the token cache first.
pub async fn device_facts(
    db: &Db,
    caches: &Caches,
    serial: &str,
) -> Result<Option<Arc<DeviceFacts>>, crate::db::Error> {
    caches
        .get_or_fill(("devices", &caches.device_facts), serial, || async {
            Ok(crate::db::devices::load_device_facts(db, serial)
                .await?
                .map(Arc::new))
        })
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn release_row(id: i64, version: &str, yanked: bool) -> ReleaseRow {
        ReleaseRow {
            id,
            product_line: "enc".into(),
            channel: "stable".into(),
            version: version.into(),
            manifest_version: 1,
            security_counter: 0,
            requires: None,
            hw_compat: r#"["hw-1"]"#.into(),
            published_at: time::OffsetDateTime::UNIX_EPOCH,
            free_for_all: false,
            yanked_at: yanked.then_some(time::OffsetDateTime::UNIX_EPOCH),
            kind: "feature".into(),
        }
    }

    fn image_row(release_id: i64, sha256: &str, length: i64) -> crate::db::snapshot::ImageRow {
        crate::db::snapshot::ImageRow {
            release_id,
            name: format!("fw-{release_id}.img"),
            target: "rootfs".into(),
            sha256: sha256.into(),
            length,
        }
    }

    /// Rows only a hand edit can make are left out, one by one; the rest
    /// of the catalogue is served.
    #[test]
    fn malformed_rows_are_left_out_and_known_envelopes_reused() {
        use crate::db::snapshot::{LineRow, ModelRow};
        let good_sha = firmup_client::Sha256Digest::of(b"image").to_hex();
        let rows = CatalogueRows {
            product_lines: vec![
                LineRow {
                    id: "enc".into(),
                    name: "Encoders".into(),
                    kind: "hardware".into(),
                    support_months: None,
                    support_justification: None,
                },
                LineRow {
                    id: "odd".into(),
                    name: "Odd".into(),
                    kind: "firmware".into(),
                    support_months: None,
                    support_justification: None,
                },
            ],
            models: vec![ModelRow {
                id: "E4K".into(),
                name: "Encoder 4K".into(),
                product_line: "enc".into(),
                eol: None,
                support_months: None,
                support_justification: None,
            }],
            hw_ids: vec![("hw-1".into(), "E4K".into())],
            images: vec![
                image_row(1, &good_sha, 5),
                image_row(2, "not-a-digest", 5),
                image_row(3, &good_sha, -1),
            ],
            releases: vec![
                release_row(1, "1.0.0", false),
                release_row(2, "1.1.0", false),
                release_row(3, "1.2.0", false),
                release_row(4, "not.a.version", false),
                release_row(5, "1.3.0", false),
                release_row(6, "1.4.0", true),
                release_row(7, "1.5.0", false),
            ],
            envelopes: [
                (2, b"{}".to_vec()),
                (3, b"{}".to_vec()),
                (4, b"{}".to_vec()),
                (5, b"not json".to_vec()),
                (7, b"{\"seven\": 7}\n".to_vec()),
            ]
            .into_iter()
            .collect(),
            ..CatalogueRows::default()
        };
        let known: HashMap<i64, SharedRaw> =
            [(1, SharedRaw::from_bytes(b"{\"known\": 1}").unwrap())].into();
        let c = from_rows(9, rows, &known);
        assert_eq!(c.generation, 9);
        assert!(c.product_line("enc").is_some());
        assert!(c.product_line("odd").is_none(), "unknown kind left out");
        assert_eq!(
            c.model_for_hw_id("hw-1").map(|m| m.id.as_str()),
            Some("E4K")
        );
        let served: Vec<(i64, &str)> = c
            .releases("enc", "stable")
            .iter()
            .map(|r| (r.id, r.envelope.get()))
            .collect();
        // 2 and 3: malformed images; 4: version; 5: envelope; 6: yanked.
        assert_eq!(served, [(7, "{\"seven\": 7}"), (1, "{\"known\": 1}")]);
        assert_eq!(c.releases("enc", "stable")[1].images.len(), 1);
    }

    #[test]
    fn store_never_replaces_a_newer_generation() {
        let cell = CatalogueCell::new(Catalogue::default());
        assert!(cell.store(Arc::new(Catalogue::assemble(
            5,
            vec![],
            vec![],
            vec![],
            vec![]
        ))));
        assert!(!cell.store(Arc::new(Catalogue::assemble(
            4,
            vec![],
            vec![],
            vec![],
            vec![]
        ))));
        assert_eq!(cell.get().generation, 5);
        assert!(cell.store(Arc::new(Catalogue::assemble(
            5,
            vec![],
            vec![],
            vec![],
            vec![]
        ))));
    }
}
