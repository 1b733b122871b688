//! This replica's caches of the request path: token lookups and per-device
//! facts, with the epoch that keeps a fill from outliving an invalidation.
//!
//! Entries live for their TTL (`token_cache_ttl_secs`,
//! `device_cache_ttl_secs`) unless dropped earlier: at once on the replica
//! that made a change ([`Caches::forget_devices`],
//! [`Caches::forget_tokens`]), and within `invalidation::POLL_INTERVAL` on
//! the others, through the invalidation log ([`crate::invalidation`]).
//!
//! A cache fill races with invalidations: a lookup that read the old row
//! may insert it after the invalidation ran, and with long TTLs that stale
//! entry would live long. Every invalidation therefore bumps an epoch
//! first, and every fill goes through [`Caches::get_or_fill`], which reads
//! the epoch before its query and drops the entry it inserted when the
//! epoch moved meanwhile.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::domain::facts::DeviceFacts;
use crate::domain::roles::Principal;

/// Cached token lookups: hash -> principal (or `None` for unknown tokens).
pub type TokenCache = moka::sync::Cache<String, Option<Arc<Principal>>>;

/// Cached device facts by serial.
pub type DeviceFactsCache = moka::sync::Cache<String, Arc<DeviceFacts>>;

/// The caches and their invalidation epoch.
#[derive(Debug)]
pub struct Caches {
    /// Token lookups, unknown tokens included; a revocation drops them on
    /// every replica.
    pub tokens: TokenCache,
    /// Per-device facts for the check path; `App::device_changed` drops
    /// them on every replica.
    pub device_facts: DeviceFactsCache,
    /// Bumped before every invalidation (see the module docs).
    epoch: AtomicU64,
}

impl Caches {
    /// Empty caches whose entries live `device_ttl` and `token_ttl`.
    pub fn new(device_ttl: Duration, token_ttl: Duration) -> Caches {
        let tokens = moka::sync::Cache::builder()
            .max_capacity(1_000_000)
            .time_to_live(token_ttl)
            // Revocation drops entries by token id, which is in the value.
            .support_invalidation_closures()
            .build();
        let device_facts = moka::sync::Cache::builder()
            .max_capacity(1_000_000)
            .time_to_live(device_ttl)
            .build();
        Caches {
            tokens,
            device_facts,
            epoch: AtomicU64::new(0),
        }
    }

    /// The value cached under `key` in `cache` (one of these caches), else
    /// the one `load` finds, which is then cached. `None` when `load` finds
    /// nothing (not cached).
    ///
    /// The epoch is read before `load` runs; when it moved by the time the
    /// value is in the cache, an invalidation ran meanwhile and may have come
    /// before the insert, so the entry is dropped again (the value is still
    /// returned: it was current when the request arrived).
    pub async fn get_or_fill<V, E, F, Fut>(
        &self,
        (name, cache): (&'static str, &moka::sync::Cache<String, V>),
        key: &str,
        load: F,
    ) -> Result<Option<V>, E>
    where
        V: Clone + Send + Sync + 'static,
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<Option<V>, E>>,
    {
        if let Some(cached) = cache.get(key) {
            crate::metrics::cache(name, true);
            return Ok(Some(cached));
        }
        crate::metrics::cache(name, false);
        let epoch = self.epoch.load(Ordering::SeqCst);
        let Some(value) = load().await? else {
            return Ok(None);
        };
        cache.insert(key.to_string(), value.clone());
        if self.epoch.load(Ordering::SeqCst) != epoch {
            cache.invalidate(key);
        }
        Ok(Some(value))
    }

    /// Marks the start of an invalidation; call before dropping entries.
    fn bump(&self) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
    }

    /// Drops this replica's cached facts of `serials` (no broadcast).
    pub fn forget_devices<'a>(&self, serials: impl IntoIterator<Item = &'a str>) {
        self.bump();
        for serial in serials {
            self.device_facts.invalidate(serial);
        }
    }

    /// Drops this replica's cached lookups of the tokens with these ids (no
    /// broadcast; a revocation writes its invalidation row in its own
    /// transaction, see `tokens::revoke_token`).
    pub fn forget_tokens(&self, ids: HashSet<String>) {
        self.bump();
        let dropped = self.tokens.invalidate_entries_if(move |_, principal| {
            principal
                .as_ref()
                .is_some_and(|p| ids.contains(&p.token_id))
        });
        if let Err(e) = dropped {
            // Only if the cache was built without invalidation closures.
            tracing::error!(error = %e, "dropping tokens by id failed; dropping every cached token");
            self.tokens.invalidate_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caches() -> Caches {
        Caches::new(Duration::from_secs(3600), Duration::from_secs(3600))
    }

    #[tokio::test]
    async fn a_fill_is_cached_and_then_served_from_the_cache() {
        let c = caches();
        let cache = moka::sync::Cache::<String, u32>::new(10);
        let got: Result<_, ()> = c
            .get_or_fill(("test", &cache), "k", || async { Ok(Some(1)) })
            .await;
        assert_eq!(got, Ok(Some(1)));
        assert_eq!(cache.get("k"), Some(1));
        let got: Result<_, ()> = c
            .get_or_fill(("test", &cache), "k", || async {
                panic!("cached: not loaded")
            })
            .await;
        assert_eq!(got, Ok(Some(1)));
    }

    #[tokio::test]
    async fn nothing_found_and_errors_are_not_cached() {
        let c = caches();
        let cache = moka::sync::Cache::<String, u32>::new(10);
        let got: Result<_, ()> = c
            .get_or_fill(("test", &cache), "k", || async { Ok(None) })
            .await;
        assert_eq!(got, Ok(None));
        let got = c
            .get_or_fill(("test", &cache), "k", || async { Err("down") })
            .await;
        assert_eq!(got, Err("down"));
        assert!(!cache.contains_key("k"));
    }

    #[tokio::test]
    async fn a_fill_that_raced_an_invalidation_is_answered_but_not_kept() {
        let c = caches();
        let cache = moka::sync::Cache::<String, u32>::new(10);
        let got: Result<_, ()> = c
            .get_or_fill(("test", &cache), "SN-1", || async {
                // An invalidation runs while the row is read.
                c.forget_devices(["SN-1"]);
                Ok(Some(7))
            })
            .await;
        assert_eq!(got, Ok(Some(7)));
        assert!(!cache.contains_key("SN-1"), "the stale fill was dropped");
    }
}
