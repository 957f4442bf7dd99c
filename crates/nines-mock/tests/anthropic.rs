//! The Anthropic Messages dialect: content, usage, tools, streaming, errors and faults.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns fail loudly"
)]

mod common;

use std::time::Duration;

use common::{
    SseEvent, event_names, post_with, read_until_reset, read_until_stall, script, sse_events,
    start, start_with,
};
use nines_mock::{FaultScript, MockServer};
use serde_json::{Value, json};

const MESSAGES: &str = "/v1/messages";
const HEADERS: [(&str, &str); 2] = [
    ("x-api-key", "sk-ant-test"),
    ("anthropic-version", "2023-06-01"),
];

fn body(text: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": "claude-test",
        "max_tokens": 1024,
        "messages": [{"role": "user", "content": text}],
    });
    body.as_object_mut()
        .unwrap()
        .extend(extra.as_object().unwrap().clone());
    body
}

async fn messages(server: &MockServer, body: &Value) -> reqwest::Response {
    post_with(server, MESSAGES, &HEADERS, body).await
}

async fn stream(server: &MockServer, body: &Value) -> Vec<SseEvent> {
    let resp = messages(server, body).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    sse_events(&resp.text().await.unwrap())
}

async fn error_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["type"], "error", "{v}");
    (status, v["error"].clone())
}

/// "Hello from m1! You said: hi" is six words.
const TEXT_EVENTS: [&str; 12] = [
    "message_start",
    "content_block_start",
    "ping",
    "content_block_delta",
    "content_block_delta",
    "content_block_delta",
    "content_block_delta",
    "content_block_delta",
    "content_block_delta",
    "content_block_stop",
    "message_delta",
    "message_stop",
];

#[tokio::test]
async fn plain_message_is_deterministic() {
    let server = start("m1").await;
    let resp = messages(&server, &body("hi there", json!({"system": "be nice"}))).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["x-mock-name"], "m1");
    let v: Value = resp.json().await.unwrap();
    assert!(v["id"].as_str().unwrap().starts_with("msg_mock_"));
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-test");
    assert_eq!(
        v["content"],
        json!([{"type": "text", "text": "Hello from m1! You said: hi there"}])
    );
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(v["stop_sequence"], Value::Null);
    // system ceil(7/4)+3 = 5, message ceil(8/4)+3 = 5; seven words.
    assert_eq!(
        v["usage"],
        json!({
            "input_tokens": 10,
            "output_tokens": 7,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        })
    );
    let again: Value = messages(&server, &body("hi there", json!({})))
        .await
        .json()
        .await
        .unwrap();
    assert_ne!(again["id"], v["id"]);
    assert_eq!(again["usage"]["input_tokens"], 5, "no system prompt");
}

#[tokio::test]
async fn blocks_echo_only_text_and_system_blocks_count() {
    let server = start("m1").await;
    let req = json!({
        "model": "c",
        "max_tokens": 100,
        "system": [{"type": "text", "text": "be nice"}],
        "messages": [
            {"role": "user", "content": "first"},
            {"role": "assistant", "content": [{"type": "text", "text": "ok"}]},
            {"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"}},
                {"type": "text", "text": "look"},
                {"type": "tool_result", "tool_use_id": "toolu_1", "content": "42"},
            ]},
        ],
    });
    let v: Value = messages(&server, &req).await.json().await.unwrap();
    assert_eq!(v["content"][0]["text"], "Hello from m1! You said: look");
    // system 2+3, "first" 2+3, "ok" 1+3, "look" 1+3
    assert_eq!(v["usage"]["input_tokens"], 18);
}

#[tokio::test]
async fn max_tokens_and_stop_sequences_end_the_reply() {
    let server = start("m1").await;
    let v: Value = messages(&server, &body("hi", json!({"max_tokens": 3})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["content"][0]["text"], "Hello from m1!");
    assert_eq!(v["stop_reason"], "max_tokens");
    assert_eq!(v["usage"]["output_tokens"], 3);

    let v: Value = messages(
        &server,
        &body("hi", json!({"stop_sequences": ["You", "zzz"]})),
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["content"][0]["text"], "Hello from m1!");
    assert_eq!(v["stop_reason"], "stop_sequence");
    assert_eq!(v["stop_sequence"], "You");
}

#[tokio::test]
async fn tools_get_a_tool_use_block() {
    let server = start("m1").await;
    let tools = json!([
        {"name": "get_weather", "description": "w", "input_schema": {"type": "object"}},
        {"name": "get_time", "input_schema": {"type": "object"}},
    ]);
    let v: Value = messages(&server, &body("hi", json!({"tools": tools})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        v["content"],
        json!([{"type": "tool_use", "id": "toolu_mock_0", "name": "get_weather", "input": {"mock": true}}])
    );
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(
        v["usage"]["output_tokens"], 4,
        "ceil(len({{\"mock\":true}})/4)"
    );

    let named = json!({"tools": tools, "tool_choice": {"type": "tool", "name": "get_time"}});
    let v: Value = messages(&server, &body("hi", named))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["content"][0]["name"], "get_time");

    let any = json!({"tools": tools, "tool_choice": {"type": "any"}});
    let v: Value = messages(&server, &body("hi", any))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["content"][0]["name"], "get_weather");

    let none = json!({"tools": tools, "tool_choice": {"type": "none"}});
    let v: Value = messages(&server, &body("hi", none))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["content"][0]["type"], "text");
    assert_eq!(v["stop_reason"], "end_turn");
}

#[tokio::test]
async fn streaming_follows_anthropics_event_sequence() {
    let server = start("m1").await;
    let events = stream(&server, &body("hi", json!({"stream": true}))).await;
    assert_eq!(event_names(&events), TEXT_EVENTS);
    for e in &events {
        assert_eq!(
            e.json()["type"],
            e.event.as_deref().unwrap(),
            "type matches event name"
        );
    }
    let start = events[0].json();
    assert!(
        start["message"]["id"]
            .as_str()
            .unwrap()
            .starts_with("msg_mock_")
    );
    assert_eq!(start["message"]["content"], json!([]));
    assert_eq!(start["message"]["stop_reason"], Value::Null);
    assert_eq!(start["message"]["model"], "claude-test");
    assert_eq!(start["message"]["usage"]["input_tokens"], 4);
    assert_eq!(
        events[1].json(),
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    );
    assert_eq!(events[2].json(), json!({"type": "ping"}));
    let text: String = events[3..9]
        .iter()
        .map(|e| {
            let v = e.json();
            assert_eq!(v["index"], 0);
            assert_eq!(v["delta"]["type"], "text_delta");
            v["delta"]["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(text, "Hello from m1! You said: hi");
    assert_eq!(events[3].json()["delta"]["text"], "Hello ");
    assert_eq!(
        events[9].json(),
        json!({"type": "content_block_stop", "index": 0})
    );
    assert_eq!(
        events[10].json(),
        json!({
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": 6},
        })
    );
    assert_eq!(events[11].json(), json!({"type": "message_stop"}));
}

#[tokio::test]
async fn streaming_tool_use_arrives_as_partial_json() {
    let server = start("m1").await;
    let req = body(
        "hi",
        json!({"stream": true, "tools": [{"name": "lookup", "input_schema": {"type": "object"}}]}),
    );
    let events = stream(&server, &req).await;
    assert_eq!(
        event_names(&events),
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    assert_eq!(
        events[1].json()["content_block"],
        json!({"type": "tool_use", "id": "toolu_mock_0", "name": "lookup", "input": {}})
    );
    let json_text: String = events[3..7]
        .iter()
        .map(|e| {
            let v = e.json();
            assert_eq!(v["delta"]["type"], "input_json_delta");
            v["delta"]["partial_json"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&json_text).unwrap(),
        json!({"mock": true})
    );
    let delta = events[8].json();
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(delta["usage"]["output_tokens"], 4);
}

#[tokio::test]
async fn headers_and_body_are_validated() {
    let server = start("m1").await;
    let ok = body("hi", json!({}));

    let resp = post_with(
        &server,
        MESSAGES,
        &[("anthropic-version", "2023-06-01")],
        &ok,
    )
    .await;
    let (status, error) = error_of(resp).await;
    assert_eq!(
        (status, error["type"].as_str()),
        (401, Some("authentication_error"))
    );

    let resp = post_with(&server, MESSAGES, &[("x-api-key", "k")], &ok).await;
    let (status, error) = error_of(resp).await;
    assert_eq!(
        (status, error["type"].as_str()),
        (400, Some("invalid_request_error"))
    );
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("anthropic-version")
    );

    let mut no_max = ok.clone();
    no_max.as_object_mut().unwrap().remove("max_tokens");
    for bad in [
        no_max,
        json!({"model": "c", "max_tokens": 5, "messages": []}),
        json!({"model": "c", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}),
        json!({"max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}),
    ] {
        let (status, error) = error_of(messages(&server, &bad).await).await;
        assert_eq!(status, 400, "{bad}");
        assert_eq!(error["type"], "invalid_request_error", "{bad}");
    }
    let (_, error) =
        error_of(messages(&server, &body("hi", json!({"max_tokens": null}))).await).await;
    assert!(error["message"].as_str().unwrap().contains("max_tokens"));
}

#[tokio::test]
async fn status_faults_get_anthropic_error_types() {
    let server = start("m1").await;
    let cases = [
        (529, "overloaded_error", "Overloaded"),
        (503, "overloaded_error", "Overloaded"),
        (429, "rate_limit_error", "mock fault: status 429"),
        (500, "api_error", "mock fault: status 500"),
        (502, "api_error", "mock fault: status 502"),
        (401, "authentication_error", "mock fault: status 401"),
        (403, "permission_error", "mock fault: status 403"),
        (400, "invalid_request_error", "mock fault: status 400"),
        (404, "not_found_error", "mock fault: status 404"),
    ];
    for (status, kind, message) in cases {
        server.set_fault(Some(FaultScript::status(status)));
        let resp = messages(&server, &body("hi", json!({}))).await;
        assert_eq!(resp.headers()["content-type"], "application/json");
        let (got, error) = error_of(resp).await;
        assert_eq!(got, status);
        assert_eq!(
            error,
            json!({"type": kind, "message": message}),
            "status {status}"
        );
    }
    // A provider that is down does not get as far as checking credentials.
    server.set_fault(Some(script(json!({"status": 529, "retry_after": "3"}))));
    let resp = post_with(&server, MESSAGES, &[], &body("hi", json!({}))).await;
    assert_eq!(resp.status(), 529);
    assert_eq!(resp.headers()["retry-after"], "3");
}

#[tokio::test]
async fn content_filter_is_a_refusal() {
    let server = start_with("m1", Some(script(json!({"content_filter": true})))).await;
    let v: Value = messages(&server, &body("hi", json!({})))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["stop_reason"], "refusal");
    assert_eq!(v["content"], json!([]));
    assert_eq!(v["usage"]["output_tokens"], 0);

    let events = stream(&server, &body("hi", json!({"stream": true}))).await;
    assert_eq!(
        event_names(&events),
        ["message_start", "ping", "message_delta", "message_stop"]
    );
    assert_eq!(events[2].json()["delta"]["stop_reason"], "refusal");
    assert_eq!(events[2].json()["usage"]["output_tokens"], 0);
}

#[tokio::test]
async fn context_too_long_is_an_invalid_request() {
    let server = start_with("m1", Some(script(json!({"context_too_long": true})))).await;
    let (status, error) = error_of(messages(&server, &body("hi", json!({}))).await).await;
    assert_eq!(status, 400);
    assert_eq!(
        error,
        json!({"type": "invalid_request_error", "message": "prompt is too long: 200004 tokens > 200000 maximum"})
    );
}

#[tokio::test]
async fn stream_faults_apply_by_event_index() {
    let server = start("m1").await;
    let streamed = body("hi", json!({"stream": true}));

    server.set_fault(Some(script(json!({"error_event_at": 3}))));
    let events = stream(&server, &streamed).await;
    assert_eq!(
        event_names(&events),
        ["message_start", "content_block_start", "ping", "error"]
    );
    assert_eq!(
        events[3].json(),
        json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    );

    server.set_fault(Some(script(json!({"no_done": true}))));
    let events = stream(&server, &streamed).await;
    assert_eq!(event_names(&events), TEXT_EVENTS[..11]);

    server.set_fault(Some(script(json!({"malformed_chunk_at": 4}))));
    let events = stream(&server, &streamed).await;
    assert_eq!(
        event_names(&events),
        TEXT_EVENTS,
        "the event keeps its name"
    );
    assert_eq!(events[4].data, "{not json");

    server.set_fault(Some(script(json!({"reset_after_chunks": 2}))));
    let text = read_until_reset(messages(&server, &streamed).await).await;
    assert_eq!(
        event_names(&sse_events(&text)),
        ["message_start", "content_block_start"]
    );
}

#[tokio::test(start_paused = true)]
async fn stall_and_chunk_delay_apply_to_the_stream() {
    let server = start_with("m1", Some(script(json!({"stall_after_chunks": 3})))).await;
    let resp = messages(&server, &body("hi", json!({"stream": true}))).await;
    let text = read_until_stall(resp, 3, Duration::from_secs(600)).await;
    assert_eq!(event_names(&sse_events(&text)), TEXT_EVENTS[..3]);

    server.set_fault(Some(script(json!({"chunk_delay_ms": 100}))));
    let started = tokio::time::Instant::now();
    let events = stream(&server, &body("hi", json!({"stream": true}))).await;
    assert_eq!(events.len(), 12);
    assert!(
        started.elapsed() >= Duration::from_millis(1100),
        "11 gaps of 100 ms"
    );
}

#[tokio::test]
async fn hits_and_requests_are_recorded() {
    let server = start("m1").await;
    messages(&server, &body("hi", json!({}))).await;
    post_with(&server, MESSAGES, &[], &body("hi", json!({}))).await;
    assert_eq!(server.hits(MESSAGES), 2);
    assert_eq!(server.total_hits(), 2);
    let recorded = server.requests();
    assert_eq!(recorded[0].route, MESSAGES);
    let has = |name: &str, value: &str| {
        recorded[0]
            .headers
            .contains(&(name.to_owned(), value.to_owned()))
    };
    assert!(has("x-api-key", "sk-ant-test"));
    assert!(has("anthropic-version", "2023-06-01"));
    let sent: Value = serde_json::from_str(&recorded[0].body).unwrap();
    assert_eq!(sent["model"], "claude-test");
}

#[tokio::test]
async fn a_field_the_api_does_not_have_is_refused() {
    let server = start("m1").await;
    let resp = messages(&server, &body("hi", json!({"seed": 7}))).await;
    let (status, error) = error_of(resp).await;
    assert_eq!(status, 400);
    assert_eq!(error["message"], "seed: Extra inputs are not permitted");
    // Every field the API has is taken.
    let resp = messages(
        &server,
        &body(
            "hi",
            json!({"top_k": 5, "temperature": 0.5, "metadata": {"user_id": "u"}, "service_tier": "auto"}),
        ),
    )
    .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn thinking_is_checked_as_the_api_checks_it() {
    let server = start("m1").await;
    let thinking = |budget: u64| json!({"thinking": {"type": "enabled", "budget_tokens": budget}});
    let refused = [
        (thinking(512), "greater than or equal to 1024"),
        (thinking(1024), "`max_tokens` must be greater"),
    ];
    for (extra, why) in refused {
        let mut request = body("hi", extra);
        request["max_tokens"] = json!(1024);
        let (status, error) = error_of(messages(&server, &request).await).await;
        assert_eq!(status, 400);
        assert!(error["message"].as_str().unwrap().contains(why), "{error}");
    }
    let with = |extra: Value| {
        let mut request = body("hi", thinking(2048));
        request["max_tokens"] = json!(4096);
        request
            .as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        request
    };
    for (extra, why) in [
        (json!({"temperature": 0.3}), "temperature"),
        (json!({"top_k": 3}), "top_k"),
        (
            json!({"tools": [{"name": "f", "input_schema": {"type": "object"}}], "tool_choice": {"type": "any"}}),
            "tool_choice",
        ),
    ] {
        let (status, error) = error_of(messages(&server, &with(extra)).await).await;
        assert_eq!(status, 400);
        assert!(error["message"].as_str().unwrap().contains(why), "{error}");
    }
    // Accepted: the answer opens with a thinking block, in whole and streamed answers.
    let resp = messages(&server, &with(json!({"temperature": 1.0}))).await;
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.unwrap();
    assert_eq!(answer["content"][0]["type"], "thinking");
    assert_eq!(answer["content"][1]["type"], "text");
    let events = stream(&server, &with(json!({"stream": true}))).await;
    let data: Vec<Value> = events
        .iter()
        .map(|e| serde_json::from_str(&e.data).unwrap())
        .collect();
    assert_eq!(data[1]["content_block"]["type"], "thinking");
    assert!(
        data.iter()
            .any(|d| d["delta"]["type"] == "text_delta" && d["index"] == 1),
        "the text block follows the thinking block"
    );
}

#[tokio::test]
async fn count_tokens_counts_the_prompt_as_messages_does() {
    let server = start("m1").await;
    let count = json!({"model": "claude-test", "system": "Be brief.",
                       "messages": [{"role": "user", "content": "How many tokens is this?"}]});
    let resp = post_with(&server, "/v1/messages/count_tokens", &HEADERS, &count).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.json::<Value>().await.unwrap(),
        json!({"input_tokens": 15})
    );
    let mut request = count.clone();
    request["max_tokens"] = json!(10);
    let answer: Value = messages(&server, &request).await.json().await.unwrap();
    assert_eq!(answer["usage"]["input_tokens"], 15, "the same count");
    // What the count endpoint refuses.
    let resp = post_with(&server, "/v1/messages/count_tokens", &HEADERS, &request).await;
    let (status, error) = error_of(resp).await;
    assert_eq!(status, 400);
    assert_eq!(
        error["message"],
        "max_tokens: Extra inputs are not permitted"
    );
    let resp = post_with(&server, "/v1/messages/count_tokens", &[HEADERS[1]], &count).await;
    assert_eq!(resp.status(), 401);
    assert_eq!(server.hits("/v1/messages/count_tokens"), 3);
}
