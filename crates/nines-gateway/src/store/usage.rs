//! Usage records: per-request detail rows, for the requests `store.request_records` selects
//! ([`UsageWriter::wants`]; default: those that failed), written off the request path. Spend and
//! reports do not read them: every request is counted in the per-minute rollups
//! (`accounting`), whatever this writer keeps or drops.
//!
//! The request path calls [`UsageWriter::record`], which never waits: it puts the record in a
//! bounded channel (`store.usage_queue`) or, when that is full, drops it and counts the drop. One
//! task drains the channel into batches (`store.batch_size` rows, or whatever arrived within
//! `store.flush_interval`; up to `CATCH_UP` batches at once while it is behind) and writes each
//! in one `COPY` (Postgres) or one transaction (SQLite). When a write fails (the store
//! is down), the batch stays in a buffer of at most `store.usage_buffer` records — beyond that the
//! oldest are dropped, counted — the writer keeps draining the channel into it, and retries with
//! backoff (100 ms doubling to 5 s); once the store answers, the buffer is flushed in order.
//! Failures are logged at most once per 30 s.
//!
//! With a spool (`store::spool`, the default with a `[store]`), a batch the store refuses goes
//! to disk instead of the buffer, and until the next retry (the same backoff) further batches
//! go straight to the spool without trying the store, so a down store costs no request and no
//! shutdown more than one failed write; the spool replays them once the store answers. Only
//! when the spool itself cannot write (a disk error) does the in-memory buffer above apply.

use super::Store;
use super::spool::{Spool, SpoolError};
use crate::config::access::{RequestRecords, StoreConfig};
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::time::Instant;

/// Text in a usage record: shared, so handing a batch to the store binds each value by reference
/// count instead of copying it again (a record is built once per request and then only read).
pub type Text = Arc<str>;

/// What happened to one request, as stored.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct UsageRecord {
    pub id: Text,
    pub request_id: Text,
    pub key_id: Option<Text>,
    pub user_id: Option<Text>,
    pub org_id: Option<Text>,
    /// The model name the client sent.
    pub model: Text,
    /// The deployment that served (or the last one tried).
    pub deployment: Option<Text>,
    pub endpoint: Text,
    pub stream: bool,
    pub attempts: u32,
    pub status: u16,
    /// `ok`, or the failure class / error label the request ended with.
    pub outcome: Text,
    pub tokens_in: Option<u64>,
    pub tokens_out: Option<u64>,
    /// True when the upstream reported no usage and the tokens are nines' estimate.
    pub usage_estimated: bool,
    /// USD, from the serving deployment's `price`.
    pub cost: f64,
    /// Time until nines had the first byte for the client (the commit point).
    pub ttfb_ms: Option<f64>,
    pub latency_ms: f64,
    /// Unix milliseconds.
    pub started_at: i64,
    pub finished_at: i64,
    /// The routing plan: each candidate in order with why it is there, and what was skipped.
    pub plan: Text,
    /// Each attempt: key slot, failure class, status, time (`d0#0 server 500 12ms; …`).
    pub attempt_trail: Text,
    /// The fallback model that served, when the requested model's own candidates could not.
    pub fallback: Option<Text>,
}

/// The stored columns in the order every writer sends them (the SQLite `INSERT` here, the
/// Postgres `COPY` in `pg_copy`): one list, so the two cannot drift apart.
macro_rules! usage_columns {
    () => {
        "id, request_id, key_id, user_id, org_id, model, deployment, endpoint, stream, attempts, \
         status, outcome, tokens_in, tokens_out, usage_estimated, cost, ttfb_ms, latency_ms, \
         started_at, finished_at, plan, attempt_trail, fallback"
    };
}
pub(super) use usage_columns;

pub(super) const INSERT_HEAD: &str = concat!("INSERT INTO usage_records (", usage_columns!(), ") ");

macro_rules! record_of {
    ($r:expr) => {
        UsageRecord {
            id: $r.try_get::<String, _>("id")?.into(),
            request_id: $r.try_get::<String, _>("request_id")?.into(),
            key_id: $r.try_get::<Option<String>, _>("key_id")?.map(Into::into),
            user_id: $r.try_get::<Option<String>, _>("user_id")?.map(Into::into),
            org_id: $r.try_get::<Option<String>, _>("org_id")?.map(Into::into),
            model: $r.try_get::<String, _>("model")?.into(),
            deployment: $r
                .try_get::<Option<String>, _>("deployment")?
                .map(Into::into),
            endpoint: $r.try_get::<String, _>("endpoint")?.into(),
            stream: $r.try_get::<i64, _>("stream")? != 0,
            attempts: $r.try_get::<i64, _>("attempts")? as u32,
            status: $r.try_get::<i64, _>("status")? as u16,
            outcome: $r.try_get::<String, _>("outcome")?.into(),
            tokens_in: $r.try_get::<Option<i64>, _>("tokens_in")?.map(|t| t as u64),
            tokens_out: $r
                .try_get::<Option<i64>, _>("tokens_out")?
                .map(|t| t as u64),
            usage_estimated: $r.try_get::<i64, _>("usage_estimated")? != 0,
            cost: $r.try_get("cost")?,
            ttfb_ms: $r.try_get("ttfb_ms")?,
            latency_ms: $r.try_get("latency_ms")?,
            started_at: $r.try_get("started_at")?,
            finished_at: $r.try_get("finished_at")?,
            plan: $r.try_get::<String, _>("plan")?.into(),
            attempt_trail: $r.try_get::<String, _>("attempt_trail")?.into(),
            fallback: $r.try_get::<Option<String>, _>("fallback")?.map(Into::into),
        }
    };
}
pub(crate) use record_of;

/// Where batches go: the store, or a test's stand-in.
pub trait UsageSink: Send + Sync + 'static {
    fn write<'a>(&'a self, batch: &'a [UsageRecord]) -> BoxFuture<'a, Result<(), String>>;
}

impl UsageSink for Store {
    fn write<'a>(&'a self, batch: &'a [UsageRecord]) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move { self.insert_usage(batch).await.map_err(|e| e.to_string()) })
    }
}

/// Counters of the writer, for `/health/ready` and `/admin/status`.
#[derive(Debug, Default)]
pub struct UsageStats {
    /// Accepted and not yet written or dropped.
    pub pending: AtomicU64,
    pub written: AtomicU64,
    /// Dropped because the queue or the outage buffer was full.
    pub dropped: AtomicU64,
    /// Held while the store is down.
    pub buffered: AtomicU64,
    /// Handed to the spool because the store could not take them.
    pub spooled: AtomicU64,
    pub failed_writes: AtomicU64,
    /// False after a failed write until the next one succeeds.
    pub healthy: AtomicBool,
    pub last_error: Mutex<Option<String>>,
}

impl UsageStats {
    pub fn snapshot(&self) -> serde_json::Value {
        serde_json::json!({
            "pending": self.pending.load(Ordering::Relaxed),
            "written": self.written.load(Ordering::Relaxed),
            "dropped": self.dropped.load(Ordering::Relaxed),
            "buffered": self.buffered.load(Ordering::Relaxed),
            "spooled": self.spooled.load(Ordering::Relaxed),
            "failed_writes": self.failed_writes.load(Ordering::Relaxed),
            "healthy": self.healthy.load(Ordering::Relaxed),
            "last_error": self.last_error.lock().ok().and_then(|e| e.clone()),
        })
    }
}

/// The request path's end of the usage pipeline. Cheap to clone.
#[derive(Clone)]
pub struct UsageWriter {
    tx: mpsc::Sender<UsageRecord>,
    records: RequestRecords,
    pub stats: Arc<UsageStats>,
}

#[derive(Debug, Clone, Copy)]
pub struct WriterSettings {
    pub queue: usize,
    pub buffer: usize,
    pub batch: usize,
    pub flush_interval: Duration,
    /// Which requests get a record.
    pub records: RequestRecords,
}

impl From<&StoreConfig> for WriterSettings {
    fn from(c: &StoreConfig) -> Self {
        WriterSettings {
            queue: c.usage_queue,
            buffer: c.usage_buffer,
            batch: c.batch_size,
            flush_interval: c.flush_interval,
            records: c.request_records,
        }
    }
}

impl UsageWriter {
    /// Starts the batch writer task; it ends once every `UsageWriter` clone is dropped and what
    /// it holds is written (or the store stays down).
    pub fn spawn(
        sink: Arc<dyn UsageSink>,
        settings: WriterSettings,
        spool: Option<Arc<Spool>>,
    ) -> (UsageWriter, tokio::task::JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(settings.queue.max(1));
        let stats = Arc::new(UsageStats {
            healthy: AtomicBool::new(true),
            ..UsageStats::default()
        });
        let task = tokio::spawn(run(sink, rx, settings, Arc::clone(&stats), spool));
        let writer = UsageWriter {
            tx,
            records: settings.records,
            stats,
        };
        (writer, task)
    }

    /// Whether a request that ended with `status` gets a record (`store.request_records`); ask
    /// before building one, which costs more than the rollup.
    pub fn wants(&self, status: u16) -> bool {
        self.records.wants(status)
    }

    /// Hands a record to the writer without waiting; a full queue drops it (counted).
    pub fn record(&self, record: UsageRecord) {
        // Counted first, so the writer can never subtract it before it was added.
        self.stats.pending.fetch_add(1, Ordering::Relaxed);
        if self.tx.try_send(record).is_err() {
            self.stats.pending.fetch_sub(1, Ordering::Relaxed);
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Waits until every accepted record is written (or dropped), at most `within`; for a
    /// graceful shutdown.
    pub async fn drain(&self, within: Duration) {
        let deadline = Instant::now() + within;
        while self.stats.pending.load(Ordering::Relaxed) > 0 && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// How many batches one write may take when the writer is behind.
const CATCH_UP: usize = 8;
/// How often a gathering writer looks at its queue.
const GATHER_TICK: Duration = Duration::from_millis(20);
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
const LOG_EVERY: Duration = Duration::from_secs(30);

async fn run(
    sink: Arc<dyn UsageSink>,
    mut rx: mpsc::Receiver<UsageRecord>,
    settings: WriterSettings,
    stats: Arc<UsageStats>,
    spool: Option<Arc<Spool>>,
) {
    // With a spool: the store is not tried again before this (it just failed).
    let mut retry_at: Option<Instant> = None;
    let mut buffer: VecDeque<UsageRecord> = VecDeque::new();
    let mut open = true;
    let mut backoff = MIN_BACKOFF;
    let mut last_log: Option<Instant> = None;
    let push = |buffer: &mut VecDeque<UsageRecord>, r: UsageRecord| {
        if buffer.len() >= settings.buffer {
            buffer.pop_front();
            stats.dropped.fetch_add(1, Ordering::Relaxed);
            stats.pending.fetch_sub(1, Ordering::Relaxed);
        }
        buffer.push_back(r);
    };
    loop {
        if buffer.is_empty() {
            if !open {
                return;
            }
            match rx.recv().await {
                Some(r) => push(&mut buffer, r),
                None => return,
            }
        }
        // Fill a batch: wait up to the flush interval for more, looking at the queue every
        // `GATHER_TICK` rather than waking for each record (at thousands of requests a second,
        // a wake-up per record cost more CPU than writing them), then take what is queued.
        let deadline = Instant::now() + settings.flush_interval;
        loop {
            let now = Instant::now();
            if !open || buffer.len() + rx.len() >= settings.batch || now >= deadline {
                break;
            }
            if rx.is_closed() {
                // Senders gone: take what is left now (shutdown).
                break;
            }
            tokio::time::sleep(GATHER_TICK.min(deadline - now)).await;
        }
        // Behind (more than a batch waiting): take up to `CATCH_UP` batches in one write, so a
        // store whose round trips are slow under load (a CPU-starved Postgres) still keeps up:
        // one in-flight write of `batch` rows caps the rate at `batch` per round trip.
        while buffer.len() < settings.batch * CATCH_UP {
            match rx.try_recv() {
                Ok(r) => push(&mut buffer, r),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => {
                    open = false;
                    break;
                }
            }
        }
        let n = buffer.len().min(settings.batch * CATCH_UP);
        let store_due = retry_at.is_none_or(|t| Instant::now() >= t);
        let result = if store_due {
            sink.write(&buffer.make_contiguous()[..n]).await
        } else {
            Err("the store failed recently".to_owned())
        };
        if result.is_err()
            && let Some(spool) = &spool
        {
            let batch: Vec<UsageRecord> = buffer.drain(..n).collect();
            let taken = match to_spool(spool, batch).await {
                Ok(()) => {
                    stats.spooled.fetch_add(n as u64, Ordering::Relaxed);
                    stats.pending.fetch_sub(n as u64, Ordering::Relaxed);
                    true
                }
                Err((batch, SpoolError::Full(_))) => {
                    // Counted and logged by the spool.
                    stats
                        .dropped
                        .fetch_add(batch.len() as u64, Ordering::Relaxed);
                    stats
                        .pending
                        .fetch_sub(batch.len() as u64, Ordering::Relaxed);
                    true
                }
                Err((batch, SpoolError::Io(e))) => {
                    // The disk failed too: keep them in memory (below) and try again later.
                    tracing::error!(error = %e, "the spool cannot write; usage records are held in memory");
                    // A batch lost with a panicked spool task is counted as dropped.
                    let lost = (n - batch.len()) as u64;
                    stats.dropped.fetch_add(lost, Ordering::Relaxed);
                    stats.pending.fetch_sub(lost, Ordering::Relaxed);
                    for r in batch.into_iter().rev() {
                        buffer.push_front(r);
                    }
                    retry_at = None;
                    false
                }
            };
            if taken {
                if store_due {
                    stats.failed_writes.fetch_add(1, Ordering::Relaxed);
                    stats.healthy.store(false, Ordering::Relaxed);
                    if let (Err(e), Ok(mut last)) = (&result, stats.last_error.lock()) {
                        *last = Some(e.clone());
                    }
                    if last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                        tracing::warn!(error = ?result.err(), "usage records could not be written; spooled to disk");
                        last_log = Some(Instant::now());
                    }
                    retry_at = Some(Instant::now() + backoff);
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                stats.buffered.store(buffer.len() as u64, Ordering::Relaxed);
                continue;
            }
        }
        match result {
            Ok(()) => {
                buffer.drain(..n);
                stats.written.fetch_add(n as u64, Ordering::Relaxed);
                stats.pending.fetch_sub(n as u64, Ordering::Relaxed);
                if !stats.healthy.swap(true, Ordering::Relaxed) {
                    tracing::info!(
                        buffered = buffer.len(),
                        "usage store is back; flushing buffered records"
                    );
                }
                backoff = MIN_BACKOFF;
                retry_at = None;
            }
            Err(e) => {
                stats.failed_writes.fetch_add(1, Ordering::Relaxed);
                stats.healthy.store(false, Ordering::Relaxed);
                if last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                    tracing::warn!(error = %e, buffered = buffer.len(), "usage records could not be written; buffering");
                    last_log = Some(Instant::now());
                }
                if let Ok(mut last) = stats.last_error.lock() {
                    *last = Some(e);
                }
                // Keep draining the queue while waiting, so the request path never sees it full.
                let until = Instant::now() + backoff;
                while open {
                    tokio::select! {
                        r = rx.recv() => match r {
                            Some(r) => push(&mut buffer, r),
                            None => open = false,
                        },
                        _ = tokio::time::sleep_until(until) => break,
                    }
                }
                if !open && Instant::now() < until {
                    tokio::time::sleep_until(until).await;
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                if !open
                    && stats.failed_writes.load(Ordering::Relaxed) > 0
                    && backoff == MAX_BACKOFF
                {
                    // Shutting down with the store still down: give up on what is left.
                    stats
                        .dropped
                        .fetch_add(buffer.len() as u64, Ordering::Relaxed);
                    stats
                        .pending
                        .fetch_sub(buffer.len() as u64, Ordering::Relaxed);
                    stats.buffered.store(0, Ordering::Relaxed);
                    return;
                }
            }
        }
        stats.buffered.store(buffer.len() as u64, Ordering::Relaxed);
    }
}

/// Hands a batch to the spool off the async threads (it writes and fsyncs); on failure the
/// batch comes back.
async fn to_spool(
    spool: &Arc<Spool>,
    batch: Vec<UsageRecord>,
) -> Result<(), (Vec<UsageRecord>, SpoolError)> {
    let spool = Arc::clone(spool);
    tokio::task::spawn_blocking(move || match spool.append(super::spooled::USAGE, &batch) {
        Ok(()) => Ok(()),
        Err(e) => Err((batch, e)),
    })
    .await
    .unwrap_or_else(|e| Err((Vec::new(), SpoolError::Io(std::io::Error::other(e)))))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records the size of every batch it is handed.
    #[derive(Default)]
    struct Sizes(Mutex<Vec<usize>>);

    impl UsageSink for Sizes {
        fn write<'a>(&'a self, batch: &'a [UsageRecord]) -> BoxFuture<'a, Result<(), String>> {
            self.0.lock().unwrap().push(batch.len());
            Box::pin(async { Ok(()) })
        }
    }

    /// A writer of batches of at most 100 into a `Sizes` sink, with `queued` records already
    /// handed to it.
    fn writer_with(queued: usize) -> (Arc<Sizes>, UsageWriter, tokio::task::JoinHandle<()>) {
        let sink = Arc::new(Sizes::default());
        let settings = WriterSettings {
            queue: 10_000,
            buffer: 100_000,
            batch: 100,
            flush_interval: Duration::from_secs(1),
            records: RequestRecords::All,
        };
        let (writer, task) =
            UsageWriter::spawn(Arc::clone(&sink) as Arc<dyn UsageSink>, settings, None);
        for i in 0..queued {
            writer.record(super::super::tests::awkward(i));
        }
        (sink, writer, task)
    }

    #[tokio::test(start_paused = true)]
    async fn a_writer_that_is_behind_takes_several_batches_at_once() {
        // 2000 records queued before the writer runs: it is 20 batches behind.
        let (sink, writer, task) = writer_with(2000);
        drop(writer);
        task.await.unwrap();
        assert_eq!(*sink.0.lock().unwrap(), [800, 800, 400]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_writer_that_keeps_up_writes_what_arrived_within_the_flush_interval() {
        let (sink, writer, _task) = writer_with(30);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        assert_eq!(*sink.0.lock().unwrap(), [30]);
        assert_eq!(writer.stats.written.load(Ordering::Relaxed), 30);
    }
}
