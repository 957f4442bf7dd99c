//! Time to first byte as a DDSketch (Masson, Rim & Lee, VLDB 2019): every value falls in the bin
//! `i = ⌈ln(x) / ln γ⌉` with `γ = (1 + α) / (1 − α)`, and a percentile reads as its bin's
//! representative `2γ^i / (γ + 1)`, which is within a relative [`RELATIVE_ERROR`] (α = 1 %) of the
//! sample at that rank. Values are milliseconds; below [`MIN_MS`] (1 µs) they count as 1 µs.
//!
//! Why a sketch of our own rather than a crate: the ledger's store adds each replica's minute
//! rows together in one upsert (`store::ledger`), so the sketch's bins must be plain
//! `(bin, count)` pairs that SQL can add. That is all a DDSketch is once its mapping is fixed;
//! the crates keep their bins private (whole-struct serde only), which would force a
//! read-modify-write of every minute row. Merging is adding counts per bin, so a sketch of a
//! window is exact to the bin whatever minutes, hours or replicas it was summed from: the status
//! page, `/status.json` and the SLA report read the same bins and so the same percentiles.
//!
//! Size: one bin per 2 % of range that actually occurs (latencies spread from 200 ms to 5 s use
//! at most ~160 bins), stored sparse.

use serde::Serialize;
use std::sync::LazyLock;
use std::time::Duration;

/// α: every percentile read is within this relative error of the true sample at its rank.
pub const RELATIVE_ERROR: f64 = 0.01;
/// Values below this (ms) are counted as this.
pub const MIN_MS: f64 = 0.001;

static LN_GAMMA: LazyLock<f64> =
    LazyLock::new(|| ((1.0 + RELATIVE_ERROR) / (1.0 - RELATIVE_ERROR)).ln());

/// The bin of a value in ms.
pub fn bin_of(ms: f64) -> i32 {
    let ms = if ms.is_finite() {
        ms.max(MIN_MS)
    } else {
        MIN_MS
    };
    (ms.ln() / *LN_GAMMA).ceil() as i32
}

/// The bin of a duration.
pub fn bin_of_duration(d: Duration) -> i32 {
    bin_of(d.as_secs_f64() * 1000.0)
}

/// The value (ms) a bin reads as: within α of anything in it.
pub fn value_of(bin: i32) -> f64 {
    let gamma = LN_GAMMA.exp();
    2.0 * (f64::from(bin) * *LN_GAMMA).exp() / (gamma + 1.0)
}

/// Bins and their counts, sorted by bin, no zero counts.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Sketch {
    bins: Vec<(i32, u64)>,
}

impl Sketch {
    pub fn record(&mut self, ttfb: Duration) {
        self.add_to_bin(bin_of_duration(ttfb), 1);
    }

    pub fn add_to_bin(&mut self, bin: i32, count: u64) {
        if count == 0 {
            return;
        }
        match self.bins.binary_search_by_key(&bin, |(b, _)| *b) {
            Ok(i) => self.bins[i].1 += count,
            Err(i) => self.bins.insert(i, (bin, count)),
        }
    }

    pub fn merge(&mut self, other: &Sketch) {
        if other.bins.is_empty() {
            return;
        }
        if self.bins.is_empty() {
            self.bins.clone_from(&other.bins);
            return;
        }
        // A sketch of a few bins (a handful of requests): inserted in place, not rebuilt.
        if other.bins.len() <= 4 {
            for (bin, n) in &other.bins {
                self.add_to_bin(*bin, *n);
            }
            return;
        }
        let mut out = Vec::with_capacity(self.bins.len() + other.bins.len());
        let (mut a, mut b) = (self.bins.iter().peekable(), other.bins.iter().peekable());
        loop {
            match (a.peek(), b.peek()) {
                (Some(x), Some(y)) if x.0 == y.0 => {
                    out.push((x.0, x.1 + y.1));
                    a.next();
                    b.next();
                }
                (Some(x), Some(y)) if x.0 < y.0 => {
                    out.push(**x);
                    a.next();
                }
                (Some(_), Some(y)) => {
                    out.push(**y);
                    b.next();
                }
                (Some(x), None) => {
                    out.push(**x);
                    a.next();
                }
                (None, Some(y)) => {
                    out.push(**y);
                    b.next();
                }
                (None, None) => break,
            }
        }
        self.bins = out;
    }

    pub fn is_empty(&self) -> bool {
        self.bins.is_empty()
    }

    pub fn count(&self) -> u64 {
        self.bins.iter().map(|(_, n)| n).sum()
    }

    /// `(bin, count)`, by bin.
    pub fn bins(&self) -> &[(i32, u64)] {
        &self.bins
    }

    /// The `p`-th percentile (0..=100) in ms, nearest rank: the representative of the bin
    /// holding the `⌈p/100 · n⌉`-th smallest sample.
    pub fn percentile_ms(&self, p: f64) -> Option<f64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((p / 100.0) * total as f64).ceil().clamp(1.0, total as f64) as u64;
        let mut seen = 0;
        for (bin, n) in &self.bins {
            seen += n;
            if seen >= rank {
                return Some(value_of(*bin));
            }
        }
        None
    }

    /// p50, p95 and p99 as everything shows them.
    pub fn percentiles(&self) -> Percentiles {
        let p = |q: f64| self.percentile_ms(q).map(round_ms);
        Percentiles {
            p50_ms: p(50.0),
            p95_ms: p(95.0),
            p99_ms: p(99.0),
            samples: self.count(),
            relative_error: RELATIVE_ERROR,
        }
    }
}

/// Counts for one run of consecutive bins, indexed by `bin - first`: what a request adds to
/// while its minute is pending (`ledger::Series::pending`). Adding is one index, where the sparse
/// [`Sketch`] binary-searches about a hundred bins (that search was the ledger's largest
/// per-request cost under perf); the minute is moved into its sparse sketch once, when it is
/// folded.
///
/// The run is as wide as the values seen, up to [`DENSE_MAX`] bins (every `Duration`, 1 µs and
/// below to `Duration::MAX`, falls within about 2 900); a bin that would widen it further is kept
/// in a sparse sketch beside it, so no input makes it large.
#[derive(Debug, Default)]
pub struct DenseBins {
    first: i32,
    counts: Vec<u64>,
    outside: Sketch,
}

/// Bins a run starts with, and the least it grows by: the spread of one deployment's latencies
/// over a minute usually fits.
const DENSE_START: usize = 64;
/// The widest a run grows (32 KB of counts).
const DENSE_MAX: usize = 4096;

impl DenseBins {
    pub fn add(&mut self, bin: i32) {
        match self.index(bin) {
            Some(i) => self.counts[i] += 1,
            None if self.cover(bin) => {
                if let Some(i) = self.index(bin) {
                    self.counts[i] += 1;
                }
            }
            None => self.outside.add_to_bin(bin, 1),
        }
    }

    fn index(&self, bin: i32) -> Option<usize> {
        usize::try_from(i64::from(bin) - i64::from(self.first))
            .ok()
            .filter(|i| *i < self.counts.len())
    }

    /// Widens the run to hold `bin`, keeping the counts' bins; false when that would make it
    /// wider than [`DENSE_MAX`].
    fn cover(&mut self, bin: i32) -> bool {
        let bin = i64::from(bin);
        if self.counts.is_empty() {
            let first = bin - DENSE_START as i64 / 2;
            let Ok(first) = i32::try_from(first) else {
                return false;
            };
            self.first = first;
            self.counts = vec![0; DENSE_START];
            return true;
        }
        let first = i64::from(self.first);
        let len = self.counts.len() as i64;
        let grow = DENSE_START.max(self.counts.len() / 2) as i64;
        let (new_first, new_len) = if bin < first {
            (bin - grow, first + len - (bin - grow))
        } else {
            (first, bin + grow + 1 - first)
        };
        let (Ok(new_first), Ok(new_len)) = (i32::try_from(new_first), usize::try_from(new_len))
        else {
            return false;
        };
        if new_len > DENSE_MAX {
            return false;
        }
        let mut counts = vec![0; new_len];
        let at = (first - i64::from(new_first)) as usize;
        counts[at..at + self.counts.len()].copy_from_slice(&self.counts);
        self.first = new_first;
        self.counts = counts;
        true
    }

    pub fn is_empty(&self) -> bool {
        self.outside.is_empty() && self.counts.iter().all(|n| *n == 0)
    }

    /// Adds every count to `sketch` and empties the run.
    pub fn drain_into(&mut self, sketch: &mut Sketch) {
        let first = self.first;
        let bins: Vec<(i32, u64)> = std::mem::take(&mut self.counts)
            .into_iter()
            .zip(i64::from(first)..)
            .filter(|(n, _)| *n > 0)
            // Within i32: the run's bins all are.
            .map(|(n, bin)| (bin as i32, n))
            .collect();
        sketch.merge(&Sketch { bins });
        sketch.merge(&std::mem::take(&mut self.outside));
    }
}

/// Time-to-first-byte percentiles, the one shape the status page, `/status.json` and the SLA
/// report show (ms, rounded to 0.01 ms; each within `relative_error` of the true sample).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Percentiles {
    pub p50_ms: Option<f64>,
    pub p95_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    /// Successes measured.
    pub samples: u64,
    pub relative_error: f64,
}

fn round_ms(ms: f64) -> f64 {
    (ms * 100.0).round() / 100.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_within_the_stated_error_of_the_exact_ones() {
        let values: Vec<f64> = (1..=2000)
            .map(|i| 0.05 * 1.007f64.powi(i) + f64::from(i % 7))
            .collect();
        let mut sketch = Sketch::default();
        for v in &values {
            sketch.record(crate::clock::seconds(v / 1000.0).unwrap());
        }
        let mut sorted = values.clone();
        sorted.sort_by(f64::total_cmp);
        for p in [1.0, 10.0, 50.0, 90.0, 95.0, 99.0, 100.0] {
            let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
            let exact = sorted[rank - 1];
            let read = sketch.percentile_ms(p).unwrap();
            // Durations keep nanoseconds: allow that rounding on top of α.
            assert!(
                (read - exact).abs() <= exact * RELATIVE_ERROR + 1e-6,
                "p{p}: {read} vs {exact}"
            );
        }
    }

    #[test]
    fn merging_is_adding_counts_per_bin() {
        let mut a = Sketch::default();
        let mut b = Sketch::default();
        let mut both = Sketch::default();
        for ms in [1u64, 5, 5, 80, 1200] {
            a.record(Duration::from_millis(ms));
            both.record(Duration::from_millis(ms));
        }
        for ms in [5u64, 7, 3000, 1] {
            b.record(Duration::from_millis(ms));
            both.record(Duration::from_millis(ms));
        }
        let mut merged = a.clone();
        merged.merge(&b);
        assert_eq!(merged, both);
        assert_eq!(merged.count(), 9);
        let mut rebuilt = Sketch::default();
        for (bin, n) in merged.bins().iter().rev() {
            rebuilt.add_to_bin(*bin, *n);
        }
        assert_eq!(rebuilt, merged);
    }

    #[test]
    fn dense_bins_count_what_the_sketch_counts() {
        // Bins spread both ways from the first one, far apart, and repeated: the run grows at
        // both ends and keeps every count in its bin.
        let bins = [
            0, 5, -3, 40, 40, -200, 900, 5, 63, 64, -33, 31, 32, -1100, 0,
        ];
        let mut dense = DenseBins::default();
        let mut sparse = Sketch::default();
        assert!(dense.is_empty());
        for bin in bins {
            dense.add(bin);
            sparse.add_to_bin(bin, 1);
        }
        assert!(!dense.is_empty());
        let mut drained = Sketch::default();
        drained.add_to_bin(7, 2);
        dense.drain_into(&mut drained);
        sparse.add_to_bin(7, 2);
        assert_eq!(drained, sparse);
        assert!(dense.is_empty());
        // Empty again: it starts over around the next bin; bins further than the widest run,
        // and at the ends of i32, are kept beside it.
        for bin in [
            i32::MIN,
            10,
            i32::MAX,
            10 + DENSE_MAX as i32,
            10 - DENSE_MAX as i32,
            11,
        ] {
            dense.add(bin);
        }
        let mut extremes = Sketch::default();
        dense.drain_into(&mut extremes);
        assert_eq!(
            extremes.bins(),
            &[
                (i32::MIN, 1),
                (10 - DENSE_MAX as i32, 1),
                (10, 1),
                (11, 1),
                (10 + DENSE_MAX as i32, 1),
                (i32::MAX, 1)
            ]
        );
        assert!(dense.counts.len() <= DENSE_MAX);
        // Every duration fits one run: the sparse side is for bins no duration has.
        let span = bin_of_duration(Duration::MAX) - bin_of_duration(Duration::ZERO);
        assert!((2800..2950).contains(&span), "{span}");
    }

    #[test]
    fn tiny_and_empty() {
        assert_eq!(Sketch::default().percentile_ms(50.0), None);
        let mut s = Sketch::default();
        s.record(Duration::ZERO);
        let v = s.percentile_ms(50.0).unwrap();
        assert!((v - MIN_MS).abs() <= MIN_MS * RELATIVE_ERROR, "{v}");
    }
}
