//! Chat completions: what the mock answers, as one JSON body or as a list of stream chunks.
//!
//! The answer is planned once (`Completion::plan`) and then rendered either way, so the
//! streamed and non-streamed forms of one request always agree on content and usage.
//!
//! Assistant prefill: when the last message is the assistant's with text P (a continuation
//! request, as vLLM's `continue_final_message` serves it) and the reply R the mock would give
//! starts with P, only the rest of R is produced (streamed word by word, counted in usage), so
//! P followed by the continuation is exactly R. A P that R does not start with is ignored and
//! the whole R is produced.

use serde::Deserialize;
use serde_json::{Value, json};

use crate::state::MockState;
use crate::text::{self, TOOL_ARGUMENTS};

/// A fixed `created` timestamp: content must not depend on the wall clock.
pub(crate) const CREATED: u64 = 1_700_000_000;

/// Upper bound for `n`, so one request cannot make the mock allocate without limit.
const MAX_CHOICES: u32 = 128;

/// The fields of an OpenAI chat request the mock reacts to; everything else is ignored.
#[derive(Debug, Deserialize)]
pub(crate) struct ChatRequest {
    model: String,
    messages: Vec<Value>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    max_tokens: Option<u64>,
    #[serde(default)]
    max_completion_tokens: Option<u64>,
    #[serde(default)]
    n: Option<u32>,
    #[serde(default)]
    tools: Option<Vec<Value>>,
    #[serde(default)]
    tool_choice: Option<Value>,
    #[serde(default)]
    response_format: Option<Value>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Debug, Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

impl ChatRequest {
    pub(crate) fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }
}

/// What every choice says.
enum Reply {
    /// The reply text as stream pieces (one word each), which concatenate to the content.
    Text {
        pieces: Vec<String>,
        truncated: bool,
    },
    Json(String),
    ToolCall {
        name: String,
    },
    /// Blocked by the (mock) safety filter: no content at all.
    Filtered,
}

/// What a completion says, as [`Completion::said`] tells it.
pub(crate) enum Said {
    Text(Vec<String>),
    ToolCall(String),
}

/// One planned completion, ready to render.
pub(crate) struct Completion {
    id: String,
    model: String,
    choices: u32,
    reply: Reply,
    prompt_tokens: u64,
    include_usage: bool,
}

impl Completion {
    /// Decide the answer to `req`, or say why the request is invalid. `filtered`: the answer is
    /// blocked by the safety filter (the `content_filter` fault).
    pub(crate) fn plan(
        state: &MockState,
        req: ChatRequest,
        filtered: bool,
    ) -> Result<Self, String> {
        if req.messages.is_empty() {
            return Err("'messages' must contain at least one message".into());
        }
        let choices = req.n.unwrap_or(1);
        if !(1..=MAX_CHOICES).contains(&choices) {
            return Err(format!("'n' must be between 1 and {MAX_CHOICES}"));
        }
        let reply = if filtered {
            Reply::Filtered
        } else if let Some(name) = tool_to_call(&req) {
            Reply::ToolCall { name }
        } else if wants_json(&req) {
            Reply::Json(json!({"mock": true, "from": state.name()}).to_string())
        } else {
            let mut words = text::reply_words(state.name(), &text::last_user_text(&req.messages));
            let limit = req.max_completion_tokens.or(req.max_tokens);
            if let Some(max) = limit.filter(|_| state.fills_max_tokens()) {
                words = text::fill_words(&words, max);
            }
            let truncated = limit.is_some_and(|max| (words.len() as u64) > max);
            if let Some(max) = limit {
                words.truncate(usize::try_from(max).unwrap_or(usize::MAX));
            }
            Reply::Text {
                pieces: continuation_pieces(&words, &req.messages),
                truncated,
            }
        };
        let prompt_tokens = req
            .messages
            .iter()
            .map(|m| text::estimate_tokens(&text::content_text(m.get("content"))) + 3)
            .sum();
        Ok(Self {
            id: format!("chatcmpl-mock-{}", state.next_completion_id()),
            model: req.model,
            choices,
            reply,
            prompt_tokens,
            include_usage: req
                .stream_options
                .and_then(|o| o.include_usage)
                .unwrap_or(false),
        })
    }

    /// The prompt's token estimate.
    pub(crate) fn prompt_tokens(&self) -> u64 {
        self.prompt_tokens
    }

    /// What the answer says, for a dialect that renders it in a shape of its own (the Responses
    /// API): the text as stream pieces, or the tool called.
    pub(crate) fn said(&self) -> Said {
        match &self.reply {
            Reply::Text { pieces, .. } => Said::Text(pieces.clone()),
            Reply::Json(content) => Said::Text(vec![content.clone()]),
            Reply::Filtered => Said::Text(Vec::new()),
            Reply::ToolCall { name } => Said::ToolCall(name.clone()),
        }
    }

    /// The answer's output tokens (one choice).
    pub(crate) fn completion_tokens(&self) -> u64 {
        self.usage()["completion_tokens"].as_u64().unwrap_or(0) / u64::from(self.choices)
    }

    /// The id, without OpenAI's `chatcmpl-` prefix.
    pub(crate) fn bare_id(&self) -> &str {
        self.id.strip_prefix("chatcmpl-").unwrap_or(&self.id)
    }

    pub(crate) fn model(&self) -> &str {
        &self.model
    }

    pub(crate) fn finish_reason(&self) -> &'static str {
        match &self.reply {
            Reply::Text {
                truncated: true, ..
            } => "length",
            Reply::Text { .. } | Reply::Json(_) => "stop",
            Reply::ToolCall { .. } => "tool_calls",
            Reply::Filtered => "content_filter",
        }
    }

    fn usage(&self) -> Value {
        let per_choice = match &self.reply {
            Reply::Text { pieces, .. } => words_in(pieces),
            Reply::Json(content) => text::estimate_tokens(content),
            Reply::ToolCall { .. } => text::estimate_tokens(TOOL_ARGUMENTS),
            Reply::Filtered => 0,
        };
        let completion = per_choice * u64::from(self.choices);
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        })
    }

    /// The non-streaming `chat.completion` body.
    pub(crate) fn body(&self) -> Value {
        let message = match &self.reply {
            Reply::Text { pieces, .. } => json!({"role": "assistant", "content": pieces.concat()}),
            Reply::Json(content) => json!({"role": "assistant", "content": content}),
            Reply::Filtered => json!({"role": "assistant", "content": ""}),
            Reply::ToolCall { name } => json!({
                "role": "assistant",
                "content": null,
                "tool_calls": [{
                    "id": "call_mock_0",
                    "type": "function",
                    "function": {"name": name, "arguments": TOOL_ARGUMENTS},
                }],
            }),
        };
        let choices: Vec<Value> = (0..self.choices)
            .map(|index| {
                json!({
                    "index": index,
                    "message": message,
                    "logprobs": null,
                    "finish_reason": self.finish_reason(),
                })
            })
            .collect();
        json!({
            "id": self.id,
            "object": "chat.completion",
            "created": CREATED,
            "model": self.model,
            "system_fingerprint": "nines-mock",
            "choices": choices,
            "usage": self.usage(),
        })
    }

    /// The `data:` payloads of the stream, in order, without the final `[DONE]`.
    pub(crate) fn chunks(&self) -> Vec<String> {
        let first = match &self.reply {
            Reply::ToolCall { .. } => json!({"role": "assistant", "content": null}),
            _ => json!({"role": "assistant", "content": ""}),
        };
        let mut deltas = vec![first];
        match &self.reply {
            Reply::Text { pieces, .. } => {
                deltas.extend(pieces.iter().map(|piece| json!({"content": piece})));
            }
            Reply::Json(content) => deltas.push(json!({"content": content})),
            Reply::Filtered => {}
            Reply::ToolCall { name } => {
                deltas.push(json!({"tool_calls": [{
                    "index": 0,
                    "id": "call_mock_0",
                    "type": "function",
                    "function": {"name": name, "arguments": ""},
                }]}));
                // Three pieces, cut mid-token on purpose: clients must concatenate, not parse
                // each piece.
                for piece in [r#"{"mo"#, r#"ck":tr"#, "ue}"] {
                    deltas.push(json!({"tool_calls": [{
                        "index": 0,
                        "function": {"arguments": piece},
                    }]}));
                }
            }
        }

        let mut chunks = Vec::with_capacity((deltas.len() + 1) * self.choices as usize + 1);
        for delta in &deltas {
            for index in 0..self.choices {
                chunks.push(self.chunk(index, delta, Value::Null));
            }
        }
        for index in 0..self.choices {
            chunks.push(self.chunk(index, &json!({}), self.finish_reason().into()));
        }
        if self.include_usage {
            let mut usage_chunk = self.chunk_frame(json!([]));
            usage_chunk["usage"] = self.usage();
            chunks.push(usage_chunk.to_string());
        }
        chunks
    }

    fn chunk(&self, index: u32, delta: &Value, finish_reason: Value) -> String {
        self.chunk_frame(json!([{
            "index": index,
            "delta": delta,
            "logprobs": null,
            "finish_reason": finish_reason,
        }]))
        .to_string()
    }

    /// The fields every chunk shares; `usage` is present (as null) only when requested, as
    /// OpenAI does.
    fn chunk_frame(&self, choices: Value) -> Value {
        let mut frame = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": CREATED,
            "model": self.model,
            "system_fingerprint": "nines-mock",
            "choices": choices,
        });
        if self.include_usage {
            frame["usage"] = Value::Null;
        }
        frame
    }
}

/// The stream pieces of the reply `words`, or of only their continuation when the last message
/// is an assistant prefill that the reply starts with.
fn continuation_pieces(words: &[String], messages: &[Value]) -> Vec<String> {
    let prefill = messages
        .last()
        .filter(|m| m.get("role").and_then(Value::as_str) == Some("assistant"))
        .map(|m| text::content_text(m.get("content")))
        .filter(|p| !p.is_empty());
    if let Some(prefill) = prefill {
        let full = words.join(" ");
        if let Some(rest) = full.strip_prefix(prefill.as_str()) {
            return text::text_pieces(rest);
        }
    }
    text::pieces(words)
}

/// Tokens of a text reply: one per word.
fn words_in(pieces: &[String]) -> u64 {
    pieces.iter().filter(|p| !p.trim().is_empty()).count() as u64
}

/// The tool to call: the one named by `tool_choice`, else the first tool; none when there are
/// no tools, `tool_choice` is "none", or the last message is a tool's result and the choice is
/// free (`auto`).
fn tool_to_call(req: &ChatRequest) -> Option<String> {
    let tools = req.tools.as_ref().filter(|t| !t.is_empty())?;
    let answered = req
        .messages
        .last()
        .is_some_and(|m| m.get("role").and_then(Value::as_str) == Some("tool"));
    let free = matches!(&req.tool_choice, None | Some(Value::Null))
        || req.tool_choice.as_ref().and_then(Value::as_str) == Some("auto");
    if answered && free {
        // A model that has its tool's result answers with text, as real ones do.
        return None;
    }
    let first = || {
        tools[0]
            .pointer("/function/name")
            .and_then(Value::as_str)
            .unwrap_or("tool")
            .to_owned()
    };
    match &req.tool_choice {
        Some(Value::String(choice)) if choice == "none" => None,
        Some(choice @ Value::Object(_)) => Some(
            choice
                .pointer("/function/name")
                .and_then(Value::as_str)
                .map_or_else(first, str::to_owned),
        ),
        _ => Some(first()),
    }
}

fn wants_json(req: &ChatRequest) -> bool {
    let kind = req
        .response_format
        .as_ref()
        .and_then(|f| f.get("type"))
        .and_then(Value::as_str);
    matches!(kind, Some("json_object" | "json_schema"))
}
