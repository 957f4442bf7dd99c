//! OpenAI `chat.completion.chunk` streams: decoding an upstream's chunks into [`StreamEvent`]s,
//! and encoding events from an upstream of another dialect into chunks an OpenAI SDK accepts.
//!
//! Both directions run once per token, so they avoid `serde_json::Value`: the decoder borrows
//! strings from the payload where it can, and the encoder writes the constant head of every chunk
//! (`id`, `object`, `created`, `model`) once and appends only the per-event tail.

use super::errors::{error_type, parse_error_value};
use super::response::finish_reason;
use super::wire::WireUsage;
use crate::json::{self, Str};
use crate::unified::{DecodeError, ErrorKind, FinishReason, StreamEvent, Usage};
use serde::{Deserialize, Serialize};

/// Turns each SSE `data:` payload of an OpenAI stream into unified events.
#[derive(Debug, Default)]
pub struct ChunkDecoder {
    started: bool,
    done: bool,
    /// Tool calls already announced, as (choice, index).
    tools: Vec<(u32, u32)>,
}

impl ChunkDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one `data:` payload, appending its events to `out`. `[DONE]` yields
    /// [`StreamEvent::Done`]; an `{"error":…}` payload yields [`StreamEvent::Error`].
    pub fn feed(&mut self, data: &str, out: &mut Vec<StreamEvent>) -> Result<(), DecodeError> {
        let data = data.trim();
        if data == "[DONE]" {
            self.done = true;
            out.push(StreamEvent::Done);
            return Ok(());
        }
        let chunk: WireChunk<'_> = serde_json::from_str(data)
            .map_err(|e| DecodeError::new("openai", "stream chunk", e.to_string()))?;
        if let Some(error) = chunk.error {
            let parsed = parse_error_value(error);
            out.push(StreamEvent::Error {
                message: parsed.message,
                kind: parsed.kind.as_str().to_owned(),
            });
            return Ok(());
        }
        // Azure opens with a content-filter chunk that has no id, model or choices: it starts
        // nothing, so the stream's id and model come from the first real chunk.
        let empty = chunk.choices.is_empty()
            && chunk.usage.is_none()
            && chunk.id.as_deref().is_none_or(str::is_empty);
        if empty {
            return Ok(());
        }
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: chunk.id.map(Str::into_owned).unwrap_or_default(),
                model: chunk.model.map(Str::into_owned).unwrap_or_default(),
            });
        }
        for (position, c) in chunk.choices.into_iter().enumerate() {
            let choice = c.index.unwrap_or(position as u32);
            if let Some(delta) = c.delta {
                self.delta(choice, delta, out);
            }
            if let Some(reason) = c.finish_reason.as_deref().and_then(finish_reason) {
                out.push(StreamEvent::Finish { choice, reason });
            }
        }
        if let Some(usage) = chunk.usage {
            out.push(StreamEvent::Usage(usage.into_unified()));
        }
        Ok(())
    }

    /// Convenience for tests and callers that want the events of one payload.
    pub fn decode(&mut self, data: &str) -> Result<Vec<StreamEvent>, DecodeError> {
        let mut out = Vec::new();
        self.feed(data, &mut out)?;
        Ok(out)
    }

    /// Whether `[DONE]` was seen.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn delta(&mut self, choice: u32, delta: WireDelta<'_>, out: &mut Vec<StreamEvent>) {
        let text = delta.content.or(delta.refusal);
        if let Some(text) = text.filter(|t| !t.is_empty()) {
            out.push(StreamEvent::TextDelta {
                choice,
                text: text.into_owned(),
            });
        }
        for (position, call) in delta.tool_calls.unwrap_or_default().into_iter().enumerate() {
            let index = call.index.unwrap_or(position as u32);
            let (name, arguments) = match call.function {
                Some(f) => (f.name, f.arguments),
                None => (None, None),
            };
            let announced = self.tools.contains(&(choice, index));
            if !announced && (call.id.is_some() || name.is_some()) {
                self.tools.push((choice, index));
                out.push(StreamEvent::ToolCallStart {
                    choice,
                    index,
                    id: call
                        .id
                        .map(Str::into_owned)
                        .unwrap_or_else(|| format!("call_{index}")),
                    name: name.map(Str::into_owned).unwrap_or_default(),
                });
            }
            if let Some(arguments) = arguments.filter(|a| !a.is_empty()) {
                out.push(StreamEvent::ToolCallDelta {
                    choice,
                    index,
                    arguments: arguments.into_owned(),
                });
            }
        }
    }
}

#[derive(Deserialize)]
struct WireChunk<'a> {
    #[serde(borrow, default)]
    id: Option<Str<'a>>,
    #[serde(borrow, default)]
    model: Option<Str<'a>>,
    #[serde(borrow, default)]
    choices: Vec<WireChunkChoice<'a>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct WireChunkChoice<'a> {
    #[serde(default)]
    index: Option<u32>,
    #[serde(borrow, default)]
    delta: Option<WireDelta<'a>>,
    #[serde(borrow, default)]
    finish_reason: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct WireDelta<'a> {
    #[serde(borrow, default)]
    content: Option<Str<'a>>,
    #[serde(borrow, default)]
    refusal: Option<Str<'a>>,
    #[serde(borrow, default)]
    tool_calls: Option<Vec<WireToolDelta<'a>>>,
}

#[derive(Deserialize)]
struct WireToolDelta<'a> {
    #[serde(default)]
    index: Option<u32>,
    #[serde(borrow, default)]
    id: Option<Str<'a>>,
    #[serde(borrow, default)]
    function: Option<WireFunctionDelta<'a>>,
}

#[derive(Deserialize)]
struct WireFunctionDelta<'a> {
    #[serde(borrow, default)]
    name: Option<Str<'a>>,
    #[serde(borrow, default)]
    arguments: Option<Str<'a>>,
}

/// Writes unified events as OpenAI `chat.completion.chunk` SSE frames.
///
/// Every chunk carries the same `id`, `created` and `model`. The first delta of each choice
/// carries `"role":"assistant"`; [`StreamEvent::Start`] itself produces that first chunk (with
/// empty content, as OpenAI does) so the client sees a byte at once. [`StreamEvent::Usage`] is
/// held back and written as a `choices: []` chunk just before `[DONE]`, and only when the client
/// asked for it (`stream_options.include_usage`). [`StreamEvent::Error`] becomes an
/// `{"error":…}` frame, after which nothing more should be written.
#[derive(Debug)]
pub struct ChunkEncoder {
    created: u64,
    include_usage: bool,
    id_override: Option<String>,
    model_override: Option<String>,
    /// `data: {"id":…,"object":…,"created":…,"model":…,` — the shared head of every chunk.
    head: Vec<u8>,
    /// Choices whose role was sent (bit per choice; choices ≥ 64 always get the role).
    role_sent: u64,
    usage: Option<Usage>,
}

impl ChunkEncoder {
    /// `created` is the Unix time to report (the caller's clock); `include_usage` is the
    /// client's `stream_options.include_usage`.
    pub fn new(created: u64, include_usage: bool) -> Self {
        ChunkEncoder {
            created,
            include_usage,
            id_override: None,
            model_override: None,
            head: Vec::new(),
            role_sent: 0,
            usage: None,
        }
    }

    /// Reports this id instead of the upstream's.
    #[must_use]
    pub fn with_id(mut self, id: impl Into<String>) -> Self {
        self.id_override = Some(id.into());
        self
    }

    /// Reports this model name instead of the upstream's (e.g. the name the client asked for).
    #[must_use]
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model_override = Some(model.into());
        self
    }

    /// Appends the frames for one event to `out` (zero, one or two frames).
    pub fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match event {
            StreamEvent::Start { id, model } => {
                self.set_head(id, model);
                self.choice_frame(out, 0, Delta::default(), None);
            }
            StreamEvent::TextDelta { choice, text } => {
                let delta = Delta {
                    content: Some(text),
                    ..Delta::default()
                };
                self.choice_frame(out, *choice, delta, None);
            }
            StreamEvent::ToolCallStart {
                choice,
                index,
                id,
                name,
            } => {
                let call = [ToolDelta {
                    index: *index,
                    id: Some(id),
                    kind: Some("function"),
                    function: FunctionDelta {
                        name: Some(name),
                        arguments: "",
                    },
                }];
                let delta = Delta {
                    tool_calls: Some(&call),
                    ..Delta::default()
                };
                self.choice_frame(out, *choice, delta, None);
            }
            StreamEvent::ToolCallDelta {
                choice,
                index,
                arguments,
            } => {
                let call = [ToolDelta {
                    index: *index,
                    id: None,
                    kind: None,
                    function: FunctionDelta {
                        name: None,
                        arguments,
                    },
                }];
                let delta = Delta {
                    tool_calls: Some(&call),
                    ..Delta::default()
                };
                self.choice_frame(out, *choice, delta, None);
            }
            StreamEvent::Finish { choice, reason } => {
                self.choice_frame(out, *choice, Delta::default(), Some(*reason));
            }
            StreamEvent::Usage(usage) => self.usage = Some(*usage),
            StreamEvent::Error { message, kind } => {
                let (kind, code) = error_type(ErrorKind::from_name(kind));
                let body = crate::ErrorBody::new(message.as_str(), kind, None, code);
                out.extend_from_slice(b"data: ");
                json::write_to(out, &body);
                out.extend_from_slice(b"\n\n");
            }
            StreamEvent::Done => {
                if let (true, Some(usage)) = (self.include_usage, self.usage.take()) {
                    self.ensure_head();
                    out.extend_from_slice(&self.head);
                    out.extend_from_slice(b"\"choices\":[],\"usage\":");
                    json::write_to(out, &WireUsage::from_unified(&usage));
                    out.extend_from_slice(b"}\n\n");
                }
                out.extend_from_slice(crate::sse::DONE_FRAME);
            }
        }
    }

    /// The frames for one event as a new buffer.
    pub fn encode_to_vec(&mut self, event: &StreamEvent) -> Vec<u8> {
        let mut out = Vec::with_capacity(192);
        self.encode(event, &mut out);
        out
    }

    fn set_head(&mut self, id: &str, model: &str) {
        let id = self.id_override.as_deref().unwrap_or(id);
        let model = self.model_override.as_deref().unwrap_or(model);
        self.head.clear();
        self.head.extend_from_slice(b"data: ");
        let head = Head {
            id,
            object: "chat.completion.chunk",
            created: self.created,
            model,
        };
        json::write_to(&mut self.head, &head);
        // Reopen the object so each chunk appends its own fields: `{...}` → `{...,`.
        self.head.pop();
        self.head.push(b',');
    }

    fn ensure_head(&mut self) {
        if self.head.is_empty() {
            self.set_head("chatcmpl-nines", "");
        }
    }

    fn choice_frame(
        &mut self,
        out: &mut Vec<u8>,
        choice: u32,
        mut delta: Delta<'_>,
        finish: Option<FinishReason>,
    ) {
        self.ensure_head();
        let bit = 1u64.checked_shl(choice).unwrap_or(0);
        if self.role_sent & bit == 0 && finish.is_none() {
            self.role_sent |= bit;
            delta.role = Some("assistant");
            if delta.content.is_none() && delta.tool_calls.is_none() {
                delta.content = Some("");
            }
        }
        out.extend_from_slice(&self.head);
        out.extend_from_slice(b"\"choices\":[");
        let choice = ChunkChoice {
            index: choice,
            delta,
            logprobs: None,
            finish_reason: finish.map(FinishReason::as_str),
        };
        json::write_to(out, &choice);
        out.extend_from_slice(b"]}\n\n");
    }
}

#[derive(Serialize)]
struct Head<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: u32,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<&'a [ToolDelta<'a>]>,
}

#[derive(Serialize)]
struct ToolDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}
