//! Every fault effect and gate, seen from a client.
//!
//! Tests that involve time run on a paused tokio clock: the mock's sleeps auto-advance it, so
//! "5 s of latency" takes microseconds and is measured exactly on `tokio::time::Instant`.
#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] fns fail loudly"
)]

mod common;

use std::time::Duration;

use common::{CHAT, chat, chat_body, client, post, sse_data, start, start_with};
use futures_util::StreamExt;
use nines_mock::{FaultScript, MockServer};
use serde_json::{Value, json};
use tokio::time::Instant;

fn script(v: Value) -> FaultScript {
    serde_json::from_value(v).unwrap()
}

async fn status_of(server: &MockServer) -> u16 {
    chat(server, &chat_body("hi", json!({})))
        .await
        .status()
        .as_u16()
}

async fn stream_text(server: &MockServer) -> String {
    chat(server, &chat_body("hi", json!({"stream": true})))
        .await
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn status_faults_look_like_the_providers_errors() {
    let server = start("m1").await;
    let cases = [
        (
            429,
            "rate_limit_exceeded",
            json!("rate_limit_exceeded"),
            "mock fault: status 429",
        ),
        (503, "overloaded_error", Value::Null, "Overloaded"),
        (529, "overloaded_error", Value::Null, "Overloaded"),
        (500, "server_error", Value::Null, "mock fault: status 500"),
        (502, "server_error", Value::Null, "mock fault: status 502"),
        (
            400,
            "invalid_request_error",
            Value::Null,
            "mock fault: status 400",
        ),
        (
            401,
            "authentication_error",
            json!("invalid_api_key"),
            "mock fault: status 401",
        ),
    ];
    for (status, kind, code, message) in cases {
        server.set_fault(Some(FaultScript::status(status)));
        let resp = chat(&server, &chat_body("hi", json!({}))).await;
        assert_eq!(resp.status().as_u16(), status);
        assert_eq!(resp.headers()["x-mock-name"], "m1");
        assert_eq!(resp.headers()["content-type"], "application/json");
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], kind, "status {status}");
        assert_eq!(v["error"]["code"], code, "status {status}");
        assert_eq!(v["error"]["message"], message, "status {status}");
        assert_eq!(v["error"]["param"], Value::Null);
    }
    server.set_fault(None);
    assert_eq!(status_of(&server).await, 200);
}

#[tokio::test]
async fn retry_hints_are_sent_as_headers() {
    let server = start("m1").await;
    server.set_fault(Some(script(
        json!({"status": 429, "retry_after": "2", "retry_after_ms": 1500}),
    )));
    let resp = chat(&server, &chat_body("hi", json!({}))).await;
    assert_eq!(resp.status(), 429);
    assert_eq!(resp.headers()["retry-after"], "2");
    assert_eq!(resp.headers()["retry-after-ms"], "1500");
}

#[tokio::test]
async fn raw_body_replaces_the_generated_one() {
    let server = start("m1").await;
    server.set_fault(Some(script(json!({"body": "{\"weird\":true"}))));
    let resp = chat(&server, &chat_body("hi", json!({}))).await;
    assert_eq!(
        resp.status(),
        200,
        "a raw body alone keeps the success status"
    );
    assert_eq!(resp.headers()["content-type"], "application/json");
    assert_eq!(resp.text().await.unwrap(), "{\"weird\":true");

    server.set_fault(Some(script(
        json!({"status": 502, "body": "<html>bad gateway</html>"}),
    )));
    let resp = chat(&server, &chat_body("hi", json!({}))).await;
    assert_eq!(resp.status(), 502);
    assert_eq!(resp.text().await.unwrap(), "<html>bad gateway</html>");
}

#[tokio::test]
async fn a_script_without_effects_is_an_outage() {
    let server = start_with("m1", Some(FaultScript::default())).await;
    assert_eq!(status_of(&server).await, 503);
    server.set_fault(Some(script(json!({"times": 1}))));
    assert_eq!(status_of(&server).await, 503);
    assert_eq!(status_of(&server).await, 200);
}

#[tokio::test]
async fn faults_apply_to_embeddings_and_models_too() {
    let server = start_with("m1", Some(FaultScript::status(500))).await;
    let emb = post(
        &server,
        "/v1/embeddings",
        &json!({"model": "e", "input": "x"}),
    )
    .await;
    assert_eq!(emb.status(), 500);
    let models = client()
        .get(format!("{}/models", server.base_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(models.status(), 500);
    // The control routes are never faulted.
    let hits = client()
        .get(format!("http://{}/_mock/hits", server.addr()))
        .send()
        .await
        .unwrap();
    assert_eq!(hits.status(), 200);
}

#[tokio::test(start_paused = true)]
async fn hang_never_answers() {
    let server = start_with("m1", Some(script(json!({"hang": true})))).await;
    let result = client()
        .post(format!("{}/chat/completions", server.base_url()))
        .timeout(Duration::from_secs(30))
        .json(&chat_body("hi", json!({})))
        .send()
        .await;
    assert!(result.unwrap_err().is_timeout());
    assert_eq!(server.hits(CHAT), 1);
}

#[tokio::test(start_paused = true)]
async fn latency_delays_the_response() {
    let server = start_with("m1", Some(script(json!({"latency_ms": 5000})))).await;
    let started = Instant::now();
    assert_eq!(status_of(&server).await, 200);
    assert!(started.elapsed() >= Duration::from_millis(5000));

    // first_byte_ms and latency_ms add up.
    server.set_fault(Some(script(
        json!({"first_byte_ms": 1000, "latency_ms": 2000}),
    )));
    let started = Instant::now();
    assert_eq!(status_of(&server).await, 200);
    assert!(started.elapsed() >= Duration::from_millis(3000));
}

#[tokio::test(start_paused = true)]
async fn first_byte_delay_holds_back_the_stream_head() {
    let server = start_with("m1", Some(script(json!({"first_byte_ms": 4000})))).await;
    let started = Instant::now();
    let resp = chat(&server, &chat_body("hi", json!({"stream": true}))).await;
    assert!(started.elapsed() >= Duration::from_millis(4000));
    assert_eq!(resp.status(), 200);
    assert_eq!(
        sse_data(&resp.text().await.unwrap()).last().unwrap(),
        "[DONE]"
    );
}

#[tokio::test(start_paused = true)]
async fn chunk_delay_spaces_out_the_events() {
    let server = start_with("m1", Some(script(json!({"chunk_delay_ms": 1000})))).await;
    let started = Instant::now();
    let resp = chat(&server, &chat_body("hi", json!({"stream": true}))).await;
    let head = started.elapsed();
    let events = sse_data(&resp.text().await.unwrap());
    // role + 6 words + finish + [DONE] = 9 events, 8 gaps.
    assert_eq!(events.len(), 9);
    assert!(
        head < Duration::from_millis(1000),
        "the head is not delayed"
    );
    assert!(started.elapsed() >= Duration::from_millis(8000));
}

/// Read SSE bytes until `events` complete events have arrived; returns the reader and text.
async fn read_events(
    resp: reqwest::Response,
    events: usize,
) -> (
    impl futures_util::Stream<Item = reqwest::Result<bytes::Bytes>>,
    String,
) {
    let mut body = Box::pin(resp.bytes_stream());
    let mut text = String::new();
    while text.matches("\n\n").count() < events {
        let bytes = body.next().await.unwrap().unwrap();
        text.push_str(std::str::from_utf8(&bytes).unwrap());
    }
    (body, text)
}

#[tokio::test(start_paused = true)]
async fn stall_stops_sending_but_keeps_the_connection_open() {
    let server = start_with("m1", Some(script(json!({"stall_after_chunks": 2})))).await;
    let resp = chat(&server, &chat_body("hi", json!({"stream": true}))).await;
    let (mut body, text) = read_events(resp, 2).await;
    assert_eq!(sse_data(&text).len(), 2);
    // Nothing more arrives, however long we wait (on the paused clock: instantly).
    let next = tokio::time::timeout(Duration::from_secs(600), body.next()).await;
    assert!(next.is_err(), "stream must stall, got {next:?}");
}

#[tokio::test]
async fn reset_aborts_the_stream_mid_body() {
    let server = start_with("m1", Some(script(json!({"reset_after_chunks": 2})))).await;
    let resp = chat(&server, &chat_body("hi", json!({"stream": true}))).await;
    assert_eq!(resp.status(), 200);
    let mut body = Box::pin(resp.bytes_stream());
    let mut text = String::new();
    let error = loop {
        match body.next().await {
            Some(Ok(bytes)) => text.push_str(std::str::from_utf8(&bytes).unwrap()),
            Some(Err(e)) => break e,
            None => panic!("stream ended cleanly after {text:?}"),
        }
    };
    assert_eq!(sse_data(&text).len(), 2);
    assert!(
        error.is_body() || error.is_decode() || error.is_request(),
        "{error:?}"
    );

    // Non-streaming: no usable body at all.
    let result = client()
        .post(format!("{}/chat/completions", server.base_url()))
        .json(&chat_body("hi", json!({})))
        .send()
        .await;
    // Either the request fails outright or its body does; hyper decides which.
    if let Ok(resp) = result {
        assert!(resp.bytes().await.is_err());
    }
}

#[tokio::test]
async fn malformed_chunk_replaces_one_event() {
    let server = start_with("m1", Some(script(json!({"malformed_chunk_at": 1})))).await;
    let events = sse_data(&stream_text(&server).await);
    assert_eq!(events.len(), 9, "one event replaced, none added or lost");
    assert_eq!(events[1], "{not json");
    assert!(serde_json::from_str::<Value>(&events[0]).is_ok());
    assert!(serde_json::from_str::<Value>(&events[2]).is_ok());
    assert_eq!(events[8], "[DONE]");
}

#[tokio::test]
async fn big_event_is_inserted_whole_and_counted() {
    let fault = json!({"big_event_at": 1, "big_event_bytes": 200_000});
    let server = start_with("m1", Some(script(fault))).await;
    let events = sse_data(&stream_text(&server).await);
    assert_eq!(events.len(), 10, "one event added, none lost");
    let big: Value = serde_json::from_str(&events[1]).unwrap();
    let padding = big["padding"].as_str().unwrap();
    assert_eq!(padding.len(), 200_000);
    assert!(padding.bytes().all(|b| b == b'x'));
    assert!(serde_json::from_str::<Value>(&events[0]).is_ok());
    assert_eq!(events[9], "[DONE]");
    let sent = server.streamed_bytes();
    assert!((200_000..210_000).contains(&sent), "{sent}");
}

#[tokio::test]
async fn big_event_stops_when_the_client_stops_reading() {
    // The default 64 MiB: a reader that gives up after 1 MiB leaves the rest unsent.
    let server = start_with("m1", Some(script(json!({"big_event_at": 0})))).await;
    let resp = chat(&server, &chat_body("hi", json!({"stream": true}))).await;
    let mut body = Box::pin(resp.bytes_stream());
    let mut read = 0;
    while read < 1024 * 1024 {
        read += body.next().await.unwrap().unwrap().len();
    }
    drop(body);
    // The mock notices the closed connection on its next write and drops the body.
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.open_streams() > 0 {
        assert!(Instant::now() < deadline, "the stream is still open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let last = server.streamed_bytes();
    assert!(last < 32 * 1024 * 1024, "{last}");
    assert!(
        server
            .state()
            .fault()
            .is_some_and(|f| f.big_event_at == Some(0))
    );
}

#[tokio::test]
async fn no_done_ends_without_the_terminator() {
    let server = start_with("m1", Some(script(json!({"no_done": true})))).await;
    let events = sse_data(&stream_text(&server).await);
    assert_eq!(events.len(), 8);
    let last: Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn error_event_ends_the_stream_in_band() {
    let server = start_with("m1", Some(script(json!({"error_event_at": 2})))).await;
    let events = sse_data(&stream_text(&server).await);
    assert_eq!(events.len(), 3);
    let error: Value = serde_json::from_str(&events[2]).unwrap();
    assert_eq!(
        error,
        json!({"error": {"message": "mock in-stream error", "type": "server_error", "code": null}})
    );
}

#[tokio::test]
async fn split_writes_cut_events_into_pieces_read_one_by_one() {
    let body = chat_body("héllo 日本語 🚀", json!({"stream": true}));
    let whole = chat(&start("m1").await, &body).await.text().await.unwrap();
    let server = start_with("m1", Some(script(json!({"split_writes": 3})))).await;
    let resp = chat(&server, &body).await;
    let mut body = Box::pin(resp.bytes_stream());
    let mut bytes = Vec::new();
    let mut reads = 0;
    let mut cut_in_a_character = false;
    while let Some(chunk) = body.next().await {
        let chunk = chunk.unwrap();
        assert!(chunk.len() <= 3, "a read larger than a piece: {chunk:?}");
        bytes.extend_from_slice(&chunk);
        cut_in_a_character |= std::str::from_utf8(&bytes).is_err();
        reads += 1;
    }
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        cut_in_a_character,
        "some read ended inside a multi-byte character"
    );
    let events = sse_data(&text);
    // Each event is cut on its own: ceil(len / 3) pieces of "data: …\n\n".
    let pieces: usize = events.iter().map(|d| (d.len() + 8).div_ceil(3)).sum();
    assert_eq!(reads, pieces);
    assert_eq!(text, whole, "the same bytes, only cut");
    assert!(text.contains("日本語"), "{text}");
    assert!(
        serde_json::from_value::<FaultScript>(json!({"split_writes": 0}))
            .unwrap()
            .validate()
            .is_err()
    );
}

#[tokio::test]
async fn times_limits_the_number_of_faults() {
    let server = start_with("m1", Some(script(json!({"status": 500, "times": 2})))).await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(status_of(&server).await);
    }
    assert_eq!(seen, [500, 500, 200, 200]);

    // Setting a script again restarts its count.
    server.set_fault(Some(script(json!({"status": 500, "times": 1}))));
    assert_eq!(status_of(&server).await, 500);
    assert_eq!(status_of(&server).await, 200);
}

#[tokio::test]
async fn fail_percent_is_deterministic() {
    let server = start_with(
        "m1",
        Some(script(json!({"status": 500, "fail_percent": 50.0}))),
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..6 {
        seen.push(status_of(&server).await);
    }
    assert_eq!(seen, [500, 200, 500, 200, 500, 200]);

    // A seeded share is irregular but reproducible: two servers agree request by request.
    let seeded = script(json!({"status": 500, "fail_percent": 40.0, "seed": 42}));
    let a = start_with("a", Some(seeded.clone())).await;
    let b = start_with("b", Some(seeded)).await;
    let mut pattern = Vec::new();
    for _ in 0..20 {
        let (sa, sb) = (status_of(&a).await, status_of(&b).await);
        assert_eq!(sa, sb);
        pattern.push(sa);
    }
    assert!(
        pattern.contains(&500) && pattern.contains(&200),
        "{pattern:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn window_faults_only_between_its_bounds() {
    let server = start_with(
        "m1",
        Some(script(json!({"down_from_ms": 1000, "down_to_ms": 2000}))),
    )
    .await;
    assert_eq!(status_of(&server).await, 200);
    tokio::time::advance(Duration::from_millis(1500)).await;
    assert_eq!(
        status_of(&server).await,
        503,
        "no status in a window means 503"
    );
    tokio::time::advance(Duration::from_millis(1000)).await;
    assert_eq!(status_of(&server).await, 200);
}

#[tokio::test(start_paused = true)]
async fn cycle_repeats_the_outage() {
    let server = start_with(
        "m1",
        Some(script(
            json!({"cycle_period_ms": 10_000, "cycle_down_ms": 4000, "status": 529}),
        )),
    )
    .await;
    let mut seen = Vec::new();
    for _ in 0..4 {
        seen.push(status_of(&server).await);
        tokio::time::advance(Duration::from_millis(5000)).await;
    }
    // t = 0 (down), 5 s (up), 10 s (down), 15 s (up)
    assert_eq!(seen, [529, 200, 529, 200]);
}

#[tokio::test]
async fn header_fault_wins_over_the_script() {
    let server = start_with("m1", Some(script(json!({"status": 503, "times": 1})))).await;
    let url = format!("{}/chat/completions", server.base_url());
    let send = |fault: &'static str| {
        client()
            .post(&url)
            .header("x-mock-fault", fault)
            .json(&chat_body("hi", json!({})))
            .send()
    };

    let resp = send(r#"{"status":401}"#).await.unwrap();
    assert_eq!(resp.status(), 401);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_api_key");

    // A harmless header fault shields the request from the script, whose budget is untouched.
    assert_eq!(send(r#"{"latency_ms":1}"#).await.unwrap().status(), 200);
    assert_eq!(status_of(&server).await, 503);
    assert_eq!(status_of(&server).await, 200);

    let bad = send("{nope").await.unwrap();
    assert_eq!(bad.status(), 400);
    let v: Value = bad.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("x-mock-fault")
    );
}

#[tokio::test]
async fn content_filter_blocks_the_reply() {
    let server = start_with("m1", Some(script(json!({"content_filter": true})))).await;
    let tools = json!({"tools": [{"type": "function", "function": {"name": "f"}}]});
    for extra in [json!({}), tools] {
        let resp = chat(&server, &chat_body("hi", extra)).await;
        assert_eq!(resp.status(), 200, "a filter is not an outage");
        let v: Value = resp.json().await.unwrap();
        let choice = &v["choices"][0];
        assert_eq!(choice["finish_reason"], "content_filter");
        assert_eq!(
            choice["message"],
            json!({"role": "assistant", "content": ""})
        );
        assert_eq!(v["usage"]["completion_tokens"], 0);
    }

    let events = sse_data(&stream_text(&server).await);
    assert_eq!(events.len(), 3, "role, finish, [DONE]: {events:?}");
    let role: Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(
        role["choices"][0]["delta"],
        json!({"role": "assistant", "content": ""})
    );
    let finish: Value = serde_json::from_str(&events[1]).unwrap();
    assert_eq!(finish["choices"][0]["finish_reason"], "content_filter");
    assert_eq!(finish["choices"][0]["delta"], json!({}));
    assert_eq!(events[2], "[DONE]");
}

#[tokio::test]
async fn context_too_long_is_context_length_exceeded() {
    let server = start_with("m1", Some(script(json!({"context_too_long": true})))).await;
    let resp = chat(&server, &chat_body("hi", json!({"stream": true}))).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    // "hi" is ceil(2/4)+3 = 4 tokens; the claim is the limit plus that.
    assert_eq!(
        v,
        json!({"error": {
            "message": "This model's maximum context length is 8192 tokens. However, your messages resulted in 8196 tokens. Please reduce the length of the messages.",
            "type": "invalid_request_error",
            "param": "messages",
            "code": "context_length_exceeded",
        }})
    );

    let resp = post(
        &server,
        "/v1/embeddings",
        &json!({"model": "e", "input": "hello"}),
    )
    .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "context_length_exceeded");
    assert_eq!(v["error"]["param"], "input");

    // A status wins over the answer-changing effects.
    server.set_fault(Some(script(
        json!({"context_too_long": true, "content_filter": true, "status": 429}),
    )));
    assert_eq!(status_of(&server).await, 429);
}

#[test]
fn new_fault_fields_round_trip() {
    let s = script(
        json!({"content_filter": true, "context_too_long": true, "prediction_status": "canceled"}),
    );
    assert!(s.content_filter && s.context_too_long);
    assert_eq!(
        s.prediction_status,
        Some(nines_mock::PredictionStatus::Canceled)
    );
    assert_eq!(
        serde_json::to_value(&s).unwrap(),
        json!({"content_filter": true, "context_too_long": true, "prediction_status": "canceled"})
    );
    let british = script(json!({"prediction_status": "cancelled"}));
    assert_eq!(
        british.prediction_status,
        Some(nines_mock::PredictionStatus::Canceled)
    );
    assert!(serde_json::from_value::<FaultScript>(json!({"prediction_status": "lost"})).is_err());
    assert!(!FaultScript::default().content_filter);
}
