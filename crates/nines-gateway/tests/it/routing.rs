//! Routing over real HTTP: strategies, context fit, capacity, region, fallbacks.

use crate::harness::{Harness, error_of, hello};
use serde_json::json;
use std::time::Duration;
use tokio::time::Instant;

/// `n` openai-compatible deployments d0.. on mock0.., with per-deployment extra TOML lines, in one
/// model `chat` with `strategy`, plus `model_extra` lines on the model.
fn config(n: usize, strategy: &str, extra: &[&str], model_extra: &str, tail: &str) -> String {
    let mut text = String::from(
        "[server]\nlisten = \"127.0.0.1:0\"\n\n[resilience.probes]\nenabled = false\n",
    );
    for i in 0..n {
        text.push_str(&format!(
            "\n[[deployments]]\nname = \"d{i}\"\nprovider = \"openai-compatible\"\nmodel = \"m{i}\"\nbase_url = \"{{mock{i}}}\"\n{}\n",
            extra.get(i).copied().unwrap_or("")
        ));
    }
    let names: Vec<String> = (0..n).map(|i| format!("\"d{i}\"")).collect();
    text.push_str(&format!(
        "\n[[models]]\nname = \"chat\"\ndeployments = [{}]\nstrategy = \"{strategy}\"\n{model_extra}\n{tail}\n",
        names.join(", ")
    ));
    text
}

fn served(r: &reqwest::Response) -> String {
    r.headers()["x-nines-deployment"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn cheapest_takes_all_traffic_while_healthy_and_hands_over_when_it_fails() {
    let extra = [
        "price = { input = 5.0, output = 15.0 }",
        "price = { input = 0.1, output = 0.4 }",
        "price = { input = 1.0, output = 2.0 }",
    ];
    let h = Harness::start(3, &config(3, "cheapest", &extra, "", "")).await;
    for _ in 0..20 {
        let r = h.chat(&hello("chat")).await;
        assert_eq!(served(&r), "d1");
    }
    assert_eq!((h.chat_hits(0), h.chat_hits(1), h.chat_hits(2)), (0, 20, 0));
    h.fault(1, json!({"status": 503}));
    for _ in 0..10 {
        let r = h.chat(&hello("chat")).await;
        assert_eq!(r.status(), 200);
        assert_eq!(served(&r), "d2", "the next cheapest takes over");
    }
    assert_eq!(h.chat_hits(0), 0);
}

#[tokio::test]
async fn least_latency_prefers_the_fast_deployment_and_moves_away_when_it_slows() {
    let h = Harness::start(2, &config(2, "least-latency", &[], "", "")).await;
    h.fault(0, json!({"latency_ms": 5}));
    h.fault(1, json!({"latency_ms": 60}));
    // Warm-up: both get measured.
    for _ in 0..20 {
        h.chat(&hello("chat")).await;
    }
    let before = (h.chat_hits(0), h.chat_hits(1));
    for _ in 0..100 {
        h.chat(&hello("chat")).await;
    }
    let fast_share = (h.chat_hits(0) - before.0) as f64 / 100.0;
    println!(
        "least-latency: fast deployment took {:.0}% after warm-up",
        fast_share * 100.0
    );
    assert!(fast_share >= 0.8, "{fast_share}");

    // d0 slows down to 150 ms: within 5 s most traffic must have moved to d1.
    h.fault(0, json!({"latency_ms": 150}));
    let started = Instant::now();
    let mut moved_at = None;
    let mut window = std::collections::VecDeque::new();
    while started.elapsed() < Duration::from_secs(5) {
        let r = h.chat(&hello("chat")).await;
        window.push_back(served(&r) == "d1");
        if window.len() > 10 {
            window.pop_front();
        }
        if window.len() == 10 && window.iter().filter(|b| **b).count() >= 8 {
            moved_at = Some(started.elapsed());
            break;
        }
    }
    let moved_at = moved_at.expect("least-latency did not move away within 5 s");
    println!("least-latency: moved away {moved_at:?} after the slowdown");
}

#[tokio::test]
async fn a_large_prompt_only_goes_where_it_fits() {
    let extra = ["context_window = 1000", "context_window = 200000"];
    let h = Harness::start(2, &config(2, "priority", &extra, "", "")).await;
    let small = hello("chat");
    assert_eq!(served(&h.chat(&small).await), "d0");
    let big = "lorem ipsum dolor sit amet ".repeat(600); // ~3,600 tokens
    let r = h
        .chat(&json!({"model": "chat", "messages": [{"role": "user", "content": big}]}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        served(&r),
        "d1",
        "the small window is skipped without an attempt"
    );
    assert_eq!(h.chat_hits(0), 1);
}

#[tokio::test]
async fn a_prompt_that_fits_nowhere_is_a_400_naming_the_largest_window() {
    let extra = ["context_window = 1000", "context_window = 2000"];
    let h = Harness::start(2, &config(2, "priority", &extra, "", "")).await;
    let big = "lorem ipsum dolor sit amet ".repeat(600);
    let r = h
        .chat(&json!({"model": "chat", "messages": [{"role": "user", "content": big}]}))
        .await;
    assert_eq!(r.status(), 400);
    let error = error_of(r).await;
    assert_eq!(error["code"], "context_length_exceeded");
    assert!(
        error["message"].as_str().unwrap().contains("2000 tokens"),
        "{error}"
    );
    assert_eq!(h.mock(0).total_hits() + h.mock(1).total_hits(), 0);
}

#[tokio::test]
async fn context_fallback_model_takes_prompts_too_large_for_the_model() {
    let text = config(
        2,
        "priority",
        &["context_window = 1000"],
        "context_fallbacks = [\"long\"]",
        "",
    )
    .replace("deployments = [\"d0\", \"d1\"]", "deployments = [\"d0\"]")
        + "\n[[models]]\nname = \"long\"\ndeployments = [\"d1\"]\n";
    let text = text.replace(
        "name = \"d1\"\nprovider = \"openai-compatible\"\nmodel = \"m1\"",
        "name = \"d1\"\nprovider = \"openai-compatible\"\nmodel = \"m1\"\ncontext_window = 1000000",
    );
    let h = Harness::start(2, &text).await;
    let big = "lorem ipsum dolor sit amet ".repeat(600);
    let r = h
        .chat(&json!({"model": "chat", "messages": [{"role": "user", "content": big}]}))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(served(&r), "d1");
    // A small prompt stays on the model's own deployment; the context fallback is not used.
    assert_eq!(served(&h.chat(&hello("chat")).await), "d0");
}

#[tokio::test]
async fn general_fallback_model_is_tried_after_the_models_own_deployments() {
    let text = config(2, "priority", &[], "fallbacks = [\"backup\"]", "")
        .replace("deployments = [\"d0\", \"d1\"]", "deployments = [\"d0\"]")
        + "\n[[models]]\nname = \"backup\"\ndeployments = [\"d1\"]\n";
    let text = text.replace(
        "[resilience.probes]",
        "[resilience]\nmax_attempts_per_deployment = 1\n\n[resilience.probes]",
    );
    let h = Harness::start(2, &text).await;
    h.fault(0, json!({"status": 500}));
    let r = h.chat(&hello("chat")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(served(&r), "d1");
    assert_eq!((h.chat_hits(0), h.chat_hits(1)), (1, 1));
}

#[tokio::test]
async fn replicas_never_exceed_their_capacity_and_the_excess_queues_then_gets_429() {
    let extra = ["max_concurrency = 4", "max_concurrency = 4"];
    let tail = "[routing]\nqueue_timeout = \"300ms\"\n";
    let h = Harness::start(2, &config(2, "least-busy", &extra, "", tail)).await;
    // Each request holds its slot for 1 s, longer than the queue timeout.
    h.fault(0, json!({"latency_ms": 1000}));
    h.fault(1, json!({"latency_ms": 1000}));
    let mut tasks = Vec::new();
    for _ in 0..12 {
        let client = h.client.clone();
        let url = h.url("/v1/chat/completions");
        tasks.push(tokio::spawn(async move {
            let r = client.post(url).json(&hello("chat")).send().await.unwrap();
            let status = r.status().as_u16();
            let retry_after = r.headers().get("retry-after").is_some();
            (status, retry_after)
        }));
    }
    let mut results = Vec::new();
    for t in tasks {
        results.push(t.await.unwrap());
    }
    let ok = results.iter().filter(|(s, _)| *s == 200).count();
    let limited: Vec<_> = results.iter().filter(|(s, _)| *s == 429).collect();
    println!("capacity: {ok} served, {} got 429", limited.len());
    assert_eq!(ok, 8, "4 per replica");
    assert_eq!(limited.len(), 4);
    assert!(limited.iter().all(|(_, ra)| *ra), "429 carries Retry-After");
    assert!(h.mock(0).max_in_flight("/v1/chat/completions") <= 4);
    assert!(h.mock(1).max_in_flight("/v1/chat/completions") <= 4);
    assert_eq!(
        h.mock(0).max_in_flight("/v1/chat/completions")
            + h.mock(1).max_in_flight("/v1/chat/completions"),
        8
    );
}

#[tokio::test]
async fn queued_requests_are_served_when_capacity_frees_in_time() {
    let tail = "[routing]\nqueue_timeout = \"3s\"\n";
    let h = Harness::start(
        1,
        &config(1, "priority", &["max_concurrency = 2"], "", tail),
    )
    .await;
    h.fault(0, json!({"latency_ms": 200}));
    let mut tasks = Vec::new();
    for _ in 0..6 {
        let client = h.client.clone();
        let url = h.url("/v1/chat/completions");
        tasks.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&hello("chat"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    assert!(h.mock(0).max_in_flight("/v1/chat/completions") <= 2);
}

#[tokio::test]
async fn deployments_in_the_preferred_region_go_first() {
    let extra = ["region = \"us\"", "region = \"eu\"", "region = \"us\""];
    let tail = "[routing]\nregion = \"eu\"\n";
    let h = Harness::start(3, &config(3, "priority", &extra, "", tail)).await;
    for _ in 0..5 {
        assert_eq!(served(&h.chat(&hello("chat")).await), "d1");
    }
    h.fault(1, json!({"status": 500}));
    assert_eq!(
        served(&h.chat(&hello("chat")).await),
        "d0",
        "then the others, in strategy order"
    );
}

#[tokio::test]
async fn admin_routes_explains_the_plan() {
    let extra = [
        "context_window = 1000\nregion = \"eu\"",
        "context_window = 200000",
    ];
    let tail = "[routing]\nregion = \"eu\"\n";
    let h = Harness::start(2, &config(2, "cheapest", &extra, "fallbacks = []", tail)).await;
    h.fault(1, json!({"status": 500}));
    for _ in 0..5 {
        h.chat(&hello("chat")).await;
    }
    let body: serde_json::Value = h
        .client
        .get(h.url("/admin/routes?model=chat"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let model = &body["models"][0];
    assert_eq!(model["model"], "chat");
    assert_eq!(model["strategy"], "cheapest");
    let order = model["order"].as_array().unwrap();
    assert_eq!(order[0]["deployment"], "d0");
    assert_eq!(order[0]["placement"], "preferred region");
    assert!(
        order[0]["reason"].as_str().unwrap().starts_with("cheapest"),
        "{body}"
    );
    let unknown = h
        .client
        .get(h.url("/admin/routes?model=nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}
