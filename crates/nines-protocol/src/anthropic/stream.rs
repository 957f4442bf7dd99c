//! Decoding an Anthropic Messages stream into [`StreamEvent`]s.
//!
//! Anthropic streams content *blocks* (`content_block_start` / `_delta` / `_stop`, indexed across
//! text and tool blocks alike); the unified stream numbers tool calls among themselves, as OpenAI
//! does. The decoder keeps the block → tool-call map, and merges the usage of `message_start`
//! (prompt counts) with that of `message_delta` (output count) into one [`StreamEvent::Usage`].
//! Per-event work borrows from the payload (no `serde_json::Value`), since it runs per token.

use super::response::finish_reason;
use super::wire::WireUsage;
use crate::json::Str;
use crate::sse::SseEvent;
use crate::unified::{DecodeError, StreamEvent};
use serde::Deserialize;

/// More content blocks than any real message has; bounds the block map against a bad upstream.
const MAX_BLOCKS: usize = 4096;

/// Stateful decoder of one Anthropic stream.
#[derive(Debug, Default)]
pub struct StreamDecoder {
    /// For each content block index: the tool-call index it carries, if it is a tool block.
    blocks: Vec<Option<u32>>,
    tools: u32,
    usage: WireUsage,
    done: bool,
}

impl StreamDecoder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Decodes one SSE event (`event` is the `event:` name, which may be empty: the payload's
    /// `type` decides). Unknown event types are ignored, as Anthropic's versioning policy asks.
    pub fn feed(
        &mut self,
        event: &str,
        data: &str,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), DecodeError> {
        if event == "ping" {
            return Ok(());
        }
        let wire: WireEvent<'_> = serde_json::from_str(data)
            .map_err(|e| DecodeError::new("anthropic", "stream event", e.to_string()))?;
        let kind = wire.kind.as_deref().unwrap_or(event);
        match kind {
            "message_start" => {
                let message = wire.message.unwrap_or_default();
                if let Some(usage) = message.usage {
                    self.usage.update(usage);
                }
                out.push(StreamEvent::Start {
                    id: message.id.map(Str::into_owned).unwrap_or_default(),
                    model: message.model.map(Str::into_owned).unwrap_or_default(),
                });
            }
            "content_block_start" => {
                let index = wire.index.unwrap_or(self.blocks.len() as u32) as usize;
                let block = wire
                    .content_block
                    .ok_or_else(|| missing("content_block_start", "content_block"))?;
                if index > MAX_BLOCKS {
                    return Err(DecodeError::new(
                        "anthropic",
                        "stream event",
                        format!("content block index {index} is out of range"),
                    ));
                }
                if self.blocks.len() <= index {
                    self.blocks.resize(index + 1, None);
                }
                match &*block.kind {
                    "text" => {
                        if let Some(text) = block.text.filter(|t| !t.is_empty()) {
                            out.push(StreamEvent::TextDelta {
                                choice: 0,
                                text: text.into_owned(),
                            });
                        }
                    }
                    "tool_use" => {
                        let tool = self.tools;
                        self.tools += 1;
                        self.blocks[index] = Some(tool);
                        out.push(StreamEvent::ToolCallStart {
                            choice: 0,
                            index: tool,
                            id: block.id.map(Str::into_owned).unwrap_or_default(),
                            name: block.name.map(Str::into_owned).unwrap_or_default(),
                        });
                    }
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = wire
                    .delta
                    .ok_or_else(|| missing("content_block_delta", "delta"))?;
                match delta.kind.as_deref() {
                    Some("text_delta") => {
                        if let Some(text) = delta.text.filter(|t| !t.is_empty()) {
                            out.push(StreamEvent::TextDelta {
                                choice: 0,
                                text: text.into_owned(),
                            });
                        }
                    }
                    Some("input_json_delta") => {
                        let index = wire.index.unwrap_or(0) as usize;
                        let tool = self.blocks.get(index).copied().flatten();
                        let json = delta.partial_json.filter(|j| !j.is_empty());
                        if let (Some(tool), Some(json)) = (tool, json) {
                            out.push(StreamEvent::ToolCallDelta {
                                choice: 0,
                                index: tool,
                                arguments: json.into_owned(),
                            });
                        }
                    }
                    _ => {}
                }
            }
            "message_delta" => {
                let reason = wire
                    .delta
                    .and_then(|d| d.stop_reason)
                    .and_then(|r| finish_reason(&r));
                if let Some(reason) = reason {
                    out.push(StreamEvent::Finish { choice: 0, reason });
                }
                if let Some(usage) = wire.usage {
                    self.usage.update(usage);
                    out.push(StreamEvent::Usage(self.usage.into_unified()));
                }
            }
            "message_stop" => {
                self.done = true;
                out.push(StreamEvent::Done);
            }
            "error" => {
                let error = wire.error.unwrap_or_default();
                let message = error.message.map(Str::into_owned).unwrap_or_default();
                let kind = super::error_kind(error.kind.as_deref().unwrap_or(""), &message);
                out.push(StreamEvent::Error {
                    message,
                    kind: kind.as_str().to_owned(),
                });
            }
            _ => {}
        }
        Ok(())
    }

    /// [`StreamDecoder::feed`] with an event from [`crate::sse::SseDecoder`].
    pub fn feed_sse(
        &mut self,
        event: &SseEvent,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), DecodeError> {
        self.feed(event.event.as_deref().unwrap_or(""), &event.data, out)
    }

    /// Whether `message_stop` was seen.
    pub fn is_done(&self) -> bool {
        self.done
    }
}

fn missing(event: &str, field: &str) -> DecodeError {
    DecodeError::new(
        "anthropic",
        "stream event",
        format!("{event} without {field}"),
    )
}

#[derive(Deserialize)]
struct WireEvent<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Str<'a>>,
    #[serde(default)]
    index: Option<u32>,
    #[serde(borrow, default)]
    message: Option<WireMessageStart<'a>>,
    #[serde(borrow, default)]
    content_block: Option<WireBlockStart<'a>>,
    #[serde(borrow, default)]
    delta: Option<WireDelta<'a>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(borrow, default)]
    error: Option<WireError<'a>>,
}

#[derive(Deserialize, Default)]
struct WireMessageStart<'a> {
    #[serde(borrow, default)]
    id: Option<Str<'a>>,
    #[serde(borrow, default)]
    model: Option<Str<'a>>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireBlockStart<'a> {
    #[serde(rename = "type", borrow)]
    kind: Str<'a>,
    #[serde(borrow, default)]
    id: Option<Str<'a>>,
    #[serde(borrow, default)]
    name: Option<Str<'a>>,
    #[serde(borrow, default)]
    text: Option<Str<'a>>,
}

#[derive(Deserialize)]
struct WireDelta<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Str<'a>>,
    #[serde(borrow, default)]
    text: Option<Str<'a>>,
    #[serde(borrow, default)]
    partial_json: Option<Str<'a>>,
    #[serde(borrow, default)]
    stop_reason: Option<Str<'a>>,
}

#[derive(Deserialize, Default)]
struct WireError<'a> {
    #[serde(rename = "type", borrow, default)]
    kind: Option<Str<'a>>,
    #[serde(borrow, default)]
    message: Option<Str<'a>>,
}
