//! The retention job (docs/PRIVACY.md): prunes personal data past its
//! period (`retention_*_days`) every [`RETENTION_INTERVAL`], once across
//! the replicas sharing a database.

use std::time::Duration;

use time::OffsetDateTime;

use crate::db::{self, Db};
use crate::domain::privacy::Retention;
use crate::error::AppResult;

/// How often the retention job runs (once across replicas).
pub const RETENTION_INTERVAL: Duration = Duration::from_secs(3600);

/// The cutoffs of `retention` at `now`: what is older is pruned.
fn cutoff(now: OffsetDateTime, days: u32) -> Option<OffsetDateTime> {
    (days > 0).then(|| now - time::Duration::days(i64::from(days)))
}

/// One retention pass at `now` (the job's clock; tests pass their own).
pub async fn prune(db: &Db, now: OffsetDateTime, r: Retention) -> AppResult<db::privacy::Pruned> {
    let pruned = db::privacy::prune(
        db,
        cutoff(now, r.reports_days),
        cutoff(now, r.check_ins_days),
        cutoff(now, r.audit_details_days),
        cutoff(now, r.rma_contacts_days),
    )
    .await?;
    if pruned != db::privacy::Pruned::default() {
        tracing::info!(
            reports = pruned.reports,
            check_ins = pruned.check_ins,
            audit_details = pruned.audit_details,
            rma_contacts = pruned.rma_contacts,
            "retention pruned personal data past its period"
        );
    }
    Ok(pruned)
}

/// Runs [`prune`] every [`RETENTION_INTERVAL`], claimed once across the
/// replicas, for as long as `alive` says the app exists.
pub fn spawn_retention(db: Db, retention: Retention, alive: impl Fn() -> bool + Send + 'static) {
    if retention == Retention::default() {
        return;
    }
    tokio::spawn(async move {
        let replica = uuid::Uuid::new_v4().to_string();
        // Every replica asks each minute; the one whose claim wins prunes.
        let mut every = tokio::time::interval(Duration::from_secs(60));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if !alive() {
                return;
            }
            let now = OffsetDateTime::now_utc();
            match db::jobs::claim(&db, "privacy_retention", &replica, now, RETENTION_INTERVAL).await
            {
                Ok(true) => {
                    if let Err(e) = prune(&db, now, retention).await {
                        tracing::warn!(error = %e, "the retention job failed");
                    }
                }
                Ok(false) => {}
                Err(e) => tracing::warn!(error = %e, "claiming the retention job failed"),
            }
        }
    });
}
