//! From samples to figures: throughput, exact latency percentiles (every sample is kept, as oha
//! does, so the two can be compared number for number), tokens per second, errors by class,
//! attempts and deployments.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::exchange::Sample;

/// Percentiles of one latency, in milliseconds.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: usize,
    pub mean_ms: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p95_ms: f64,
    pub p99_ms: f64,
    pub max_ms: f64,
}

impl Percentiles {
    pub fn of(mut values: Vec<Duration>) -> Percentiles {
        if values.is_empty() {
            return Percentiles::default();
        }
        values.sort_unstable();
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        let total: f64 = values.iter().copied().map(ms).sum();
        Percentiles {
            count: values.len(),
            mean_ms: total / values.len() as f64,
            p50_ms: ms(quantile(&values, 0.50)),
            p90_ms: ms(quantile(&values, 0.90)),
            p95_ms: ms(quantile(&values, 0.95)),
            p99_ms: ms(quantile(&values, 0.99)),
            max_ms: values.last().copied().map_or(0.0, ms),
        }
    }
}

/// The nearest-rank quantile of sorted `values` (the smallest value with at least `q` of the
/// values at or below it).
fn quantile(sorted: &[Duration], q: f64) -> Duration {
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Everything one run (or one step of a capacity search) measured.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// Wall time the requests were sent over.
    pub seconds: f64,
    pub requests: usize,
    pub succeeded: usize,
    pub failed: usize,
    /// Requests per second that ended, ok or not.
    pub requests_per_second: f64,
    /// Successful requests per second.
    pub goodput_per_second: f64,
    pub error_rate: f64,
    /// Every request to its last byte (oha's latency).
    pub latency: Percentiles,
    /// Successful requests: time to first token (streams: first content; others: the answer).
    pub ttft: Percentiles,
    /// Successful streams: time to the first byte of the body.
    pub ttfb_streams: Percentiles,
    pub output_tokens: u64,
    pub output_tokens_per_second: f64,
    /// Per successful stream: output tokens after the first ÷ time after the first token.
    pub stream_tokens_per_second_p50: Option<f64>,
    pub streamed: usize,
    pub errors: BTreeMap<String, usize>,
    /// `x-nines-attempts` → requests (nines only).
    pub attempts: BTreeMap<u32, usize>,
    /// `x-nines-deployment` → successful requests (nines only).
    pub deployments: BTreeMap<String, usize>,
}

impl Summary {
    pub fn of(samples: &[Sample], wall: Duration) -> Summary {
        let seconds = wall.as_secs_f64().max(1e-9);
        let ok: Vec<&Sample> = samples.iter().filter(|s| s.ok()).collect();
        let mut errors = BTreeMap::new();
        for class in samples.iter().filter_map(|s| s.error) {
            *errors.entry(class.label()).or_insert(0) += 1;
        }
        let mut attempts = BTreeMap::new();
        for n in samples.iter().filter_map(|s| s.attempts) {
            *attempts.entry(n).or_insert(0) += 1;
        }
        let mut deployments = BTreeMap::new();
        for d in ok.iter().filter_map(|s| s.deployment.as_ref()) {
            *deployments.entry(d.clone()).or_insert(0) += 1;
        }
        let output_tokens: u64 = ok.iter().map(|s| s.output_tokens).sum();
        let mut rates: Vec<f64> = ok
            .iter()
            .filter(|s| s.stream && s.output_tokens > 1)
            .filter_map(|s| {
                let decoding = s.latency.checked_sub(s.ttft?)?.as_secs_f64();
                (decoding > 0.0).then(|| (s.output_tokens - 1) as f64 / decoding)
            })
            .collect();
        rates.sort_by(f64::total_cmp);
        Summary {
            seconds,
            requests: samples.len(),
            succeeded: ok.len(),
            failed: samples.len() - ok.len(),
            requests_per_second: samples.len() as f64 / seconds,
            goodput_per_second: ok.len() as f64 / seconds,
            error_rate: if samples.is_empty() {
                0.0
            } else {
                (samples.len() - ok.len()) as f64 / samples.len() as f64
            },
            latency: Percentiles::of(samples.iter().map(|s| s.latency).collect()),
            ttft: Percentiles::of(ok.iter().filter_map(|s| s.ttft).collect()),
            ttfb_streams: Percentiles::of(
                ok.iter()
                    .filter(|s| s.stream)
                    .filter_map(|s| s.ttfb)
                    .collect(),
            ),
            output_tokens,
            output_tokens_per_second: output_tokens as f64 / seconds,
            stream_tokens_per_second_p50: rates.get(rates.len() / 2).copied(),
            streamed: samples.iter().filter(|s| s.stream).count(),
            errors,
            attempts,
            deployments,
        }
    }

    /// Share of requests that needed more than one attempt (nines only).
    pub fn retried_share(&self) -> Option<f64> {
        let total: usize = self.attempts.values().sum();
        (total > 0).then(|| {
            let retried: usize = self
                .attempts
                .iter()
                .filter(|(n, _)| **n > 1)
                .map(|(_, c)| c)
                .sum();
            retried as f64 / total as f64
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtest::exchange::ErrorClass;

    fn sample(ms: u64, error: Option<ErrorClass>) -> Sample {
        Sample {
            stream: false,
            latency: Duration::from_millis(ms),
            ttfb: Some(Duration::from_millis(ms)),
            ttft: Some(Duration::from_millis(ms)),
            output_tokens: 10,
            attempts: Some(if ms > 90 { 2 } else { 1 }),
            deployment: Some("a".into()),
            error,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let values: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        let p = Percentiles::of(values);
        assert_eq!(
            (p.p50_ms, p.p90_ms, p.p99_ms, p.max_ms),
            (50.0, 90.0, 99.0, 100.0)
        );
        assert_eq!(Percentiles::of(vec![]).count, 0);
    }

    #[test]
    fn a_summary_counts_errors_attempts_and_tokens() {
        let mut samples: Vec<Sample> = (1..=100).map(|ms| sample(ms, None)).collect();
        samples.push(sample(5, Some(ErrorClass::Server(502))));
        let s = Summary::of(&samples, Duration::from_secs(2));
        assert_eq!((s.requests, s.succeeded, s.failed), (101, 100, 1));
        assert_eq!(s.errors["502 server error"], 1);
        assert_eq!(s.output_tokens, 1000);
        assert!((s.output_tokens_per_second - 500.0).abs() < 1e-9);
        assert_eq!(s.attempts[&2], 10);
        assert!((s.retried_share().unwrap() - 10.0 / 101.0).abs() < 1e-9);
        assert_eq!(s.deployments["a"], 100);
    }
}
