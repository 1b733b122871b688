//! Claims of background-job runs, so that a job runs once across the
//! replicas sharing a database rather than once per replica.
//!
//! A replica that wants to run job `name` at `now` claims it: the row's
//! `next_run_at` moves to `now + every` only where it is due, in one
//! conditional statement, so of replicas racing for one run exactly one
//! sees its update applied. The first claim inserts the row (a conflict
//! there means another replica inserted it, and that replica runs).

use std::time::Duration;

use time::OffsetDateTime;

use super::Db;

/// Claims the run of `name` due at `now`; true if this replica (`by`) is
/// to run it, false if it is not due or another replica has it.
#[tracing::instrument(skip(db))]
pub async fn claim(
    db: &Db,
    name: &str,
    by: &str,
    now: OffsetDateTime,
    every: Duration,
) -> Result<bool, super::Error> {
    // UTC, so SQLite's text timestamps compare in time order.
    let now = now.to_offset(time::UtcOffset::UTC);
    let next = now + time::Duration::try_from(every).unwrap_or(time::Duration::HOUR);
    let updated = on!(db, conn => sqlx::query(
        "UPDATE job_runs SET next_run_at = $1, ran_by = $2, ran_at = $3
         WHERE name = $4 AND next_run_at <= $3",
    )
    .bind(next)
    .bind(by)
    .bind(now)
    .bind(name)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    if updated == 1 {
        return Ok(true);
    }
    let inserted = on!(db, conn => sqlx::query(
        "INSERT INTO job_runs (name, next_run_at, ran_by, ran_at) VALUES ($1, $2, $3, $4)
         ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(next)
    .bind(by)
    .bind(now)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(inserted == 1)
}
