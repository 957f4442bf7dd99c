//! Usage accounting: every request's counts, tokens and cost added to its minute's rollup in
//! memory ([`Accounting::add`]: one map update under a short lock, no allocation beyond the
//! row's key, never a wait on the store), and the rollups added to the store's rows
//! ([`Store::add_usage_rollups`]) every `store.flush_interval` and at shutdown.
//!
//! Nothing is dropped: a flush takes the whole map and writes it in one transaction; when the
//! write fails (the store is down) the rows are added back to the map and the next tick writes
//! them with whatever came since. Memory while the store is down grows with the number of
//! distinct rows (minutes × active org/user/key/model/deployment combinations), not with
//! requests. The store's write rate is likewise one row per active combination per flush.
//!
//! A write whose answer is lost (the connection dropped after the commit) is retried and counted
//! twice, as for the ledger (`ledger_writer`): an additive upsert cannot be made idempotent
//! without a per-flush id table, and the error is bounded by one flush of one replica.

use super::rollup::{PackedRollupKey, RollupKey, RollupKeyRef, RollupSums};
use super::{Store, StoreError};
use futures_util::future::BoxFuture;
use hashbrown::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::time::Instant;

const LOG_EVERY: Duration = Duration::from_secs(30);

/// Where rollups go: the store, or a test's stand-in.
pub trait RollupSink: Send + Sync + 'static {
    fn add<'a>(&'a self, rows: &'a [(RollupKey, RollupSums)]) -> BoxFuture<'a, Result<(), String>>;
}

impl RollupSink for Store {
    fn add<'a>(&'a self, rows: &'a [(RollupKey, RollupSums)]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            self.add_usage_rollups(rows)
                .await
                .map_err(|e: StoreError| e.to_string())
        })
    }
}

/// Counters for `/health/ready`, `/admin/status` and the shutdown line.
#[derive(Debug, Default)]
pub struct AccountingStats {
    /// Requests added and not yet in the store.
    pub pending: AtomicU64,
    /// Requests whose rollups reached the store.
    pub requests_written: AtomicU64,
    /// Rollup rows written (each an upsert): what the store's write rate is made of.
    pub rows_written: AtomicU64,
    pub flushes: AtomicU64,
    pub failed_flushes: AtomicU64,
    /// False after a failed flush until the next one succeeds.
    pub healthy: AtomicBool,
    pub last_error: Mutex<Option<String>>,
}

impl AccountingStats {
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "pending_requests": self.pending.load(Ordering::Relaxed),
            "requests_written": self.requests_written.load(Ordering::Relaxed),
            "rows_written": self.rows_written.load(Ordering::Relaxed),
            "flushes": self.flushes.load(Ordering::Relaxed),
            "failed_flushes": self.failed_flushes.load(Ordering::Relaxed),
            "healthy": self.healthy.load(Ordering::Relaxed),
            "last_error": self.last_error.lock().ok().and_then(|e| e.clone()),
        })
    }
}

/// The in-memory rollups of one process and their way to the store.
pub struct Accounting {
    open: Mutex<HashMap<PackedRollupKey, RollupSums>>,
    sink: Arc<dyn RollupSink>,
    /// One flush at a time, so a shutdown flush waits for a periodic one in progress.
    flushing: tokio::sync::Mutex<()>,
    pub stats: AccountingStats,
    last_log: Mutex<Option<Instant>>,
}

impl std::fmt::Debug for Accounting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accounting")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Accounting {
    pub fn new(sink: Arc<dyn RollupSink>) -> Accounting {
        Accounting {
            open: Mutex::new(HashMap::new()),
            sink,
            flushing: tokio::sync::Mutex::new(()),
            stats: AccountingStats {
                healthy: AtomicBool::new(true),
                ..AccountingStats::default()
            },
            last_log: Mutex::new(None),
        }
    }

    /// Starts flushing every `interval` (when called inside a runtime); the task ends once the
    /// last `Arc` is dropped.
    pub fn spawn(sink: Arc<dyn RollupSink>, interval: Duration) -> Arc<Accounting> {
        let accounting = Arc::new(Accounting::new(sink));
        if tokio::runtime::Handle::try_current().is_ok() {
            tokio::spawn(run(Arc::downgrade(&accounting), interval));
        }
        accounting
    }

    /// Adds one request's sums to its row; never waits on the store, and allocates only for a
    /// row this flush has not seen yet.
    pub fn add(&self, key: RollupKeyRef<'_>, sums: RollupSums) {
        let Ok(mut open) = self.open.lock() else {
            return;
        };
        match open.get_mut(&key) {
            Some(row) => row.add(&sums),
            None => {
                open.insert(PackedRollupKey::from(key), sums);
            }
        }
        self.stats
            .pending
            .fetch_add(sums.requests, Ordering::Relaxed);
    }

    /// Writes everything added so far; on failure it stays held for the next flush. Returns the
    /// rows written.
    pub async fn flush(&self) -> Result<usize, String> {
        let _one = self.flushing.lock().await;
        let rows: Vec<(RollupKey, RollupSums)> = match self.open.lock() {
            Ok(mut open) => std::mem::take(&mut *open)
                .into_iter()
                .map(|(key, sums)| (key.unpack(), sums))
                .collect(),
            Err(_) => return Err("the usage rollups' lock is poisoned".into()),
        };
        if rows.is_empty() {
            return Ok(0);
        }
        let requests: u64 = rows.iter().map(|(_, s)| s.requests).sum();
        match self.sink.add(&rows).await {
            Ok(()) => {
                let s = &self.stats;
                s.pending.fetch_sub(requests, Ordering::Relaxed);
                s.requests_written.fetch_add(requests, Ordering::Relaxed);
                s.rows_written
                    .fetch_add(rows.len() as u64, Ordering::Relaxed);
                s.flushes.fetch_add(1, Ordering::Relaxed);
                if !s.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!(rows = rows.len(), "usage rollups reach the store again");
                }
                Ok(rows.len())
            }
            Err(e) => {
                // Back into the map, added to whatever arrived during the write.
                if let Ok(mut open) = self.open.lock() {
                    for (key, sums) in rows {
                        open.entry(PackedRollupKey::from(key.as_ref()))
                            .or_default()
                            .add(&sums);
                    }
                }
                self.note_failure(&e);
                Err(e)
            }
        }
    }

    fn note_failure(&self, error: &str) {
        let s = &self.stats;
        s.failed_flushes.fetch_add(1, Ordering::Relaxed);
        s.healthy.store(false, Ordering::Relaxed);
        if let Ok(mut last) = s.last_error.lock() {
            *last = Some(error.to_owned());
        }
        if let Ok(mut at) = self.last_log.lock()
            && at.is_none_or(|t| t.elapsed() >= LOG_EVERY)
        {
            *at = Some(Instant::now());
            tracing::warn!(
                error,
                pending_requests = s.pending.load(Ordering::Relaxed),
                "usage rollups could not be written; holding them for the next flush"
            );
        }
    }
}

/// Flushes every `interval` while the accounting lives.
async fn run(accounting: Weak<Accounting>, interval: Duration) {
    let mut tick = tokio::time::interval(interval.max(Duration::from_millis(10)));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(accounting) = accounting.upgrade() else {
            return;
        };
        // Failures are counted and logged by `flush`; the rows wait for the next tick.
        let _ = accounting.flush().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    /// Fails the first `failures` writes, then keeps every row it is handed.
    #[derive(Default)]
    struct Kept {
        failures: AtomicUsize,
        rows: Mutex<Vec<(RollupKey, RollupSums)>>,
    }

    impl RollupSink for Kept {
        fn add<'a>(
            &'a self,
            rows: &'a [(RollupKey, RollupSums)],
        ) -> BoxFuture<'a, Result<(), String>> {
            Box::pin(async move {
                if self
                    .failures
                    .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                    .is_ok()
                {
                    return Err("store down".into());
                }
                self.rows.lock().unwrap().extend_from_slice(rows);
                Ok(())
            })
        }
    }

    fn key(minute_ms: i64, model: &str) -> RollupKey {
        RollupKey {
            minute_ms,
            org_id: "org".into(),
            user_id: "".into(),
            key_id: "key".into(),
            model: model.into(),
            deployment: "d0".into(),
            fallback: "".into(),
        }
    }

    fn one(cost: f64, error: bool) -> RollupSums {
        RollupSums {
            requests: 1,
            errors: u64::from(error),
            tokens_in: 10,
            tokens_out: 5,
            cost,
        }
    }

    #[tokio::test]
    async fn requests_of_one_row_are_written_as_one_row() {
        let sink = Arc::new(Kept::default());
        let accounting = Accounting::new(Arc::clone(&sink) as Arc<dyn RollupSink>);
        for i in 0..1000 {
            accounting.add(key(60_000, "a").as_ref(), one(0.5, i % 10 == 0));
        }
        accounting.add(key(120_000, "a").as_ref(), one(0.25, false));
        assert_eq!(accounting.flush().await, Ok(2));
        let mut rows = sink.rows.lock().unwrap().clone();
        rows.sort_by_key(|(k, _)| k.minute_ms);
        assert_eq!(rows[0].1.requests, 1000);
        assert_eq!(rows[0].1.errors, 100);
        assert_eq!(rows[0].1.tokens_in, 10_000);
        assert_eq!(rows[0].1.cost, 500.0);
        assert_eq!(rows[1].1.requests, 1);
        assert_eq!(accounting.stats.pending.load(Ordering::Relaxed), 0);
        assert_eq!(
            accounting.stats.requests_written.load(Ordering::Relaxed),
            1001
        );
    }

    #[tokio::test]
    async fn a_failed_flush_keeps_every_request_for_the_next() {
        let sink = Arc::new(Kept {
            failures: AtomicUsize::new(2),
            ..Kept::default()
        });
        let accounting = Accounting::new(Arc::clone(&sink) as Arc<dyn RollupSink>);
        accounting.add(key(60_000, "a").as_ref(), one(1.0, false));
        assert!(accounting.flush().await.is_err());
        accounting.add(key(60_000, "a").as_ref(), one(1.0, false));
        accounting.add(key(60_000, "b").as_ref(), one(1.0, true));
        assert!(accounting.flush().await.is_err());
        assert!(!accounting.stats.healthy.load(Ordering::Relaxed));
        assert_eq!(accounting.stats.pending.load(Ordering::Relaxed), 3);
        assert_eq!(accounting.flush().await, Ok(2));
        let rows = sink.rows.lock().unwrap().clone();
        let total: u64 = rows.iter().map(|(_, s)| s.requests).sum();
        assert_eq!(total, 3);
        let a = rows.iter().find(|(k, _)| &*k.model == "a").unwrap();
        assert_eq!((a.1.requests, a.1.cost), (2, 2.0));
        assert!(accounting.stats.healthy.load(Ordering::Relaxed));
        assert_eq!(accounting.stats.failed_flushes.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn rows_are_kept_apart_by_each_text_not_by_their_concatenation() {
        // Held packed in one text: these run together to the same bytes, and hash alike where
        // only the organisation's and user's lengths are hashed.
        let keys = [
            ("ab", "c", "key", "m", "d0", ""),
            ("a", "bc", "key", "m", "d0", ""),
            ("", "abc", "key", "m", "d0", ""),
            ("a", "bc", "ke", "ym", "d0", ""),
            ("a", "bc", "key", "m", "d", "0"),
            ("a", "bc", "key", "m", "", "d0"),
            ("a", "bc", "key", "m", "d0", ""),
            ("ünï", "cödé", "kéy", "m", "d0", "€"),
        ];
        let sink = Arc::new(Kept::default());
        let accounting = Accounting::new(Arc::clone(&sink) as Arc<dyn RollupSink>);
        for (i, (org_id, user_id, key_id, model, deployment, fallback)) in keys.iter().enumerate() {
            let key = RollupKeyRef {
                minute_ms: 60_000,
                org_id,
                user_id,
                key_id,
                model,
                deployment,
                fallback,
            };
            for _ in 0..=i {
                accounting.add(key, one(1.0, false));
            }
        }
        assert_eq!(accounting.flush().await, Ok(keys.len() - 1));
        let rows = sink.rows.lock().unwrap().clone();
        for (i, (org_id, user_id, key_id, model, deployment, fallback)) in keys.iter().enumerate() {
            let row = rows
                .iter()
                .find(|(k, _)| {
                    (
                        &*k.org_id,
                        &*k.user_id,
                        &*k.key_id,
                        &*k.model,
                        &*k.deployment,
                        &*k.fallback,
                    ) == (*org_id, *user_id, *key_id, *model, *deployment, *fallback)
                })
                .unwrap();
            // The second and the seventh key are the same row.
            let expected = match i {
                1 | 6 => 2 + 7,
                _ => i as u64 + 1,
            };
            assert_eq!(row.1.requests, expected, "{:?}", row.0);
        }
    }

    #[tokio::test(start_paused = true)]
    async fn rollups_are_flushed_every_interval() {
        let sink = Arc::new(Kept::default());
        let accounting = Accounting::spawn(
            Arc::clone(&sink) as Arc<dyn RollupSink>,
            Duration::from_secs(1),
        );
        accounting.add(key(60_000, "a").as_ref(), one(1.0, false));
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(sink.rows.lock().unwrap().is_empty());
        tokio::time::sleep(Duration::from_millis(600)).await;
        assert_eq!(sink.rows.lock().unwrap().len(), 1);
    }
}
