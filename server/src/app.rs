//! The application state every handler shares, and the background tasks
//! that keep it current: [`App::build`] starts them (`serve` starts the
//! rate limits' sweeper), each given only the database and weak references
//! to the state it touches, and each ends at its first tick after the app
//! is gone.
//!
//! Caches here ([`Caches`]) are kept consistent across replicas by
//! [`crate::invalidation`]: a change drops this replica's entry at once and
//! the other replicas' within `invalidation::POLL_INTERVAL`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use anyhow::Context as _;

use crate::caches::Caches;
use crate::config::Config;
use crate::db::Db;
use crate::db::invalidations::Kind;
use crate::domain::catalogue::Catalogue;
use crate::domain::privacy::Pseudonymiser;
use crate::grants::GrantKey;
use crate::invalidation::Invalidations;
use crate::lastseen::LastSeen;
use crate::ratelimit::RateLimits;
use crate::snapshot::CatalogueCell;
use crate::storage::Storage;
use crate::trust::TrustState;

/// Shared state, behind an `Arc` in every handler.
pub type AppState = Arc<App>;

/// Everything a handler may use.
#[derive(Debug)]
pub struct App {
    /// The database facade (SQL lives in `db/`).
    pub db: Db,
    /// The blob storage facade.
    pub storage: Storage,
    /// The configuration in effect.
    pub config: Config,
    /// Trusted roots; the latest judges publishes. Rotations stored by
    /// other replicas are verified and added by the periodic refresher
    /// ([`crate::trust::refresh`]).
    pub trust: Arc<RwLock<TrustState>>,
    /// Key for download grants.
    pub grants: GrantKey,
    /// Token lookups (cached for `token_cache_ttl_secs`; a revocation drops
    /// them on every replica) and per-device facts for the check path
    /// (cached for `device_cache_ttl_secs`; [`App::device_changed`] drops
    /// them on every replica). See [`crate::invalidation`].
    pub caches: Arc<Caches>,
    /// The cross-replica invalidation log: publisher, applied seq, gaps.
    pub invalidations: Arc<Invalidations>,
    /// The catalogue snapshot the check path reads, and its generation,
    /// bumped on every catalogue or release change (see `snapshot`).
    pub catalogue: Arc<CatalogueCell>,
    /// Buffered last-seen records, written in batches (see `lastseen`).
    pub last_seen: LastSeen,
    /// Per-token and per-address rate limits of the device routes.
    pub rate_limits: Arc<RateLimits>,
    /// Pseudonyms of erased units, and of serials in logs.
    pub pseudonyms: Pseudonymiser,
}

impl App {
    /// Opens the database and storage and loads the trust chain.
    pub async fn build(config: Config) -> anyhow::Result<AppState> {
        create_data_dir(&config.data_dir)?;
        // Before any request: the recorder must exist for counts to stick.
        crate::metrics::handle();
        let db = Db::connect_with(&config.database_url(), config.pool_settings()).await?;
        let storage = match config.s3_location()? {
            Some(location) => {
                let part_size = usize::try_from(config.s3_part_size_bytes)
                    .context("s3_part_size_bytes does not fit in memory")?;
                Storage::s3(location, part_size).await?
            }
            None => Storage::local(config.blob_dir()).await.with_context(|| {
                format!("opening blob directory {}", config.blob_dir().display())
            })?,
        };
        // Leftovers are never served; a store that cannot be listed now
        // (down, say) is cleaned at the next start.
        match storage.clean_partial_uploads().await {
            Ok(0) => {}
            Ok(removed) => tracing::info!(count = removed, "removed interrupted uploads"),
            Err(e) => tracing::warn!(error = %e, "could not clean up interrupted uploads"),
        }
        let trust = load_trust(&db, &config).await?;
        let grants = GrantKey::load(
            config.grant_key.as_deref(),
            config.grant_key_file.as_deref(),
            config.grant_key_accepted.as_deref(),
            &config.data_dir,
        )?;
        // The catalogue starts at generation 1.
        let catalogue = crate::snapshot::read(&db, 1, &Catalogue::default())
            .await
            .context("loading the catalogue")?;
        let last_seen =
            LastSeen::start(db.clone(), Duration::from_millis(config.last_seen_flush_ms));
        // Read before anything is cached: what was written before needs no
        // invalidating here, everything after is polled.
        let applied = crate::db::invalidations::max_seq(&db)
            .await
            .context("reading the cache invalidation log")?;
        let invalidations = Arc::new(Invalidations::start(db.clone(), applied));
        let caches = Arc::new(Caches::new(
            Duration::from_secs(config.device_cache_ttl_secs),
            Duration::from_secs(config.token_cache_ttl_secs),
        ));
        let catalogue = Arc::new(CatalogueCell::new(catalogue));
        let trust = Arc::new(RwLock::new(trust));
        crate::snapshot::spawn_refresher(
            db.clone(),
            Arc::downgrade(&catalogue),
            Arc::downgrade(&trust),
        );
        crate::invalidation::spawn_poller(
            db.clone(),
            Arc::downgrade(&invalidations),
            Arc::downgrade(&caches),
        );
        // Rollouts that soak advance and those that fail pause by
        // themselves; a change reaches this replica's snapshot at once.
        let weak = Arc::downgrade(&catalogue);
        let alive = weak.clone();
        crate::rollouts::spawn_ticker(
            db.clone(),
            move || alive.strong_count() > 0,
            move || {
                if let Some(c) = weak.upgrade() {
                    c.changed();
                }
            },
        );
        let rate_limits = Arc::new(RateLimits::new(&config));
        let pseudonyms = load_pseudonymiser(&config)?;
        crate::retention::spawn_retention(db.clone(), config.retention(), {
            let alive = Arc::downgrade(&catalogue);
            move || alive.strong_count() > 0
        });
        Ok(Arc::new(App {
            rate_limits,
            pseudonyms,
            db,
            storage,
            config,
            trust,
            grants,
            caches,
            invalidations,
            catalogue,
            last_seen,
        }))
    }

    /// Call after any change to product lines, models or releases (in the
    /// same request, after the commit).
    pub fn catalogue_changed(&self) {
        self.catalogue.changed();
    }

    /// Call after any change to one device, its contracts, licences or
    /// grants (after the commit): drops its cached facts on this replica at
    /// once and queues the invalidation for the others, which apply it
    /// within `invalidation::POLL_INTERVAL` of its being written (written
    /// in the background within milliseconds, retried while the database
    /// refuses; see [`crate::invalidation`]).
    pub fn device_changed(&self, serial: &str) {
        self.caches.forget_devices([serial]);
        self.invalidations.publish(Kind::Device, serial);
    }

    /// `serial` as log lines show it: its pseudonym unless `log_serials`.
    pub fn log_serial(&self, serial: &str) -> String {
        self.pseudonyms.for_log(serial, self.config.log_serials)
    }

    /// A read guard on the trust state. A poisoned lock means a panic while
    /// it was held; the state itself is always consistent (it is replaced
    /// whole), so reading on is safe.
    pub fn trust(&self) -> std::sync::RwLockReadGuard<'_, TrustState> {
        self.trust.read().unwrap_or_else(|e| e.into_inner())
    }
}

/// Creates the data directory (and missing parents) with mode 0700, and
/// warns when an existing one is open to others.
pub fn create_data_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .with_context(|| format!("creating data directory {}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                data_dir = %dir.display(),
                mode = format!("{mode:o}"),
                "the data directory is open to other users; run `chmod 700` on it"
            );
        }
    }
    Ok(())
}

/// The pinned root from the configuration (stored as version 1 on first
/// start) followed by the rotations stored in the database.
async fn load_trust(db: &Db, config: &Config) -> anyhow::Result<TrustState> {
    let mut chain: Vec<Vec<u8>> = crate::db::trust::chain(db)
        .await?
        .into_iter()
        .map(|(_, env)| env)
        .collect();
    if let Some(path) = &config.trust_root {
        let pinned = std::fs::read(path)
            .with_context(|| format!("reading trust root {}", path.display()))?;
        match chain.first() {
            Some(stored) if stored != &pinned => anyhow::bail!(
                "trust root {} differs from the root version 1 this server already uses",
                path.display()
            ),
            Some(_) => {}
            None => {
                let root = firmup_client::TrustedRoot::from_pinned(&pinned)
                    .with_context(|| format!("trust root {}", path.display()))?;
                anyhow::ensure!(
                    root.version() == 1,
                    "trust root {} is version {}; the pinned root must be version 1",
                    path.display(),
                    root.version()
                );
                let mut tx = db.begin().await?;
                crate::db::trust::insert(&mut tx, 1, &pinned).await?;
                tx.commit().await?;
                chain.push(pinned);
            }
        }
    }
    TrustState::from_chain(chain).context("verifying the stored trust chain")
}

/// The pseudonym key: `pseudonym_key` if set, else the one in
/// `<data_dir>/pseudonym.key`, created on first start.
fn load_pseudonymiser(config: &Config) -> anyhow::Result<Pseudonymiser> {
    let key = match &config.pseudonym_key {
        Some(hex_key) => {
            let mut k = [0u8; 32];
            hex::decode_to_slice(hex_key.trim(), &mut k)
                .context("pseudonym_key must be 64 hex digits")?;
            let distinct = k.iter().collect::<std::collections::BTreeSet<_>>().len();
            anyhow::ensure!(
                distinct >= 12,
                "pseudonym_key has too little entropy ({distinct} distinct bytes of 32); make \
                 one with `openssl rand -hex 32`"
            );
            k
        }
        None => crate::grants::load_or_create_key(&config.data_dir.join("pseudonym.key"))?,
    };
    Ok(Pseudonymiser::new(key))
}
