//! An upstream SSE event over the decoder's limit (8 MiB: `nines_protocol::sse`), sent by the
//! mock's `big_event_at` fault: before the commit point it is a malformed answer that fails over;
//! after it, the stream ends honestly (an error event in the client's dialect, no `[DONE]`, the
//! reason named), and the gateway stops reading, so its memory does not follow the upstream.

use crate::harness::{Harness, chain, error_of, eventually, hello, sse_data};
use crate::metrics::scrape;
use nines_protocol::sse::{DEFAULT_EVENT_LIMIT, SseDecoder};
use serde_json::{Value, json};
use std::time::Duration;

const WHY: &str = "upstream event over 8 MiB";

/// The mock's default big event: 64 MiB, eight times the limit.
const BIG_EVENT: u64 = 64 * 1024 * 1024;

fn stream_req(model: &str) -> Value {
    let mut body = hello(model);
    body["stream"] = json!(true);
    body
}

/// Waits until mock `i` dropped its streams (it notices a closed connection on its next write),
/// then checks it was not read much past the limit: the limit plus what socket buffers hold, far
/// below the 64 MiB it would have sent to a reader that buffers without bound.
async fn assert_reading_stopped(h: &Harness, i: usize) {
    let mock = h.mock(i);
    eventually(Duration::from_secs(10), || mock.open_streams() == 0).await;
    let sent = mock.streamed_bytes();
    assert!(
        sent > DEFAULT_EVENT_LIMIT as u64 && sent < BIG_EVENT / 2,
        "the mock sent {sent} bytes"
    );
}

#[tokio::test]
async fn an_oversized_first_event_is_malformed_and_fails_over() {
    let h = Harness::start(2, &chain(2)).await;
    // ~10 MiB, then the rest of a sound stream: a gateway without the bound would relay it.
    h.fault(
        0,
        json!({"big_event_at": 0, "big_event_bytes": 10 * 1024 * 1024}),
    );
    let response = h.chat(&stream_req("chat")).await;
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["x-nines-deployment"], "d1");
    assert_eq!(response.headers()["x-nines-attempts"], "2");
    let data = sse_data(response).await;
    assert_eq!(data.last().unwrap(), "[DONE]");
    assert!(data.iter().all(|d| d.len() < 4096), "nothing big relayed");
    assert_eq!((h.chat_hits(0), h.chat_hits(1)), (1, 1));
    let m = scrape(&h).await;
    assert_eq!(
        m.sum(
            "nines_upstream_attempts_total",
            &[("deployment", "d0"), ("class", "malformed")]
        ),
        1.0,
        "{}",
        m.text
    );

    // With every deployment sending one, each attempt (retries included) is a malformed answer
    // and the final error names why.
    h.fault(
        1,
        json!({"big_event_at": 0, "big_event_bytes": 10 * 1024 * 1024}),
    );
    let response = h.chat(&stream_req("chat")).await;
    assert_eq!(response.status(), 502);
    let attempts: usize = response.headers()["x-nines-attempts"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let error = error_of(response).await;
    let message = error["message"].as_str().unwrap();
    let reason = "class=malformed status=- ";
    let detail = format!("detail=malformed response: {WHY};");
    assert!(attempts >= 2, "{message}");
    assert_eq!(message.matches(&reason).count(), attempts, "{message}");
    assert_eq!(message.matches(&detail).count(), attempts, "{message}");
    assert_eq!(h.chat_hits(0) + h.chat_hits(1), 2 + attempts as u64);
}

#[tokio::test]
async fn an_oversized_event_after_content_ends_with_an_error_event_and_no_done() {
    // One deployment: the break cannot be resumed, so the client sees how it ended.
    let h = Harness::start(1, &chain(1)).await;
    h.fault(0, json!({"big_event_at": 3}));
    let response = h.chat(&stream_req("chat")).await;
    assert_eq!(response.headers()["x-nines-deployment"], "d0");
    let data = sse_data(response).await;
    assert!(!data.iter().any(|d| d == "[DONE]"), "{data:?}");
    let chunks: Vec<Value> = data
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let (last, content) = chunks.split_last().unwrap();
    assert_eq!(content.len(), 3, "the events before the big one went out");
    assert!(content.iter().all(|c| c.get("error").is_none()));
    assert_eq!(last["error"]["code"], "stream_interrupted", "{last}");
    let message = last["error"]["message"].as_str().unwrap();
    assert!(message.starts_with(WHY), "{message}");
    assert_reading_stopped(&h, 0).await;
}

#[tokio::test]
async fn an_oversized_event_is_a_break_that_resumes_like_any_other() {
    // Both mocks give the same answer, so d1's replay is spliced in after d0's break.
    let h = Harness::start_named(&["mock", "mock"], &chain(2)).await;
    h.fault(0, json!({"big_event_at": 3}));
    let data = sse_data(h.chat(&stream_req("chat")).await).await;
    assert_eq!(data.last().unwrap(), "[DONE]", "{data:?}");
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
    assert_reading_stopped(&h, 0).await;
}

/// One deployment of `provider` on mock0, serving the model `name` alone (nothing to fail over to).
fn solo(name: &str, provider: &str, upstream_model: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[resilience.probes]
enabled = false

[[deployments]]
name = "{name}"
provider = "{provider}"
model = "{upstream_model}"
base_url = "{{mock0}}"
api_keys = ["env:TEST_KEY"]
timeouts = {{ first_byte = "2s", idle = "2s", total = "10s" }}

[[models]]
name = "{name}"
deployments = ["{name}"]
"#
    )
}

#[tokio::test]
async fn a_translated_stream_ends_with_the_error_in_the_clients_dialect() {
    // An Anthropic upstream relayed to an OpenAI client (and its break not resumable: one
    // deployment).
    let h = Harness::start(1, &solo("claude", "anthropic", "claude-up")).await;
    h.fault(0, json!({"big_event_at": 4}));
    let data = sse_data(h.chat(&stream_req("claude")).await).await;
    assert!(!data.iter().any(|d| d == "[DONE]"), "{data:?}");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    let message = last["error"]["message"].as_str().unwrap();
    assert!(message.starts_with(WHY), "{last}");
    assert!(
        data.iter().any(|d| d.contains("\"content\":\"Hello")),
        "content went out first: {data:?}"
    );
    assert_reading_stopped(&h, 0).await;
}

#[tokio::test]
async fn a_native_responses_stream_ends_with_an_error_event() {
    let h = Harness::start(1, &solo("native", "openai", "gpt-up")).await;
    h.fault(0, json!({"big_event_at": 3}));
    let body = json!({"model": "native", "input": "Hello there", "stream": true});
    let text = h
        .post_json("/v1/responses", &body)
        .await
        .text()
        .await
        .unwrap();
    let mut decoder = SseDecoder::new();
    let mut events = Vec::new();
    decoder.feed(text.as_bytes(), &mut events).unwrap();
    decoder.finish(&mut events);
    let names: Vec<&str> = events.iter().filter_map(|e| e.event.as_deref()).collect();
    assert_eq!(names.len(), 4, "three forwarded, then ours: {names:?}");
    assert!(!names.contains(&"response.completed"), "{names:?}");
    assert_eq!(names.last(), Some(&"error"));
    let error: Value = serde_json::from_str(&events[3].data).unwrap();
    assert_eq!(error["code"], "stream_interrupted");
    assert_eq!(error["message"], WHY);
    assert_eq!(
        error["sequence_number"], 3,
        "numbered after the last one forwarded"
    );
    assert_reading_stopped(&h, 0).await;
}
