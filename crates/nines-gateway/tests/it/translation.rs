//! Faithful translation over real HTTP: each parameter maps to the upstream's own feature, or
//! the deployment is skipped before the attempt (the 400 or the plan names why), or — only on a
//! deployment marked `drop_unsupported_params` — it is removed and named in
//! `x-nines-dropped-params`. The mocks check what the real services check (Anthropic refuses
//! unknown fields and thinking it cannot do), so a wrong mapping fails here.

use crate::harness::{Harness, error_of, sse_data};
use serde_json::{Value, json};

fn upstreams() -> &'static str {
    r#"
[server]
listen = "127.0.0.1:0"

[resilience.probes]
enabled = false

[[deployments]]
name = "oai"
provider = "openai-compatible"
model = "oai-up"
base_url = "{mock0}"

[[deployments]]
name = "claude"
provider = "anthropic"
model = "claude-up"
base_url = "{mock1}"
api_keys = ["env:TEST_KEY"]

[[deployments]]
name = "claude-lenient"
provider = "anthropic"
model = "claude-up"
base_url = "{mock1}"
api_keys = ["env:TEST_KEY"]
drop_unsupported_params = true

[[deployments]]
name = "gem"
provider = "gemini"
model = "gemini-up"
base_url = "{mock2_root}"
api_keys = ["env:TEST_KEY"]

[[deployments]]
name = "strict"
provider = "openai"
model = "gpt-up"
base_url = "{mock3}"
api_keys = ["env:TEST_KEY"]

[[models]]
name = "claude"
deployments = ["claude"]

[[models]]
name = "claude-then-oai"
deployments = ["claude", "oai"]

[[models]]
name = "lenient"
deployments = ["claude-lenient"]

[[models]]
name = "gem"
deployments = ["gem"]

[[models]]
name = "oai"
deployments = ["oai"]

[[models]]
name = "strict"
deployments = ["strict"]
"#
}

fn ask(model: &str, extra: Value) -> Value {
    let mut body =
        json!({"model": model, "messages": [{"role": "user", "content": "Hello there"}]});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    body
}

/// The body mock `i` received last on `route`.
fn sent(h: &Harness, i: usize, route: &str) -> Value {
    let requests = h.mock(i).requests();
    let request = requests
        .iter()
        .rev()
        .find(|r| r.route == route)
        .unwrap_or_else(|| panic!("mock{i} got nothing on {route}"));
    serde_json::from_str(&request.body).unwrap()
}

const MESSAGES: &str = "/v1/messages";
const GENERATE: &str = "/v1beta/models/{model}:generateContent";

#[tokio::test]
async fn json_object_and_json_schema_reach_anthropic_as_a_forced_tool() {
    let h = Harness::start(4, upstreams()).await;
    let r = h
        .chat(&ask(
            "claude",
            json!({"response_format": {"type": "json_object"}}),
        ))
        .await;
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let choice = &body["choices"][0];
    assert_eq!(choice["message"]["content"], r#"{"mock":true}"#, "{body}");
    assert!(choice["message"].get("tool_calls").is_none(), "{body}");
    assert_eq!(choice["finish_reason"], "stop");
    let up = sent(&h, 1, MESSAGES);
    assert_eq!(
        up["tool_choice"],
        json!({"type": "tool", "name": "json_response"})
    );
    assert_eq!(up["tools"][0]["name"], "json_response");
    assert_eq!(up["tools"][0]["input_schema"]["type"], "object");

    let schema = json!({"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]});
    let r = h
        .chat(&ask(
            "claude",
            json!({"response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}}),
        ))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(sent(&h, 1, MESSAGES)["tools"][0]["input_schema"], schema);
}

#[tokio::test]
async fn a_streamed_json_answer_from_anthropic_is_text() {
    let h = Harness::start(4, upstreams()).await;
    let r = h
        .chat(&ask(
            "claude",
            json!({"stream": true, "response_format": {"type": "json_object"}}),
        ))
        .await;
    assert_eq!(r.status(), 200);
    let data = sse_data(r).await;
    let chunks: Vec<Value> = data
        .iter()
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, r#"{"mock":true}"#);
    assert!(
        chunks
            .iter()
            .all(|c| c["choices"][0]["delta"].get("tool_calls").is_none()),
        "{data:?}"
    );
    assert!(
        chunks
            .iter()
            .any(|c| c["choices"][0]["finish_reason"] == "stop")
    );
}

#[tokio::test]
async fn reasoning_effort_becomes_a_thinking_budget_and_back() {
    let h = Harness::start(4, upstreams()).await;
    // OpenAI client → Anthropic: a budget, max_tokens raised above it (the mock checks both).
    let r = h
        .chat(&ask(
            "claude",
            json!({"reasoning_effort": "high", "max_tokens": 300}),
        ))
        .await;
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let up = sent(&h, 1, MESSAGES);
    assert_eq!(
        up["thinking"],
        json!({"type": "enabled", "budget_tokens": 16384})
    );
    assert_eq!(up["max_tokens"], 16384 + 300);
    // → Gemini: thinkingConfig.
    let r = h
        .chat(&ask("gem", json!({"reasoning_effort": "medium"})))
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        sent(&h, 2, GENERATE)["generationConfig"]["thinkingConfig"],
        json!({"thinkingBudget": 8192})
    );
    // Anthropic client → OpenAI-compatible: an effort.
    let r = h
        .post_json(
            "/v1/messages",
            &json!({"model": "oai", "max_tokens": 8000,
                    "thinking": {"type": "enabled", "budget_tokens": 5000},
                    "messages": [{"role": "user", "content": "think"}]}),
        )
        .await;
    assert_eq!(r.status(), 200);
    assert_eq!(
        sent(&h, 0, "/v1/chat/completions")["reasoning_effort"],
        "medium"
    );
}

#[tokio::test]
async fn reasoning_anthropic_cannot_do_skips_it_before_the_attempt() {
    let h = Harness::start(4, upstreams()).await;
    // Thinking with a temperature other than 1: Anthropic refuses it, so it is not asked.
    let body = ask(
        "claude-then-oai",
        json!({"reasoning_effort": "low", "temperature": 0.2}),
    );
    let r = h.chat(&body).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "oai");
    assert_eq!(h.mock(1).hits(MESSAGES), 0);
    let r = h
        .chat(&ask(
            "claude",
            json!({"reasoning_effort": "low", "tool_choice": "required",
                   "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]}),
        ))
        .await;
    assert_eq!(r.status(), 400);
    let error = error_of(r).await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("reasoning_with_forced_tool"),
        "{error}"
    );
    assert_eq!(h.mock(1).hits(MESSAGES), 0);
}

#[tokio::test]
async fn seed_and_penalties_skip_anthropic_and_map_to_gemini() {
    let h = Harness::start(4, upstreams()).await;
    let extra = json!({"seed": 7, "presence_penalty": 0.5, "frequency_penalty": 0});
    let r = h.chat(&ask("claude-then-oai", extra.clone())).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "oai");
    assert_eq!(
        h.mock(1).hits(MESSAGES),
        0,
        "Anthropic was skipped, not tried"
    );
    let up = sent(&h, 0, "/v1/chat/completions");
    assert_eq!(
        (up["seed"].clone(), up["presence_penalty"].clone()),
        (json!(7), json!(0.5))
    );

    let r = h.chat(&ask("claude", extra.clone())).await;
    assert_eq!(r.status(), 400);
    let message = error_of(r).await["message"].as_str().unwrap().to_owned();
    assert!(
        message.contains("seed") && message.contains("penalties"),
        "{message}"
    );

    let r = h.chat(&ask("gem", extra)).await;
    assert_eq!(r.status(), 200);
    let config = &sent(&h, 2, GENERATE)["generationConfig"];
    assert_eq!(config["seed"], 7);
    assert_eq!(config["presencePenalty"], 0.5);
}

#[tokio::test]
async fn a_lenient_deployment_drops_what_it_cannot_take_and_says_so() {
    let h = Harness::start(4, upstreams()).await;
    let r = h
        .chat(&ask(
            "lenient",
            json!({"seed": 7, "presence_penalty": 0.5, "logit_bias": {"1": 2}, "temperature": 0.3}),
        ))
        .await;
    assert_eq!(r.status(), 200);
    let dropped = r.headers()["x-nines-dropped-params"]
        .to_str()
        .unwrap()
        .to_owned();
    for name in ["seed", "presence_penalty", "logit_bias"] {
        assert!(dropped.contains(name), "{dropped}");
    }
    // What it can take still goes (the mock refuses any field Anthropic does not have).
    let up = sent(&h, 1, MESSAGES);
    assert_eq!(up["temperature"], 0.3);
    assert!(up.get("seed").is_none());
    // Nothing to drop: no header.
    let r = h.chat(&ask("lenient", json!({}))).await;
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("x-nines-dropped-params").is_none());
}

#[tokio::test]
async fn top_k_maps_where_the_upstream_has_it() {
    let h = Harness::start(4, upstreams()).await;
    let r = h.chat(&ask("claude", json!({"top_k": 40}))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(sent(&h, 1, MESSAGES)["top_k"], 40);
    let r = h.chat(&ask("gem", json!({"top_k": 40}))).await;
    assert_eq!(r.status(), 200);
    assert_eq!(sent(&h, 2, GENERATE)["generationConfig"]["topK"], 40);
    // An Anthropic client's top_k: an OpenAI-compatible server takes it, OpenAI's API does not.
    let anthropic = |model: &str| {
        json!({"model": model, "max_tokens": 50, "top_k": 5,
               "messages": [{"role": "user", "content": "hi"}]})
    };
    let r = h.post_json("/v1/messages", &anthropic("oai")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(sent(&h, 0, "/v1/chat/completions")["top_k"], 5);
    let r = h.post_json("/v1/messages", &anthropic("strict")).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("top_k"),
        "{body}"
    );
    assert_eq!(h.mock(3).total_hits(), 0);
}

#[tokio::test]
async fn anthropic_answers_carry_msg_ids_whoever_served() {
    let h = Harness::start(4, upstreams()).await;
    let body = json!({"model": "oai", "max_tokens": 50,
                      "messages": [{"role": "user", "content": "hi"}]});
    let r = h.post_json("/v1/messages", &body).await;
    assert_eq!(r.status(), 200);
    let answer: Value = r.json().await.unwrap();
    assert!(
        answer["id"].as_str().unwrap().starts_with("msg_"),
        "{answer}"
    );
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let r = h.post_json("/v1/messages", &streamed).await;
    let data = sse_data(r).await;
    let start: Value = serde_json::from_str(&data[0]).unwrap();
    assert_eq!(start["type"], "message_start");
    assert!(
        start["message"]["id"].as_str().unwrap().starts_with("msg_"),
        "{start}"
    );
}

#[tokio::test]
async fn fields_only_one_dialect_has_stay_with_it() {
    let h = Harness::start(4, upstreams()).await;
    // An Anthropic-only field: an Anthropic deployment takes the bytes; nothing else can.
    let body = |model: &str| {
        json!({"model": model, "max_tokens": 50, "service_tier": "auto",
               "messages": [{"role": "user", "content": "hi"}]})
    };
    let r = h.post_json("/v1/messages", &body("claude-then-oai")).await;
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], "claude");
    assert_eq!(sent(&h, 1, MESSAGES)["service_tier"], "auto");
    let r = h.post_json("/v1/messages", &body("oai")).await;
    assert_eq!(r.status(), 400);
    let error: Value = r.json().await.unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("service_tier"),
        "{error}"
    );
    // An OpenAI-only parameter: named when nothing can take it; a hint is not a parameter.
    let r = h
        .chat(&ask("claude", json!({"logit_bias": {"1": 2}})))
        .await;
    assert_eq!(r.status(), 400);
    let error = error_of(r).await;
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("openai_only_params (logit_bias)"),
        "{error}"
    );
    let r = h.chat(&ask("claude", json!({"store": false}))).await;
    assert_eq!(r.status(), 200);
    assert!(sent(&h, 1, MESSAGES).get("store").is_none());
}
