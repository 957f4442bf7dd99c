//! `--find-capacity`: the highest rate a route sustains within its SLO.
//!
//! Open-loop steps at rising rates (`start × factor^i`, each for `step` seconds, requests at an
//! even pace), until a step's p99 time to first token is over the SLO or its error rate over the
//! limit, or the rate passes `max_rate`. Then, optionally, a few steps halve the gap between the
//! last rate that passed and the first that failed. The sustainable rate is the highest rate that
//! passed. Each step waits for its requests to end before the next begins, so a queue one step
//! built does not spill into the next.

use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::drive::{self, Load, Shape, Target};
use super::mix::Mix;
use super::progress::Progress;
use super::scrape::{self, Overhead};
use super::stats::Summary;
use super::verdict::Verdict;

/// What a step must meet, and how the rates rise.
#[derive(Clone, Debug, Serialize)]
pub struct Search {
    #[serde(serialize_with = "as_ms")]
    pub slo_ttft_p99: Duration,
    pub max_error_rate: f64,
    pub start_rate: f64,
    pub factor: f64,
    pub max_rate: f64,
    #[serde(serialize_with = "as_ms")]
    pub step: Duration,
    pub refine: u32,
    pub max_in_flight: u32,
}

fn as_ms<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64() * 1000.0)
}

/// One step of the search.
#[derive(Clone, Debug, Serialize)]
pub struct Step {
    /// The offered rate, requests a second.
    pub rate: f64,
    pub passed: bool,
    /// Why it failed.
    pub why: Option<String>,
    pub summary: Summary,
    pub overhead: Option<Overhead>,
}

/// The search's result for one route.
#[derive(Clone, Debug, Serialize)]
pub struct RouteCapacity {
    pub route: String,
    pub steps: Vec<Step>,
    pub sustainable_rps: Option<f64>,
    pub first_failing_rps: Option<f64>,
    /// How the replica count was known: `--replicas`, or the deployments that answered.
    pub replicas_from: String,
    pub verdict: Verdict,
}

/// Runs the search for `mix`'s route.
pub async fn find(
    target: Arc<Target>,
    metrics_url: Option<&str>,
    mix: Arc<Mix>,
    search: &Search,
    replicas: Option<u32>,
    peak: Option<f64>,
    progress: bool,
) -> RouteCapacity {
    let route = mix.model().unwrap_or("(fixed body)").to_owned();
    let mut steps: Vec<Step> = Vec::new();
    let mut rate = search.start_rate;
    let mut passed_at: Option<f64> = None;
    let mut failed_at: Option<f64> = None;
    while rate <= search.max_rate {
        let step = run_step(
            &target,
            metrics_url,
            &mix,
            search,
            rate,
            &route,
            steps.len(),
            progress,
        )
        .await;
        let passed = step.passed;
        steps.push(step);
        if passed {
            passed_at = Some(rate);
            rate *= search.factor;
        } else {
            failed_at = Some(rate);
            break;
        }
    }
    for _ in 0..search.refine {
        let (Some(low), Some(high)) = (passed_at, failed_at) else {
            break;
        };
        let mid = (low + high) / 2.0;
        let step = run_step(
            &target,
            metrics_url,
            &mix,
            search,
            mid,
            &route,
            steps.len(),
            progress,
        )
        .await;
        if step.passed {
            passed_at = Some(mid);
        } else {
            failed_at = Some(mid);
        }
        steps.push(step);
    }
    steps.sort_by(|a, b| a.rate.total_cmp(&b.rate));

    let seen = steps
        .iter()
        .flat_map(|s| s.summary.deployments.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let (replicas, replicas_from) = match replicas {
        Some(n) => (n, "--replicas".to_owned()),
        None if seen > 0 => (
            u32::try_from(seen).unwrap_or(u32::MAX),
            "deployments that answered (x-nines-deployment)".to_owned(),
        ),
        None => (
            1,
            "assumed 1 (no --replicas, no x-nines-deployment header)".to_owned(),
        ),
    };
    let verdict = Verdict::judge(&route, passed_at, replicas, peak);
    RouteCapacity {
        route,
        steps,
        sustainable_rps: passed_at,
        first_failing_rps: failed_at,
        replicas_from,
        verdict,
    }
}

#[expect(
    clippy::too_many_arguments,
    reason = "one step's inputs, passed straight through"
)]
async fn run_step(
    target: &Arc<Target>,
    metrics_url: Option<&str>,
    mix: &Arc<Mix>,
    search: &Search,
    rate: f64,
    route: &str,
    index: usize,
    progress: bool,
) -> Step {
    let before = match metrics_url {
        Some(url) => scrape::read(&target.client, url).await,
        None => None,
    };
    let bar = Progress::start(format!("{route} {rate:.1}/s"), search.step, progress);
    let load = Load {
        shape: Shape::Open {
            rate,
            max_in_flight: search.max_in_flight,
        },
        duration: search.step,
        ramp: Duration::ZERO,
        max_requests: None,
    };
    let (samples, wall) = drive::run(Arc::clone(target), Arc::clone(mix), load, bar.live()).await;
    bar.finish();
    let overhead = match (metrics_url, before) {
        (Some(url), Some(before)) => scrape::read(&target.client, url)
            .await
            .and_then(|after| after.since(&before).overhead()),
        _ => None,
    };
    let summary = Summary::of(&samples, wall);
    let slo_ms = search.slo_ttft_p99.as_secs_f64() * 1000.0;
    let why = if summary.succeeded == 0 {
        Some("no request succeeded".to_owned())
    } else if summary.error_rate > search.max_error_rate {
        Some(format!(
            "error rate {:.2}% over {:.2}%",
            summary.error_rate * 100.0,
            search.max_error_rate * 100.0
        ))
    } else if summary.ttft.p99_ms > slo_ms {
        Some(format!(
            "p99 TTFT {:.0} ms over {slo_ms:.0} ms",
            summary.ttft.p99_ms
        ))
    } else {
        None
    };
    if progress {
        eprintln!(
            "  step {}: {rate:.1} req/s → p99 TTFT {:.0} ms, errors {:.2}%: {}",
            index + 1,
            summary.ttft.p99_ms,
            summary.error_rate * 100.0,
            why.as_deref().unwrap_or("ok")
        );
    }
    Step {
        rate,
        passed: why.is_none(),
        why,
        summary,
        overhead,
    }
}
