//! Latency objectives (`[[models]] slo = { ttft_p99 = "5s", latency_p99 = "30s", … }`,
//! `config::slo`) judged on the ledger's sketches. One judgement, read by the status page (a
//! route missing one is degraded), the SLA report and the alerts:
//!
//! - A **minute window** meets an objective when the percentile of its successful requests'
//!   sketch (time to first byte for `ttft_*`, the whole request for `latency_*`) is at most the
//!   bound; a minute without successes is not judged. The page and the report show the share of
//!   judged minutes that met it.
//! - A route **misses** an objective now when the percentile over its last few minutes (merged
//!   sketches) is above the bound.
//! - The **burn rate** of an objective over a window is the share of its judged minutes that
//!   missed, over the share the route's `windows` target allows (`1 − windows`, 1 % by
//!   default): 1.0 spends the allowance exactly, as the availability burn rate does.
//!
//! Percentiles are the sketch's (within 1 %), so a reading within 1 % of the bound may fall on
//! either side of it.

use super::ledger::Tally;
use super::ledger::sketch::Sketch;
use crate::config::slo::{LatencyObjective, Metric};
use serde::Serialize;

/// The sketch an objective reads.
pub fn sketch(t: &Tally, metric: Metric) -> &Sketch {
    match metric {
        Metric::Ttft => &t.ttfb,
        Metric::Latency => &t.latency,
    }
}

/// The objective's percentile over `t`, in ms; `None` without successes.
pub fn reading_ms(t: &Tally, o: &LatencyObjective) -> Option<f64> {
    sketch(t, o.metric).percentile_ms(f64::from(o.percentile))
}

/// Whether `t` meets the objective; `None` without successes (not judged).
pub fn meets(t: &Tally, o: &LatencyObjective) -> Option<bool> {
    reading_ms(t, o).map(|ms| ms <= bound_ms(o))
}

pub fn bound_ms(o: &LatencyObjective) -> f64 {
    o.bound.as_secs_f64() * 1000.0
}

/// Minute windows judged against an objective, and how many met it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct WindowShare {
    /// Minutes with successes.
    pub judged: u64,
    pub met: u64,
    /// `met / judged`; none when nothing was judged.
    pub share: Option<f64>,
}

impl WindowShare {
    /// Judges each minute's tally.
    pub fn of<'a>(minutes: impl IntoIterator<Item = &'a Tally>, o: &LatencyObjective) -> Self {
        let mut share = WindowShare::default();
        for t in minutes {
            if let Some(met) = meets(t, o) {
                share.judged += 1;
                share.met += u64::from(met);
            }
        }
        share.share = (share.judged > 0).then(|| share.met as f64 / share.judged as f64);
        share
    }

    /// Missed minutes over what `windows` (the share that must meet) allows; none when nothing
    /// was judged.
    pub fn burn_rate(&self, windows: f64) -> Option<f64> {
        let allowed = 1.0 - windows;
        self.share.map(|s| (1.0 - s) / allowed)
    }
}

/// `2.5 s`, `480 ms`: a bound or reading in words.
pub fn shown_ms(ms: f64) -> String {
    if ms >= 1000.0 {
        let s = format!("{:.2}", ms / 1000.0);
        format!("{} s", s.trim_end_matches('0').trim_end_matches('.'))
    } else if ms >= 10.0 {
        format!("{} ms", ms.round())
    } else {
        let text = format!("{ms:.1}");
        format!("{} ms", text.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// Why a route misses the objective over `recent` (its last minutes, in words: "the last 5
/// minutes"), or `None` when it meets it or had no successes.
pub fn miss(recent: &Tally, o: &LatencyObjective, over: &str) -> Option<String> {
    let reading = reading_ms(recent, o)?;
    (reading > bound_ms(o)).then(|| {
        format!(
            "{} p{} was {} over {over}, above the {} objective",
            o.metric.words(),
            o.percentile,
            shown_ms(reading),
            shown_ms(bound_ms(o))
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn objective(metric: Metric, percentile: u8, ms: u64) -> LatencyObjective {
        LatencyObjective {
            metric,
            percentile,
            bound: Duration::from_millis(ms),
        }
    }

    fn minute(ttfb_ms: &[u64], latency_ms: &[u64]) -> Tally {
        let mut t = Tally::default();
        for ms in ttfb_ms {
            t.ttfb.record(Duration::from_millis(*ms));
        }
        for ms in latency_ms {
            t.latency.record(Duration::from_millis(*ms));
        }
        t
    }

    #[test]
    fn each_minute_is_judged_on_its_own_percentile() {
        let p50 = objective(Metric::Ttft, 50, 500);
        // 100 ms median; 900 ms median; no successes; 499 ms median.
        let minutes = [
            minute(&[100, 100, 900], &[]),
            minute(&[900, 900, 100], &[]),
            Tally::default(),
            minute(&[490], &[]),
        ];
        let share = WindowShare::of(&minutes, &p50);
        assert_eq!((share.judged, share.met), (3, 2));
        assert!((share.share.unwrap() - 2.0 / 3.0).abs() < 1e-9);
        // One minute in three missed against 1 % allowed: 33× the sustainable rate.
        assert!((share.burn_rate(0.99).unwrap() - 100.0 / 3.0).abs() < 1e-6);
        assert_eq!(WindowShare::of(&[Tally::default()], &p50).share, None);
    }

    #[test]
    fn latency_objectives_read_the_latency_sketch() {
        let p99 = objective(Metric::Latency, 99, 30_000);
        let t = minute(&[10], &[40_000]);
        assert_eq!(meets(&t, &p99), Some(false));
        let why = miss(&t, &p99, "the last 5 minutes").unwrap();
        assert!(why.starts_with("latency p99 was "), "{why}");
        assert!(
            why.ends_with("over the last 5 minutes, above the 30 s objective"),
            "{why}"
        );
        assert_eq!(miss(&minute(&[10], &[20_000]), &p99, "x"), None);
        assert_eq!(miss(&Tally::default(), &p99, "x"), None);
    }

    #[test]
    fn readings_are_shown_in_the_right_unit() {
        assert_eq!(shown_ms(5000.0), "5 s");
        assert_eq!(shown_ms(2500.0), "2.5 s");
        assert_eq!(shown_ms(480.4), "480 ms");
        assert_eq!(shown_ms(0.26), "0.3 ms");
    }
}
