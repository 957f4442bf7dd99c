//! The on-disk spool: what the store could not take (usage records, ledger deltas) waits here,
//! across restarts, until the store is back.
//!
//! - **Format.** JSON lines in segment files `spool-{seq:016}-{random}.jsonl` in
//!   `store.spool_dir`; each line is one batch, `{"kind":"usage","records":[…]}`, written by the
//!   writer whose store write failed. The spool knows only the kind tag; the store decides what a
//!   kind means when it replays it (`Store::apply_spooled`), so a new kind of record needs no
//!   change here.
//! - **Durability.** Each append is one `write` of whole lines followed by `fsync` (the writers
//!   hand over whole batches, so this is fsync per batch, not per record). A line cut short by a
//!   crash is skipped at replay (counted as dropped, logged).
//! - **Bound.** At most `store.spool_max_bytes` on disk; an append that would pass it is refused
//!   and its records dropped: counted in `nines_spool_dropped_records_total`, logged at most
//!   every 30 s. The newest are dropped, so what is kept is a gap-free prefix of the outage.
//! - **Replay** ([`replay`]): oldest segment first, line by line, each line applied by the store
//!   in one transaction that also records "lines applied" for the segment (table
//!   `spool_progress`), so a replay cut short (crash, store gone again) resumes after the last
//!   line applied and never applies one twice. A segment whose lines are all applied is deleted
//!   (the file first, then its progress row). Replay runs at start and whenever a writer finds
//!   the store failing, retrying every second until the spool is empty.
//!
//! One spool directory belongs to one process: replicas each need their own.

use super::Store;
use serde::Serialize;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use tokio::sync::Notify;
use tokio::time::Instant;

/// A segment is closed for appends past this size (and when replay reaches it).
const SEGMENT_BYTES: u64 = 8 << 20;
const RETRY_EVERY: Duration = Duration::from_secs(1);
const LOG_EVERY: Duration = Duration::from_secs(30);

/// Counters for `/metrics` and `/health/ready`.
#[derive(Debug, Default)]
pub struct SpoolStats {
    /// Records appended.
    pub spooled: AtomicU64,
    /// Records applied to the store by replay.
    pub replayed: AtomicU64,
    /// Records refused because the spool was full, or unreadable at replay.
    pub dropped: AtomicU64,
    /// Bytes on disk now.
    pub bytes: AtomicU64,
    /// Batches (lines) waiting on disk now.
    pub pending_batches: AtomicU64,
}

/// Why an append did not happen.
#[derive(Debug, thiserror::Error)]
pub enum SpoolError {
    #[error("the spool is full ({0} bytes)")]
    Full(u64),
    #[error("spool I/O: {0}")]
    Io(#[from] std::io::Error),
}

struct Open {
    name: String,
    file: File,
    bytes: u64,
}

struct Inner {
    /// The segment appends go to, if one is open.
    current: Option<Open>,
    next_seq: u64,
    last_drop_log: Option<Instant>,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    inner: Mutex<Inner>,
    pub stats: SpoolStats,
    /// Wakes the replayer (an append happened).
    wake: Notify,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool").field("dir", &self.dir).finish()
    }
}

#[derive(Serialize)]
struct Line<'a, T: Serialize> {
    kind: &'a str,
    records: &'a [T],
}

impl Spool {
    /// Opens (creating) the spool directory and counts what it holds from an earlier run.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Spool, SpoolError> {
        fs::create_dir_all(dir)?;
        let spool = Spool {
            dir: dir.to_owned(),
            max_bytes,
            inner: Mutex::new(Inner {
                current: None,
                next_seq: 0,
                last_drop_log: None,
            }),
            stats: SpoolStats::default(),
            wake: Notify::new(),
        };
        let segments = spool.segments()?;
        let mut bytes = 0;
        let mut lines = 0;
        for name in &segments {
            let path = dir.join(name);
            bytes += fs::metadata(&path)?.len();
            lines += BufReader::new(File::open(&path)?).lines().count() as u64;
        }
        spool.stats.bytes.store(bytes, Ordering::Relaxed);
        spool.stats.pending_batches.store(lines, Ordering::Relaxed);
        let next = segments.last().and_then(|n| seq_of(n)).map_or(0, |s| s + 1);
        spool.lock().next_seq = next;
        if lines > 0 {
            tracing::info!(
                dir = %dir.display(),
                batches = lines,
                bytes,
                "the spool holds records from an earlier run; they are written once the store answers"
            );
        }
        Ok(spool)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Segment file names, oldest first.
    fn segments(&self) -> Result<Vec<String>, std::io::Error> {
        let mut names: Vec<String> = fs::read_dir(&self.dir)?
            .filter_map(Result::ok)
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| seq_of(n).is_some())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Whether batches wait on disk.
    pub fn is_empty(&self) -> bool {
        self.stats.pending_batches.load(Ordering::Relaxed) == 0
    }

    /// Appends one batch of `kind` records durably (written and fsync'd before this returns).
    /// Blocking file I/O: call it from `spawn_blocking` or a writer's own task.
    pub fn append<T: Serialize>(&self, kind: &str, records: &[T]) -> Result<(), SpoolError> {
        if records.is_empty() {
            return Ok(());
        }
        let mut line = serde_json::to_vec(&Line { kind, records })
            .map_err(|e| SpoolError::Io(std::io::Error::other(e)))?;
        line.push(b'\n');
        let len = line.len() as u64;
        let mut inner = self.lock();
        if self.stats.bytes.load(Ordering::Relaxed) + len > self.max_bytes {
            self.stats
                .dropped
                .fetch_add(records.len() as u64, Ordering::Relaxed);
            if inner.last_drop_log.is_none_or(|t| t.elapsed() >= LOG_EVERY) {
                inner.last_drop_log = Some(Instant::now());
                tracing::error!(
                    kind,
                    records = records.len(),
                    dropped_total = self.stats.dropped.load(Ordering::Relaxed),
                    max_bytes = self.max_bytes,
                    "the spool is full: records the store could not take are dropped"
                );
            }
            return Err(SpoolError::Full(self.max_bytes));
        }
        if inner
            .current
            .as_ref()
            .is_none_or(|c| c.bytes >= SEGMENT_BYTES)
        {
            let seq = inner.next_seq;
            inner.next_seq += 1;
            let name = format!("spool-{seq:016}-{}.jsonl", uuid::Uuid::new_v4().simple());
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(self.dir.join(&name))?;
            // The new file's name must survive a crash too.
            if let Ok(d) = File::open(&self.dir) {
                let _ = d.sync_all();
            }
            inner.current = Some(Open {
                name,
                file,
                bytes: 0,
            });
        }
        let Some(current) = inner.current.as_mut() else {
            return Err(SpoolError::Io(std::io::Error::other("no open segment")));
        };
        current.file.write_all(&line)?;
        current.file.sync_data()?;
        current.bytes += len;
        self.stats.bytes.fetch_add(len, Ordering::Relaxed);
        self.stats.pending_batches.fetch_add(1, Ordering::Relaxed);
        self.stats
            .spooled
            .fetch_add(records.len() as u64, Ordering::Relaxed);
        drop(inner);
        self.wake.notify_one();
        Ok(())
    }

    /// Closes the segment being appended to if it is `name`, so replay can finish it.
    fn seal(&self, name: &str) {
        let mut inner = self.lock();
        if inner.current.as_ref().is_some_and(|c| c.name == name) {
            inner.current = None;
        }
    }

    pub fn snapshot(&self) -> serde_json::Value {
        let s = &self.stats;
        serde_json::json!({
            "dir": self.dir.display().to_string(),
            "pending_batches": s.pending_batches.load(Ordering::Relaxed),
            "bytes": s.bytes.load(Ordering::Relaxed),
            "max_bytes": self.max_bytes,
            "spooled": s.spooled.load(Ordering::Relaxed),
            "replayed": s.replayed.load(Ordering::Relaxed),
            "dropped": s.dropped.load(Ordering::Relaxed),
        })
    }
}

fn seq_of(name: &str) -> Option<u64> {
    let rest = name.strip_prefix("spool-")?.strip_suffix(".jsonl")?;
    rest.split('-').next()?.parse().ok()
}

/// How one line went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Written now.
    Written(usize),
    /// Written by an earlier replay (the progress row says so).
    AlreadyThere,
    /// Not a batch this version can read: skipped (logged by the store).
    Unreadable,
}

/// Replays every segment once, oldest first; stops at the first line the store fails on.
/// Returns the records written.
pub async fn replay_once(spool: &Spool, store: &Store) -> Result<u64, super::StoreError> {
    let mut written = 0;
    let segments = spool
        .segments()
        .map_err(|e| super::StoreError::Invalid(e.to_string()))?;
    for name in segments {
        // Appends move to a new segment; this one is read to its end.
        spool.seal(&name);
        let path = spool.dir.join(&name);
        let text = match tokio::fs::read(&path).await {
            Ok(t) => t,
            Err(e) => return Err(super::StoreError::Invalid(format!("spool: {e}"))),
        };
        let mut lines: Vec<&[u8]> = text.split(|b| *b == b'\n').collect();
        // The text ends with a newline; a last piece without one was cut short by a crash.
        let torn = lines.pop().filter(|l| !l.is_empty());
        for (i, line) in lines.iter().enumerate() {
            match store.apply_spooled(&name, i as i64, line).await? {
                Applied::Written(n) => {
                    written += n as u64;
                    spool.stats.replayed.fetch_add(n as u64, Ordering::Relaxed);
                    spool.stats.pending_batches.fetch_sub(1, Ordering::Relaxed);
                }
                Applied::AlreadyThere => {
                    spool.stats.pending_batches.fetch_sub(1, Ordering::Relaxed);
                }
                Applied::Unreadable => {
                    spool.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    spool.stats.pending_batches.fetch_sub(1, Ordering::Relaxed);
                }
            }
        }
        if let Some(torn) = torn {
            spool.stats.dropped.fetch_add(1, Ordering::Relaxed);
            spool.stats.pending_batches.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!(
                segment = %name,
                bytes = torn.len(),
                "a spooled batch was cut short by a crash and is skipped"
            );
        }
        // File first: a progress row without its file is harmless; a file without its row would
        // be replayed again.
        tokio::fs::remove_file(&path)
            .await
            .map_err(|e| super::StoreError::Invalid(format!("spool: {e}")))?;
        spool.stats.bytes.fetch_sub(
            (text.len() as u64).min(spool.stats.bytes.load(Ordering::Relaxed)),
            Ordering::Relaxed,
        );
        store.forget_spool_segment(&name).await?;
        tracing::info!(segment = %name, "spooled records written to the store");
    }
    Ok(written)
}

/// Replays whenever the spool holds something, every second until the store takes it, until the
/// spool is dropped.
pub async fn replay(spool: Weak<Spool>, store: Store) {
    let mut last_log: Option<Instant> = None;
    loop {
        let Some(s) = spool.upgrade() else { return };
        if !s.is_empty()
            && let Err(e) = replay_once(&s, &store).await
            && last_log.is_none_or(|t| t.elapsed() >= LOG_EVERY)
        {
            last_log = Some(Instant::now());
            tracing::warn!(error = %e, "spooled records cannot be written yet; retrying");
        }
        if s.is_empty() {
            // Nothing to do until an append (or the periodic check, should one be missed).
            let _ = tokio::time::timeout(Duration::from_secs(30), s.wake.notified()).await;
        } else {
            drop(s);
            tokio::time::sleep(RETRY_EVERY).await;
        }
    }
}

/// A spool shared by the writers and the replayer.
pub type SharedSpool = Arc<Spool>;

#[cfg(test)]
mod tests;
