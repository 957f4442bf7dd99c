//! OpenAI's Responses API: what the mock checks as OpenAI would, the answer's shapes, the typed
//! stream, tools (function and built-in), and the answer to a function call's output.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns fail loudly"
)]

mod common;

use common::{event_names, post, sse_events, start};
use serde_json::{Value, json};

const RESPONSES: &str = "/v1/responses";

async fn refused(body: Value, says: &str) {
    let server = start("m").await;
    let r = post(&server, RESPONSES, &body).await;
    assert_eq!(r.status(), 400, "{body}");
    let v: Value = r.json().await.unwrap();
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains(says), "{message}");
    assert_eq!(server.hits(RESPONSES), 1);
}

#[tokio::test]
async fn what_openai_refuses_the_mock_refuses() {
    refused(json!({"input": "hi"}), "'model'").await;
    refused(json!({"model": "m"}), "'input'").await;
    refused(
        json!({"model": "m", "messages": [{"role": "user", "content": "hi"}], "input": "hi"}),
        "Unknown parameter: 'messages'",
    )
    .await;
    refused(
        json!({"model": "m", "input": "hi", "previous_response_id": "resp_1"}),
        "not found",
    )
    .await;
    refused(
        json!({"model": "m", "input": [
            {"role": "user", "content": "hi"},
            {"type": "function_call_output", "call_id": "call_9", "output": "12C"}
        ]}),
        "No tool call found for function call output with call_id call_9",
    )
    .await;
    refused(
        json!({"model": "m", "input": [{"type": "item_reference", "id": "x"}]}),
        "Invalid value: 'item_reference'",
    )
    .await;
    refused(
        json!({"model": "m", "input": "hi", "tools": [{"type": "function"}]}),
        "'tools[].name'",
    )
    .await;
}

#[tokio::test]
async fn an_answer_is_a_response_object_and_a_call_output_gets_text() {
    let server = start("m").await;
    let tools = json!([{"type": "function", "name": "get_weather"}]);
    let body =
        json!({"model": "gpt", "instructions": "brief", "input": "Weather?", "tools": tools});
    let v: Value = post(&server, RESPONSES, &body).await.json().await.unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["output"][0]["type"], "function_call");
    assert_eq!(v["output"][0]["name"], "get_weather");
    assert_eq!(v["output"][0]["arguments"], r#"{"mock":true}"#);
    let call_id = v["output"][0]["call_id"].clone();
    assert!(v["usage"]["input_tokens"].as_u64().unwrap() > 0);

    let body = json!({"model": "gpt", "tools": tools, "input": [
        {"role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
        {"type": "function_call", "call_id": call_id, "name": "get_weather", "arguments": "{}"},
        {"type": "function_call_output", "call_id": call_id, "output": "12C"},
    ]});
    let v: Value = post(&server, RESPONSES, &body).await.json().await.unwrap();
    assert_eq!(v["output"][0]["type"], "message", "{v}");
    let text = v["output"][0]["content"][0]["text"].as_str().unwrap();
    assert!(text.starts_with("Hello from m!"), "{text}");

    let body = json!({"model": "gpt", "input": "Search", "tools": [{"type": "web_search"}]});
    let v: Value = post(&server, RESPONSES, &body).await.json().await.unwrap();
    assert_eq!(
        v["output"][0]["type"], "web_search_call",
        "only OpenAI runs it"
    );
    assert_eq!(v["output"][1]["type"], "message");
}

#[tokio::test]
async fn a_stream_is_typed_numbered_and_ends_with_response_completed() {
    let server = start("m").await;
    let body = json!({"model": "gpt", "input": "Hello there", "stream": true});
    let text = post(&server, RESPONSES, &body).await.text().await.unwrap();
    let events = sse_events(&text);
    let names = event_names(&events);
    assert_eq!(
        names[..4],
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added"
        ]
    );
    assert_eq!(names.last(), Some(&"response.completed"));
    assert!(!text.contains("[DONE]"));
    let mut deltas = String::new();
    for (n, e) in events.iter().enumerate() {
        let v = e.json();
        assert_eq!(v["type"].as_str(), e.event.as_deref());
        assert_eq!(v["sequence_number"], n);
        if let Some(d) = v["delta"].as_str() {
            deltas.push_str(d);
        }
    }
    let done = events.last().unwrap().json();
    assert_eq!(done["response"]["output"][0]["content"][0]["text"], deltas);
    assert_eq!(deltas, "Hello from m! You said: Hello there");
}
