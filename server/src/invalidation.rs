//! Keeping the device-facts and token caches of every replica consistent
//! while their TTLs are long.
//!
//! The update check reads no database row when its caches are warm, and
//! devices poll every few hours, so the caches only help if entries live
//! about as long (`device_cache_ttl_secs`, `token_cache_ttl_secs`, an hour
//! by default). A change must therefore reach the caches by message, not by
//! expiry:
//!
//! * a writer appends a row to the `cache_invalidations` table
//!   ([`crate::db::invalidations`]) naming the device serial or token id,
//!   and drops its own replica's entry at once. Token revocation appends
//!   the row inside its own transaction; `App::device_changed`, called
//!   after a commit, hands the serial to a background publisher
//!   ([`Invalidations::publish`]) that writes it within milliseconds and
//!   retries while the database refuses (a committed change is never
//!   reported as failed because its broadcast was delayed);
//! * every replica polls the rows after the last seq it applied every
//!   [`POLL_INTERVAL`] ([`poll`], [`spawn_poller`]) and drops the matching
//!   entries. A change made through one replica thus reaches the others
//!   within about two seconds; the TTLs only bound how long a lost
//!   broadcast (a crash between commit and publish) can last.
//!   A replica starts at the highest seq present (its caches are empty
//!   then), and rows older than [`RETENTION`] are pruned, which is safe
//!   because no TTL may exceed it (checked by `Config`).
//!
//! Seqs need not become visible in order. SQLite has one writer at a time,
//! so there they do; on PostgreSQL a seq is taken when a row is inserted,
//! not when it commits, so a transaction that took seq 7 can commit after
//! one that took seq 8, and a rolled-back insert leaves a seq that never
//! appears. A poller that remembered only the highest seq seen would skip
//! 7 for ever. So the poller remembers the seqs it skipped over as *gaps*
//! ([`Invalidations`]), asks for them again on every poll, and gives a gap
//! up only after [`GAP_WINDOW`], far longer than any write transaction
//! stays open (its statements are bounded by the statement timeout, and
//! the publisher's transaction is a handful of inserts). Applying a row
//! twice is harmless (dropping a cache entry is idempotent), so the rules
//! only need never to miss one.
//!
//! A cache fill races with invalidations; the caches' epoch guards against
//! it (see [`crate::caches`]).
//!
//! This module must never make a check wait for the database: publishing
//! only queues, and polling runs in its own task.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Mutex, Weak};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::caches::Caches;
use crate::db::Db;
use crate::db::invalidations::{Invalidation, Kind};

/// How often every replica reads the invalidations others wrote.
pub const POLL_INTERVAL: Duration = Duration::from_secs(2);

/// How long invalidation rows are kept; cache TTLs may not be longer.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);

/// How often rows older than [`RETENTION`] are pruned, by one replica of
/// those sharing the database (see [`crate::db::jobs`]).
const PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// Rows read per query while catching up.
const BATCH: i64 = 10_000;

/// How long a skipped seq is asked for again before it is taken for a
/// rolled-back insert (see the module docs).
pub const GAP_WINDOW: Duration = Duration::from_secs(300);

/// Gaps remembered at most; beyond it the oldest are given up (logged), so
/// a huge jump in seqs (a bulk rollback) cannot grow memory without bound.
const MAX_GAPS: usize = 10_000;

/// Gaps asked for per poll.
const GAPS_PER_POLL: usize = 500;

/// How long the publisher waits before retrying a failed write when
/// nothing new arrives.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Unwritten invalidations above which new ones are dropped (and logged)
/// while the database refuses writes, so an outage cannot grow memory
/// without bound. The TTLs still bound how stale other replicas get.
const MAX_PENDING: usize = 1_000_000;

enum Message {
    Publish(Kind, String),
    Flush(oneshot::Sender<Result<(), String>>),
}

/// This replica's side of the invalidation log.
#[derive(Debug)]
pub struct Invalidations {
    /// The highest seq applied to this replica's caches.
    applied: AtomicI64,
    /// Seqs below `applied` not seen yet, with when they were first
    /// skipped: they may still commit.
    gaps: Mutex<BTreeMap<i64, std::time::Instant>>,
    /// Queue of the publisher task.
    outbox: mpsc::UnboundedSender<Message>,
}

impl std::fmt::Debug for Message {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Message::Publish(kind, key) => write!(f, "Publish({kind}, {key:?})"),
            Message::Flush(_) => f.write_str("Flush"),
        }
    }
}

impl Invalidations {
    /// Starts the publisher task, writing to `db`; `applied` is the seq
    /// this replica starts after ([`crate::db::invalidations::max_seq`]).
    /// The task ends, after a last write, when this value is dropped.
    pub fn start(db: Db, applied: i64) -> Invalidations {
        let (outbox, inbox) = mpsc::unbounded_channel();
        tokio::spawn(publisher(db, inbox));
        Invalidations {
            applied: AtomicI64::new(applied),
            gaps: Mutex::new(BTreeMap::new()),
            outbox,
        }
    }

    /// The highest seq applied to this replica's caches.
    pub fn applied(&self) -> i64 {
        self.applied.load(Ordering::SeqCst)
    }

    /// The seqs below [`Invalidations::applied`] that were skipped and are
    /// still awaited, oldest first.
    pub fn gaps(&self) -> Vec<i64> {
        self.lock_gaps().keys().copied().collect()
    }

    fn lock_gaps(&self) -> std::sync::MutexGuard<'_, BTreeMap<i64, std::time::Instant>> {
        self.gaps.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Sorts the rows of one read into those to apply, advancing `applied`
    /// and recording the seqs skipped over as gaps; a row that fills a gap
    /// is applied, one at or below `applied` that is no gap was applied
    /// already. Call [`Invalidations::advance`] after dropping the entries.
    fn accept<'r>(&self, rows: &'r [Invalidation], unknown: &[i64]) -> Accepted<'r> {
        // Every seq read, in order; rows of a kind this version does not
        // know are read past (they fill gaps and move `applied`) but not
        // applied.
        let mut read: Vec<(i64, Option<&'r Invalidation>)> = rows
            .iter()
            .map(|r| (r.seq, Some(r)))
            .chain(unknown.iter().map(|&seq| (seq, None)))
            .collect();
        read.sort_by_key(|(seq, _)| *seq);
        let now = std::time::Instant::now();
        let mut gaps = self.lock_gaps();
        let mut high = self.applied();
        let mut fresh = Vec::with_capacity(rows.len());
        for (seq, row) in read {
            let new = if seq > high {
                let skipped = high + 1..seq;
                if skipped.end - skipped.start <= MAX_GAPS as i64 {
                    gaps.extend(skipped.map(|gap| (gap, now)));
                } else {
                    tracing::warn!(
                        from = skipped.start,
                        to = skipped.end - 1,
                        "too many cache invalidation seqs skipped at once; not awaiting them"
                    );
                }
                high = seq;
                true
            } else {
                gaps.remove(&seq).is_some()
            };
            if let (true, Some(row)) = (new, row) {
                fresh.push(row);
            }
        }
        while gaps.len() > MAX_GAPS {
            if let Some((seq, _)) = gaps.pop_first() {
                tracing::warn!(
                    seq,
                    "too many awaited cache invalidation seqs; the oldest given up"
                );
            }
        }
        Accepted { rows: fresh, high }
    }

    /// Moves `applied` to `high` once the entries of the rows are gone.
    fn advance(&self, high: i64) {
        self.applied.fetch_max(high, Ordering::SeqCst);
    }

    /// Gives up gaps awaited longer than [`GAP_WINDOW`]; returns the rest to
    /// ask for (at most [`GAPS_PER_POLL`], oldest seqs first).
    fn gaps_to_ask(&self) -> Vec<i64> {
        let mut gaps = self.lock_gaps();
        gaps.retain(|_, since| since.elapsed() < GAP_WINDOW);
        gaps.keys().take(GAPS_PER_POLL).copied().collect()
    }

    /// Queues an invalidation for the other replicas; never waits. The
    /// caller drops its own replica's entry itself.
    pub fn publish(&self, kind: Kind, key: &str) {
        if self
            .outbox
            .send(Message::Publish(kind, key.to_string()))
            .is_err()
        {
            tracing::error!(kind = %kind, key, "invalidation publisher has stopped; other replicas learn of this change only when their cache entry expires");
        }
    }

    /// Writes every queued invalidation and waits for it (for tests and
    /// graceful shutdown).
    pub async fn flush(&self) -> anyhow::Result<()> {
        let (reply, answer) = oneshot::channel();
        self.outbox
            .send(Message::Flush(reply))
            .map_err(|_| anyhow::anyhow!("the invalidation publisher has stopped"))?;
        answer
            .await
            .map_err(|_| anyhow::anyhow!("the invalidation publisher has stopped"))?
            .map_err(|e| anyhow::anyhow!("writing invalidations: {e}"))
    }
}

/// Writes queued invalidations as they arrive, several at a time when
/// several are waiting; on failure keeps them and retries.
async fn publisher(db: Db, mut inbox: mpsc::UnboundedReceiver<Message>) {
    let mut pending: HashSet<(Kind, String)> = HashSet::new();
    loop {
        let next = if pending.is_empty() {
            inbox.recv().await
        } else {
            // The last write failed: retry when more arrives or after a pause.
            match tokio::time::timeout(RETRY_DELAY, inbox.recv()).await {
                Ok(next) => next,
                Err(_) => {
                    // A failure is logged and the rows kept for the next try.
                    let _ = write_logged(&db, &mut pending).await;
                    continue;
                }
            }
        };
        let Some(first) = next else {
            // Every sender is gone: the app was dropped. Last attempt; a
            // failure is logged.
            let _ = write_logged(&db, &mut pending).await;
            return;
        };
        let mut replies = Vec::new();
        take(first, &mut pending, &mut replies);
        let mut closed = false;
        loop {
            match inbox.try_recv() {
                Ok(m) => take(m, &mut pending, &mut replies),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    closed = true;
                    break;
                }
            }
        }
        let result = write_logged(&db, &mut pending).await;
        for reply in replies {
            let _ = reply.send(result.clone());
        }
        if closed {
            return;
        }
    }
}

fn take(
    message: Message,
    pending: &mut HashSet<(Kind, String)>,
    replies: &mut Vec<oneshot::Sender<Result<(), String>>>,
) {
    match message {
        Message::Publish(kind, key) => {
            if pending.len() < MAX_PENDING {
                pending.insert((kind, key));
            } else {
                tracing::error!(kind = %kind, key, "too many unwritten invalidations; dropped (other replicas learn of it when their entry expires)");
            }
        }
        Message::Flush(reply) => replies.push(reply),
    }
}

/// Writes `pending` in one transaction and empties it; on failure logs and
/// keeps it for the next attempt.
async fn write_logged(db: &Db, pending: &mut HashSet<(Kind, String)>) -> Result<(), String> {
    if pending.is_empty() {
        return Ok(());
    }
    let result = async {
        let mut tx = db.begin().await?;
        for (kind, key) in pending.iter() {
            crate::db::invalidations::record(&mut tx, *kind, key).await?;
        }
        tx.commit().await
    }
    .await;
    match result {
        Ok(()) => {
            tracing::debug!(count = pending.len(), "invalidations published");
            pending.clear();
            Ok(())
        }
        Err(e) => {
            tracing::warn!(error = %e, count = pending.len(), "publishing invalidations failed; retrying");
            Err(e.to_string())
        }
    }
}

/// The rows of one read to apply, and the highest seq read.
struct Accepted<'r> {
    rows: Vec<&'r Invalidation>,
    high: i64,
}

/// Applies the invalidations written since the last one applied, by any
/// replica (this one's included, harmlessly), and those that filled a gap
/// (see the module docs): reads them from `db`, records them in
/// `invalidations` and drops the matching device facts and token lookups
/// from `caches`. Returns how many rows were applied.
pub async fn poll(
    db: &Db,
    invalidations: &Invalidations,
    caches: &Caches,
) -> Result<usize, crate::db::Error> {
    let mut applied = 0;
    let gaps = invalidations.gaps_to_ask();
    if !gaps.is_empty() {
        let batch = crate::db::invalidations::among(db, &gaps).await?;
        applied += apply(
            invalidations,
            caches,
            invalidations.accept(&batch.rows, &batch.unknown),
        );
    }
    loop {
        let batch = crate::db::invalidations::after(db, invalidations.applied(), BATCH).await?;
        applied += apply(
            invalidations,
            caches,
            invalidations.accept(&batch.rows, &batch.unknown),
        );
        if batch.complete {
            return Ok(applied);
        }
    }
}

/// Drops the entries the rows name, then advances the applied seq.
fn apply(invalidations: &Invalidations, caches: &Caches, accepted: Accepted<'_>) -> usize {
    let mut devices = Vec::new();
    let mut tokens = HashSet::new();
    for row in &accepted.rows {
        match row.kind {
            Kind::Device => devices.push(row.key.as_str()),
            Kind::Token => {
                tokens.insert(row.key.clone());
            }
        }
    }
    if !devices.is_empty() {
        caches.forget_devices(devices);
    }
    if !tokens.is_empty() {
        caches.forget_tokens(tokens);
    }
    // Advance only after the entries are gone.
    invalidations.advance(accepted.high);
    accepted.rows.len()
}

/// Starts the task that [`poll`]s every [`POLL_INTERVAL`] and prunes old
/// rows every hour. It holds only weak references to `invalidations` and
/// `caches` and ends when either is dropped (with the app).
pub fn spawn_poller(db: Db, invalidations: Weak<Invalidations>, caches: Weak<Caches>) {
    tokio::spawn(async move {
        let mut tick =
            tokio::time::interval_at(tokio::time::Instant::now() + POLL_INTERVAL, POLL_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut next_prune = tokio::time::Instant::now();
        // Names this replica in the job claims.
        let replica = uuid::Uuid::new_v4().to_string();
        loop {
            tick.tick().await;
            let (Some(invalidations), Some(caches)) = (invalidations.upgrade(), caches.upgrade())
            else {
                return;
            };
            match poll(&db, &invalidations, &caches).await {
                Ok(0) => {}
                Ok(n) => tracing::debug!(count = n, "cache invalidations applied"),
                // Entries stay until the next successful poll or their TTL.
                Err(e) => tracing::warn!(error = %e, "reading cache invalidations failed"),
            }
            // Every replica asks each minute; the one whose claim wins prunes,
            // once per PRUNE_INTERVAL across all of them.
            if tokio::time::Instant::now() >= next_prune {
                next_prune = tokio::time::Instant::now() + Duration::from_secs(60);
                let now = time::OffsetDateTime::now_utc();
                match crate::db::jobs::claim(
                    &db,
                    "prune_invalidations",
                    &replica,
                    now,
                    PRUNE_INTERVAL,
                )
                .await
                {
                    Ok(true) => {
                        if let Err(e) = prune(&db).await {
                            tracing::warn!(error = %e, "pruning cache invalidations failed");
                        }
                    }
                    Ok(false) => {}
                    Err(e) => tracing::warn!(error = %e, "claiming the prune job failed"),
                }
            }
        }
    });
}

/// Deletes rows older than [`RETENTION`].
pub async fn prune(db: &Db) -> Result<u64, crate::db::Error> {
    let retention = time::Duration::try_from(RETENTION).unwrap_or(time::Duration::DAY);
    let removed =
        crate::db::invalidations::prune(db, time::OffsetDateTime::now_utc() - retention).await?;
    if removed > 0 {
        tracing::debug!(count = removed, "old cache invalidations pruned");
    }
    Ok(removed)
}
