//! The conformance suite every provider kind must pass, over real HTTP against nines-mock's
//! dialect endpoints (never a real provider), in the style of tensorzero's
//! `generate_provider_tests!`: one macro instantiates the same scenarios for each kind
//! (`openai-compatible`, `anthropic`, `gemini`, `replicate`, `azure`, `bedrock`, `vertex`). The
//! cloud kinds authenticate as their services require, and the mock checks it: Azure's `api-key`
//! and `api-version`, Bedrock's SigV4 signature (made with the test credentials), Vertex's
//! access token (exchanged for a JWT signed with the test service account's key).
//!
//! Every kind is deployed as `primary` (mock0) in three models:
//!
//! | model    | deployments (context window)                                          |
//! |----------|-----------------------------------------------------------------------|
//! | `solo`   | `primary` (8000)                                                      |
//! | `chat`   | `primary` (8000), then `fallback`: openai-compatible on mock1 (16000) |
//! | `narrow` | `primary` (8000), then `small`: openai-compatible on mock2 (4000)     |
//!
//! One attempt per deployment (`max_attempts_per_deployment = 1`) and no probes, so the mocks'
//! hit counts are exactly the attempts the gateway made.
//!
//! Scenarios for OpenAI clients (`POST /v1/chat/completions`): plain completion; streaming (with
//! and without `stream_options.include_usage`); tools and streaming tools, or the documented 400
//! naming the missing capability; a multi-byte echo; a stream whose bytes arrive cut
//! mid-character (the mock's `split_writes`); and each failure class: 429, overloaded, 500, 401,
//! a first-byte timeout and a refused connection fail over to `fallback` (and are named with
//! their class when nothing is left); context-too-long moves only to a larger window; a content
//! filter is the answer; any other 4xx is relayed. Anthropic clients (`POST /v1/messages`) get
//! the same scenarios in their dialect. Scenarios failing on a known gateway bug are listed in
//! [`KNOWN_BUGS`] and run as expected failures.

use crate::harness::{Harness, error_of, sse_data};
use nines_protocol::sse::{SseDecoder, SseEvent};
use serde_json::{Value, json};

/// A multi-byte echo: two-byte Latin, three-byte CJK and a four-byte emoji.
const UNICODE: &str = "héllo wörld 日本語 🚀";
const PROMPT: &str = "Hello there";

/// How a provider kind answers the `content_filter` fault, as the client sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Filtered {
    /// A 200 whose finish reason says `content_filter` (Anthropic `refusal`, Gemini `SAFETY`).
    FinishReason,
    /// The upstream refused the request: its 400 `content_filter` error, relayed (Replicate's
    /// flagged prediction, E005).
    Rejected,
}

/// One provider kind as deployed on mock0.
#[derive(Clone, Copy, Debug)]
struct Kind {
    provider: &'static str,
    /// The upstream model id: what every answer must name as its `model`.
    model: &'static str,
    /// `base_url` of the deployment: `/v1` (OpenAI, Anthropic) or the host root.
    root: bool,
    /// The mock route of one attempt, non-streaming and streaming (Replicate: the creation).
    route: &'static str,
    stream_route: &'static str,
    tools: bool,
    /// The dialect's "overloaded" status (nines classes it `overloaded`).
    overloaded: u16,
    /// Whether the dialect's stream reports token usage at all.
    stream_usage: bool,
    filtered: Filtered,
    /// The deployment's credentials and provider settings, in TOML.
    auth: &'static str,
}

/// An API key in `api_keys`: what most kinds take.
const API_KEY: &str = r#"api_keys = ["env:TEST_KEY"]"#;

const OPENAI_COMPATIBLE: Kind = Kind {
    provider: "openai-compatible",
    model: "oai-up",
    root: false,
    route: "/v1/chat/completions",
    stream_route: "/v1/chat/completions",
    tools: true,
    overloaded: 529,
    stream_usage: true,
    filtered: Filtered::FinishReason,
    auth: API_KEY,
};

const ANTHROPIC: Kind = Kind {
    provider: "anthropic",
    model: "claude-up",
    root: false,
    route: "/v1/messages",
    stream_route: "/v1/messages",
    tools: true,
    overloaded: 529,
    stream_usage: true,
    filtered: Filtered::FinishReason,
    auth: API_KEY,
};

const GEMINI: Kind = Kind {
    provider: "gemini",
    model: "gemini-up",
    root: true,
    route: "/v1beta/models/{model}:generateContent",
    stream_route: "/v1beta/models/{model}:streamGenerateContent",
    tools: true,
    // Gemini has no 529: overload is 503 UNAVAILABLE "The model is overloaded".
    overloaded: 503,
    stream_usage: true,
    filtered: Filtered::FinishReason,
    auth: API_KEY,
};

const REPLICATE: Kind = Kind {
    provider: "replicate",
    model: "meta/llama-up",
    root: true,
    route: "/v1/models/{owner}/{name}/predictions",
    stream_route: "/v1/models/{owner}/{name}/predictions",
    tools: false,
    overloaded: 529,
    // A prediction's stream carries text only; its token counts are in the prediction object.
    stream_usage: false,
    filtered: Filtered::Rejected,
    auth: API_KEY,
};

const AZURE: Kind = Kind {
    provider: "azure",
    model: "azure-up",
    root: true,
    route: "/openai/deployments/{deployment}/chat/completions",
    stream_route: "/openai/deployments/{deployment}/chat/completions",
    tools: true,
    overloaded: 503,
    stream_usage: true,
    filtered: Filtered::FinishReason,
    auth: "api_keys = [\"env:TEST_KEY\"]\napi_version = \"2024-10-21\"",
};

const BEDROCK: Kind = Kind {
    provider: "bedrock",
    // A real id's shape: its `:` must be percent-encoded in the path and signed as sent.
    model: "anthropic.claude-up-v1:0",
    root: true,
    route: "/model/{model}/converse",
    stream_route: "/model/{model}/converse-stream",
    tools: true,
    overloaded: 503,
    stream_usage: true,
    filtered: Filtered::FinishReason,
    auth: "region = \"us-east-1\"\naws_access_key_id = \"env:TEST_AWS_ACCESS_KEY_ID\"\n\
           aws_secret_access_key = \"env:TEST_AWS_SECRET_ACCESS_KEY\"",
};

const VERTEX: Kind = Kind {
    provider: "vertex",
    model: "gemini-up",
    root: true,
    route: "/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:generateContent",
    stream_route: "/v1/projects/{project}/locations/{location}/publishers/google/models/{model}:streamGenerateContent",
    tools: true,
    overloaded: 503,
    stream_usage: true,
    filtered: Filtered::FinishReason,
    auth: "project = \"nines-test-project\"\nregion = \"us-central1\"\n\
           credentials_file = \"{mock0_service_account}\"",
};

impl Kind {
    /// Attempts the primary deployment received (Replicate: predictions created).
    fn calls(&self, h: &Harness, stream: bool) -> u64 {
        h.mock(0).hits(if stream {
            self.stream_route
        } else {
            self.route
        })
    }

    fn base(&self, mock: &str) -> String {
        if self.root {
            format!("{{{mock}_root}}")
        } else {
            format!("{{{mock}}}")
        }
    }
}

/// The config: `primary` of `kind` at `base`, the OpenAI-compatible `fallback` and `small`.
fn template(kind: Kind, base: &str) -> String {
    format!(
        r#"
[server]
listen = "127.0.0.1:0"

[resilience]
max_attempts_per_deployment = 1

[resilience.probes]
enabled = false

[[deployments]]
name = "primary"
provider = "{provider}"
model = "{model}"
base_url = "{base}"
{auth}
context_window = 8000
timeouts = {{ first_byte = "500ms", idle = "2s", total = "10s" }}

[[deployments]]
name = "fallback"
provider = "openai-compatible"
model = "fallback-up"
base_url = "{{mock1}}"
api_keys = ["env:TEST_KEY_2"]
context_window = 16000

[[deployments]]
name = "small"
provider = "openai-compatible"
model = "small-up"
base_url = "{{mock2}}"
api_keys = ["env:TEST_KEY_2"]
context_window = 4000

[[models]]
name = "solo"
deployments = ["primary"]

[[models]]
name = "chat"
deployments = ["primary", "fallback"]

[[models]]
name = "narrow"
deployments = ["primary", "small"]
"#,
        provider = kind.provider,
        model = kind.model,
        auth = kind.auth,
    )
}

async fn start(kind: Kind) -> Harness {
    Harness::start(3, &template(kind, &kind.base("mock0"))).await
}

/// The gateway with `primary` pointing at a port that refuses connections: bound (so no other
/// server of the test can be given it) but never listening. Keep the socket while the test runs.
async fn start_refused(kind: Kind) -> (Harness, tokio::net::TcpSocket) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let closed = socket.local_addr().unwrap();
    let base = if kind.root {
        format!("http://{closed}")
    } else {
        format!("http://{closed}/v1")
    };
    (Harness::start(3, &template(kind, &base)).await, socket)
}

/// What mock `name` answers to a last user message `said`.
fn reply(name: &str, said: &str) -> String {
    format!("Hello from {name}! You said: {said}")
}

// ---- OpenAI clients ----

fn chat_body(model: &str, said: &str, stream: bool) -> Value {
    let mut body = json!({"model": model, "messages": [{"role": "user", "content": said}]});
    if stream {
        body["stream"] = json!(true);
        body["stream_options"] = json!({"include_usage": true});
    }
    body
}

fn tools_body(model: &str, stream: bool) -> Value {
    let mut body = chat_body(model, "What is the weather in Paris?", stream);
    body["tools"] = json!([{
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "The weather in a city",
            "parameters": {
                "type": "object",
                "properties": {"city": {"type": "string"}},
                "required": ["city"]
            }
        }
    }]);
    body
}

/// A whole OpenAI stream, checked for its shape: event-stream, chunks that are
/// `chat.completion.chunk`s of one id, naming `model`, ended by `[DONE]`.
struct Streamed {
    chunks: Vec<Value>,
}

impl Streamed {
    async fn read(r: reqwest::Response, model: &str) -> Streamed {
        assert_eq!(r.status(), 200);
        let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        let data = sse_data(r).await;
        assert_eq!(
            data.last().map(String::as_str),
            Some("[DONE]"),
            "ends with [DONE]: {data:?}"
        );
        assert_eq!(data.iter().filter(|d| *d == "[DONE]").count(), 1);
        let chunks: Vec<Value> = data[..data.len() - 1]
            .iter()
            .map(|d| serde_json::from_str(d).unwrap_or_else(|e| panic!("{e}: {d}")))
            .collect();
        assert!(!chunks.is_empty());
        for chunk in &chunks {
            assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
            assert_eq!(chunk["model"], model, "{chunk}");
            assert_eq!(chunk["id"], chunks[0]["id"], "one id per stream: {chunk}");
            assert!(chunk["choices"].is_array(), "{chunk}");
        }
        assert!(chunks[0]["id"].as_str().is_some_and(|id| !id.is_empty()));
        Streamed { chunks }
    }

    fn text(&self) -> String {
        self.chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
            .collect()
    }

    fn finish_reasons(&self) -> Vec<&str> {
        self.chunks
            .iter()
            .filter_map(|c| c["choices"][0]["finish_reason"].as_str())
            .collect()
    }

    /// Chunks with a non-null `usage`.
    fn usage(&self) -> Vec<&Value> {
        self.chunks
            .iter()
            .filter(|c| !c["usage"].is_null())
            .map(|c| &c["usage"])
            .collect()
    }

    /// The tool calls, reassembled from their deltas: (id, name, arguments) by index.
    fn tool_calls(&self) -> Vec<(String, String, String)> {
        let mut calls: Vec<(String, String, String)> = Vec::new();
        for chunk in &self.chunks {
            let Some(deltas) = chunk["choices"][0]["delta"]["tool_calls"].as_array() else {
                continue;
            };
            for delta in deltas {
                let index = delta["index"]
                    .as_u64()
                    .expect("a tool call delta has an index");
                let index = usize::try_from(index).unwrap();
                if calls.len() <= index {
                    calls.resize(index + 1, Default::default());
                }
                let call = &mut calls[index];
                if let Some(id) = delta["id"].as_str() {
                    call.0.push_str(id);
                }
                if let Some(name) = delta["function"]["name"].as_str() {
                    call.1.push_str(name);
                }
                if let Some(piece) = delta["function"]["arguments"].as_str() {
                    call.2.push_str(piece);
                }
            }
        }
        calls
    }
}

fn assert_usage(usage: &Value) {
    let prompt = usage["prompt_tokens"].as_u64().unwrap_or(0);
    let completion = usage["completion_tokens"].as_u64().unwrap_or(0);
    assert!(prompt > 0 && completion > 0, "usage: {usage}");
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(prompt + completion),
        "{usage}"
    );
}

/// A full answer from `deployment`, checked for the OpenAI shape; returns the body.
async fn completion(r: reqwest::Response, deployment: &str, model: &str) -> Value {
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], deployment);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion", "{body}");
    assert_eq!(body["model"], model, "the model that answered: {body}");
    assert!(
        body["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{body}"
    );
    assert!(body["created"].as_u64().is_some_and(|t| t > 0), "{body}");
    assert_eq!(body["choices"].as_array().map(Vec::len), Some(1), "{body}");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant", "{body}");
    body
}

async fn plain(kind: Kind) {
    let h = start(kind).await;
    let r = h.chat(&chat_body("solo", PROMPT, false)).await;
    assert_eq!(r.headers()["x-nines-attempts"], "1");
    let body = completion(r, "primary", kind.model).await;
    let choice = &body["choices"][0];
    assert_eq!(
        choice["message"]["content"],
        reply("mock0", PROMPT),
        "{body}"
    );
    assert_eq!(choice["finish_reason"], "stop", "{body}");
    assert_usage(&body["usage"]);
    assert_eq!(kind.calls(&h, false), 1);
    assert_eq!(h.mock(0).total_hits(), 1);
}

async fn streaming(kind: Kind) {
    let h = start(kind).await;
    let whole = completion(
        h.chat(&chat_body("solo", PROMPT, false)).await,
        "primary",
        kind.model,
    )
    .await;

    let r = h.chat(&chat_body("solo", PROMPT, true)).await;
    assert_eq!(r.headers()["x-nines-deployment"], "primary");
    let streamed = Streamed::read(r, kind.model).await;
    assert_eq!(
        streamed.text(),
        whole["choices"][0]["message"]["content"].as_str().unwrap(),
        "the streamed text is the non-streamed text"
    );
    assert_eq!(streamed.finish_reasons(), ["stop"]);
    let first = &streamed.chunks[0]["choices"][0]["delta"];
    assert_eq!(first["role"], "assistant", "the first delta opens the role");
    let usage = streamed.usage();
    if kind.stream_usage {
        assert_eq!(usage.len(), 1, "one usage chunk: {:?}", streamed.chunks);
        assert_usage(usage[0]);
        let last = streamed.chunks.last().unwrap();
        assert_eq!(
            last["choices"],
            json!([]),
            "usage comes last, alone: {last}"
        );
        assert_eq!(*usage[0], last["usage"]);
    } else {
        assert!(usage.is_empty(), "{usage:?}");
    }

    // Without `include_usage`, no chunk carries usage.
    let mut body = chat_body("solo", PROMPT, true);
    body.as_object_mut().unwrap().remove("stream_options");
    let streamed = Streamed::read(h.chat(&body).await, kind.model).await;
    assert_eq!(streamed.text(), reply("mock0", PROMPT));
    assert!(streamed.usage().is_empty(), "{:?}", streamed.chunks);
    assert_eq!(streamed.finish_reasons(), ["stop"]);

    if kind.route == kind.stream_route {
        assert_eq!(kind.calls(&h, true), 3);
    } else {
        assert_eq!((kind.calls(&h, false), kind.calls(&h, true)), (1, 2));
    }
}

/// The documented refusal of a request no deployment can honour: 400, naming `tools`, and no
/// upstream call.
async fn assert_missing_tools(h: &Harness, r: reqwest::Response) {
    assert_eq!(r.status(), 400);
    let error = error_of(r).await;
    assert_eq!(error["code"], "unsupported_capability", "{error}");
    assert_eq!(error["type"], "invalid_request_error", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("tools"), "{message}");
    assert!(message.contains("'solo'"), "{message}");
    assert_eq!(h.mock(0).total_hits(), 0);
}

async fn tools(kind: Kind) {
    let h = start(kind).await;
    let r = h.chat(&tools_body("solo", false)).await;
    if !kind.tools {
        return assert_missing_tools(&h, r).await;
    }
    let body = completion(r, "primary", kind.model).await;
    let choice = &body["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{body}");
    let content = &choice["message"]["content"];
    assert!(
        content.is_null() || content == "",
        "no text beside the call: {body}"
    );
    let calls = choice["message"]["tool_calls"].as_array().unwrap();
    assert_eq!(calls.len(), 1, "{body}");
    assert_eq!(calls[0]["type"], "function");
    assert!(
        calls[0]["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{body}"
    );
    assert_eq!(calls[0]["function"]["name"], "get_weather");
    let arguments = calls[0]["function"]["arguments"].as_str().unwrap();
    let arguments: Value = serde_json::from_str(arguments).unwrap();
    assert_eq!(arguments, json!({"mock": true}));
    assert_usage(&body["usage"]);
    assert_eq!(kind.calls(&h, false), 1);
}

async fn streaming_tools(kind: Kind) {
    let h = start(kind).await;
    let r = h.chat(&tools_body("solo", true)).await;
    if !kind.tools {
        return assert_missing_tools(&h, r).await;
    }
    let streamed = Streamed::read(r, kind.model).await;
    assert_eq!(streamed.finish_reasons(), ["tool_calls"]);
    let calls = streamed.tool_calls();
    assert_eq!(calls.len(), 1, "{:?}", streamed.chunks);
    let (id, name, arguments) = &calls[0];
    assert!(!id.is_empty());
    assert_eq!(name, "get_weather");
    let arguments: Value = serde_json::from_str(arguments)
        .unwrap_or_else(|e| panic!("the argument deltas are not JSON ({e}): {arguments:?}"));
    assert_eq!(arguments, json!({"mock": true}));
    assert_eq!(streamed.text(), "", "no text beside the call");
    assert_eq!(kind.calls(&h, true), 1);
}

async fn unicode(kind: Kind) {
    let h = start(kind).await;
    let body = completion(
        h.chat(&chat_body("solo", UNICODE, false)).await,
        "primary",
        kind.model,
    )
    .await;
    assert_eq!(
        body["choices"][0]["message"]["content"],
        reply("mock0", UNICODE)
    );
    let streamed =
        Streamed::read(h.chat(&chat_body("solo", UNICODE, true)).await, kind.model).await;
    assert_eq!(streamed.text(), reply("mock0", UNICODE));
    // The upstream got the characters themselves.
    let sent = h.mock(0).requests();
    assert!(sent[0].body.contains(UNICODE), "{}", sent[0].body);
}

async fn unicode_split_across_reads(kind: Kind) {
    let h = start(kind).await;
    for piece in [1, 2, 3, 5] {
        h.fault(0, json!({"split_writes": piece}));
        let r = h.chat(&chat_body("solo", UNICODE, true)).await;
        let streamed = Streamed::read(r, kind.model).await;
        assert_eq!(
            streamed.text(),
            reply("mock0", UNICODE),
            "pieces of {piece}"
        );
        assert_eq!(streamed.finish_reasons(), ["stop"], "pieces of {piece}");
    }
    assert_eq!(kind.calls(&h, true), 4);
}

/// How the primary deployment fails.
#[derive(Clone)]
enum Failure {
    Fault(Value),
    /// Nothing listens at its address.
    Refused,
}

impl Failure {
    /// The harness, and the refusing socket to keep while it runs.
    async fn start(&self, kind: Kind) -> (Harness, Option<tokio::net::TcpSocket>) {
        match self {
            Failure::Fault(script) => {
                let h = start(kind).await;
                h.fault(0, script.clone());
                (h, None)
            }
            Failure::Refused => {
                let (h, socket) = start_refused(kind).await;
                (h, Some(socket))
            }
        }
    }

    /// Attempts the primary received: one, unless nothing could be reached.
    fn calls(&self) -> u64 {
        match self {
            Failure::Fault(_) => 1,
            Failure::Refused => 0,
        }
    }
}

/// A retryable failure of `primary`: `chat` fails over to `fallback` (one attempt each),
/// streaming or not; `solo`, with nothing left, is a 502 naming the attempt and its class.
async fn fails_over(kind: Kind, failure: Failure, class: &str) {
    for stream in [false, true] {
        let (h, _refusing) = failure.start(kind).await;
        let r = h.chat(&chat_body("chat", PROMPT, stream)).await;
        assert_eq!(r.status(), 200, "stream: {stream}");
        assert_eq!(
            r.headers()["x-nines-deployment"],
            "fallback",
            "stream: {stream}"
        );
        assert_eq!(r.headers()["x-nines-attempts"], "2", "stream: {stream}");
        let text = if stream {
            Streamed::read(r, "fallback-up").await.text()
        } else {
            let body = completion(r, "fallback", "fallback-up").await;
            body["choices"][0]["message"]["content"]
                .as_str()
                .unwrap()
                .to_owned()
        };
        assert_eq!(text, reply("mock1", PROMPT));
        assert_eq!(
            (kind.calls(&h, stream), h.chat_hits(1), h.chat_hits(2)),
            (failure.calls(), 1, 0),
            "stream: {stream}"
        );
    }

    let (h, _refusing) = failure.start(kind).await;
    let r = h.chat(&chat_body("solo", PROMPT, false)).await;
    assert_eq!(r.status(), 502);
    assert_eq!(r.headers()["x-should-retry"], "false");
    let error = error_of(r).await;
    assert_eq!(error["code"], "all_attempts_failed", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("All 1 attempt(s)"), "{message}");
    assert!(message.contains("deployment=primary"), "{message}");
    assert!(message.contains(&format!("class={class} ")), "{message}");
    assert!(!message.contains("sk-upstream"), "no secret: {message}");
    assert_eq!(kind.calls(&h, false), failure.calls());
}

async fn rate_limited(kind: Kind) {
    fails_over(kind, Failure::Fault(json!({"status": 429})), "rate_limited").await;
}

async fn overloaded(kind: Kind) {
    let fault = Failure::Fault(json!({"status": kind.overloaded}));
    fails_over(kind, fault, "overloaded").await;
}

async fn server_error(kind: Kind) {
    fails_over(kind, Failure::Fault(json!({"status": 500})), "server").await;
}

async fn upstream_auth(kind: Kind) {
    fails_over(
        kind,
        Failure::Fault(json!({"status": 401})),
        "upstream_auth",
    )
    .await;
}

async fn first_byte_timeout(kind: Kind) {
    fails_over(kind, Failure::Fault(json!({"hang": true})), "timeout").await;
}

async fn connection_refused(kind: Kind) {
    fails_over(kind, Failure::Refused, "connect").await;
}

/// `chat` moves on to the larger window (16000 > 8000); `narrow` has only a smaller one
/// (4000), which is never tried.
async fn context_too_long(kind: Kind) {
    for stream in [false, true] {
        let h = start(kind).await;
        h.fault(0, json!({"context_too_long": true}));
        let r = h.chat(&chat_body("chat", PROMPT, stream)).await;
        assert_eq!(r.status(), 200, "stream: {stream}");
        assert_eq!(r.headers()["x-nines-deployment"], "fallback");
        assert_eq!(
            (kind.calls(&h, stream), h.chat_hits(1)),
            (1, 1),
            "stream: {stream}"
        );

        let r = h.chat(&chat_body("narrow", PROMPT, stream)).await;
        let status = r.status();
        let error = error_of(r).await;
        let message = error["message"].as_str().unwrap();
        // Every window refused it: the client's request is too large, so it gets OpenAI's 400
        // `context_length_exceeded` (which SDKs know), with each attempt listed.
        assert_eq!(status, 400, "stream: {stream}: {error}");
        assert_eq!(error["code"], "context_length_exceeded", "{error}");
        assert!(message.contains("class=context_too_long"), "{message}");
        assert!(!message.contains("deployment=small"), "{message}");
        assert_eq!(
            (kind.calls(&h, stream), h.chat_hits(2)),
            (2, 0),
            "the smaller window is never tried (stream: {stream})"
        );
    }
}

/// A filtered answer is the answer: never retried elsewhere, relayed as the dialect gives it.
async fn content_filter(kind: Kind) {
    for stream in [false, true] {
        let h = start(kind).await;
        h.fault(0, json!({"content_filter": true}));
        let r = h.chat(&chat_body("chat", PROMPT, stream)).await;
        match kind.filtered {
            Filtered::FinishReason => {
                assert_eq!(r.headers()["x-nines-deployment"], "primary");
                assert_eq!(r.headers()["x-nines-attempts"], "1");
                if stream {
                    let streamed = Streamed::read(r, kind.model).await;
                    assert_eq!(streamed.finish_reasons(), ["content_filter"]);
                    assert_eq!(streamed.text(), "");
                } else {
                    let body = completion(r, "primary", kind.model).await;
                    let choice = &body["choices"][0];
                    assert_eq!(choice["finish_reason"], "content_filter", "{body}");
                    let content = &choice["message"]["content"];
                    assert!(content.is_null() || content == "", "{body}");
                }
            }
            Filtered::Rejected => {
                assert_eq!(r.status(), 400, "stream: {stream}");
                assert_eq!(r.headers()["x-nines-attempts"], "1");
                let error = error_of(r).await;
                assert_eq!(error["code"], "content_filter", "stream: {stream}: {error}");
            }
        }
        assert_eq!(
            (kind.calls(&h, stream), h.chat_hits(1)),
            (1, 0),
            "never retried (stream: {stream})"
        );
    }
}

/// Any other 4xx is the request's own fault: relayed with its status, OpenAI-shaped, never
/// retried elsewhere.
async fn client_error(kind: Kind) {
    for stream in [false, true] {
        let h = start(kind).await;
        h.fault(0, json!({"status": 400}));
        let r = h.chat(&chat_body("chat", PROMPT, stream)).await;
        assert_eq!(r.status(), 400, "stream: {stream}");
        assert_eq!(r.headers()["x-nines-attempts"], "1");
        let error = error_of(r).await;
        let message = error["message"].as_str().unwrap();
        assert!(message.contains("mock fault: status 400"), "{error}");
        assert_eq!(
            (kind.calls(&h, stream), h.chat_hits(1)),
            (1, 0),
            "never retried (stream: {stream})"
        );
    }
}

// ---- Anthropic clients ----

fn messages_body(model: &str, said: &str, stream: bool) -> Value {
    json!({
        "model": model,
        "max_tokens": 256,
        "messages": [{"role": "user", "content": said}],
        "stream": stream,
    })
}

fn messages_tools_body(model: &str, stream: bool) -> Value {
    let mut body = messages_body(model, "What is the weather in Paris?", stream);
    body["tools"] = json!([{
        "name": "get_weather",
        "description": "The weather in a city",
        "input_schema": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"]
        }
    }]);
    body
}

async fn messages(h: &Harness, body: &Value) -> reqwest::Response {
    h.post_json("/v1/messages", body).await
}

/// A full Anthropic message, checked for its shape; returns the body.
async fn message(r: reqwest::Response, deployment: &str, model: &str) -> Value {
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-nines-deployment"], deployment);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "message", "{body}");
    assert_eq!(body["role"], "assistant", "{body}");
    assert_eq!(body["model"], model, "{body}");
    assert!(
        body["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{body}"
    );
    assert!(body["content"].is_array(), "{body}");
    body
}

fn message_text(body: &Value) -> String {
    body["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect()
}

fn assert_message_usage(usage: &Value) {
    assert!(
        usage["input_tokens"].as_u64().is_some_and(|n| n > 0),
        "{usage}"
    );
    assert!(
        usage["output_tokens"].as_u64().is_some_and(|n| n > 0),
        "{usage}"
    );
}

/// A whole Anthropic stream: `message_start` first, `message_stop` last, every event named as
/// its `type`.
struct Events {
    events: Vec<(String, Value)>,
}

impl Events {
    async fn read(r: reqwest::Response, model: &str) -> Events {
        assert_eq!(r.status(), 200);
        let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            content_type.starts_with("text/event-stream"),
            "{content_type}"
        );
        let text = r.text().await.unwrap();
        let mut decoder = SseDecoder::new();
        let mut raw: Vec<SseEvent> = Vec::new();
        decoder.feed(text.as_bytes(), &mut raw).unwrap();
        decoder.finish(&mut raw);
        let events: Vec<(String, Value)> = raw
            .into_iter()
            .map(|e| {
                let data: Value =
                    serde_json::from_str(&e.data).unwrap_or_else(|err| panic!("{err}: {}", e.data));
                let name = e.event.unwrap_or_default();
                assert_eq!(data["type"], name.as_str(), "{text}");
                (name, data)
            })
            .collect();
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names.first(), Some(&"message_start"), "{text}");
        assert_eq!(names.last(), Some(&"message_stop"), "{text}");
        assert_eq!(names.iter().filter(|n| **n == "message_stop").count(), 1);
        assert!(!names.contains(&"error"), "{text}");
        assert_eq!(events[0].1["message"]["model"], model, "{text}");
        Events { events }
    }

    fn of(&self, name: &str) -> Vec<&Value> {
        self.events
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, d)| d)
            .collect()
    }

    fn text(&self) -> String {
        self.of("content_block_delta")
            .iter()
            .filter(|d| d["delta"]["type"] == "text_delta")
            .filter_map(|d| d["delta"]["text"].as_str())
            .collect()
    }

    fn stop_reason(&self) -> Value {
        let deltas = self.of("message_delta");
        assert_eq!(deltas.len(), 1, "{:?}", self.events);
        deltas[0]["delta"]["stop_reason"].clone()
    }
}

async fn messages_plain(kind: Kind) {
    let h = start(kind).await;
    let body = message(
        messages(&h, &messages_body("solo", PROMPT, false)).await,
        "primary",
        kind.model,
    )
    .await;
    assert_eq!(message_text(&body), reply("mock0", PROMPT), "{body}");
    assert_eq!(body["stop_reason"], "end_turn", "{body}");
    assert_message_usage(&body["usage"]);
    assert_eq!(kind.calls(&h, false), 1);
}

async fn messages_streaming(kind: Kind) {
    let h = start(kind).await;
    let whole = message(
        messages(&h, &messages_body("solo", PROMPT, false)).await,
        "primary",
        kind.model,
    )
    .await;
    let r = messages(&h, &messages_body("solo", PROMPT, true)).await;
    assert_eq!(r.headers()["x-nines-deployment"], "primary");
    let events = Events::read(r, kind.model).await;
    assert_eq!(events.text(), message_text(&whole));
    assert_eq!(events.stop_reason(), "end_turn");
    let starts = events.of("content_block_start");
    assert_eq!(starts.len(), 1, "{:?}", events.events);
    assert_eq!(starts[0]["content_block"]["type"], "text");
    assert_eq!(events.of("content_block_stop").len(), 1);
    if kind.stream_usage {
        let delta = events.of("message_delta")[0];
        assert!(
            delta["usage"]["output_tokens"]
                .as_u64()
                .is_some_and(|n| n > 0),
            "{delta}"
        );
        // Known at the start when the upstream says so (Anthropic), else with the final delta.
        let input = [&events.events[0].1["message"]["usage"], &delta["usage"]]
            .iter()
            .filter_map(|u| u["input_tokens"].as_u64())
            .max();
        assert!(input.is_some_and(|n| n > 0), "{:?}", events.events);
    }
}

/// The Anthropic-shaped 400 for a request no deployment can honour.
async fn assert_messages_missing_tools(h: &Harness, r: reqwest::Response) {
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("tools"),
        "{body}"
    );
    assert_eq!(h.mock(0).total_hits(), 0);
}

async fn messages_tools(kind: Kind) {
    let h = start(kind).await;
    let r = messages(&h, &messages_tools_body("solo", false)).await;
    if !kind.tools {
        return assert_messages_missing_tools(&h, r).await;
    }
    let body = message(r, "primary", kind.model).await;
    assert_eq!(body["stop_reason"], "tool_use", "{body}");
    let uses: Vec<&Value> = body["content"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["type"] == "tool_use")
        .collect();
    assert_eq!(uses.len(), 1, "{body}");
    assert_eq!(uses[0]["name"], "get_weather");
    assert!(
        uses[0]["id"].as_str().is_some_and(|id| !id.is_empty()),
        "{body}"
    );
    assert_eq!(uses[0]["input"], json!({"mock": true}));
    assert_eq!(kind.calls(&h, false), 1);
}

async fn messages_streaming_tools(kind: Kind) {
    let h = start(kind).await;
    let r = messages(&h, &messages_tools_body("solo", true)).await;
    if !kind.tools {
        return assert_messages_missing_tools(&h, r).await;
    }
    let events = Events::read(r, kind.model).await;
    assert_eq!(events.stop_reason(), "tool_use");
    let starts = events.of("content_block_start");
    let uses: Vec<&&Value> = starts
        .iter()
        .filter(|s| s["content_block"]["type"] == "tool_use")
        .collect();
    assert_eq!(uses.len(), 1, "{:?}", events.events);
    assert_eq!(uses[0]["content_block"]["name"], "get_weather");
    let index = &uses[0]["index"];
    let json: String = events
        .of("content_block_delta")
        .iter()
        .filter(|d| d["index"] == *index && d["delta"]["type"] == "input_json_delta")
        .filter_map(|d| d["delta"]["partial_json"].as_str())
        .collect();
    let input: Value = serde_json::from_str(&json)
        .unwrap_or_else(|e| panic!("the input deltas are not JSON ({e}): {json:?}"));
    assert_eq!(input, json!({"mock": true}));
    assert_eq!(events.text(), "");
}

async fn messages_unicode(kind: Kind) {
    let h = start(kind).await;
    let body = message(
        messages(&h, &messages_body("solo", UNICODE, false)).await,
        "primary",
        kind.model,
    )
    .await;
    assert_eq!(message_text(&body), reply("mock0", UNICODE));
    for piece in [1, 2, 3] {
        h.fault(0, json!({"split_writes": piece}));
        let r = messages(&h, &messages_body("solo", UNICODE, true)).await;
        let events = Events::read(r, kind.model).await;
        assert_eq!(events.text(), reply("mock0", UNICODE), "pieces of {piece}");
        assert_eq!(events.stop_reason(), "end_turn");
    }
}

/// A retryable failure fails over, in Anthropic's dialect too; with nothing left, the 502 is
/// Anthropic-shaped.
async fn messages_fails_over(kind: Kind) {
    for stream in [false, true] {
        let h = start(kind).await;
        h.fault(0, json!({"status": kind.overloaded}));
        let r = messages(&h, &messages_body("chat", PROMPT, stream)).await;
        assert_eq!(r.headers()["x-nines-attempts"], "2");
        let text = if stream {
            assert_eq!(r.headers()["x-nines-deployment"], "fallback");
            Events::read(r, "fallback-up").await.text()
        } else {
            message_text(&message(r, "fallback", "fallback-up").await)
        };
        assert_eq!(text, reply("mock1", PROMPT));
        assert_eq!((kind.calls(&h, stream), h.chat_hits(1)), (1, 1));
    }
    let h = start(kind).await;
    h.fault(0, json!({"status": 500}));
    let r = messages(&h, &messages_body("solo", PROMPT, false)).await;
    assert_eq!(r.status(), 502);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("class=server "), "{message}");
    assert_eq!(kind.calls(&h, false), 1);
}

async fn messages_context_too_long(kind: Kind) {
    let h = start(kind).await;
    h.fault(0, json!({"context_too_long": true}));
    let r = messages(&h, &messages_body("chat", PROMPT, false)).await;
    let body = message(r, "fallback", "fallback-up").await;
    assert_eq!(message_text(&body), reply("mock1", PROMPT));
    assert_eq!((kind.calls(&h, false), h.chat_hits(1)), (1, 1));
}

async fn messages_content_filter(kind: Kind) {
    for stream in [false, true] {
        let h = start(kind).await;
        h.fault(0, json!({"content_filter": true}));
        let r = messages(&h, &messages_body("chat", PROMPT, stream)).await;
        match kind.filtered {
            Filtered::FinishReason if stream => {
                let events = Events::read(r, kind.model).await;
                assert_eq!(events.stop_reason(), "refusal");
                assert_eq!(events.text(), "");
            }
            Filtered::FinishReason => {
                let body = message(r, "primary", kind.model).await;
                assert_eq!(body["stop_reason"], "refusal", "{body}");
                assert_eq!(message_text(&body), "");
            }
            Filtered::Rejected => {
                assert_eq!(r.status(), 400);
                let body: Value = r.json().await.unwrap();
                assert_eq!(body["type"], "error", "{body}");
                assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
            }
        }
        assert_eq!((kind.calls(&h, stream), h.chat_hits(1)), (1, 0));
    }
}

/// An upstream 4xx is relayed to an Anthropic client Anthropic-shaped, and not retried.
async fn messages_client_error(kind: Kind) {
    let h = start(kind).await;
    h.fault(0, json!({"status": 400}));
    let r = messages(&h, &messages_body("chat", PROMPT, false)).await;
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("mock fault: status 400"), "{body}");
    assert_eq!((kind.calls(&h, false), h.chat_hits(1)), (1, 0));
}

/// Scenarios that fail today because of a gateway bug outside this suite's files, as
/// (provider, scenarios, bug). Each runs as an expected failure: it must still fail, so the day
/// the bug is fixed this suite says so and the entry is removed.
const KNOWN_BUGS: &[(&str, &[&str], &str)] = &[];

async fn run(kind: Kind, scenario: &str, test: impl std::future::Future<Output = ()>) {
    use futures_util::FutureExt;
    let known = KNOWN_BUGS
        .iter()
        .find(|(provider, names, _)| *provider == kind.provider && names.contains(&scenario));
    let Some((_, _, bug)) = known else {
        return test.await;
    };
    let outcome = std::panic::AssertUnwindSafe(test).catch_unwind().await;
    assert!(
        outcome.is_err(),
        "{scenario} passes for {} now: remove it from KNOWN_BUGS ({bug})",
        kind.provider
    );
}

/// One test per scenario and provider kind.
macro_rules! conformance {
    (@each $k:expr; $($scenario:ident),* $(,)?) => {$(
        #[tokio::test]
        async fn $scenario() {
            super::run($k, stringify!($scenario), super::$scenario($k)).await;
        }
    )*};
    ($($kind:ident => $k:expr;)*) => {$(
        mod $kind {
            conformance!(@each $k;
                plain, streaming, tools, streaming_tools, unicode, unicode_split_across_reads,
                rate_limited, overloaded, server_error, upstream_auth, first_byte_timeout,
                connection_refused, context_too_long, content_filter, client_error,
                messages_plain, messages_streaming, messages_tools, messages_streaming_tools,
                messages_unicode, messages_fails_over, messages_context_too_long,
                messages_content_filter, messages_client_error);
        }
    )*};
}

conformance! {
    openai_compatible => super::OPENAI_COMPATIBLE;
    anthropic => super::ANTHROPIC;
    gemini => super::GEMINI;
    replicate => super::REPLICATE;
    azure => super::AZURE;
    bedrock => super::BEDROCK;
    vertex => super::VERTEX;
}
