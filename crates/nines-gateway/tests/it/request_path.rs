//! Regressions of the request path's seams (issue 13): each failed before the request got one
//! context and one end, one attempt function, and one place for each decision.

use crate::harness::{Harness, chain, eventually, hello, sse_data};
use crate::metrics::scrape;
use crate::status_page::route;
use serde_json::{Value, json};
use std::time::Duration;

/// `chain(n)` with `extra` lines added to deployment `d{i}`.
fn with_deployment_lines(template: &str, i: usize, extra: &str) -> String {
    template.replace(
        &format!("name = \"d{i}\"\n"),
        &format!("name = \"d{i}\"\n{extra}\n"),
    )
}

/// Defect 1: a capacity refusal reached the client as 429 but was logged, counted and put in
/// the availability ledger as a 503, the gateway failing.
#[tokio::test]
async fn a_capacity_refusal_is_recorded_as_the_429_the_client_got() {
    let template = format!(
        "{}\n[routing]\nqueue_timeout = \"100ms\"\n",
        with_deployment_lines(&chain(1), 0, "max_concurrency = 1")
    );
    let h = Harness::start(1, &template).await;
    h.fault(0, json!({"latency_ms": 1500}));
    let holder = {
        let client = h.client.clone();
        let url = h.url("/v1/chat/completions");
        tokio::spawn(async move { client.post(url).json(&hello("chat")).send().await })
    };
    eventually(Duration::from_secs(5), || h.chat_hits(0) == 1).await;
    let refused = h.chat(&hello("chat")).await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["x-nines-attempts"], "0");
    assert_eq!(holder.await.unwrap().unwrap().status(), 200);

    let m = scrape(&h).await;
    let requests = |code: &str| m.sum("nines_requests_total", &[("model", "chat"), ("code", code)]);
    assert_eq!(requests("429"), 1.0, "{}", m.text);
    assert_eq!(requests("503"), 0.0, "{}", m.text);
    assert_eq!(
        m.get(
            "nines_requests_total",
            &[
                ("model", "chat"),
                ("deployment", ""),
                ("provider", ""),
                ("endpoint", "chat_completions"),
                ("code", "429"),
                ("outcome", "at_capacity"),
            ]
        ),
        1.0
    );
    // The ledger counts what the gateway served or failed: the refusal was neither (before, it
    // was a failed request: 2 requests, 1 failure).
    let status = h.get_json("/status.json", None).await;
    let chat = &route(&status, "chat")["availability"]["1h"];
    assert_eq!(chat["requests"], 1, "{chat}");
    assert_eq!(chat["failures"], 0, "{chat}");
}

/// Defect 2: a request that made attempts and then found nothing more it could try (here: the
/// retry budget spent) said `x-nines-attempts: 0`.
#[tokio::test]
async fn an_unavailable_answer_counts_the_attempts_made() {
    let template = format!(
        "{}\n[resilience.retry_budget]\nratio = 0.0\nmin_per_second = 0.0\n",
        chain(2)
    );
    let h = Harness::start(2, &template).await;
    h.fault(0, json!({"status": 500}));
    let r = h.chat(&hello("chat")).await;
    assert_eq!(r.status(), 503);
    assert_eq!(r.headers()["x-nines-attempts"], "1");
    let error: Value = r.json().await.unwrap();
    assert_eq!(error["error"]["code"], "retry_budget_exhausted", "{error}");
    assert_eq!((h.chat_hits(0), h.chat_hits(1)), (1, 0));
    let m = scrape(&h).await;
    assert_eq!(
        m.sum("nines_request_attempts_sum", &[("model", "chat")]),
        1.0,
        "{}",
        m.text
    );
}

/// Defect 3: a translated 200 whose body was JSON but not its dialect's shape counted as a
/// success for the breaker, then reached the client as a 502 with no other deployment tried.
#[tokio::test]
async fn an_answer_that_does_not_decode_fails_over_before_the_commit_point() {
    let template = r#"
[server]
listen = "127.0.0.1:0"

[resilience.probes]
enabled = false

[[deployments]]
name = "claude"
provider = "anthropic"
model = "claude-up"
base_url = "{mock0}"
api_keys = ["env:TEST_KEY"]

[[deployments]]
name = "gemini"
provider = "gemini"
model = "gemini-up"
base_url = "{mock1_root}"
api_keys = ["env:TEST_KEY"]

[[deployments]]
name = "oai"
provider = "openai-compatible"
model = "gpt-up"
base_url = "{mock2}"
api_keys = ["env:TEST_KEY"]

[[models]]
name = "chat"
deployments = ["claude", "gemini", "oai"]
"#;
    let h = Harness::start(3, template).await;
    // JSON, status 200, but no `content` (Anthropic) and `candidates` not a list (Gemini).
    h.fault(
        0,
        json!({"body": r#"{"type":"message","id":"msg_1","role":"assistant"}"#}),
    );
    h.fault(1, json!({"body": r#"{"candidates":{"not":"a list"}}"#}));
    let r = h.chat(&hello("chat")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "oai");
    assert_eq!(r.headers()["x-nines-attempts"], "3");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion", "{body}");
    let m = scrape(&h).await;
    for deployment in ["claude", "gemini"] {
        assert_eq!(
            m.sum(
                "nines_upstream_attempts_total",
                &[("deployment", deployment), ("class", "malformed")]
            ),
            1.0,
            "{deployment}: {}",
            m.text
        );
    }
}

/// Defect 4: one `Retry-After: 86400` took a key slot out for a day. The hint is honoured at
/// most `resilience.max_retry_after`, and the attempt trail keeps the provider's own value.
#[tokio::test]
async fn a_retry_after_hint_is_clamped_and_kept_in_the_trail() {
    let template = format!(
        "{}\n[resilience]\nmax_retry_after = \"5s\"\n\n[auth]\nenabled = false\nadmin_key = \"sk-path-admin\"\n\n[store]\ndatabase_url = \"sqlite::memory:\"\nflush_interval = \"20ms\"\nrequest_records = \"all\"\n",
        chain(1)
    );
    let h = Harness::start_opened(1, &template).await;
    h.fault(
        0,
        json!({"status": 429, "retry_after": "86400", "times": 1}),
    );
    // The deadline leaves no room to wait for the slot: the request ends with what it got.
    let send = || {
        h.client
            .post(h.url("/v1/chat/completions"))
            .header("x-nines-timeout", "1s")
            .json(&hello("chat"))
            .send()
    };
    let first = send().await.unwrap();
    assert_eq!(first.status(), 502);
    // The slot is out for the clamped 5 s, not a day: the next request is told so.
    let second = send().await.unwrap();
    assert_eq!(second.status(), 503);
    assert_eq!(h.chat_hits(0), 1, "the open slot was not called");
    let wait_ms: u64 = second.headers()["retry-after-ms"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    // Clamped to 5 s (not a day); a loaded machine may take a while between the two requests.
    assert!((2000..=5000).contains(&wait_ms), "{wait_ms} ms");

    // The first request's usage record keeps the provider's own hint.
    let mut trail = String::new();
    for _ in 0..250 {
        let listed = h.get_json("/admin/usage", Some("sk-path-admin")).await;
        if let Some(record) = listed["data"]
            .as_array()
            .and_then(|records| records.iter().find(|r| r["status"] == 502))
        {
            trail = record["attempt_trail"].as_str().unwrap().to_owned();
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        trail.starts_with("d0#0 rate_limited 429 ") && trail.ends_with(" retry-after=86400s"),
        "{trail:?}"
    );
}

/// Defect 5: a client timeout too large for a `Duration` panicked the handler (a 500 with no
/// log line), before authentication.
#[tokio::test]
async fn a_huge_client_timeout_neither_panics_nor_shortens_anything() {
    let h = Harness::start(1, &chain(1)).await;
    for (header, value) in [
        ("x-nines-timeout", "1e308"),
        ("x-stainless-timeout", "1e300"),
        ("x-nines-timeout", "-5"),
        ("x-stainless-timeout", "NaN"),
    ] {
        let r = h
            .client
            .post(h.url("/v1/chat/completions"))
            .header(header, value)
            .json(&hello("chat"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{header}: {value}");
    }
}

/// Defect 6: `resume_streams` was refused unless one of the model's own deployments had
/// assistant prefill, while at run time a continuation may go to any later deployment of the
/// plan, the fallback models' included (now any deployment may continue: prefilled or replayed).
#[tokio::test]
async fn a_stream_resumes_on_a_fallback_models_prefill_deployment() {
    let template = chain(2)
        .replace(
            "name = \"d1\"\n",
            "name = \"d1\"\nassistant_prefill = true\n",
        )
        .replace(
            "\n[[models]]\nname = \"chat\"\ndeployments = [\"d0\", \"d1\"]\n",
            "\n[[models]]\nname = \"chat\"\ndeployments = [\"d0\"]\nresume_streams = true\nfallbacks = [\"backup\"]\n\n[[models]]\nname = \"backup\"\ndeployments = [\"d1\"]\n",
        );
    assert!(template.contains("fallbacks = [\"backup\"]"), "{template}");
    let h = Harness::start_named(&["mock", "mock"], &template).await;
    h.fault(0, json!({"reset_after_chunks": 3, "chunk_delay_ms": 50}));
    let mut body = hello("chat");
    body["stream"] = json!(true);
    let r = h.chat(&body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "d0");
    let data = sse_data(r).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let text: String = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "Hello from mock! You said: Hello there");
    assert_eq!((h.chat_hits(0), h.chat_hits(1)), (1, 1));
}
