//! Helpers shared by the integration tests: a mock on port 0, a plain HTTP client, SSE parsing.
#![allow(dead_code)] // each test binary uses a different subset

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
