//! Cross-dialect serving over real HTTP: OpenAI clients served by Anthropic upstreams and the
//! other way round, capability filtering, and failover across dialects.

use crate::harness::{Harness, error_of, hello, sse_data};
use serde_json::{Value, json};

/// d0: OpenAI-compatible on mock0; d1: Anthropic on mock1; both in model `chat`; plus `claude`
/// (Anthropic only) and `oai` (OpenAI-compatible only).
fn mixed() -> String {
    r#"
[server]
listen = "127.0.0.1:0"

[resilience.probes]
enabled = false

[[deployments]]
name = "d0"
provider = "openai-compatible"
model = "gpt-up"
base_url = "{mock0}"
api_keys = ["env:TEST_KEY"]

[[deployments]]
name = "d1"
provider = "anthropic"
model = "claude-up"
base_url = "{mock1}"
api_keys = ["env:TEST_KEY_2"]

[[models]]
name = "chat"
deployments = ["d0", "d1"]

[[models]]
name = "claude"
deployments = ["d1"]

[[models]]
name = "oai"
deployments = ["d0"]
"#
    .to_owned()
}

#[tokio::test]
async fn openai_client_fails_over_to_anthropic_non_streaming() {
    let h = Harness::start(2, &mixed()).await;
    h.fault(0, json!({"status": 503}));
    let r = h.chat(&hello("chat")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "d1");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert!(
        body["choices"][0]["message"]["content"]
            .as_str()
            .unwrap()
            .starts_with("Hello from mock1!"),
        "{body}"
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        body["model"], "claude-up",
        "the model that actually answered"
    );
    assert!(body["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    // The Anthropic upstream got an Anthropic request with its own auth.
    let req = h
        .mock(1)
        .requests()
        .into_iter()
        .find(|r| r.route == "/v1/messages")
        .unwrap();
    assert!(
        req.headers
            .iter()
            .any(|(k, v)| k == "x-api-key" && v == "sk-upstream-secret-0002")
    );
    assert!(req.headers.iter().any(|(k, _)| k == "anthropic-version"));
    let sent: Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(sent["model"], "claude-up");
    assert!(
        sent["max_tokens"].as_u64().is_some(),
        "a default max_tokens is supplied"
    );
}

#[tokio::test]
async fn openai_client_streams_from_anthropic_when_openai_is_down() {
    let h = Harness::start(2, &mixed()).await;
    h.fault(0, json!({"status": 500}));
    let mut body = hello("chat");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = h.chat(&body).await;
    assert_eq!(r.headers()["x-nines-deployment"], "d1");
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let data = sse_data(r).await;
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk"),
        "{chunks:?}"
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(text.starts_with("Hello from mock1!"), "{text}");
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop")
    );
    assert!(chunks.iter().any(|c| {
        c["usage"]["completion_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0)
    }));
}

#[tokio::test]
async fn openai_tool_calls_are_translated_from_anthropic() {
    let h = Harness::start(2, &mixed()).await;
    let body = json!({
        "model": "claude",
        "messages": [{"role": "user", "content": "weather?"}],
        "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]
    });
    let reply: Value = h.chat(&body).await.json().await.unwrap();
    assert_eq!(
        reply["choices"][0]["finish_reason"], "tool_calls",
        "{reply}"
    );
    let call = &reply["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args["mock"], true);
}

#[tokio::test]
async fn anthropic_client_is_served_by_openai_upstream() {
    let h = Harness::start(2, &mixed()).await;
    let body = json!({"model": "oai", "max_tokens": 64, "system": "be brief", "messages": [{"role": "user", "content": "Hello there"}]});
    let r = h.post_json("/v1/messages", &body).await;
    assert_eq!(r.status(), 200);
    let reply: Value = r.json().await.unwrap();
    assert_eq!(reply["type"], "message", "{reply}");
    assert_eq!(reply["role"], "assistant");
    assert!(
        reply["content"][0]["text"]
            .as_str()
            .unwrap()
            .starts_with("Hello from mock0!")
    );
    assert_eq!(reply["stop_reason"], "end_turn");
    let sent: Value = serde_json::from_str(&h.mock(0).requests()[0].body).unwrap();
    assert_eq!(
        sent["messages"][0]["role"], "system",
        "Anthropic system became an OpenAI system message"
    );

    let mut stream = body.clone();
    stream["stream"] = json!(true);
    let r = h.post_json("/v1/messages", &stream).await;
    let text = r.text().await.unwrap();
    let events: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(events.first(), Some(&"message_start"), "{text}");
    assert_eq!(events.last(), Some(&"message_stop"), "{text}");
    assert!(events.contains(&"content_block_delta"));
}

#[tokio::test]
async fn anthropic_to_anthropic_passes_the_body_through() {
    let h = Harness::start(2, &mixed()).await;
    let raw = r#"{"model":"claude","max_tokens":32,"top_k":5,"messages":[{"role":"user","content":"Hello there"}]}"#;
    let r = h
        .client
        .post(h.url("/v1/messages"))
        .header("content-type", "application/json")
        .body(raw)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let recorded = h.mock(1).requests();
    assert_eq!(
        recorded[0].body,
        raw.replace(r#""model":"claude""#, r#""model":"claude-up""#),
        "Anthropic-only fields survive"
    );
}

#[tokio::test]
async fn anthropic_errors_come_back_anthropic_shaped() {
    let h = Harness::start(2, &mixed()).await;
    let r = h
        .post_json(
            "/v1/messages",
            &json!({"model": "nope", "max_tokens": 5, "messages": []}),
        )
        .await;
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not exist")
    );
    let r = h
        .client
        .post(h.url("/v1/messages"))
        .body("{oops")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.unwrap()["error"]["type"],
        "invalid_request_error"
    );
}

#[tokio::test]
async fn a_request_no_deployment_can_honour_is_a_400_naming_the_capability() {
    let h = Harness::start(2, &mixed()).await;
    let mut body = hello("claude");
    body["n"] = json!(3);
    let r = h.chat(&body).await;
    assert_eq!(r.status(), 400);
    let error = error_of(r).await;
    assert_eq!(error["code"], "unsupported_capability");
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("multiple_choices"),
        "{error}"
    );
    assert_eq!(h.mock(1).total_hits(), 0);
    // In a mixed model, the deployment that can serve it does.
    let mut body = hello("chat");
    body["n"] = json!(2);
    let r = h.chat(&body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "d0");
}

#[tokio::test]
async fn anthropic_overload_fails_over_to_openai() {
    let template = mixed().replace(
        "deployments = [\"d0\", \"d1\"]",
        "deployments = [\"d1\", \"d0\"]",
    );
    let h = Harness::start(2, &template).await;
    h.fault(1, json!({"status": 529}));
    let r = h.chat(&hello("chat")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "d0");
    assert_eq!(h.mock(1).hits("/v1/messages"), 1);
}

#[tokio::test]
async fn embeddings_fail_over_from_openai_to_gemini_of_the_same_family() {
    let text = r#"
[server]
listen = "127.0.0.1:0"

[resilience.probes]
enabled = false

[[deployments]]
name = "oai-embed"
provider = "openai-compatible"
model = "text-embedding-x"
base_url = "{mock0}"
embedding_family = "family-8"

[[deployments]]
name = "gem-embed"
provider = "gemini"
model = "text-embedding-004"
base_url = "{mock1_root}"
api_keys = ["env:TEST_KEY"]
embedding_family = "family-8"

[[models]]
name = "embed"
deployments = ["oai-embed", "gem-embed"]
"#;
    let h = Harness::start(2, text).await;
    h.fault(0, json!({"status": 503}));
    let r = h
        .post_json(
            "/v1/embeddings",
            &json!({"model": "embed", "input": ["one", "two"], "dimensions": 8}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "gem-embed");
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "list");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    assert_eq!(data[0]["embedding"].as_array().unwrap().len(), 8);
    let req = h
        .mock(1)
        .requests()
        .into_iter()
        .find(|r| r.route.contains("batchEmbedContents"))
        .unwrap();
    assert!(req.headers.iter().any(|(k, _)| k == "x-goog-api-key"));
}
