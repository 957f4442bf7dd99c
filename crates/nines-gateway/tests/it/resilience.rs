//! Resilience over real HTTP: failure classes, Retry-After, breakers, probes, budget, hedging,
//! and a chaos run. Upstream attempt counts are asserted at the mocks.

use crate::harness::{Harness, chain, error_of, eventually, hello, sse_data};
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

/// `chain(n)` with extra `[resilience…]` tables appended.
fn with(n: usize, extra: &str) -> String {
    format!(
        "{}\n{extra}\n",
        chain(n).replace("[resilience.probes]\nenabled = false\n", "")
    )
}

const NO_PROBES: &str = "[resilience.probes]\nenabled = false\n";

#[tokio::test]
async fn overload_and_quota_classes_fail_over_and_a_quota_key_is_not_retried() {
    let h = Harness::start(2, &chain(2)).await;
    h.fault(0, json!({"status": 503, "body": "{\"error\":{\"message\":\"Overloaded\",\"type\":\"overloaded_error\"}}"}));
    let r = h.chat(&hello("chat")).await;
    assert_eq!(r.headers()["x-nines-deployment"], "d1");
    h.fault(0, json!({"status": 429, "body": "{\"error\":{\"message\":\"You exceeded your current quota\",\"code\":\"insufficient_quota\"}}"}));
    h.fault(1, json!({"status": 500}));
    let r = h.chat(&hello("chat")).await;
    assert_eq!(r.status(), 502);
    let error = error_of(r).await;
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("class=quota_exhausted"), "{message}");
    // d0 (quota) is never retried; d1 (server error) is retried up to 3 times in total.
    assert_eq!(
        h.chat_hits(0),
        2,
        "one hit per request, no retry of the quota key"
    );
    assert_eq!(
        h.chat_hits(1),
        1 + 3,
        "first request served; second: 3 attempts"
    );
}

#[tokio::test]
async fn retry_after_is_honoured_on_the_only_slot() {
    let h = Harness::start(1, &chain(1)).await;
    h.fault(0, json!({"status": 429, "retry_after_ms": 400, "times": 1}));
    let started = Instant::now();
    let r = h.chat(&hello("chat")).await;
    let took = started.elapsed();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-attempts"], "2");
    assert!(
        took >= Duration::from_millis(400),
        "retried after {took:?}, before the Retry-After"
    );
    assert!(took < Duration::from_millis(1500), "{took:?}");
    assert_eq!(h.chat_hits(0), 2);
}

#[tokio::test]
async fn retry_after_beyond_the_deadline_is_not_waited_for() {
    let h = Harness::start(1, &chain(1).replace("total = \"10s\"", "total = \"1s\"")).await;
    h.fault(0, json!({"status": 429, "retry_after": "30"}));
    let started = Instant::now();
    let r = h.chat(&hello("chat")).await;
    assert!(started.elapsed() < Duration::from_millis(500));
    assert_eq!(r.status(), 502);
    assert_eq!(
        r.headers()["retry-after"],
        "30",
        "the client is told when the limit resets"
    );
    assert_eq!(r.headers()["x-should-retry"], "false");
    assert_eq!(h.chat_hits(0), 1);
}

#[tokio::test]
async fn client_and_content_filter_errors_are_never_retried() {
    let h = Harness::start(2, &chain(2)).await;
    let filtered = r#"{"error":{"message":"The response was filtered","type":"invalid_request_error","param":"prompt","code":"content_filter"}}"#;
    h.fault(0, json!({"status": 400, "body": filtered}));
    let r = h.chat(&hello("chat")).await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_of(r).await["code"], "content_filter");
    assert_eq!((h.chat_hits(0), h.chat_hits(1)), (1, 0));
}

#[tokio::test]
async fn context_too_long_moves_only_to_a_larger_window() {
    // Windows: d0 16000, d1 8000, d2 24000.
    let template = swap_window(&swap_window(&chain(3), "d0", 16000), "d1", 8000);
    let h = Harness::start(3, &template).await;
    h.fault(0, json!({"context_too_long": true}));
    let r = h.chat(&hello("chat")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "d2");
    assert_eq!((h.chat_hits(0), h.chat_hits(1), h.chat_hits(2)), (1, 0, 1));
}

/// Sets deployment `name`'s context window in a `chain` template.
fn swap_window(template: &str, name: &str, window: u64) -> String {
    let marker = format!("name = \"{name}\"");
    let start = template.find(&marker).unwrap();
    let rel = template[start..].find("context_window = ").unwrap() + start;
    let end = template[rel..].find('\n').unwrap() + rel;
    format!(
        "{}context_window = {window}{}",
        &template[..rel],
        &template[end..]
    )
}

#[tokio::test]
async fn breaker_opens_after_five_failures_and_the_slot_is_skipped() {
    let h = Harness::start(
        2,
        &with(
            2,
            &format!("{NO_PROBES}[resilience.breaker]\ncooldown = \"30s\"\n"),
        ),
    )
    .await;
    h.fault(0, json!({"status": 500}));
    for _ in 0..5 {
        let r = h.chat(&hello("chat")).await;
        assert_eq!(r.headers()["x-nines-attempts"], "2");
    }
    assert_eq!(h.chat_hits(0), 5);
    for _ in 0..10 {
        let r = h.chat(&hello("chat")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(
            r.headers()["x-nines-attempts"],
            "1",
            "open slot skipped without an attempt"
        );
    }
    assert_eq!(h.chat_hits(0), 5, "no traffic to the open slot");
}

#[tokio::test]
async fn all_slots_open_fails_fast_with_503_and_retry_after() {
    let h = Harness::start(
        1,
        &with(
            1,
            // No early probes: this is about the fail-fast answer itself.
            &format!(
                "{NO_PROBES}[resilience.breaker]\ncooldown = \"20s\"\nearly_probe_interval = \"0s\"\n"
            ),
        ),
    )
    .await;
    h.fault(0, json!({"status": 500}));
    // Two requests of up to 3 attempts each trip the breaker (5 consecutive failures).
    for _ in 0..2 {
        assert_eq!(h.chat(&hello("chat")).await.status(), 502);
    }
    let hits = h.chat_hits(0);
    assert!(hits >= 5, "{hits}");
    let started = Instant::now();
    let r = h.chat(&hello("chat")).await;
    assert!(started.elapsed() < Duration::from_millis(200), "fails fast");
    assert_eq!(r.status(), 503);
    let retry_after: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry_after), "{retry_after}");
    assert_eq!(
        r.headers()["x-should-retry"],
        "true",
        "the breaker reopens soon"
    );
    assert_eq!(error_of(r).await["code"], "all_deployments_unavailable");
    assert_eq!(h.chat_hits(0), hits, "no upstream call");
}

/// One deployment whose breaker five 500s opened (60 s cooldown, early probes every 1 s); the
/// mock answers by `then` from there on.
async fn opened_by_five_500s(then: Value) -> Harness {
    let config = with(
        1,
        &format!(
            "{NO_PROBES}[resilience]\nmax_attempts_per_deployment = 1\n\n[resilience.breaker]\ncooldown = \"60s\"\nearly_probe_interval = \"1s\"\n"
        ),
    );
    let h = Harness::start(1, &config).await;
    h.fault(0, json!({"status": 500, "times": 5}));
    for _ in 0..5 {
        assert_eq!(h.chat(&hello("chat")).await.status(), 502);
    }
    h.fault(0, then);
    h
}

/// A breaker can be wrong: one that opened on a blip would turn a recovered provider into 30 s of
/// 503s. With every slot open, one request per interval probes it early; its success closes it.
#[tokio::test]
async fn with_every_slot_open_one_request_probes_early_and_closes_the_breaker() {
    // Back, but slow.
    let h = opened_by_five_500s(json!({"latency_ms": 400})).await;
    let send = || {
        h.client
            .post(h.url("/v1/chat/completions"))
            .header("x-nines-timeout", "10s")
            .json(&hello("chat"))
            .send()
    };
    // Within the interval of opening: fail fast, no upstream call.
    let r = send().await.unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(h.chat_hits(0), 5);
    // One request probes early; one arriving meanwhile waits for its outcome rather than
    // failing fast or waiting out the 60 s cooldown.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let started = Instant::now();
    let probe = tokio::spawn(send());
    tokio::time::sleep(Duration::from_millis(100)).await;
    let waiter = send().await.unwrap();
    let probe = probe.await.unwrap().unwrap();
    assert_eq!(probe.status(), 200);
    assert_eq!(waiter.status(), 200, "{:?}", error_of(waiter).await);
    assert_eq!(waiter.headers()["x-nines-attempts"], "1");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(h.chat_hits(0), 7, "the probe and the waiter, nothing more");
    // Closed: traffic flows.
    assert_eq!(send().await.unwrap().status(), 200);
}

/// A provider still down costs one failed request per interval, not every request.
#[tokio::test]
async fn an_early_probe_of_a_dead_provider_fails_and_the_rest_fail_fast() {
    let h = opened_by_five_500s(json!({"status": 500})).await;
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let probe = h.chat(&hello("chat")).await;
    assert_eq!(
        probe.status(),
        502,
        "the early probe failed like any attempt"
    );
    assert_eq!(h.chat_hits(0), 6);
    for _ in 0..5 {
        let r = h.chat(&hello("chat")).await;
        assert_eq!(r.status(), 503);
        assert_eq!(error_of(r).await["code"], "all_deployments_unavailable");
    }
    assert_eq!(
        h.chat_hits(0),
        6,
        "still open: no second probe within the interval"
    );
}

#[tokio::test]
async fn request_waits_for_a_breaker_reopening_that_fits_its_deadline() {
    let config = with(
        1,
        &format!(
            "{NO_PROBES}[resilience]\nmax_attempts_per_deployment = 1\n\n[resilience.breaker]\ncooldown = \"300ms\"\n"
        ),
    );
    let h = Harness::start(1, &config).await;
    h.fault(0, json!({"status": 500, "times": 5}));
    for _ in 0..5 {
        assert_eq!(h.chat(&hello("chat")).await.status(), 502);
    }
    assert_eq!(h.chat_hits(0), 5);
    // Open for 300 ms; the deadline is 10 s, so the request waits and is the half-open probe.
    let started = Instant::now();
    let r = h.chat(&hello("chat")).await;
    assert_eq!(r.status(), 200);
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(h.chat_hits(0), 6);
}

#[tokio::test]
async fn probes_take_a_dead_deployment_out_and_bring_it_back() {
    let config = with(
        2,
        // Slow start off: the recovered slot takes its traffic back at once (degrade.rs tests the ramp).
        "[resilience.probes]\ninterval = \"100ms\"\nfailed_interval = \"20ms\"\n\n[resilience.breaker]\ncooldown = \"500ms\"\nslow_start = \"0s\"\n",
    );
    let h = Harness::start(2, &config).await;
    h.fault(0, json!({"status": 503}));
    // With no traffic at all, probes alone trip d0's breaker: 5 failed probes.
    eventually(Duration::from_secs(5), || h.mock(0).hits("/v1/models") >= 5).await;
    let r = h.chat(&hello("chat")).await;
    assert_eq!(r.headers()["x-nines-deployment"], "d1");
    assert_eq!(
        r.headers()["x-nines-attempts"],
        "1",
        "d0 already out of rotation"
    );
    assert_eq!(h.chat_hits(0), 0, "no user request found out the hard way");

    // The provider recovers. A models list says nothing about the model, so no models probe
    // closes the breaker: once the cooldown is over, the next request is the half-open probe,
    // succeeds on d0, and closes it (probes.rs: completion probes close it without a request).
    h.mock(0).set_fault(None);
    tokio::time::sleep(Duration::from_millis(700)).await;
    let before = h.mock(0).hits("/v1/models");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        h.mock(0).hits("/v1/models"),
        before,
        "a half-open slot is left to a request, not to a models probe"
    );
    let r = h.chat(&hello("chat")).await;
    assert_eq!(r.headers()["x-nines-deployment"], "d0");
    let r = h.chat(&hello("chat")).await;
    assert_eq!(r.headers()["x-nines-deployment"], "d0", "closed again");
}

#[tokio::test]
async fn total_outage_stays_within_the_retry_budget() {
    // Breakers effectively off to isolate the budget: 20% of requests, no per-second floor.
    let config = with(
        3,
        &format!(
            "{NO_PROBES}[resilience.retry_budget]\nratio = 0.2\nmin_per_second = 0\n\n[resilience.breaker]\nconsecutive_failures = 1000000\nmin_requests = 1000000\n"
        ),
    );
    let h = Harness::start(3, &config).await;
    for i in 0..3 {
        h.fault(i, json!({"status": 500}));
    }
    let mut spent = 0;
    for _ in 0..200 {
        let r = h.chat(&hello("chat")).await;
        if r.status() == 503 {
            assert_eq!(r.headers()["x-should-retry"], "false");
            assert!(r.headers().contains_key("retry-after"));
            spent += 1;
        }
    }
    let attempts = h.chat_hits(0) + h.chat_hits(1) + h.chat_hits(2);
    let per_request = attempts as f64 / 200.0;
    println!(
        "total outage without breakers: {attempts} upstream attempts for 200 requests ({per_request:.3}/request); {spent} failed fast on the budget"
    );
    assert!(per_request <= 1.2 + 1e-9, "{per_request}");
    assert!(spent > 0);
}

#[tokio::test]
async fn total_outage_with_breakers_costs_at_most_1_2_attempts_per_request() {
    let h = Harness::start(3, &with(3, NO_PROBES)).await;
    for i in 0..3 {
        h.fault(i, json!({"status": 500}));
    }
    for _ in 0..300 {
        let status = h.chat(&hello("chat")).await.status().as_u16();
        assert!(status == 502 || status == 503, "{status}");
    }
    let attempts = h.chat_hits(0) + h.chat_hits(1) + h.chat_hits(2);
    let per_request = attempts as f64 / 300.0;
    println!(
        "total outage with breakers: {attempts} upstream attempts for 300 requests ({per_request:.3}/request)"
    );
    assert!(per_request <= 1.2, "{per_request}");
}

#[tokio::test]
async fn hedge_cuts_the_tail_when_the_first_choice_is_slow() {
    let config = chain(2).replace(
        "name = \"chat\"\n",
        "name = \"chat\"\nhedge = { enabled = true, delay = \"100ms\", max_percent = 100 }\n",
    );
    let h = Harness::start(2, &config).await;
    h.fault(0, json!({"first_byte_ms": 1500}));
    let started = Instant::now();
    let r = h.chat(&hello("chat")).await;
    let took = started.elapsed();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "d1");
    assert_eq!(r.headers()["x-nines-attempts"], "2");
    assert!(
        took < Duration::from_millis(800),
        "hedged answer after {took:?}"
    );
    assert_eq!((h.chat_hits(0), h.chat_hits(1)), (1, 1));

    // A fast first choice is never hedged.
    h.mock(0).set_fault(None);
    let r = h.chat(&hello("chat")).await;
    assert_eq!(r.headers()["x-nines-attempts"], "1");
    assert_eq!(h.chat_hits(1), 1);
}

#[tokio::test]
async fn hedges_are_capped() {
    let config = chain(2).replace(
        "name = \"chat\"\n",
        "name = \"chat\"\nhedge = { enabled = true, delay = \"20ms\", max_percent = 10 }\n",
    );
    let h = Harness::start(2, &config).await;
    h.fault(0, json!({"first_byte_ms": 60}));
    for _ in 0..40 {
        assert_eq!(h.chat(&hello("chat")).await.status(), 200);
    }
    let hedges = h.chat_hits(1);
    assert!(
        hedges <= 4,
        "at most 10% of 40 requests hedged, got {hedges}"
    );
    assert!(hedges >= 1);
}

#[tokio::test]
async fn primary_down_for_a_period_then_back() {
    let h = Harness::start(
        2,
        &with(
            2,
            &format!(
                // All traffic back at once (slow start has its own test: degrade.rs).
                "{NO_PROBES}[resilience.breaker]\ncooldown = \"200ms\"\nmax_cooldown = \"200ms\"\nslow_start = \"0s\"\n"
            ),
        ),
    )
    .await;
    h.fault(
        0,
        json!({"down_from_ms": 0, "down_to_ms": 700, "status": 503}),
    );
    let started = Instant::now();
    let mut served = Vec::new();
    while started.elapsed() < Duration::from_millis(1600) {
        let r = h.chat(&hello("chat")).await;
        assert_eq!(r.status(), 200, "the client never sees the outage");
        served.push((
            started.elapsed(),
            r.headers()["x-nines-deployment"]
                .to_str()
                .unwrap()
                .to_owned(),
        ));
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let during: Vec<_> = served
        .iter()
        .filter(|(t, _)| *t < Duration::from_millis(650))
        .collect();
    assert!(
        during.iter().all(|(_, d)| d == "d1"),
        "served from the fallback during the outage"
    );
    let after: Vec<_> = served
        .iter()
        .filter(|(t, _)| *t > Duration::from_millis(1200))
        .collect();
    assert!(
        !after.is_empty() && after.iter().all(|(_, d)| d == "d0"),
        "back on the primary after: {after:?}"
    );
}

#[tokio::test]
async fn malformed_chunk_is_skipped_when_the_rest_is_sound() {
    let h = Harness::start(1, &chain(1)).await;
    h.fault(0, json!({"malformed_chunk_at": 3}));
    let mut body = hello("chat");
    body["stream"] = json!(true);
    let data = sse_data(h.chat(&body).await).await;
    assert_eq!(data.last().unwrap(), "[DONE]");
    for d in &data[..data.len() - 1] {
        serde_json::from_str::<Value>(d)
            .unwrap_or_else(|e| panic!("client got a malformed chunk {d}: {e}"));
    }
}

#[tokio::test]
async fn client_timeout_header_shortens_the_deadline() {
    let h = Harness::start(1, &chain(1)).await;
    h.fault(0, json!({"hang": true}));
    let started = Instant::now();
    let r = h
        .client
        .post(h.url("/v1/chat/completions"))
        .header("x-nines-timeout", "300ms")
        .json(&hello("chat"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    assert!(started.elapsed() < Duration::from_millis(1500));
}

/// Three providers, each down ~6% of the time in outages of its own rhythm, and with 6% of its
/// requests failing at random besides. The client must see ≥ 99.9% success.
#[tokio::test]
async fn chaos_three_flaky_providers_look_like_one_reliable_one() {
    // Weighted, so that every provider carries traffic and its failures really happen.
    let config = with(
        3,
        &format!(
            "{NO_PROBES}[resilience.breaker]\ncooldown = \"100ms\"\nmax_cooldown = \"400ms\"\n"
        ),
    )
    .replacen(
        "name = \"chat\"\n",
        "name = \"chat\"\nstrategy = \"weighted\"\n",
        1,
    );
    let h = Harness::start(3, &config).await;
    // (period ms, down ms, seed): ~6% down each, several outages per provider during the run.
    let rhythms = [(250, 15, 11), (330, 20, 23), (410, 25, 37)];
    for (i, (period, down, seed)) in rhythms.iter().enumerate() {
        // Outage windows, plus independent random failures in a second script layer: the mock
        // takes one script, so alternate the kind per provider while keeping ~6% unavailability.
        let script = if i == 1 {
            json!({"fail_percent": 6.0, "seed": seed, "status": 500})
        } else {
            json!({"cycle_period_ms": period, "cycle_down_ms": down, "status": 503})
        };
        h.fault(i, script);
    }
    let total = 3000;
    let mut ok = 0;
    let mut tasks = tokio::task::JoinSet::new();
    let concurrency = 6;
    for _ in 0..concurrency {
        let client = h.client.clone();
        let url = h.url("/v1/chat/completions");
        tasks.spawn(async move {
            let mut ok = 0;
            for _ in 0..total / concurrency {
                let r = client.post(&url).json(&hello("chat")).send().await.unwrap();
                if r.status() == 200 {
                    ok += 1;
                }
            }
            ok
        });
    }
    while let Some(n) = tasks.join_next().await {
        ok += n.unwrap();
    }
    let upstream_failures: u64 = (0..3).map(|i| h.chat_hits(i)).sum::<u64>() - ok as u64;
    let rate = ok as f64 / total as f64;
    println!(
        "chaos: {ok}/{total} client requests succeeded ({:.3}%); upstream attempts failed: {upstream_failures}",
        rate * 100.0
    );
    assert!(upstream_failures > 0, "the providers really were failing");
    assert!(rate >= 0.999, "success rate {rate}");
}
