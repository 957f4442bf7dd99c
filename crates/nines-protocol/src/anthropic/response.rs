//! Anthropic `message` objects ↔ [`ChatResponse`].

use super::wire::{InBlock, OutBlock, WireUsage, arguments_text, message_id, out_part, tool_id};
use crate::json::{self, RawArgs};
use crate::unified::{
    ChatResponse, Choice, ContentPart, DecodeError, FinishReason, Message, Role, ToolCall,
};
use serde::{Deserialize, Serialize};

/// Decodes a Messages API response: text and `tool_use` blocks become one assistant message
/// (thinking and server-tool blocks are dropped). `created` is 0: Anthropic does not report it.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, DecodeError> {
    let wire: InResponse = serde_json::from_slice(body)
        .map_err(|e| DecodeError::new("anthropic", "message", e.to_string()))?;
    let mut message = Message {
        content: Vec::new(),
        ..Message::text(Role::Assistant, "")
    };
    for block in wire.content {
        match block {
            InBlock::Text { text } => message.content.push(ContentPart::Text(text)),
            InBlock::ToolUse { id, name, input } => message.tool_calls.push(ToolCall {
                id,
                name,
                arguments: arguments_text(&input),
            }),
            InBlock::Image { .. } | InBlock::ToolResult { .. } | InBlock::Other => {}
        }
    }
    Ok(ChatResponse {
        id: wire.id,
        model: wire.model,
        created: 0,
        choices: vec![Choice {
            index: 0,
            message,
            finish_reason: wire.stop_reason.as_deref().and_then(finish_reason),
        }],
        usage: wire.usage.map(WireUsage::into_unified),
    })
}

/// Anthropic's `stop_reason` in unified terms; an unknown one (a reason added after this code was
/// written) ends normally, an empty one is no reason.
pub fn finish_reason(stop_reason: &str) -> Option<FinishReason> {
    Some(match stop_reason {
        "end_turn" | "stop_sequence" | "pause_turn" => FinishReason::Stop,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "tool_use" => FinishReason::ToolCalls,
        "refusal" => FinishReason::ContentFilter,
        "" => return None,
        _ => FinishReason::Stop,
    })
}

/// The unified finish reason as Anthropic's `stop_reason`.
pub fn stop_reason(reason: FinishReason) -> &'static str {
    match reason {
        FinishReason::Stop => "end_turn",
        FinishReason::Length => "max_tokens",
        FinishReason::ToolCalls => "tool_use",
        FinishReason::ContentFilter => "refusal",
    }
}

/// Encodes the first choice of a unified response as an Anthropic `message` (Anthropic has one
/// choice per response). A response without choices encodes an empty message.
pub fn encode_response(response: &ChatResponse) -> Vec<u8> {
    let choice = response.choices.first();
    let mut content: Vec<OutBlock<'_>> = Vec::new();
    if let Some(choice) = choice {
        content.extend(choice.message.content.iter().filter_map(out_part));
        content.extend(
            choice
                .message
                .tool_calls
                .iter()
                .map(|call| OutBlock::ToolUse {
                    id: tool_id(&call.id),
                    name: &call.name,
                    input: RawArgs::new(&call.arguments),
                }),
        );
    }
    let usage = WireUsage::from_unified(&response.usage.unwrap_or_default());
    json::to_vec(&OutResponse {
        id: &message_id(&response.id),
        kind: "message",
        role: "assistant",
        model: &response.model,
        content,
        stop_reason: choice.and_then(|c| c.finish_reason).map(stop_reason),
        stop_sequence: None,
        usage,
    })
}

#[derive(Deserialize)]
struct InResponse {
    #[serde(default)]
    id: String,
    #[serde(default)]
    model: String,
    content: Vec<InBlock>,
    #[serde(default)]
    stop_reason: Option<String>,
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Serialize)]
struct OutResponse<'a> {
    id: &'a str,
    #[serde(rename = "type")]
    kind: &'static str,
    role: &'static str,
    model: &'a str,
    content: Vec<OutBlock<'a>>,
    stop_reason: Option<&'static str>,
    stop_sequence: Option<&'a str>,
    usage: WireUsage,
}
