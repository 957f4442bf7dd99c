//! Converse response → [`ChatResponse`].

use crate::json;
use crate::unified::{
    ChatResponse, Choice, ContentPart, DecodeError, FinishReason, Message, Role, ToolCall, Usage,
};
use serde::Deserialize;
use serde_json::Value;

/// Decodes a Converse answer. Converse names neither the answer nor the model: both are left
/// empty for the caller to fill.
pub fn decode_response(body: &[u8]) -> Result<ChatResponse, DecodeError> {
    let wire: InResponse = serde_json::from_slice(body)
        .map_err(|e| DecodeError::new("bedrock", "response", e.to_string()))?;
    let mut text = String::new();
    let mut tool_calls = Vec::new();
    for block in wire.output.message.content {
        if let Some(piece) = block.text {
            text.push_str(&piece);
        }
        if let Some(call) = block.tool_use {
            tool_calls.push(ToolCall {
                id: call.tool_use_id,
                name: call.name,
                arguments: json::value_text(&call.input),
            });
        }
    }
    let finish_reason = stop_reason(&wire.stop_reason, !tool_calls.is_empty());
    let content = if text.is_empty() {
        Vec::new()
    } else {
        vec![ContentPart::Text(text)]
    };
    Ok(ChatResponse {
        id: String::new(),
        model: String::new(),
        created: 0,
        choices: vec![Choice {
            index: 0,
            message: Message {
                role: Role::Assistant,
                content,
                tool_calls,
                tool_call_id: None,
                name: None,
            },
            finish_reason: Some(finish_reason),
        }],
        usage: wire.usage.map(InUsage::into_unified),
    })
}

/// Converse's stop reasons in unified terms; an unknown one ends normally.
pub(super) fn stop_reason(reason: &str, has_calls: bool) -> FinishReason {
    match reason {
        "tool_use" => FinishReason::ToolCalls,
        "max_tokens" | "model_context_window_exceeded" => FinishReason::Length,
        "guardrail_intervened" | "content_filtered" => FinishReason::ContentFilter,
        _ if has_calls => FinishReason::ToolCalls,
        _ => FinishReason::Stop,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InResponse {
    output: InOutput,
    #[serde(default)]
    stop_reason: String,
    #[serde(default)]
    usage: Option<InUsage>,
}

#[derive(Deserialize)]
struct InOutput {
    message: InMessage,
}

#[derive(Deserialize)]
struct InMessage {
    #[serde(default)]
    content: Vec<InBlock>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InBlock {
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    tool_use: Option<InToolUse>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct InToolUse {
    tool_use_id: String,
    name: String,
    #[serde(default)]
    input: Value,
}

#[derive(Deserialize, Clone, Copy, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct InUsage {
    #[serde(default)]
    input_tokens: u64,
    #[serde(default)]
    output_tokens: u64,
    #[serde(default)]
    cache_read_input_tokens: u64,
    #[serde(default)]
    cache_write_input_tokens: u64,
}

impl InUsage {
    /// Converse counts cached prompt tokens apart from `inputTokens` (as Anthropic does); the
    /// unified count includes them.
    pub(super) fn into_unified(self) -> Usage {
        Usage {
            input_tokens: self
                .input_tokens
                .saturating_add(self.cache_read_input_tokens)
                .saturating_add(self.cache_write_input_tokens),
            output_tokens: self.output_tokens,
            cache_read_tokens: self.cache_read_input_tokens,
            cache_write_tokens: self.cache_write_input_tokens,
        }
    }
}
