//! Metrics cost on the request path (`Metrics::record`, issue target: throughput with metrics on
//! ≥ 95% of metrics off, where nines spends ~80–100 µs of CPU per request, so a few µs at most)
//! and the cost of one scrape.
//!
//! Run with `cargo bench -p nines-gateway --bench metrics`.
#![expect(clippy::unwrap_used, reason = "a benchmark fails loudly")]

use nines_gateway::config::Config;
use nines_gateway::resilience::{AttemptRecord, FailureClass};
use nines_gateway::telemetry::{RequestSummary, Telemetry};
use nines_gateway::{AppState, Runtime};
use std::hint::black_box;
use std::path::Path;
use std::time::Duration;

fn main() {
    divan::main();
}

/// Ten deployments with two keys each in one model, like a busy production config.
fn config() -> Config {
    let mut text = String::new();
    for i in 0..10 {
        text.push_str(&format!(
            "[[deployments]]\nname = \"d{i}\"\nprovider = \"openai-compatible\"\nmodel = \"m{i}\"\nbase_url = \"http://127.0.0.1:{}\"\napi_keys = [\"k1\", \"k2\"]\nprice = {{ input = 1.0, output = 2.0 }}\n\n",
            9000 + i,
        ));
    }
    let names: Vec<String> = (0..10).map(|i| format!("\"d{i}\"")).collect();
    text.push_str(&format!(
        "[[models]]\nname = \"chat\"\ndeployments = [{}]\n",
        names.join(", ")
    ));
    Config::parse(Path::new("bench.toml"), &text, &|_| None).unwrap()
}

fn attempt(deployment: &str, class: FailureClass) -> AttemptRecord {
    AttemptRecord {
        deployment: deployment.into(),
        key_alias: format!("{deployment}#0"),
        class,
        status: Some(if class == FailureClass::Ok { 200 } else { 500 }),
        elapsed: Duration::from_millis(40),
        detail: String::new(),
        retry_after: None,
        span: None,
    }
}

fn summary(attempts: Vec<AttemptRecord>) -> RequestSummary {
    RequestSummary {
        request_id: "0196a3c2-7d4e-7f00-8000-000000000000".into(),
        endpoint: "chat_completions",
        model: "chat".into(),
        routed: true,
        status: 200,
        outcome: "ok".into(),
        deployment: attempts.last().map(|a| a.deployment.clone()),
        served: true,
        attempts,
        upstream_ttfb: Some(Duration::from_millis(40)),
        ttfb: Some(Duration::from_millis(41)),
        latency: Duration::from_millis(41),
        waited: Some(Duration::from_millis(40)),
        tokens_in: Some(120),
        tokens_out: Some(300),
        cost: 0.00072,
        ..RequestSummary::default()
    }
}

fn state() -> (tokio::runtime::Runtime, std::sync::Arc<AppState>) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let state = {
        let _guard = rt.enter();
        AppState::new(Runtime::build(config()).unwrap())
    };
    (rt, state)
}

/// One served request, one attempt.
#[divan::bench]
fn record_served(bencher: divan::Bencher) {
    let (_rt, state) = state();
    let metrics = state.telemetry.metrics.as_ref().unwrap();
    let s = summary(vec![attempt("d3", FailureClass::Ok)]);
    bencher.bench_local(|| metrics.record(black_box(&s)));
}

/// A failover: a 500 on one deployment, served by the next.
#[divan::bench]
fn record_failover(bencher: divan::Bencher) {
    let (_rt, state) = state();
    let metrics = state.telemetry.metrics.as_ref().unwrap();
    let s = summary(vec![
        attempt("d3", FailureClass::Server),
        attempt("d4", FailureClass::Ok),
    ]);
    bencher.bench_local(|| metrics.record(black_box(&s)));
}

/// The whole hub's `record` with request logging off, for comparison (metrics plus ledger and
/// sessions).
#[divan::bench]
fn telemetry_record_served(bencher: divan::Bencher) {
    let (_rt, state) = state();
    let telemetry: &Telemetry = &state.telemetry;
    let s = summary(vec![attempt("d3", FailureClass::Ok)]);
    bencher.bench_local(|| telemetry.record(black_box(&s)));
}

/// One scrape after traffic on every deployment.
#[divan::bench]
fn render(bencher: divan::Bencher) {
    let (_rt, state) = state();
    let metrics = state.telemetry.metrics.as_ref().unwrap();
    for i in 0..10 {
        let d = format!("d{i}");
        metrics.record(&summary(vec![attempt(&d, FailureClass::Ok)]));
        metrics.record(&summary(vec![
            attempt(&d, FailureClass::RateLimited),
            attempt(&d, FailureClass::Ok),
        ]));
    }
    let runtime = state.runtime();
    bencher.bench_local(|| black_box(metrics.render(&runtime.config, &runtime.health, None)).len());
}
