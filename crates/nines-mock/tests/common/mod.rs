//! Helpers shared by the integration tests: a mock on port 0, a plain HTTP client, SSE parsing.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::net::SocketAddr;

use nines_mock::{FaultScript, MockOptions, MockServer};
use serde_json::{Value, json};

pub const CHAT: &str = "/v1/chat/completions";

pub async fn start(name: &str) -> MockServer {
    start_with(name, None).await
}

pub async fn start_with(name: &str, fault: Option<FaultScript>) -> MockServer {
    let opts = MockOptions {
        name: name.to_owned(),
        models: vec!["mock-a".into(), "mock-b".into()],
        fault,
    };
    let bind: SocketAddr = "127.0.0.1:0".parse().unwrap();
    MockServer::start(bind, opts).await.unwrap()
}

pub fn client() -> reqwest::Client {
    // reqwest is built without a crypto provider; the tests only speak plain HTTP, but
    // building a client still needs one. A second install fails harmlessly.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder().no_proxy().build().unwrap()
}

/// A minimal chat request saying `text`, merged with `extra` fields.
pub fn chat_body(text: &str, extra: Value) -> Value {
    let mut body = json!({
        "model": "gpt-test",
        "messages": [{"role": "user", "content": text}],
    });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

pub async fn post(server: &MockServer, path: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("http://{}{path}", server.addr()))
        .json(body)
        .send()
        .await
        .unwrap()
}

pub async fn chat(server: &MockServer, body: &Value) -> reqwest::Response {
    post(server, CHAT, body).await
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| {
            event
                .strip_prefix("data: ")
                .unwrap_or_else(|| panic!("not a data event: {event:?}"))
                .to_owned()
        })
        .collect()
}

/// The JSON chunks of an SSE body, with the `[DONE]` terminator checked and removed.
pub fn sse_chunks(body: &str) -> Vec<Value> {
    let mut data = sse_data(body);
    assert_eq!(
        data.pop().as_deref(),
        Some("[DONE]"),
        "stream must end with [DONE]"
    );
    data.iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect()
}

/// A fault script from JSON.
pub fn script(v: Value) -> FaultScript {
    serde_json::from_value(v).unwrap()
}

/// One parsed SSE event.
#[derive(Debug, Clone, PartialEq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
}

impl SseEvent {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data)
            .unwrap_or_else(|e| panic!("event data is not JSON ({e}): {:?}", self.data))
    }
}

/// The events of an SSE body (`event:`, `id:` and one `data:` line each), in order.
pub fn sse_events(body: &str) -> Vec<SseEvent> {
    body.split("\n\n")
        .filter(|event| !event.is_empty())
        .map(|event| {
            let mut parsed = SseEvent {
                event: None,
                id: None,
                data: String::new(),
            };
            for line in event.lines() {
                if let Some(v) = line.strip_prefix("event: ") {
                    parsed.event = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("id: ") {
                    parsed.id = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ") {
                    parsed.data = v.to_owned();
                } else {
                    panic!("unexpected SSE line {line:?} in {event:?}");
                }
            }
            parsed
        })
        .collect()
}

/// The names of the events, in order.
pub fn event_names(events: &[SseEvent]) -> Vec<&str> {
    events
        .iter()
        .map(|e| e.event.as_deref().unwrap_or(""))
        .collect()
}

/// `POST {path}` with `headers` and a JSON body.
pub async fn post_with(
    server: &MockServer,
    path: &str,
    headers: &[(&str, &str)],
    body: &Value,
) -> reqwest::Response {
    let mut request = client()
        .post(format!("http://{}{path}", server.addr()))
        .json(body);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// `{method} {path}` with `headers` and no body.
pub async fn send_with(
    server: &MockServer,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> reqwest::Response {
    let mut request = client().request(method, format!("http://{}{path}", server.addr()));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    request.send().await.unwrap()
}

/// Read a streamed body until it fails; returns the text received before the failure.
/// Panics if the body ends cleanly.
pub async fn read_until_reset(resp: reqwest::Response) -> String {
    use futures_util::StreamExt;
    let mut body = Box::pin(resp.bytes_stream());
    let mut text = String::new();
    loop {
        match body.next().await {
            Some(Ok(bytes)) => text.push_str(&String::from_utf8_lossy(&bytes)),
            Some(Err(_)) => return text,
            None => panic!("stream ended cleanly after {text:?}"),
        }
    }
}

/// Read `events` complete SSE events, then check that nothing more arrives within `wait`
/// (use a paused clock). Returns the text received.
pub async fn read_until_stall(
    resp: reqwest::Response,
    events: usize,
    wait: std::time::Duration,
) -> String {
    use futures_util::StreamExt;
    let mut body = Box::pin(resp.bytes_stream());
    let mut text = String::new();
    while text.matches("\n\n").count() < events {
        let bytes = body.next().await.unwrap().unwrap();
        text.push_str(&String::from_utf8_lossy(&bytes));
    }
    let next = tokio::time::timeout(wait, body.next()).await;
    assert!(next.is_err(), "stream must stall, got {next:?}");
    text
}
