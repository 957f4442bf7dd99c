//! The availability ledger in the store, so that no replica's memory is the only copy of it.
//!
//! - **Flush.** Every `telemetry.flush_interval` the ledger's changes since the last flush
//!   ([`Ledger::drain_dirty`]) are *added* to their minute rows in one transaction
//!   ([`Store::add_ledger_deltas`]); replicas sharing a store each add only their own traffic,
//!   so the rows are the sum over replicas. A failed write puts the deltas back
//!   ([`Ledger::restore_dirty`]) and the next tick retries them. Incidents opened or closed since
//!   the last flush are upserted by key slot and opening time. Nothing here runs on the request
//!   path. With a spool (`store::spool`), failed deltas go to disk instead of back into memory,
//!   so they survive a restart; the spool adds them once the store answers.
//! - **Load.** Once, at start (retried on every tick until the store answers): the last
//!   `telemetry.retention` of buckets — summed per hour where older than the ledger's minute
//!   buckets (about 25 h), per minute after — and the incidents, added with `dirty = false` so
//!   they are never written back. Only rows of minutes before this process started are loaded:
//!   this process writes only minutes from then on, so loading late can never count its own
//!   traffic twice.
//! - **Prune.** Once an hour, rows past retention are deleted (by every replica; idempotent).
//! - **Shutdown.** `AppState::shutdown` ends live sessions, then flushes once more.
//!
//! A write whose answer is lost (the connection dropped after the commit) is retried and counted
//! twice; the store offers no cheaper way to make an additive upsert idempotent, and the error
//! is bounded by one flush interval of one replica's traffic.

use super::{Store, StoreError};
use crate::telemetry::ledger::{HOUR_MS, Ledger, MINUTE_MS};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::Instant;

/// Incidents loaded at start (the store keeps all of them within retention).
const INCIDENTS_LOADED: u32 = 1000;
const PRUNE_EVERY: Duration = Duration::from_secs(3600);
const LOG_EVERY: Duration = Duration::from_secs(30);

/// Counters for `/admin/status`.
#[derive(Debug, Default)]
pub struct PersistStats {
    pub flushes: AtomicU64,
    /// Bucket deltas written.
    pub rows_written: AtomicU64,
    pub incidents_written: AtomicU64,
    pub failed_flushes: AtomicU64,
    /// Bucket deltas handed to the spool because the store could not take them.
    pub rows_spooled: AtomicU64,
    pub rows_pruned: AtomicU64,
    /// History loaded from the store.
    pub loaded: AtomicBool,
    /// False after a failed write until the next one succeeds.
    pub healthy: AtomicBool,
    pub last_error: Mutex<Option<String>>,
}

/// One ledger's link to the store.
#[derive(Debug)]
pub struct LedgerWriter {
    ledger: Arc<Ledger>,
    store: Store,
    flush_interval: Duration,
    /// Unix ms of the minute this process started in.
    start_minute_ms: u64,
    pub stats: PersistStats,
    last_log: Mutex<Option<Instant>>,
    spool: Option<Arc<super::spool::Spool>>,
}

impl LedgerWriter {
    pub fn new(ledger: Arc<Ledger>, store: Store, flush_interval: Duration) -> LedgerWriter {
        let start_minute_ms = ledger.clock().now_ms() / MINUTE_MS * MINUTE_MS;
        LedgerWriter {
            ledger,
            store,
            flush_interval,
            start_minute_ms,
            stats: PersistStats {
                healthy: AtomicBool::new(true),
                ..PersistStats::default()
            },
            last_log: Mutex::new(None),
            spool: None,
        }
    }

    /// Failed deltas go to `spool` (durable) instead of back into the ledger's memory.
    pub fn with_spool(mut self, spool: Option<Arc<super::spool::Spool>>) -> LedgerWriter {
        self.spool = spool;
        self
    }

    pub fn ledger(&self) -> &Arc<Ledger> {
        &self.ledger
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    pub fn is_loaded(&self) -> bool {
        self.stats.loaded.load(Ordering::Relaxed)
    }

    /// Loads the history kept in the store into the ledger (not marked for writing back).
    /// Returns the bucket rows loaded. Call once; [`run`] does.
    pub async fn load(&self) -> Result<usize, StoreError> {
        let now = self.ledger.clock().now_ms();
        let from =
            now.saturating_sub(self.ledger.retention().as_millis() as u64) / HOUR_MS * HOUR_MS;
        let minutes_from = self.ledger.minutes_from().min(self.start_minute_ms);
        let hours = self
            .store
            .ledger_sums(from, minutes_from, Some(HOUR_MS))
            .await?;
        let minutes = self
            .store
            .ledger_sums(minutes_from, self.start_minute_ms, Some(MINUTE_MS))
            .await?;
        let incidents = self
            .store
            .ledger_incidents(
                from,
                self.start_minute_ms.saturating_sub(1),
                INCIDENTS_LOADED,
            )
            .await?;
        let rows = hours.len() + minutes.len();
        for row in hours.iter().chain(&minutes) {
            self.ledger
                .add(row.scope, &row.name, row.bucket_ms, &row.tally, false);
        }
        let open = incidents
            .iter()
            .filter(|i| i.closed_at_ms.is_none())
            .count();
        self.ledger.load_incidents(incidents);
        self.stats.loaded.store(true, Ordering::Relaxed);
        tracing::info!(
            rows,
            open_incidents = open,
            backend = self.store.backend(),
            "availability ledger loaded from the store"
        );
        Ok(rows)
    }

    /// Writes the ledger's changes since the last flush; on failure they are put back for the
    /// next one. Returns the bucket deltas written.
    pub async fn flush(&self) -> Result<usize, StoreError> {
        let deltas = self.ledger.drain_dirty();
        let n = deltas.len();
        if !deltas.is_empty()
            && let Err(e) = self.store.add_ledger_deltas(&deltas).await
        {
            let deltas = match self.spool_deltas(deltas).await {
                Ok(()) => {
                    self.failed(
                        &e,
                        "availability ledger could not be written; spooled to disk",
                    );
                    return Err(e);
                }
                Err(deltas) => deltas,
            };
            self.ledger.restore_dirty(deltas);
            self.failed(
                &e,
                "availability ledger could not be written; kept for the next flush",
            );
            return Err(e);
        }
        let incidents = self.ledger.drain_incidents();
        for (i, incident) in incidents.iter().enumerate() {
            if let Err(e) = self.store.upsert_incident(incident).await {
                self.ledger.restore_incidents(incidents[i..].to_vec());
                self.failed(
                    &e,
                    "incidents could not be written; kept for the next flush",
                );
                return Err(e);
            }
        }
        self.stats.flushes.fetch_add(1, Ordering::Relaxed);
        self.stats
            .rows_written
            .fetch_add(n as u64, Ordering::Relaxed);
        self.stats
            .incidents_written
            .fetch_add(incidents.len() as u64, Ordering::Relaxed);
        if !self.stats.healthy.swap(true, Ordering::Relaxed) {
            tracing::info!("availability ledger writes are back");
        }
        Ok(n)
    }

    /// Hands deltas to the spool; gives them back when there is none or it cannot take them.
    async fn spool_deltas(
        &self,
        deltas: Vec<crate::telemetry::ledger::Delta>,
    ) -> Result<(), Vec<crate::telemetry::ledger::Delta>> {
        let Some(spool) = &self.spool else {
            return Err(deltas);
        };
        let spool = Arc::clone(spool);
        let n = deltas.len() as u64;
        let spooled = tokio::task::spawn_blocking(move || {
            match spool.append(super::spooled::LEDGER, &deltas) {
                Ok(()) => Ok(true),
                // Full: dropped (counted and logged by the spool); nothing to give back.
                Err(super::spool::SpoolError::Full(_)) => Ok(false),
                Err(super::spool::SpoolError::Io(_)) => Err(deltas),
            }
        })
        .await
        .unwrap_or_else(|_| Err(Vec::new()))?;
        if spooled {
            self.stats.rows_spooled.fetch_add(n, Ordering::Relaxed);
        }
        Ok(())
    }

    /// Deletes what is past retention. Returns (bucket rows, incidents) deleted.
    pub async fn prune(&self) -> Result<(u64, u64), StoreError> {
        let before = self
            .ledger
            .clock()
            .now_ms()
            .saturating_sub(self.ledger.retention().as_millis() as u64);
        let (buckets, incidents) = self.store.prune_ledger(before).await?;
        self.stats.rows_pruned.fetch_add(buckets, Ordering::Relaxed);
        if buckets + incidents > 0 {
            tracing::info!(buckets, incidents, "pruned ledger rows past retention");
        }
        Ok((buckets, incidents))
    }

    fn failed(&self, e: &StoreError, message: &'static str) {
        self.stats.failed_flushes.fetch_add(1, Ordering::Relaxed);
        self.stats.healthy.store(false, Ordering::Relaxed);
        if let Ok(mut last) = self.stats.last_error.lock() {
            *last = Some(e.to_string());
        }
        self.log(|| tracing::warn!(error = %e, "{message}"));
    }

    /// Logs at most once per 30 s (a down store fails every tick).
    fn log(&self, write: impl FnOnce()) {
        let mut last = self.last_log.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
            write();
            *last = Some(Instant::now());
        }
    }

    pub fn snapshot(&self) -> serde_json::Value {
        let s = &self.stats;
        serde_json::json!({
            "loaded": s.loaded.load(Ordering::Relaxed),
            "healthy": s.healthy.load(Ordering::Relaxed),
            "flushes": s.flushes.load(Ordering::Relaxed),
            "rows_written": s.rows_written.load(Ordering::Relaxed),
            "incidents_written": s.incidents_written.load(Ordering::Relaxed),
            "failed_flushes": s.failed_flushes.load(Ordering::Relaxed),
            "rows_spooled": s.rows_spooled.load(Ordering::Relaxed),
            "rows_pruned": s.rows_pruned.load(Ordering::Relaxed),
            "last_error": s.last_error.lock().ok().and_then(|e| e.clone()),
        })
    }
}

/// Loads history, then flushes every `flush_interval` and prunes every hour, until the
/// [`LedgerWriter`] is dropped.
pub async fn run(persist: Weak<LedgerWriter>) {
    let Some(interval) = persist.upgrade().map(|p| p.flush_interval) else {
        return;
    };
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut last_prune: Option<Instant> = None;
    loop {
        tick.tick().await;
        let Some(p) = persist.upgrade() else {
            return;
        };
        if !p.is_loaded()
            && let Err(e) = p.load().await
        {
            p.log(
                || tracing::warn!(error = %e, "availability history could not be loaded; retrying"),
            );
        }
        // Errors are counted and logged inside.
        let _ = p.flush().await;
        if p.is_loaded() && last_prune.is_none_or(|t| t.elapsed() >= PRUNE_EVERY) {
            match p.prune().await {
                Ok(_) => last_prune = Some(Instant::now()),
                Err(e) => p.log(|| tracing::warn!(error = %e, "ledger pruning failed")),
            }
        }
    }
}

#[cfg(test)]
mod tests;
