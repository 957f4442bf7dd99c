//! OpenAI's legacy completions: the reply, its limits, streaming, and what the API refuses.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns fail loudly"
)]

mod common;

use common::{post, sse_events, start};
use serde_json::{Value, json};

const COMPLETIONS: &str = "/v1/completions";

#[tokio::test]
async fn a_prompt_is_completed_within_max_tokens() {
    let server = start("m1").await;
    let resp = post(
        &server,
        COMPLETIONS,
        &json!({"model": "davinci", "prompt": "hi there", "max_tokens": 3}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["model"], "davinci");
    assert_eq!(body["choices"][0]["text"], "Hello from m1!");
    assert_eq!(body["choices"][0]["finish_reason"], "length");
    assert_eq!(
        body["usage"],
        json!({"prompt_tokens": 2, "completion_tokens": 3, "total_tokens": 5})
    );
    // Without max_tokens the API's default of 16 applies; this reply is shorter.
    let resp = post(
        &server,
        COMPLETIONS,
        &json!({"model": "m", "prompt": ["a", "b"]}),
    )
    .await;
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(server.hits(COMPLETIONS), 2);
}

#[tokio::test]
async fn a_stream_is_one_word_per_chunk_then_usage_and_done() {
    let server = start("m1").await;
    let resp = post(
        &server,
        COMPLETIONS,
        &json!({"model": "m", "prompt": "yo", "stream": true,
                "stream_options": {"include_usage": true}}),
    )
    .await;
    assert_eq!(resp.status(), 200);
    let events = sse_events(&resp.text().await.unwrap());
    assert_eq!(events.last().unwrap().data, "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["text"].as_str())
        .collect();
    assert_eq!(text, "Hello from m1! You said: yo");
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"], 6);
}

#[tokio::test]
async fn what_the_api_does_not_take_is_refused() {
    let server = start("m1").await;
    for (body, why) in [
        (
            json!({"model": "m", "messages": [{"role": "user", "content": "hi"}]}),
            "Unrecognized request argument supplied: messages",
        ),
        (json!({"model": "m"}), "'prompt' must be"),
        (json!({"prompt": "x"}), "model"),
    ] {
        let resp = post(&server, COMPLETIONS, &body).await;
        assert_eq!(resp.status(), 400, "{body}");
        let error: Value = resp.json().await.unwrap();
        assert!(
            error["error"]["message"].as_str().unwrap().contains(why),
            "{error}"
        );
    }
}
