//! Last-seen bookkeeping without a database write per update check.
//!
//! A check pushes what the device reported into a bounded channel with
//! `try_send`: when the channel is full the record is dropped and counted,
//! so a slow database can never slow a check down. One background task
//! coalesces the records by serial (the latest report wins; the earliest
//! time is kept for `first_seen`) and writes them every
//! `last_seen_flush_ms` in one transaction. On graceful shutdown the
//! server flushes once more ([`LastSeen::flush`]).
//!
//! Losing a record costs little: the device checks again at its next poll
//! and the record is only telemetry. This module must never block a check
//! and never write outside the flush task.
//!
//! An `installed` report writes `current_version` (and `last_seen`) at
//! once; the flush's `last_seen` guard keeps an older queued check from
//! undoing it.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::{mpsc, oneshot};

use crate::db::Db;
use crate::domain::seen::{Pending, Seen};

/// How many records may wait for the flush task. At the default one-second
/// flush this absorbs bursts far above a fleet of millions polling every
/// few hours.
pub const CAPACITY: usize = 100_000;

/// Coalesced pending records above which new serials are dropped while the
/// database is failing, so an outage cannot grow memory without bound.
const MAX_PENDING: usize = 1_000_000;

#[derive(Debug)]
enum Command {
    Flush(oneshot::Sender<anyhow::Result<usize>>),
}

/// The handle checks push to.
#[derive(Debug)]
pub struct LastSeen {
    records: mpsc::Sender<Seen>,
    commands: mpsc::Sender<Command>,
    dropped: Arc<AtomicU64>,
}

impl LastSeen {
    /// Starts the flush task, writing to `db` every `every`.
    pub fn start(db: Db, every: Duration) -> LastSeen {
        let (records, rx) = mpsc::channel(CAPACITY);
        let (commands, cmd_rx) = mpsc::channel(16);
        let dropped = Arc::new(AtomicU64::new(0));
        tokio::spawn(run(
            db,
            every.max(Duration::from_millis(10)),
            rx,
            cmd_rx,
            dropped.clone(),
        ));
        LastSeen {
            records,
            commands,
            dropped,
        }
    }

    /// Queues a record; never waits. Returns false (and counts) when it
    /// was dropped because the queue is full or the task has stopped.
    pub fn push(&self, seen: Seen) -> bool {
        match self.records.try_send(seen) {
            Ok(()) => true,
            Err(_) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Records dropped since start.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Writes everything queued so far and waits for it; returns the number
    /// of devices written. For graceful shutdown and tests.
    pub async fn flush(&self) -> anyhow::Result<usize> {
        let (tx, rx) = oneshot::channel();
        self.commands
            .send(Command::Flush(tx))
            .await
            .map_err(|_| anyhow::anyhow!("the last-seen task has stopped"))?;
        rx.await
            .map_err(|_| anyhow::anyhow!("the last-seen task has stopped"))?
    }
}

/// Adds a record to the batch, keeping the latest record per serial.
pub fn coalesce(pending: &mut HashMap<String, Pending>, seen: Seen) {
    if let Some(p) = pending.get_mut(&seen.serial) {
        p.first_seen = p.first_seen.min(seen.seen_at);
        if seen.seen_at >= p.latest.seen_at {
            // An offer made earlier in the batch still counts as made.
            let offered = seen.offered_release_id.or(p.latest.offered_release_id);
            p.latest = seen;
            p.latest.offered_release_id = offered;
        }
    } else if pending.len() < MAX_PENDING {
        pending.insert(
            seen.serial.clone(),
            Pending {
                first_seen: seen.seen_at,
                latest: seen,
            },
        );
    }
}

async fn run(
    db: Db,
    every: Duration,
    mut records: mpsc::Receiver<Seen>,
    mut commands: mpsc::Receiver<Command>,
    dropped: Arc<AtomicU64>,
) {
    let mut pending: HashMap<String, Pending> = HashMap::new();
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut reported_drops = 0;
    loop {
        tokio::select! {
            seen = records.recv() => match seen {
                Some(seen) => coalesce(&mut pending, seen),
                // Every sender is gone: the app was dropped.
                None => {
                    let _ = write(&db, &mut pending).await;
                    return;
                }
            },
            _ = tick.tick() => {
                let drops = dropped.load(Ordering::Relaxed);
                if drops > reported_drops {
                    tracing::warn!(dropped = drops - reported_drops, "last-seen queue full; records dropped");
                    reported_drops = drops;
                }
                if let Err(e) = write(&db, &mut pending).await {
                    tracing::warn!(error = format!("{e:#}"), "writing last-seen records failed; retrying next time");
                }
            },
            Some(Command::Flush(reply)) = commands.recv() => {
                // Take what is already queued, then write.
                while let Ok(seen) = records.try_recv() {
                    coalesce(&mut pending, seen);
                }
                let _ = reply.send(write(&db, &mut pending).await);
            },
        }
    }
}

/// Writes the batch in one transaction. On failure the batch is put back,
/// minus the serials that were reported again meanwhile (their newer record
/// wins anyway).
async fn write(db: &Db, pending: &mut HashMap<String, Pending>) -> anyhow::Result<usize> {
    if pending.is_empty() {
        return Ok(0);
    }
    let batch: Vec<Pending> = pending.drain().map(|(_, p)| p).collect();
    let started = std::time::Instant::now();
    match crate::db::reports::write_last_seen(db, &batch).await {
        Ok(n) => {
            tracing::debug!(
                devices = batch.len(),
                elapsed_ms = started.elapsed().as_millis() as u64,
                "last-seen flushed"
            );
            Ok(n)
        }
        Err(e) => {
            for p in batch {
                let serial = p.latest.serial.clone();
                pending.entry(serial).or_insert(p);
            }
            Err(anyhow::Error::new(e).context("writing last-seen records"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::OffsetDateTime;
    use time::macros::datetime;

    fn seen(serial: &str, version: &str, at: OffsetDateTime) -> Seen {
        Seen {
            serial: serial.into(),
            current_version: version.into(),
            security_counter: 1,
            root_version: 1,
            seen_at: at,
            offered_release_id: None,
        }
    }

    #[test]
    fn coalesce_keeps_latest_record_and_earliest_time() {
        let t0 = datetime!(2026-01-01 00:00 UTC);
        let mut p = HashMap::new();
        coalesce(&mut p, seen("A", "1.0.0", t0));
        coalesce(&mut p, seen("B", "1.0.0", t0));
        coalesce(&mut p, seen("A", "2.0.0", t0 + time::Duration::seconds(5)));
        // An older record arriving late does not win.
        coalesce(&mut p, seen("A", "0.9.0", t0 - time::Duration::seconds(5)));
        assert_eq!(p.len(), 2);
        assert_eq!(p["A"].latest.current_version, "2.0.0");
        assert_eq!(p["A"].first_seen, t0 - time::Duration::seconds(5));
        assert_eq!(p["B"].latest.current_version, "1.0.0");
    }
}
