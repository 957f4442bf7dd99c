//! Degrade last (issue 16): a model's own key slots, with one retry of a transient failure, are
//! exhausted before a fallback model serves; learned first-byte deadlines; slow start after a
//! breaker closes. Hit counts are asserted at the mocks, times on a paused clock.

use crate::harness::{Harness, chain, hello};
use crate::metrics::scrape;
use serde_json::{Value, json};
use std::time::Duration;
use tokio::time::Instant;

const ADMIN: &str = "sk-degrade-admin";

/// Model `chat` on `own` deployments (d0..), with fallback model `backup` on the next one;
/// `model_extra` lines on `chat`, `tail` appended (e.g. `[resilience]`).
fn with_backup(own: usize, model_extra: &str, tail: &str) -> String {
    let mut text = chain(own + 1);
    let own_names: Vec<String> = (0..own).map(|i| format!("\"d{i}\"")).collect();
    let all: Vec<String> = (0..=own).map(|i| format!("\"d{i}\"")).collect();
    text = text.replacen(
        &format!("name = \"chat\"\ndeployments = [{}]\n", all.join(", ")),
        &format!(
            "name = \"chat\"\ndeployments = [{}]\nfallbacks = [\"backup\"]\n{model_extra}\n",
            own_names.join(", ")
        ),
        1,
    );
    format!(
        "{text}\n[[models]]\nname = \"backup\"\ndeployments = [\"d{own}\"]\n\n[auth]\nenabled = false\nadmin_key = \"{ADMIN}\"\n\n[store]\ndatabase_url = \"sqlite::memory:\"\nflush_interval = \"20ms\"\nrequest_records = \"all\"\n{tail}\n"
    )
}

fn served(r: &reqwest::Response) -> &str {
    r.headers()["x-nines-deployment"].to_str().unwrap()
}

fn fallback(r: &reqwest::Response) -> Option<&str> {
    r.headers()
        .get("x-nines-fallback")
        .map(|v| v.to_str().unwrap())
}

fn hits(h: &Harness, n: usize) -> Vec<u64> {
    (0..n).map(|i| h.chat_hits(i)).collect()
}

#[tokio::test(start_paused = true)]
async fn a_single_500_is_retried_on_the_same_slot_before_any_fallback_model() {
    let h = Harness::start(2, &with_backup(1, "", "")).await;
    h.fault(0, json!({"status": 500, "times": 1}));
    let started = Instant::now();
    let r = h.chat(&hello("chat")).await;
    let took = started.elapsed();
    assert_eq!(r.status(), 200);
    assert_eq!(served(&r), "d0");
    assert_eq!(fallback(&r), None);
    assert_eq!(hits(&h, 2), [2, 0], "the fallback model was never asked");
    // One jittered backoff (round 0: at most `backoff.base`, 500 ms).
    assert!(took <= Duration::from_millis(500), "{took:?}");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["model"], "up-model-0");
}

#[tokio::test(start_paused = true)]
async fn a_429_with_a_short_retry_after_is_waited_for_on_the_same_slot() {
    let h = Harness::start(2, &with_backup(1, "", "")).await;
    h.fault(0, json!({"status": 429, "retry_after": "2", "times": 1}));
    let started = Instant::now();
    let r = h.chat(&hello("chat")).await;
    let took = started.elapsed();
    assert_eq!(r.status(), 200);
    assert_eq!(served(&r), "d0");
    assert_eq!(hits(&h, 2), [2, 0]);
    assert!(
        (Duration::from_secs(2)..Duration::from_millis(2100)).contains(&took),
        "the retry went at the provider's Retry-After, not before or long after: {took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn what_time_will_not_fix_moves_on_to_the_fallback_model_at_once() {
    // A longer hint than max_retry_after_wait (5 s), a 429 without a hint, a first-byte
    // timeout: each degrades after exactly one attempt on the model's own slot.
    let cases = [
        json!({"status": 429, "retry_after": "30"}),
        json!({"status": 429}),
        json!({"first_byte_ms": 60000}),
    ];
    for (i, fault) in cases.into_iter().enumerate() {
        let h = Harness::start(2, &with_backup(1, "", "")).await;
        h.fault(0, fault.clone());
        let r = h.chat(&hello("chat")).await;
        assert_eq!(r.status(), 200, "case {i}: {fault}");
        assert_eq!(served(&r), "d1", "case {i}");
        assert_eq!(fallback(&r), Some("backup"), "case {i}");
        assert_eq!(hits(&h, 2), [1, 1], "case {i}: {fault}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["model"], "up-model-1", "the model that answered");
        h.stop().await;
    }
}

// Real time: the SQLite store works on blocking threads, which a paused clock would outrun.
#[tokio::test]
async fn a_persistent_failure_is_retried_once_then_the_fallback_serves_and_says_so() {
    let h = Harness::start_opened(2, &with_backup(1, "", "")).await;
    h.fault(0, json!({"status": 503}));
    let r = h.chat(&hello("chat")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(served(&r), "d1");
    assert_eq!(fallback(&r), Some("backup"));
    assert_eq!(
        hits(&h, 2),
        [2, 1],
        "one retry of the own slot, then the fallback"
    );
    // The usage record names the fallback model.
    let mut record = Value::Null;
    for _ in 0..200 {
        let listed = h.get_json("/admin/usage", Some(ADMIN)).await;
        if let Some(r) = listed["data"].as_array().and_then(|d| d.first()) {
            record = r.clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(record["fallback"], "backup", "{record}");
    assert_eq!(record["deployment"], "d1");
    assert_eq!(record["attempts"], 3);
}

#[tokio::test(start_paused = true)]
async fn between_deployments_of_the_same_model_failover_stays_immediate() {
    let h = Harness::start(3, &with_backup(2, "", "")).await;
    h.fault(0, json!({"status": 500}));
    let started = Instant::now();
    let r = h.chat(&hello("chat")).await;
    assert_eq!(served(&r), "d1");
    assert_eq!(fallback(&r), None);
    assert_eq!(hits(&h, 3), [1, 1, 0]);
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no backoff between deployments"
    );
    // Both own deployments failing: each is retried once (d0, d1, d0, d1), then the fallback.
    h.fault(1, json!({"status": 500}));
    let r = h.chat(&hello("chat")).await;
    assert_eq!(served(&r), "d2");
    assert_eq!(fallback(&r), Some("backup"));
    assert_eq!(hits(&h, 3), [1 + 2, 1 + 2, 1]);
}

#[tokio::test(start_paused = true)]
async fn degrade_immediately_tries_the_fallback_model_before_any_retry() {
    let h = Harness::start(2, &with_backup(1, "degrade = \"immediately\"", "")).await;
    h.fault(0, json!({"status": 500, "times": 1}));
    let r = h.chat(&hello("chat")).await;
    assert_eq!(served(&r), "d1");
    assert_eq!(fallback(&r), Some("backup"));
    assert_eq!(hits(&h, 2), [1, 1]);
    let routes = h.get_json("/admin/routes?model=chat", Some(ADMIN)).await;
    assert_eq!(routes["models"][0]["degrade"], "immediately");
    assert_eq!(routes["models"][0]["order"][1]["tier"], 1);
}

/// `chain(2)` with a 30 s first-byte timeout on both (learned deadlines can be shorter).
fn patient(tail: &str) -> String {
    format!(
        "{}\n{tail}\n",
        chain(2)
            .replace("first_byte = \"2s\"", "first_byte = \"30s\"")
            .replace("total = \"10s\"", "total = \"120s\"")
    )
}

async fn deadline_ms(h: &Harness) -> (u64, u64) {
    let routes = h.get_json("/admin/routes?model=chat", None).await;
    let d0 = &routes["models"][0]["order"][0];
    assert_eq!(d0["deployment"], "d0");
    let ms = |kind: &str| d0["first_byte_deadline_ms"][kind].as_u64().unwrap();
    (ms("whole"), ms("stream"))
}

#[tokio::test(start_paused = true)]
async fn a_deployment_slow_for_it_is_abandoned_at_its_learned_deadline() {
    let h = Harness::start(2, &patient("")).await;
    h.fault(0, json!({"first_byte_ms": 300}));
    for _ in 0..49 {
        assert_eq!(served(&h.chat(&hello("chat")).await), "d0");
    }
    assert_eq!(
        deadline_ms(&h).await,
        (30_000, 30_000),
        "49 samples: not yet learned"
    );
    h.chat(&hello("chat")).await;
    // p99 300 ms × 3 is under the 2 s floor; streams have no samples yet.
    assert_eq!(deadline_ms(&h).await, (2_000, 30_000));
    let m = scrape(&h).await;
    let gauge = |stream| {
        m.get(
            "nines_first_byte_deadline_seconds",
            &[
                ("deployment", "d0"),
                ("provider", "openai-compatible"),
                ("stream", stream),
            ],
        )
    };
    assert_eq!((gauge("false"), gauge("true")), (2.0, 30.0));

    // Now d0 takes 20 s to its first byte: abandoned at 2 s, not 30 s, and d1 answers.
    h.fault(0, json!({"first_byte_ms": 20000}));
    let started = Instant::now();
    let r = h.chat(&hello("chat")).await;
    let took = started.elapsed();
    assert_eq!(served(&r), "d1");
    assert!(
        (Duration::from_secs(2)..Duration::from_millis(2100)).contains(&took),
        "{took:?}"
    );
    assert_eq!((h.chat_hits(0), h.chat_hits(1)), (51, 1));
}

#[tokio::test(start_paused = true)]
async fn a_deployment_that_is_always_slow_keeps_its_configured_deadline() {
    let h = Harness::start(2, &patient("")).await;
    h.fault(0, json!({"first_byte_ms": 20000}));
    for _ in 0..60 {
        assert_eq!(served(&h.chat(&hello("chat")).await), "d0");
    }
    // 3 × 20 s is over the configured 30 s: the configured deadline stands.
    assert_eq!(deadline_ms(&h).await.0, 30_000);
    assert_eq!(
        h.chat_hits(1),
        0,
        "the slow reasoning model was never punished"
    );
}

#[tokio::test(start_paused = true)]
async fn a_recovered_key_slot_gets_its_traffic_back_gradually() {
    let h = Harness::start(
        2,
        &format!(
            "{}\n[resilience.breaker]\ncooldown = \"10s\"\nslow_start = \"30s\"\n",
            chain(2)
        ),
    )
    .await;
    // Five failures open d0's breaker (each request fails over to d1).
    h.fault(0, json!({"status": 500, "times": 5}));
    for _ in 0..5 {
        assert_eq!(served(&h.chat(&hello("chat")).await), "d1");
    }
    assert_eq!(served(&h.chat(&hello("chat")).await), "d1", "open: skipped");
    tokio::time::advance(Duration::from_secs(10)).await;
    // The half-open probe succeeds: closed, and ramping from 10 % of first places.
    assert_eq!(served(&h.chat(&hello("chat")).await), "d0");
    let early = led_by_d0(&h).await;
    tokio::time::advance(Duration::from_secs(15)).await;
    let middle = led_by_d0(&h).await;
    tokio::time::advance(Duration::from_secs(15)).await;
    let after = led_by_d0(&h).await;
    println!("slow start: d0 led {early}, {middle}, {after} of 100 at 0 s, 15 s, 30 s");
    assert!((1..=25).contains(&early), "{early}");
    assert!((35..=75).contains(&middle), "{middle}");
    assert_eq!(after, 100);
    let routes = h.get_json("/admin/routes?model=chat", None).await;
    assert_eq!(routes["models"][0]["order"][0]["breaker"], "closed");
}

/// Of 100 requests, how many d0 served.
async fn led_by_d0(h: &Harness) -> usize {
    let mut d0 = 0;
    for _ in 0..100 {
        if served(&h.chat(&hello("chat")).await) == "d0" {
            d0 += 1;
        }
    }
    d0
}
