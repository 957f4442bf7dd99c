//! A rolling window of counters in fixed time buckets, on tokio's clock. Shared by the breaker's
//! failure rate, the retry budget and the hedge cap so they all age out old traffic the same way.

use std::time::Duration;
use tokio::time::Instant;

const BUCKETS: usize = 10;

/// Two counters (`a`, `b`) per bucket; what they mean is the owner's business.
#[derive(Debug, Clone)]
pub struct RollingWindow {
    origin: Instant,
    bucket_len: Duration,
    /// Absolute bucket number each slot currently holds.
    epochs: [u64; BUCKETS],
    counts: [(u64, u64); BUCKETS],
}

impl RollingWindow {
    pub fn new(window: Duration, now: Instant) -> Self {
        let bucket_len = (window / BUCKETS as u32).max(Duration::from_millis(1));
        RollingWindow {
            origin: now,
            bucket_len,
            epochs: [u64::MAX; BUCKETS],
            counts: [(0, 0); BUCKETS],
        }
    }

    fn epoch(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.origin).as_nanos() / self.bucket_len.as_nanos()) as u64
    }

    fn slot(&mut self, now: Instant) -> &mut (u64, u64) {
        let epoch = self.epoch(now);
        let i = (epoch % BUCKETS as u64) as usize;
        if self.epochs[i] != epoch {
            self.epochs[i] = epoch;
            self.counts[i] = (0, 0);
        }
        &mut self.counts[i]
    }

    pub fn add(&mut self, now: Instant, a: u64, b: u64) {
        let slot = self.slot(now);
        slot.0 += a;
        slot.1 += b;
    }

    /// Sums over the buckets still inside the window.
    pub fn totals(&self, now: Instant) -> (u64, u64) {
        let current = self.epoch(now);
        let oldest = current.saturating_sub(BUCKETS as u64 - 1);
        self.epochs
            .iter()
            .zip(self.counts.iter())
            .filter(|(e, _)| **e != u64::MAX && **e >= oldest && **e <= current)
            .fold((0, 0), |acc, (_, c)| (acc.0 + c.0, acc.1 + c.1))
    }

    pub fn clear(&mut self) {
        self.epochs = [u64::MAX; BUCKETS];
        self.counts = [(0, 0); BUCKETS];
    }
}
