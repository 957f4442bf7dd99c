//! Resilience figures for `bench/RESULTS.md` (run by `bench/resilience.sh`, release build):
//!
//! 1. Failover overhead: latency of a request whose first deployment fails fast (500, or
//!    connection refused) minus a request served first time, minus the failed attempt itself.
//! 2. Time from a provider going down to its breaker opening, at 10 requests/s.
//! 3. Upstream attempts per client request under a total outage (3 deployments down).
//!
//! Everything runs on 127.0.0.1: chaos mocks and the gateway in this process, real HTTP between.
#![expect(clippy::unwrap_used, reason = "a benchmark program fails loudly")]

use nines_gateway::AppState;
use nines_mock::MockServer;
use serde_json::{Value, json};
use std::time::Duration;
use support::mock;
use tokio::time::Instant;

const HEALTHY_ROUNDS: usize = 5;
const PER_ROUND: usize = 400;

mod support;

#[tokio::main]
async fn main() {
    nines_gateway::providers::install_crypto_provider();
    let good = mock("good").await;
    let bad = mock("bad").await;
    bad.set_fault(Some(
        serde_json::from_value(json!({"status": 500})).unwrap(),
    ));

    let overhead = failover_overhead(&good, &bad).await;
    let open_after = time_to_breaker_open().await;
    let (outage_requests, outage_attempts, steady) = total_outage().await;

    println!("## Resilience\n");
    print!("{overhead}");
    println!(
        "| time from provider down to breaker open at 10 req/s (median of 5 runs) | {:.0} ms | ≤ 1000 ms | {} |",
        open_after.as_secs_f64() * 1000.0,
        verdict(open_after <= Duration::from_secs(1))
    );
    let per_request = outage_attempts as f64 / outage_requests as f64;
    println!(
        "| upstream attempts per request, total outage (3 deployments down), 10 s at 32 concurrent clients with a 2 s timeout | {per_request:.4} overall ({outage_attempts} attempts / {outage_requests} requests); {steady:.4} once breakers are open (after the first second) | ≤ 1.2 once breakers are open | {} |",
        verdict(steady <= 1.2)
    );
}

async fn gateway(config: &str) -> (String, support::Stop) {
    support::serve(AppState::new(support::config(config))).await
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

fn deployment(name: &str, base: &str) -> String {
    format!(
        "[[deployments]]\nname = \"{name}\"\nprovider = \"openai-compatible\"\nmodel = \"m\"\nbase_url = \"{base}\"\n\n"
    )
}

fn body() -> Value {
    json!({"model": "healthy", "messages": [{"role": "user", "content": "hi"}]})
}

async fn timed(client: &reqwest::Client, url: &str, body: &Value) -> Duration {
    let started = Instant::now();
    let r = client.post(url).json(body).send().await.unwrap();
    let status = r.status();
    r.bytes().await.unwrap();
    let took = started.elapsed();
    assert!(status.is_success() || status.as_u16() == 500, "{status}");
    took
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn failover_overhead(good: &MockServer, bad: &MockServer) -> String {
    // Breakers and budget are set so every request really makes the failing attempt first.
    let config = format!(
        "[resilience.breaker]\nconsecutive_failures = 1000000000\nmin_requests = 1000000000\n\n[resilience.retry_budget]\nratio = 1.0\n\n[resilience.probes]\nenabled = false\n\n{}{}{}[[models]]\nname = \"healthy\"\ndeployments = [\"good\"]\n\n[[models]]\nname = \"after-500\"\ndeployments = [\"bad\", \"good\"]\n\n[[models]]\nname = \"after-refused\"\ndeployments = [\"refused\", \"good\"]\n",
        deployment("good", &good.base_url()),
        deployment("bad", &bad.base_url()),
        deployment("refused", "http://127.0.0.1:9/v1"),
    );
    let (base, _stop) = gateway(&config).await;
    let client = reqwest::Client::new();
    let url = format!("{base}/v1/chat/completions");
    let direct_bad = format!("{}/chat/completions", bad.base_url());
    let mut series: [Vec<Duration>; 5] = Default::default();
    let bodies: Vec<Value> = ["healthy", "after-500", "after-refused"]
        .iter()
        .map(|m| {
            let mut b = body();
            b["model"] = json!(m);
            b
        })
        .collect();
    // Warm-up, then interleaved rounds so that machine noise hits every series alike.
    for _ in 0..200 {
        for b in &bodies {
            timed(&client, &url, b).await;
        }
    }
    for _ in 0..HEALTHY_ROUNDS {
        for _ in 0..PER_ROUND {
            series[0].push(timed(&client, &url, &bodies[0]).await);
            series[1].push(timed(&client, &url, &bodies[1]).await);
            series[2].push(timed(&client, &url, &bodies[2]).await);
            series[3].push(timed(&client, &direct_bad, &body()).await);
            let refused = Instant::now();
            let _ = client
                .post("http://127.0.0.1:9/v1/chat/completions")
                .json(&body())
                .send()
                .await;
            series[4].push(refused.elapsed());
        }
    }
    let [healthy, after500, refused, direct500, direct_refused] = series.map(median);
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let added500 = ms(after500) - ms(healthy) - ms(direct500);
    let added_refused = ms(refused) - ms(healthy) - ms(direct_refused);
    let mut out = String::new();
    out.push_str(&format!(
        "Medians of {} sequential requests each, interleaved.\n\n",
        HEALTHY_ROUNDS * PER_ROUND
    ));
    out.push_str("| figure | measured | target | |\n|---|---|---|---|\n");
    out.push_str(&format!(
        "| served first time through nines | {:.3} ms | | |\n",
        ms(healthy)
    ));
    out.push_str(&format!(
        "| first deployment answers 500, served by the second | {:.3} ms | | |\n",
        ms(after500)
    ));
    out.push_str(&format!(
        "| the failed attempt alone (500 from the mock, direct) | {:.3} ms | | |\n",
        ms(direct500)
    ));
    out.push_str(&format!(
        "| **added by failover beyond the failed attempt (500)** | {added500:.3} ms | ≤ 1 ms | {} |\n",
        verdict(added500 <= 1.0)
    ));
    out.push_str(&format!(
        "| first deployment refuses the connection, served by the second | {:.3} ms | | |\n",
        ms(refused)
    ));
    out.push_str(&format!(
        "| the refused connect alone (direct) | {:.3} ms | | |\n",
        ms(direct_refused)
    ));
    out.push_str(&format!(
        "| **added by failover beyond the failed attempt (refused)** | {added_refused:.3} ms | ≤ 1 ms | {} |\n",
        verdict(added_refused <= 1.0)
    ));
    out
}

async fn time_to_breaker_open() -> Duration {
    let mut runs = Vec::new();
    for _ in 0..5 {
        let primary = mock("primary").await;
        let fallback = mock("fallback").await;
        let config = format!(
            "[resilience.probes]\nenabled = false\n\n{}{}[[models]]\nname = \"healthy\"\ndeployments = [\"primary\", \"fallback\"]\n",
            deployment("primary", &primary.base_url()),
            deployment("fallback", &fallback.base_url()),
        );
        let (base, _stop) = gateway(&config).await;
        let client = reqwest::Client::new();
        let url = format!("{base}/v1/chat/completions");
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        for _ in 0..10 {
            tick.tick().await;
            timed(&client, &url, &body()).await;
        }
        primary.set_fault(Some(
            serde_json::from_value(json!({"status": 503})).unwrap(),
        ));
        let down_at = Instant::now();
        let opened = loop {
            tick.tick().await;
            let sent = Instant::now();
            let r = client.post(&url).json(&body()).send().await.unwrap();
            let attempts = r.headers()["x-nines-attempts"].to_str().unwrap().to_owned();
            r.bytes().await.unwrap();
            // The first request that no longer touches the primary: the breaker was open when it
            // was sent, so it opened between the previous request and this one.
            if attempts == "1" {
                break sent;
            }
            assert!(
                down_at.elapsed() < Duration::from_secs(30),
                "breaker never opened"
            );
        };
        runs.push(opened - down_at);
    }
    median(runs)
}

async fn total_outage() -> (u64, u64, f64) {
    let mocks = [mock("a").await, mock("b").await, mock("c").await];
    for m in &mocks {
        m.set_fault(Some(
            serde_json::from_value(json!({"status": 500})).unwrap(),
        ));
    }
    let config = format!(
        "[resilience.probes]\nenabled = false\n\n{}{}{}[[models]]\nname = \"healthy\"\ndeployments = [\"a\", \"b\", \"c\"]\n",
        deployment("a", &mocks[0].base_url()),
        deployment("b", &mocks[1].base_url()),
        deployment("c", &mocks[2].base_url()),
    );
    let (base, _stop) = gateway(&config).await;
    let url = format!("{base}/v1/chat/completions");
    let client = reqwest::Client::new();
    let hits = || {
        mocks
            .iter()
            .map(|m| m.hits("/v1/chat/completions"))
            .sum::<u64>()
    };
    let started = Instant::now();
    let count = std::sync::Arc::new(std::sync::atomic::AtomicU64::new(0));
    let mut after_first_second: Option<(u64, u64)> = None;
    let mut tasks = Vec::new();
    for _ in 0..32 {
        let (client, url, count) = (client.clone(), url.clone(), count.clone());
        tasks.push(tokio::spawn(async move {
            while started.elapsed() < Duration::from_secs(10) {
                // A 2 s deadline: with every breaker open past it, the request fails fast (503)
                // instead of waiting out the 30 s cooldown, which is what a client with a short
                // timeout sees and what lets the run count many requests.
                let r = client
                    .post(&url)
                    .header("x-nines-timeout", "2s")
                    .json(&body())
                    .send()
                    .await
                    .unwrap();
                r.bytes().await.unwrap();
                count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    after_first_second.get_or_insert((count.load(std::sync::atomic::Ordering::Relaxed), hits()));
    for t in tasks {
        t.await.unwrap();
    }
    let requests = count.load(std::sync::atomic::Ordering::Relaxed);
    let attempts = hits();
    let (r1, a1) = after_first_second.unwrap_or((0, 0));
    let steady = (attempts - a1) as f64 / (requests - r1).max(1) as f64;
    (requests, attempts, steady)
}
