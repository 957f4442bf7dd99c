//! `[[models]] slo = { availability = 0.999, ttft_p50 = "500ms", ttft_p99 = "5s", latency_p99 =
//! "30s", windows = 0.99 }`: a route's own objectives, each optional.
//!
//! - `availability` overrides `[telemetry] slo` for the route: its state on the status page and
//!   its burn-rate alert are judged against it.
//! - `ttft_p50|p95|p99`: time to first token (the first byte the client got: for a stream, its
//!   first token) at that percentile; `latency_p50|p95|p99`: the whole request. Judged per minute
//!   window in the ledger, over the route's successful requests.
//! - `windows`: the share of minute windows that must meet each latency objective (default
//!   0.99); the latency burn-rate alert measures misses against what it leaves.

use serde::Deserialize;
use std::collections::BTreeMap;
use std::time::Duration;

/// The share of minute windows that must meet a latency objective when `windows` is not set.
pub const DEFAULT_WINDOWS: f64 = 0.99;

#[derive(Debug, Deserialize, Clone, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct RawSlo {
    pub availability: Option<f64>,
    #[serde(default, with = "humantime_serde")]
    pub ttft_p50: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub ttft_p95: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub ttft_p99: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub latency_p50: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub latency_p95: Option<Duration>,
    #[serde(default, with = "humantime_serde")]
    pub latency_p99: Option<Duration>,
    pub windows: Option<f64>,
}

/// What a latency objective measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Metric {
    /// Time to first token: request start until the first byte the client got.
    Ttft,
    /// Request start until its end.
    Latency,
}

impl Metric {
    pub fn as_str(self) -> &'static str {
        match self {
            Metric::Ttft => "ttft",
            Metric::Latency => "latency",
        }
    }

    /// In words, for reasons and alerts.
    pub fn words(self) -> &'static str {
        match self {
            Metric::Ttft => "time to first token",
            Metric::Latency => "latency",
        }
    }
}

/// One latency objective: `metric` at `percentile` at most `bound`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LatencyObjective {
    pub metric: Metric,
    /// 50, 95 or 99.
    pub percentile: u8,
    pub bound: Duration,
}

impl LatencyObjective {
    /// `ttft_p99`: the config key, and the name reports and alerts use.
    pub fn key(&self) -> String {
        format!("{}_p{}", self.metric.as_str(), self.percentile)
    }
}

/// A route's objectives, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct RouteSlo {
    /// `None`: `[telemetry] slo` applies.
    pub availability: Option<f64>,
    pub latency: Vec<LatencyObjective>,
    /// Share of minute windows that must meet each latency objective.
    pub windows: f64,
}

impl Default for RouteSlo {
    fn default() -> Self {
        RouteSlo {
            availability: None,
            latency: Vec::new(),
            windows: DEFAULT_WINDOWS,
        }
    }
}

/// The routes' own objectives (those that have any), by route name.
pub fn by_route(models: &[super::ModelRoute]) -> BTreeMap<String, RouteSlo> {
    models
        .iter()
        .filter(|m| m.slo.availability.is_some() || !m.slo.latency.is_empty())
        .map(|m| (m.name.clone(), m.slo.clone()))
        .collect()
}

/// Checks a route's `slo`; errors are `(key under the route's slo, message)`.
pub fn validate(raw: &RawSlo) -> Result<RouteSlo, (String, String)> {
    let share = |key: &str, v: Option<f64>| match v {
        Some(x) if !(x > 0.0 && x < 1.0) => Err((
            key.to_owned(),
            format!("must be between 0 and 1 (exclusive), e.g. 0.999; got {x}"),
        )),
        v => Ok(v),
    };
    let availability = share("availability", raw.availability)?;
    let windows = share("windows", raw.windows)?.unwrap_or(DEFAULT_WINDOWS);
    let mut latency = Vec::new();
    for (metric, percentile, bound) in [
        (Metric::Ttft, 50, raw.ttft_p50),
        (Metric::Ttft, 95, raw.ttft_p95),
        (Metric::Ttft, 99, raw.ttft_p99),
        (Metric::Latency, 50, raw.latency_p50),
        (Metric::Latency, 95, raw.latency_p95),
        (Metric::Latency, 99, raw.latency_p99),
    ] {
        let Some(bound) = bound else { continue };
        let objective = LatencyObjective {
            metric,
            percentile,
            bound,
        };
        if bound.is_zero() {
            return Err((objective.key(), "must be more than 0s".into()));
        }
        latency.push(objective);
    }
    Ok(RouteSlo {
        availability,
        latency,
        windows,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_objective_is_optional_and_checked() {
        let slo = validate(&RawSlo {
            ttft_p50: Some(Duration::from_millis(500)),
            latency_p99: Some(Duration::from_secs(30)),
            ..RawSlo::default()
        })
        .unwrap();
        assert_eq!(slo.availability, None);
        assert_eq!(slo.windows, DEFAULT_WINDOWS);
        let keys: Vec<String> = slo.latency.iter().map(LatencyObjective::key).collect();
        assert_eq!(keys, ["ttft_p50", "latency_p99"]);
        let bad = validate(&RawSlo {
            availability: Some(1.0),
            ..RawSlo::default()
        });
        assert_eq!(bad.unwrap_err().0, "availability");
        let bad = validate(&RawSlo {
            ttft_p99: Some(Duration::ZERO),
            ..RawSlo::default()
        });
        assert_eq!(bad.unwrap_err().0, "ttft_p99");
    }
}
