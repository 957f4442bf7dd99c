//! Resuming streams that break after the commit point (on unless a model sets `resume_streams =
//! false`): a deployment that can continue a prefilled answer (an OpenAI-compatible server with
//! `assistant_prefill`, Anthropic natively) is sent the text the client already has; any other is
//! asked afresh and spliced in only if its answer begins with that text. Either way the client
//! gets one stream.
//!
//! Every mock here is named "mock", so each would give the same reply ("Hello from mock! You
//! said: Hello there"): a resumed stream must carry exactly that text, once.

use crate::harness::{Harness, chain, hello, sse_data};
use serde_json::{Value, json};

const FULL: &str = "Hello from mock! You said: Hello there";

/// `chain(n)` (resume on by default) with `assistant_prefill` on for `prefill`.
fn resumable(n: usize, prefill: &[usize]) -> String {
    let mut template = chain(n);
    for i in prefill {
        template = template.replace(
            &format!("name = \"d{i}\"\n"),
            &format!("name = \"d{i}\"\nassistant_prefill = true\n"),
        );
    }
    template
}

fn stream_req() -> Value {
    let mut body = hello("chat");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    body
}

/// A client stream that ended with `[DONE]`: its JSON chunks.
fn completed(data: &[String]) -> Vec<Value> {
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks.iter().all(|c| c.get("error").is_none()),
        "error event in a completed stream: {data:?}"
    );
    chunks
}

fn content(chunks: &[Value]) -> String {
    chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

/// One stream as the client sees it: one id, one model, one role opener, a finish, usage.
fn assert_one_stream(chunks: &[Value]) {
    let first = &chunks[0];
    for c in chunks {
        assert_eq!(c["id"], first["id"], "{c}");
        assert_eq!(c["model"], first["model"], "{c}");
        assert_eq!(c["created"], first["created"], "{c}");
    }
    let openers = chunks
        .iter()
        .filter(|c| c["choices"][0]["delta"].get("role").is_some())
        .count();
    assert_eq!(openers, 1, "{chunks:?}");
    let finishes: Vec<&Value> = chunks
        .iter()
        .filter_map(|c| c["choices"][0].get("finish_reason"))
        .filter(|f| !f.is_null())
        .collect();
    assert_eq!(finishes, [&json!("stop")]);
    assert!(
        chunks.last().unwrap()["usage"]["total_tokens"]
            .as_u64()
            .unwrap()
            > 0
    );
}

/// The last chat request mock `i` received, as JSON.
fn last_request(h: &Harness, i: usize) -> Value {
    let request = h
        .mock(i)
        .requests()
        .into_iter()
        .rev()
        .find(|r| r.route == "/v1/chat/completions")
        .unwrap();
    serde_json::from_str(&request.body).unwrap()
}

/// The assistant prefill of a continuation request (checked to be one).
fn prefill_of(request: &Value) -> String {
    assert_eq!(request["continue_final_message"], true, "{request}");
    assert_eq!(request["add_generation_prompt"], false, "{request}");
    assert_eq!(request["stream"], true, "{request}");
    let last = request["messages"].as_array().unwrap().last().unwrap();
    assert_eq!(last["role"], "assistant", "{request}");
    last["content"].as_str().unwrap().to_owned()
}

fn error_event(data: &[String]) -> Value {
    assert_ne!(data.last().unwrap(), "[DONE]", "{data:?}");
    assert!(!data.iter().any(|d| d == "[DONE]"), "{data:?}");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "stream_interrupted", "{last}");
    last
}

#[tokio::test]
async fn a_cut_stream_is_continued_on_a_prefill_deployment_as_one_stream() {
    let h = Harness::start_named(&["mock", "mock"], &resumable(2, &[1])).await;
    // The delay lets the gateway read the first events before the reset.
    h.fault(0, json!({"reset_after_chunks": 3, "chunk_delay_ms": 50}));
    let response = h.chat(&stream_req()).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-nines-deployment"], "d0");
    let chunks = completed(&sse_data(response).await);
    assert_eq!(content(&chunks), FULL);
    assert_one_stream(&chunks);
    assert_eq!(
        chunks[0]["model"], "up-model-0",
        "the first stream's identity"
    );
    assert_eq!((h.chat_hits(0), h.chat_hits(1)), (1, 1));

    let continuation = last_request(&h, 1);
    assert_eq!(continuation["model"], "up-model-1");
    assert_eq!(
        continuation["stream_options"],
        json!({"include_usage": true})
    );
    let prefill = prefill_of(&continuation);
    assert_eq!(prefill, "Hello from ", "role + two words before the cut");
    assert_eq!(
        continuation["messages"][0],
        json!({"role": "user", "content": "Hello there"})
    );
}

#[tokio::test]
async fn a_stall_past_the_idle_timeout_is_resumed() {
    let template = resumable(2, &[1]).replace("idle = \"2s\"", "idle = \"300ms\"");
    let h = Harness::start_named(&["mock", "mock"], &template).await;
    h.fault(0, json!({"stall_after_chunks": 4}));
    let started = tokio::time::Instant::now();
    let data = sse_data(h.chat(&stream_req()).await).await;
    let chunks = completed(&data);
    assert_eq!(content(&chunks), FULL);
    assert_one_stream(&chunks);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
    assert_eq!((h.chat_hits(0), h.chat_hits(1)), (1, 1));
    assert_eq!(prefill_of(&last_request(&h, 1)), "Hello from mock! ");
}

#[tokio::test]
async fn without_resume_streams_a_cut_stream_ends_with_an_error_event() {
    // Prefill is available, but the model turned resumes off.
    let template = resumable(2, &[1]).replace(
        "name = \"chat\"\n",
        "name = \"chat\"\nresume_streams = false\n",
    );
    let h = Harness::start_named(&["mock", "mock"], &template).await;
    h.fault(0, json!({"reset_after_chunks": 3, "chunk_delay_ms": 50}));
    let data = sse_data(h.chat(&stream_req()).await).await;
    let error = error_event(&data);
    assert!(
        !error["error"]["message"]
            .as_str()
            .unwrap()
            .contains("resume"),
        "{error}"
    );
    assert_eq!((h.chat_hits(0), h.chat_hits(1)), (1, 0));
}

#[tokio::test]
async fn a_deployment_without_prefill_replays_and_the_matching_answer_is_spliced() {
    // d1 cannot continue a partial answer: it is asked afresh, and since its answer begins with
    // exactly what the client has (the same mock reply), the rest completes the stream.
    let h = Harness::start_named(&["mock", "mock"], &resumable(2, &[])).await;
    h.fault(0, json!({"reset_after_chunks": 3, "chunk_delay_ms": 50}));
    let chunks = completed(&sse_data(h.chat(&stream_req()).await).await);
    assert_eq!(content(&chunks), FULL);
    assert_one_stream(&chunks);
    assert_eq!((h.chat_hits(0), h.chat_hits(1)), (1, 1));
    let request = last_request(&h, 1);
    assert!(request.get("continue_final_message").is_none(), "{request}");
    assert_eq!(
        request["messages"].as_array().unwrap().len(),
        1,
        "the original request"
    );
}

#[tokio::test]
async fn a_replayed_answer_that_differs_ends_the_stream_honestly() {
    // The mocks' names differ, so do their replies: "Hello from mock1! …" is not a continuation
    // of "Hello from mock0! " (a break after "Hello from " would still splice: both begin so).
    let h = Harness::start_named(&["mock0", "mock1"], &resumable(2, &[])).await;
    h.fault(0, json!({"reset_after_chunks": 4, "chunk_delay_ms": 50}));
    let data = sse_data(h.chat(&stream_req()).await).await;
    let error = error_event(&data);
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("upstream stream broke"), "{message}");
    assert!(
        message.contains("the replayed answer differs from what the client received"),
        "{message}"
    );
    assert_eq!((h.chat_hits(0), h.chat_hits(1)), (1, 1));
    let text: String = data[..data.len() - 1]
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(
        text, "Hello from mock0! ",
        "the part that arrived, nothing of the other answer"
    );
}

/// d0 an OpenAI-compatible deployment, d1 Anthropic's Messages API (continues natively).
fn with_anthropic_second() -> String {
    chain(2).replace(
        "name = \"d1\"\nprovider = \"openai-compatible\"\nmodel = \"up-model-1\"\nbase_url = \"{mock1}\"",
        "name = \"d1\"\nprovider = \"anthropic\"\nmodel = \"claude-up\"\nbase_url = \"{mock1}\"",
    )
}

#[tokio::test]
async fn an_anthropic_deployment_continues_a_broken_openai_stream_natively() {
    let template = with_anthropic_second();
    assert!(template.contains("provider = \"anthropic\""), "{template}");
    let h = Harness::start_named(&["mock", "mock"], &template).await;
    h.fault(0, json!({"reset_after_chunks": 3, "chunk_delay_ms": 50}));
    let chunks = completed(&sse_data(h.chat(&stream_req()).await).await);
    assert_eq!(content(&chunks), FULL);
    assert_one_stream(&chunks);
    let continuation = h
        .mock(1)
        .requests()
        .into_iter()
        .find(|r| r.route == "/v1/messages")
        .unwrap();
    let request: Value = serde_json::from_str(&continuation.body).unwrap();
    let last = request["messages"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["role"], "assistant", "{request}");
    // Anthropic refuses a prefill ending in whitespace: "Hello from " went as "Hello from",
    // and the space the model wrote again was taken off.
    let text = last["content"]
        .as_str()
        .map(str::to_owned)
        .unwrap_or_else(|| last["content"][0]["text"].as_str().unwrap().to_owned());
    assert_eq!(text, "Hello from");
    assert_eq!(request["stream"], true);
}

#[tokio::test]
async fn an_anthropic_clients_stream_is_resumed_through_translation() {
    // The client speaks Anthropic; d0 (Anthropic) breaks, d1 (OpenAI-compatible, no prefill)
    // replays and matches: the client gets one Anthropic stream with the whole text.
    let template = chain(2).replace(
        "name = \"d0\"\nprovider = \"openai-compatible\"\nmodel = \"up-model-0\"\nbase_url = \"{mock0}\"",
        "name = \"d0\"\nprovider = \"anthropic\"\nmodel = \"claude-up\"\nbase_url = \"{mock0}\"",
    );
    let h = Harness::start_named(&["mock", "mock"], &template).await;
    h.fault(0, json!({"reset_after_chunks": 6, "chunk_delay_ms": 50}));
    let body = json!({
        "model": "chat", "max_tokens": 100, "stream": true,
        "messages": [{"role": "user", "content": "Hello there"}],
    });
    let r = h
        .client
        .post(h.url("/v1/messages"))
        .header("anthropic-version", "2023-06-01")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let mut types = Vec::new();
    let mut said = String::new();
    for line in text.lines() {
        let Some(data) = line.strip_prefix("data: ") else {
            continue;
        };
        let event: Value = serde_json::from_str(data).unwrap();
        types.push(event["type"].as_str().unwrap_or("").to_owned());
        if let Some(t) = event["delta"]["text"].as_str() {
            said.push_str(t);
        }
    }
    assert_eq!(said, FULL, "{text}");
    assert_eq!(
        types.iter().filter(|t| *t == "message_start").count(),
        1,
        "{types:?}"
    );
    assert_eq!(
        types.last().map(String::as_str),
        Some("message_stop"),
        "{types:?}"
    );
    assert!(!types.iter().any(|t| t == "error"), "{types:?}");
    assert_eq!((h.mock(0).hits("/v1/messages"), h.chat_hits(1)), (1, 1));
}

#[tokio::test]
async fn a_broken_continuation_is_continued_by_the_next_deployment() {
    let h = Harness::start_named(&["mock", "mock", "mock"], &resumable(3, &[1, 2])).await;
    h.fault(0, json!({"reset_after_chunks": 3, "chunk_delay_ms": 50}));
    // d1's continuation: its role opener and two more words, then a reset.
    h.fault(1, json!({"reset_after_chunks": 3, "chunk_delay_ms": 50}));
    let chunks = completed(&sse_data(h.chat(&stream_req()).await).await);
    assert_eq!(content(&chunks), FULL);
    assert_one_stream(&chunks);
    assert_eq!((h.chat_hits(0), h.chat_hits(1), h.chat_hits(2)), (1, 1, 1));
    assert_eq!(prefill_of(&last_request(&h, 1)), "Hello from ");
    assert_eq!(
        prefill_of(&last_request(&h, 2)),
        "Hello from mock! You ",
        "d2 continues from what d0 and d1 sent"
    );
}

#[tokio::test]
async fn when_every_continuation_fails_the_stream_ends_with_an_error_event() {
    let h = Harness::start_named(&["mock", "mock", "mock"], &resumable(3, &[1, 2])).await;
    h.fault(0, json!({"reset_after_chunks": 3, "chunk_delay_ms": 50}));
    h.fault(1, json!({"status": 503}));
    h.fault(2, json!({"status": 500}));
    let data = sse_data(h.chat(&stream_req()).await).await;
    let error = error_event(&data);
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("d1#0 overloaded 503"), "{message}");
    assert!(message.contains("d2#0 server 500"), "{message}");
    assert_eq!((h.chat_hits(0), h.chat_hits(1), h.chat_hits(2)), (1, 1, 1));
}

#[tokio::test]
async fn an_in_band_error_after_commit_is_resumed() {
    let h = Harness::start_named(&["mock", "mock"], &resumable(2, &[1])).await;
    // Events 0..=2 are the role opener and two words; event 3 is an error event.
    h.fault(0, json!({"error_event_at": 3}));
    let chunks = completed(&sse_data(h.chat(&stream_req()).await).await);
    assert_eq!(content(&chunks), FULL);
    assert_one_stream(&chunks);
    assert_eq!((h.chat_hits(0), h.chat_hits(1)), (1, 1));
    assert_eq!(prefill_of(&last_request(&h, 1)), "Hello from ");
}

#[tokio::test]
async fn a_stream_with_tool_calls_is_not_resumed() {
    let h = Harness::start_named(&["mock", "mock"], &resumable(2, &[1])).await;
    h.fault(0, json!({"reset_after_chunks": 3, "chunk_delay_ms": 50}));
    let mut body = stream_req();
    body["tools"] =
        json!([{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]);
    let data = sse_data(h.chat(&body).await).await;
    let error = error_event(&data);
    let message = error["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("not resumed: the answer has tool calls"),
        "{message}"
    );
    assert_eq!((h.chat_hits(0), h.chat_hits(1)), (1, 0));
}

#[tokio::test]
async fn a_break_before_any_text_is_answered_afresh_by_any_later_deployment() {
    // d1 cannot prefill, but the client has no text yet: a fresh answer continues nothing.
    let template = resumable(2, &[0]).replace("idle = \"2s\"", "idle = \"300ms\"");
    let h = Harness::start_named(&["mock", "mock"], &template).await;
    h.fault(0, json!({"stall_after_chunks": 1}));
    let chunks = completed(&sse_data(h.chat(&stream_req()).await).await);
    assert_eq!(content(&chunks), FULL);
    assert_one_stream(&chunks);
    let request = last_request(&h, 1);
    assert!(request.get("continue_final_message").is_none(), "{request}");
    assert_eq!(request["messages"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn config_refuses_prefill_on_openai_itself() {
    let openai = "[[deployments]]\nname = \"o\"\nprovider = \"openai\"\nmodel = \"m\"\napi_keys = [\"k\"]\nassistant_prefill = true\n";
    let error = nines_gateway::Config::parse(std::path::Path::new("t.toml"), openai, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("deployments[0].assistant_prefill"),
        "{error}"
    );
}
