//! The Anthropic Messages dialect: `POST /v1/messages`, plain and streamed, with Anthropic's
//! error envelope `{"type":"error","error":{"type","message"}}`.
//!
//! The content rules are the OpenAI dialect's: the same reply words, `ceil(chars/4) + 3` input
//! tokens per message (the system prompt counts as one), one output token per word.

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
    framing: sse::Framing::Sse,
    error: "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
    malformed: sse::NOT_JSON,
};

const ERROR_SHAPE: ErrorShape = ErrorShape {
    fault_body,
    invalid_request,
};

/// The fields of a Messages request the mock reacts to; everything else is ignored.
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
    if auth::header(&headers, "x-api-key").is_none() {
        return error(
            StatusCode::UNAUTHORIZED,
            "authentication_error",
            "x-api-key header is required",
        );
    }
    if auth::header(&headers, "anthropic-version").is_none() {
        return invalid_request("anthropic-version: header is required");
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
}

impl Message {
    fn plan(state: &MockState, req: MessagesRequest, refused: bool) -> Result<Self, String> {
        let Some(max_tokens) = req.max_tokens else {
            return Err("max_tokens: Field required".into());
        };
        if req.messages.is_empty() {
            return Err("messages: at least one message is required".into());
        }
        for (i, message) in req.messages.iter().enumerate() {
            let role = message.get("role").and_then(Value::as_str);
            if !matches!(role, Some("user" | "assistant")) {
                return Err(format!(
                    "messages.{i}.role: Input should be 'user' or 'assistant'"
                ));
            }
        }
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
        let system = req.system.as_ref().map_or(0, |s| {
            text::estimate_tokens(&text::content_text(Some(s))) + 3
        });
        let messages: u64 = req
            .messages
            .iter()
            .map(|m| text::estimate_tokens(&text::content_text(m.get("content"))) + 3)
            .sum();
        Ok(Self {
            id: format!("msg_mock_{}", state.next_completion_id()),
            model: req.model,
            reply,
            prefill,
            input_tokens: system + messages,
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
        let delta = |delta: Value| {
            event(json!({"type": "content_block_delta", "index": 0, "delta": delta}))
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
                "type": "content_block_start", "index": 0, "content_block": block,
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
            events.push(event(json!({"type": "content_block_stop", "index": 0})));
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
fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (status, Json(error_body(kind, message))).into_response()
}

fn error_body(kind: &str, message: &str) -> Value {
    json!({"type": "error", "error": {"type": kind, "message": message}})
}

/// A 400 `invalid_request_error`.
fn invalid_request(message: &str) -> Response {
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
