//! Probes that tell the truth: a models list that answers 200 never erases the failures real
//! traffic saw for the model, and only a completion of the model itself closes a breaker.

use crate::harness::{Harness, chain, eventually, hello};
use serde_json::json;
use std::time::Duration;

/// `chain(n)` with probes on, as `extra` sets them.
fn with(n: usize, extra: &str) -> String {
    format!(
        "{}\n{extra}\n",
        chain(n).replace("[resilience.probes]\nenabled = false\n", "")
    )
}

fn breaker_state(metrics: &str, slot: &str, phase: &str) -> bool {
    metrics.lines().any(|l| {
        l.starts_with("nines_breaker_state{")
            && l.contains(&format!("key_slot=\"{slot}\""))
            && l.contains(&format!("state=\"{phase}\""))
            && l.ends_with(" 1")
    })
}

async fn metrics(h: &Harness) -> String {
    reqwest::get(h.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

/// The model fails while `/models` answers 200 and models probes succeed in between every
/// request: the breaker still opens after `consecutive_failures` failed requests. (Before,
/// each successful probe reset the count, and the breaker opened only through the slower
/// failure-rate rule, ~30 s in.)
#[tokio::test]
async fn a_models_list_that_answers_never_erases_the_models_failures() {
    let config = with(
        2,
        "[resilience.probes]\ninterval = \"50ms\"\nfailed_interval = \"50ms\"\n\n\
         [resilience.breaker]\nconsecutive_failures = 3\nmin_requests = 1000\ncooldown = \"60s\"\n",
    );
    let h = Harness::start(2, &config).await;
    h.fault(0, json!({"status": 500, "spare_models": true}));
    for i in 0..3 {
        let r = h.chat(&hello("chat")).await;
        assert_eq!(r.status(), 200, "d1 serves request {i}");
        assert_eq!(r.headers()["x-nines-deployment"], "d1");
        if i == 2 {
            break;
        }
        // Probes of d0's /models succeed between the failed requests.
        let models = h.mock(0).hits("/v1/models");
        eventually(Duration::from_secs(5), || {
            h.mock(0).hits("/v1/models") >= models + 2
        })
        .await;
    }
    assert_eq!(h.chat_hits(0), 3, "three requests failed on d0's model");
    assert!(
        breaker_state(&metrics(&h).await, "d0#0", "open"),
        "three failures in a row opened d0's breaker despite the successful probes"
    );
    let r = h.chat(&hello("chat")).await;
    assert_eq!(
        r.headers()["x-nines-attempts"],
        "1",
        "d0 is out of rotation"
    );
    assert_eq!(h.chat_hits(0), 3);
}

/// Completion probes send a one-token request for the deployment's model: with the model
/// failing they trip the breaker without any user request and keep it open (each half-open
/// probe fails); once the model answers, a probe closes it, again without a user request.
#[tokio::test]
async fn completion_probes_open_and_close_on_the_models_own_answers() {
    let config = with(
        2,
        "[resilience.probes]\nkind = \"completion\"\ninterval = \"50ms\"\nfailed_interval = \"20ms\"\n\n\
         [resilience.breaker]\nconsecutive_failures = 3\ncooldown = \"200ms\"\nmax_cooldown = \"200ms\"\nslow_start = \"0s\"\n",
    );
    let h = Harness::start(2, &config).await;
    h.fault(0, json!({"status": 500, "spare_models": true}));
    eventually(Duration::from_secs(5), || h.chat_hits(0) >= 3).await;
    let m = metrics(&h).await;
    assert!(breaker_state(&m, "d0#0", "open"), "{m}");
    assert_eq!(h.mock(0).hits("/v1/models"), 0, "no models list was asked");
    // What a probe sends: the deployment's model, one token.
    let probe = h
        .mock(0)
        .requests()
        .into_iter()
        .find(|r| r.route == "/v1/chat/completions")
        .expect("a probe request");
    let body: serde_json::Value = serde_json::from_str(&probe.body).unwrap();
    assert_eq!(body["model"], "up-model-0");
    assert_eq!(body["max_tokens"], 1);

    // Half-open probes keep failing: the breaker reopens each time, never closes.
    let hits = h.chat_hits(0);
    eventually(Duration::from_secs(5), || h.chat_hits(0) >= hits + 2).await;
    assert!(!breaker_state(&metrics(&h).await, "d0#0", "closed"));

    // The model answers again: a probe closes the breaker; no user request was needed.
    h.mock(0).set_fault(None);
    let mut closed = false;
    for _ in 0..100 {
        if breaker_state(&metrics(&h).await, "d0#0", "closed") {
            closed = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(closed, "a successful completion probe closed d0's breaker");
    let r = h.chat(&hello("chat")).await;
    assert_eq!(r.headers()["x-nines-deployment"], "d0");
}
