//! The gateway's own account of its overhead: `nines_overhead_seconds` read from `/metrics`
//! before and after a run, summed over its series (deployments). The difference is the run's
//! requests; its mean is exact, its quantiles are read from the histogram's buckets the way
//! Prometheus' `histogram_quantile` reads them (linear within a bucket).

use serde::Serialize;

const FAMILY: &str = "nines_overhead_seconds";

/// One reading of the histogram, summed over its series.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Histogram {
    /// (upper bound in seconds, cumulative count), ascending; `+Inf` last.
    buckets: Vec<(f64, f64)>,
    sum: f64,
    count: f64,
}

impl Histogram {
    /// Reads the family from a Prometheus text exposition; empty when it has no series yet (a
    /// gateway that served nothing has none).
    pub fn parse(exposition: &str) -> Histogram {
        let mut h = Histogram::default();
        for line in exposition.lines() {
            let Some(rest) = line.strip_prefix(FAMILY) else {
                continue;
            };
            let (name_and_labels, value) = match rest.rsplit_once(' ') {
                Some(parts) => parts,
                None => continue,
            };
            let Ok(value) = value.trim().parse::<f64>() else {
                continue;
            };
            if let Some(labels) = name_and_labels.strip_prefix("_bucket") {
                let Some(le) = label(labels, "le") else {
                    continue;
                };
                let bound = if le == "+Inf" {
                    f64::INFINITY
                } else {
                    match le.parse::<f64>() {
                        Ok(b) => b,
                        Err(_) => continue,
                    }
                };
                match h.buckets.iter_mut().find(|(b, _)| *b == bound) {
                    Some((_, count)) => *count += value,
                    None => h.buckets.push((bound, value)),
                }
            } else if name_and_labels.starts_with("_sum") {
                h.sum += value;
            } else if name_and_labels.starts_with("_count") {
                h.count += value;
            }
        }
        h.buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
        h
    }

    /// What happened between `before` and `self`.
    pub fn since(&self, before: &Histogram) -> Histogram {
        let buckets = self
            .buckets
            .iter()
            .map(|(bound, count)| {
                let earlier = before
                    .buckets
                    .iter()
                    .find(|(b, _)| b == bound)
                    .map_or(0.0, |(_, c)| *c);
                (*bound, (count - earlier).max(0.0))
            })
            .collect();
        Histogram {
            buckets,
            sum: (self.sum - before.sum).max(0.0),
            count: (self.count - before.count).max(0.0),
        }
    }

    /// The `q` quantile in seconds, interpolated within its bucket.
    fn quantile(&self, q: f64) -> Option<f64> {
        if self.count <= 0.0 {
            return None;
        }
        let rank = q * self.count;
        let mut lower = 0.0;
        let mut below = 0.0;
        for (bound, cumulative) in &self.buckets {
            if *cumulative >= rank {
                if bound.is_infinite() {
                    return Some(lower);
                }
                let in_bucket = cumulative - below;
                let share = if in_bucket > 0.0 {
                    (rank - below) / in_bucket
                } else {
                    1.0
                };
                return Some(lower + (bound - lower) * share);
            }
            lower = *bound;
            below = *cumulative;
        }
        Some(lower)
    }

    pub fn overhead(&self) -> Option<Overhead> {
        (self.count > 0.0).then(|| Overhead {
            requests: self.count as u64,
            mean_ms: self.sum / self.count * 1000.0,
            p50_ms: self.quantile(0.5).unwrap_or(0.0) * 1000.0,
            p99_ms: self.quantile(0.99).unwrap_or(0.0) * 1000.0,
        })
    }
}

/// The value of label `name` in `{a="1",le="0.5"}`.
fn label<'a>(labels: &'a str, name: &str) -> Option<&'a str> {
    let start = labels.find(&format!("{name}=\""))? + name.len() + 2;
    let end = start + labels[start..].find('"')?;
    Some(&labels[start..end])
}

/// The gateway's overhead over a run, in milliseconds.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Overhead {
    /// Requests the histogram counted over the run (every replica behind one Service would need
    /// its own scrape; this is the one `/metrics` answered).
    pub requests: u64,
    pub mean_ms: f64,
    /// From the buckets (0.1, 0.25, 0.5, 1, 2.5 ms, …): an estimate within its bucket.
    pub p50_ms: f64,
    pub p99_ms: f64,
}

/// Reads `/metrics`; `None` when it does not answer (not every target is nines). A target
/// without the family reads as empty, so its run reports no overhead.
pub async fn read(client: &reqwest::Client, url: &str) -> Option<Histogram> {
    let response = client.get(url).send().await.ok()?;
    if !response.status().is_success() {
        return None;
    }
    Some(Histogram::parse(&response.text().await.ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BEFORE: &str = r#"
# TYPE nines_overhead_seconds histogram
nines_overhead_seconds_bucket{deployment="a",provider="openai",le="0.0001"} 0
nines_overhead_seconds_bucket{deployment="a",provider="openai",le="0.001"} 0
nines_overhead_seconds_bucket{deployment="a",provider="openai",le="+Inf"} 0
nines_overhead_seconds_sum{deployment="a",provider="openai"} 0
nines_overhead_seconds_count{deployment="a",provider="openai"} 0
nines_ttfb_seconds_count{model="m"} 3
"#;
    const AFTER: &str = r#"
nines_overhead_seconds_bucket{deployment="a",provider="openai",le="0.0001"} 50
nines_overhead_seconds_bucket{deployment="a",provider="openai",le="0.001"} 90
nines_overhead_seconds_bucket{deployment="a",provider="openai",le="+Inf"} 100
nines_overhead_seconds_sum{deployment="a",provider="openai"} 0.02
nines_overhead_seconds_count{deployment="a",provider="openai"} 100
nines_overhead_seconds_bucket{deployment="b",provider="openai",le="0.0001"} 0
nines_overhead_seconds_bucket{deployment="b",provider="openai",le="0.001"} 0
nines_overhead_seconds_bucket{deployment="b",provider="openai",le="+Inf"} 0
nines_overhead_seconds_sum{deployment="b",provider="openai"} 0
nines_overhead_seconds_count{deployment="b",provider="openai"} 0
"#;

    #[test]
    fn overhead_over_a_run() {
        let before = Histogram::parse(BEFORE);
        let after = Histogram::parse(AFTER);
        let o = after.since(&before).overhead().unwrap();
        assert_eq!(o.requests, 100);
        assert!((o.mean_ms - 0.2).abs() < 1e-9);
        assert!((o.p50_ms - 0.1).abs() < 1e-9, "{o:?}");
        // rank 99 of 100: in the +Inf bucket, reported as its lower bound.
        assert!((o.p99_ms - 1.0).abs() < 1e-9, "{o:?}");
        assert_eq!(Histogram::parse("up 1\n").overhead(), None);
    }
}
