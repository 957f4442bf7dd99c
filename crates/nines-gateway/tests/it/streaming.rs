//! Streaming: relayed chunk by chunk, failover before the first byte, honest endings after it.

use crate::harness::{Harness, chain, hello, sse_data};
use futures_util::StreamExt;
use serde_json::{Value, json};

fn stream_req(model: &str) -> Value {
    let mut body = hello(model);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    body
}

#[tokio::test]
async fn stream_is_relayed_with_usage_and_done() {
    let h = Harness::start(1, &chain(1)).await;
    let response = h.chat(&stream_req("chat")).await;
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    assert_eq!(response.headers()["x-nines-deployment"], "d0");
    let data = sse_data(response).await;
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(
        chunks
            .iter()
            .all(|c| c["object"] == "chat.completion.chunk")
    );
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(text.starts_with("Hello from mock0!"), "{text}");
    let usage = &chunks.last().unwrap()["usage"];
    assert!(usage["total_tokens"].as_u64().unwrap() > 0, "{usage}");
}

#[tokio::test]
async fn chunks_arrive_before_the_stream_ends() {
    let h = Harness::start(1, &chain(1)).await;
    // 200 ms between chunks: the first chunk must reach the client long before the last.
    h.fault(0, json!({"chunk_delay_ms": 200}));
    let started = tokio::time::Instant::now();
    let response = h.chat(&stream_req("chat")).await;
    let mut body = response.bytes_stream();
    let first = body.next().await.unwrap().unwrap();
    let first_at = started.elapsed();
    assert!(first.starts_with(b"data: "), "{first:?}");
    let mut rest = 0;
    while let Some(chunk) = body.next().await {
        rest += chunk.unwrap().len();
    }
    let total = started.elapsed();
    assert!(rest > 0);
    assert!(
        total - first_at >= std::time::Duration::from_millis(600),
        "relay buffered: first {first_at:?}, total {total:?}"
    );
}

#[tokio::test]
async fn failure_before_first_chunk_fails_over() {
    let h = Harness::start(2, &chain(2)).await;
    h.fault(0, json!({"status": 503}));
    let response = h.chat(&stream_req("chat")).await;
    assert_eq!(response.headers()["x-nines-deployment"], "d1");
    let data = sse_data(response).await;
    assert_eq!(data.last().unwrap(), "[DONE]");

    h.fault(0, json!({"error_event_at": 0}));
    let response = h.chat(&stream_req("chat")).await;
    assert_eq!(
        response.headers()["x-nines-deployment"],
        "d1",
        "in-band error before any content fails over"
    );
    assert_eq!(response.headers()["x-nines-attempts"], "2");
}

#[tokio::test]
async fn cut_after_commit_ends_with_an_error_event_and_no_done() {
    // One deployment: nothing can continue the stream (resume.rs covers continuations).
    let h = Harness::start(1, &chain(1)).await;
    // The delay lets the gateway read the first events before the reset (a reset discards data
    // the receiver has not read yet, which would make this a failure before the commit point).
    h.fault(0, json!({"reset_after_chunks": 3, "chunk_delay_ms": 50}));
    let response = h.chat(&stream_req("chat")).await;
    assert_eq!(response.headers()["x-nines-deployment"], "d0");
    let data = sse_data(response).await;
    assert_ne!(data.last().unwrap(), "[DONE]");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert_eq!(last["error"]["code"], "stream_interrupted", "{last}");
}

#[tokio::test]
async fn stall_after_commit_ends_with_an_error_event() {
    let template = chain(1).replace("idle = \"2s\"", "idle = \"300ms\"");
    let h = Harness::start(1, &template).await;
    h.fault(0, json!({"stall_after_chunks": 2}));
    let data = sse_data(h.chat(&stream_req("chat")).await).await;
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stalled"),
        "{last}"
    );
}

#[tokio::test]
async fn finished_stream_without_done_is_closed_with_done() {
    let h = Harness::start(1, &chain(1)).await;
    h.fault(0, json!({"no_done": true}));
    let data = sse_data(h.chat(&stream_req("chat")).await).await;
    assert_eq!(data.last().unwrap(), "[DONE]");
    assert!(!data.iter().any(|d| d.contains("stream_interrupted")));
}

#[tokio::test]
async fn in_band_error_after_commit_is_relayed_and_stream_ends() {
    let h = Harness::start(1, &chain(1)).await;
    h.fault(0, json!({"error_event_at": 3}));
    let data = sse_data(h.chat(&stream_req("chat")).await).await;
    assert_ne!(data.last().unwrap(), "[DONE]");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert!(last.get("error").is_some(), "{last}");
}
