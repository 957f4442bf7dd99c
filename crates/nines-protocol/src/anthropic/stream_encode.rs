//! Encoding [`StreamEvent`]s as an Anthropic Messages stream, for Anthropic-SDK clients served by
//! an upstream of another dialect.
//!
//! The order Anthropic SDKs expect is `message_start`, then per content block
//! `content_block_start` → `content_block_delta`* → `content_block_stop`, then one `message_delta`
//! (stop reason and usage) and `message_stop`. Unified streams interleave freely and announce the
//! finish reason and usage separately (OpenAI sends usage *after* the finish chunk), so the encoder
//! opens and closes blocks as the content kind changes, and holds the finish reason and usage
//! until [`StreamEvent::Done`]. Only choice 0 is encoded (Anthropic has one).

use super::errors::error_type;
use super::response::stop_reason;
use super::wire::{WireUsage, message_id, tool_id};
use crate::json;
use crate::unified::{ErrorKind, FinishReason, StreamEvent, Usage};
use serde::Serialize;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Open {
    Text(u32),
    Tool(u32),
}

/// Stateful encoder of one Anthropic stream.
#[derive(Debug, Default)]
pub struct StreamEncoder {
    started: bool,
    open: Option<Open>,
    next_block: u32,
    /// (tool-call index, block index) of every tool block opened.
    tools: Vec<(u32, u32)>,
    finish: Option<FinishReason>,
    usage: Option<Usage>,
    model_override: Option<String>,
}

impl StreamEncoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Reports this model name in `message_start` instead of the upstream's.
    #[must_use]
    pub fn with_model(mut self, model: impl Into<String>) -> Self {
        self.model_override = Some(model.into());
        self
    }

    /// Appends the `event:`/`data:` frames for one event to `out`.
    pub fn encode(&mut self, event: &StreamEvent, out: &mut Vec<u8>) {
        match event {
            StreamEvent::Start { id, model } => self.start(id, model, out),
            StreamEvent::TextDelta { choice: 0, text } => {
                self.ensure_started(out);
                let block = match self.open {
                    Some(Open::Text(block)) => block,
                    _ => {
                        let block = self.open_block(out, BlockStart::Text { text: "" });
                        self.open = Some(Open::Text(block));
                        block
                    }
                };
                let delta = BlockDelta::TextDelta { text };
                frame(out, "content_block_delta", &DeltaEvent::new(block, delta));
            }
            StreamEvent::ToolCallStart {
                choice: 0,
                index,
                id,
                name,
            } => {
                self.ensure_started(out);
                self.start_tool(*index, id, name, out);
            }
            StreamEvent::ToolCallDelta {
                choice: 0,
                index,
                arguments,
            } => {
                self.ensure_started(out);
                let block = match self.tools.iter().find(|(tool, _)| tool == index) {
                    Some((_, block)) => *block,
                    None => self.start_tool(*index, &format!("toolu_{index}"), "", out),
                };
                let delta = BlockDelta::InputJsonDelta {
                    partial_json: arguments,
                };
                frame(out, "content_block_delta", &DeltaEvent::new(block, delta));
            }
            StreamEvent::Finish { choice: 0, reason } => self.finish = Some(*reason),
            StreamEvent::Usage(usage) => self.usage = Some(*usage),
            StreamEvent::Error { message, kind } => {
                let error = ErrorEvent {
                    kind: "error",
                    error: ErrorDetail {
                        kind: error_type(ErrorKind::from_name(kind)),
                        message,
                    },
                };
                frame(out, "error", &error);
            }
            StreamEvent::Done => {
                self.ensure_started(out);
                self.close_block(out);
                let delta = MessageDelta {
                    kind: "message_delta",
                    delta: StopDelta {
                        stop_reason: self.finish.map(stop_reason),
                        stop_sequence: None,
                    },
                    usage: WireUsage::from_unified(&self.usage.unwrap_or_default()),
                };
                frame(out, "message_delta", &delta);
                frame(
                    out,
                    "message_stop",
                    &TypeOnly {
                        kind: "message_stop",
                    },
                );
            }
            // Choices other than 0 have no place in an Anthropic stream.
            StreamEvent::TextDelta { .. }
            | StreamEvent::ToolCallStart { .. }
            | StreamEvent::ToolCallDelta { .. }
            | StreamEvent::Finish { .. } => {}
        }
    }

    /// The frames for one event as a new buffer.
    pub fn encode_to_vec(&mut self, event: &StreamEvent) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        self.encode(event, &mut out);
        out
    }

    fn start(&mut self, id: &str, model: &str, out: &mut Vec<u8>) {
        if self.started {
            return;
        }
        self.started = true;
        let model = self.model_override.as_deref().unwrap_or(model);
        let id = message_id(id);
        let start = MessageStart {
            kind: "message_start",
            message: StartMessage {
                id: &id,
                kind: "message",
                role: "assistant",
                content: [],
                model,
                stop_reason: None,
                stop_sequence: None,
                usage: WireUsage::from_unified(&Usage::default()),
            },
        };
        frame(out, "message_start", &start);
    }

    fn ensure_started(&mut self, out: &mut Vec<u8>) {
        if !self.started {
            self.start("msg_nines", "", out);
        }
    }

    fn start_tool(&mut self, index: u32, id: &str, name: &str, out: &mut Vec<u8>) -> u32 {
        let id = tool_id(id);
        let block = self.open_block(
            out,
            BlockStart::ToolUse {
                id: &id,
                name,
                input: Empty {},
            },
        );
        self.open = Some(Open::Tool(block));
        self.tools.push((index, block));
        block
    }

    fn open_block(&mut self, out: &mut Vec<u8>, content_block: BlockStart<'_>) -> u32 {
        self.close_block(out);
        let index = self.next_block;
        self.next_block += 1;
        let start = BlockStartEvent {
            kind: "content_block_start",
            index,
            content_block,
        };
        frame(out, "content_block_start", &start);
        index
    }

    fn close_block(&mut self, out: &mut Vec<u8>) {
        if let Some(Open::Text(index) | Open::Tool(index)) = self.open.take() {
            let stop = BlockStop {
                kind: "content_block_stop",
                index,
            };
            frame(out, "content_block_stop", &stop);
        }
    }
}

fn frame<T: Serialize>(out: &mut Vec<u8>, event: &str, payload: &T) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(b"\ndata: ");
    json::write_to(out, payload);
    out.extend_from_slice(b"\n\n");
}

#[derive(Serialize)]
struct TypeOnly {
    #[serde(rename = "type")]
    kind: &'static str,
}

#[derive(Serialize)]
struct MessageStart<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: StartMessage<'a>,
}

#[derive(Serialize)]
struct StartMessage<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    content: [(); 0],
    model: &'a str,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<&'static str>,
    usage: WireUsage,
}

#[derive(Serialize)]
struct BlockStartEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    content_block: BlockStart<'a>,
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockStart<'a> {
    Text {
        text: &'a str,
    },
    ToolUse {
        id: &'a str,
        name: &'a str,
        input: Empty,
    },
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct DeltaEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
    delta: BlockDelta<'a>,
}

impl<'a> DeltaEvent<'a> {
    fn new(index: u32, delta: BlockDelta<'a>) -> Self {
        DeltaEvent {
            kind: "content_block_delta",
            index,
            delta,
        }
    }
}

#[derive(Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum BlockDelta<'a> {
    TextDelta { text: &'a str },
    InputJsonDelta { partial_json: &'a str },
}

#[derive(Serialize)]
struct BlockStop {
    #[serde(rename = "type")]
    kind: &'static str,
    index: u32,
}

#[derive(Serialize)]
struct MessageDelta {
    #[serde(rename = "type")]
    kind: &'static str,
    delta: StopDelta,
    usage: WireUsage,
}

#[derive(Serialize)]
struct StopDelta {
    stop_reason: Option<&'static str>,
    stop_sequence: Option<&'static str>,
}

#[derive(Serialize)]
struct ErrorEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}
