//! The Gemini, Replicate and Runway provider clients over real HTTP against nines-mock, through
//! `Upstream::call` and `Upstream::probe` directly (the translation of client requests is the
//! pipeline's; here the bodies are built with nines-protocol's encoders). Every test checks the
//! mock's hit counts and what it recorded.

use bytes::Bytes;
use futures_util::StreamExt;
use nines_gateway::Config;
use nines_gateway::providers::{
    Call, Endpoint, Outcome, PREDICTION_ID, PREDICTION_MODEL, ReplyBody, Upstream,
};
use nines_gateway::resilience::FailureClass;
use nines_gateway::resilience::class::classify;
use nines_mock::{FaultScript, MockOptions, MockServer};
use nines_protocol::unified::{ChatRequest, EmbeddingsRequest, EncodingFormat, Message, Role};
use nines_protocol::{gemini, replicate};
use serde_json::{Value, json};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::time::Instant;

const SECRET: &str = "sk-upstream-secret-0001";
const GENERATE: &str = "/v1beta/models/{model}:generateContent";
const STREAM: &str = "/v1beta/models/{model}:streamGenerateContent";
const EMBED: &str = "/v1beta/models/{model}:batchEmbedContents";
const GEMINI_MODEL: &str = "/v1beta/models/{model}";
const PREDICTIONS: &str = "/v1/models/{owner}/{name}/predictions";
const PREDICTION_STREAM: &str = "/v1/stream/{id}";

/// A mock named `name` and one upstream of `provider` for `model` in front of it.
pub async fn native(provider: &str, model: &str, name: &str) -> (MockServer, Upstream) {
    let mock = MockServer::start(
        "127.0.0.1:0".parse().unwrap(),
        MockOptions {
            name: name.to_owned(),
            models: vec![model.to_owned()],
            fault: None,
        },
    )
    .await
    .unwrap();
    let text = format!(
        "[resilience.probes]\nenabled = false\n\n[[deployments]]\nname = \"n0\"\nprovider = \
         \"{provider}\"\nmodel = \"{model}\"\nbase_url = \"http://{}\"\napi_keys = \
         [\"env:TEST_KEY\"]\ntimeouts = {{ first_byte = \"2s\", idle = \"2s\", total = \"10s\" }}\n",
        mock.addr()
    );
    let config = Config::parse(Path::new("native.toml"), &text, &|name| {
        (name == "TEST_KEY").then(|| SECRET.to_owned())
    })
    .unwrap();
    let upstream = Upstream::new(Arc::clone(&config.deployments[0])).unwrap();
    (mock, upstream)
}

async fn call(upstream: &Upstream, endpoint: Endpoint, body: Vec<u8>, stream: bool) -> Outcome {
    upstream
        .call(Call {
            endpoint,
            key: &upstream.deployment.keys[0],
            body: Bytes::from(body),
            stream,
            request_id: "req-native",
            deadline: Instant::now() + Duration::from_secs(10),
            traceparent: None,
            first_byte: None,
        })
        .await
}

fn fault(mock: &MockServer, script: Value) {
    mock.set_fault(Some(serde_json::from_value::<FaultScript>(script).unwrap()));
}

fn chat(text: &str, stream: bool) -> ChatRequest {
    let mut request = ChatRequest::new("ignored", vec![Message::text(Role::User, text)]);
    request.stream = stream;
    request
}

fn describe(outcome: &Outcome) -> String {
    match outcome {
        Outcome::Reply(r) => format!("reply {}", r.status),
        Outcome::Status { status, body, .. } => {
            format!("status {status}: {}", String::from_utf8_lossy(body))
        }
        Outcome::StreamError { data } => format!("stream error: {data}"),
        Outcome::Transport(t) => format!("transport: {}", t.describe()),
    }
}

/// The whole body of a full reply.
fn full(outcome: Outcome) -> Bytes {
    match outcome {
        Outcome::Reply(reply) => match reply.body {
            ReplyBody::Full(body) => body,
            ReplyBody::Stream { .. } => panic!("a stream, expected a full body"),
        },
        other => panic!("expected a reply, got {}", describe(&other)),
    }
}

/// A streamed reply: its head (at least one complete event), the head and the rest read to
/// the end, and its headers.
async fn streamed(outcome: Outcome) -> (Bytes, String, http::HeaderMap) {
    let Outcome::Reply(reply) = outcome else {
        panic!("expected a reply, got {}", describe(&outcome));
    };
    let ReplyBody::Stream { head, mut rest } = reply.body else {
        panic!("a full body, expected a stream");
    };
    let mut all = head.to_vec();
    while let Some(chunk) = rest.next().await {
        all.extend_from_slice(&chunk.unwrap());
    }
    (head, String::from_utf8(all).unwrap(), reply.headers)
}

fn events(text: &str) -> Vec<nines_protocol::sse::SseEvent> {
    let mut decoder = nines_protocol::sse::SseDecoder::new();
    let mut events = Vec::new();
    decoder.feed(text.as_bytes(), &mut events).unwrap();
    decoder.finish(&mut events);
    events
}

fn header<'a>(request: &'a nines_mock::RecordedRequest, name: &str) -> Option<&'a str> {
    request
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

// ---- Gemini ----

#[tokio::test]
async fn gemini_generates_with_its_key_header() {
    let (mock, upstream) = native("gemini", "gemini-test", "g0").await;
    let body = gemini::encode_request(&chat("Hello there", false));
    let reply = full(call(&upstream, Endpoint::ChatCompletions, body, false).await);
    let response = gemini::decode_response(&reply).unwrap();
    assert_eq!(
        response.choices[0].message.joined_text(),
        "Hello from g0! You said: Hello there"
    );
    assert_eq!(mock.hits(GENERATE), 1);
    assert_eq!(mock.total_hits(), 1);
    let recorded = mock.requests();
    assert_eq!(header(&recorded[0], "x-goog-api-key"), Some(SECRET));
    assert_eq!(header(&recorded[0], "authorization"), None);
    assert_eq!(header(&recorded[0], "x-request-id"), Some("req-native"));
}

#[tokio::test]
async fn gemini_streams_after_the_first_event() {
    let (mock, upstream) = native("gemini", "gemini-test", "g0").await;
    let body = gemini::encode_request(&chat("Hello there", true));
    let outcome = call(&upstream, Endpoint::ChatCompletions, body, true).await;
    let (head, all, _) = streamed(outcome).await;
    assert!(!events(&String::from_utf8_lossy(&head)).is_empty());
    let mut decoder = gemini::StreamDecoder::new();
    let mut out = Vec::new();
    let mut text = String::new();
    for event in events(&all) {
        decoder.feed(&event.data, &mut out).unwrap();
    }
    for event in out {
        if let nines_protocol::unified::StreamEvent::TextDelta { text: t, .. } = event {
            text.push_str(&t);
        }
    }
    assert_eq!(text, "Hello from g0! You said: Hello there");
    assert!(
        decoder.is_done(),
        "the last chunk carries the finish reason"
    );
    assert_eq!(mock.hits(STREAM), 1);
    assert_eq!(mock.total_hits(), 1);
    let recorded = mock.requests();
    assert_eq!(header(&recorded[0], "accept"), Some("text/event-stream"));
    assert_eq!(header(&recorded[0], "x-goog-api-key"), Some(SECRET));
}

#[tokio::test]
async fn gemini_embeddings_go_to_batch_embed_contents() {
    let (mock, upstream) = native("gemini", "text-embedding-004", "g0").await;
    let request = EmbeddingsRequest {
        model: "ignored".into(),
        inputs: vec!["one".into(), "two".into()],
        dimensions: None,
        encoding_format: EncodingFormat::Float,
        extra: serde_json::Map::new(),
    };
    let body = gemini::batch_embed_contents_request(&request, "text-embedding-004");
    let reply = full(call(&upstream, Endpoint::Embeddings, body, false).await);
    let response = gemini::decode_embeddings_response(&reply).unwrap();
    assert_eq!(response.vectors.len(), 2);
    assert_eq!(mock.hits(EMBED), 1);
    assert_eq!(mock.total_hits(), 1);
    assert_eq!(header(&mock.requests()[0], "x-goog-api-key"), Some(SECRET));
}

#[tokio::test]
async fn gemini_faults_classify_as_retryable() {
    let (mock, upstream) = native("gemini", "gemini-test", "g0").await;
    let body = || gemini::encode_request(&chat("Hello there", false));
    for (status, class) in [
        (503, FailureClass::Overloaded),
        (500, FailureClass::Server),
        (429, FailureClass::RateLimited),
    ] {
        fault(&mock, json!({"status": status, "times": 1}));
        let outcome = call(&upstream, Endpoint::ChatCompletions, body(), false).await;
        assert!(
            matches!(&outcome, Outcome::Status { status: s, .. } if s.as_u16() == status),
            "{}",
            describe(&outcome)
        );
        assert_eq!(classify(&outcome), class);
        assert!(class.is_retryable());
    }
    // An error event before any content, in a 200 stream: still before the commit point.
    fault(&mock, json!({"error_event_at": 0, "times": 1}));
    let stream_body = gemini::encode_request(&chat("Hello there", true));
    let outcome = call(&upstream, Endpoint::ChatCompletions, stream_body, true).await;
    assert!(
        matches!(outcome, Outcome::StreamError { .. }),
        "{}",
        describe(&outcome)
    );
    assert!(classify(&outcome).is_retryable());
    assert_eq!(mock.hits(GENERATE), 3);
    assert_eq!(mock.hits(STREAM), 1);
    assert_eq!(mock.total_hits(), 4);
}

#[tokio::test]
async fn gemini_probes_get_the_model() {
    let (mock, upstream) = native("gemini", "gemini-test", "g0").await;
    let outcome = upstream.probe(0, Duration::from_secs(2)).await;
    assert_eq!(
        classify(&outcome),
        FailureClass::Ok,
        "{}",
        describe(&outcome)
    );
    let model: Value = serde_json::from_slice(&full(outcome)).unwrap();
    assert_eq!(model["name"], "models/gemini-test");
    fault(&mock, json!({"status": 500, "times": 1}));
    let outcome = upstream.probe(0, Duration::from_secs(2)).await;
    assert_eq!(
        classify(&outcome),
        FailureClass::Server,
        "{}",
        describe(&outcome)
    );
    assert_eq!(mock.hits(GEMINI_MODEL), 2);
    assert_eq!(mock.total_hits(), 2);
    assert_eq!(header(&mock.requests()[0], "x-goog-api-key"), Some(SECRET));
}

// ---- Replicate ----

#[tokio::test]
async fn replicate_waits_for_the_prediction() {
    let (mock, upstream) = native("replicate", "meta/llama-test", "r0").await;
    let body = replicate::encode_create_request(&chat("Hello there", false));
    let outcome = call(&upstream, Endpoint::ChatCompletions, body, false).await;
    assert!(
        matches!(&outcome, Outcome::Reply(r) if r.status == 200),
        "the answer, not the creation: {}",
        describe(&outcome)
    );
    let reply = full(outcome);
    let prediction = replicate::decode_prediction(&reply).unwrap();
    let replicate::PredictionOutcome::Succeeded(response) = prediction.outcome() else {
        panic!("not succeeded: {prediction:?}");
    };
    assert_eq!(
        response.choices[0].message.joined_text(),
        "Hello from r0! You said: Hello there"
    );
    assert_eq!(prediction.model, "meta/llama-test");
    assert_eq!(mock.hits(PREDICTIONS), 1);
    assert_eq!(mock.total_hits(), 1);
    let recorded = mock.requests();
    let bearer = format!("Bearer {SECRET}");
    assert_eq!(header(&recorded[0], "authorization"), Some(bearer.as_str()));
    // Below the deployment's 2 s first-byte timeout.
    assert_eq!(header(&recorded[0], "prefer"), Some("wait=1"));
}

#[tokio::test]
async fn replicate_streams_from_the_prediction_stream_url() {
    let (mock, upstream) = native("replicate", "meta/llama-test", "r0").await;
    // Encoded without `stream`: the provider adds it, since a stream URL needs it.
    let body = replicate::encode_create_request(&chat("Hello there", false));
    let outcome = call(&upstream, Endpoint::ChatCompletions, body, true).await;
    let (head, all, headers) = streamed(outcome).await;
    let head_events = events(&String::from_utf8_lossy(&head));
    assert_eq!(head_events[0].event.as_deref(), Some("output"));
    let events = events(&all);
    let text: String = events
        .iter()
        .filter(|e| e.event.as_deref() == Some("output"))
        .map(|e| e.data.as_str())
        .collect();
    assert_eq!(text, "Hello from r0! You said: Hello there");
    assert_eq!(
        events.last().unwrap().event.as_deref(),
        Some("done"),
        "the rest of the stream is readable to its end"
    );
    let id = headers[PREDICTION_ID].to_str().unwrap();
    assert!(id.starts_with("mock"), "{id}");
    assert_eq!(headers[PREDICTION_MODEL], "meta/llama-test");

    assert_eq!(mock.hits(PREDICTIONS), 1);
    assert_eq!(mock.hits(PREDICTION_STREAM), 1);
    assert_eq!(mock.total_hits(), 2);
    let recorded = mock.requests();
    let created: Value = serde_json::from_str(&recorded[0].body).unwrap();
    assert_eq!(created["stream"], true);
    assert_eq!(header(&recorded[0], "prefer"), None);
    let bearer = format!("Bearer {SECRET}");
    assert_eq!(header(&recorded[0], "authorization"), Some(bearer.as_str()));
    assert_eq!(recorded[1].route, PREDICTION_STREAM);
    assert_eq!(header(&recorded[1], "accept"), Some("text/event-stream"));
    assert_eq!(
        header(&recorded[1], "authorization"),
        None,
        "the key is not sent to the stream URL"
    );
}

#[tokio::test]
async fn replicate_failed_predictions_are_retryable_failures() {
    let (mock, upstream) = native("replicate", "meta/llama-test", "r0").await;
    let body = || replicate::encode_create_request(&chat("Hello there", false));

    fault(&mock, json!({"prediction_status": "failed", "times": 1}));
    let outcome = call(&upstream, Endpoint::ChatCompletions, body(), false).await;
    let Outcome::Status {
        status,
        body: error,
        ..
    } = &outcome
    else {
        panic!("{}", describe(&outcome));
    };
    assert_eq!(status.as_u16(), 502);
    assert!(
        String::from_utf8_lossy(error).contains("mock prediction failed"),
        "{}",
        describe(&outcome)
    );
    assert_eq!(classify(&outcome), FailureClass::Server);

    fault(&mock, json!({"prediction_status": "canceled", "times": 1}));
    let outcome = call(&upstream, Endpoint::ChatCompletions, body(), false).await;
    assert_eq!(
        classify(&outcome),
        FailureClass::Server,
        "{}",
        describe(&outcome)
    );

    // Flagged content would be flagged anywhere: relayed, not retried.
    fault(&mock, json!({"content_filter": true, "times": 1}));
    let outcome = call(&upstream, Endpoint::ChatCompletions, body(), false).await;
    assert_eq!(
        classify(&outcome),
        FailureClass::ContentFiltered,
        "{}",
        describe(&outcome)
    );

    fault(&mock, json!({"context_too_long": true, "times": 1}));
    let outcome = call(&upstream, Endpoint::ChatCompletions, body(), false).await;
    assert_eq!(
        classify(&outcome),
        FailureClass::ContextTooLong,
        "{}",
        describe(&outcome)
    );

    for (status, class) in [
        (500, FailureClass::Server),
        (429, FailureClass::RateLimited),
    ] {
        fault(&mock, json!({"status": status, "times": 1}));
        let outcome = call(&upstream, Endpoint::ChatCompletions, body(), false).await;
        assert_eq!(classify(&outcome), class, "{}", describe(&outcome));
    }
    assert_eq!(mock.hits(PREDICTIONS), 6);
    assert_eq!(mock.total_hits(), 6);
}

#[tokio::test]
async fn replicate_stream_failures_before_the_first_token_are_retryable() {
    let (mock, upstream) = native("replicate", "meta/llama-test", "r0").await;
    let body = || replicate::encode_create_request(&chat("Hello there", true));
    for script in [
        json!({"prediction_status": "failed", "times": 1}),
        json!({"prediction_status": "canceled", "times": 1}),
        json!({"error_event_at": 0, "times": 1}),
    ] {
        let outcome = call(&upstream, Endpoint::ChatCompletions, body(), true).await;
        assert!(
            matches!(outcome, Outcome::Reply(_)),
            "{}",
            describe(&outcome)
        );
        drop(outcome);
        fault(&mock, script.clone());
        let outcome = call(&upstream, Endpoint::ChatCompletions, body(), true).await;
        assert!(
            matches!(outcome, Outcome::StreamError { .. }),
            "{script}: {}",
            describe(&outcome)
        );
        assert_eq!(classify(&outcome), FailureClass::Server, "{script}");
    }
    assert_eq!(mock.hits(PREDICTIONS), 6);
    assert_eq!(mock.hits(PREDICTION_STREAM), 6);
    assert_eq!(mock.total_hits(), 12);
}

#[tokio::test]
async fn replicate_probes_get_the_model() {
    let (mock, upstream) = native("replicate", "meta/llama-test", "r0").await;
    let outcome = upstream.probe(0, Duration::from_secs(2)).await;
    assert_eq!(
        classify(&outcome),
        FailureClass::Ok,
        "{}",
        describe(&outcome)
    );
    fault(&mock, json!({"status": 503, "times": 1}));
    let outcome = upstream.probe(0, Duration::from_secs(2)).await;
    assert!(classify(&outcome).is_retryable(), "{}", describe(&outcome));
    assert_eq!(mock.hits("/v1/models/{id}"), 2);
    assert_eq!(mock.total_hits(), 2);
    let bearer = format!("Bearer {SECRET}");
    assert_eq!(
        header(&mock.requests()[0], "authorization"),
        Some(bearer.as_str())
    );
}

// ---- Runway ----

#[tokio::test]
async fn runway_serves_no_chat_and_probes_the_organization() {
    let (mock, upstream) = native("runway", "gen4_turbo", "w0").await;
    let body = serde_json::to_vec(&json!({"model": "x", "messages": []})).unwrap();
    let outcome = call(&upstream, Endpoint::ChatCompletions, body, false).await;
    assert_eq!(
        classify(&outcome),
        FailureClass::Client,
        "{}",
        describe(&outcome)
    );
    assert_eq!(mock.total_hits(), 0, "refused without a call");

    let outcome = upstream.probe(0, Duration::from_secs(2)).await;
    assert_eq!(
        classify(&outcome),
        FailureClass::Ok,
        "{}",
        describe(&outcome)
    );
    fault(&mock, json!({"status": 401, "times": 1}));
    let outcome = upstream.probe(0, Duration::from_secs(2)).await;
    assert_eq!(classify(&outcome), FailureClass::UpstreamAuth);
    assert_eq!(mock.hits("/v1/organization"), 2);
    assert_eq!(mock.total_hits(), 2);
    let recorded = mock.requests();
    assert_eq!(header(&recorded[0], "x-runway-version"), Some("2024-11-06"));
    let bearer = format!("Bearer {SECRET}");
    assert_eq!(header(&recorded[0], "authorization"), Some(bearer.as_str()));
}

/// The backstop behind routing's endpoint filter: an endpoint the dialect does not have is
/// refused without a call, as a client error that says nothing of the deployment's health.
#[tokio::test]
async fn an_endpoint_outside_the_dialect_is_refused_without_a_call() {
    let (mock, upstream) = native("anthropic", "claude-test", "a0").await;
    let body = serde_json::to_vec(&json!({"model": "x", "prompt": "hi"})).unwrap();
    let outcome = call(&upstream, Endpoint::Completions, body, false).await;
    assert_eq!(
        classify(&outcome),
        FailureClass::Client,
        "{}",
        describe(&outcome)
    );
    assert!(
        describe(&outcome).contains("do not serve legacy completions"),
        "{}",
        describe(&outcome)
    );
    assert_eq!(mock.total_hits(), 0);
}
