//! Staged rollouts, their events, and the report and offer rows their
//! status is computed from. Rows only: which changes are allowed is the
//! rollout controller's, and who is in which phase the domain's
//! ([`crate::domain::rollout`]).

use sqlx::FromRow;
use time::OffsetDateTime;

use super::{Db, Stamp, Tx};

/// The columns of [`RolloutRow`], in its order (`o` is `rollouts`, `r`
/// its release).
const COLUMNS: &str = "o.id, o.release_id, r.product_line, r.channel, r.version, o.group_name, \
     o.phases, o.phase, o.state, o.paused_reason, o.soak_secs, o.failure_threshold_percent, \
     o.min_sample, o.phase_started_at, o.created_by, o.created_at, o.updated_at";

/// A stored rollout, with its release's line, channel and version.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct RolloutRow {
    /// Id, `ro_<32 hex>`.
    pub id: String,
    /// The release.
    pub release_id: i64,
    /// The release's product line.
    pub product_line: String,
    /// The release's channel.
    pub channel: String,
    /// The release's version.
    pub version: String,
    /// The group it is limited to.
    pub group_name: Option<String>,
    /// Phases, a JSON array of percentages as stored.
    pub phases: String,
    /// Index of the current phase.
    pub phase: i32,
    /// `running`, `paused`, `aborted` or `finished`.
    pub state: String,
    /// Why it paused (or was aborted).
    pub paused_reason: Option<String>,
    /// Soak time of a phase before it advances by itself.
    pub soak_secs: Option<i64>,
    /// Failure rate above which it pauses, in percent.
    pub failure_threshold_percent: f64,
    /// Installs attempted in a phase before the failure rate counts.
    pub min_sample: i32,
    /// When the current phase began.
    pub phase_started_at: OffsetDateTime,
    /// Who started it.
    pub created_by: String,
    /// When.
    pub created_at: OffsetDateTime,
    /// Last change.
    pub updated_at: OffsetDateTime,
}

/// A rollout to store.
#[derive(Debug, Clone)]
pub struct NewRollout<'a> {
    /// Id.
    pub id: &'a str,
    /// The release.
    pub release_id: i64,
    /// The group it is limited to.
    pub group_name: Option<&'a str>,
    /// Phases as a JSON array.
    pub phases: &'a str,
    /// Soak time.
    pub soak_secs: Option<i64>,
    /// Failure threshold in percent.
    pub failure_threshold_percent: f64,
    /// Minimum sample.
    pub min_sample: i32,
    /// Who.
    pub created_by: &'a str,
    /// When.
    pub at: OffsetDateTime,
}

/// Inserts a running rollout at its first phase. A second active rollout of
/// the release violates the one-active index: [`super::Error::Conflict`].
#[tracing::instrument(skip(tx, r), fields(id = r.id))]
pub async fn insert(tx: &mut Tx, r: &NewRollout<'_>) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query(
        "INSERT INTO rollouts (id, release_id, group_name, phases, phase, state, soak_secs,
                               failure_threshold_percent, min_sample, phase_started_at,
                               created_by, created_at, updated_at)
         VALUES ($1, $2, $3, $4, 0, 'running', $5, $6, $7, $8, $9, $10, $11)",
    )
    .bind(r.id)
    .bind(r.release_id)
    .bind(r.group_name)
    .bind(r.phases)
    .bind(r.soak_secs)
    .bind(r.failure_threshold_percent)
    .bind(r.min_sample)
    .bind(Stamp(r.at))
    .bind(r.created_by)
    .bind(Stamp(r.at))
    .bind(Stamp(r.at))
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// One rollout.
#[tracing::instrument(skip(exec))]
pub async fn find(
    exec: impl Into<super::Exec<'_>>,
    id: &str,
) -> Result<Option<RolloutRow>, super::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM rollouts o JOIN releases r ON r.id = o.release_id WHERE o.id = $1"
    );
    on!(exec, conn => sqlx::query_as(&sql).bind(id).fetch_optional(conn).await)
}

/// The active (running or paused) rollout of a release, if any.
#[tracing::instrument(skip(exec))]
pub async fn active_of_release(
    exec: impl Into<super::Exec<'_>>,
    release_id: i64,
) -> Result<Option<RolloutRow>, super::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM rollouts o JOIN releases r ON r.id = o.release_id
         WHERE o.release_id = $1 AND o.state IN ('running', 'paused')"
    );
    on!(exec, conn => sqlx::query_as(&sql).bind(release_id).fetch_optional(conn).await)
}

/// Rollouts, newest first, optionally only in `states` and of
/// `product_line`; at most `limit`.
#[tracing::instrument(skip(db))]
pub async fn list(
    db: &Db,
    states: &[&str],
    product_line: Option<&str>,
    limit: i64,
) -> Result<Vec<RolloutRow>, super::Error> {
    let mut clauses = Vec::new();
    let mut n = 0;
    let mut next = || {
        n += 1;
        format!("${n}")
    };
    if !states.is_empty() {
        let list: Vec<String> = states.iter().map(|_| next()).collect();
        clauses.push(format!("o.state IN ({})", list.join(", ")));
    }
    if product_line.is_some() {
        clauses.push(format!("r.product_line = {}", next()));
    }
    let filter = if clauses.is_empty() {
        String::new()
    } else {
        format!("WHERE {}", clauses.join(" AND "))
    };
    let limit_param = next();
    let sql = format!(
        "SELECT {COLUMNS} FROM rollouts o JOIN releases r ON r.id = o.release_id {filter}
         ORDER BY o.created_at DESC, o.id DESC LIMIT {limit_param}"
    );
    on!(db, conn => {
        let mut q = sqlx::query_as(&sql);
        for s in states {
            q = q.bind(*s);
        }
        if let Some(l) = product_line {
            q = q.bind(l);
        }
        q.bind(limit).fetch_all(conn).await
    })
}

/// Every rollout the check path must know: the active ones, and for each
/// release without one its latest (an aborted one still holds the release
/// back; a finished one lets it go).
#[tracing::instrument(skip(exec))]
pub async fn deciding(exec: impl Into<super::Exec<'_>>) -> Result<Vec<RolloutRow>, super::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM rollouts o JOIN releases r ON r.id = o.release_id
         WHERE o.id IN (
           SELECT id FROM rollouts WHERE state IN ('running', 'paused')
           UNION
           SELECT x.id FROM rollouts x
            WHERE NOT EXISTS (SELECT 1 FROM rollouts y WHERE y.release_id = x.release_id
                               AND (y.created_at > x.created_at
                                    OR (y.created_at = x.created_at AND y.id > x.id))))
         ORDER BY o.release_id"
    );
    on!(exec, conn => sqlx::query_as(&sql).fetch_all(conn).await)
}

/// The change a rollout's action makes.
#[derive(Debug, Clone)]
pub struct Change<'a> {
    /// New phase index.
    pub phase: i32,
    /// New state.
    pub state: &'a str,
    /// Why it is paused or aborted (`None` clears).
    pub paused_reason: Option<&'a str>,
    /// When the current phase began (moves on when the phase does).
    pub phase_started_at: OffsetDateTime,
    /// Now.
    pub at: OffsetDateTime,
}

/// Applies `change` if the rollout is still in `expected_state` at phase
/// `expected_phase` (an optimistic check: two replicas pausing and
/// advancing at once cannot both win). Returns whether it applied.
#[tracing::instrument(skip(tx, change))]
pub async fn update(
    tx: &mut Tx,
    id: &str,
    expected_state: &str,
    expected_phase: i32,
    change: &Change<'_>,
) -> Result<bool, super::Error> {
    let n = on!(&mut *tx, conn => sqlx::query(
        "UPDATE rollouts SET phase = $1, state = $2, paused_reason = $3, phase_started_at = $4,
                             updated_at = $5
         WHERE id = $6 AND state = $7 AND phase = $8",
    )
    .bind(change.phase)
    .bind(change.state)
    .bind(change.paused_reason)
    .bind(Stamp(change.phase_started_at))
    .bind(Stamp(change.at))
    .bind(id)
    .bind(expected_state)
    .bind(expected_phase)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(n > 0)
}

/// An event in a rollout's history.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct EventRow {
    /// When.
    pub at: OffsetDateTime,
    /// A token's label, or `system`.
    pub actor: String,
    /// `started`, `advanced`, `paused`, `resumed`, `aborted`, `finished`,
    /// `auto_paused`, `auto_advanced`.
    pub kind: String,
    /// What happened, in words.
    pub detail: String,
}

/// Records an event.
#[tracing::instrument(skip(tx, e))]
pub async fn insert_event(tx: &mut Tx, rollout_id: &str, e: &EventRow) -> Result<(), super::Error> {
    on!(&mut *tx, conn => sqlx::query(
        "INSERT INTO rollout_events (rollout_id, at, actor, kind, detail) VALUES ($1, $2, $3, $4, $5)",
    )
    .bind(rollout_id)
    .bind(Stamp(e.at))
    .bind(&e.actor)
    .bind(&e.kind)
    .bind(&e.detail)
    .execute(conn)
    .await
    .map(|r| r.rows_affected()))?;
    Ok(())
}

/// A rollout's events, oldest first.
#[tracing::instrument(skip(db))]
pub async fn events(db: &Db, rollout_id: &str) -> Result<Vec<EventRow>, super::Error> {
    on!(db, conn => sqlx::query_as(
        "SELECT at, actor, kind, detail FROM rollout_events WHERE rollout_id = $1 ORDER BY id",
    )
    .bind(rollout_id)
    .fetch_all(conn)
    .await)
}

/// One report on the release, for a rollout's status.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct ReportRow {
    /// The device.
    pub serial: String,
    /// Its stage.
    pub stage: String,
    /// Failure reason, if any.
    pub reason_code: Option<String>,
    /// When it arrived.
    pub at: OffsetDateTime,
}

/// The reports on `release_id` since `since`, in the order they arrived.
#[tracing::instrument(skip(exec))]
pub async fn reports_since(
    exec: impl Into<super::Exec<'_>>,
    release_id: i64,
    since: OffsetDateTime,
) -> Result<Vec<ReportRow>, super::Error> {
    on!(exec, conn => sqlx::query_as(
        "SELECT serial, stage, reason_code, at FROM reports
         WHERE release_id = $1 AND at >= $2 ORDER BY id",
    )
    .bind(release_id)
    .bind(Stamp(since))
    .fetch_all(conn)
    .await)
}

/// Of the devices whose latest outcome report (installed, failed, rolled
/// back) on `release_id` arrived at or after `since`: how many, and how
/// many of those failed or rolled back. One aggregate query, for the
/// failure rule after each failure report.
#[tracing::instrument(skip(exec))]
pub async fn outcomes_since(
    exec: impl Into<super::Exec<'_>>,
    release_id: i64,
    since: OffsetDateTime,
) -> Result<(i64, i64), super::Error> {
    on!(exec, conn => sqlx::query_as(
        "SELECT COUNT(*),
                COALESCE(SUM(CASE WHEN r.stage IN ('failed', 'rolled_back') THEN 1 ELSE 0 END), 0)
         FROM reports r
         JOIN (SELECT MAX(id) AS id FROM reports
               WHERE release_id = $1 AND at >= $2 AND stage IN ('installed', 'failed', 'rolled_back')
               GROUP BY serial) l ON l.id = r.id",
    )
    .bind(release_id)
    .bind(Stamp(since))
    .fetch_one(conn)
    .await)
}

/// The devices last offered `release_id` at or after `since`.
#[tracing::instrument(skip(db))]
pub async fn offered_since(
    db: &Db,
    release_id: i64,
    since: OffsetDateTime,
) -> Result<Vec<String>, super::Error> {
    on!(db, conn => sqlx::query_scalar(
        "SELECT serial FROM devices WHERE offered_release_id = $1 AND offered_at >= $2",
    )
    .bind(release_id)
    .bind(Stamp(since))
    .fetch_all(conn)
    .await)
}

/// The running rollouts with a soak time: candidates for advancing by
/// themselves.
#[tracing::instrument(skip(db))]
pub async fn soaking(db: &Db) -> Result<Vec<RolloutRow>, super::Error> {
    let sql = format!(
        "SELECT {COLUMNS} FROM rollouts o JOIN releases r ON r.id = o.release_id
         WHERE o.state = 'running' AND o.soak_secs IS NOT NULL"
    );
    on!(db, conn => sqlx::query_as(&sql).fetch_all(conn).await)
}

/// Whether an active rollout is limited to the group `name`.
#[tracing::instrument(skip(exec))]
pub async fn group_in_use(
    exec: impl Into<super::Exec<'_>>,
    name: &str,
) -> Result<Option<String>, super::Error> {
    on!(exec, conn => sqlx::query_scalar(
        "SELECT id FROM rollouts WHERE group_name = $1 AND state IN ('running', 'paused') LIMIT 1",
    )
    .bind(name)
    .fetch_optional(conn)
    .await)
}
