//! A JSON answer made through a forced tool call, for dialects without a JSON response format
//! (Anthropic): the request offers one tool, [`JSON_TOOL`], whose input schema is the requested
//! schema (any object for `json_object`), and forces the model to call it; the call's arguments
//! are the JSON answer. Going back, that call becomes the message's text and the finish reason
//! `stop`, so the client sees what `response_format` promises. Other tool calls are left alone.

use super::{ChatResponse, ContentPart, FinishReason, StreamEvent};

/// The tool's name.
pub const JSON_TOOL: &str = "json_response";

/// The tool's description: what the model is told the tool is for.
pub const JSON_TOOL_DESCRIPTION: &str = "Respond with a JSON value matching this schema. \
     Call this tool exactly once with the complete answer as its input.";

/// A whole answer with the JSON tool's call turned into text.
pub fn unwrap_response(response: &mut ChatResponse) {
    for choice in &mut response.choices {
        let message = &mut choice.message;
        let Some(at) = message.tool_calls.iter().position(|c| c.name == JSON_TOOL) else {
            continue;
        };
        let call = message.tool_calls.remove(at);
        message.content.push(ContentPart::Text(call.arguments));
        if message.tool_calls.is_empty() && choice.finish_reason == Some(FinishReason::ToolCalls) {
            choice.finish_reason = Some(FinishReason::Stop);
        }
    }
}

/// The same for a stream: the JSON tool's call start is swallowed, its argument deltas become
/// text deltas, and the finish reason is `stop` when it was the only call. Tool calls after it
/// keep their own indices shifted down by one, so the client's numbering has no gap.
#[derive(Debug, Default)]
pub struct JsonToolStream {
    /// The unified index of the JSON tool's call, once it started.
    json_index: Option<u32>,
    /// Other tool calls seen.
    others: u32,
}

impl JsonToolStream {
    pub fn new() -> Self {
        Self::default()
    }

    /// Rewrites `events[from..]` (the events one upstream event produced) in place.
    pub fn map(&mut self, events: &mut Vec<StreamEvent>, from: usize) {
        let mut kept = Vec::with_capacity(events.len() - from);
        for event in events.drain(from..) {
            match event {
                StreamEvent::ToolCallStart { index, name, .. } if name == JSON_TOOL => {
                    self.json_index = Some(index);
                }
                StreamEvent::ToolCallStart {
                    choice,
                    index,
                    id,
                    name,
                } => {
                    self.others += 1;
                    kept.push(StreamEvent::ToolCallStart {
                        choice,
                        index: self.shifted(index),
                        id,
                        name,
                    });
                }
                StreamEvent::ToolCallDelta {
                    choice,
                    index,
                    arguments,
                } if Some(index) == self.json_index => {
                    kept.push(StreamEvent::TextDelta {
                        choice,
                        text: arguments,
                    });
                }
                StreamEvent::ToolCallDelta {
                    choice,
                    index,
                    arguments,
                } => kept.push(StreamEvent::ToolCallDelta {
                    choice,
                    index: self.shifted(index),
                    arguments,
                }),
                StreamEvent::Finish {
                    choice,
                    reason: FinishReason::ToolCalls,
                } if self.json_index.is_some() && self.others == 0 => {
                    kept.push(StreamEvent::Finish {
                        choice,
                        reason: FinishReason::Stop,
                    });
                }
                other => kept.push(other),
            }
        }
        events.extend(kept);
    }

    fn shifted(&self, index: u32) -> u32 {
        match self.json_index {
            Some(json) if index > json => index - 1,
            _ => index,
        }
    }
}
