//! Decoding ConverseStream, as the gateway relays it: one SSE event per event-stream message,
//! named by its `:event-type` (see the [module documentation](super)).
//!
//! Order: `messageStart`, then per content block an optional `contentBlockStart` (tool use:
//! id and name), `contentBlockDelta`s (text, or tool input as JSON text) and `contentBlockStop`;
//! `messageStop` (the stop reason); `metadata` (usage) last, and `Done` after it: a stream that
//! ends before its metadata was cut off.

use super::response::{InUsage, stop_reason};
use crate::sse::SseEvent;
use crate::unified::{DecodeError, StreamEvent};
use serde::Deserialize;

/// Stateful decoder of one ConverseStream.
#[derive(Debug)]
pub struct StreamDecoder {
    id: String,
    started: bool,
    done: bool,
    /// Tool-call index per content block index (Converse numbers all blocks together).
    tool_blocks: Vec<(u32, u32)>,
    tools: u32,
}

impl StreamDecoder {
    /// `id` names the answer (Converse gives it none).
    pub fn new(id: &str) -> Self {
        StreamDecoder {
            id: id.to_owned(),
            started: false,
            done: false,
            tool_blocks: Vec::new(),
            tools: 0,
        }
    }

    /// Decodes one relayed event, appending its unified events to `out`.
    pub fn feed_sse(
        &mut self,
        event: &SseEvent,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), DecodeError> {
        let name = event.event.as_deref().unwrap_or("");
        let malformed = |e: serde_json::Error| {
            DecodeError::new("bedrock", "stream event", format!("{name}: {e}"))
        };
        if name == "error" {
            let error: InError = serde_json::from_str(&event.data).map_err(malformed)?;
            out.push(StreamEvent::Error {
                kind: super::error_kind(&error.error.kind, &error.error.message)
                    .as_str()
                    .to_owned(),
                message: error.error.message,
            });
            return Ok(());
        }
        let payload: InEvent = serde_json::from_str(&event.data).map_err(malformed)?;
        if !self.started {
            self.started = true;
            out.push(StreamEvent::Start {
                id: self.id.clone(),
                model: String::new(),
            });
        }
        match name {
            "messageStart" | "contentBlockStop" => {}
            "contentBlockStart" => {
                if let Some(tool) = payload.start.and_then(|s| s.tool_use) {
                    let index = self.tools;
                    self.tools += 1;
                    self.tool_blocks
                        .push((payload.content_block_index.unwrap_or(0), index));
                    out.push(StreamEvent::ToolCallStart {
                        choice: 0,
                        index,
                        id: tool.tool_use_id,
                        name: tool.name,
                    });
                }
            }
            "contentBlockDelta" => {
                let Some(delta) = payload.delta else {
                    return Ok(());
                };
                if let Some(text) = delta.text.filter(|t| !t.is_empty()) {
                    out.push(StreamEvent::TextDelta { choice: 0, text });
                }
                if let Some(tool) = delta.tool_use {
                    let block = payload.content_block_index.unwrap_or(0);
                    let index = self
                        .tool_blocks
                        .iter()
                        .find(|(b, _)| *b == block)
                        .map(|(_, i)| *i)
                        .ok_or_else(|| {
                            DecodeError::new(
                                "bedrock",
                                "contentBlockDelta",
                                format!("tool input for block {block}, which started no tool use"),
                            )
                        })?;
                    out.push(StreamEvent::ToolCallDelta {
                        choice: 0,
                        index,
                        arguments: tool.input,
                    });
                }
            }
            "messageStop" => {
                let reason =
                    stop_reason(payload.stop_reason.as_deref().unwrap_or(""), self.tools > 0);
                out.push(StreamEvent::Finish { choice: 0, reason });
            }
            "metadata" => {
                if let Some(usage) = payload.usage {
                    out.push(StreamEvent::Usage(usage.into_unified()));
                }
                self.end(out);
            }
            // Event types added later carry nothing nines relays.
            _ => {}
        }
        Ok(())
    }

    /// Whether the stream is complete.
    pub fn is_done(&self) -> bool {
        self.done
    }

    fn end(&mut self, out: &mut Vec<StreamEvent>) {
        if !self.done {
            self.done = true;
            out.push(StreamEvent::Done);
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InEvent {
    #[serde(default)]
    content_block_index: Option<u32>,
    #[serde(default)]
    start: Option<InStart>,
    #[serde(default)]
    delta: Option<InDelta>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<InUsage>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InStart {
    #[serde(default)]
    tool_use: Option<InToolStart>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InToolStart {
    tool_use_id: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InDelta {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_use: Option<InToolDelta>,
}

#[derive(Deserialize)]
struct InToolDelta {
    #[serde(default)]
    input: String,
}

#[derive(Deserialize)]
struct InError {
    error: InErrorBody,
}

#[derive(Deserialize)]
struct InErrorBody {
    #[serde(rename = "type", default)]
    kind: String,
    #[serde(default)]
    message: String,
}
