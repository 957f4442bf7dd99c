//! What a deployment's times to first byte say: its recent samples, kept apart for streamed and
//! whole answers (a stream's first event comes long before a whole body), their percentiles (for
//! hedging and the status page) and the first-byte deadline learned from them.
//!
//! The learned deadline is min(configured, max(floor, k × p99)) once enough samples exist: a
//! deployment that is slow *for it* is abandoned early and the request fails over, while one that
//! is always slow (a reasoning model) keeps a deadline it can meet. An attempt abandoned at the
//! learned deadline is recorded as a sample at that deadline (a censored observation: its real
//! time was at least that): when a deployment really became slower for everyone, those samples
//! lift the p99 and the deadline grows back by k each time, instead of failing every request
//! forever at a deadline learned from a faster past.

use crate::config::resilience::{FIRST_BYTE_SAMPLES, LearnedFirstByte};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

/// Percentiles below this many samples are not trusted for hedging.
const MIN_HEDGE_SAMPLES: usize = 20;

#[derive(Debug, Default)]
pub struct FirstByteHistory {
    /// `[whole answers, streams]`.
    rings: [Mutex<Ring>; 2],
}

/// One kind's recent samples, and the percentiles last read from them.
///
/// Why cached: every attempt asks for its deployment's p99 (the learned deadline), and reading it
/// afresh copies and partially sorts the whole ring, about 0.4 µs of a 31 µs request path
/// (`perf`, 2026-12-07). A percentile of 256 samples barely moves with a few more, so a cached one
/// is read again only after 1/64 of the ring is new (every sample while the ring is small, every
/// 4 once full): an abandoned attempt's censored sample still lifts the deadline within 4 attempts.
#[derive(Debug, Default)]
struct Ring {
    samples: VecDeque<Duration>,
    /// Samples recorded since `cached` was filled.
    fresh: usize,
    /// `(p, min) → percentile`, as last computed.
    cached: Vec<(f64, usize, Option<Duration>)>,
}

impl Ring {
    fn percentile(&mut self, p: f64, min: usize) -> Option<Duration> {
        if self.fresh >= (self.samples.len() / 64).max(1) {
            self.cached.clear();
            self.fresh = 0;
        }
        if let Some((_, _, value)) = self
            .cached
            .iter()
            .find(|(cp, cm, _)| *cp == p && *cm == min)
        {
            return *value;
        }
        let value = percentile_of(self.samples.iter().copied().collect(), p, min);
        self.cached.push((p, min, value));
        value
    }
}

impl FirstByteHistory {
    pub fn record(&self, stream: bool, ttfb: Duration) {
        let mut ring = self.ring(stream);
        if ring.samples.len() == FIRST_BYTE_SAMPLES {
            ring.samples.pop_front();
        }
        ring.samples.push_back(ttfb);
        ring.fresh += 1;
    }

    /// The `p`th percentile of one kind, once `min` samples exist.
    pub fn percentile(&self, stream: bool, p: f64, min: usize) -> Option<Duration> {
        self.ring(stream).percentile(p, min)
    }

    /// The `p`th percentile of both kinds together (the status page's live figure).
    pub fn percentile_all(&self, p: f64) -> Option<Duration> {
        let mut samples: Vec<Duration> = self.ring(false).samples.iter().copied().collect();
        samples.extend(self.ring(true).samples.iter().copied());
        percentile_of(samples, p, MIN_HEDGE_SAMPLES)
    }

    /// The hedge delay's default: this kind's p95.
    pub fn hedge_delay(&self, stream: bool) -> Option<Duration> {
        self.percentile(stream, 95.0, MIN_HEDGE_SAMPLES)
    }

    /// The first-byte deadline for the next attempt of this kind.
    pub fn deadline(
        &self,
        stream: bool,
        configured: Duration,
        policy: &LearnedFirstByte,
    ) -> Duration {
        if !policy.enabled {
            return configured;
        }
        match self.percentile(stream, 99.0, policy.min_samples) {
            Some(p99) => learned(configured, p99, policy),
            None => configured,
        }
    }

    fn ring(&self, stream: bool) -> std::sync::MutexGuard<'_, Ring> {
        // Every update is one push or pop plus a cache: a poisoned lock still holds a valid ring.
        self.rings[usize::from(stream)]
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }
}

/// min(configured, max(floor, multiplier × p99)).
pub fn learned(configured: Duration, p99: Duration, policy: &LearnedFirstByte) -> Duration {
    p99.mul_f64(policy.multiplier)
        .max(policy.floor)
        .min(configured)
}

fn percentile_of(mut samples: Vec<Duration>, p: f64, min: usize) -> Option<Duration> {
    if samples.len() < min.max(1) {
        return None;
    }
    let last = samples.len() - 1;
    let rank = (((p / 100.0) * last as f64).round() as usize).min(last);
    let (_, value, _) = samples.select_nth_unstable(rank);
    Some(*value)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn the_deadline_is_learned_only_from_enough_samples_of_its_own_kind() {
        let h = FirstByteHistory::default();
        let policy = LearnedFirstByte::default();
        let configured = Duration::from_secs(30);
        for _ in 0..49 {
            h.record(true, ms(400));
        }
        assert_eq!(h.deadline(true, configured, &policy), configured, "49 < 50");
        h.record(true, ms(600));
        // p99 of 50 samples is the 600 ms one; 3 × 600 ms is below the 2 s floor.
        assert_eq!(
            h.deadline(true, configured, &policy),
            Duration::from_secs(2)
        );
        assert_eq!(
            h.deadline(false, configured, &policy),
            configured,
            "other kind"
        );
        for _ in 0..50 {
            h.record(true, ms(1500));
        }
        assert_eq!(h.deadline(true, configured, &policy), ms(4500));
    }

    #[test]
    fn an_always_slow_deployment_keeps_its_configured_deadline() {
        let h = FirstByteHistory::default();
        for _ in 0..100 {
            h.record(false, Duration::from_secs(20));
        }
        let policy = LearnedFirstByte::default();
        assert_eq!(
            h.deadline(false, Duration::from_secs(30), &policy),
            Duration::from_secs(30)
        );
        let off = LearnedFirstByte {
            enabled: false,
            ..policy
        };
        let fast = FirstByteHistory::default();
        for _ in 0..100 {
            fast.record(false, ms(10));
        }
        assert_eq!(
            fast.deadline(false, Duration::from_secs(30), &off),
            Duration::from_secs(30)
        );
    }

    #[test]
    fn a_full_ring_reads_its_percentile_again_every_four_samples() {
        let h = FirstByteHistory::default();
        for _ in 0..FIRST_BYTE_SAMPLES {
            h.record(false, ms(100));
        }
        assert_eq!(h.percentile(false, 99.0, 1), Some(ms(100)));
        // Three slow samples are not yet read (the cached p99 stands); the fourth refreshes it,
        // and four of 256 above the rest are past the p99's rank.
        for _ in 0..3 {
            h.record(false, ms(900));
        }
        assert_eq!(h.percentile(false, 99.0, 1), Some(ms(100)));
        h.record(false, ms(900));
        assert_eq!(h.percentile(false, 99.0, 1), Some(ms(900)));
        assert_eq!(
            h.percentile(false, 50.0, 1),
            Some(ms(100)),
            "each percentile cached apart"
        );
    }

    #[test]
    fn censored_samples_at_the_deadline_let_it_grow_back() {
        let h = FirstByteHistory::default();
        let policy = LearnedFirstByte::default();
        let configured = Duration::from_secs(30);
        for _ in 0..100 {
            h.record(false, ms(300));
        }
        let mut deadline = h.deadline(false, configured, &policy);
        assert_eq!(deadline, Duration::from_secs(2));
        // The deployment became slow (10 s) for everyone: each abandoned attempt is a sample at
        // the deadline, and the deadline climbs until it can be met again.
        let mut abandoned = 0;
        while deadline < Duration::from_secs(10) {
            h.record(false, deadline);
            abandoned += 1;
            deadline = h.deadline(false, configured, &policy);
            assert!(abandoned < 20, "the deadline never grew: {deadline:?}");
        }
        assert!(deadline <= configured);
    }
}
