//! The Anthropic Messages dialect: `POST /v1/messages`, plain and streamed, with Anthropic's
//! error envelope `{"type":"error","error":{"type","message"}}`.
//!
//! The content rules are the OpenAI dialect's: the same reply words, `ceil(chars/4) + 3` input
//! tokens per message (the system prompt counts as one), one output token per word.
//!
//! It checks what the Messages API checks, so a translation mistake fails a test: a field the
//! API does not have is refused ("Extra inputs are not permitted"), `max_tokens` is required,
//! and extended `thinking` needs `budget_tokens` ≥ 1024 and below `max_tokens`, no `top_k`, a
//! `temperature` of 1 if any, and a `tool_choice` of `auto` or `none`. A thinking request's
//! answer starts with a `thinking` block.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::auth;
use crate::effects::{self, ErrorShape};
use crate::sse::{self, Event, Style};
use crate::state::MockState;
use crate::text::{self, Ending, TOOL_ARGUMENTS};

/// The context the dialect claims when `context_too_long` is faulted.
const CONTEXT_LIMIT: u64 = 200_000;

const STYLE: Style = Style {
    error: "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
    malformed: sse::NOT_JSON,
};

pub(crate) const ERROR_SHAPE: ErrorShape = ErrorShape {
    fault_body,
    invalid_request,
};

/// Every top-level field of a Messages request; the API refuses any other.
const FIELDS: [&str; 17] = [
    "model",
    "messages",
    "max_tokens",
    "system",
    "metadata",
    "stop_sequences",
    "stream",
    "temperature",
    "top_k",
    "top_p",
    "tools",
    "tool_choice",
    "thinking",
    "service_tier",
    "container",
    "mcp_servers",
    "context_management",
];

/// What a thinking block says, and its signature.
const THOUGHT: &str = "The mock thinks before it answers.";
const SIGNATURE: &str = "c2lnbmF0dXJl";

/// The smallest thinking budget the API accepts.
const MIN_THINKING_BUDGET: u64 = 1024;

/// The first top-level field of `body` outside `allowed`, as the API words its refusal.
pub(crate) fn extra_field(body: &[u8], allowed: &[&str]) -> Option<String> {
    let fields = serde_json::from_slice::<serde_json::Map<String, Value>>(body).ok()?;
    fields
        .keys()
        .find(|k| !allowed.contains(&k.as_str()))
        .map(|k| format!("{k}: Extra inputs are not permitted"))
}

/// The fields of a Messages request the mock reacts to (others are checked to exist, then
/// ignored).
#[derive(Debug, Deserialize)]
struct MessagesRequest {
    model: String,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    system: Option<Value>,
    messages: Vec<Value>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    stop_sequences: Option<Vec<String>>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    thinking: Option<Thinking>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_k: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
enum Thinking {
    Enabled { budget_tokens: u64 },
    Disabled,
}

pub(crate) async fn messages(
    State(state): State<MockState>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let parsed = serde_json::from_slice::<MessagesRequest>(&body);
    let streaming = parsed.as_ref().is_ok_and(|r| r.stream.unwrap_or(false));
    let fault = match effects::gate(&state, &headers, ERROR_SHAPE, streaming).await {
        Ok(fault) => fault,
        Err(response) => return response,
    };
    if let Some(refusal) = missing_credentials(&headers) {
        return refusal;
    }
    if let Some(refusal) = extra_field(&body, &FIELDS) {
        return invalid_request(&refusal);
    }
    let fault = fault.unwrap_or_default();
    let message = match parsed
        .map_err(|e| format!("invalid request body: {e}"))
        .and_then(|req| Message::plan(&state, req, fault.content_filter))
    {
        Ok(message) => message,
        Err(text) => return invalid_request(&text),
    };
    if fault.context_too_long {
        let tokens = CONTEXT_LIMIT + message.input_tokens;
        return invalid_request(&format!(
            "prompt is too long: {tokens} tokens > {CONTEXT_LIMIT} maximum"
        ));
    }
    if streaming {
        let events = message.events(!fault.no_done);
        sse::events_response(state, events, STYLE, Some(fault))
    } else {
        Json(message.body()).into_response()
    }
}

/// The refusal of a request without the key and version every Anthropic route requires.
pub(crate) fn missing_credentials(headers: &HeaderMap) -> Option<Response> {
    if auth::header(headers, "x-api-key").is_none() {
        return Some(error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key header is required",
        ));
    }
    if auth::header(headers, "anthropic-version").is_none() {
        return Some(invalid_request("anthropic-version: header is required"));
    }
    None
}

/// `messages` as the API requires them: at least one, each `user` or `assistant`.
pub(crate) fn check_messages(messages: &[Value]) -> Result<(), String> {
    if messages.is_empty() {
        return Err("messages: at least one message is required".into());
    }
    for (i, message) in messages.iter().enumerate() {
        let role = message.get("role").and_then(Value::as_str);
        if !matches!(role, Some("user" | "assistant")) {
            return Err(format!(
                "messages.{i}.role: Input should be 'user' or 'assistant'"
            ));
        }
    }
    Ok(())
}

/// The prompt's tokens: `ceil(chars/4) + 3` per message, the system prompt counted as one.
pub(crate) fn input_tokens(system: Option<&Value>, messages: &[Value]) -> u64 {
    let system = system.map_or(0, |s| {
        text::estimate_tokens(&text::content_text(Some(s))) + 3
    });
    let messages: u64 = messages
        .iter()
        .map(|m| text::estimate_tokens(&text::content_text(m.get("content"))) + 3)
        .sum();
    system + messages
}

/// Extended thinking's rules: the budget, and the sampling and tool choices it excludes.
fn check_thinking(req: &MessagesRequest, max_tokens: u64) -> Result<bool, String> {
    let Some(Thinking::Enabled { budget_tokens }) = req.thinking else {
        return Ok(false);
    };
    if budget_tokens < MIN_THINKING_BUDGET {
        return Err(format!(
            "thinking.enabled.budget_tokens: Input should be greater than or equal to {MIN_THINKING_BUDGET}"
        ));
    }
    if budget_tokens >= max_tokens {
        return Err("`max_tokens` must be greater than `thinking.budget_tokens`".into());
    }
    if req.temperature.is_some_and(|t| t != 1.0) {
        return Err("`temperature` may only be set to 1 when thinking is enabled".into());
    }
    if req.top_k.is_some() {
        return Err("`top_k` must be unset when thinking is enabled".into());
    }
    let forced = req
        .tool_choice
        .as_ref()
        .and_then(|c| c.get("type"))
        .and_then(Value::as_str)
        .is_some_and(|t| matches!(t, "any" | "tool"));
    if forced {
        return Err("Thinking may not be enabled when tool_choice forces tool use.".into());
    }
    Ok(true)
}

/// What the assistant says.
enum Reply {
    Text { words: Vec<String>, ending: Ending },
    ToolUse { name: String },
    Refusal,
}

/// One planned message, rendered whole or as stream events.
struct Message {
    id: String,
    model: String,
    reply: Reply,
    /// A final assistant message the reply continues (Anthropic's prefill): only the rest of
    /// the reply is sent.
    prefill: Option<String>,
    input_tokens: u64,
    /// Extended thinking was asked for: the answer starts with a `thinking` block.
    thinking: bool,
}

impl Message {
    fn plan(state: &MockState, req: MessagesRequest, refused: bool) -> Result<Self, String> {
        let Some(max_tokens) = req.max_tokens else {
            return Err("max_tokens: Field required".into());
        };
        check_messages(&req.messages)?;
        let thinking = check_thinking(&req, max_tokens)?;
        // A final assistant message is continued, not answered; like the real API, its text may
        // not end with whitespace.
        let prefill = req
            .messages
            .last()
            .filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
            .map(|m| text::content_text(m.get("content")))
            .filter(|p| !p.is_empty());
        if prefill
            .as_ref()
            .is_some_and(|p| p.ends_with(char::is_whitespace))
        {
            return Err("final assistant content cannot end with trailing whitespace".into());
        }
        let reply = if refused {
            Reply::Refusal
        } else if let Some(name) = tool_to_call(&req) {
            Reply::ToolUse { name }
        } else {
            let words = text::reply_words(state.name(), &text::last_user_text(&req.messages));
            let stops = req.stop_sequences.as_deref().unwrap_or_default();
            let (words, ending) = text::end_reply(words, stops, Some(max_tokens));
            Reply::Text { words, ending }
        };
        Ok(Self {
            id: format!("msg_mock_{}", state.next_completion_id()),
            input_tokens: input_tokens(req.system.as_ref(), &req.messages),
            model: req.model,
            reply,
            prefill,
            thinking,
        })
    }

    fn stop_reason(&self) -> &'static str {
        match &self.reply {
            Reply::Text {
                ending: Ending::Complete,
                ..
            } => "end_turn",
            Reply::Text {
                ending: Ending::Length,
                ..
            } => "max_tokens",
            Reply::Text {
                ending: Ending::StopSequence(_),
                ..
            } => "stop_sequence",
            Reply::ToolUse { .. } => "tool_use",
            Reply::Refusal => "refusal",
        }
    }

    fn stop_sequence(&self) -> Value {
        match &self.reply {
            Reply::Text {
                ending: Ending::StopSequence(stop),
                ..
            } => stop.as_str().into(),
            _ => Value::Null,
        }
    }

    fn output_tokens(&self) -> u64 {
        match &self.reply {
            Reply::Text { words, .. } => words.len() as u64,
            Reply::ToolUse { .. } => text::estimate_tokens(TOOL_ARGUMENTS),
            Reply::Refusal => 0,
        }
    }

    fn usage(&self, output_tokens: u64) -> Value {
        json!({
            "input_tokens": self.input_tokens,
            "output_tokens": output_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        })
    }

    /// The message object with `content`, `stop_reason` and `stop_sequence` as given.
    fn frame(
        &self,
        content: Value,
        stop_reason: Value,
        stop_sequence: Value,
        usage: Value,
    ) -> Value {
        json!({
            "id": self.id,
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": usage,
        })
    }

    /// The non-streaming response body.
    fn body(&self) -> Value {
        let content = match &self.reply {
            Reply::Text { words, .. } => json!([{"type": "text", "text": words.join(" ")}]),
            Reply::ToolUse { name } => json!([{
                "type": "tool_use",
                "id": "toolu_mock_0",
                "name": name,
                "input": {"mock": true},
            }]),
            Reply::Refusal => json!([]),
        };
        let content = match (self.thinking, content) {
            (true, Value::Array(mut blocks)) => {
                blocks.insert(
                    0,
                    json!({"type": "thinking", "thinking": THOUGHT, "signature": SIGNATURE}),
                );
                Value::Array(blocks)
            }
            (_, content) => content,
        };
        self.frame(
            content,
            self.stop_reason().into(),
            self.stop_sequence(),
            self.usage(self.output_tokens()),
        )
    }

    /// The reply's stream pieces: all of them, or only what follows the prefill.
    fn text_pieces(&self, words: &[String]) -> Vec<String> {
        if let Some(prefill) = &self.prefill {
            let full = words.join(" ");
            if let Some(rest) = full.strip_prefix(prefill.as_str()) {
                return text::text_pieces(rest);
            }
        }
        text::pieces(words)
    }

    /// The stream: `message_start`, one content block (with a `ping` after its start), then
    /// `message_delta` and, with `terminated`, `message_stop`.
    fn events(&self, terminated: bool) -> Vec<Event> {
        // Anthropic reports a token already at the start; the final count is in message_delta.
        let start = self.frame(json!([]), Value::Null, Value::Null, self.usage(1));
        let mut events = vec![event(json!({"type": "message_start", "message": start}))];
        let ping = || event(json!({"type": "ping"}));
        // A thinking block comes first; the answer's block follows it.
        let index = u64::from(self.thinking);
        if self.thinking {
            let thinking = |delta: Value| {
                event(json!({"type": "content_block_delta", "index": 0, "delta": delta}))
            };
            events.push(event(json!({
                "type": "content_block_start", "index": 0,
                "content_block": {"type": "thinking", "thinking": "", "signature": ""},
            })));
            events.push(thinking(
                json!({"type": "thinking_delta", "thinking": THOUGHT}),
            ));
            events.push(thinking(
                json!({"type": "signature_delta", "signature": SIGNATURE}),
            ));
            events.push(event(json!({"type": "content_block_stop", "index": 0})));
        }
        let delta = |delta: Value| {
            event(json!({"type": "content_block_delta", "index": index, "delta": delta}))
        };
        let block = match &self.reply {
            Reply::Text { .. } => Some(json!({"type": "text", "text": ""})),
            Reply::ToolUse { name } => Some(json!({
                "type": "tool_use", "id": "toolu_mock_0", "name": name, "input": {},
            })),
            Reply::Refusal => None,
        };
        if let Some(block) = block {
            events.push(event(json!({
                "type": "content_block_start", "index": index, "content_block": block,
            })));
        }
        events.push(ping());
        match &self.reply {
            Reply::Text { words, .. } => events.extend(
                self.text_pieces(words)
                    .into_iter()
                    .map(|piece| delta(json!({"type": "text_delta", "text": piece}))),
            ),
            // An empty piece first, as Anthropic sends, then pieces cut mid-token: clients must
            // concatenate, not parse each piece.
            Reply::ToolUse { .. } => events.extend(
                ["", r#"{"mo"#, r#"ck":tr"#, "ue}"]
                    .into_iter()
                    .map(|piece| delta(json!({"type": "input_json_delta", "partial_json": piece}))),
            ),
            Reply::Refusal => {}
        }
        if !matches!(self.reply, Reply::Refusal) {
            events.push(event(json!({"type": "content_block_stop", "index": index})));
        }
        events.push(event(json!({
            "type": "message_delta",
            "delta": {"stop_reason": self.stop_reason(), "stop_sequence": self.stop_sequence()},
            "usage": {"output_tokens": self.output_tokens()},
        })));
        if terminated {
            events.push(event(json!({"type": "message_stop"})));
        }
        events
    }
}

/// An Anthropic event, named after its `type`.
fn event(data: Value) -> Event {
    let name = match data.get("type").and_then(Value::as_str) {
        Some("message_start") => "message_start",
        Some("content_block_start") => "content_block_start",
        Some("content_block_delta") => "content_block_delta",
        Some("content_block_stop") => "content_block_stop",
        Some("message_delta") => "message_delta",
        Some("message_stop") => "message_stop",
        _ => "ping",
    };
    Event::named(name, data.to_string())
}

/// The tool to use: the one named by `tool_choice` `{"type":"tool"}`, else the first tool;
/// none without tools or with `tool_choice` `{"type":"none"}`.
fn tool_to_call(req: &MessagesRequest) -> Option<String> {
    let tools = req.tools.as_ref().filter(|t| !t.is_empty())?;
    let first = || {
        tools[0]
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("tool")
            .to_owned()
    };
    let choice = req.tool_choice.as_ref();
    match choice.and_then(|c| c.get("type")).and_then(Value::as_str) {
        Some("none") => None,
        Some("tool") => Some(
            choice
                .and_then(|c| c.get("name"))
                .and_then(Value::as_str)
                .map_or_else(first, str::to_owned),
        ),
        _ => Some(first()),
    }
}

/// An Anthropic error response.
pub(crate) fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, Json(error_body(kind, message))).into_response()
}

fn error_body(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

/// A 400 `invalid_request_error`.
pub(crate) fn invalid_request(message: &str) -> Response {
    error(StatusCode::BAD_REQUEST, "invalid_request_error", message)
}

/// The error body a fault with `status` sends, typed as Anthropic types that status.
fn fault_body(status: u16) -> Value {
    let generic = format!("mock fault: status {status}");
    let (kind, message) = match status {
        503 | 529 => ("overloaded_error", "Overloaded"),
        429 => ("rate_limit_error", generic.as_str()),
        401 => ("authentication_error", generic.as_str()),
        403 => ("permission_error", generic.as_str()),
        404 => ("not_found_error", generic.as_str()),
        413 => ("request_too_large", generic.as_str()),
        504 => ("timeout_error", generic.as_str()),
        500..=599 => ("api_error", generic.as_str()),
        _ => ("invalid_request_error", generic.as_str()),
    };
    error_body(kind, message)
}
