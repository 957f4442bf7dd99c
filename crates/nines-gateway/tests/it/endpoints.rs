//! The legacy completions endpoint, Anthropic's `count_tokens`, `max_tokens` on `/v1/messages`,
//! and the 404 that lists every endpoint — over real HTTP against the mocks.

use crate::harness::{Harness, error_of, sse_data};
use serde_json::{Value, json};

/// d0, d1: OpenAI-compatible on mock0, mock1; c: Anthropic on mock2. `text` = [d0, d1];
/// `mixed` = [c, d1]; `claude` = [c].
fn three() -> &'static str {
    r#"
[server]
listen = "127.0.0.1:0"

[resilience.probes]
enabled = false

[[deployments]]
name = "d0"
provider = "openai-compatible"
model = "text-up-0"
base_url = "{mock0}"

[[deployments]]
name = "d1"
provider = "openai-compatible"
model = "text-up-1"
base_url = "{mock1}"

[[deployments]]
name = "c"
provider = "anthropic"
model = "claude-up"
base_url = "{mock2}"
api_keys = ["env:TEST_KEY"]

[[models]]
name = "text"
deployments = ["d0", "d1"]

[[models]]
name = "mixed"
deployments = ["c", "d1"]

[[models]]
name = "claude"
deployments = ["c"]
"#
}

#[tokio::test]
async fn legacy_completions_fail_over_and_report_usage() {
    let h = Harness::start(3, three()).await;
    h.fault(0, json!({"status": 503}));
    let r = h
        .post_json(
            "/v1/completions",
            &json!({"model": "text", "prompt": "Say this is a test", "max_tokens": 50}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "d1");
    assert_eq!(r.headers()["x-nines-attempts"], "2");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["model"], "text-up-1", "the model spliced in");
    assert!(
        body["choices"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Hello from mock1! You said: Say this is a test"),
        "{body}"
    );
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    assert_eq!(h.mock(0).hits("/v1/completions"), 1);
    assert_eq!(h.mock(1).hits("/v1/completions"), 1);
    // The body went through as the client sent it, bar the model.
    let sent = h.mock(1).requests();
    let sent: Value = serde_json::from_str(
        &sent
            .iter()
            .find(|r| r.route == "/v1/completions")
            .unwrap()
            .body,
    )
    .unwrap();
    assert_eq!(
        sent,
        json!({"model": "text-up-1", "prompt": "Say this is a test", "max_tokens": 50})
    );
}

#[tokio::test]
async fn legacy_completions_stream_with_usage() {
    let h = Harness::start(3, three()).await;
    let r = h
        .post_json(
            "/v1/completions",
            &json!({"model": "text", "prompt": "Stream me", "stream": true,
                    "stream_options": {"include_usage": true}}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let data = sse_data(r).await;
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    // max_tokens defaults to 16 at the API: the reply is cut there.
    assert!(
        text.starts_with("Hello from mock0! You said: Stream me"),
        "{text}"
    );
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop")
    );
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"], json!([]));
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn legacy_completions_go_only_to_openai_family_deployments() {
    let h = Harness::start(3, three()).await;
    let r = h
        .post_json(
            "/v1/completions",
            &json!({"model": "mixed", "prompt": "hi"}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "d1");
    assert_eq!(
        h.mock(2).hits("/v1/messages"),
        0,
        "Anthropic is never tried"
    );

    let r = h
        .post_json(
            "/v1/completions",
            &json!({"model": "claude", "prompt": "hi"}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let error = error_of(r).await;
    assert!(
        error["message"].as_str().unwrap().contains("completions"),
        "{error}"
    );

    let r = h
        .post_json("/v1/completions", &json!({"model": "text"}))
        .await;
    assert_eq!(r.status(), 400);
    assert_eq!(error_of(r).await["param"], "prompt");
    assert_eq!(h.mock(0).hits("/v1/completions"), 0);
}

fn count_body(model: &str) -> Value {
    json!({
        "model": model,
        "system": "Be brief.",
        "messages": [{"role": "user", "content": "How many tokens is this?"}],
    })
}

#[tokio::test]
async fn count_tokens_is_forwarded_to_anthropic_deployments() {
    let h = Harness::start(3, three()).await;
    let r = h
        .post_json("/v1/messages/count_tokens", &count_body("mixed"))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "c");
    assert!(r.headers().get("x-nines-token-count").is_none());
    let body: Value = r.json().await.unwrap();
    // The mock's count: ceil(9/4)+3 for the system prompt, ceil(24/4)+3 for the message.
    assert_eq!(body, json!({"input_tokens": 15}));
    let sent = h.mock(2).requests();
    let sent = sent
        .iter()
        .find(|r| r.route == "/v1/messages/count_tokens")
        .unwrap();
    assert!(
        sent.headers
            .iter()
            .any(|(k, v)| k == "x-api-key" && v == "sk-upstream-secret-0001")
    );
    let sent: Value = serde_json::from_str(&sent.body).unwrap();
    assert_eq!(sent["model"], "claude-up");
    assert_eq!(h.mock(1).hits("/v1/chat/completions"), 0);
}

#[tokio::test]
async fn count_tokens_is_estimated_locally_without_an_anthropic_deployment() {
    let h = Harness::start(3, three()).await;
    let body = count_body("text");
    let r = h.post_json("/v1/messages/count_tokens", &body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-nines-token-count"],
        "estimate; tokenizer=o200k"
    );
    assert!(r.headers().get("x-nines-deployment").is_none());
    assert_eq!(r.headers()["x-nines-attempts"], "0");
    let counted: Value = r.json().await.unwrap();
    let chat =
        nines_protocol::anthropic::parse_request(&serde_json::to_vec(&body).unwrap()).unwrap();
    let expected = nines_gateway::router::tokens::count_chat(&chat);
    assert_eq!(counted, json!({ "input_tokens": expected }));
    assert!(expected > 3, "the text is counted: {expected}");
    for i in 0..3 {
        assert_eq!(h.mock(i).total_hits(), 0, "no upstream was asked");
    }
}

#[tokio::test]
async fn count_tokens_falls_back_to_an_estimate_when_anthropic_fails() {
    let h = Harness::start(3, three()).await;
    h.fault(2, json!({"status": 529}));
    let r = h
        .post_json("/v1/messages/count_tokens", &count_body("claude"))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["x-nines-token-count"],
        "estimate; tokenizer=o200k"
    );
    assert!(h.mock(2).hits("/v1/messages/count_tokens") >= 1);
    // A request Anthropic itself refuses is relayed, not estimated.
    h.mock(2).set_fault(None);
    let r = h
        .post_json(
            "/v1/messages/count_tokens",
            &json!({"model": "claude", "messages": []}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "error", "Anthropic-shaped: {body}");
}

#[tokio::test]
async fn messages_require_max_tokens_as_anthropic_does() {
    let h = Harness::start(3, three()).await;
    let r = h
        .post_json(
            "/v1/messages",
            &json!({"model": "text", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max_tokens"),
        "{body}"
    );
    assert_eq!(h.mock(0).hits("/v1/chat/completions"), 0);
}

#[tokio::test]
async fn an_unknown_path_lists_every_endpoint() {
    let h = Harness::start(3, three()).await;
    let r = h.post_json("/v1/respond", &json!({})).await;
    assert_eq!(r.status(), 404);
    let error = error_of(r).await;
    let message = error["message"].as_str().unwrap();
    for endpoint in [
        "POST /v1/chat/completions",
        "POST /v1/completions",
        "POST /v1/embeddings",
        "GET /v1/models",
        "POST /v1/messages",
        "POST /v1/messages/count_tokens",
        "POST /v1/videos",
    ] {
        assert!(message.contains(endpoint), "{endpoint} missing: {message}");
    }
    assert!(message.starts_with("Unknown request URL: POST /v1/respond."));
}
