//! Resuming streams that break after the commit point (`resume_streams`): the continuation is
//! prefilled with the text the client already has and spliced into the same client stream.
//!
//! Every mock here is named "mock", so each would give the same reply ("Hello from mock! You
//! said: Hello there"): a resumed stream must carry exactly that text, once.

use crate::harness::{Harness, chain, hello, sse_data};
use serde_json::{Value, json};

const FULL: &str = "Hello from mock! You said: Hello there";

/// `chain(n)` with `resume_streams` on for `chat` and `assistant_prefill` on for `prefill`.
fn resumable(n: usize, prefill: &[usize]) -> String {
    let mut template = chain(n);
    for i in prefill {
        template = template.replace(
            &format!("name = \"d{i}\"\n"),
            &format!("name = \"d{i}\"\nassistant_prefill = true\n"),
        );
    }
    template.replace(
        "name = \"chat\"\n",
        "name = \"chat\"\nresume_streams = true\n",
    )
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
    // Prefill is available, but the model does not ask for resumes.
    let template = resumable(2, &[1]).replace("resume_streams = true\n", "");
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
async fn without_a_later_prefill_deployment_the_stream_ends_with_an_error_event() {
    // Only the deployment that breaks can prefill; d1 cannot continue a partial answer.
    let h = Harness::start_named(&["mock", "mock"], &resumable(2, &[0])).await;
    h.fault(0, json!({"reset_after_chunks": 3, "chunk_delay_ms": 50}));
    let data = sse_data(h.chat(&stream_req()).await).await;
    let error = error_event(&data);
    let message = error["error"]["message"].as_str().unwrap();
    assert!(message.contains("upstream stream broke"), "{message}");
    assert!(
        message.contains("not resumed: no later deployment in the plan supports assistant prefill"),
        "{message}"
    );
    assert_eq!((h.chat_hits(0), h.chat_hits(1)), (1, 0));
    let text: String = data[..data.len() - 1]
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "Hello from ", "the part that arrived, then the error");
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
async fn config_refuses_resume_without_prefill_and_prefill_on_openai() {
    let no_prefill = resumable(2, &[])
        .replace("{mock0}", "http://127.0.0.1:9/v1")
        .replace("{mock1}", "http://127.0.0.1:9/v1");
    let error = nines_gateway::Config::parse(std::path::Path::new("t.toml"), &no_prefill, &|_| {
        Some("k".into())
    })
    .unwrap_err()
    .to_string();
    assert!(error.contains("models[0].resume_streams"), "{error}");

    let openai = "[[deployments]]\nname = \"o\"\nprovider = \"openai\"\nmodel = \"m\"\napi_keys = [\"k\"]\nassistant_prefill = true\n";
    let error = nines_gateway::Config::parse(std::path::Path::new("t.toml"), openai, &|_| None)
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("deployments[0].assistant_prefill"),
        "{error}"
    );
}
